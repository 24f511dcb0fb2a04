"""Pareto analysis of two metrics: frontier, hypervolume, and "metric A at matched metric B".

Conventions
-----------
* Every metric has a *direction*: ``"min"`` (lower is better: FID, KID, CMMD, LPIPS, FVD, …) or
  ``"max"`` (higher is better: CLIP score, judge accuracy, IS, precision, recall, PSNR, SSIM).
  :func:`direction` knows the suite's metric names; any function here also takes the directions
  explicitly.
* A point ``p`` *dominates* ``q`` when it is at least as good in both metrics and strictly better
  in one. The *non-dominated set* (Pareto frontier) is the set of points no other point dominates;
  duplicates of a frontier point are all on the frontier.
* The *hypervolume* (Zitzler & Thiele 1998) of a point set is the area of the region dominated by
  the set and bounded by a stated *reference point* ``ref`` (a point worse than every point of
  interest in both metrics). Points that do not strictly improve on ``ref`` in both metrics
  contribute nothing. Units are ``unit(x) * unit(y)``; compare hypervolumes only under the same
  reference point.
* "A at matched B" (e.g. FID at matched CLIP score): a model's curve (its sweep points) is sorted
  by B and A is interpolated *linearly* between the two neighbouring points whose B values
  bracket the target. There is no extrapolation: a target outside the curve's B range gives
  ``None``. Two interval methods:

  - ``"endpoints"`` (default, deterministic): the lower and upper ends of A's 95% interval are
    interpolated with the same weight as A. This carries A's uncertainty through; it ignores the
    uncertainty of B (the matching variable).
  - ``"bootstrap"``: a parametric bootstrap from the stored per-point intervals: every point's A
    and B are drawn independently from normals with the point value as mean and standard
    deviation ``(hi - lo) / (2 * 1.959964)`` (the half-width of a symmetric 95% interval), the
    drawn curve is re-sorted by B and interpolated at the target; the interval is the 2.5 and
    97.5 percentiles over the draws (``np.percentile``, linear). Draws whose B range misses the
    target are dropped and counted in ``dropped``. This carries both A's and B's uncertainty.
"""

from __future__ import annotations

import re

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from cgmbench.catalog import direction, metric_base  # noqa: F401  (re-exported: the catalog owns them)
from cgmbench.errors import CgmbenchError

_Z95 = 1.959963984540054


def _check_dir(d: str) -> float:
    if d not in ("min", "max"):
        raise ValueError(f"direction must be 'min' or 'max', got {d!r}")
    return 1.0 if d == "min" else -1.0


def _as_min(points, x_dir: str, y_dir: str) -> np.ndarray:
    """Points as a float ``[n, 2]`` array in a 'lower is better' frame."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return p * np.array([_check_dir(x_dir), _check_dir(y_dir)])


def dominates(p, q, x_dir: str = "min", y_dir: str = "min") -> bool:
    """True when point ``p`` dominates ``q`` (at least as good in both, strictly better in one)."""
    a, b = _as_min([p, q], x_dir, y_dir)
    return bool(np.all(a <= b) and np.any(a < b))


def non_dominated(points, x_dir: str = "min", y_dir: str = "min") -> list[int]:
    """Indices (ascending) of the points no other point dominates."""
    p = _as_min(points, x_dir, y_dir)
    keep = []
    for i in range(len(p)):
        le = np.all(p <= p[i], axis=1)
        lt = np.any(p < p[i], axis=1)
        if not np.any(le & lt):
            keep.append(i)
    return keep


def frontier_order(points, x_dir: str = "min", y_dir: str = "min") -> list[int]:
    """The non-dominated indices sorted along the frontier (by x, best x first)."""
    idx = non_dominated(points, x_dir, y_dir)
    p = _as_min(points, x_dir, y_dir)
    return sorted(idx, key=lambda i: (p[i, 0], p[i, 1]))


def hypervolume_2d(points, ref, x_dir: str = "min", y_dir: str = "min") -> float:
    """Area dominated by ``points`` and bounded by the reference point ``ref`` (see module doc)."""
    p = _as_min(points, x_dir, y_dir)
    r = _as_min([ref], x_dir, y_dir)[0]
    if not np.all(np.isfinite(r)):
        raise ValueError("the reference point must be finite")
    p = p[np.all(p < r, axis=1)]
    if len(p) == 0:
        return 0.0
    front = p[non_dominated(p)]
    front = front[np.lexsort((front[:, 1], front[:, 0]))]  # x ascending -> y descending on a frontier
    area, prev_y = 0.0, r[1]
    for x, y in front:
        if y < prev_y:
            area += (r[0] - x) * (prev_y - y)
            prev_y = y
    return float(area)


@dataclass
class Matched:
    """Metric A interpolated at a target value of metric B along one curve."""

    value: float
    ci95: tuple[float, float] | None
    target: float
    bracket: tuple[int, int]  # indices (into the given points) of the two neighbours
    weight: float  # t in value = (1 - t) * a[lo] + t * a[hi]
    method: str
    dropped: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"value": self.value, "ci95": list(self.ci95) if self.ci95 else None, "target": self.target,
                "bracket": list(self.bracket), "weight": self.weight, "method": self.method,
                "dropped": self.dropped}


def _interp(b: np.ndarray, a: np.ndarray, target: float):
    """``(value, j, k, t)`` interpolating ``a`` over ``b`` (any order) at ``target``, or None outside."""
    order = np.argsort(b, kind="stable")
    bs, as_ = b[order], a[order]
    if not (bs[0] <= target <= bs[-1]):
        return None
    if len(bs) == 1:
        return float(as_[0]), int(order[0]), int(order[0]), 0.0
    k = int(np.searchsorted(bs, target, side="left"))
    if k < len(bs) and bs[k] == target:  # exact hit (first of equal B values)
        same = bs == target
        return float(as_[same].mean()), int(order[k]), int(order[k]), 0.0
    j = k - 1
    t = float((target - bs[j]) / (bs[k] - bs[j]))
    return float((1 - t) * as_[j] + t * as_[k]), int(order[j]), int(order[k]), t


def at_matched(b: Sequence[float], a: Sequence[float], target: float,
               a_ci: Sequence[Sequence[float]] | None = None, b_ci: Sequence[Sequence[float]] | None = None,
               method: str = "endpoints", n_boot: int = 2000, seed: int = 0) -> Matched | None:
    """Metric A at ``B == target`` along one curve (``b[i]``, ``a[i]`` are point i's values).

    ``a_ci`` / ``b_ci`` are per-point 95% intervals ``[lo, hi]`` (``None`` entries: no interval).
    Returns ``None`` when ``target`` is outside the curve's range of B (no extrapolation).
    """
    b = np.asarray(b, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    if b.shape != a.shape or b.ndim != 1 or len(b) == 0:
        raise ValueError("a and b must be equal-length non-empty 1-D sequences")
    hit = _interp(b, a, float(target))
    if hit is None:
        return None
    value, j, k, t = hit
    if method == "endpoints":
        ci = None
        if a_ci is not None and a_ci[j] is not None and a_ci[k] is not None:
            lo = (1 - t) * float(a_ci[j][0]) + t * float(a_ci[k][0])
            hi = (1 - t) * float(a_ci[j][1]) + t * float(a_ci[k][1])
            ci = (lo, hi)
        return Matched(value, ci, float(target), (j, k), t, "endpoints: CI ends interpolated with A's weight")
    if method != "bootstrap":
        raise ValueError(f"method must be 'endpoints' or 'bootstrap', got {method!r}")

    def sd(ci, center):
        if ci is None:
            return np.zeros_like(center)
        out = np.array([0.0 if c is None else (float(c[1]) - float(c[0])) / (2 * _Z95) for c in ci])
        return out

    rng = np.random.default_rng(seed)
    sa, sb = sd(a_ci, a), sd(b_ci, b)
    draws, dropped = [], 0
    for _ in range(n_boot):
        bb = b + rng.standard_normal(len(b)) * sb
        aa = a + rng.standard_normal(len(a)) * sa
        h = _interp(bb, aa, float(target))
        if h is None:
            dropped += 1
        else:
            draws.append(h[0])
    ci = (float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))) if draws else None
    return Matched(value, ci, float(target), (j, k), t,
                   f"parametric bootstrap from per-point 95% CIs (normal, {n_boot} draws, seed {seed})",
                   dropped=dropped)


# -- helpers over leaderboard rows --------------------------------------------------------------


@dataclass
class Point:
    """One run as a point in the (x, y) metric plane."""

    x: float
    y: float
    x_ci: tuple[float, float] | None = None
    y_ci: tuple[float, float] | None = None
    model: str = ""
    label: str = ""
    sweep_value: float | None = None  # the knob value along the model's curve (guidance scale, …)
    meta: dict = field(default_factory=dict)


def frontier(points: Sequence[Point], x_metric: str, y_metric: str) -> list[int]:
    """Indices of the non-dominated :class:`Point` s for two named metrics, ordered along x."""
    xy = [(p.x, p.y) for p in points]
    return frontier_order(xy, direction(x_metric), direction(y_metric)) if xy else []


def curves(points: Sequence[Point]) -> dict[str, list[Point]]:
    """Points grouped by model, each curve sorted by its sweep value (then x)."""
    out: dict[str, list[Point]] = {}
    for p in points:
        out.setdefault(p.model, []).append(p)
    for m in out:
        out[m].sort(key=lambda p: (p.sweep_value if p.sweep_value is not None else float("-inf"), p.x))
    return out
