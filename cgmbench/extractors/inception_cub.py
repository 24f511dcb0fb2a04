"""``inception-v3-cub-finetuned``: StackGAN's Inception-v3 fine-tuned on the 50 CUB test classes (IS on CUB).

The StackGAN/AttnGAN papers' CUB Inception Scores (3.70, 4.36) come from hanzhanggit/StackGAN-inception-model
``inception_score.py``: a TF1 checkpoint ``inception_finetuned_models/birds_valid299/model.ckpt-5000`` of the
*old* TF-Slim Inception-v3 (``tensorflow/models`` ``inception/slim/inception_model.py``) fine-tuned on the CUB test
classes, 51 outputs (index 0 an unused background class). Its evaluation:

* each image: ``scipy.misc.imresize(img, (299, 299, 3), interp='bilinear')`` (PIL bilinear on uint8, result
  uint8), then ``x / 127.5 - 1``;
* ``logits`` of the network restored from the **exponential moving averages** of its variables
  (``variables_to_restore()`` of ``ExponentialMovingAverage(0.9999)``), the background logit dropped,
  ``softmax`` over the 50 known classes, IS with 10 splits.

Here the same network is :class:`CUBInceptionNetwork`: the FID Inception's blocks (:mod:`cgmbench.extractors.inception`,
torchvision's module names) with the two differences of the old Slim graph: the last block's pool branch is an
average pool (padding excluded, TF ``SAME``), and the classifier is ``Linear(2048, 51)`` with a bias. Slim's
BatchNorm has no scale (``scale=False``): its ``bn.weight`` is 1. The extractor's IS logits are the 50 known-class
logits (:attr:`CUBInceptionV3.is_logits_output`), so IS's softmax is the official one.

**Weights.** The official file is a TF checkpoint; cgmbench reads it without TensorFlow
(:func:`cgmbench.extractors.tf_checkpoint.read_tf_checkpoint`) and converts it once::

    python -m cgmbench.extractors.inception_cub convert inception_finetuned_models/birds_valid299/model.ckpt-5000 \\
        $CGMBENCH_HOME/weights/inception_v3_cub_finetuned.safetensors

The converted file keeps the **official TF variable names and layouts** (``conv0/weights`` HWIO,
``mixed_35x35x256a/branch5x5/Conv_1/BatchNorm/moving_mean``, ``logits/logits/weights`` ``[2048, 51]``, ...;
:func:`official_variable_names`), holding the moving-average values the evaluation restores (the raw values and
the auxiliary head, unused at evaluation, are left out). The weights registry entry ``inception-v3-cub-finetuned``
names it; its digest is recorded at first use (no checksum is published).

Known deviations of the reference, recorded in :meth:`CUBInceptionV3.describe`: it shuffles the images without a
seed and drops the last partial batch of 64; cgmbench scores every sample, with the suite's IS splits.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cgmbench.extractors.base import FeatureExtractor
from cgmbench.extractors.errors import ExtractorError
from cgmbench.extractors.inception import BasicConv2d, FIDInceptionNetwork, InceptionE
from cgmbench.extractors.protocols import check_images
from cgmbench.extractors.weights import WeightsSpec, WeightsError, resolve_weights

__all__ = ["CUB_WEIGHTS", "NUM_CLASSES", "CUBInceptionNetwork", "CUBInceptionV3", "official_variable_names",
           "tf_to_state_dict", "convert_checkpoint", "preprocess_stackgan"]

CUB_WEIGHTS = WeightsSpec("inception-v3-cub-finetuned")
NUM_CLASSES = 51  # 50 CUB test classes + the unused background class 0
INPUT_SIZE = 299
EMA_SUFFIX = "/ExponentialMovingAverage"

# TF scope -> torchvision module, and the branches of each block in the order the Slim graph creates their convs
_STEM = (("conv0", "Conv2d_1a_3x3"), ("conv1", "Conv2d_2a_3x3"), ("conv2", "Conv2d_2b_3x3"),
         ("conv3", "Conv2d_3b_1x1"), ("conv4", "Conv2d_4a_3x3"))
_A = (("branch1x1", ("branch1x1",)), ("branch5x5", ("branch5x5_1", "branch5x5_2")),
      ("branch3x3dbl", ("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3")), ("branch_pool", ("branch_pool",)))
_B = (("branch3x3", ("branch3x3",)), ("branch3x3dbl", ("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3")))
_C = (("branch1x1", ("branch1x1",)), ("branch7x7", ("branch7x7_1", "branch7x7_2", "branch7x7_3")),
      ("branch7x7dbl", tuple(f"branch7x7dbl_{i}" for i in range(1, 6))), ("branch_pool", ("branch_pool",)))
_D = (("branch3x3", ("branch3x3_1", "branch3x3_2")),
      ("branch7x7x3", ("branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4")))
_E = (("branch1x1", ("branch1x1",)), ("branch3x3", ("branch3x3_1", "branch3x3_2a", "branch3x3_2b")),
      ("branch3x3dbl", ("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3a", "branch3x3dbl_3b")),
      ("branch_pool", ("branch_pool",)))
_BLOCKS = (("mixed_35x35x256a", "Mixed_5b", _A), ("mixed_35x35x288a", "Mixed_5c", _A),
           ("mixed_35x35x288b", "Mixed_5d", _A), ("mixed_17x17x768a", "Mixed_6a", _B),
           ("mixed_17x17x768b", "Mixed_6b", _C), ("mixed_17x17x768c", "Mixed_6c", _C),
           ("mixed_17x17x768d", "Mixed_6d", _C), ("mixed_17x17x768e", "Mixed_6e", _C),
           ("mixed_17x17x1280a", "Mixed_7a", _D),  # sic: the Slim graph keeps this old scope name
           ("mixed_8x8x2048a", "Mixed_7b", _E), ("mixed_8x8x2048b", "Mixed_7c", _E))
_BN = (("beta", "bn.bias"), ("moving_mean", "bn.running_mean"), ("moving_variance", "bn.running_var"))
_LOGITS = (("logits/logits/weights", "fc.weight"), ("logits/logits/biases", "fc.bias"))


def _conv_scopes() -> list[tuple[str, str]]:
    """``(TF scope, torchvision module)`` of every conv-BN unit, in graph order."""
    out = list(_STEM)
    for tf_block, tv_block, branches in _BLOCKS:
        for tf_branch, modules in branches:
            for i, module in enumerate(modules):
                out.append((f"{tf_block}/{tf_branch}/{'Conv' if i == 0 else f'Conv_{i}'}", f"{tv_block}.{module}"))
    return out


def official_variable_names() -> list[str]:
    """The TF variable names the evaluation restores (the EMA values are stored under these names)."""
    names = []
    for scope, _ in _conv_scopes():
        names.append(f"{scope}/weights")
        names += [f"{scope}/BatchNorm/{v}" for v, _ in _BN]
    return names + [n for n, _ in _LOGITS]


class CUBInceptionNetwork(FIDInceptionNetwork):
    """The old TF-Slim Inception-v3 with 51 outputs: ``forward(x)`` -> ``{"pool3": [B, 2048], "logits": [B, 51]}``
    for ``x`` in [-1, 1], ``[B, 3, 299, 299]``."""

    num_classes = NUM_CLASSES

    def __init__(self) -> None:
        super().__init__()
        self.Mixed_7c = InceptionE(2048, pool="avg")  # Slim: avg_pool in mixed_8x8x2048b (the FID graph: max)
        self.fc = nn.Linear(self.num_features, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().forward(x)
        return {"pool3": out["pool3"], "logits": out["logits"]}


def tf_to_state_dict(variables: dict[str, np.ndarray], source: str = "checkpoint") -> "OrderedDict[str, torch.Tensor]":
    """Official TF variables (``{name: array}``, TF layouts) -> the :class:`CUBInceptionNetwork` state dict.

    Exactly :func:`official_variable_names` must be present (a missing or extra name, or a wrong shape, is one
    :class:`WeightsError`); conv kernels HWIO -> OIHW, the dense kernel ``[in, out]`` -> ``[out, in]``, BatchNorm
    ``bn.weight`` = 1 (Slim's ``scale=False``).
    """
    want = official_variable_names()
    missing = [n for n in want if n not in variables]
    extra = sorted(set(variables) - set(want))
    if missing or extra:
        what = f"missing {missing[0]!r} ({len(missing)} missing)" if missing else f"unexpected {extra[0]!r}"
        raise WeightsError(f"{source} does not hold StackGAN's fine-tuned Inception-v3 variables: {what}",
                           "convert the official birds_valid299/model.ckpt-5000 with "
                           "`python -m cgmbench.extractors.inception_cub convert`")
    net_shapes = {k: tuple(v.shape) for k, v in CUBInceptionNetwork().state_dict().items()}
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for scope, module in _conv_scopes():
        state[f"{module}.conv.weight"] = torch.from_numpy(np.ascontiguousarray(
            np.asarray(variables[f"{scope}/weights"], np.float32).transpose(3, 2, 0, 1)))
        for tf_name, pt_name in _BN:
            state[f"{module}.{pt_name}"] = torch.from_numpy(np.asarray(variables[f"{scope}/BatchNorm/{tf_name}"],
                                                                       np.float32).copy())
        state[f"{module}.bn.weight"] = torch.ones_like(state[f"{module}.bn.bias"])
    state["fc.weight"] = torch.from_numpy(np.ascontiguousarray(np.asarray(variables["logits/logits/weights"],
                                                                          np.float32).T))
    state["fc.bias"] = torch.from_numpy(np.asarray(variables["logits/logits/biases"], np.float32).copy())
    for key, tensor in state.items():
        if tuple(tensor.shape) != net_shapes[key]:
            raise WeightsError(f"{source}: {key} has shape {tuple(tensor.shape)} after conversion, the network "
                               f"needs {net_shapes[key]}", "the file is not StackGAN's 51-class birds model")
    return state


def preprocess_stackgan(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` -> float32 ``[B, 3, 299, 299]``: PIL bilinear to 299 on uint8 (what
    ``scipy.misc.imresize(..., interp='bilinear')`` did), then ``x / 127.5 - 1``."""
    from PIL import Image

    check_images(images)
    out = []
    for img in images.cpu().numpy():
        hwc = np.ascontiguousarray(img.transpose(1, 2, 0))
        if hwc.shape[:2] != (INPUT_SIZE, INPUT_SIZE):
            hwc = np.asarray(Image.fromarray(hwc).resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR))
        out.append(hwc.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out)).float() / 127.5 - 1.0


class CUBInceptionV3(FeatureExtractor):
    """``inception-v3-cub-finetuned``: uint8 images -> pool3 features ``[B, 2048]``; :meth:`logits` the 50
    known-class logits the Inception Score uses (see the module docstring)."""

    name = "inception-v3-cub-finetuned"
    feature_dim = 2048
    num_classes = NUM_CLASSES - 1
    weights_spec = CUB_WEIGHTS
    #: which output of :meth:`extract` the harness's IS reads
    is_logits_output = "known_logits"

    def __init__(self, weights_path: str | os.PathLike | None = None, protocol: str | None = None):
        super().__init__()
        resolved = resolve_weights(self.weights_spec, weights_path)
        self.weights_path, self.weights_sha256 = resolved.path, resolved.sha256
        self.is_official_weights = resolved.is_official
        self.network = CUBInceptionNetwork()
        self.network.load_state_dict(tf_to_state_dict(_read_converted(resolved.path), str(resolved.path)))
        self.network.requires_grad_(False)
        self.eval()

    def _run(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = preprocess_stackgan(images).to(self.network.fc.weight.device)
        out = self.network(x)
        return {"pool3": out["pool3"], "logits": out["logits"], "known_logits": out["logits"][:, 1:]}

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self._run(images)["pool3"]

    @torch.no_grad()
    def extract(self, images: torch.Tensor, outputs=("pool3", "known_logits"), batch_size: int | None = None):
        """Several outputs from one pass (float64, CPU): ``pool3``, ``logits`` (51), ``known_logits`` (50)."""
        from cgmbench.extractors.base import split_batches, tf32_disabled

        unknown = [o for o in outputs if o not in ("pool3", "logits", "known_logits")]
        if unknown:
            raise ExtractorError(f"unknown outputs {unknown}; available: pool3, logits, known_logits")
        check_images(images)
        parts: dict[str, list] = {o: [] for o in outputs}
        with tf32_disabled():
            for chunk in split_batches(images, batch_size):
                result = self._run(chunk)
                for o in outputs:
                    parts[o].append(result[o].to("cpu", torch.float64))
        return {o: torch.cat(v) for o, v in parts.items()}

    def logits(self, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """The 50 known-class logits ``[B, 50]`` (background dropped): softmax of these is the official pred_op."""
        return self.extract(images, ("known_logits",), batch_size)["known_logits"]

    def describe(self) -> dict[str, Any]:
        record = super().describe()
        record.update(
            preprocessing="PIL bilinear to 299x299 on uint8 (scipy.misc.imresize), then x/127.5 - 1",
            classes="50 CUB test classes (logit 0, the background class, dropped before the softmax)",
            weights="EMA (0.9999) values of StackGAN-inception-model birds_valid299/model.ckpt-5000",
            reference_deviations=["the reference shuffles without a seed and drops the last partial batch of 64; "
                                  "cgmbench scores every sample with the suite's IS splits"],
            weights_file=self.weights_path.name, official_weights_sha256=self.weights_spec.sha256)
        return record


def _read_converted(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except Exception as error:  # noqa: BLE001 - not a safetensors file: one line
        raise WeightsError(f"cannot read {path} as the converted fine-tuned Inception (safetensors): "
                           f"{type(error).__name__}: {error}",
                           "convert the official TF checkpoint with `python -m cgmbench.extractors.inception_cub "
                           "convert`") from None


def convert_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, use_ema: bool = True) -> Path:
    """Read the official TF checkpoint and write ``out`` (safetensors, official names, TF layouts).

    ``use_ema`` (default): the ``<name>/ExponentialMovingAverage`` values, as the reference evaluation restores
    them; without, the raw variables. Returns the written path."""
    from safetensors.numpy import save_file

    from cgmbench.extractors.tf_checkpoint import read_tf_checkpoint

    variables = read_tf_checkpoint(checkpoint)
    picked = {}
    for name in official_variable_names():
        key = name + EMA_SUFFIX if use_ema else name
        if key not in variables:
            raise WeightsError(f"{checkpoint} has no variable {key!r}",
                               "it is not StackGAN's fine-tuned Inception checkpoint (birds_valid299/model.ckpt-5000)"
                               + ("" if not use_ema else "; --raw converts the non-averaged variables"))
        picked[name] = np.ascontiguousarray(variables[key], dtype=np.float32)
    tf_to_state_dict(picked, str(checkpoint))  # the network accepts them (names and shapes)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(picked, str(out), metadata={"source": Path(checkpoint).name, "values": "ema" if use_ema else "raw"})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cgmbench.extractors.inception_cub",
                                     description="Convert StackGAN's fine-tuned Inception (TF checkpoint) to the "
                                                 "safetensors file of the inception-v3-cub-finetuned extractor.")
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="TF checkpoint -> safetensors (official names, EMA values)")
    conv.add_argument("checkpoint", help="birds_valid299/model.ckpt-5000 (V1 file, or the V2 prefix)")
    conv.add_argument("out", help="e.g. $CGMBENCH_HOME/weights/inception_v3_cub_finetuned.safetensors")
    conv.add_argument("--raw", action="store_true", help="the raw variables instead of their moving averages")
    args = parser.parse_args(argv)
    try:
        path = convert_checkpoint(args.checkpoint, args.out, use_ema=not args.raw)
    except ExtractorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
