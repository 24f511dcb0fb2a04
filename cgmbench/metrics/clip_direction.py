"""CLIP directional similarity and CLIP image similarity of image edits (InstructPix2Pix's definitions).

With L2-normalised CLIP embeddings ``I0`` (source image), ``I1`` (edited image), ``T0`` (source caption) and
``T1`` (target caption), per edit:

    clip_direction = cos(I1 - I0, T1 - T0)     (does the image change in the direction the caption changes?)
    clip_image     = cos(I0, I1)               (how much of the source image is kept?)

as ``ClipSimilarity.forward`` of timothybrooks/instruct-pix2pix ``metrics/clip_similarity.py`` (its ``sim_direction``
and ``sim_image``; embeddings normalised *before* the differences). InstructPix2Pix plots ``clip_direction`` (x)
against ``clip_image`` (y) over its image-guidance scale. When the edited image embeds exactly like the source
(``I1 == I0``, nothing was edited) the direction similarity is 0, as ``torch.nn.functional.cosine_similarity``
returns; identical caption embeddings (``T1 == T0``) leave the direction undefined and raise.

The networks are injected: ``encode_image(images)`` takes float32 ``[N, 3, H, W]`` **in [0, 1]** and returns
``[N, D]`` (it does its own resize and mean/std normalisation: InstructPix2Pix uses ViT-L/14 with bicubic
``F.interpolate`` to 224 and no crop, MagicBrush and ImagenHub ViT-B/32 with CLIP's own preprocess);
``encode_text(prompts)`` takes a list of strings and returns ``[N, D]``. The backbone is part of the result
name (``clip_direction[ViT-L/14]``): numbers from different backbones or preprocessing are not comparable.

Input guard (:func:`cgmbench.metrics.masked.unit_images`): images are uint8 or floats in ``[0, 1]``. Two bugs of
reference code are refused rather than silently scored: InstructPix2Pix's ``compute_metrics.py`` passes ``[-1, 1]``
tensors to an encoder whose contract is ``[0, 1]`` (a float with negative values is refused), and ImagenHub's
``MetricCLIPScore`` multiplies uint8 pixels by 255 again (a float above 1, or a wider integer type, is refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from cgmbench.errors import CgmbenchError
from cgmbench.metrics.masked import unit_images

ImageEncoder = Callable[[torch.Tensor], Any]
TextEncoder = Callable[[list], Any]


@dataclass(frozen=True)
class ClipEditScore:
    """Per-edit values ``(N,)`` (float64 cosines in ``[-1, 1]``) of one CLIP editing metric and backbone."""

    metric: str
    backbone: str
    values: np.ndarray

    @property
    def key(self) -> str:
        return f"{self.metric}[{self.backbone}]"

    def mean(self) -> float:
        return float(np.mean(self.values))


def _unit_rows(emb: Any, name: str, n: int) -> np.ndarray:
    arr = emb.detach().cpu().double().numpy() if isinstance(emb, torch.Tensor) else np.asarray(emb, np.float64)
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] < 1:
        raise CgmbenchError(f"{name} must be embeddings [{n}, D], got shape {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise CgmbenchError(f"{name} contains NaN or Inf")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise CgmbenchError(f"{name} row {int(np.argmin(norms))} is all zeros; its direction is undefined")
    return arr / norms


def _encode_images(encode_image: ImageEncoder, images: Any, name: str) -> np.ndarray:
    x = unit_images(images, name).float()
    with torch.no_grad():
        return _unit_rows(encode_image(x), f"encode_image({name})", x.shape[0])


def _encode_texts(encode_text: TextEncoder, prompts: Sequence[str], name: str, n: int) -> np.ndarray:
    if isinstance(prompts, str) or len(prompts) != n or not all(isinstance(p, str) for p in prompts):
        raise CgmbenchError(f"{name} must be a list of {n} strings, one per image")
    with torch.no_grad():
        return _unit_rows(encode_text(list(prompts)), f"encode_text({name})", n)


def direction_similarity(source_image_emb: Any, edited_image_emb: Any, source_text_emb: Any,
                         target_text_emb: Any) -> np.ndarray:
    """``cos(I1 - I0, T1 - T0)`` per row of ``[N, D]`` embeddings (each normalised first), float64 ``(N,)``."""
    n = np.shape(source_image_emb)[0] if np.ndim(source_image_emb) else -1
    i0 = _unit_rows(source_image_emb, "source_image_emb", n)
    i1 = _unit_rows(edited_image_emb, "edited_image_emb", n)
    t0 = _unit_rows(source_text_emb, "source_text_emb", n)
    t1 = _unit_rows(target_text_emb, "target_text_emb", n)
    di, dt = i1 - i0, t1 - t0
    ni, nt = np.linalg.norm(di, axis=1), np.linalg.norm(dt, axis=1)
    if np.any(nt == 0):
        raise CgmbenchError(f"source and target captions of edit {int(np.argmin(nt))} embed identically: the text "
                            "direction T1 - T0 is zero and the direction similarity undefined")
    cos = np.einsum("nd,nd->n", di, dt) / (np.where(ni > 0, ni, 1.0) * nt)
    return np.where(ni > 0, cos, 0.0)


def clip_direction_similarity(source_images: Any, edited_images: Any, source_prompts: Sequence[str],
                              target_prompts: Sequence[str], *, encode_image: ImageEncoder,
                              encode_text: TextEncoder, backbone: str) -> ClipEditScore:
    """CLIP directional similarity ``cos(I1 - I0, T1 - T0)`` of each edit.

    Prompts are used as given (strip PIE-Bench's ``[`` ``]`` markers first, as its evaluation does).
    """
    i0 = _encode_images(encode_image, source_images, "source_images")
    i1 = _encode_images(encode_image, edited_images, "edited_images")
    if i0.shape != i1.shape:
        raise CgmbenchError(f"{i0.shape[0]} source but {i1.shape[0]} edited images")
    t0 = _encode_texts(encode_text, source_prompts, "source_prompts", len(i0))
    t1 = _encode_texts(encode_text, target_prompts, "target_prompts", len(i0))
    return ClipEditScore("clip_direction", backbone, direction_similarity(i0, i1, t0, t1))


def clip_image_similarity(source_images: Any, edited_images: Any, *, encode_image: ImageEncoder,
                          backbone: str) -> ClipEditScore:
    """CLIP image similarity ``cos(I0, I1)`` of each edit."""
    i0 = _encode_images(encode_image, source_images, "source_images")
    i1 = _encode_images(encode_image, edited_images, "edited_images")
    if i0.shape != i1.shape:
        raise CgmbenchError(f"{i0.shape[0]} source but {i1.shape[0]} edited images")
    return ClipEditScore("clip_image", backbone, np.einsum("nd,nd->n", i0, i1))
