"""The three resize kernels that separate the FID protocols.

Every FID implementation feeds the same TF ``inception-2015-12-05`` network a 299x299 image; they
differ in *how* the image gets to 299x299 (and in the input normalisation, see ``protocols.py``):

* :func:`resize_bilinear_tf1` -- TensorFlow 1.x ``ResizeBilinear`` with ``align_corners=False``
  and without half-pixel centres or antialiasing. This is the resize inside the original TF graph
  (TTUR, the ADM evaluator) and the one torch-fidelity re-implements as
  ``interpolate_bilinear_2d_like_tensorflow1x``.
* :func:`resize_pil_bicubic_float` -- clean-fid's ``clean`` mode: each channel becomes a PIL
  ``'F'`` (float32) image, is resized with PIL bicubic (antialiased when downsampling), clipped to
  [0, 255] and *not* re-quantised.
* :func:`resize_torch_bilinear` -- pytorch-fid: ``F.interpolate(mode="bilinear",
  align_corners=False)`` (half-pixel centres, no antialiasing).

All functions take and return ``[B, C, H, W]`` tensors.
"""

from __future__ import annotations

from cgmbench.extractors.errors import ExtractorError

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def _tf1_sample_grid(in_size: int, out_size: int, dtype: torch.dtype, device: torch.device):
    """Source indices and interpolation weights of TF1 ``ResizeBilinear`` along one axis.

    TF1 (``align_corners=False``) maps output pixel ``i`` to the source coordinate ``i * scale``
    with ``scale = in_size / out_size`` held as a float32, takes ``lower = floor(coord)``,
    ``upper = min(lower + 1, in_size - 1)`` and the weight ``coord - lower``. There is no half-pixel
    offset, so the image is sampled from its top-left corner and the last rows/columns of a
    downsampled image are never read.
    """
    scale = torch.tensor(in_size / out_size, dtype=torch.float32)  # TF keeps the scale in float32
    coord = torch.arange(out_size, dtype=dtype, device=device) * scale.to(device)
    lower = coord.floor().long().clamp(0, in_size - 1)
    upper = (lower + 1).clamp_max(in_size - 1)
    weight = coord - lower.to(dtype)
    return lower, upper, weight


def resize_bilinear_tf1(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TensorFlow 1.x bilinear resize (``tf.image.resize_bilinear``, ``align_corners=False``).

    Args:
        x: float tensor ``[B, C, H, W]`` (any range; FID feeds [0, 255]).
        size: output ``(height, width)``.

    Returns:
        ``[B, C, height, width]`` in the dtype of ``x``. The arithmetic follows TF's CPU kernel:
        interpolate along the width first (top and bottom rows), then along the height, each as
        ``a + (b - a) * w``. In float32 on CPU this is bit-identical to torch-fidelity's
        ``interpolate_bilinear_2d_like_tensorflow1x(..., align_corners=False)``.
    """
    if x.dim() != 4 or not torch.is_floating_point(x):
        raise ExtractorError(f"resize_bilinear_tf1 expects a float [B, C, H, W] tensor, got {x.dtype} {tuple(x.shape)}")
    out_h, out_w = int(size[0]), int(size[1])
    in_h, in_w = x.shape[-2:]
    y0, y1, wy = _tf1_sample_grid(in_h, out_h, x.dtype, x.device)
    x0, x1, wx = _tf1_sample_grid(in_w, out_w, x.dtype, x.device)

    rows_top = x.index_select(2, y0)
    rows_bottom = x.index_select(2, y1)
    top_left, top_right = rows_top.index_select(3, x0), rows_top.index_select(3, x1)
    bottom_left, bottom_right = rows_bottom.index_select(3, x0), rows_bottom.index_select(3, x1)

    wx = wx.view(1, 1, 1, out_w)
    top = top_left + (top_right - top_left) * wx
    bottom = bottom_left + (bottom_right - bottom_left) * wx
    return top + (bottom - top) * wy.view(1, 1, out_h, 1)


def resize_pil_bicubic_float(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """clean-fid's ``clean`` resize: per-channel PIL bicubic on float32 images, clipped, unquantised.

    Args:
        x: ``[B, C, H, W]`` tensor with values in [0, 255] (uint8 or float).
        size: output ``(height, width)``.

    Returns:
        float32 ``[B, C, height, width]`` in [0, 255], on the device of ``x``. PIL works on the CPU,
        so the images make a round trip through numpy (as in clean-fid).
    """
    if x.dim() != 4:
        raise ExtractorError(f"resize_pil_bicubic_float expects a [B, C, H, W] tensor, got shape {tuple(x.shape)}")
    out_h, out_w = int(size[0]), int(size[1])
    array = x.detach().cpu().numpy().astype(np.float32)
    out = np.empty((array.shape[0], array.shape[1], out_h, out_w), dtype=np.float32)
    for b in range(array.shape[0]):
        for c in range(array.shape[1]):
            channel = Image.fromarray(np.ascontiguousarray(array[b, c]))  # 2-D float32 -> mode 'F'
            resized = channel.resize((out_w, out_h), resample=Image.Resampling.BICUBIC)  # PIL size is (W, H)
            out[b, c] = np.asarray(resized, dtype=np.float32).clip(0, 255)
    return torch.from_numpy(out).to(x.device)


def resize_torch_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """pytorch-fid's resize: ``F.interpolate(bilinear, align_corners=False)``, no antialiasing."""
    if x.dim() != 4 or not torch.is_floating_point(x):
        raise ExtractorError(f"resize_torch_bilinear expects a float [B, C, H, W] tensor, got {x.dtype} {tuple(x.shape)}")
    return F.interpolate(x, size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=False)
