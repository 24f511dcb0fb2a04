"""I3D video feature extractors for FVD: the VideoGPT/TATS PyTorch port and the StyleGAN-V TorchScript.

Two networks carry the same Kinetics-400 I3D (Carreira & Zisserman 2017, TF-Hub weights):

``i3d_pt400`` (VideoGPT ``videogpt/fvd/pytorch_i3d.py``, TATS ``tats/fvd``, cd-FVD ``i3d``)
    :class:`InceptionI3d` below, with the module and parameter names of piergiaj/pytorch-i3d as
    VideoGPT ships it (``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_4b.b1b.bn.running_var``,
    ``logits.conv3d.bias`` ...), so ``i3d_pretrained_400.pt`` loads strictly. Preprocessing, as
    TATS ``preprocess``: uint8 frames -> float, ``F.interpolate(bilinear, align_corners=False)`` to
    224x224 (no crop, no antialias), then ``2x/255 - 1``. (Resize and scaling are both affine, so
    the order only changes float rounding; TATS resizes first, and so does this. VideoGPT's own
    ``fvd.py`` differs: it scales the shorter side to 224 and centre-crops, identical for square
    frames up to rounding.)
    **Features**: what those repositories feed to the Fréchet distance, ``InceptionI3d.forward``:
    the 400 pre-softmax logits (``logits`` 1x1x1 conv of the average-pooled ``Mixed_5c`` map),
    averaged over the remaining time steps. Not the 1024-d logits-layer input
    (:meth:`InceptionI3d.extract_features`), which no FVD reference uses.

``i3d_tfhub_ts`` (StyleGAN-V ``src/metrics/frechet_video_distance.py``)
    ``i3d_torchscript.pt``, a TorchScript blob without Python source, called as
    ``detector(x, rescale=True, resize=True, return_features=True)`` on uint8 ``[B, 3, T, H, W]``;
    the scaling and the resize to 224 happen inside it. :class:`StyleGANVI3D` wraps any scripted
    module with that signature.

Video convention here: uint8 ``[B, T, 3, H, W]`` (cgmbench's sample layout); features are float64
CPU tensors ``[B, 400]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from cgmbench.extractors.base import tf32_disabled
from cgmbench.extractors.errors import ExtractorError

__all__ = [
    "Unit3D",
    "MaxPool3dSamePadding",
    "InceptionModule",
    "InceptionI3d",
    "check_videos",
    "preprocess_i3d_pt400",
    "load_i3d_state_dict",
    "I3DPt400",
    "StyleGANVI3D",
    "load_styleganv_detector",
]


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' padding (front, back) for one axis: the extra element goes to the back."""
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    t, h, w = x.shape[2:]
    pt, ph, pw = (_same_padding(s, k, st) for s, k, st in zip((t, h, w), kernel, stride))
    return F.pad(x, (*pw, *ph, *pt))  # zeros, as the port (inputs are >= 0 after ReLU where it matters)


class MaxPool3dSamePadding(nn.MaxPool3d):
    """3-D max pooling with TF 'SAME' zero padding computed from the input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(_pad_same(x, tuple(self.kernel_size), tuple(self.stride)))


class Unit3D(nn.Module):
    """Conv3d (no bias, TF 'SAME' zero padding) + BatchNorm3d (eps 1e-5, momentum 0.001) + ReLU.

    The ``logits`` unit has a bias, no BatchNorm and no activation.
    """

    def __init__(self, in_channels: int, output_channels: int, kernel_shape=(1, 1, 1), stride=(1, 1, 1),
                 activation_fn=F.relu, use_batch_norm: bool = True, use_bias: bool = False, name: str = "unit_3d"):
        super().__init__()
        self._kernel_shape = tuple(kernel_shape)
        self._stride = tuple(stride)
        self._activation_fn = activation_fn
        self._use_batch_norm = use_batch_norm
        self.name = name
        self.conv3d = nn.Conv3d(in_channels, output_channels, kernel_size=self._kernel_shape,
                                stride=self._stride, padding=0, bias=use_bias)
        if use_batch_norm:
            self.bn = nn.BatchNorm3d(output_channels, eps=1e-5, momentum=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_pad_same(x, self._kernel_shape, self._stride))
        if self._use_batch_norm:
            x = self.bn(x)
        if self._activation_fn is not None:
            x = self._activation_fn(x)
        return x


class InceptionModule(nn.Module):
    """Four branches concatenated on channels: 1x1 | 1x1 -> 3x3x3 | 1x1 -> 3x3x3 | maxpool 3x3x3 -> 1x1."""

    def __init__(self, in_channels: int, out_channels: list[int], name: str):
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3b = out_channels
        self.b0 = Unit3D(in_channels, c0, name=name + "/Branch_0/Conv3d_0a_1x1")
        self.b1a = Unit3D(in_channels, c1a, name=name + "/Branch_1/Conv3d_0a_1x1")
        self.b1b = Unit3D(c1a, c1b, kernel_shape=(3, 3, 3), name=name + "/Branch_1/Conv3d_0b_3x3")
        self.b2a = Unit3D(in_channels, c2a, name=name + "/Branch_2/Conv3d_0a_1x1")
        self.b2b = Unit3D(c2a, c2b, kernel_shape=(3, 3, 3), name=name + "/Branch_2/Conv3d_0b_3x3")
        self.b3a = MaxPool3dSamePadding(kernel_size=(3, 3, 3), stride=(1, 1, 1), padding=0)
        self.b3b = Unit3D(in_channels, c3b, name=name + "/Branch_3/Conv3d_0b_1x1")
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """Inception-v1 I3D, in the VideoGPT/TATS state-dict naming.

    Input: float ``[B, 3, T, 224, 224]`` in [-1, 1] (T >= 9; FVD uses 16). Output of :meth:`forward`:
    ``[B, num_classes]`` logits averaged over the ``T/8 - 1`` remaining time steps. Submodules are
    registered under their endpoint names (``Conv3d_1a_7x7`` ... ``Mixed_5c``) plus ``avg_pool``,
    ``dropout`` (identity in eval) and ``logits``.
    """

    VALID_ENDPOINTS = (
        "Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
        "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
        "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c", "Logits", "Predictions",
    )

    def __init__(self, num_classes: int = 400, spatial_squeeze: bool = True, final_endpoint: str = "Logits",
                 name: str = "inception_i3d", in_channels: int = 3, dropout_keep_prob: float = 0.5):
        super().__init__()
        if final_endpoint != "Logits":
            raise ValueError("only final_endpoint='Logits' is supported (the layout of i3d_pretrained_400.pt)")
        self._num_classes = num_classes
        self._spatial_squeeze = spatial_squeeze
        # Registration order as the port: avg_pool, dropout, logits first, then the endpoints.
        self.avg_pool = nn.AvgPool3d(kernel_size=(2, 7, 7), stride=(1, 1, 1))
        self.dropout = nn.Dropout(dropout_keep_prob)  # sic: the port passes the keep prob as drop prob
        self.logits = Unit3D(1024, num_classes, activation_fn=None, use_batch_norm=False, use_bias=True,
                             name="logits")
        p = name
        endpoints: list[tuple[str, nn.Module]] = [
            ("Conv3d_1a_7x7", Unit3D(in_channels, 64, kernel_shape=(7, 7, 7), stride=(2, 2, 2), name=p + "Conv3d_1a_7x7")),
            ("MaxPool3d_2a_3x3", MaxPool3dSamePadding(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=0)),
            ("Conv3d_2b_1x1", Unit3D(64, 64, name=p + "Conv3d_2b_1x1")),
            ("Conv3d_2c_3x3", Unit3D(64, 192, kernel_shape=(3, 3, 3), name=p + "Conv3d_2c_3x3")),
            ("MaxPool3d_3a_3x3", MaxPool3dSamePadding(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=0)),
            ("Mixed_3b", InceptionModule(192, [64, 96, 128, 16, 32, 32], p + "Mixed_3b")),
            ("Mixed_3c", InceptionModule(256, [128, 128, 192, 32, 96, 64], p + "Mixed_3c")),
            ("MaxPool3d_4a_3x3", MaxPool3dSamePadding(kernel_size=(3, 3, 3), stride=(2, 2, 2), padding=0)),
            ("Mixed_4b", InceptionModule(480, [192, 96, 208, 16, 48, 64], p + "Mixed_4b")),
            ("Mixed_4c", InceptionModule(512, [160, 112, 224, 24, 64, 64], p + "Mixed_4c")),
            ("Mixed_4d", InceptionModule(512, [128, 128, 256, 24, 64, 64], p + "Mixed_4d")),
            ("Mixed_4e", InceptionModule(512, [112, 144, 288, 32, 64, 64], p + "Mixed_4e")),
            ("Mixed_4f", InceptionModule(528, [256, 160, 320, 32, 128, 128], p + "Mixed_4f")),
            ("MaxPool3d_5a_2x2", MaxPool3dSamePadding(kernel_size=(2, 2, 2), stride=(2, 2, 2), padding=0)),
            ("Mixed_5b", InceptionModule(832, [256, 160, 320, 32, 128, 128], p + "Mixed_5b")),
            ("Mixed_5c", InceptionModule(832, [384, 192, 384, 48, 128, 128], p + "Mixed_5c")),
        ]
        self._endpoint_names = [n for n, _ in endpoints]
        for n, module in endpoints:
            self.add_module(n, module)

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        """The average-pooled ``Mixed_5c`` map ``[B, 1024, T', 1, 1]`` (the logits layer's input)."""
        for n in self._endpoint_names:
            x = self._modules[n](x)
        return self.avg_pool(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]``: 1x1x1 conv of the pooled map, averaged over time (the FVD feature)."""
        x = self.logits(self.dropout(self.extract_features(x)))  # [B, classes, T', 1, 1]
        if self._spatial_squeeze:
            x = x.squeeze(3).squeeze(3)
        return x.mean(dim=2)


# ---------------------------------------------------------------------------------------------
# Inputs and weights
# ---------------------------------------------------------------------------------------------


def check_videos(videos: Any, min_frames: int = 1) -> torch.Tensor:
    """Validate uint8 videos ``[B, T, 3, H, W]`` and return them as a tensor."""
    if not isinstance(videos, torch.Tensor):
        raise ExtractorError(f"videos must be a torch.Tensor, got {type(videos).__name__}",
                             "pass uint8 videos [B, T, 3, H, W]")
    if videos.dtype != torch.uint8:
        raise ExtractorError(f"videos must be uint8 in [0, 255], got dtype {videos.dtype}",
                             "convert with cgmbench.generator.to_uint8 before extracting features")
    if videos.ndim != 5 or videos.shape[2] != 3:
        raise ExtractorError(f"videos must have shape [B, T, 3, H, W], got {tuple(videos.shape)}",
                             "frames come before channels in cgmbench's video layout")
    if videos.shape[1] < min_frames:
        raise ExtractorError(f"videos have {videos.shape[1]} frames, this extractor needs at least {min_frames}",
                             "sample longer clips (FVD protocols use 16 frames)")
    return videos


def preprocess_i3d_pt400(videos: torch.Tensor, size: int = 224) -> torch.Tensor:
    """TATS preprocessing: uint8 ``[B, T, 3, H, W]`` -> float32 ``[B, 3, T, size, size]`` in [-1, 1].

    Each frame is resized with ``F.interpolate(mode="bilinear", align_corners=False)`` (no antialias,
    no crop, aspect ratio not kept) on 0-255 floats, then scaled by ``2x/255 - 1``.
    """
    b, t, c, h, w = videos.shape
    frames = videos.reshape(b * t, c, h, w).float()
    frames = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False)
    frames = frames.view(b, t, c, size, size).transpose(1, 2).contiguous()  # [B, 3, T, size, size]
    return 2.0 * frames / 255.0 - 1.0


def load_i3d_state_dict(model: InceptionI3d, state: Mapping[str, torch.Tensor] | str | Path,
                        source: str | None = None) -> InceptionI3d:
    """Strictly load ``i3d_pretrained_400.pt`` (a bare state dict) or a mapping into ``model``.

    Files are read with ``torch.load(..., map_location="cpu", weights_only=True)``. A missing,
    unexpected or mis-shaped key raises :class:`ExtractorError` naming the source and the key.
    """
    if isinstance(state, (str, Path)):
        source = source or str(state)
        try:
            state = torch.load(state, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ExtractorError(f"cannot read I3D weights {source}: {type(exc).__name__}: {exc}",
                                 "pass i3d_pretrained_400.pt (VideoGPT/TATS), a plain state dict") from exc
    source = source or "<state dict>"
    if not isinstance(state, Mapping):
        raise ExtractorError(f"{source} holds a {type(state).__name__}, not a state dict",
                             "pass i3d_pretrained_400.pt (VideoGPT/TATS)")
    expected = model.state_dict()
    hint = "expected the VideoGPT/TATS InceptionI3d(400) layout of i3d_pretrained_400.pt"
    for k in expected:
        if k not in state:
            raise ExtractorError(f"{source} is missing key '{k}'", hint)
    for k in state:
        if k not in expected:
            raise ExtractorError(f"{source} has unexpected key '{k}'", hint)
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ExtractorError(f"{source}: key '{k}' has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}",
                                 hint)
    model.load_state_dict(state, strict=True)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Extractors
# ---------------------------------------------------------------------------------------------


class _VideoExtractor(nn.Module):
    name = "abstract"
    feature_dim = 400
    weights_sha256: str | None = None
    is_official_weights = False
    feature_version = "1"
    min_frames = 1

    def train(self, mode: bool = True):  # BatchNorm must never switch to batch statistics
        return super().train(False)

    def features(self, videos: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, videos: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """float64 CPU features ``[B, feature_dim]`` of uint8 videos ``[B, T, 3, H, W]``."""
        videos = check_videos(videos, self.min_frames)
        chunks = [videos] if batch_size is None else torch.split(videos, int(batch_size))
        with tf32_disabled():
            return torch.cat([self.features(c).to("cpu", torch.float64) for c in chunks])

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "feature_dim": self.feature_dim, "weights_sha256": self.weights_sha256,
                "is_official_weights": self.is_official_weights, "feature_version": self.feature_version,
                "tf32": False, **self.preprocessing()}

    def preprocessing(self) -> dict[str, Any]:
        return {}


class I3DPt400(_VideoExtractor):
    """``i3d_pt400``: the VideoGPT/TATS I3D; features = time-averaged 400-d logits (see module docstring)."""

    name = "i3d_pt400"
    min_frames = 9  # three stride-2 time reductions leave ceil(T/8) steps; the (2, 7, 7) average pool needs 2

    def __init__(self, weights: Mapping[str, torch.Tensor] | str | Path | None = None,
                 model: InceptionI3d | None = None):
        super().__init__()
        self.net = model if model is not None else InceptionI3d(400, in_channels=3)
        if weights is not None:
            if isinstance(weights, (str, Path)):
                from cgmbench.weights import sha256_file  # a regular file of bounded size, never a FIFO

                self.weights_sha256 = sha256_file(weights)
            load_i3d_state_dict(self.net, weights)
        self.net.eval()

    def features(self, videos: torch.Tensor) -> torch.Tensor:
        x = preprocess_i3d_pt400(videos).to(next(self.net.parameters()).device)
        return self.net(x)

    def preprocessing(self) -> dict[str, Any]:
        return {"input": "uint8 [B,T,3,H,W]", "resize": "F.interpolate bilinear align_corners=False to 224x224",
                "scale": "2x/255-1 after resize", "feature": "logits (pre-softmax, 400-d) averaged over time"}


class StyleGANVI3D(_VideoExtractor):
    """``i3d_tfhub_ts``: StyleGAN-V's TorchScript I3D, called exactly as its FVD does.

    ``detector(x, rescale=True, resize=True, return_features=True)`` with ``x`` uint8
    ``[B, 3, T, H, W]`` (channels before frames, as StyleGAN-V permutes them); the detector scales
    and resizes to 224 itself and returns the 400-d pre-softmax features.
    """

    name = "i3d_tfhub_ts"
    detector_kwargs = {"rescale": True, "resize": True, "return_features": True}

    def __init__(self, detector: torch.nn.Module | torch.jit.ScriptModule, weights_sha256: str | None = None,
                 feature_dim: int = 400):
        super().__init__()
        self.detector = detector
        self.weights_sha256 = weights_sha256
        self.feature_dim = feature_dim

    def features(self, videos: torch.Tensor) -> torch.Tensor:
        x = videos.permute(0, 2, 1, 3, 4).contiguous()  # [B, 3, T, H, W], still uint8
        device = next(iter(self.detector.parameters()), torch.empty(0)).device
        out = self.detector(x.to(device), **self.detector_kwargs)
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape != (videos.shape[0], self.feature_dim):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ExtractorError(f"the StyleGAN-V detector returned {shape}, expected ({videos.shape[0]}, "
                                 f"{self.feature_dim})", "pass i3d_torchscript.pt from StyleGAN-V")
        return out

    def preprocessing(self) -> dict[str, Any]:
        return {"input": "uint8 [B,3,T,H,W] to the detector", "detector_kwargs": dict(self.detector_kwargs),
                "resize": "inside the TorchScript (resize=True)", "feature": "return_features=True (pre-softmax 400-d)"}


def load_styleganv_detector(path: str | Path) -> StyleGANVI3D:
    """Load StyleGAN-V's ``i3d_torchscript.pt`` with ``torch.jit.load`` on the CPU and wrap it."""
    path = Path(path)
    if not path.is_file():
        raise ExtractorError(f"StyleGAN-V I3D detector {path} does not exist",
                             "download i3d_torchscript.pt (StyleGAN-V's FVD detector) and pass its path")
    try:
        detector = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:
        raise ExtractorError(f"cannot load {path} as TorchScript: {type(exc).__name__}: {exc}",
                             "pass StyleGAN-V's i3d_torchscript.pt") from exc
    from cgmbench.weights import sha256_file

    return StyleGANVI3D(detector, weights_sha256=sha256_file(path))
