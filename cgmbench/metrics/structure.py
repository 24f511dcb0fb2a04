"""DINO structure distance: how much an edit changed the layout of an image (Tumanyan et al., Splice; PIE-Bench).

Per image pair (source, edited), as PIE-Bench's ``evaluation/matrics_calculator.py`` computes it (its ``LossG.
calculate_global_ssim_loss``, taken from Splice):

1. preprocess each image: ``Resize(224, max_size=480)`` (shorter side to 224, longer side capped at 480;
   bilinear) then ImageNet ``Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))``;
2. take the *keys* of the last block's attention (block 11 of DINO ViT-B/8 ``dino_vitb8``), all tokens including
   CLS: ``[heads, T, head_dim]``, concatenated over heads to ``[T, heads * head_dim]``;
3. the token self-similarity matrix ``S[i, j] = <k_i, k_j> / max(|k_i| |k_j|, 1e-8)`` (``[T, T]``);
4. the distance is the mean squared difference of the two matrices (``F.mse_loss``). 0 for identical images;
   PIE-Bench reports it x10^3. The whole image is used (no mask).

Protocols (part of the result key):

``pie_compat``
    PIE-Bench as published: the images enter the normalisation as **0..255 floats** (its code never divides by
    255) and the resize is not antialiased (torchvision before 0.17 did not antialias tensors by default; 0.17
    changed the default, so the script gives different numbers on newer torchvision).
``unit_range``
    The input DINO was trained on: ``[0, 1]`` images, antialiased resize.

The ViT is injected: ``extract_keys(x)`` takes the preprocessed float32 batch ``[N, 3, h, w]`` and returns the
block-11 keys ``[N, heads, T, head_dim]`` (the official hook: ``qkv`` output reshaped to
``(T, 3, heads, head_dim)``, index 1) or already concatenated ``[N, T, heads * head_dim]``. Images are uint8 or
``[0, 1]`` floats (:func:`cgmbench.metrics.masked.unit_images`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from cgmbench.errors import CgmbenchError
from cgmbench.metrics.masked import unit_images

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE, MAX_SIZE = 224, 480
EPS = 1e-8
#: protocol -> (pixel scale fed to the normalisation, antialiased resize)
PROTOCOLS = {"pie_compat": (255.0, False), "unit_range": (1.0, True)}

KeyExtractor = Callable[[torch.Tensor], Any]


def resized_shape(h: int, w: int, size: int = RESIZE, max_size: int = MAX_SIZE) -> tuple[int, int]:
    """Output ``(h, w)`` of torchvision's ``Resize(size, max_size=max_size)``: shorter side to ``size``, the
    longer one scaled and truncated to int; if it exceeds ``max_size`` it becomes ``max_size`` and the shorter
    side is scaled down in turn."""
    short, long = min(h, w), max(h, w)
    new_short, new_long = size, int(size * long / short)
    if new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_short, new_long) if h <= w else (new_long, new_short)


def preprocess(images: Any, protocol: str = "pie_compat", name: str = "images") -> torch.Tensor:
    """Resize and normalise images as the protocol does: float32 ``[N, 3, h, w]`` for the ViT."""
    scale, antialias = _protocol(protocol)
    x = unit_images(images, name) * scale
    h, w = resized_shape(*x.shape[-2:])
    x = F.interpolate(x.float(), size=(h, w), mode="bilinear", align_corners=False, antialias=antialias)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def keys_self_similarity(keys: Any) -> torch.Tensor:
    """Cosine self-similarity ``[N, T, T]`` (float64) of the tokens' keys, heads concatenated per token."""
    k = keys.detach().cpu() if isinstance(keys, torch.Tensor) else torch.as_tensor(np.asarray(keys))
    if k.ndim == 4:  # [N, heads, T, head_dim] -> [N, T, heads * head_dim]
        k = k.transpose(1, 2).reshape(k.shape[0], k.shape[2], -1)
    if k.ndim != 3 or min(k.shape) < 1:
        raise CgmbenchError(f"keys must be [N, heads, T, head_dim] or [N, T, dim], got shape {tuple(k.shape)}")
    k = k.double()
    if not torch.isfinite(k).all():
        raise CgmbenchError("keys contain NaN or Inf")
    norm = k.norm(dim=2, keepdim=True)
    return (k @ k.transpose(1, 2)) / (norm @ norm.transpose(1, 2)).clamp(min=EPS)


@dataclass(frozen=True)
class StructureScore:
    """Per-pair structure distances ``(N,)`` (float64, >= 0; PIE-Bench reports x10^3)."""

    backbone: str
    protocol: str
    values: np.ndarray

    @property
    def key(self) -> str:
        return f"structure_distance[{self.backbone},{self.protocol}]"

    def mean(self) -> float:
        return float(np.mean(self.values))


def structure_distance(source: Any, edited: Any, *, extract_keys: KeyExtractor, protocol: str = "pie_compat",
                       backbone: str = "dino_vitb8") -> StructureScore:
    """Mean squared difference of the key self-similarity matrices of ``source`` and ``edited`` images."""
    x, y = preprocess(source, protocol, "source"), preprocess(edited, protocol, "edited")
    if x.shape != y.shape:
        raise CgmbenchError(f"source {tuple(x.shape)} and edited {tuple(y.shape)} differ in shape after resizing",
                            "score images of the same size (PIE-Bench: 512x512)")
    with torch.no_grad():
        sx, sy = keys_self_similarity(extract_keys(x)), keys_self_similarity(extract_keys(y))
    if sx.shape != sy.shape or sx.shape[0] != x.shape[0]:
        raise CgmbenchError(f"extract_keys gave {tuple(sx.shape)} and {tuple(sy.shape)} similarity matrices for "
                            f"{x.shape[0]} images of one size")
    return StructureScore(backbone, protocol, ((sx - sy) ** 2).mean(dim=(1, 2)).numpy())


def _protocol(protocol: str) -> tuple[float, bool]:
    if protocol not in PROTOCOLS:
        raise CgmbenchError(f"unknown structure-distance protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[protocol]
