"""FVD: protocol presets, the seeded clip sampler, the distance against a direct float64 recomputation,
and the StyleGAN-V detector call convention (a scripted stand-in with the same signature)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import scipy.linalg
import torch

from cgmbench.errors import CgmbenchError
from cgmbench.extractors.i3d import StyleGANVI3D, load_styleganv_detector
from cgmbench.metrics.fvd import (
    PROTOCOLS,
    compute_fvd,
    fake_clip_indices,
    fvd_from_features,
    get_fvd_protocol,
    plan_clips,
    take_clips,
)

D = 6  # feature dim of the toy extractor


def _toy_protocol(base="styleganv_fvd2048_16f", **changes):
    fields = dict(name="toy", num_real=40, num_fake=30, num_frames=4, min_video_frames=4, resolution=None,
                  feature_dim=D)
    fields.update(changes)
    return PROTOCOLS[base].replace(**fields)


class ToyExtractor:
    """Deterministic clip features: a fixed projection of per-frame, per-channel means (float32 out)."""

    def __init__(self, num_frames):
        g = torch.Generator().manual_seed(5)
        self.w = torch.randn(num_frames * 3, D, generator=g)
        self.calls = []

    def __call__(self, clips):
        assert clips.dtype == torch.uint8 and clips.ndim == 5 and clips.shape[2] == 3
        self.calls.append(clips.shape[0])
        m = clips.float().mean(dim=(3, 4)).flatten(1) / 255.0  # [n, F*3]
        # One clip at a time, so that a clip's features do not depend on the batch it came in.
        return torch.cat([torch.tanh(row[None] @ self.w) + 0.1 * row[None, :D] ** 2 for row in m])


def _videos(n, lengths, seed, size=8, shift=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        base = torch.randint(0, 200, (1, 3, 1, 1), generator=g)
        t = lengths[i % len(lengths)]
        ramp = torch.arange(t).view(t, 1, 1, 1) * (3 + i % 4)
        noise = torch.randint(0, 40, (t, 3, size, size), generator=g)
        out.append(((base + ramp + noise + shift) % 256).to(torch.uint8))
    return out


def _direct_fvd(real_feats, fake_feats, ddof):
    """Textbook float64 FD: np.cov with the given ddof and scipy's general matrix square root."""
    r = np.asarray(real_feats, dtype=np.float64)
    f = np.asarray(fake_feats, dtype=np.float64)
    mu_r, mu_f = r.mean(0), f.mean(0)
    s_r, s_f = np.cov(r, rowvar=False, ddof=ddof), np.cov(f, rowvar=False, ddof=ddof)
    covmean = scipy.linalg.sqrtm(s_r @ s_f).real
    return float(((mu_r - mu_f) ** 2).sum() + np.trace(s_r) + np.trace(s_f) - 2 * np.trace(covmean))


# ---------------------------------------------------------------------------------------------
# The distance
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("base", ["styleganv_fvd2048_16f", "tats_fvd2048"])
def test_pipeline_equals_direct_float64_recomputation(base):
    protocol = _toy_protocol(base)
    real = _videos(50, [3, 6, 9, 12, 4], seed=1)  # every 5th video (3 frames) is too short
    fake = torch.stack(_videos(30, [7], seed=2, shift=17))
    ext = ToyExtractor(protocol.num_frames)
    result = compute_fvd(real, fake, ext, protocol, batch_size=7)

    # Recompute from scratch: the planned real clips, the first frames of each generated video.
    plan = plan_clips([len(v) for v in real], protocol)
    real_clips = torch.stack([real[v][s:s + 4] for v, s in zip(plan.videos, plan.starts)])
    real_feats = ext(real_clips).double().numpy()
    fake_feats = ext(fake[:, :4]).double().numpy()
    expected = _direct_fvd(real_feats, fake_feats, protocol.covariance_ddof)
    assert result.value == pytest.approx(expected, rel=1e-8, abs=1e-8)
    assert result.value > 0.01
    assert (result.num_real, result.num_fake) == (40, 30)
    assert result.num_discarded == len(plan.discarded) > 0
    assert max(ext.calls[:-2]) == 7  # batched as asked
    # The batch size only changes float rounding of the features' accumulation.
    again = compute_fvd(real, fake, ToyExtractor(4), protocol, batch_size=40)
    assert again.value == pytest.approx(result.value, rel=1e-10)


def test_covariance_ddof_is_the_protocols():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(30, 4, generator=g), torch.randn(25, 4, generator=g) + 0.3
    for ddof in (0, 1):
        assert fvd_from_features(a, b, ddof) == pytest.approx(_direct_fvd(a, b, ddof), rel=1e-8, abs=1e-8)
    assert fvd_from_features(a, b, 0) != pytest.approx(fvd_from_features(a, b, 1), rel=1e-6)
    assert PROTOCOLS["styleganv_fvd2048_16f"].covariance_ddof == 0
    assert PROTOCOLS["tats_fvd2048"].covariance_ddof == 1
    assert PROTOCOLS["cdfvd_videomae"].covariance_ddof == 0


def test_identical_sets_give_zero_and_shift_increases():
    protocol = _toy_protocol(num_real=30, num_fake=30, real_clip_start="first")
    real = _videos(30, [4], seed=3)
    ext = ToyExtractor(4)
    same = compute_fvd(real, torch.stack(real), ext, protocol)
    assert abs(same.value) < 1e-9
    shifted = compute_fvd(real, torch.stack(_videos(30, [4], seed=3, shift=60)), ext, protocol)
    assert shifted.value > 1e-2 > 1e6 * abs(same.value)


# ---------------------------------------------------------------------------------------------
# The clip sampler
# ---------------------------------------------------------------------------------------------


def test_clip_plan_consecutive_offsets_and_discards():
    protocol = PROTOCOLS["styleganv_fvd2048_16f"].replace(name="small", num_real=20)
    lengths = [15, 16, 40, 3, 100] * 8  # 15 and 3 are too short
    plan = plan_clips(lengths, protocol)
    assert len(plan.videos) == 20
    assert all(lengths[v] >= 16 for v in plan.videos)
    # Selection stops at the 20th eligible video (index 32); discards are the short ones seen before it.
    assert plan.videos[-1] == 32
    assert plan.discarded == tuple(i for i in range(33) if lengths[i] < 16)
    for v, s, frames in zip(plan.videos, plan.starts, plan.frames):
        assert frames == list(range(s, s + 16))  # consecutive
        assert 0 <= s <= lengths[v] - 16
    assert {s for v, s in zip(plan.videos, plan.starts) if lengths[v] == 16} == {0}
    assert len({s for v, s in zip(plan.videos, plan.starts) if lengths[v] == 100}) > 1  # random offsets


def test_clip_plan_is_seeded():
    protocol = PROTOCOLS["styleganv_fvd2048_16f"].replace(name="small", num_real=50)
    lengths = [64] * 50
    assert plan_clips(lengths, protocol) == plan_clips(lengths, protocol)
    other = plan_clips(lengths, protocol.replace(seed=1))
    assert other.starts != plan_clips(lengths, protocol).starts
    # Every valid start can occur, and none outside [0, 48].
    many = plan_clips([20] * 400, protocol.replace(num_real=400))
    assert set(many.starts) == {0, 1, 2, 3, 4}


def test_clip_plan_stride_and_first_start():
    protocol = PROTOCOLS["styleganv_fvd2048_16f"].replace(
        name="sub8", num_real=3, frame_stride=8, min_video_frames=128, real_clip_start="first")
    assert protocol.clip_span == 121
    plan = plan_clips([127, 128, 200, 130], protocol)
    assert plan.videos == (1, 2, 3) and plan.discarded == (0,)
    assert plan.frames[0] == list(range(0, 121, 8))


def test_too_few_videos_is_an_error_unless_allowed():
    protocol = PROTOCOLS["styleganv_fvd2048_16f"].replace(name="small", num_real=5)
    with pytest.raises(CgmbenchError, match=r"needs 5 real videos .* found 3 \(2 discarded"):
        plan_clips([16, 2, 17, 3, 30], protocol)
    assert len(plan_clips([16, 2, 17, 3, 30], protocol, allow_fewer=True).videos) == 3
    with pytest.raises(CgmbenchError, match="needs 16"):
        plan_clips([16, 2], protocol.replace(discard_short_videos=False))


def test_cdfvd_needs_more_than_num_frames():
    lengths = [16, 17, 16, 40]
    assert plan_clips(lengths, PROTOCOLS["cdfvd_videomae"]).videos == (1, 3)  # all eligible, 'full'
    stylegan = PROTOCOLS["styleganv_fvd2048_16f"].replace(name="small", num_real=4)
    assert plan_clips(lengths, stylegan).videos == (0, 1, 2, 3)


def test_take_clips_reads_the_planned_frames():
    videos = [torch.full((n, 3, 2, 2), 0, dtype=torch.uint8) + torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1)
              for n in (20, 30)]
    protocol = PROTOCOLS["styleganv_fvd2048_16f"].replace(name="small", num_real=2)
    plan = plan_clips([20, 30], protocol)
    clips = take_clips(videos, plan)
    assert clips.shape == (2, 16, 3, 2, 2)
    for row, s in enumerate(plan.starts):
        assert clips[row, :, 0, 0, 0].tolist() == list(range(s, s + 16))


def test_fake_shortfall_policies():
    assert fake_clip_indices(5, _toy_protocol(num_fake=3)) == [0, 1, 2]
    with pytest.raises(CgmbenchError, match="needs 30 generated videos, got 4"):
        fake_clip_indices(4, _toy_protocol())
    assert fake_clip_indices(4, _toy_protocol("cdfvd_videomae", num_fake=6)) == [0, 1, 2, 3, 0, 1]


# ---------------------------------------------------------------------------------------------
# Protocol records
# ---------------------------------------------------------------------------------------------


def test_presets_record_every_detail():
    p = get_fvd_protocol("styleganv_fvd2048_16f")
    d = p.to_dict()
    json.dumps(d)
    for key in ("real_split", "num_real", "num_fake", "num_frames", "frame_stride", "resolution", "resize",
                "real_clip_start", "fake_clip_start", "discard_short_videos", "min_video_frames", "seed",
                "covariance_ddof", "extractor", "feature"):
        assert key in d
    assert (d["num_real"], d["num_fake"], d["num_frames"], d["frame_stride"]) == (2048, 2048, 16, 1)
    assert d["real_clip_start"] == "random" and d["fake_clip_start"] == "first" and d["discard_short_videos"]
    assert PROTOCOLS["tats_fvd2048"].extractor == "i3d_pt400" and PROTOCOLS["tats_fvd2048"].resolution == 128
    cd = PROTOCOLS["cdfvd_videomae"]
    assert (cd.num_real, cd.num_fake, cd.seed, cd.feature_dim, cd.fake_shortfall) == (None, 2048, 42, 1408, "cycle")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.num_real = 10
    with pytest.raises(CgmbenchError, match="unknown FVD protocol"):
        get_fvd_protocol("fvd")
    with pytest.raises(CgmbenchError, match="shorter than one clip"):
        p.replace(min_video_frames=8)


def test_resolution_is_checked():
    protocol = _toy_protocol(resolution=16)
    with pytest.raises(CgmbenchError, match=r"\(8, 8\) pixels; protocol 'toy' is defined at 16x16"):
        compute_fvd(_videos(40, [5], seed=1), torch.stack(_videos(30, [5], seed=2)), ToyExtractor(4), protocol)


# ---------------------------------------------------------------------------------------------
# StyleGAN-V TorchScript detector convention
# ---------------------------------------------------------------------------------------------


class _StandInDetector(torch.nn.Module):
    """Same signature as i3d_torchscript.pt; refuses anything but uint8 [B, 3, T, H, W] and the FVD flags.

    Feature j = mean of channel j % 3 at frame j % T (so a wrong frame/channel order changes it), in
    [-1, 1] when ``rescale``.
    """

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.dim() != 5 or x.shape[1] != 3:
            raise RuntimeError("expected uint8 [B, 3, T, H, W]")
        if not (rescale and resize and return_features):
            raise RuntimeError("FVD calls with rescale=True, resize=True, return_features=True")
        v = x.float() * (2.0 / 255.0) - 1.0
        t = x.shape[2]
        cols = [v[:, j % 3, j % t].mean(dim=(1, 2)) for j in range(400)]
        return torch.stack(cols, dim=1) * self.scale


def test_styleganv_wrapper_call_convention(tmp_path):
    scripted = torch.jit.script(_StandInDetector())
    path = tmp_path / "i3d_torchscript.pt"
    scripted.save(str(path))
    ext = load_styleganv_detector(path)
    assert isinstance(ext, StyleGANVI3D)
    videos = torch.randint(0, 256, (3, 5, 3, 6, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    feats = ext(videos, batch_size=2)
    assert feats.dtype == torch.float64 and feats.shape == (3, 400)
    expected = torch.stack(
        [(videos[:, j % 5, j % 3].double() * (2 / 255) - 1).mean(dim=(1, 2)) for j in range(400)], dim=1)
    torch.testing.assert_close(feats, expected, atol=1e-6, rtol=0)
    info = ext.describe()
    assert info["name"] == "i3d_tfhub_ts" and len(info["weights_sha256"]) == 64
    assert info["detector_kwargs"] == {"rescale": True, "resize": True, "return_features": True}
    with pytest.raises(CgmbenchError, match="uint8"):
        ext(videos.float())
    with pytest.raises(CgmbenchError, match=r"\[B, T, 3, H, W\]"):
        ext(videos.permute(0, 2, 1, 3, 4))  # channels before frames is the detector's layout, not ours


def test_styleganv_wrapper_in_the_fvd_pipeline():
    ext = StyleGANVI3D(torch.jit.script(_StandInDetector()))
    protocol = _toy_protocol(num_real=30, num_fake=30, feature_dim=400)
    real = _videos(30, [6], seed=4)
    with pytest.warns(Warning):  # 30 clips for 400 dims: singular covariance, still finite
        r = compute_fvd(real, torch.stack(_videos(30, [6], seed=9, shift=90)), ext, protocol)
    assert np.isfinite(r.value) and r.value > 0
    assert r.extractor["name"] == "i3d_tfhub_ts"


def test_unreadable_detector_is_an_error(tmp_path):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not torchscript")
    with pytest.raises(CgmbenchError, match="cannot load .* as TorchScript"):
        load_styleganv_detector(bad)
    with pytest.raises(CgmbenchError, match="does not exist"):
        load_styleganv_detector(tmp_path / "missing.pt")
