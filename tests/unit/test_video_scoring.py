"""The harness's video pass: FVD against a direct recomputation from the same features, the temporal metrics
against direct numpy definitions, the catalog entries, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from cgmbench.catalog import direction, in_group, metric_spec
from cgmbench.errors import CgmbenchError
from cgmbench.extractors.i3d import StyleGANVI3D
from cgmbench.scoring import video as V
from cgmbench.sources.base import open_source
from cgmbench.spec.task import load_task

torch.set_num_threads(1)


class _Store:
    """The sample store's reading API over an in-memory uint8 array (chunks of 7, like odd shard sizes)."""

    def __init__(self, arr: np.ndarray):
        self.arr = arr
        self.sample_shape = tuple(arr.shape[1:])

    def iter_batches(self, n):
        for lo in range(0, n, 7):
            yield lo, self.arr[lo:min(n, lo + 7)]


class _SmallI3D(torch.nn.Module):
    """StyleGAN-V call convention, 8-d features (so that N > d and the reference sqrtm is well conditioned)."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Parameter(torch.randn(12, 8, generator=torch.Generator().manual_seed(1)),
                                       requires_grad=False)

    def forward(self, x, rescale: bool = False, resize: bool = False, return_features: bool = False):
        x = x.float() / 127.5 - 1.0 if rescale else x.float()
        b, c, t, h, w = x.shape
        pooled = x.reshape(b, c, 2, t // 2, 2, h // 2, w).mean(dim=(3, 5, 6)).reshape(b, -1)  # 3*2*2 = 12
        return torch.tanh(pooled @ self.proj) + 0.1 * pooled[:, :8] ** 2


def _fake_videos(task, n=40):
    """Real-looking fakes: held-out shapes videos (another split), so FVD is small but not zero."""
    src = open_source(task, "conditions", split="train")
    return np.ascontiguousarray(src.references(list(range(n))))


def _direct_fd(real: np.ndarray, fake: np.ndarray, ddof: int) -> float:
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False, ddof=ddof), np.cov(fake, rowvar=False, ddof=ddof)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_fvd_equals_direct_recomputation_with_an_i3d_stand_in(monkeypatch):
    task = load_task("shapes-t2v")
    detector = torch.jit.script(_SmallI3D())
    monkeypatch.setattr(V, "load_video_extractor", lambda name, device="cpu": StyleGANVI3D(detector, "0" * 64, 8))
    fakes = _fake_videos(task)
    entry = V.fvd_entry(task, _Store(fakes), len(fakes), return_features=True)
    real_feats, fake_feats = entry.pop("_features")
    # direct: every real video whole (shapes protocol: first 500, start 0), the detector called by hand
    ref = open_source(task, "reference")
    real_videos = torch.from_numpy(np.ascontiguousarray(ref.references(list(range(len(ref))))))
    with torch.no_grad():
        real_direct = detector(real_videos.permute(0, 2, 1, 3, 4), True, True, True).double().numpy()
        fake_direct = detector(torch.from_numpy(fakes).permute(0, 2, 1, 3, 4), True, True, True).double().numpy()
    np.testing.assert_allclose(real_feats, real_direct, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fake_feats, fake_direct, rtol=0, atol=1e-12)
    direct = _direct_fd(real_direct, fake_direct, ddof=1)
    assert entry["value"] == pytest.approx(direct, rel=1e-8, abs=1e-10)
    assert entry["protocol"] == "shapes_fvd_8f" and entry["n"] == 40 and entry["n_reference"] == 500
    assert entry["ci95"][0] <= entry["value"] <= entry["ci95"][1] and entry["ci95"][0] < entry["ci95"][1]


@pytest.mark.slow
def test_shapes_fvd_uses_the_shipped_frame_network_and_separates_noise():
    from cgmbench.extractors.shapes import ShapesCNNExtractor

    task = load_task("shapes-t2v")
    fakes = _fake_videos(task, 24)
    entry = V.fvd_entry(task, _Store(fakes), 24, return_features=True)
    _, fake_feats = entry.pop("_features")
    cnn = ShapesCNNExtractor()
    with torch.no_grad():
        f = cnn(torch.from_numpy(fakes.reshape(-1, 3, 32, 32))).double().numpy().reshape(24, 8, -1)
    direct = np.concatenate([f.mean(1), (f[:, -1] - f[:, 0]) / 7], axis=1)
    np.testing.assert_allclose(fake_feats, direct, rtol=1e-6, atol=1e-6)
    assert entry["extractor"] == "shapes-cnn-video" and entry["weights_sha256"] == cnn.weights_sha256
    assert entry["comparable"] is True and entry["protocol_details"]["num_fake"] == 24
    noise = np.random.default_rng(0).integers(0, 256, fakes.shape, dtype=np.uint8)
    noisy = V.fvd_entry(task, _Store(noise), 24)
    assert noisy["value"] > 5 * entry["value"]
    # frozen videos (frame 0 repeated) lose the motion half of the feature: farther than the real moving ones
    frozen = np.repeat(fakes[:, :1], 8, axis=1)
    assert V.fvd_entry(task, _Store(frozen), 24)["value"] > entry["value"]


def test_temporal_metrics_equal_their_definitions():
    from cgmbench.worlds.judge import judge_video

    task = load_task("shapes-t2v")
    src = open_source(task, "conditions")
    fakes = np.ascontiguousarray(src.oracle(list(range(20)), list(range(20))))
    fakes[::3] = np.random.default_rng(1).integers(0, 256, fakes[::3].shape, dtype=np.uint8)  # some noise videos
    names = ["motion_accuracy", "temporal_flickering", "dynamic_degree", "clip_frame_consistency",
             "first_frame_consistency"]
    metrics, pending = V.video_entries(names, task, src, _Store(fakes), 20)
    assert pending == {}
    x = fakes.astype(np.float64)
    flicker = ((255 - np.abs(x[:, 1:] - x[:, :-1]).mean(axis=(2, 3, 4)).mean(axis=1)) / 255)
    assert metrics["temporal_flickering"]["value"] == pytest.approx(flicker.mean(), rel=1e-12)
    motion = [float(judge_video(v, src.item(i)["spec"])["motion"]) for i, v in enumerate(fakes)]
    assert metrics["motion_accuracy"]["value"] == pytest.approx(np.mean(motion))
    assert 0 < metrics["motion_accuracy"]["value"] < 1  # oracle videos move right, noise ones do not
    for m in names:
        e = metrics[m]
        assert e["n"] == 20 and e["ci95"][0] <= e["value"] <= e["ci95"][1]


@pytest.mark.slow
def test_catalog_and_bad_input():
    assert set(V.VIDEO_METRICS) <= set(in_group("video"))
    assert direction("fvd") == "min" and direction("motion_accuracy") == "max"
    assert metric_spec("fvd").pending is None
    task = load_task("shapes-t2v")
    images = np.zeros((4, 3, 32, 32), np.uint8)
    _, pending = V.video_entries(["fvd", "temporal_flickering"], task, None, _Store(images), 4)
    assert "needs video samples" in pending["fvd"]
    short = np.zeros((4, 5, 3, 32, 32), np.uint8)
    with pytest.raises(CgmbenchError, match="generated videos have 5 frames; protocol shapes_fvd_8f needs clips of 8"):
        V.fvd_entry(task, _Store(short), 4)
