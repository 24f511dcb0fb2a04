"""Metric functional core: pure functions of features (no networks, no I/O).

Everything is computed in ``float64`` and reproduces the reference implementations given the
same features; each module's docstring states the formula and which library's convention
(RNG draw, split order, std ddof, distance arithmetic) it follows.

=============================== ===========================================================
:func:`frechet_distance`        FID / FVD / sFID distance between two Gaussians (eigen method)
:func:`feature_statistics`      ``np.mean`` / ``np.cov`` of a feature matrix
:class:`StreamingMoments`       O(d^2)-memory mergeable running mean and covariance
:class:`FrechetDistance`        update/compute metric object over real and fake features
:func:`kernel_inception_distance` KID (unbiased polynomial MMD^2 over subsets)
:func:`inception_score`         IS from logits
:func:`clip_score`              per-pair ``100 * max(cos, 0)``
:func:`cmmd`                    CLIP-embedding RBF MMD (sigma 10, x1000)
:func:`precision_recall`        k-NN manifold precision and recall
:func:`precision_recall_indicators` their per-sample manifold memberships
:func:`bootstrap_ci`            percentile bootstrap interval of any per-item statistic
:func:`bootstrap_fid`           FID interval by resampling feature rows
:func:`bootstrap_precision_recall` precision/recall intervals from the memberships (manifolds fixed)
:func:`fid_infinity`            FID extrapolated to N -> infinity (Chong & Forsyth)
=============================== ===========================================================
"""

from cgmbench.metrics.bootstrap import (
    ConfidenceInterval,
    FIDInfinity,
    bootstrap_ci,
    bootstrap_fid,
    bootstrap_precision_recall,
    fid_infinity,
)
from cgmbench.metrics.clip_score import clip_score
from cgmbench.metrics.cmmd import cmmd
from cgmbench.metrics.frechet import (
    FrechetDistance,
    SingularCovarianceWarning,
    StreamingMoments,
    feature_statistics,
    frechet_distance,
    trace_sqrt_product,
)
from cgmbench.metrics.inception_score import inception_score
from cgmbench.metrics.kid import kernel_inception_distance, mmd2_unbiased, polynomial_kernel
from cgmbench.metrics.precision_recall import (
    PrecisionRecallIndicators,
    precision_recall,
    precision_recall_indicators,
)

__all__ = [
    "ConfidenceInterval",
    "FIDInfinity",
    "FrechetDistance",
    "PrecisionRecallIndicators",
    "SingularCovarianceWarning",
    "StreamingMoments",
    "bootstrap_ci",
    "bootstrap_fid",
    "bootstrap_precision_recall",
    "clip_score",
    "cmmd",
    "feature_statistics",
    "fid_infinity",
    "frechet_distance",
    "inception_score",
    "kernel_inception_distance",
    "mmd2_unbiased",
    "polynomial_kernel",
    "precision_recall",
    "precision_recall_indicators",
    "trace_sqrt_product",
]
