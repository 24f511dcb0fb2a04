"""The FID Inception-v3: the TF ``inception-2015-12-05`` graph as a PyTorch module.

This is the network behind every published FID/KID/IS number (Heusel et al. 2017, TTUR; Salimans et
al. 2016 for IS). It is torchvision's Inception-v3 with the four patches that make it match the TF
graph (as in pytorch-fid and torch-fidelity):

* BatchNorm ``eps = 1e-3``; convolutions have no bias;
* the average pools inside the Inception A, C and first E blocks exclude the zero padding
  (``count_include_pad=False``, TF's ``SAME`` average pooling);
* the last E block (``Mixed_7c``) pools its ``branch_pool`` with a **max** pool;
* the classifier has 1008 outputs (1000 ImageNet classes + 8 unused), and the Inception Score uses
  the logits *without* the fc bias (``logits_unbiased``), as the original IS code did.

Parameter names are those of torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``
(identical to the inner model of pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``; both
files have the same bytes): ``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.running_mean``,
..., ``fc.weight``, ``fc.bias``.

Shapes (input normalised as the protocol says):
``[B,3,299,299] -> ... -> Mixed_7c [B,2048,8,8] -> pool3 [B,2048] -> logits [B,1008]``.
"""

from __future__ import annotations

from cgmbench.extractors.errors import ExtractorError

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cgmbench.extractors.base import FeatureExtractor, split_batches, tf32_disabled
from cgmbench.extractors.protocols import Protocol, check_images, get_protocol
from cgmbench.extractors.weights import (
    WeightsSpec,
    load_state_dict_file,
    load_state_dict_strict,
    resolve_weights,
)

INCEPTION_WEIGHTS = WeightsSpec("inception-v3")
"""torch-fidelity's conversion of the TF graph, the :mod:`cgmbench.weights` entry ``inception-v3``
(file name, URL, full sha256 -- whose first 8 hex digits are the ``6726825d`` in the file name,
torch.hub's convention -- and size live there). pytorch-fid's ``pt_inception-...`` has the same bytes."""

OUTPUTS = ("pool3", "logits_unbiased", "logits")
#: the sFID features (ADM evaluator, ``mixed_6/conv:0[..., :7]``): the first 7 channels of ``Mixed_6d`` (its
#: ``branch1x1`` conv-BN-ReLU output, TF's ``mixed_6/conv``), 17x17x7 flattened in TF's NHWC order -> 2023-d.
#: Asked for by name (``extract(outputs=("spatial",))``); not in the default outputs.
SPATIAL_OUTPUT = "spatial"


# ----------------------------------------------------------------------------------------------
# Building blocks (official torchvision / TF names: branch1x1, branch5x5_1, ...)
# ----------------------------------------------------------------------------------------------


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm(eps=1e-3) -> ReLU; keys ``conv.weight`` and ``bn.*``."""

    def __init__(self, in_channels: int, out_channels: int, **conv_kwargs: Any):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)  # in place on a fresh tensor: same values, no copy


def max_pool_3x3(x: torch.Tensor, stride: int, padding: int = 0) -> torch.Tensor:
    """``F.max_pool2d(x, 3, stride, padding)``, bit for bit, as the maximum of the nine strided shifts.

    Written out because torch's CPU max-pool kernel on NCHW tensors is 1.4-3x slower than nine elementwise
    maxima of strided views (about 7 % of the whole Inception forward on one core); the maximum is exact, so
    the output is identical (NaN propagates as in ``max_pool2d``)."""
    if padding:
        x = F.pad(x, (padding,) * 4, value=float("-inf"))
    h, w = x.shape[-2:]
    out_h, out_w = (h - 3) // stride + 1, (w - 3) // stride + 1
    out = None
    for i in range(3):
        for j in range(3):
            view = x[..., i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride]
            out = view.clone() if out is None else torch.maximum(out, view, out=out)
    return out


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """3x3/1 average pool, ``SAME`` padding, the padded zeros are not counted (TF semantics)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block (Mixed_5b/c/d): 1x1 | 1x1->5x5 | 1x1->3x3->3x3 | avgpool->1x1."""

    def __init__(self, in_channels: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_tf_avg_pool(x)),
            ],
            dim=1,
        )


class InceptionB(nn.Module):
    """Grid reduction 35->17 (Mixed_6a): 3x3/2 | 1x1->3x3->3x3/2 | maxpool 3x3/2."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                max_pool_3x3(x, stride=2),
            ],
            dim=1,
        )


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (Mixed_6b/c/d/e)."""

    def __init__(self, in_channels: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        seven_dbl = x
        for layer in (
            self.branch7x7dbl_1,
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            seven_dbl = layer(seven_dbl)
        return torch.cat([self.branch1x1(x), seven, seven_dbl, self.branch_pool(_tf_avg_pool(x))], dim=1)


class InceptionD(nn.Module):
    """Grid reduction 17->8 (Mixed_7a): 1x1->3x3/2 | 1x1->1x7->7x1->3x3/2 | maxpool 3x3/2."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat(
            [self.branch3x3_2(self.branch3x3_1(x)), seven, max_pool_3x3(x, stride=2)],
            dim=1,
        )


class InceptionE(nn.Module):
    """8x8 block with split 1x3/3x1 outputs (Mixed_7b, Mixed_7c).

    ``pool="avg"`` (Mixed_7b, padding excluded) or ``pool="max"`` (Mixed_7c): the TF graph's last
    block max-pools its ``branch_pool`` input, unlike torchvision's and the paper's.
    """

    def __init__(self, in_channels: int, pool: str):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ExtractorError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        three = self.branch3x3_1(x)
        three_dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = _tf_avg_pool(x) if self.pool == "avg" else max_pool_3x3(x, stride=1, padding=1)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(three),
                self.branch3x3_2b(three),
                self.branch3x3dbl_3a(three_dbl),
                self.branch3x3dbl_3b(three_dbl),
                self.branch_pool(pooled),
            ],
            dim=1,
        )


# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------


class FIDInceptionNetwork(nn.Module):
    """The bare FID Inception-v3 (no resize, no normalisation); ``state_dict`` keys are the official ones.

    ``forward(x)`` takes the normalised ``[B, 3, 299, 299]`` input and returns a dict with
    ``pool3`` ``[B, 2048]`` (global average of ``Mixed_7c``, TF ``pool_3``),
    ``logits_unbiased`` ``[B, 1008]`` (``pool3 @ fc.weight.T``) and ``logits`` (plus ``fc.bias``).
    """

    num_features = 2048
    num_classes = 1008

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(self.num_features, self.num_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # [B, 64, 147, 147]
        x = max_pool_3x3(x, stride=2)  # [B, 64, 73, 73]
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # [B, 192, 71, 71]
        x = max_pool_3x3(x, stride=2)  # [B, 192, 35, 35]
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d):  # [B, 288, 35, 35]
            x = block(x)
        for block in (self.Mixed_6a, self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e):  # [B, 768, 17, 17]
            x = block(x)
            if block is self.Mixed_6d:  # channels 0-191 are branch1x1 = TF mixed_6/conv; NHWC order as TF
                spatial = x[:, :7].permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        for block in (self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):  # [B, 2048, 8, 8]
            x = block(x)
        pool3 = F.adaptive_avg_pool2d(x, 1).flatten(1)  # [B, 2048]
        logits_unbiased = pool3 @ self.fc.weight.T  # [B, 1008]
        return {"pool3": pool3, "logits_unbiased": logits_unbiased, "logits": logits_unbiased + self.fc.bias,
                SPATIAL_OUTPUT: spatial}


# ----------------------------------------------------------------------------------------------
# The feature extractor
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreprocessedBatch:
    """Network input ``x`` ``[B, 3, 299, 299]`` that a protocol already produced (see ``FIDInceptionV3.prepare``)."""

    x: torch.Tensor


class FIDInceptionV3(FeatureExtractor):
    """FID Inception feature extractor: uint8 images -> 2048-d pool3 features (float64, CPU).

    Args:
        protocol: ``"tf-exact"`` (default), ``"clean"`` or ``"pytorch-fid"`` (see ``protocols.py``),
            or a :class:`~cgmbench.extractors.protocols.Protocol`.
        weights_path: use this file instead of the official
            ``$CGMBENCH_HOME/weights/weights-inception-2015-12-05-6726825d.pth``. Its sha256 is
            recorded; unless it equals the official hash, ``is_official_weights`` is False and the
            numbers are non-standard.
        compute_dtype: ``torch.float32`` (default, as every reference) or ``torch.float64``.

    Attributes:
        name (``"inception-v3"``), feature_dim (2048), num_classes (1008), protocol,
        weights_sha256, weights_path, is_official_weights, compute_dtype.

    Calling the extractor (``extractor(images, batch_size=None)``) validates the uint8
    ``[B, 3, H, W]`` input, applies the protocol's resize and normalisation, runs the network with
    TF32 disabled and returns ``[B, 2048]`` float64 on the CPU. :meth:`logits` gives the classifier
    logits for the Inception Score and :meth:`extract` several outputs from one pass.
    """

    name = "inception-v3"
    feature_dim = FIDInceptionNetwork.num_features
    num_classes = FIDInceptionNetwork.num_classes
    weights_spec = INCEPTION_WEIGHTS

    def __init__(
        self,
        protocol: str | Protocol = "tf-exact",
        weights_path: str | os.PathLike | None = None,
        compute_dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if compute_dtype not in (torch.float32, torch.float64):
            raise ExtractorError(f"compute_dtype must be torch.float32 or torch.float64, got {compute_dtype}")
        self.protocol = get_protocol(protocol)
        self.compute_dtype = compute_dtype
        resolved = resolve_weights(self.weights_spec, weights_path)
        self.weights_path = resolved.path
        self.weights_sha256 = resolved.sha256
        self.is_official_weights = resolved.is_official
        self.network = FIDInceptionNetwork()
        load_state_dict_strict(self.network, load_state_dict_file(resolved.path), source=str(resolved.path))
        self.network.to(compute_dtype).requires_grad_(False)
        self.eval()

    def _device(self) -> torch.device:
        return self.network.fc.weight.device

    def _run(self, images: "torch.Tensor | PreprocessedBatch") -> dict[str, torch.Tensor]:
        """One batch through protocol + network (caller handles no_grad and TF32)."""
        if isinstance(images, PreprocessedBatch):
            return self.network(images.x.to(self._device()))
        x = self.protocol(images.to(self._device()), dtype=self.compute_dtype)
        return self.network(x)

    def prepare(self, images: torch.Tensor, batch_size: int | None = None) -> list:
        """Batches for :meth:`features_of_prepared`; the protocol's resize already applied where it runs on
        the CPU anyway (every protocol when the network is on the CPU; clean-fid's PIL resize always), so
        a pipeline can overlap it with the network. Same numbers as :meth:`forward`."""
        chunks = super().prepare(images, batch_size)
        if self._device().type != "cpu" and self.protocol.resize != "pil-bicubic-float":
            return chunks  # the resize runs on the accelerator, next to the network
        return [PreprocessedBatch(self.protocol(c, dtype=self.compute_dtype)) for c in chunks]

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self._run(images)["pool3"]

    @torch.no_grad()
    def extract(
        self,
        images: torch.Tensor,
        outputs: tuple[str, ...] = OUTPUTS,
        batch_size: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Several outputs from one pass: ``{"pool3": [B,2048], "logits_unbiased": [B,1008], "logits": [B,1008]}``
        (float64, CPU), restricted to ``outputs``."""
        unknown = [o for o in outputs if o not in OUTPUTS + (SPATIAL_OUTPUT,)]
        if unknown:
            raise ExtractorError(f"unknown outputs {unknown}; available: {list(OUTPUTS)}")
        check_images(images)
        collected: dict[str, list[torch.Tensor]] = {o: [] for o in outputs}
        with tf32_disabled():
            for chunk in split_batches(images, batch_size):
                result = self._run(chunk)
                for o in outputs:
                    collected[o].append(result[o].to("cpu", torch.float64))
        return {o: torch.cat(parts) for o, parts in collected.items()}

    def logits(self, images: torch.Tensor, batch_size: int | None = None, bias: bool = False) -> torch.Tensor:
        """Classifier logits ``[B, 1008]`` (float64, CPU) for the Inception Score.

        ``bias=False`` (default) is ``pool3 @ fc.weight.T``, the "unbiased" logits that the
        original IS code, the ADM evaluator and torch-fidelity use; ``bias=True`` adds ``fc.bias``.
        """
        key = "logits" if bias else "logits_unbiased"
        return self.extract(images, outputs=(key,), batch_size=batch_size)[key]

    def describe(self) -> dict[str, Any]:
        record = super().describe()
        record.update(
            protocol=self.protocol.to_dict(),
            compute_dtype=str(self.compute_dtype).replace("torch.", ""),
            weights_file=self.weights_path.name,
            official_weights_sha256=self.weights_spec.sha256,
        )
        return record
