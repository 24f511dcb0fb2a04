"""Autoregressive sampling for the Parti-like family: one ``generate()`` with a static KV cache.

The procedure is LlamaGen's ``autoregressive/models/generate.py`` (commit ce98ec4), re-implemented:

1. **Condition batch.** With guidance the model runs a doubled batch ``[cond rows; uncond rows]``: the null
   class ``num_classes`` for c2i, ``cls_embedding.uncond_embedding`` for t2i. Each sampled token is
   appended to both halves.
2. **Prefill** the T condition positions (T = 1 for c2i, 120 for t2i) into the KV caches; the first token
   is sampled from the logits at position T − 1.
3. **Decode** one token per step at position T + s − 1, attending over the cache. The last sampled token is
   never fed back, so ``max_new_tokens`` tokens take ``max_new_tokens`` model calls.
4. **Each step**, in this order, on float32 logits (B, V):
   guidance ``l = l_u + w·(l_c − l_u)`` → divide by ``max(temperature, 1e-5)`` → top-k → top-p →
   softmax → draw.

Guidance follows the suite's convention (:data:`cgmbench.generator.GUIDANCE_CONVENTION`): ``guidance_scale = w`` in
``l_u + w·(l_c − l_u)``, on logits. LlamaGen's ``cfg_scale`` is the same number (its code computes
``uncond + (cond − uncond)·cfg_scale``): ``w = cfg_scale``, identical. One difference: LlamaGen turns
guidance off for any ``cfg_scale <= 1`` (so its ``cfg_scale = 0`` samples conditionally), whereas here
``w = 0`` is unconditional sampling and only ``w = 1`` is plain conditional sampling (no doubled batch
unless ``cfg_batch=True``; at ``w = 1`` the guided logits are the conditional logits exactly).
``cfg_interval`` (LlamaGen's; −1 = always) keeps guidance on steps ``0 … cfg_interval + 1`` only; later
steps still run the doubled batch but sample from the conditional logits.

**Filters.** top-k keeps every logit ≥ the k-th largest (ties at the boundary are all kept); ``top_k = 0``
is off and ``top_k`` larger than the vocabulary is an error. top-p (``< 1``) runs on the top-k-filtered
logits and keeps the smallest prefix of the sorted distribution whose probability mass exceeds ``top_p``
(the first token past the threshold, and always the top-1 token, are kept). The order matters: the
temperature is applied *before* top-p, so it changes which tokens the nucleus keeps.

**Randomness** (exactly one source; a draw is an exponential race, ``token = argmax(p / q)`` with
``q ~ Exp(1)`` per vocabulary entry, which is how ``torch.multinomial(p, 1)`` samples):

* ``generators``: one ``torch.Generator`` per sample; sample *i*'s draws come only from ``generators[i]``
  (V exponentials per step), so its tokens do not depend on the batch it is in (the suite's contract);
* ``shared_generator``: one generator for the batch, drawing (B, V) per step — exactly what LlamaGen's
  ``torch.multinomial`` consumes from the global CPU generator, so seeding it with LlamaGen's state
  reproduces LlamaGen's tokens (batch-dependent, for parity only);
* ``exp_noise``: the recorded draws (steps, B, V), replayed (the fixtures' recorded randomness);
* ``sample=False``: greedy (argmax), no randomness.

Tensor shapes: ``cond`` c2i (B,) int64 labels; t2i (B, 120, caption_dim) float features, left-padded with
zero rows, and ``emb_mask`` (B, 120) (1 = real token). Returns tokens (B, max_new_tokens) int64, row-major
over the token grid, ready for ``VQModel.decode_code``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from cgmbench.errors import CgmbenchError

from .models import Transformer, causal_mask_with_prefix

__all__ = ["generate", "top_k_top_p_filtering", "logits_to_probs", "guided_logits", "cfg_active"]


def guided_logits(cond: torch.Tensor, uncond: torch.Tensor, w: float) -> torch.Tensor:
    """``uncond + w·(cond − uncond)``; exactly ``cond`` when ``w == 1``."""
    if w == 1.0:
        return cond
    return uncond + w * (cond - uncond)


def cfg_active(step: int, cfg_interval: int) -> bool:
    """Whether step ``step`` (0 = the prefill's token) is guided under LlamaGen's ``cfg_interval``."""
    return cfg_interval < 0 or step <= cfg_interval + 1


def top_k_top_p_filtering(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set filtered entries of ``logits`` (B, V) to −inf; returns a new tensor (the input is untouched)."""
    logits = logits.clone()
    if top_k > 0:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits[logits < kth] = -float("inf")
    if top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(logits, descending=True, dim=-1)
        cum = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
        drop_sorted = cum > top_p
        drop_sorted[..., 1:] = drop_sorted[..., :-1].clone()  # keep the first token past the threshold
        drop_sorted[..., 0] = False
        drop = drop_sorted.scatter(-1, sorted_idx, drop_sorted)
        logits[drop] = -float("inf")
    return logits


def logits_to_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Temperature → top-k → top-p → softmax on (B, V) logits (guidance already applied)."""
    logits = logits / max(temperature, 1e-5)
    if top_k > 0 or top_p < 1.0:
        logits = top_k_top_p_filtering(logits, top_k, top_p)
    return F.softmax(logits, dim=-1)


def _check_knobs(vocab: int, guidance_scale: float, temperature: float, top_k: int, top_p: float,
                 max_new_tokens: int, block_size: int) -> None:
    if not isinstance(top_k, int) or top_k < 0:
        raise CgmbenchError(f"top_k={top_k!r} is not a non-negative integer", "top_k=0 turns top-k filtering off")
    if top_k > vocab:
        raise CgmbenchError(f"top_k={top_k} is larger than the codebook ({vocab} tokens)",
                            f"use top_k <= {vocab}, or top_k=0 to turn top-k filtering off")
    if not 0.0 < top_p <= 1.0:
        raise CgmbenchError(f"top_p={top_p} is outside (0, 1]", "top_p=1.0 turns nucleus filtering off")
    if not temperature >= 0.0:
        raise CgmbenchError(f"temperature={temperature} is negative", "use temperature >= 0 (1.0 = unchanged)")
    if not guidance_scale == guidance_scale:  # NaN
        raise CgmbenchError("guidance_scale is NaN")
    if not 1 <= max_new_tokens <= block_size:
        raise CgmbenchError(f"max_new_tokens={max_new_tokens} is outside [1, {block_size}]",
                            f"the model was built for block_size={block_size} image tokens")


def _null_condition(model: Transformer, cond: torch.Tensor) -> torch.Tensor:
    if model.model_type == "c2i":
        return torch.full_like(cond, model.num_classes)
    uncond = model.cls_embedding.uncond_embedding
    if cond.shape[1:] != uncond.shape:
        raise CgmbenchError(
            f"caption features of shape {tuple(cond.shape[1:])} do not match the null caption "
            f"{tuple(uncond.shape)} that guidance needs",
            f"pad or truncate the caption features to {uncond.shape[0]} tokens (left-padded with zero rows)")
    return torch.zeros_like(cond) + uncond


class _Draws:
    """The randomness of one generate() call: one exponential race per sample and step."""

    def __init__(self, batch: int, vocab: int, generators, shared_generator, exp_noise, sample: bool, steps: int):
        given = [x is not None for x in (generators, shared_generator, exp_noise)]
        if not sample:
            if any(given):
                raise CgmbenchError("sample=False (greedy) takes no randomness source")
        elif sum(given) != 1:
            raise CgmbenchError("generate() needs exactly one randomness source",
                                "pass generators=[one torch.Generator per sample] (the suite's convention), "
                                "shared_generator=, or exp_noise= (recorded draws)")
        if generators is not None and len(generators) != batch:
            raise CgmbenchError(f"{len(generators)} generators for a batch of {batch} samples",
                                "pass one torch.Generator per sample (cgmbench.seeding.torch_generator(seed))")
        if exp_noise is not None and tuple(exp_noise.shape) != (steps, batch, vocab):
            raise CgmbenchError(f"exp_noise has shape {tuple(exp_noise.shape)}, expected {(steps, batch, vocab)}",
                                "recorded draws are (max_new_tokens, B, vocab_size)")
        self.vocab = vocab
        self.sample = sample
        self.generators = generators
        self.shared_generator = shared_generator
        self.exp_noise = exp_noise

    def choose(self, step: int, probs: torch.Tensor) -> torch.Tensor:
        """Token per row of ``probs`` (B, V): ``argmax(probs / q)``, first index on ties."""
        if not self.sample:
            return torch.argmax(probs, dim=-1)
        if self.exp_noise is not None:
            q = self.exp_noise[step].to(probs.device, probs.dtype)
        elif self.shared_generator is not None:
            g = self.shared_generator
            q = torch.empty(probs.shape, dtype=probs.dtype, device=g.device).exponential_(1, generator=g)
            q = q.to(probs.device)
        else:
            q = torch.stack([torch.empty(self.vocab, dtype=probs.dtype, device=g.device).exponential_(1, generator=g)
                             .to(probs.device) for g in self.generators])
        return torch.argmax(probs / q, dim=-1)


@torch.no_grad()
def generate(
    model: Transformer,
    cond: torch.Tensor,
    max_new_tokens: int,
    *,
    emb_mask: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    cfg_interval: int = -1,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generators: Sequence[torch.Generator] | None = None,
    shared_generator: torch.Generator | None = None,
    exp_noise: torch.Tensor | None = None,
    sample: bool = True,
    use_cache: bool = True,
    cfg_batch: bool | None = None,
    return_trace: bool = False,
):
    """Sample ``max_new_tokens`` image tokens per condition (see the module docstring).

    Args:
        model: a :class:`~baselines.parti.models.Transformer` in eval mode.
        cond: c2i labels (B,) int64, or t2i caption features (B, 120, caption_dim).
        emb_mask: t2i only, (B, 120) with 1 on real caption tokens (left padding).
        guidance_scale: ``w`` in ``l_u + w·(l_c − l_u)`` (= LlamaGen's ``cfg_scale``).
        cfg_interval: guide steps ``0 … cfg_interval + 1`` only; −1 guides every step.
        temperature, top_k, top_p: applied after guidance, in that order (0 / 1.0 = off).
        generators / shared_generator / exp_noise / sample: the randomness (module docstring).
        use_cache: False recomputes the whole sequence at every step (no KV cache), the reference the
            cache is tested against.
        cfg_batch: run the doubled ``[cond; uncond]`` batch; default: whenever ``w != 1``.
        return_trace: also return a dict with ``model_logits_last`` (steps, Bm, V), ``input_pos_last``
            (steps,), ``sample_logits`` (steps, B, V, after guidance, before temperature) and ``probs``.

    Returns:
        tokens (B, max_new_tokens) int64, and the trace dict when ``return_trace``. With ``use_cache`` the
        model keeps its KV caches afterwards (``model.remove_caches()`` frees them).
    """
    if model.training:
        raise CgmbenchError("generate() needs the model in eval mode", "call model.eval() first")
    w = float(guidance_scale)
    _check_knobs(model.vocab_size, w, temperature, top_k, top_p, max_new_tokens, model.block_size)
    batch = cond.shape[0]
    draws = _Draws(batch, model.vocab_size, generators, shared_generator, exp_noise, sample, max_new_tokens)
    doubled = (w != 1.0) if cfg_batch is None else bool(cfg_batch)
    if not doubled and w != 1.0:
        raise CgmbenchError(f"guidance_scale={w} needs the unconditional half", "leave cfg_batch unset")

    if model.model_type == "c2i":
        if emb_mask is not None:
            raise CgmbenchError("emb_mask is for text-conditional (t2i) models only")
        T = 1
    else:
        T = cond.shape[1]
        if emb_mask is not None and tuple(emb_mask.shape) != (batch, T):
            raise CgmbenchError(f"emb_mask has shape {tuple(emb_mask.shape)}, expected {(batch, T)}")
    cond_all = torch.cat([cond, _null_condition(model, cond)]) if doubled else cond
    mask_all = None
    if emb_mask is not None:  # LlamaGen masks the uncond half with the cond prompt's padding too
        mask_all = torch.cat([emb_mask, emb_mask]) if doubled else emb_mask
    device = cond.device
    n_rows = cond_all.shape[0]

    if use_cache:
        model.setup_caches(n_rows, T + max_new_tokens, dtype=model.tok_embeddings.weight.dtype, device=device)
        if mask_all is not None:
            model.causal_mask = causal_mask_with_prefix(model.max_seq_length, mask_all)

    trace = {"model_logits_last": [], "input_pos_last": [], "sample_logits": [], "probs": []}
    tokens = torch.empty(batch, max_new_tokens, dtype=torch.long, device=device)
    for step in range(max_new_tokens):
        if use_cache:
            if step == 0:
                input_pos = torch.arange(T, device=device)
                logits, _ = model(None, cond_all, input_pos=input_pos)
            else:
                x = tokens[:, step - 1:step]
                input_pos = torch.tensor([T + step - 1], device=device, dtype=torch.int)
                logits, _ = model(torch.cat([x, x]) if doubled else x, None, input_pos=input_pos)
        else:  # full recomputation of condition + tokens so far
            prefix = tokens[:, :step]
            input_pos = torch.arange(T + step, device=device)
            mask = None if mask_all is None else causal_mask_with_prefix(T + step, mask_all)[:, None]
            logits, _ = model(torch.cat([prefix, prefix]) if doubled else prefix, cond_all,
                              input_pos=input_pos, mask=mask)
        last = logits[:, -1, :]
        if doubled:
            l_c, l_u = last[:batch], last[batch:]
            l = guided_logits(l_c, l_u, w) if cfg_active(step, cfg_interval) else l_c
        else:
            l = last
        probs = logits_to_probs(l, temperature, top_k, top_p)
        tokens[:, step] = draws.choose(step, probs)
        if return_trace:
            trace["model_logits_last"].append(last)
            trace["input_pos_last"].append(int(input_pos[-1]))
            trace["sample_logits"].append(l)
            trace["probs"].append(probs)

    if not return_trace:
        return tokens
    out = {k: torch.stack(v) for k, v in trace.items() if k != "input_pos_last"}
    out["input_pos_last"] = torch.tensor(trace["input_pos_last"])
    return tokens, out
