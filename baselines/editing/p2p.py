"""``p2p``: prompt-to-prompt editing (Hertz et al. 2022) of real images by DDIM inversion, on the LDM U-Net.

Training-free on a text-to-image :class:`baselines.ldm.generator.LDMGenerator` (default the shipped
``ldm:shapes-t2i-tiny``; ``--model p2p:<ldm checkpoint>``). For each sample:

1. the source image is encoded (posterior mean times ``scale_factor``) and **inverted** with DDIM under the
   *source* prompt, guidance 1 (:meth:`cgmbench.diffusion.DDIMSampler.invert`): latents ``[z0, ..., z_T]``;
2. two branches start from ``z_T``, the source prompt (row 0) and the target prompt (row 1), and run the CompVis
   DDIM sampler (eta 0, classifier-free guidance ``w`` with the empty prompt, both branches in one batch) with an
   attention controller on the same U-Net (:mod:`baselines.editing.attention_control`): ``edit=replace`` (word
   swap; needs equal token counts), ``refine`` (token alignment) or ``auto`` (replace when the counts agree, else
   refine); ``reweight`` scales the target's edited words (the tokens with no aligned source token, or the swapped
   ones) on top; ``cross_replace_steps``, ``self_replace_steps``; ``local_blend`` on the rule's blend words;
3. ``inversion=direct`` (default) puts the source branch back on the inverted trajectory after every step
   (DirectInversion / PnP Inversion, Ju et al. 2024: the stored per-step offsets, zero-cost), so the source
   branch reproduces ``z0`` exactly whatever ``w``; ``inversion=ddim`` leaves it free (plain DDIM inversion, which
   drifts for ``w > 1``; null-text inversion is not implemented).

The target branch is decoded. Prompts: :func:`baselines.editing.prompts.edit_prompt_pair` for the shapes
instructions; conditions that carry ``extras["source_prompts"]`` (PIE-Bench) use them as the source prompts and the
texts as the targets. There is no randomness: the seed is not used (eta 0, inversion instead of noise).
"""

from __future__ import annotations

from typing import Sequence

import torch

from baselines.editing.attention_control import (
    AttentionRefine,
    AttentionReplace,
    AttentionReweight,
    LocalBlend,
    attention_control,
    get_refinement_mapper,
    get_replacement_mapper,
    get_time_words_attention_alpha,
    prompt_token_ids,
    word_positions,
)
from baselines.editing.generator import _LatentEditor
from baselines.editing.prompts import RULE, PromptPair, edit_prompt_pair
from baselines.ldm.sampling import check_ddim_steps
from cgmbench.diffusion import DDIMSampler
from cgmbench.errors import CgmbenchError
from cgmbench.generator import Knob, to_uint8

EDIT_MODES = ("auto", "replace", "refine")


def _knobs() -> tuple[Knob, ...]:
    return (
        Knob("guidance_scale", 2.0, "classifier-free guidance w of both branches, the empty prompt as the "
             "unconditional input: e_u + w (e_c - e_u); 1 = none", minimum=0.0, maximum=50.0),
        Knob("steps", 25, "DDIM steps of the inversion and of the edit (CompVis uniform discretisation)", kind="int",
             minimum=1, maximum=1000),
        Knob("edit", "auto", "cross-attention control: replace (word swap, equal token counts), refine (token "
             "alignment), auto (replace when the counts agree, else refine)", kind="choice", choices=EDIT_MODES),
        Knob("cross_replace_steps", 0.8, "fraction of the num_steps + 1 schedule, from the start, during which the "
             "target's cross-attention comes from the source", minimum=0.0, maximum=1.0),
        Knob("self_replace_steps", 0.4, "fraction of the steps, from the start, during which the target's "
             "self-attention (layers with <= (h w) / 4 queries) is the source's", minimum=0.0, maximum=1.0),
        Knob("reweight", 1.0, "attention reweighting of the target's edited words (1 = none)", minimum=0.0,
             maximum=10.0),
        Knob("local_blend", "on", "keep the source's latents outside the blend words' attention (threshold 0.3, "
             "from 20% of the steps)", kind="choice", choices=("on", "off")),
        Knob("inversion", "direct", "direct: the source branch follows the inverted latents (DirectInversion); "
             "ddim: plain DDIM inversion", kind="choice", choices=("direct", "ddim")),
    )


def edit_words(tokenizer, pair: PromptPair) -> list[int]:
    """Token positions of the target prompt's edited words: those the alignment finds no source token for."""
    _, alphas = get_refinement_mapper(tokenizer, [pair.source, pair.target])
    n = len(prompt_token_ids(tokenizer, pair.target))
    return [j for j in range(n) if alphas[0, j] == 0]


def build_controller(tokenizer, pair: PromptPair, *, num_steps: int, edit: str, cross_replace_steps: float,
                     self_replace_steps: float, reweight: float, local_blend: bool, latent_hw: tuple[int, int]):
    """The prompt-to-prompt controller of one edit (``[source, target]``), as the knobs say."""
    prompts = [pair.source, pair.target]
    n_src, n_tgt = (len(prompt_token_ids(tokenizer, p)) for p in prompts)
    if edit == "auto":
        edit = "replace" if n_src == n_tgt else "refine"
    common = dict(num_prompts=2, num_steps=num_steps,
                  cross_replace_alpha=get_time_words_attention_alpha(tokenizer, prompts, num_steps,
                                                                     cross_replace_steps),
                  self_replace_steps=self_replace_steps, self_max_queries=latent_hw[0] * latent_hw[1] // 4)
    blend = None
    if local_blend and (pair.blend_source or pair.blend_target):
        alpha_layers = torch.zeros(2, tokenizer.context_length)
        for row, (text, words) in enumerate(((pair.source, pair.blend_source), (pair.target, pair.blend_target))):
            for w in words:
                alpha_layers[row, word_positions(tokenizer, text, w)] = 1.0
        blend = LocalBlend(alpha_layers, num_steps)
    if edit == "replace":
        try:
            controller = AttentionReplace(get_replacement_mapper(tokenizer, prompts), local_blend=blend, **common)
        except ValueError as e:
            raise CgmbenchError(f"p2p edit=replace: {e}", "use --knob edit=refine or edit=auto") from None
    else:
        mapper, alphas = get_refinement_mapper(tokenizer, prompts)
        controller = AttentionRefine(mapper, alphas, local_blend=blend, **common)
    if reweight != 1.0:
        eq = torch.ones(1, tokenizer.context_length)
        eq[0, edit_words(tokenizer, pair)] = float(reweight)
        controller = AttentionReweight(eq, prev_controller=controller, local_blend=blend, **common)
    return controller


class PromptToPromptGenerator(_LatentEditor):
    """Prompt-to-prompt with DDIM inversion (see the module docstring)."""

    default_name = "p2p"
    description = ("prompt-to-prompt (training-free): DDIM-invert the source, regenerate it and the target prompt "
                   "with the source's attention maps injected")
    knobs = _knobs()

    def __init__(self, base, device: str = "cpu"):
        super().__init__(base, device=device)
        extra = self.checkpoint.extra
        extra.pop("strength_convention", None)
        extra.update(prompt_rule=RULE, method="prompt-to-prompt (attention replace/refine/reweight, local blend) "
                     "on DDIM-inverted sources; controls on the conditional rows only, as the official code")

    def _pairs(self, conditions) -> list[PromptPair]:
        texts = conditions.texts
        if texts is None:
            raise CgmbenchError("p2p edits towards a target prompt; the conditions carry no text")
        extras = getattr(conditions, "extras", None) or {}
        sources = extras.get("source_prompts")
        if sources is None:
            return [edit_prompt_pair(t) for t in texts]
        pairs = []
        for i, (s, t) in enumerate(zip(sources, texts)):
            words = (extras.get("blended_words") or [None] * len(texts))[i]
            words = str(words).split() if words else []  # PIE-Bench "source_word target_word"
            pairs.append(PromptPair(s, t, "", tuple(words[:1]), tuple(words[1:2])))
        return pairs

    @torch.no_grad()
    def generate(self, conditions, seeds: Sequence[int], **knobs) -> torch.Tensor:
        images, _ = self._check(conditions, seeds)
        k = self.resolve_knobs(knobs)
        base, dev = self.base, self.device
        check_ddim_steps(base.alphas_cumprod, k["steps"], 0.0)
        tokenizer = getattr(base.text_encoder, "tokenizer", None)
        if tokenizer is None or not hasattr(tokenizer, "pad"):
            raise CgmbenchError("p2p aligns prompts word by word; this ldm checkpoint's text encoder has no "
                                "word-level tokenizer", "use --model p2p:shapes-t2i-tiny")
        pairs = self._pairs(conditions)
        w = k["guidance_scale"]
        out = []
        for i, pair in enumerate(pairs):
            x = images[i:i + 1].to(dev).float() / 127.5 - 1.0
            with base.autocast():
                z0 = base.vae.encode(x).mode().float() * base.scale_factor
            c = base.encode_prompts([pair.source, pair.target])[0]
            uc = base.encode_prompts(["", ""])[0] if w != 1.0 else None
            sampler = DDIMSampler(base.apply_model, base.alphas_cumprod.to(dev))
            with base.autocast():
                inverted = sampler.invert(z0, k["steps"], conditioning=c[:1])
            total = len(sampler.ddim_timesteps)
            controller = build_controller(
                tokenizer, pair, num_steps=total, edit=k["edit"], cross_replace_steps=k["cross_replace_steps"],
                self_replace_steps=k["self_replace_steps"], reweight=k["reweight"],
                local_blend=k["local_blend"] == "on", latent_hw=tuple(z0.shape[-2:]))
            z = inverted[-1].float().expand(2, -1, -1, -1).clone()
            with attention_control(base.unet, controller), base.autocast():
                for step, index in enumerate(range(total - 1, -1, -1)):
                    controller.cur_step = step
                    t = torch.full((2,), int(sampler.ddim_timesteps[index]), dtype=torch.int64, device=dev)
                    if uc is not None:
                        e_u, e_c = base.apply_model(torch.cat([z, z]), torch.cat([t, t]),
                                                    torch.cat([uc, c])).float().chunk(2)
                        e_t = e_u + w * (e_c - e_u)
                    else:
                        e_t = base.apply_model(z, t, c).float()
                    controller.between_steps()
                    z, _ = sampler._step(z, e_t, index, torch.zeros_like(z), 1.0)
                    if k["inversion"] == "direct":
                        z = torch.cat([inverted[index].float(), z[1:]])
                    z = controller.step_callback(z)
                img = base.vae.decode(z[1:].float() / base.scale_factor).float()
            out.append(to_uint8(img).cpu())
        return torch.cat(out)
