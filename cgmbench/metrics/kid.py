"""Kernel Inception Distance (Bińkowski et al., 2018): unbiased polynomial-kernel MMD^2 over random subsets.

For subsets ``X`` (from ``feats_a``) and ``Y`` (from ``feats_b``) of ``m`` rows each and the
kernel ``k(x, y) = (gamma x.y + coef0)^degree`` (defaults: degree 3, gamma = 1/d, coef0 = 1)

    MMD^2_u = [sum_{i!=j} k(x_i,x_j) + sum_{i!=j} k(y_i,y_j)] / (m(m-1)) - 2 sum_{i,j} k(x_i,y_j) / m^2

KID is the mean over ``num_subsets`` subsets; the spread is the population std (``ddof=0``)
as torch-fidelity and torchmetrics report it. The estimator is unbiased, so slightly
negative values are valid for near-identical distributions.

Every library draws its subsets differently; ``rng`` selects whose draw to reproduce (the
kernel arithmetic is always float64 here):

=================== ========================================================================
``"torch-fidelity"`` ``np.random.RandomState(seed)``; per subset ``choice(n_a, m, replace=False)``
                     for ``feats_a`` (its ``input1``) then for ``feats_b``; ``m = subset_size``
                     must not exceed either set (error otherwise). torch-fidelity's default
                     seed is 2020.
``"clean-fid"``      clean-fid's ``kernel_distance(feats1=feats_a, feats2=feats_b)`` draws with
                     the *global, unseeded* ``np.random.choice``, ``feats2`` first; here a
                     ``RandomState(seed)`` stands in for the global state, so
                     ``np.random.seed(seed)`` before clean-fid gives the same subsets.
                     ``m = min(n_a, n_b, subset_size)``. clean-fid returns no std.
``"torchmetrics"``   ``torch.Generator().manual_seed(seed)``; per subset ``randperm(n_a)[:m]``
                     (its ``real`` side) then ``randperm(n_b)[:m]``; equal to torchmetrics'
                     global-RNG draw after ``torch.manual_seed(seed)`` on CPU.
=================== ========================================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cgmbench.metrics import _checks

RNG_CONVENTIONS = ("torch-fidelity", "clean-fid", "torchmetrics")


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, degree: int = 3, gamma: float | None = None,
                      coef0: float = 1.0) -> torch.Tensor:
    """``(gamma * x @ y.T + coef0) ** degree`` with ``gamma = 1/d`` by default."""
    if gamma is None:
        gamma = 1.0 / x.shape[1]
    return (x @ y.T * gamma + coef0) ** degree


def mmd2_unbiased(k_xx: torch.Tensor, k_xy: torch.Tensor, k_yy: torch.Tensor) -> float:
    """Unbiased MMD^2 from the three ``m x m`` kernel matrices (diagonals of ``k_xx``/``k_yy`` excluded)."""
    m = k_xx.shape[0]
    within = (k_xx.sum() - k_xx.diagonal().sum()) + (k_yy.sum() - k_yy.diagonal().sum())
    return float(within / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(
    feats_a: Any,
    feats_b: Any,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 2020,
    rng: str = "torch-fidelity",
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    device: str | torch.device = "cpu",
) -> tuple[float, float]:
    """KID between two feature sets, as ``(mean, std)`` over subsets (std with ``ddof=0``).

    Args:
        feats_a, feats_b: feature matrices ``(n_a, d)``, ``(n_b, d)``; ``feats_a`` is the first
            input of the library named by ``rng`` (torch-fidelity ``input1``, clean-fid ``feats1``,
            torchmetrics ``real``). Without subsampling the value is symmetric in ``a``/``b``.
        num_subsets: number of random subsets (100 in every library).
        subset_size: rows per subset (1000 in every library).
        seed: seed of the subset draw (see the module docstring for each ``rng``).
        rng: ``"torch-fidelity"`` (default), ``"clean-fid"`` or ``"torchmetrics"``.
        degree, gamma, coef0: polynomial kernel; ``gamma=None`` means ``1/d``.
        device: where the ``m x m`` kernel matrices are computed (``"cuda"`` is much faster).
    """
    a = _checks.features(feats_a, "feats_a", min_rows=2)
    b = _checks.features(feats_b, "feats_b", min_rows=2)
    _checks.same_width(a, b, "feats_a", "feats_b")
    if rng not in RNG_CONVENTIONS:
        raise ValueError(f"rng must be one of {RNG_CONVENTIONS}, got {rng!r}")
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be >= 1, got {num_subsets}")
    n_a, n_b = len(a), len(b)
    m = min(n_a, n_b, subset_size) if rng == "clean-fid" else subset_size
    if m < 2 or m > n_a or m > n_b:
        raise ValueError(
            f"subset_size={subset_size} must be between 2 and the size of both sets (feats_a: {n_a}, feats_b: {n_b}); "
            f"pass subset_size=min(n_a, n_b) for small sets"
        )

    ta = torch.from_numpy(a).to(device)
    tb = torch.from_numpy(b).to(device)
    mmds = np.empty(num_subsets)
    for i, (idx_a, idx_b) in enumerate(_subset_indices(rng, seed, n_a, n_b, m, num_subsets)):
        x, y = ta[torch.as_tensor(idx_a, device=ta.device)], tb[torch.as_tensor(idx_b, device=tb.device)]
        mmds[i] = mmd2_unbiased(
            polynomial_kernel(x, x, degree, gamma, coef0),
            polynomial_kernel(x, y, degree, gamma, coef0),
            polynomial_kernel(y, y, degree, gamma, coef0),
        )
    return float(mmds.mean()), float(mmds.std())


def _subset_indices(rng: str, seed: int, n_a: int, n_b: int, m: int, num_subsets: int):
    """Yield ``(idx_a, idx_b)`` per subset in the draw order of the chosen library."""
    if rng == "torchmetrics":
        gen = torch.Generator().manual_seed(seed)
        for _ in range(num_subsets):
            idx_a = torch.randperm(n_a, generator=gen)[:m]
            idx_b = torch.randperm(n_b, generator=gen)[:m]
            yield idx_a, idx_b
        return
    state = np.random.RandomState(seed)
    for _ in range(num_subsets):
        if rng == "torch-fidelity":
            idx_a = state.choice(n_a, m, replace=False)
            idx_b = state.choice(n_b, m, replace=False)
        else:  # clean-fid draws its feats2 (= feats_b) first
            idx_b = state.choice(n_b, m, replace=False)
            idx_a = state.choice(n_a, m, replace=False)
        yield idx_a, idx_b


def kid_bootstrap_ci(feats_ref: Any, feats_sample: Any, subset_size: int, n_boot: int = 100, seed: int = 0,
                     degree: int = 3, gamma: float | None = None, coef0: float = 1.0,
                     device: str | torch.device = "cpu") -> tuple[float, float]:
    """A 95% interval for KID that also covers the variation of the samples when every subset holds all of them.

    With ``subset_size == len(feats_sample)`` each subset contains every sample, so the spread across subsets
    says nothing about how KID would move with other samples (with equal set sizes it is exactly 0). Each
    replicate here resamples the sample rows with replacement (N of them) and draws a reference subset of
    ``subset_size`` rows without replacement, then computes the unbiased MMD^2. Duplicated rows bias the replicates
    upward, so, as for FID's bootstrap, the percentile interval is re-centred: it is shifted by
    ``mean(replicates) - estimate``, where the estimate is the mean over those reference subsets of the MMD^2 with
    the original samples."""
    a = np.asarray(feats_ref, dtype=np.float64)
    b = np.asarray(feats_sample, dtype=np.float64)
    n_a, n_b = len(a), len(b)
    if not 2 <= subset_size <= n_a:
        raise ValueError(f"subset_size={subset_size} must be between 2 and the reference size {n_a}")
    rs = np.random.RandomState(seed)
    ta, tb = torch.from_numpy(a).to(device), torch.from_numpy(b).to(device)
    reps, base = np.empty(n_boot), np.empty(n_boot)
    k_yy_full = polynomial_kernel(tb, tb, degree, gamma, coef0)
    for i in range(n_boot):
        ia = torch.as_tensor(rs.choice(n_a, subset_size, replace=False), device=ta.device)
        ib = torch.as_tensor(rs.randint(0, n_b, n_b), device=tb.device)
        x = ta[ia]
        k_xx = polynomial_kernel(x, x, degree, gamma, coef0)
        k_xy_full = polynomial_kernel(x, tb, degree, gamma, coef0)
        base[i] = _mmd2_unbiased_rect(k_xx, k_xy_full, k_yy_full)
        reps[i] = _mmd2_unbiased_rect(k_xx, k_xy_full[:, ib], k_yy_full[ib][:, ib])
    shift = reps.mean() - base.mean()
    lo, hi = np.percentile(reps, [2.5, 97.5]) - shift
    return float(lo), float(hi)


def _mmd2_unbiased_rect(k_xx: torch.Tensor, k_xy: torch.Tensor, k_yy: torch.Tensor) -> float:
    """Unbiased MMD^2 for sets of sizes ``m`` (``k_xx``) and ``n`` (``k_yy``), which may differ."""
    m, n = k_xx.shape[0], k_yy.shape[0]
    xx = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    yy = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return float(xx + yy - 2.0 * k_xy.sum() / (m * n))
