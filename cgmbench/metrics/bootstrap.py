"""Uncertainty of metric values: percentile bootstrap, FID bootstrap and FID-infinity.

* :func:`bootstrap_ci` — nonparametric bootstrap (Efron) with percentile intervals: resample
  the N items with replacement ``n_boot`` times, recompute the statistic, report the
  ``alpha/2`` and ``1 - alpha/2`` percentiles (``np.percentile``, linear interpolation).
  With ``groups`` (e.g. the prompt of each sample) whole groups are resampled instead
  (cluster bootstrap), the harness's convention for samples that share a prompt.
* :func:`bootstrap_precision_recall` — intervals of k-NN precision and recall from their
  per-sample indicators, the manifolds held fixed (see its docstring for what that ignores).
* :func:`bootstrap_fid` — the same for FID, resampling feature *rows* of the generated set
  (and of the reference set when its features are given). Each replicate costs one
  ``d x d`` covariance and one Fréchet distance, so ~100 replicates is the practical default
  at d = 2048.
* :func:`fid_infinity` — Chong & Forsyth (2020), "Effectively Unbiased FID and Inception
  Score and where to find them": FID_N is linear in 1/N to first order, so evaluate it at
  several N, fit ``FID_N = FID_inf + slope / N`` by least squares and report the intercept.
  Defaults follow their code: 15 points ``np.linspace(5000, N, 15).astype(int)``, each a prefix
  of the generated features after a cumulative in-place shuffle, fixed reference statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from cgmbench.metrics import _checks
from cgmbench.metrics.frechet import _covariance, frechet_distance
from cgmbench.metrics.precision_recall import PrecisionRecallIndicators


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate with a percentile bootstrap interval ``[low, high]`` at level ``1 - alpha``."""

    estimate: float
    low: float
    high: float
    std: float  # standard deviation of the bootstrap replicates (ddof=1)
    alpha: float
    n_boot: int
    replicates: np.ndarray = field(repr=False)


def bootstrap_ci(
    values_or_fn: Any | Callable[[np.ndarray], float],
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    n_items: int | None = None,
    groups: Any | None = None,
) -> ConfidenceInterval:
    """Percentile bootstrap interval of a statistic over N items.

    Args:
        values_or_fn: either per-item values ``(N,)`` (the statistic is their mean, e.g. per-pair
            CLIP scores), or a function ``fn(indices) -> float`` that computes the statistic on the
            items ``indices`` (an int array of length ``n_items``, with repeats); the point estimate
            is ``fn(np.arange(n_items))``.
        n_boot: number of bootstrap replicates.
        alpha: 1 - confidence level (0.05 gives a 95 % interval).
        seed: seed of ``np.random.default_rng`` drawing the resamples.
        n_items: number of items, required with a function.
        groups: with per-item values only: a label per item ``(N,)`` (e.g. the prompt index of
            each sample). The G distinct groups are resampled with replacement (G draws per
            replicate) and a replicate is the sum of the picked groups' values over their number
            of items; the estimate stays the plain mean over items. Without ``groups`` every item
            is its own group (and the two agree).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}")
    rng = np.random.default_rng(seed)
    if groups is not None:
        if callable(values_or_fn):
            raise ValueError("groups works with per-item values only, not with a function")
        values = _checks.as_float64(values_or_fn, "values", ndim=1)
        labels = _checks.to_numpy(groups)
        if labels.ndim != 1 or len(labels) != len(values):
            raise ValueError(f"groups must hold one label per value ({len(values)}), got shape {tuple(labels.shape)}")
        if len(values) < 1:
            raise ValueError("values is empty")
        uniq, inverse = np.unique(labels, return_inverse=True)
        n_groups = len(uniq)
        sums = np.bincount(inverse, weights=values, minlength=n_groups)
        counts = np.bincount(inverse, minlength=n_groups).astype(np.float64)
        estimate = float(values.mean())
        reps = np.empty(n_boot)
        chunk = max(1, 2**22 // n_groups)
        for start in range(0, n_boot, chunk):
            stop = min(start + chunk, n_boot)
            pick = rng.integers(0, n_groups, (stop - start, n_groups))
            reps[start:stop] = sums[pick].sum(axis=1) / counts[pick].sum(axis=1)
    elif callable(values_or_fn):
        if n_items is None or n_items < 1:
            raise ValueError("pass n_items (the number of items the function resamples) together with a function")
        fn = values_or_fn
        estimate = float(fn(np.arange(n_items)))
        reps = np.array([float(fn(rng.integers(0, n_items, n_items))) for _ in range(n_boot)])
    else:
        values = _checks.as_float64(values_or_fn, "values", ndim=1)
        if len(values) < 1:
            raise ValueError("values is empty")
        n = len(values)
        estimate = float(values.mean())
        reps = np.empty(n_boot)
        chunk = max(1, 2**22 // n)
        for start in range(0, n_boot, chunk):
            stop = min(start + chunk, n_boot)
            reps[start:stop] = values[rng.integers(0, n, (stop - start, n))].mean(axis=1)
    if not np.isfinite(reps).all():
        raise ValueError("the statistic returned NaN/Inf on some bootstrap replicates")
    low, high = np.percentile(reps, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return ConfidenceInterval(estimate, float(low), float(high), float(reps.std(ddof=1)), alpha, n_boot, reps)


def bootstrap_precision_recall(
    indicators: PrecisionRecallIndicators,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    groups_fake: Any | None = None,
    groups_real: Any | None = None,
) -> tuple[ConfidenceInterval, ConfidenceInterval]:
    """Percentile bootstrap intervals ``(precision, recall)`` of k-NN precision and recall.

    Precision is the mean over generated samples of "inside some real k-NN ball", recall the
    mean over real samples of "inside some generated k-NN ball"
    (:func:`~cgmbench.metrics.precision_recall.precision_recall_indicators`). Each interval
    resamples the indicators of the side being averaged -- generated samples for precision,
    real samples for recall -- with :func:`bootstrap_ci` (``seed`` for both; the two sides are
    drawn independently of each other's indicators).

    **Approximation: the manifolds are held fixed.** A full bootstrap would resample the
    feature rows, re-estimate the k-NN radii of both sets and recompute every membership; this
    one keeps the memberships computed once on the full sets. It therefore ignores the
    variance of the radius estimation (and of the other side's sample), and its intervals are
    narrower than a full resampling's. It costs ``O(n_boot * N)`` instead of ``n_boot`` k-NN
    passes. (Resampling rows with duplicates would also shrink k-NN radii to zero -- a
    duplicated row is its own neighbour -- so the naive full bootstrap is biased as well.)

    Args:
        indicators: the per-sample memberships of one precision/recall evaluation.
        groups_fake, groups_real: optional group label per generated / real sample (e.g. the
            prompt of each sample); whole groups are then resampled (see :func:`bootstrap_ci`).
    """
    if not isinstance(indicators, PrecisionRecallIndicators):
        raise ValueError(f"indicators must be PrecisionRecallIndicators (from precision_recall_indicators), "
                         f"got {type(indicators).__name__}")
    precision = bootstrap_ci(indicators.fake_in_real, n_boot=n_boot, alpha=alpha, seed=seed, groups=groups_fake)
    recall = bootstrap_ci(indicators.real_in_fake, n_boot=n_boot, alpha=alpha, seed=seed, groups=groups_real)
    return precision, recall


def bootstrap_fid(
    feats_fake: Any,
    reference: Any,
    n_boot: int = 100,
    alpha: float = 0.05,
    seed: int = 0,
) -> ConfidenceInterval:
    """Bootstrap interval of FID by resampling feature rows.

    Args:
        feats_fake: generated features ``(N, d)``; resampled with replacement.
        reference: either reference features ``(M, d)`` (resampled too, independently) or a
            ``(mu, sigma)`` pair of fixed reference statistics (e.g. an ADM reference batch).
    """
    fake = _checks.features(feats_fake, "feats_fake", min_rows=2)
    if isinstance(reference, (tuple, list)) and len(reference) == 2:
        mu_ref = _checks.as_float64(reference[0], "reference mu", ndim=1)
        ref_stats = (mu_ref, _covariance(reference[1], "reference sigma", len(mu_ref)))
        real = None
    else:
        real = _checks.features(reference, "reference", min_rows=2)
        _checks.same_width(fake, real, "feats_fake", "reference")
        ref_stats = None
    d = fake.shape[1]
    if ref_stats is not None and len(ref_stats[0]) != d:
        raise ValueError(f"reference statistics are {len(ref_stats[0])}-d but feats_fake has {d} dims")

    def fid(idx_fake: np.ndarray, idx_real: np.ndarray | None) -> float:
        mu_f, sig_f = _weighted_stats(fake, idx_fake)
        mu_r, sig_r = ref_stats if real is None else _weighted_stats(real, idx_real)
        return frechet_distance(mu_r, sig_r, mu_f, sig_f)

    rng = np.random.default_rng(seed)
    estimate = fid(np.arange(len(fake)), None if real is None else np.arange(len(real)))
    reps = np.empty(n_boot)
    for b in range(n_boot):
        idx_f = rng.integers(0, len(fake), len(fake))
        idx_r = None if real is None else rng.integers(0, len(real), len(real))
        reps[b] = fid(idx_f, idx_r)
    low, high = np.percentile(reps, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return ConfidenceInterval(estimate, float(low), float(high), float(reps.std(ddof=1)), alpha, n_boot, reps)


def _weighted_stats(x: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.mean``/``np.cov`` of ``x[idx]`` from multiplicities, without materialising ``x[idx]``."""
    counts = np.bincount(idx, minlength=len(x)).astype(np.float64)
    n = counts.sum()
    mu = counts @ x / n
    xc = x - mu
    cov = (xc * counts[:, None]).T @ xc / (n - 1)
    return mu, 0.5 * (cov + cov.T)


@dataclass(frozen=True)
class FIDInfinity:
    """Result of :func:`fid_infinity` with ``return_details=True``."""

    value: float  # intercept of the fit: FID extrapolated to N -> infinity
    slope: float  # coefficient of 1/N
    ns: np.ndarray  # sample sizes used
    fids: np.ndarray  # FID_N at each size


def fid_infinity(
    feats_fake: Any,
    mu_ref: Any,
    sigma_ref: Any,
    ns: Sequence[int] | None = None,
    num_points: int = 15,
    min_n: int = 5000,
    seed: int = 0,
    return_details: bool = False,
) -> float | FIDInfinity:
    """FID extrapolated to infinitely many generated samples (Chong & Forsyth, 2020).

    Args:
        feats_fake: generated features ``(N, d)``.
        mu_ref, sigma_ref: reference statistics (kept fixed, as in the paper).
        ns: sample sizes to evaluate; default ``np.linspace(min_n, N, num_points).astype(int)``
            (duplicates removed), which needs ``N > min_n``.
        seed: seed of ``np.random.RandomState``; before each size the row order is shuffled again
            (cumulatively) and the first ``n`` rows are used, as in the official code.
        return_details: return a :class:`FIDInfinity` with the fit instead of the float.
    """
    fake = _checks.features(feats_fake, "feats_fake", min_rows=2)
    mu_ref = _checks.as_float64(mu_ref, "mu_ref", ndim=1)
    sigma_ref = _covariance(sigma_ref, "sigma_ref", len(mu_ref))
    n_total = len(fake)
    if ns is None:
        if n_total <= min_n:
            raise ValueError(
                f"fid_infinity needs more than min_n={min_n} generated samples by default, got {n_total}; "
                f"pass ns=[...] (sizes <= {n_total}) or a smaller min_n"
            )
        ns = np.unique(np.linspace(min_n, n_total, num_points).astype(np.int64))
    ns = np.asarray(ns, dtype=np.int64)
    if ns.ndim != 1 or len(np.unique(ns)) < 2:
        raise ValueError(f"ns must hold at least two distinct sample sizes, got {ns.tolist()}")
    if ns.min() < 2 or ns.max() > n_total:
        raise ValueError(f"every size in ns must be in [2, {n_total}], got {ns.tolist()}")

    state = np.random.RandomState(seed)
    order = np.arange(n_total)
    fids = np.empty(len(ns))
    for i, n in enumerate(ns):
        state.shuffle(order)
        sub = fake[order[:n]]
        fids[i] = frechet_distance(mu_ref, sigma_ref, sub.mean(axis=0), np.cov(sub, rowvar=False))
    slope, intercept = np.polyfit(1.0 / ns, fids, deg=1)
    if return_details:
        return FIDInfinity(float(intercept), float(slope), ns, fids)
    return float(intercept)
