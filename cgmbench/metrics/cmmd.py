"""CMMD (Jayasumana et al., 2024, "Rethinking FID"): Gaussian-RBF MMD between CLIP embeddings.

As google-research ``cmmd/distance.py``: kernel ``k(x, y) = exp(-||x - y||^2 / (2 sigma^2))``
with ``sigma = 10``, the *biased* (minimum-variance, V-statistic) estimator whose kernel means
include the diagonals,

    CMMD = 1000 * ( mean_ij k(x_i, x_j) + mean_ij k(y_i, y_j) - 2 mean_ij k(x_i, y_j) ),

and the x1000 scale "to make the metric more human readable". The reference feeds CLIP
ViT-L/14@336px image embeddings, L2-normalised; normalisation is the extractor's job here
(this function uses the embeddings as given). Computed in float64, in blocks so that 30k x 30k
kernels never sit in memory.
"""

from __future__ import annotations

from typing import Any

import torch

from cgmbench.metrics import _checks

SIGMA = 10.0
SCALE = 1000.0


def cmmd(emb_a: Any, emb_b: Any, sigma: float = SIGMA, scale: float = SCALE, block_size: int = 4096,
         device: str | torch.device = "cpu") -> float:
    """CMMD between embedding sets ``emb_a (n, D)`` (reference) and ``emb_b (m, D)`` (evaluated); symmetric."""
    a = _checks.features(emb_a, "emb_a")
    b = _checks.features(emb_b, "emb_b")
    _checks.same_width(a, b, "emb_a", "emb_b")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    x = torch.from_numpy(a).to(device)
    y = torch.from_numpy(b).to(device)
    gamma = 1.0 / (2.0 * sigma**2)
    k_xx = _mean_rbf(x, x, gamma, block_size)
    k_yy = _mean_rbf(y, y, gamma, block_size)
    k_xy = _mean_rbf(x, y, gamma, block_size)
    return float(scale * (k_xx + k_yy - 2.0 * k_xy))


def _mean_rbf(x: torch.Tensor, y: torch.Tensor, gamma: float, block_size: int) -> float:
    """Mean of ``exp(-gamma ||x_i - y_j||^2)`` over all pairs, accumulated block by block."""
    x_sq = (x * x).sum(dim=1)
    y_sq = (y * y).sum(dim=1)
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for i in range(0, len(x), block_size):
        xb, xb_sq = x[i : i + block_size], x_sq[i : i + block_size]
        for j in range(0, len(y), block_size):
            d2 = xb_sq[:, None] + y_sq[None, j : j + block_size] - 2.0 * (xb @ y[j : j + block_size].T)
            total += torch.exp(-gamma * d2.clamp_min(0.0)).sum()
    return float(total) / (len(x) * len(y))
