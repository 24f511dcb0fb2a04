"""Improved precision and recall (Kynkäänniemi et al., 2019): k-NN manifold estimates.

The manifold of a feature set is the union of balls centred at each sample whose radius is
the distance to its k-th nearest neighbour (k = 3; the sample itself counts as the 0-th
neighbour, so the radius is the (k+1)-th smallest distance in its row). Then

* precision = fraction of *generated* samples inside the *real* manifold,
* recall    = fraction of *real* samples inside the *generated* manifold,

with "inside" meaning ``dist(q, c) <= radius(c)`` for at least one centre ``c``.

``distance`` selects the arithmetic of the two references:

* ``"float32"`` (default): Euclidean ``torch.cdist`` in float32 on blocks of ``batch_size``
  rows, as torch-fidelity's ``calculate_precision_recall_full`` (identical values).
* ``"float16"``: the ADM evaluator: squared distances ``|u|^2 - 2 u.v + |v|^2`` (clamped at 0)
  evaluated in float16 and used when all finite, else recomputed in float32 (per block).
  This emulates TensorFlow's fp16 kernels and can differ from ADM's numbers in the last
  fp16 rounding of near-tie pairs (~1e-3 shift of P/R versus ``"float32"``).
* ``"float64"``: exact Euclidean distances.

Distances are computed block by block with a running top-(k+1) per row, so memory is
``O(batch_size^2)`` whatever the number of samples.

Both numbers are means of per-sample indicators, which
:func:`precision_recall_indicators` returns (``fake_in_real`` of length ``N_fake``,
``real_in_fake`` of length ``N_real``); :func:`cgmbench.metrics.bootstrap_precision_recall`
turns them into bootstrap intervals by resampling the indicators of the side being averaged with
the manifolds held fixed (an approximation: the variance of the k-NN radius estimation is ignored).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cgmbench.metrics import _checks

DISTANCES = ("float32", "float16", "float64")


@dataclass(frozen=True)
class PrecisionRecallIndicators:
    """Per-sample manifold memberships behind precision and recall.

    ``fake_in_real[j]`` is True when generated sample ``j`` lies inside the real manifold (some
    real k-NN ball contains it); ``real_in_fake[i]`` is True when real sample ``i`` lies inside
    the generated manifold. Both are ``bool`` NumPy vectors in the input row order.
    """

    fake_in_real: np.ndarray  # bool (N_fake,)
    real_in_fake: np.ndarray  # bool (N_real,)
    k: int

    @property
    def precision(self) -> float:
        """Fraction of generated samples inside the real manifold (same float as :func:`precision_recall`)."""
        return int(self.fake_in_real.sum()) / len(self.fake_in_real)

    @property
    def recall(self) -> float:
        """Fraction of real samples inside the generated manifold (same float as :func:`precision_recall`)."""
        return int(self.real_in_fake.sum()) / len(self.real_in_fake)


def precision_recall(
    feats_real: Any,
    feats_fake: Any,
    k: int = 3,
    batch_size: int = 10000,
    distance: str = "float32",
    device: str | torch.device = "cpu",
) -> tuple[float, float]:
    """``(precision, recall)`` of generated features ``feats_fake`` against ``feats_real`` (both ``(n, d)``)."""
    ind = precision_recall_indicators(feats_real, feats_fake, k=k, batch_size=batch_size, distance=distance,
                                      device=device)
    return ind.precision, ind.recall


def precision_recall_indicators(
    feats_real: Any,
    feats_fake: Any,
    k: int = 3,
    batch_size: int = 10000,
    distance: str = "float32",
    device: str | torch.device = "cpu",
) -> PrecisionRecallIndicators:
    """The per-sample memberships whose means are :func:`precision_recall` (same arguments)."""
    real = _checks.features(feats_real, "feats_real", min_rows=k + 1)
    fake = _checks.features(feats_fake, "feats_fake", min_rows=k + 1)
    _checks.same_width(real, fake, "feats_real", "feats_fake")
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dtype = torch.float64 if distance == "float64" else torch.float32
    real_t = torch.from_numpy(real).to(device=device, dtype=dtype)
    fake_t = torch.from_numpy(fake).to(device=device, dtype=dtype)

    dist = _DISTANCE_FNS[distance]
    radii_real = _knn_radii(real_t, k, batch_size, dist)
    radii_fake = _knn_radii(fake_t, k, batch_size, dist)
    fake_in, real_in = _cross_membership(real_t, fake_t, radii_real, radii_fake, batch_size, dist)
    return PrecisionRecallIndicators(fake_in.cpu().numpy(), real_in.cpu().numpy(), k)


# -- distance kernels (all return a comparable distance: Euclidean or squared Euclidean) -------


def _euclidean(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.cdist(u, v)


def _squared(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    norm_u = (u * u).sum(dim=1, keepdim=True)
    norm_v = (v * v).sum(dim=1, keepdim=True).T
    return (norm_u - 2.0 * (u @ v.T) + norm_v).clamp_min(0.0)


def _squared_fp16_adm(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    u16, v16 = u.half(), v.half()
    norm_u = (u16 * u16).float().sum(dim=1, keepdim=True).half()
    norm_v = (v16 * v16).float().sum(dim=1, keepdim=True).half().T
    uv = (u16.float() @ v16.float().T).half()
    d16 = (norm_u - 2 * uv + norm_v).clamp_min(0)
    if bool(torch.isfinite(d16).all()):
        return d16.float()
    return _squared(u.float(), v.float())


_DISTANCE_FNS = {"float32": _euclidean, "float64": _euclidean, "float16": _squared_fp16_adm}


# -- manifold estimation -----------------------------------------------------------------------


def _knn_radii(feats: torch.Tensor, k: int, batch_size: int, dist) -> torch.Tensor:
    """Distance of each row to its k-th nearest neighbour (itself being the 0-th)."""
    radii = []
    for rows in feats.split(batch_size):
        best = None
        for cols in feats.split(batch_size):
            d = dist(rows, cols)
            cand = d if best is None else torch.cat([best, d], dim=1)
            best = cand.topk(min(k + 1, cand.shape[1]), dim=1, largest=False, sorted=True).values
        radii.append(best[:, k])
    return torch.cat(radii)


def _cross_membership(real: torch.Tensor, fake: torch.Tensor, radii_real: torch.Tensor, radii_fake: torch.Tensor,
                      batch_size: int, dist) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over the real x fake distance blocks (real rows, fake columns, as torch-fidelity).

    Returns the bool vectors (fake inside the real manifold, real inside the fake manifold).
    """
    fake_in = torch.zeros(len(fake), dtype=torch.bool, device=fake.device)
    real_in = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    for r0 in range(0, len(real), batch_size):
        r = real[r0 : r0 + batch_size]
        for f0 in range(0, len(fake), batch_size):
            d = dist(r, fake[f0 : f0 + batch_size])
            fake_in[f0 : f0 + batch_size] |= (d <= radii_real[r0 : r0 + batch_size, None]).any(dim=0)
            real_in[r0 : r0 + batch_size] |= (d <= radii_fake[None, f0 : f0 + batch_size]).any(dim=1)
    return fake_in, real_in
