"""The editing metrics of the catalog (cgmbench/metrics/editing.py): numbers against direct re-computations."""

import math

import numpy as np
import pytest
import torch

from cgmbench.catalog import SampleInputs, direction, metric_spec
from cgmbench.conditions import Conditions
from cgmbench.errors import CgmbenchError
from cgmbench.metrics import editing as E
from cgmbench.spec.task import load_task
from cgmbench.worlds.sources import ShapesSource

torch.set_num_threads(1)


class _Store:
    def __init__(self, samples, shard=5):
        self.samples, self.shard = samples, shard

    def iter_batches(self, n=None):
        n = len(self.samples) if n is None else n
        for lo in range(0, n, self.shard):
            yield lo, self.samples[lo:min(lo + self.shard, n)]


class _Task:
    name, kind, resolution = "toy-edit", "editing", 16


class _Source:
    has_judge = False

    def __init__(self, images, masks):
        self.images, self.masks = images, masks

    def conditions(self, indices):
        idx = list(indices)
        return Conditions(kind="image+text", indices=idx, images=torch.from_numpy(self.images[idx]),
                          masks=torch.from_numpy(self.masks[idx]), texts=["x"] * len(idx))


def _fixture(n=7, res=16, seed=0):
    rng = np.random.default_rng(seed)
    src = rng.integers(0, 256, (n, 3, res, res), dtype=np.uint8)
    out = np.clip(src.astype(int) + rng.integers(-40, 41, src.shape), 0, 255).astype(np.uint8)
    masks = np.zeros((n, 1, res, res), np.uint8)
    for i in range(n):
        side = 2 + i
        masks[i, :, 1:1 + side, 2:2 + side] = 255
        out[i][:, masks[i, 0] > 0] = rng.integers(0, 256, (3, int((masks[i, 0] > 0).sum())))
    return src, out, masks


def _inputs(src, out, masks, n=None):
    return SampleInputs(_Task(), _Source(src, masks), _Store(out), len(out) if n is None else n, seed=0)


def test_background_psnr_mse_are_true_masked_means_and_pie_compat_is_diluted():
    src, out, masks = _fixture()
    inputs = _inputs(src, out, masks)
    x, y = src / 255.0, out / 255.0
    bg = masks[:, 0] == 0
    mse_bg = np.array([((x[i] - y[i]) ** 2)[:, bg[i]].mean() for i in range(len(x))])
    mse_pie = np.array([(((x[i] - y[i]) * bg[i]) ** 2).mean() for i in range(len(x))])  # PIE-Bench: x(1-m), frame
    f_bg = bg.mean(axis=(1, 2))

    assert metric_spec("mse_bg").compute(inputs)["value"] == pytest.approx(mse_bg.mean(), rel=1e-12)
    assert metric_spec("mse_bg_pie_compat").compute(inputs)["value"] == pytest.approx(mse_pie.mean(), rel=1e-12)
    psnr = metric_spec("psnr_bg").compute(inputs)
    psnr_pie = metric_spec("psnr_bg_pie_compat").compute(inputs)
    assert psnr["value"] == pytest.approx(np.mean(-10 * np.log10(mse_bg)), rel=1e-12)
    assert psnr_pie["value"] == pytest.approx(np.mean(-10 * np.log10(mse_pie)), rel=1e-12)
    # the dilution of the research note, per image: PSNR_pie = PSNR_bg - 10 log10(f_bg), MSE_pie = f_bg MSE_bg
    assert psnr_pie["value"] - psnr["value"] == pytest.approx(np.mean(-10 * np.log10(f_bg)), rel=1e-9)
    assert np.allclose(mse_pie, f_bg * mse_bg, rtol=1e-12)
    assert psnr["n"] == 7 and psnr["ci95"][0] <= psnr["value"] <= psnr["ci95"][1]
    assert psnr["protocol"] == "masked_mean" and psnr_pie["protocol"] == "pie_compat"
    assert direction("psnr_bg") == "max" and direction("mse_bg_pie_compat") == "min"


def test_ssim_bg_pie_compat_is_ssim_of_the_masked_images():
    from cgmbench.metrics.masked import ssim_map, ssim_valid

    src, out, masks = _fixture()
    keep = torch.from_numpy(masks[:, 0] == 0).unsqueeze(1).double()
    xm, ym = torch.from_numpy(src).double() / 255 * keep, torch.from_numpy(out).double() / 255 * keep
    want = ssim_map(xm, ym)[:, :, ssim_valid(16, 16)].mean(dim=(1, 2)).mean()
    got = metric_spec("ssim_bg_pie_compat").compute(_inputs(src, out, masks))["value"]
    assert got == pytest.approx(float(want), rel=1e-12)


def test_result_does_not_depend_on_the_store_shards():
    src, out, masks = _fixture(n=70)
    a = SampleInputs(_Task(), _Source(src, masks), _Store(out, shard=3), 70)
    b = SampleInputs(_Task(), _Source(src, masks), _Store(out, shard=64), 70)
    assert metric_spec("psnr_bg").compute(a) == metric_spec("psnr_bg").compute(b)


def test_identical_background_psnr_is_capped_not_inf():
    src, _, masks = _fixture()
    entry = metric_spec("psnr_bg").compute(_inputs(src, src.copy(), masks))
    assert entry["value"] == E.PSNR_CAP_DB and math.isfinite(entry["value"])


def test_full_masks_are_left_out_and_counted_all_full_is_an_error():
    src, out, masks = _fixture()
    masks[2] = 255
    entry = metric_spec("psnr_bg").compute(_inputs(src, out, masks))
    assert entry["n"] == 6 and entry["left_out_full_mask"] == 1 and "undefined" in entry["note"]
    masks[:] = 255
    with pytest.raises(CgmbenchError, match="whole image"):
        metric_spec("mse_bg").compute(_inputs(src, out, masks))


def test_empty_masks_equal_whole_image_metrics_in_both_protocols():
    src, out, masks = _fixture()
    masks[:] = 0
    a = metric_spec("mse_bg").compute(_inputs(src, out, masks))["value"]
    b = metric_spec("mse_bg_pie_compat").compute(_inputs(src, out, masks))["value"]
    assert a == pytest.approx(b, rel=1e-12) == pytest.approx(((src / 255.0 - out / 255.0) ** 2).mean(), rel=1e-12)


def test_bad_inputs_are_one_line_errors():
    src, out, masks = _fixture()
    with pytest.raises(CgmbenchError, match="edit masks have shape"):
        metric_spec("psnr_bg").compute(_inputs(src, out, masks[:, :, :8, :8]))
    with pytest.raises(CgmbenchError, match="differ"):
        metric_spec("psnr_bg").compute(_inputs(src, out[:, :, :8, :8], masks))
    with pytest.raises(CgmbenchError, match="exact judge"):
        metric_spec("edit_success").compute(_inputs(src, out, masks))


def test_lpips_bg_averages_the_distance_map_over_the_background(monkeypatch):
    src, out, masks = _fixture()

    def fake(protocol):  # an "LPIPS" whose map is |x - y| averaged over channels
        def fn(x, y):
            d = (x - y).abs().mean(dim=1, keepdim=True)
            return d if protocol == "masked_mean" else d.mean(dim=(1, 2, 3))
        return fn, {"weights_sha256": "0" * 64, "version": "fake"}

    monkeypatch.setattr(E, "_lpips_map_fn", fake)
    bg = masks[:, 0] == 0
    d = np.abs(2 * (src / 255.0) - 2 * (out / 255.0)).mean(axis=1)  # (2 * uint8 would wrap)
    want = np.mean([d[i][bg[i]].mean() for i in range(len(src))])
    assert metric_spec("lpips_bg").compute(_inputs(src, out, masks))["value"] == pytest.approx(want, rel=1e-6)


def test_lpips_map_is_zero_for_identical_images_and_sums_upsampled_taps():
    from cgmbench.extractors.lpips import LPIPS

    torch.manual_seed(0)
    net = LPIPS()
    for lin in net.lins:
        lin.model[1].weight.data.uniform_(0, 1)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    y = torch.rand(2, 3, 64, 64) * 2 - 1
    assert E.lpips_map(net, x, x).abs().max() == 0
    m = E.lpips_map(net, x, y)
    assert m.shape == (2, 1, 64, 64) and (m >= 0).all()
    # bilinear upsampling (align_corners=False) preserves each tap's mean only approximately; same order as net()
    assert float(m.mean()) == pytest.approx(float(net(x, y).mean()), rel=0.2)


def test_edit_success_and_clip_direction_on_shapes_edit_by_edit_type():
    task = load_task("shapes-edit")
    source = ShapesSource(task, {"size": 1000})
    n = 24
    idx = list(range(n))
    oracle = source.oracle(idx, [0] * n)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, oracle.shape, dtype=np.uint8)
    types = source.edit_types(idx)
    assert set(types) <= {"recolor", "swap", "add", "remove", "move"} and len(set(types)) >= 4
    good = metric_spec("edit_success").compute(SampleInputs(task, source, _Store(oracle), n))
    bad = metric_spec("edit_success").compute(SampleInputs(task, source, _Store(noise), n))
    assert good["value"] == 1.0 and bad["value"] == 0.0
    table = good["by_category"]["edit_type"]
    assert sum(t["n"] for t in table.values()) == n and table["remove"]["n"] == types.count("remove")
    t0, t1 = source.edit_captions(idx[:2])
    assert all(" " in c for c in t0 + t1) and t0 != t1
    cd_good = metric_spec("clip_direction_shapes_clip").compute(SampleInputs(task, source, _Store(oracle), n))
    unchanged = source.conditions(idx).images.numpy()
    cd_none = metric_spec("clip_direction_shapes_clip").compute(SampleInputs(task, source, _Store(unchanged), n))
    assert cd_none["value"] == 0.0 and cd_good["value"] > 0.5
