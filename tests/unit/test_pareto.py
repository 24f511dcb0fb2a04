"""Pareto frontier, hypervolume and matched-metric interpolation against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from cgmbench.errors import CgmbenchError
from cgmbench.results.pareto import (
    Point,
    at_matched,
    direction,
    dominates,
    frontier,
    frontier_order,
    hypervolume_2d,
    non_dominated,
)


def test_directions():
    assert direction("fid") == "min" and direction("clip_score") == "max" and direction("judge") == "max"
    assert direction("judge.color") == "max"
    with pytest.raises(CgmbenchError, match="no known direction"):
        direction("mystery")


def test_non_dominated_min_min():
    pts = [(1, 5), (2, 3), (3, 4), (4, 1), (5, 5)]
    # (3,4) is dominated by (2,3); (5,5) by everything else
    assert non_dominated(pts) == [0, 1, 3]
    assert dominates((2, 3), (3, 4)) and not dominates((1, 5), (2, 3)) and not dominates((2, 3), (2, 3))
    # a duplicate of a frontier point is on the frontier too (neither dominates the other)
    assert non_dominated(pts + [(2, 3)]) == [0, 1, 3, 5]


def test_non_dominated_mixed_directions():
    # (clip score up, FID down)
    pts = [(0.30, 20.0), (0.32, 25.0), (0.28, 30.0), (0.31, 18.0)]
    assert non_dominated(pts, "max", "min") == [1, 3]
    assert frontier_order(pts, "max", "min") == [1, 3]  # best clip first
    pts_obj = [Point(x, y, model="m") for x, y in pts]
    assert frontier(pts_obj, "clip_score", "fid") == [1, 3]


def test_hypervolume_hand_computed():
    pts = [(1, 5), (2, 3), (3, 4), (4, 1), (5, 5)]
    # strips: (6-1)*(6-5) + (6-2)*(5-3) + (6-4)*(3-1) = 5 + 8 + 4
    assert hypervolume_2d(pts, (6, 6)) == pytest.approx(17.0)
    # a point beyond the reference point contributes nothing
    assert hypervolume_2d(pts + [(7, 0)], (6, 6)) == pytest.approx(17.0)
    assert hypervolume_2d([(7, 7)], (6, 6)) == 0.0
    # clip up / FID down, reference (clip 0.25, FID 40): 0.07*15 + 0.06*7
    pts2 = [(0.30, 20.0), (0.32, 25.0), (0.28, 30.0), (0.31, 18.0)]
    assert hypervolume_2d(pts2, (0.25, 40.0), "max", "min") == pytest.approx(1.05 + 0.42)
    # a single point: a rectangle
    assert hypervolume_2d([(0.5, 0.5)], (0.0, 0.0), "max", "max") == pytest.approx(0.25)


def test_matched_interpolation_with_endpoint_intervals():
    # B = clip score, A = FID, given out of order on purpose
    b = [0.35, 0.25, 0.30]
    a = [25.0, 30.0, 20.0]
    a_ci = [[22.0, 27.0], [28.0, 32.0], [18.0, 23.0]]
    m = at_matched(b, a, 0.28, a_ci=a_ci)
    # between B=0.25 (A=30) and B=0.30 (A=20): t = 0.6
    assert m.weight == pytest.approx(0.6)
    assert m.value == pytest.approx(0.4 * 30 + 0.6 * 20)  # 24
    assert m.ci95[0] == pytest.approx(0.4 * 28 + 0.6 * 18)  # 22.0
    assert m.ci95[1] == pytest.approx(0.4 * 32 + 0.6 * 23)  # 26.6
    assert m.bracket == (1, 2)
    assert at_matched(b, a, 0.30, a_ci=a_ci).value == pytest.approx(20.0)  # exact hit
    assert at_matched(b, a, 0.33, a_ci=a_ci).value == pytest.approx(0.4 * 20 + 0.6 * 25)
    assert at_matched(b, a, 0.40) is None and at_matched(b, a, 0.2) is None  # no extrapolation
    assert at_matched(b, a, 0.28).ci95 is None


def test_matched_parametric_bootstrap():
    # zero-width intervals: every draw equals the point estimate
    m = at_matched([0.25, 0.30], [30.0, 20.0], 0.28, a_ci=[[30, 30], [20, 20]], b_ci=[[0.25, 0.25], [0.3, 0.3]],
                   method="bootstrap", n_boot=200)
    assert m.value == pytest.approx(24.0) and m.ci95 == pytest.approx((24.0, 24.0)) and m.dropped == 0
    # A ~ N(0, 1) at both ends, target halfway: A_mid ~ N(0, 1/2) -> 95% CI ±1.96*sqrt(1/2) = ±1.386
    sd1 = [-1.959963984540054, 1.959963984540054]
    m = at_matched([0.0, 1.0], [0.0, 0.0], 0.5, a_ci=[sd1, sd1], method="bootstrap", n_boot=20000, seed=1)
    half = 1.959963984540054 * math.sqrt(0.5)
    assert m.ci95[0] == pytest.approx(-half, rel=0.05) and m.ci95[1] == pytest.approx(half, rel=0.05)
    again = at_matched([0.0, 1.0], [0.0, 0.0], 0.5, a_ci=[sd1, sd1], method="bootstrap", n_boot=20000, seed=1)
    assert again.ci95 == m.ci95  # seeded
    # uncertain B near the end of the curve: some draws miss the target and are counted
    m = at_matched([0.0, 1.0], [0.0, 1.0], 0.99, b_ci=[[-0.1, 0.1], [0.8, 1.2]], method="bootstrap", n_boot=500)
    assert 0 < m.dropped < 500
    with pytest.raises(ValueError):
        at_matched([0.0, 1.0], [0.0, 1.0], 0.5, method="spline")
