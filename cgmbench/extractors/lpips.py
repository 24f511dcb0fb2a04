"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric").

The v0.1 AlexNet variant, as ``lpips.LPIPS(net='alex')`` (richzhang/PerceptualSimilarity) and
torchmetrics' ``LearnedPerceptualImagePatchSimilarity(net_type='alex')``:

1. inputs in ``[-1, 1]`` (uint8 images are mapped by ``x / 127.5 - 1``);
2. a fixed scaling layer ``(x - shift) / scale`` with ``shift = (-0.030, -0.088, -0.188)`` and
   ``scale = (0.458, 0.448, 0.450)`` (ImageNet statistics expressed in ``[-1, 1]`` units);
3. the ``features`` trunk of torchvision's AlexNet (ImageNet weights ``alexnet-owt-7be5be79.pth``),
   tapped after each of its 5 ReLUs (``features.1``, ``.4``, ``.7``, ``.9``, ``.11``; 64, 192,
   384, 256, 256 channels);
4. per tap: unit-normalise every spatial feature vector over channels
   (``f / sqrt(eps + sum_c f²)``, ``eps = 1e-8``), square the difference of the two images;
5. a learned non-negative 1x1 convolution to one channel (``lin{k}.model.1.weight``, the v0.1
   linear calibration ``alex.pth``), averaged over space;
6. the sum over the 5 taps: one distance per image pair (0 for identical images, lower is more similar).

No resizing is done (as ``lpips.LPIPS`` by default); images smaller than about 32 pixels a side
reach AlexNet's deeper taps as 1x1 maps.

Weights (``cgmbench weights fetch NAME`` puts them in ``$CGMBENCH_HOME/weights``):

* ``lpips:alexnet``: torchvision's ``alexnet-owt-7be5be79.pth`` (BSD-3, torchvision);
* ``lpips:alex-v0.1``: ``lpips/weights/v0.1/alex.pth`` of richzhang/PerceptualSimilarity
  (BSD-2). torchmetrics ships a byte-identical copy
  (``torchmetrics/functional/image/lpips_models/alex.pth``, same sha256); when the file is not in
  ``$CGMBENCH_HOME/weights`` that installed copy is used (its sha256 is checked and recorded).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn as nn

from cgmbench.errors import CgmbenchError

#: identifies the metric definition in records
LPIPS_VERSION = "lpips-0.1-alex"
ALEXNET_WEIGHTS = "lpips:alexnet"
LIN_WEIGHTS = "lpips:alex-v0.1"
#: channels of the 5 AlexNet taps
CHANNELS = (64, 192, 384, 256, 256)
#: ``features`` indices of the ReLUs whose outputs are compared
RELU_TAPS = (1, 4, 7, 9, 11)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-8


class ScalingLayer(nn.Module):
    """``(x - shift) / scale`` per channel, with the official constants."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


class AlexNetFeatures(nn.Module):
    """torchvision's ``AlexNet.features`` (same indices, so its state dict loads as is), returning
    the outputs of the ReLUs at :data:`RELU_TAPS`."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(),         # 0, 1
            nn.MaxPool2d(kernel_size=3, stride=2),                                     # 2
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(),                   # 3, 4
            nn.MaxPool2d(kernel_size=3, stride=2),                                     # 5
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(),                  # 6, 7
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),                  # 8, 9
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(),                  # 10, 11
            nn.MaxPool2d(kernel_size=3, stride=2),                                     # 12 (unused)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for i, layer in enumerate(self.features[:RELU_TAPS[-1] + 1]):
            x = layer(x)
            if i in RELU_TAPS:
                taps.append(x)
        return taps


class NetLinLayer(nn.Module):
    """The learned 1x1 convolution of one tap (``model.0`` is the dropout of the training setup,
    inactive here; ``model.1.weight`` is what ``alex.pth`` holds)."""

    def __init__(self, chn_in: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(chn_in, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def normalize_tensor(x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Unit-normalise the channel vector at every position."""
    return x / torch.sqrt(eps + torch.sum(x * x, dim=1, keepdim=True))


class LPIPS(nn.Module):
    """LPIPS v0.1 with the AlexNet backbone; ``forward(in0, in1)`` -> ``[B]`` distances for inputs in ``[-1, 1]``."""

    def __init__(self) -> None:
        super().__init__()
        self.scaling_layer = ScalingLayer()
        self.net = AlexNetFeatures()
        for k, c in enumerate(CHANNELS):
            self.add_module(f"lin{k}", NetLinLayer(c))
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    @property
    def lins(self) -> list[NetLinLayer]:
        return [getattr(self, f"lin{k}") for k in range(len(CHANNELS))]

    def forward(self, in0: torch.Tensor, in1: torch.Tensor) -> torch.Tensor:
        f0, f1 = self.net(self.scaling_layer(in0)), self.net(self.scaling_layer(in1))
        total = 0.0
        for lin, a, b in zip(self.lins, f0, f1):
            diff = (normalize_tensor(a) - normalize_tensor(b)) ** 2
            total = total + lin(diff).mean(dim=(2, 3), keepdim=True)
        return total.flatten()

    @torch.no_grad()
    def distance(self, a, b) -> torch.Tensor:
        """LPIPS of uint8 image pairs ``[B, 3, H, W]`` (tensors or arrays): float32 ``[B]`` on the CPU."""
        device = next(self.parameters()).device
        a, b = (torch.as_tensor(x) for x in (a, b))
        if a.dtype != torch.uint8 or b.dtype != torch.uint8 or a.shape != b.shape or a.ndim != 4 or a.shape[1] != 3:
            raise CgmbenchError(f"LPIPS compares uint8 RGB image pairs [B, 3, H, W] of one shape, got "
                                f"{a.dtype} {tuple(a.shape)} and {b.dtype} {tuple(b.shape)}")
        x, y = (t.to(device).float() / 127.5 - 1.0 for t in (a, b))
        return self(x, y).float().cpu()

    # -- weights --------------------------------------------------------------------------

    def load_backbone(self, state_dict) -> None:
        """Load torchvision's AlexNet state dict (``features.*``; the classifier keys are ignored)."""
        wanted = self.net.state_dict()
        sd = {k: v for k, v in state_dict.items() if k.startswith("features.")}
        bad = sorted(set(wanted) ^ set(sd)) + [k for k in wanted if k in sd and sd[k].shape != wanted[k].shape]
        if bad:
            raise CgmbenchError(f"not torchvision's AlexNet weights: mismatching keys/shapes {bad[:4]}")
        self.net.load_state_dict(sd)

    def load_lin(self, state_dict) -> None:
        """Load the v0.1 linear layers (``lin{k}.model.1.weight``)."""
        wanted = {f"lin{k}.model.1.weight": (1, c, 1, 1) for k, c in enumerate(CHANNELS)}
        bad = [k for k, s in wanted.items() if k not in state_dict or tuple(state_dict[k].shape) != s]
        bad += [k for k in state_dict if k not in wanted]
        if bad:
            raise CgmbenchError(f"not the LPIPS v0.1 AlexNet linear layers: mismatching keys/shapes {bad[:4]}")
        for k, lin in enumerate(self.lins):
            lin.model[1].weight.copy_(state_dict[f"lin{k}.model.1.weight"].float())


def torchmetrics_lin_copy() -> Path | None:
    """The copy of ``alex.pth`` that the installed torchmetrics ships, if any."""
    try:
        import torchmetrics.functional.image.lpips as tm_lpips
    except ImportError:
        return None
    path = Path(tm_lpips.__file__).resolve().parent / "lpips_models" / "alex.pth"
    return path if path.is_file() else None


def _lin_file() -> tuple[Path, str, str]:
    """``(path, sha256, origin)`` of the linear layers: ``$CGMBENCH_HOME/weights`` first, else torchmetrics' copy."""
    from cgmbench.weights import expected_sha256, known_file, resolve, sha256_file, weights_dir

    kf = known_file(LIN_WEIGHTS)
    if (weights_dir() / kf.filename).is_file():
        path, digest = resolve(LIN_WEIGHTS)
        return path, digest, "cgmbench weights folder"
    copy = torchmetrics_lin_copy()
    if copy is not None and sha256_file(copy) == expected_sha256(kf):
        return copy, sha256_file(copy), "torchmetrics package copy"
    path, digest = resolve(LIN_WEIGHTS)  # raises the missing-file error with the fetch hint
    return path, digest, "cgmbench weights folder"


def _read(path: Path) -> dict:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CgmbenchError(f"cannot read {path} as a plain tensor state dict: {type(e).__name__}: {e}",
                            "delete it and fetch it again") from None
    if not isinstance(sd, dict):
        raise CgmbenchError(f"{path} holds a {type(sd).__name__}, not a state dict")
    return sd


def load_lpips(device: str = "cpu") -> tuple[LPIPS, dict]:
    """The LPIPS network with the official weights, and its provenance.

    Raises :class:`CgmbenchError` naming ``cgmbench weights fetch ...`` when a file is missing.
    Provenance: ``version``, ``alexnet_sha256``, ``lin_sha256``, ``lin_origin`` and
    ``weights_sha256`` = sha256 of ``"<alexnet_sha256>\\n<lin_sha256>"`` (one digest for the pair).
    """
    from cgmbench.weights import resolve

    alex_path, alex_sha = resolve(ALEXNET_WEIGHTS)
    lin_path, lin_sha, origin = _lin_file()
    model = LPIPS()
    model.load_backbone(_read(alex_path))
    model.load_lin(_read(lin_path))
    info = {"version": LPIPS_VERSION, "alexnet_sha256": alex_sha, "lin_sha256": lin_sha, "lin_origin": origin,
            "weights_sha256": combined_sha256(alex_sha, lin_sha)}
    return model.to(device), info


def combined_sha256(alexnet_sha256: str, lin_sha256: str) -> str:
    return hashlib.sha256(f"{alexnet_sha256}\n{lin_sha256}".encode()).hexdigest()
