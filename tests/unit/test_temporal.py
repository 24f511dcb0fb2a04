"""Temporal video metrics against hand-computed values on tiny synthetic videos."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cgmbench.errors import CgmbenchError
from cgmbench.metrics.temporal import (
    clip_frame_consistency,
    dynamic_degree,
    dynamic_degree_pair_scores,
    first_frame_consistency,
    flow_magnitude,
    frame_consistency,
    mean_abs_frame_difference,
    temporal_flickering,
    vbench_consistency,
)

R = 1 / math.sqrt(2)


def _static(t=5, size=8, seed=0):
    frame = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    return frame.expand(t, 3, size, size).clone()


def _levels(levels, size=2):
    """A video whose frame i is the constant grey level levels[i]."""
    return torch.stack([torch.full((3, size, size), v, dtype=torch.uint8) for v in levels])


def _moving_square(t=8, size=32, step=4):
    v = torch.zeros(t, 3, size, size, dtype=torch.uint8)
    for i in range(t):
        v[i, :, 8:16, i * step:i * step + 8] = 255
    return v


def _channel_means(frames):
    # a stand-in frame embedding: per-channel mean of a frame, shifted so it is never zero
    return frames.double().mean(dim=(2, 3)) + 1.0


def test_frame_consistency_by_hand():
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 1.0]])  # cos01 = 0, cos12 = 1/√2, cos02 = -1/√2
    assert frame_consistency(f, "consecutive") == pytest.approx(R / 2)
    assert frame_consistency(f, "first") == pytest.approx(-R / 2)
    assert frame_consistency(f, "first+prev") == pytest.approx(0.0, abs=1e-15)  # [0 + 0, (R - R)/2] / 2
    assert frame_consistency(f, "first+prev", clip_negative=True) == pytest.approx(R / 4)  # [0, (R + 0)/2] / 2
    assert frame_consistency(f, "all") == pytest.approx(0.0, abs=1e-15)  # (0 - R + R) / 3
    with pytest.raises(CgmbenchError, match="unknown frame pairing"):
        frame_consistency(f, "random")
    with pytest.raises(CgmbenchError, match="all zeros"):
        frame_consistency(torch.zeros(3, 2))


def test_static_video_is_fully_consistent_and_moving_less():
    static = _static()
    moving = _levels([0, 60, 200, 90, 30], size=8)
    # colour changes per channel so that the embeddings' directions change
    moving[:, 1] = 255 - moving[:, 1]
    videos = torch.stack([static, moving])
    for fn in (clip_frame_consistency, first_frame_consistency, vbench_consistency):
        scores = fn(videos, _channel_means)
        assert scores.shape == (2,) and scores.dtype == np.float64
        assert scores[0] == pytest.approx(1.0, abs=1e-12)
        assert scores[1] < 0.95


def test_consistency_per_video_by_hand():
    # grey levels: channel means are (v+1, v+1, v+1) -> all cosines 1; so use an embedding of the level itself.
    video = _levels([10, 20, 40])
    embed = lambda frames: torch.stack([torch.tensor([1.0, float(fr[0, 0, 0]) / 10]) for fr in frames])  # noqa: E731
    # embeddings (1,1), (1,2), (1,4)
    c = lambda a, b: (a[0] * b[0] + a[1] * b[1]) / math.hypot(*a) / math.hypot(*b)  # noqa: E731
    e = [(1, 1), (1, 2), (1, 4)]
    assert clip_frame_consistency([video], embed)[0] == pytest.approx((c(e[0], e[1]) + c(e[1], e[2])) / 2)
    assert first_frame_consistency([video], embed)[0] == pytest.approx((c(e[1], e[0]) + c(e[2], e[0])) / 2)
    expected_vb = (c(e[1], e[0]) + 0.5 * (c(e[2], e[1]) + c(e[2], e[0]))) / 2
    assert vbench_consistency([video], embed)[0] == pytest.approx(expected_vb)


def test_flicker_by_hand():
    videos = [_static(), _levels([0, 10, 30]), _levels([100, 40, 100, 40])]
    mad = mean_abs_frame_difference(videos)
    np.testing.assert_allclose(mad, [0.0, 15.0, 60.0], rtol=0, atol=1e-12)  # (10 + 20) / 2; (60 * 3) / 3
    np.testing.assert_allclose(temporal_flickering(videos), [1.0, 240 / 255, 195 / 255], rtol=0, atol=1e-12)
    # Half the pixels change by 255 between two frames: MAE 127.5.
    half = torch.zeros(2, 3, 2, 2, dtype=torch.uint8)
    half[1, :, 0] = 255
    assert mean_abs_frame_difference([half])[0] == 127.5


def test_dynamic_degree_with_injected_flow():
    # 8 frames at 32x32: threshold 6 * 32/256 = 0.75 px, count_num = round(4 * 8 / 16) = 2 pairs.
    def flow_of(speed):
        return flow_magnitude(lambda a, b: torch.stack([torch.full(a.shape[1:], float(speed)), torch.zeros(a.shape[1:])]))

    videos = torch.stack([_static(8, 32), _moving_square()])
    assert dynamic_degree(videos, flow_of(0.0)).tolist() == [0.0, 0.0]
    assert dynamic_degree(videos, flow_of(0.8)).tolist() == [1.0, 1.0]
    assert dynamic_degree(videos, flow_of(0.7)).tolist() == [0.0, 0.0]

    # Only one pair moves: below count_num = 2.
    calls = iter(range(100))

    def one_pair(a, b):
        k = next(calls)
        return torch.stack([torch.full(a.shape[1:], 5.0 if k == 3 else 0.0), torch.zeros(a.shape[1:])])

    assert dynamic_degree([_static(8, 32)], flow_magnitude(one_pair)).tolist() == [0.0]
    # 10 frames: round(2.5) = 2 (Python rounding, as VBench); 6 frames: round(1.5) = 2.
    calls2 = iter(range(100))

    def two_pairs(a, b):
        k = next(calls2)
        return torch.stack([torch.full(a.shape[1:], 5.0 if k in (0, 1) else 0.0), torch.zeros(a.shape[1:])])

    assert dynamic_degree([_static(10, 32)], flow_magnitude(two_pairs)).tolist() == [1.0]


def test_dynamic_degree_fps_subsampling():
    # 24 fps: every 3rd frame is kept (VBench's round(fps / 8)), so 24 frames -> 8 frames, 7 pairs.
    seen = []

    def count_pairs(a, b):
        seen.append(1)
        return torch.zeros(a.shape[1:], dtype=torch.float64)

    dynamic_degree([_static(24, 32)], count_pairs, fps=24.0)
    assert len(seen) == 7
    # 4 fps: threshold doubles (factor 8 / fps = 2): 1.2 px passes at 8 fps but not at 4 fps.
    flow = flow_magnitude(lambda a, b: torch.stack([torch.full(a.shape[1:], 1.2), torch.zeros(a.shape[1:])]))
    assert dynamic_degree([_static(8, 32)], flow, fps=8.0).tolist() == [1.0]
    assert dynamic_degree([_static(8, 32)], flow, fps=4.0).tolist() == [0.0]


def test_dynamic_degree_frame_difference_fallback():
    # Without a flow model the motion map is |frame difference|; the square's moving edges change by 255.
    static, moving = _static(8, 32), _moving_square(t=7)  # the square stays inside the frame
    pair = dynamic_degree_pair_scores(moving)
    # Each pair: 2 * 4 * 8 = 64 changed pixels of 1024; top 5% = int(51.2) = 51 values, all 255.
    np.testing.assert_allclose(pair, np.full(6, 255.0), rtol=0, atol=0)
    assert dynamic_degree_pair_scores(static).tolist() == [0.0] * 7
    assert dynamic_degree([static, moving], threshold=20.0).tolist() == [0.0, 1.0]


def test_bad_inputs():
    with pytest.raises(CgmbenchError, match="uint8"):
        temporal_flickering([_static().float()])
    with pytest.raises(CgmbenchError, match="at least 2"):
        temporal_flickering([_static(1)])
    with pytest.raises(CgmbenchError, match=r"\[N, T, 3, H, W\]"):
        mean_abs_frame_difference(_static())
    with pytest.raises(CgmbenchError, match="expected \\[T, d\\]"):
        clip_frame_consistency([_static()], lambda frames: frames.double().mean(dim=(1, 2, 3)))
