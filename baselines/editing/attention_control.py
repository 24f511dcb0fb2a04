"""Prompt-to-prompt attention control (Hertz et al. 2022) on the CompVis U-Net, in the official naming.

Written from the paper and from reading google/prompt-to-prompt (``ptp_utils.py``, ``seq_aligner.py``; Apache-2.0),
not copied. The names are the official ones: :func:`register_attention_control`, :class:`AttentionControl`,
:class:`AttentionStore`, :class:`AttentionControlEdit`, :class:`AttentionReplace`, :class:`AttentionRefine`,
:class:`AttentionReweight`, :class:`LocalBlend`, :func:`get_equalizer`, :func:`get_time_words_attention_alpha`,
:func:`get_replacement_mapper`, :func:`get_refinement_mapper`.

**Hook.** :func:`register_attention_control` sets the ``processor`` of every
:class:`baselines.ldm.unet.CrossAttention` of a U-Net (the same network, never a copy) to an
:class:`AttentionProcessor`, which computes the attention probabilities explicitly,
``attn = softmax(q k^T / sqrt(d_head))``, hands them to ``controller(attn, is_cross, place_in_unet)`` and multiplies
what it returns with ``v``. With an :class:`EmptyControl` the layer's output equals the built-in
scaled-dot-product attention (tested to 1e-5). :func:`attention_control` installs a controller for a ``with``
block and restores the previous processors afterwards.

Conventions
-----------
* ``attn``: float ``[B, heads, queries, keys]``; ``is_cross``: the layer attends to the text (``attn2``), not to the
  image (``attn1``); ``place_in_unet``: ``"down"`` (``input_blocks``), ``"mid"``, ``"up"`` (``output_blocks``).
* Batch rows: the ``P`` prompts (row 0 = the source prompt, rows 1.. = edited prompts), preceded by their ``P``
  unconditional rows when the sampler runs classifier-free guidance in one doubled batch. Controllers change only
  the conditional rows (as the official code), and of those only the edited prompts' rows, from row 0's maps.
* Steps: the sampler sets ``controller.cur_step`` (0 .. num_steps - 1) before each model call, calls
  ``between_steps()`` after it and ``x_t = step_callback(x_t)`` after each sampler step (local blending).
* Token maps: ``[P - 1, L]`` over the encoder's ``L`` token positions (``<start> w1 .. wn <end> <pad> ..``).
  Word positions come from a word-level tokenizer (:func:`word_positions`); the shapes word encoder has one token
  per word, so a word swap keeps the token count and the replacement mapper is the identity.

Editing controls (cross-attention of an edited prompt during the ``cross_replace_steps`` window, per token
``alpha``: ``alpha * replaced + (1 - alpha) * own``):

* :class:`AttentionReplace` (word swap, equal token counts): the source's maps, through the replacement mapper;
* :class:`AttentionRefine` (added / removed words): aligned tokens take the source's maps (global alignment of the
  token sequences), new tokens keep their own;
* :class:`AttentionReweight`: the (replaced) maps times an ``equalizer`` per token (not renormalised, as official),
  optionally on top of a previous controller's replacement.

Self-attention of an edited prompt is the source's during ``self_replace_steps``, only in layers with at most
``self_max_queries`` queries (official: 32**2 at 64**2 latents, i.e. all but the full-resolution layers; here the
same rule, ``(h w) / 4`` for ``h x w`` latents). :class:`LocalBlend`: a mask from the summed cross-attention of the
blend words (source and target words, union), max-pooled 3x3, divided by its maximum, thresholded (0.3), then
``x_t = x_src + mask (x_t - x_src)`` after ``start_blend`` of the steps. The official blend averages the 16**2 maps
of SD (latents 64**2); the tiny LDM's cross-attention runs at latent/1 and latent/2, and all its maps are averaged
after nearest upsampling to the latent size.
"""

from __future__ import annotations

import contextlib
import math
import re
from typing import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F

from baselines.ldm.unet import BasicTransformerBlock, CrossAttention

__all__ = [
    "AttentionProcessor", "register_attention_control", "attention_control", "AttentionControl", "EmptyControl",
    "AttentionStore", "LocalBlend", "AttentionControlEdit", "AttentionReplace", "AttentionRefine",
    "AttentionReweight", "get_equalizer", "get_time_words_attention_alpha", "get_replacement_mapper",
    "get_refinement_mapper", "word_positions", "prompt_token_ids",
]

PLACES = ("down", "mid", "up")


# ----------------------------------------------------------------------------- the hook


class AttentionProcessor:
    """One layer's attention with explicit probabilities passed through ``controller``."""

    def __init__(self, controller: "AttentionControl", is_cross: bool, place_in_unet: str):
        self.controller, self.is_cross, self.place_in_unet = controller, is_cross, place_in_unet

    def __call__(self, module: CrossAttention, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        ctx = x if context is None else context
        b = x.shape[0]
        q, k, v = (t.reshape(b, -1, module.heads, module.dim_head).transpose(1, 2)
                   for t in (module.to_q(x), module.to_k(ctx), module.to_v(ctx)))
        attn = (q @ k.transpose(-1, -2) * module.scale).softmax(dim=-1)  # [B, heads, queries, keys]
        attn = self.controller(attn, self.is_cross, self.place_in_unet)
        out = (attn.to(v.dtype) @ v).transpose(1, 2).reshape(b, -1, module.heads * module.dim_head)
        return module.to_out(out)


def _attention_layers(unet) -> list[tuple[CrossAttention, bool, str]]:
    layers = []
    for place, part in zip(PLACES, (unet.input_blocks, unet.middle_block, unet.output_blocks)):
        for m in part.modules():
            if isinstance(m, BasicTransformerBlock):
                layers += [(m.attn1, False, place), (m.attn2, True, place)]
    return layers


def register_attention_control(unet, controller: "AttentionControl | None") -> int:
    """Route every transformer attention layer of ``unet`` through ``controller`` (None: back to the built-in
    attention). Returns the number of layers; sets ``controller.num_att_layers``."""
    layers = _attention_layers(unet)
    if not layers:
        raise ValueError("the U-Net has no spatial-transformer attention layers to control")
    for module, is_cross, place in layers:
        module.processor = None if controller is None else AttentionProcessor(controller, is_cross, place)
    if controller is not None:
        controller.num_att_layers = len(layers)
    return len(layers)


@contextlib.contextmanager
def attention_control(unet, controller: "AttentionControl"):
    """``with attention_control(unet, controller): ...``: the controller for the block, the previous processors
    restored afterwards (also on error)."""
    layers = _attention_layers(unet)
    before = [m.processor for m, _, _ in layers]
    register_attention_control(unet, controller)
    try:
        yield controller
    finally:
        for (m, _, _), p in zip(layers, before):
            m.processor = p


# ----------------------------------------------------------------------------- controllers


class AttentionControl:
    """Base controller: sees every layer's probabilities; :meth:`forward` edits the conditional rows."""

    def __init__(self, num_prompts: int = 1):
        self.num_prompts = int(num_prompts)
        self.cur_step = 0
        self.num_att_layers = 0

    def __call__(self, attn: torch.Tensor, is_cross: bool, place_in_unet: str) -> torch.Tensor:
        p = self.num_prompts
        if attn.shape[0] not in (p, 2 * p):
            raise ValueError(f"the controller expects {p} (or {2 * p} with guidance) batch rows, got {attn.shape[0]}")
        cond = self.forward(attn[-p:], is_cross, place_in_unet)
        return cond if attn.shape[0] == p else torch.cat([attn[:p], cond])

    def forward(self, attn: torch.Tensor, is_cross: bool, place_in_unet: str) -> torch.Tensor:
        return attn

    def between_steps(self) -> None:
        """Called by the sampler after the model call of each step."""

    def step_callback(self, x_t: torch.Tensor) -> torch.Tensor:
        """Called by the sampler after each step with the ``[P, C, h, w]`` latents; returns them (edited)."""
        return x_t

    def reset(self) -> None:
        self.cur_step = 0


class EmptyControl(AttentionControl):
    """Changes nothing (the hook's no-edit reference)."""


class AttentionStore(AttentionControl):
    """Keeps the conditional rows' cross-attention maps, averaged over heads (``[P, queries, L]`` per layer), summed
    over the steps so far in ``attention_store`` (``"<place>_cross"`` -> list over layers)."""

    def __init__(self, num_prompts: int = 1):
        super().__init__(num_prompts)
        self.step_store: dict[str, list[torch.Tensor]] = {}
        self.attention_store: dict[str, list[torch.Tensor]] = {}

    def forward(self, attn, is_cross, place_in_unet):
        if is_cross:
            self.step_store.setdefault(f"{place_in_unet}_cross", []).append(attn.float().mean(1))
        return attn

    def between_steps(self) -> None:
        for key, maps in self.step_store.items():
            if key in self.attention_store:
                self.attention_store[key] = [a + m for a, m in zip(self.attention_store[key], maps)]
            else:
                self.attention_store[key] = list(maps)
        self.step_store = {}

    def reset(self) -> None:
        super().reset()
        self.step_store, self.attention_store = {}, {}


class LocalBlend:
    """Keep the source's latents outside the region the blend words attend to (see the module docstring).

    ``alpha_layers``: float ``[P, L]``, 1 at the blend words' token positions of each prompt.
    """

    def __init__(self, alpha_layers: torch.Tensor, num_steps: int, threshold: float = 0.3, start_blend: float = 0.2,
                 kernel: int = 1):
        self.alpha_layers = alpha_layers.float()
        self.threshold = float(threshold)
        self.start_step = int(start_blend * num_steps)
        self.kernel = int(kernel)
        self.mask: torch.Tensor | None = None  # the last mask, [P - 1, 1, h, w] (for inspection)

    def __call__(self, x_t: torch.Tensor, attention_store: Mapping[str, list[torch.Tensor]], step: int) -> torch.Tensor:
        if step < self.start_step:
            return x_t
        size = x_t.shape[-2:]
        maps = []
        for key in (f"{p}_cross" for p in PLACES):
            for m in attention_store.get(key, []):
                side = math.isqrt(m.shape[1])
                if side * side != m.shape[1]:
                    continue
                words = (m.reshape(m.shape[0], side, side, -1) * self.alpha_layers[:, None, None, :].to(m)).sum(-1)
                maps.append(F.interpolate(words[:, None], size=size, mode="nearest"))
        if not maps:
            return x_t
        k = self.kernel
        mask = F.max_pool2d(torch.stack(maps).mean(0), 2 * k + 1, stride=1, padding=k)
        mask = mask / mask.flatten(1).amax(1).clamp_min(1e-12)[:, None, None, None]
        mask = mask.gt(self.threshold)
        mask = mask[:1] | mask[1:]  # union of the source's and each edited prompt's region
        self.mask = mask
        # x_src + mask (x_t - x_src) for the binary mask, exactly
        return torch.cat([x_t[:1], torch.where(mask, x_t[1:], x_t[:1])])


class AttentionControlEdit(AttentionStore):
    """Common part of the editing controllers (see the module docstring).

    ``cross_replace_alpha``: ``[num_steps + 1, P - 1, L]`` (:func:`get_time_words_attention_alpha`);
    ``self_replace_steps``: a fraction ``s`` (steps ``[0, int(num_steps s))``) or a ``(start, end)`` pair.
    """

    def __init__(self, num_prompts: int, num_steps: int, cross_replace_alpha: torch.Tensor,
                 self_replace_steps: float | tuple[float, float], local_blend: LocalBlend | None = None,
                 self_max_queries: int | None = None):
        super().__init__(num_prompts)
        if num_prompts < 2:
            raise ValueError("an editing controller needs the source prompt and at least one edited prompt")
        if tuple(cross_replace_alpha.shape[:2]) != (num_steps + 1, num_prompts - 1):
            raise ValueError(f"cross_replace_alpha must be [num_steps + 1, P - 1, L] = [{num_steps + 1}, "
                             f"{num_prompts - 1}, L], got {tuple(cross_replace_alpha.shape)}")
        if isinstance(self_replace_steps, (int, float)):
            self_replace_steps = (0.0, float(self_replace_steps))
        self.num_self_replace = (int(num_steps * self_replace_steps[0]), int(num_steps * self_replace_steps[1]))
        self.cross_replace_alpha = cross_replace_alpha.float()
        self.local_blend = local_blend
        self.self_max_queries = self_max_queries

    def step_callback(self, x_t):
        if self.local_blend is not None:
            x_t = self.local_blend(x_t, self.attention_store, self.cur_step)
        return x_t

    def replace_self_attention(self, attn_base: torch.Tensor, attn_replace: torch.Tensor) -> torch.Tensor:
        if self.self_max_queries is None or attn_replace.shape[2] <= self.self_max_queries:
            return attn_base.unsqueeze(0).expand_as(attn_replace)
        return attn_replace

    def replace_cross_attention(self, attn_base: torch.Tensor, attn_replace: torch.Tensor) -> torch.Tensor:
        """``attn_base`` ``[heads, queries, L]`` (the source), ``attn_replace`` ``[P - 1, heads, queries, L]``."""
        raise NotImplementedError

    def forward(self, attn, is_cross, place_in_unet):
        super().forward(attn, is_cross, place_in_unet)  # the store keeps the maps before editing (local blend)
        if not is_cross and not self.num_self_replace[0] <= self.cur_step < self.num_self_replace[1]:
            return attn
        attn_base, attn_replace = attn[0], attn[1:]
        if is_cross:
            alpha = self.cross_replace_alpha[self.cur_step].to(attn)[:, None, None, :]
            new = self.replace_cross_attention(attn_base, attn_replace) * alpha + (1 - alpha) * attn_replace
        else:
            new = self.replace_self_attention(attn_base, attn_replace)
        return torch.cat([attn[:1], new.to(attn.dtype)])


class AttentionReplace(AttentionControlEdit):
    """Word swap: the edited prompts' cross-attention is the source's, mapped by ``mapper`` ``[P - 1, L, L]``."""

    def __init__(self, mapper: torch.Tensor, **kw):
        super().__init__(**kw)
        self.mapper = mapper.float()

    def replace_cross_attention(self, attn_base, attn_replace):
        return torch.einsum("hqw,pwn->phqn", attn_base, self.mapper.to(attn_base))


class AttentionRefine(AttentionControlEdit):
    """Added or removed words: ``mapper`` ``[P - 1, L]`` (long, the source position of each token) and ``alphas``
    ``[P - 1, L]`` (1 where the token is aligned to the source, 0 for new tokens)."""

    def __init__(self, mapper: torch.Tensor, alphas: torch.Tensor, **kw):
        super().__init__(**kw)
        self.mapper, self.alphas = mapper.long(), alphas.float()

    def replace_cross_attention(self, attn_base, attn_replace):
        mapped = attn_base[:, :, self.mapper].permute(2, 0, 1, 3)  # [P - 1, heads, queries, L]
        a = self.alphas.to(attn_base)[:, None, None, :]
        return mapped * a + attn_replace * (1 - a)


class AttentionReweight(AttentionControlEdit):
    """Scale token columns of the (replaced) cross-attention by ``equalizer`` ``[P - 1, L]``; ``prev_controller``:
    an :class:`AttentionReplace` / :class:`AttentionRefine` whose replacement is reweighted (None: the source's
    maps as they are)."""

    def __init__(self, equalizer: torch.Tensor, prev_controller: AttentionControlEdit | None = None, **kw):
        super().__init__(**kw)
        self.equalizer = equalizer.float()
        self.prev_controller = prev_controller

    def replace_cross_attention(self, attn_base, attn_replace):
        if self.prev_controller is not None:
            base = self.prev_controller.replace_cross_attention(attn_base, attn_replace)
        else:
            base = attn_base.unsqueeze(0).expand_as(attn_replace)
        return base * self.equalizer.to(attn_base)[:, None, None, :]


# ----------------------------------------------------------------------------- token maps


def prompt_token_ids(tokenizer, text: str) -> list[int]:
    """The non-padding token ids of ``text`` (``<start> ... <end>``), from a tokenizer called as
    ``tokenizer([text]) -> (ids [1, L], info)`` with a ``pad`` id (the shapes word tokenizer)."""
    ids, _ = tokenizer([text])
    return [int(i) for i in ids[0].tolist() if int(i) != tokenizer.pad]


def word_positions(tokenizer, text: str, word: str | int) -> list[int]:
    """Token positions of ``word`` in ``text`` for a word-level tokenizer (one token per word, after ``<start>``),
    or ``[word]`` for an integer position. Words are matched case-insensitively, every occurrence."""
    if isinstance(word, int):
        return [word]
    words = re.findall(r"[a-z]+", text.lower())
    room = tokenizer.context_length - 2
    return [i + 1 for i, w in enumerate(words[:room]) if w == word.lower()]


def get_replacement_mapper(tokenizer, prompts: Sequence[str]) -> torch.Tensor:
    """``[P - 1, L, L]`` identity mappers: each edited prompt must have the source's token count (a word swap)."""
    src = prompt_token_ids(tokenizer, prompts[0])
    length = tokenizer.context_length
    for p in prompts[1:]:
        if len(prompt_token_ids(tokenizer, p)) != len(src):
            raise ValueError(f"attention replace needs prompts of the same token count: {prompts[0]!r} has "
                             f"{len(src)}, {p!r} has {len(prompt_token_ids(tokenizer, p))}; use refine")
    return torch.eye(length).expand(len(prompts) - 1, length, length).clone()


def _align(src: list[int], tgt: list[int], gap: int = 0, match: int = 1, mismatch: int = -1) -> list[int]:
    """Global (Needleman-Wunsch) alignment; for each target token the source position of its match, or -1."""
    n, m = len(src), len(tgt)
    score = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        score[i][0] = i * gap
    for j in range(1, m + 1):
        score[0][j] = j * gap
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            diag = score[i - 1][j - 1] + (match if src[i - 1] == tgt[j - 1] else mismatch)
            score[i][j] = max(diag, score[i - 1][j] + gap, score[i][j - 1] + gap)
    out, i, j = [-1] * m, n, m
    while i > 0 and j > 0:
        if src[i - 1] == tgt[j - 1] and score[i][j] == score[i - 1][j - 1] + match:
            out[j - 1] = i - 1
            i, j = i - 1, j - 1
        elif score[i][j] == score[i][j - 1] + gap:
            j -= 1
        else:
            i -= 1
    return out


def get_refinement_mapper(tokenizer, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mapper [P - 1, L] long, alphas [P - 1, L])`` from aligning each edited prompt's tokens to the source's.

    Aligned tokens map to their source position (alpha 1), new tokens keep their own maps (alpha 0); the k-th
    padding position maps to the source's k-th padding position (alpha 1)."""
    length = tokenizer.context_length
    src = prompt_token_ids(tokenizer, prompts[0])
    mappers, alphas = [], []
    for p in prompts[1:]:
        tgt = prompt_token_ids(tokenizer, p)
        aligned = _align(src, tgt)
        mapper = torch.zeros(length, dtype=torch.long)
        alpha = torch.zeros(length)
        for j, i in enumerate(aligned):
            if i >= 0:
                mapper[j], alpha[j] = i, 1.0
        for k, j in enumerate(range(len(tgt), length)):
            mapper[j], alpha[j] = min(len(src) + k, length - 1), 1.0
        mappers.append(mapper)
        alphas.append(alpha)
    return torch.stack(mappers), torch.stack(alphas)


def get_equalizer(tokenizer, text: str, words: Iterable[str | int], values: Iterable[float]) -> torch.Tensor:
    """``[1, L]`` ones with ``values`` at the token positions of ``words`` in ``text``."""
    eq = torch.ones(1, tokenizer.context_length)
    for word, value in zip(words, values):
        for pos in word_positions(tokenizer, text, word):
            eq[:, pos] = float(value)
    return eq


def get_time_words_attention_alpha(tokenizer, prompts: Sequence[str], num_steps: int,
                                   cross_replace_steps: float | tuple | Mapping) -> torch.Tensor:
    """``[num_steps + 1, P - 1, L]``: 1 where an edited prompt's token takes the source's cross-attention.

    ``cross_replace_steps``: a fraction ``e`` (window ``[0, e)``), a ``(start, end)`` pair, or a dict word ->
    either, with ``"default_"`` for the other tokens (official form). Step ``i`` of the window is
    ``int(start (num_steps + 1)) <= i < int(end (num_steps + 1))``.
    """
    if not isinstance(cross_replace_steps, Mapping):
        cross_replace_steps = {"default_": cross_replace_steps}
    cross_replace_steps = dict(cross_replace_steps)
    cross_replace_steps.setdefault("default_", (0.0, 1.0))

    def window(bounds) -> tuple[int, int]:
        if isinstance(bounds, (int, float)):
            bounds = (0.0, float(bounds))
        return int(bounds[0] * (num_steps + 1)), int(bounds[1] * (num_steps + 1))

    length = tokenizer.context_length
    alpha = torch.zeros(num_steps + 1, len(prompts) - 1, length)
    lo, hi = window(cross_replace_steps["default_"])
    alpha[lo:hi] = 1.0
    for word, bounds in cross_replace_steps.items():
        if word == "default_":
            continue
        lo, hi = window(bounds)
        for p, text in enumerate(prompts[1:]):
            for pos in word_positions(tokenizer, text, word):
                alpha[:, p, pos] = 0.0
                alpha[lo:hi, p, pos] = 1.0
    return alpha
