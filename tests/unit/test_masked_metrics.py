"""Background-preservation metrics: PIE-Bench's whole-frame-after-masking numbers (pie_compat) against a direct
NumPy/SciPy re-computation of its formulas and against the torchmetrics calls it makes; true masked means against
NumPy; the exact dilution relation between the two; full, empty and mis-sized masks; the image convention."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from cgmbench.datasets.pie_bench import decode_mask
from cgmbench.errors import CgmbenchError
from cgmbench.metrics.masked import background_score, pie_compat_from_masked_mean

TOL = dict(rtol=1e-5, atol=1e-5)
APPROX = dict(rel=1e-5, abs=1e-5)
H = W = 64


@pytest.fixture(scope="module")
def edit_set():
    """Three source/edited pairs with PIE-Bench-style masks (run-length, 1-px border forced): the edited region is
    repainted, the background gets small noise (pair 2: none, an exact background)."""
    rng = np.random.default_rng(1234)
    runs = [
        [20 * W + 10, 30, 21 * W + 10, 30, 22 * W + 12, 25, 40 * W + 0, 8 * W],  # blocks and full rows
        [0, 32 * W],                                                                  # top half
        [5 * W + 5, 3],                                                               # tiny edit
    ]
    masks = np.stack([decode_mask(r, (H, W)) for r in runs])
    src = rng.integers(0, 256, (3, 3, H, W), dtype=np.uint8)
    noise = rng.integers(-6, 7, src.shape) * np.array([1, 1, 0])[:, None, None, None]
    edited = np.clip(src.astype(np.int64) + noise, 0, 255)
    repaint = rng.integers(0, 256, src.shape)
    edited = np.where(masks[:, None], repaint, edited).astype(np.uint8)
    return src, edited, masks


# -- PIE-Bench's formulas, re-computed directly (float32 images / 255, multiplied by 1 - mask, whole frame) ----


def _pie_masked(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / 255 * (1 - mask.astype(np.float32))[None]


def _gauss11() -> np.ndarray:
    d = np.arange(11) - 5.0
    g = np.exp(-0.5 * (d / 1.5) ** 2)
    g /= g.sum()
    return np.outer(g, g)


def _ssim_map_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM map [3, H, W] with a Gaussian 11/1.5 window, reflect ('mirror') borders, data range 1."""
    k = _gauss11()
    a, b = a.astype(np.float64), b.astype(np.float64)
    blur = [np.stack([ndimage.correlate(c, k, mode="mirror") for c in im]) for im in (a, b, a * a, b * b, a * b)]
    mu_a, mu_b, e_aa, e_bb, e_ab = blur
    va, vb = np.maximum(e_aa - mu_a**2, 0), np.maximum(e_bb - mu_b**2, 0)
    cov = e_ab - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))


def pie_reference(metric: str, src: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> float:
    a, b = _pie_masked(src, mask), _pie_masked(edited, mask)
    mse = float(np.mean((a - b) ** 2))
    if metric == "mse":
        return mse
    if metric == "psnr":
        return 10 * math.log10(1.0 / mse) if mse > 0 else math.inf  # torchmetrics: inf for identical images
    return float(_ssim_map_np(a, b)[:, 5:-5, 5:-5].mean())  # torchmetrics of 2023: map without its 5-px border


@pytest.mark.parametrize("metric", ["psnr", "mse", "ssim"])
def test_pie_compat_equals_direct_recomputation(edit_set, metric):
    src, edited, masks = edit_set
    got = background_score(metric, src, edited, masks, protocol="pie_compat")
    want = [pie_reference(metric, s, e, m) for s, e, m in zip(src, edited, masks)]
    assert got.key == f"{metric}_bg[pie_compat]"
    np.testing.assert_allclose(got.values, want, **TOL)


def test_pie_compat_equals_the_torchmetrics_calls_pie_bench_makes(edit_set):
    from torchmetrics.functional.image import structural_similarity_index_measure
    from torchmetrics.image import PeakSignalNoiseRatio
    from torchmetrics.regression import MeanSquaredError

    src, edited, masks = edit_set
    psnr = background_score("psnr", src, edited, masks, protocol="pie_compat").values
    mse = background_score("mse", src, edited, masks, protocol="pie_compat").values
    ssim = background_score("ssim", src, edited, masks, protocol="pie_compat").values
    for i in range(len(src)):
        a = torch.from_numpy(_pie_masked(src[i], masks[i]))
        b = torch.from_numpy(_pie_masked(edited[i], masks[i]))
        assert psnr[i] == pytest.approx(PeakSignalNoiseRatio(data_range=1.0)(a[None], b[None]).item(), **APPROX)
        assert mse[i] == pytest.approx(MeanSquaredError()(a, b).item(), **APPROX)
        _, full = structural_similarity_index_measure(a[None], b[None], data_range=1.0, return_full_image=True)
        assert ssim[i] == pytest.approx(full[..., 5:-5, 5:-5].mean().item(), **APPROX)


def test_masked_mean_equals_numpy_background_means(edit_set):
    src, edited, masks = edit_set
    mse = background_score("mse", src, edited, masks, protocol="masked_mean")
    ssim = background_score("ssim", src, edited, masks, protocol="masked_mean")
    assert mse.key == "mse_bg[masked_mean]" and ssim.key == "ssim_bg[masked_mean]"
    valid = np.zeros((H, W), bool)
    valid[5:-5, 5:-5] = True
    for i in range(len(src)):
        bg = ~masks[i]
        d = (src[i].astype(np.float64) - edited[i]) / 255
        assert mse.values[i] == pytest.approx((d**2)[:, bg].mean(), rel=1e-12)
        smap = _ssim_map_np(src[i] / 255.0, edited[i] / 255.0).mean(0)
        assert ssim.values[i] == pytest.approx(smap[bg & valid].mean(), **APPROX)
    psnr = background_score("psnr", src, edited, masks, protocol="masked_mean")
    np.testing.assert_allclose(psnr.values[:2], -10 * np.log10(mse.values[:2]), rtol=1e-12)
    assert psnr.values[2] == math.inf  # pair 2 has an untouched background: inf, not nan


def test_dilution_relation_is_exact(edit_set):
    src, edited, masks = edit_set
    for metric in ("mse", "psnr"):
        masked = background_score(metric, src, edited, masks, protocol="masked_mean")
        pie = background_score(metric, src, edited, masks, protocol="pie_compat")
        np.testing.assert_allclose(masked.background_fraction, 1 - masks.mean(axis=(1, 2)), rtol=1e-12)
        implied = pie_compat_from_masked_mean(metric, masked.values, masked.background_fraction)
        np.testing.assert_allclose(pie.values[:2], implied[:2], rtol=1e-10)
        assert not np.allclose(pie.values[:2], masked.values[:2])  # the two protocols really differ
    # half the frame edited: PIE-Bench's PSNR is 10 log10(2) = 3.01 dB higher than the background's
    assert pie_compat_from_masked_mean("psnr", 20.0, 0.5) == pytest.approx(20.0 + 3.0103, abs=1e-4)
    with pytest.raises(CgmbenchError, match="no exact dilution"):
        pie_compat_from_masked_mean("ssim", 0.9, 0.5)
    with pytest.raises(CgmbenchError, match=r"\(0, 1\]"):
        pie_compat_from_masked_mean("psnr", 20.0, 0.0)


def test_lpips_map_masked_mean_and_pie_compat(edit_set):
    src, edited, masks = edit_set
    seen = []

    def squared_error_map(x, y):  # a per-pixel "LPIPS" whose means are known in closed form
        seen.append((x.clone(), y.clone()))
        return ((x - y) ** 2).mean(dim=1, keepdim=True)

    masked = background_score("lpips", src, edited, masks, protocol="masked_mean", lpips=squared_error_map)
    mse_bg = background_score("mse", src, edited, masks, protocol="masked_mean").values
    np.testing.assert_allclose(masked.values, 4 * mse_bg, rtol=1e-6)  # inputs in [-1, 1]: (2d)^2 = 4 d^2
    assert torch.allclose(seen[-1][0].double(), torch.from_numpy(src / 127.5 - 1), atol=1e-6)  # unmasked images

    pie = background_score("lpips", src, edited, masks, protocol="pie_compat", lpips=squared_error_map)
    mse_pie = background_score("mse", src, edited, masks, protocol="pie_compat").values
    np.testing.assert_allclose(pie.values, 4 * mse_pie, rtol=1e-6)
    want_x = np.stack([_pie_masked(s, m) for s, m in zip(src, masks)]) * 2 - 1  # PIE-Bench: 2 * masked - 1
    assert torch.allclose(seen[-1][0], torch.from_numpy(want_x), atol=1e-6)

    per_pair = background_score("lpips", src, edited, masks, protocol="pie_compat",
                                lpips=lambda x, y: torch.tensor([0.1, 0.2, 0.3]).view(3, 1, 1, 1))
    np.testing.assert_allclose(per_pair.values, [0.1, 0.2, 0.3], rtol=1e-6)
    with pytest.raises(CgmbenchError, match="distance map"):
        background_score("lpips", src, edited, masks, protocol="masked_mean", lpips=lambda x, y: torch.zeros(3))
    with pytest.raises(CgmbenchError, match="lpips callable"):
        background_score("lpips", src, edited, masks, protocol="masked_mean")


def test_empty_mask_both_protocols_are_the_whole_image_metric(edit_set):
    src, edited, _ = edit_set
    empty = np.zeros((H, W), bool)
    lp = lambda x, y: (x - y).abs().mean(dim=1, keepdim=True)  # noqa: E731
    for metric in ("psnr", "mse", "ssim", "lpips"):
        a = background_score(metric, src, edited, empty, protocol="masked_mean", lpips=lp)
        b = background_score(metric, src, edited, empty, protocol="pie_compat", lpips=lp)
        np.testing.assert_allclose(a.values, b.values, rtol=1e-10)
        np.testing.assert_array_equal(a.background_fraction, 1.0)
    whole = [10 * math.log10(1 / np.mean(((s / 255.0) - (e / 255.0)) ** 2)) for s, e in zip(src, edited)]
    np.testing.assert_allclose(background_score("psnr", src, edited, empty, protocol="masked_mean").values, whole,
                               rtol=1e-12)


@pytest.mark.parametrize("protocol", ["masked_mean", "pie_compat"])
@pytest.mark.parametrize("metric", ["psnr", "mse", "ssim", "lpips"])
def test_full_mask_is_an_error_not_nan(edit_set, protocol, metric):
    src, edited, masks = edit_set
    full = masks.copy()
    full[1] = True
    with pytest.raises(CgmbenchError, match=r"image\(s\) \[1\] have no background"):
        background_score(metric, src, edited, full, protocol=protocol, lpips=lambda x, y: (x - y)[:, :1])


def test_ssim_background_only_under_the_border_window_is_an_error(edit_set):
    src, edited, _ = edit_set
    mask = np.ones((H, W), bool)
    mask[:3, :] = False  # background only in the top 3 rows: no SSIM window lies inside the frame there
    with pytest.raises(CgmbenchError, match="5 px from the frame edge"):
        background_score("ssim", src, edited, mask, protocol="masked_mean")
    assert np.isfinite(background_score("ssim", src, edited, mask, protocol="pie_compat").values).all()


def test_bad_masks_and_images_are_refused(edit_set):
    src, edited, masks = edit_set
    with pytest.raises(CgmbenchError, match=r"edit_mask has shape \(3, 32, 32\)"):
        background_score("mse", src, edited, masks[:, :32, :32], protocol="masked_mean")
    with pytest.raises(CgmbenchError, match=r"edit_mask has shape \(2, 64, 64\)"):
        background_score("mse", src, edited, masks[:2], protocol="pie_compat")
    with pytest.raises(CgmbenchError, match="only 0 and 1"):
        background_score("mse", src, edited, masks.astype(np.uint8) * 2, protocol="masked_mean")
    with pytest.raises(CgmbenchError, match="differ in shape"):
        background_score("mse", src, edited[:, :, :32], masks, protocol="masked_mean")
    with pytest.raises(CgmbenchError, match="unknown protocol"):
        background_score("mse", src, edited, masks, protocol="pie")
    with pytest.raises(TypeError):
        background_score("mse", src, edited, masks)  # the protocol must be chosen
    with pytest.raises(CgmbenchError, match=r"not \[-1, 1\]"):
        background_score("mse", src / 127.5 - 1, edited / 127.5 - 1, masks, protocol="masked_mean")
    with pytest.raises(CgmbenchError, match="above 1"):
        background_score("mse", src.astype(np.float32), edited.astype(np.float32), masks, protocol="masked_mean")
    with pytest.raises(CgmbenchError, match="int64"):
        background_score("mse", src.astype(np.int64), edited, masks, protocol="masked_mean")


def test_uint8_and_unit_float_inputs_agree(edit_set):
    src, edited, masks = edit_set
    for metric in ("psnr", "ssim"):
        a = background_score(metric, src, edited, masks, protocol="masked_mean")
        b = background_score(metric, torch.from_numpy(src / 255.0), torch.from_numpy(edited / 255.0),
                             torch.from_numpy(masks).unsqueeze(1), protocol="masked_mean")
        np.testing.assert_allclose(a.values, b.values, **TOL)
