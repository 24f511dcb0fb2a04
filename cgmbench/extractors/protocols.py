"""FID input protocols: how uint8 images become the 299x299 input of the FID Inception.

The network weights are the same TF ``inception-2015-12-05`` graph in every FID implementation;
the *protocol* (resize kernel + normalisation) is what makes their numbers incomparable, so it is
a named, recorded object here and reference statistics must never be mixed across protocols.

========== ===================================== ====================== ==========================
name       resize to 299x299                     normalisation          reproduces
========== ===================================== ====================== ==========================
tf-exact   TF1 bilinear, no half-pixel, no AA    (x - 128) / 128        TTUR, ADM evaluator,
                                                                        torch-fidelity, torchmetrics
                                                                        FID(antialias=False),
                                                                        clean-fid legacy_tensorflow
clean      PIL bicubic per channel on float32,   (x - 128) / 128        clean-fid ``clean`` (default)
           clipped to [0, 255], not re-quantised
pytorch-fid F.interpolate bilinear,              2 * (x / 255) - 1      pytorch-fid, clean-fid
           align_corners=False, no AA                                   legacy_pytorch
========== ===================================== ====================== ==========================

Input convention for every protocol: a ``torch.uint8`` tensor ``[B, 3, H, W]`` (RGB, values
0..255, any H and W). Float images must be quantised first; :func:`to_uint8` does this with
round-to-nearest (torchmetrics' ``normalize=True`` truncates instead -- a documented difference).
"""

from __future__ import annotations

from cgmbench.extractors.errors import ExtractorError

from dataclasses import dataclass
from typing import Callable

import torch

from cgmbench.extractors.resize import resize_bilinear_tf1, resize_pil_bicubic_float, resize_torch_bilinear

INCEPTION_INPUT_SIZE = (299, 299)


# ----------------------------------------------------------------------------------------------
# Input validation
# ----------------------------------------------------------------------------------------------


def check_images(images: torch.Tensor, channels: int = 3) -> None:
    """Raise ``ValueError`` unless ``images`` is a uint8 ``[B, channels, H, W]`` tensor with B, H, W >= 1."""
    if not isinstance(images, torch.Tensor):
        raise ExtractorError(
            f"images must be a torch.Tensor of dtype uint8 and shape [B, {channels}, H, W], "
            f"got {type(images).__name__}; convert [B, H, W, C] numpy arrays with "
            "torch.from_numpy(array).permute(0, 3, 1, 2)"
        )
    if images.dim() != 4:
        raise ExtractorError(
            f"images must have shape [B, {channels}, H, W], got {images.dim()} dims {tuple(images.shape)}; "
            "add a batch dimension with images.unsqueeze(0) for a single image"
        )
    if images.shape[1] != channels:
        hint = (
            "it looks channels-last: use images.permute(0, 3, 1, 2)"
            if images.shape[-1] == channels
            else "grayscale images must be repeated to 3 channels: images.expand(-1, 3, -1, -1)"
            if images.shape[1] == 1
            else f"the second dimension must hold the {channels} RGB channels"
        )
        raise ExtractorError(f"images must have shape [B, {channels}, H, W], got {tuple(images.shape)}; {hint}")
    if images.dtype != torch.uint8:
        raise ExtractorError(
            f"images must have dtype torch.uint8 with values 0..255, got {images.dtype}; quantise float images with "
            "cgmbench.extractors.to_uint8(images, value_range=(0, 1)) (or value_range=(-1, 1))"
        )
    if min(images.shape[0], images.shape[2], images.shape[3]) < 1:
        raise ExtractorError(f"images must be non-empty, got shape {tuple(images.shape)}")


def to_uint8(images: torch.Tensor, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Quantise float images in ``value_range`` to uint8 with round-to-nearest.

    ``u = round((x - lo) / (hi - lo) * 255)``. Values outside ``value_range`` (beyond a 1e-6
    relative slack for float error) or non-finite values raise ``ValueError``: clamp them yourself
    if the generator's output is allowed to overshoot, so that the choice is visible.
    """
    if not isinstance(images, torch.Tensor) or not torch.is_floating_point(images):
        raise ExtractorError(f"to_uint8 expects a float tensor, got {getattr(images, 'dtype', type(images).__name__)}")
    lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo:
        raise ExtractorError(f"value_range must be (low, high) with high > low, got {value_range}")
    if not torch.isfinite(images).all():
        raise ExtractorError("images contain NaN or infinite values")
    slack = 1e-6 * (hi - lo)
    x_min, x_max = images.min().item(), images.max().item()
    if x_min < lo - slack or x_max > hi + slack:
        raise ExtractorError(
            f"image values span [{x_min:.6g}, {x_max:.6g}], outside value_range [{lo:g}, {hi:g}]; "
            "pass the right value_range or clamp the images first"
        )
    unit = (images.to(torch.float64) - lo) / (hi - lo)
    return (unit * 255.0).round().clamp(0, 255).to(torch.uint8)


# ----------------------------------------------------------------------------------------------
# Protocols
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Protocol:
    """A named FID input pipeline: uint8 ``[B, 3, H, W]`` -> normalised float ``[B, 3, 299, 299]``.

    Attributes:
        name: registry key, recorded next to every number.
        description: one sentence saying what it does and which implementation it reproduces.
        resize: resize kernel id (``tf1-bilinear``, ``pil-bicubic-float``, ``torch-bilinear``).
        normalisation: the formula mapping resized pixels to network input.
        preprocess: ``(uint8 images, dtype, size) -> network input``; use :meth:`__call__`, which
            validates first.
    """

    name: str
    description: str
    resize: str
    normalisation: str
    preprocess: Callable[[torch.Tensor, torch.dtype, tuple[int, int]], torch.Tensor]

    def __call__(
        self,
        images: torch.Tensor,
        dtype: torch.dtype = torch.float32,
        size: tuple[int, int] = INCEPTION_INPUT_SIZE,
    ) -> torch.Tensor:
        """Validate ``images`` (see :func:`check_images`) and return the network input in ``dtype``."""
        check_images(images)
        return self.preprocess(images, dtype, size)

    def to_dict(self) -> dict[str, str]:
        """JSON-serialisable record of the protocol (everything but the function)."""
        return {
            "name": self.name,
            "description": self.description,
            "resize": self.resize,
            "normalisation": self.normalisation,
        }


def _tf_exact(images: torch.Tensor, dtype: torch.dtype, size: tuple[int, int]) -> torch.Tensor:
    x = resize_bilinear_tf1(images.to(dtype), size)
    return (x - 128) / 128  # the TF graph multiplies by 0.0078125 = 1/128: the same float result


def _clean(images: torch.Tensor, dtype: torch.dtype, size: tuple[int, int]) -> torch.Tensor:
    x = resize_pil_bicubic_float(images, size)  # float32 in [0, 255], as clean-fid produces it
    return ((x - 128) / 128).to(dtype)


def _pytorch_fid(images: torch.Tensor, dtype: torch.dtype, size: tuple[int, int]) -> torch.Tensor:
    x = images.to(dtype) / 255  # torchvision ToTensor
    x = resize_torch_bilinear(x, size)
    return 2 * x - 1


PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(protocol: Protocol) -> Protocol:
    """Add ``protocol`` to :data:`PROTOCOLS`; a name can be registered once."""
    if protocol.name in PROTOCOLS:
        raise ExtractorError(f"protocol {protocol.name!r} is already registered")
    PROTOCOLS[protocol.name] = protocol
    return protocol


register_protocol(
    Protocol(
        name="tf-exact",
        description=(
            "TF1 bilinear resize to 299 without half-pixel centres or antialiasing, then (x-128)/128: the pipeline "
            "inside the original TF Inception graph (TTUR, ADM evaluator, torch-fidelity)."
        ),
        resize="tf1-bilinear",
        normalisation="(x - 128) / 128",
        preprocess=_tf_exact,
    )
)
register_protocol(
    Protocol(
        name="clean",
        description=(
            "clean-fid 'clean' mode: PIL bicubic (antialiased) resize of each channel as float32 to 299, clipped to "
            "[0, 255] without re-quantisation, then (x-128)/128."
        ),
        resize="pil-bicubic-float",
        normalisation="(x - 128) / 128",
        preprocess=_clean,
    )
)
register_protocol(
    Protocol(
        name="pytorch-fid",
        description=(
            "pytorch-fid: x/255, F.interpolate bilinear (align_corners=False, no antialias) to 299, then 2x-1."
        ),
        resize="torch-bilinear",
        normalisation="2 * (x / 255) - 1",
        preprocess=_pytorch_fid,
    )
)


def get_protocol(name: str | Protocol) -> Protocol:
    """Look up a protocol by name (a :class:`Protocol` is returned unchanged)."""
    if isinstance(name, Protocol):
        return name
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ExtractorError(f"unknown FID protocol {name!r}; available: {sorted(PROTOCOLS)}") from None
