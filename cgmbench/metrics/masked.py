"""Background preservation of an image edit: PSNR, MSE, SSIM and LPIPS outside the edited region.

An edit changes the region of ``edit_mask`` (True = edited) and should leave the rest, the *background*,
untouched. Two protocols measure that; they give different numbers, so the protocol is part of every result
(:attr:`BackgroundScore.key`, e.g. ``"psnr_bg[masked_mean]"``) and the two are never mixed.

``masked_mean`` (the cgmbench definition)
    A per-pixel quantity averaged over the background pixels only.

    * MSE: ``sum_bg (x - y)^2 / (3 * n_bg)``; PSNR: ``10 log10(1 / MSE_bg)`` (data range 1; ``inf`` when the
      background is identical).
    * SSIM: the SSIM map of the two *unmasked* images (Gaussian window 11, sigma 1.5, k1 0.01, k2 0.03, data
      range 1, reflect padding: torchmetrics' map), averaged over channels and over the background pixels whose
      window lies inside the frame (at least 5 px from each edge).
    * LPIPS: the LPIPS *distance map* of the unmasked images at image resolution (``lpips.LPIPS(spatial=True)``),
      averaged over the background pixels. The map comes from an injected callable (see :data:`LpipsFn`).

    SSIM and LPIPS windows near the mask boundary still see edited pixels; that is part of the definition.

``pie_compat`` (PIE-Bench, cure-lab/PnPInversion ``evaluation/matrics_calculator.py``)
    Both images are multiplied by ``1 - mask`` (the edit region set to black in both) and the metric is taken
    over the *whole* frame: torchmetrics ``PeakSignalNoiseRatio(data_range=1)``, ``MeanSquaredError``,
    ``StructuralSimilarityIndexMeasure(data_range=1)``, LPIPS on ``2x - 1``. The black region counts as perfect
    agreement, so the number depends on the mask area (*dilution*). For MSE and PSNR exactly
    (:func:`pie_compat_from_masked_mean`)::

        MSE_pie  = f_bg * MSE_bg
        PSNR_pie = PSNR_bg - 10 log10(f_bg)          (f_bg = background pixel fraction; +3.01 dB at f_bg = 0.5)

    SSIM and LPIPS have no closed form (their windows straddle the boundary); both are pulled towards
    "identical" as the mask grows. Paper scales: LPIPS x10^3, MSE x10^4, SSIM x10^2; values here are unscaled.

    SSIM is the published one: torchmetrics of 2023 averaged the SSIM map without its 5-px border (the
    reflect-padded part). Lightning-AI/torchmetrics#2721 (merged 2024-09) made later releases average the whole
    padded map, so PIE-Bench's script run today gives slightly different SSIM numbers;
    ``ssim_map(x, y).mean(dim=(1, 2, 3))`` on the masked images is that newer value.

Images: ``source`` and ``edited`` are ``[N, 3, H, W]`` (or one ``[3, H, W]``), either uint8 (``0..255``, divided
by 255) or floating point in ``[0, 1]``; anything else (negative values, values above 1, other integer types)
raises :class:`~cgmbench.errors.CgmbenchError` (:func:`unit_images`). ``edit_mask``: boolean or 0/1 of shape
``[N, H, W]``, ``[N, 1, H, W]`` or one ``[H, W]`` shared by all images; True marks the edited region (PIE-Bench's
``mask``). No background at all (a full mask) makes every background metric undefined: a
:class:`~cgmbench.errors.CgmbenchError`, never NaN (PIE-Bench writes the string ``"nan"`` there). An empty mask
is fine: then both protocols equal the whole-image metric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from cgmbench.errors import CgmbenchError

PROTOCOLS = ("masked_mean", "pie_compat")
METRICS = ("psnr", "mse", "ssim", "lpips")

#: SSIM constants (torchmetrics / Wang et al. 2004 defaults)
SSIM_SIGMA = 1.5
SSIM_KERNEL = 11
SSIM_K1, SSIM_K2 = 0.01, 0.03

#: ``lpips(x, y)`` with ``x``, ``y`` float32 ``[N, 3, H, W]`` in ``[-1, 1]`` returns either one distance per pair
#: ``[N]`` or a distance map at image resolution ``[N, 1, H, W]`` / ``[N, H, W]`` (``lpips.LPIPS(spatial=True)``).
#: ``masked_mean`` needs the map; ``pie_compat`` takes either (a map is averaged over the frame). PIE-Bench's
#: numbers use torchmetrics ``LearnedPerceptualImagePatchSimilarity(net_type='squeeze')``.
LpipsFn = Callable[[torch.Tensor, torch.Tensor], Any]


# -- inputs ------------------------------------------------------------------------------------------------------


def unit_images(images: Any, name: str = "images") -> torch.Tensor:
    """``images`` as float64 ``[N, 3, H, W]`` in ``[0, 1]`` (CPU).

    uint8 input is divided by 255 once. Floating-point input must already lie in ``[0, 1]``: a negative value
    means a ``[-1, 1]`` tensor (map it with ``(x + 1) / 2``), a value above 1 means ``0..255`` values in a float
    tensor, or a uint8 image scaled by 255 a second time; both are refused, as are other integer dtypes.
    """
    t = images.detach().cpu() if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4 or t.shape[1] != 3:
        raise CgmbenchError(f"{name} must be RGB images [N, 3, H, W] (or one [3, H, W]), got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[2] == 0 or t.shape[3] == 0:
        raise CgmbenchError(f"{name} is empty, shape {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        return t.to(torch.float64) / 255.0
    if not t.is_floating_point():
        raise CgmbenchError(
            f"{name} has dtype {t.dtype}; pass uint8 images (0..255) or floats in [0, 1]",
            "an integer array other than uint8 usually means pixel values were scaled (e.g. multiplied by 255) "
            "after decoding",
        )
    t = t.to(torch.float64)
    if not torch.isfinite(t).all():
        raise CgmbenchError(f"{name} contains NaN or Inf values")
    lo, hi = float(t.min()), float(t.max())
    if lo < 0.0:
        raise CgmbenchError(
            f"{name} has negative values (min {lo:.4g}): float images must be in [0, 1], not [-1, 1]",
            "map [-1, 1] tensors with (x + 1) / 2 (feeding [-1, 1] to a [0, 1] encoder is a known bug of the "
            "InstructPix2Pix metric script)",
        )
    if hi > 1.0:
        raise CgmbenchError(
            f"{name} has values above 1 (max {hi:.4g}): float images must be in [0, 1]",
            "pass uint8 images as they are or divide 0..255 floats by 255 once; never multiply uint8 pixels by "
            "255 again (the ImagenHub CLIP-score bug wraps every pixel v to (256 - v) mod 256)",
        )
    return t


def edit_masks(edit_mask: Any, n: int, h: int, w: int) -> torch.Tensor:
    """``edit_mask`` as bool ``[n, h, w]`` (True = edited); a single ``[h, w]`` mask is shared by all images."""
    m = edit_mask.detach().cpu() if isinstance(edit_mask, torch.Tensor) else torch.as_tensor(np.asarray(edit_mask))
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim == 2:
        m = m.unsqueeze(0).expand(n, -1, -1)
    if m.ndim != 3 or tuple(m.shape) != (n, h, w):
        raise CgmbenchError(
            f"edit_mask has shape {tuple(m.shape)} but the images are {n} x {h}x{w}",
            f"pass one mask per image [{n}, {h}, {w}] (or one [{h}, {w}] for all), True = edited region; resize "
            f"the mask with nearest-neighbour interpolation if the images were resized",
        )
    if m.dtype != torch.bool:
        if m.is_complex() or not torch.isfinite(m.to(torch.float64)).all() or not ((m == 0) | (m == 1)).all():
            raise CgmbenchError("edit_mask must be boolean or hold only 0 and 1 (1 = edited region)")
        m = m != 0
    return m.contiguous()


def _pair(source: Any, edited: Any, edit_mask: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = unit_images(source, "source"), unit_images(edited, "edited")
    if x.shape != y.shape:
        raise CgmbenchError(f"source {tuple(x.shape)} and edited {tuple(y.shape)} images differ in shape",
                            "PIE-Bench crops 4-panel outputs to their right-most square; do that before scoring")
    n, _, h, w = x.shape
    return x, y, edit_masks(edit_mask, n, h, w)


def _require_background(count: torch.Tensor, what: str) -> None:
    empty = torch.nonzero(count == 0).flatten().tolist()
    if empty:
        raise CgmbenchError(
            f"image(s) {empty[:8]} have no background pixel{what}: background preservation is undefined there",
            "the edit mask covers the whole frame (e.g. a global style edit); leave such images out of "
            "background metrics and report how many were left out",
        )


# -- per-pixel maps -----------------------------------------------------------------------------------------------


def gaussian_window(size: int = SSIM_KERNEL, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 2-D Gaussian ``[size, size]`` (float64), the outer product of two 1-D Gaussians."""
    d = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-0.5 * (d / sigma) ** 2)
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM ``[N, 3, H, W]`` of float images in ``[0, 1]`` (data range 1), reflect-padded.

    Only pixels at least ``SSIM_KERNEL // 2`` from every edge have their window inside the image; torchmetrics
    averages exactly those (:func:`ssim_valid`).
    """
    pad = SSIM_KERNEL // 2
    if min(x.shape[-2:]) <= pad:
        raise CgmbenchError(f"SSIM needs images larger than {pad} px a side, got {tuple(x.shape[-2:])}")
    c = x.shape[1]
    kernel = gaussian_window().to(x.dtype).expand(c, 1, SSIM_KERNEL, SSIM_KERNEL)
    stack = torch.cat([x, y, x * x, y * y, x * y])
    blurred = F.conv2d(F.pad(stack, (pad, pad, pad, pad), mode="reflect"), kernel, groups=c)
    mu_x, mu_y, e_xx, e_yy, e_xy = blurred.split(x.shape[0])
    var_x = (e_xx - mu_x**2).clamp(min=0.0)
    var_y = (e_yy - mu_y**2).clamp(min=0.0)
    cov = e_xy - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def ssim_valid(h: int, w: int) -> torch.Tensor:
    """bool ``[h, w]``: the pixels whose SSIM window lies inside the frame."""
    pad = SSIM_KERNEL // 2
    valid = torch.zeros(h, w, dtype=torch.bool)
    valid[pad:h - pad, pad:w - pad] = True
    return valid


def _lpips_values(lpips: LpipsFn | None, x: torch.Tensor, y: torch.Tensor, need_map: bool) -> torch.Tensor:
    """Call ``lpips`` on ``[-1, 1]`` float32 images; return float64 ``[N]`` or ``[N, H, W]``."""
    if lpips is None:
        raise CgmbenchError("LPIPS needs an lpips callable (x, y in [-1, 1]) -> [N] distances or [N, 1, H, W] maps",
                            "e.g. lambda x, y: lpips.LPIPS(net='squeeze', spatial=True)(x, y) for PIE-Bench's net")
    n, _, h, w = x.shape
    with torch.no_grad():
        out = lpips((2 * x - 1).float(), (2 * y - 1).float())
    out = (out.detach().cpu() if isinstance(out, torch.Tensor) else torch.as_tensor(np.asarray(out))).double()
    if out.numel() == n and (h, w) != (1, 1):  # one distance per pair, e.g. lpips.LPIPS's [N, 1, 1, 1]
        out = out.reshape(n)
    if out.ndim == 4 and out.shape[1] == 1:
        out = out[:, 0]
    if tuple(out.shape) == (n, h, w):
        return out
    if tuple(out.shape) == (n,) and not need_map:
        return out
    wanted = f"a distance map [{n}, 1, {h}, {w}]" if need_map else f"[{n}] distances or a [{n}, 1, {h}, {w}] map"
    raise CgmbenchError(f"the lpips callable returned shape {tuple(out.shape)}; masked LPIPS needs {wanted}",
                        "use a spatial LPIPS (lpips.LPIPS(..., spatial=True) upsamples its map to the input size)")


# -- the two protocols ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackgroundScore:
    """Per-image background-preservation values of one metric under one protocol.

    ``values``: float64 ``(N,)`` (PSNR in dB, may be ``inf`` for an identical background; never NaN).
    ``background_fraction``: float64 ``(N,)``, the fraction ``f_bg`` of pixels outside the edit mask.
    """

    metric: str
    protocol: str
    values: np.ndarray
    background_fraction: np.ndarray

    @property
    def key(self) -> str:
        """Name for records, protocol included: ``"psnr_bg[masked_mean]"`` vs ``"psnr_bg[pie_compat]"``."""
        return f"{self.metric}_bg[{self.protocol}]"

    def mean(self) -> float:
        """The benchmark number: the mean over images (as PIE-Bench averages its per-image CSV columns)."""
        return float(np.mean(self.values))


def background_score(metric: str, source: Any, edited: Any, edit_mask: Any, *, protocol: str,
                     lpips: LpipsFn | None = None) -> BackgroundScore:
    """Background preservation of ``edited`` against ``source`` outside ``edit_mask``.

    Args:
        metric: ``"psnr"``, ``"mse"``, ``"ssim"`` or ``"lpips"``.
        source, edited: uint8 or ``[0, 1]`` float images ``[N, 3, H, W]``.
        edit_mask: True on the edited region, ``[N, H, W]`` or one ``[H, W]``.
        protocol: ``"masked_mean"`` or ``"pie_compat"`` (required: the two give different numbers).
        lpips: the LPIPS callable (:data:`LpipsFn`), only for ``metric="lpips"``.
    """
    if metric not in METRICS:
        raise CgmbenchError(f"unknown background metric {metric!r}; known: {', '.join(METRICS)}")
    if protocol not in PROTOCOLS:
        raise CgmbenchError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    x, y, edit = _pair(source, edited, edit_mask)
    bg = ~edit  # [N, H, W]
    n_bg = bg.sum(dim=(1, 2))
    _require_background(n_bg, "")
    fraction = (n_bg.double() / (bg.shape[1] * bg.shape[2])).numpy()
    if protocol == "masked_mean":
        values = _masked_mean(metric, x, y, bg, n_bg, lpips)
    else:
        values = _pie_compat(metric, x, y, bg, lpips)
    return BackgroundScore(metric, protocol, values.numpy(), fraction)


def _masked_mean(metric: str, x, y, bg, n_bg, lpips) -> torch.Tensor:
    w = bg.unsqueeze(1).double()  # [N, 1, H, W]
    if metric in ("mse", "psnr"):
        mse = (((x - y) ** 2) * w).sum(dim=(1, 2, 3)) / (3 * n_bg.double())
        return mse if metric == "mse" else _psnr(mse)
    if metric == "ssim":
        region = bg & ssim_valid(*bg.shape[1:])
        count = region.sum(dim=(1, 2))
        _require_background(count, f" at least {SSIM_KERNEL // 2} px from the frame edge (the SSIM window)")
        per_pixel = ssim_map(x, y).mean(dim=1)
        return (per_pixel * region).sum(dim=(1, 2)) / count.double()
    dist = _lpips_values(lpips, x, y, need_map=True)
    return (dist * bg).sum(dim=(1, 2)) / n_bg.double()


def _pie_compat(metric: str, x, y, bg, lpips) -> torch.Tensor:
    keep = bg.unsqueeze(1).double()
    xm, ym = x * keep, y * keep  # the edit region set to black in both images
    if metric in ("mse", "psnr"):
        mse = ((xm - ym) ** 2).mean(dim=(1, 2, 3))
        return mse if metric == "mse" else _psnr(mse)
    if metric == "ssim":
        valid = ssim_valid(*x.shape[2:])
        return ssim_map(xm, ym)[:, :, valid].mean(dim=(1, 2))
    dist = _lpips_values(lpips, xm, ym, need_map=False)
    return dist if dist.ndim == 1 else dist.mean(dim=(1, 2))


def _psnr(mse: torch.Tensor) -> torch.Tensor:
    """``10 log10(1 / mse)`` for data range 1; ``inf`` where ``mse == 0``."""
    return torch.where(mse > 0, -10.0 * torch.log10(mse.clamp(min=1e-300)), torch.full_like(mse, math.inf))


# -- dilution -------------------------------------------------------------------------------------------------------


def pie_compat_from_masked_mean(metric: str, masked_mean: Any, background_fraction: Any) -> np.ndarray:
    """The ``pie_compat`` value implied by a ``masked_mean`` value and the background fraction ``f_bg``.

    Derivation: with the edit region zeroed in both images, the squared error there is 0, so the whole-frame sum
    of squared errors equals the background sum: ``MSE_pie * 3HW = MSE_bg * 3 n_bg``, i.e.
    ``MSE_pie = f_bg * MSE_bg``; then ``PSNR_pie = -10 log10(f_bg MSE_bg) = PSNR_bg - 10 log10(f_bg)``.
    Exact for ``"mse"`` and ``"psnr"``; SSIM and LPIPS have no such identity (a CgmbenchError says so).
    """
    f = np.asarray(background_fraction, dtype=np.float64)
    v = np.asarray(masked_mean, dtype=np.float64)
    if np.any(~(f > 0)) or np.any(f > 1):
        raise CgmbenchError("background_fraction must lie in (0, 1]; with no background the metric is undefined")
    if metric == "mse":
        return f * v
    if metric == "psnr":
        return v - 10.0 * np.log10(f)
    raise CgmbenchError(
        f"no exact dilution relation for {metric!r}: only mse and psnr are per-pixel means",
        "SSIM and LPIPS windows straddle the mask boundary; compute both protocols instead of converting",
    )
