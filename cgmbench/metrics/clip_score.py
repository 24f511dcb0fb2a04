"""CLIP score: image-text agreement as the scaled cosine similarity of CLIP embeddings.

Per pair ``(image_i, text_i)`` with embeddings ``E_I``, ``E_C``:

    CLIPScore_i = w * max(cos(E_I, E_C), 0),    w = 100

``w = 100`` is torchmetrics' scale (``CLIPScore`` computes ``100 * cos`` per pair after L2
normalisation); Hessel et al. (2021) use ``w = 2.5`` ("CLIP-S") with ViT-B/32. Papers mix
both scales and the raw cosine (~0.3), so always record ``scale``.

Aggregation differs between the two references: Hessel et al. average the per-pair clamped
values, torchmetrics clamps the *mean*: ``max(mean_i 100 cos_i, 0)``. The two agree whenever
no pair has a negative cosine (the usual case for CLIP); torchmetrics' number is
``max(clip_score(..., clamp=False).mean(), 0)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cgmbench.metrics import _checks


def clip_score(image_emb: Any, text_emb: Any, scale: float = 100.0, clamp: bool = True) -> np.ndarray:
    """Per-pair CLIP score ``scale * max(cos, 0)`` (``clamp=False``: ``scale * cos``), shape ``(N,)``, float64.

    Args:
        image_emb: image embeddings ``(N, D)`` (un-normalised ``get_image_features`` output is fine).
        text_emb: text embeddings ``(N, D)`` of the matching captions, row ``i`` paired with image ``i``.
        scale: 100 (torchmetrics) or 2.5 (Hessel et al. CLIP-S).
        clamp: clamp each pair's cosine at 0 (the paper's definition).
    """
    a = _checks.features(image_emb, "image_emb")
    b = _checks.features(text_emb, "text_emb")
    _checks.same_width(a, b, "image_emb", "text_emb")
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"image_emb has {a.shape[0]} rows but text_emb has {b.shape[0]}; CLIP score pairs row i of each"
        )
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    for name, norms in (("image_emb", na), ("text_emb", nb)):
        if np.any(norms == 0):
            raise ValueError(f"{name} row {int(np.argmin(norms))} is all zeros; its cosine similarity is undefined")
    cos = np.einsum("nd,nd->n", a / na[:, None], b / nb[:, None])
    if clamp:
        cos = np.maximum(cos, 0.0)
    return scale * cos
