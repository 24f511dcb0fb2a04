"""``shapes-cnn-video``: the project's stand-in video feature network for FVD on the offline shapes world.

No I3D can be shipped or trained on a CPU budget, so the shapes tasks score FVD with a clip feature built
from the shipped, project-trained ``shapes-cnn`` frame network (no new weights, no further training: the
calibration is the ``shapes-cnn`` training of :mod:`cgmbench.extractors.shapes`). For a clip of F frames with
per-frame 256-d features ``f_0 .. f_{F-1}``:

    feature = [ mean_t f_t ,  (f_{F-1} - f_0) / (F - 1) ]      (512-d)

the first half is appearance (what is in the clip), the second the mean frame-to-frame change of the
features (where it goes: ``shapes-cnn`` is trained to predict a coarse object grid, so its features carry
position). A video whose frames are right but do not move, or move the wrong way, is therefore far from the
real clips. The number is comparable only with other ``shapes-cnn-video`` numbers (its protocol record says so),
never with I3D FVDs.
"""

from __future__ import annotations

from typing import Any

import torch

from cgmbench.errors import CgmbenchError

__all__ = ["ShapesVideoExtractor"]


class ShapesVideoExtractor:
    """Callable ``uint8 clips [n, F, 3, H, W] -> float64 features [n, 512]`` (see the module docstring)."""

    name = "shapes-cnn-video"

    def __init__(self, weights_path=None, protocol: str = "clean", device: str = "cpu"):
        from cgmbench.extractors.shapes import ShapesCNNExtractor

        self.frames = ShapesCNNExtractor(weights_path=weights_path, protocol=protocol).to(device)
        self.feature_dim = 2 * self.frames.feature_dim
        self.weights_sha256 = self.frames.weights_sha256
        self.is_official_weights = self.frames.is_official_weights

    @torch.no_grad()
    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        if not isinstance(clips, torch.Tensor) or clips.ndim != 5 or clips.shape[2] != 3:
            shape = tuple(clips.shape) if isinstance(clips, torch.Tensor) else type(clips).__name__
            raise CgmbenchError(f"{self.name} expects uint8 clips [n, F, 3, H, W], got {shape}")
        if clips.dtype != torch.uint8:
            raise CgmbenchError(f"{self.name} expects uint8 clips, got {clips.dtype}")
        n, f = clips.shape[:2]
        if f < 2:
            raise CgmbenchError(f"{self.name} needs clips of at least 2 frames, got {f}")
        feats = self.frames(clips.reshape(n * f, *clips.shape[2:])).double().reshape(n, f, -1)
        return torch.cat([feats.mean(dim=1), (feats[:, -1] - feats[:, 0]) / (f - 1)], dim=1)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "feature_dim": self.feature_dim, "weights_sha256": self.weights_sha256,
                "official_weights": bool(self.is_official_weights),
                "frame_network": self.frames.describe(),
                "feature": "[mean_t f_t, (f_last - f_first)/(F-1)] of shapes-cnn 256-d frame features",
                "calibration": "the shipped shapes-cnn (trained by cgmbench on the shapes world); no video training"}
