"""inception-v3-cub-finetuned (StackGAN's CUB IS classifier): the TF checkpoint converter keeps the official names
and the moving-average values, and the extractor's logits equal torchvision's Inception-v3 run on the same weights
(TF 'SAME' average pools, StackGAN's bilinear resize and x/127.5 - 1)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cgmbench.errors import CgmbenchError
from cgmbench.extractors import get_extractor
from cgmbench.extractors.inception_cub import (
    CUBInceptionNetwork,
    convert_checkpoint,
    official_variable_names,
    tf_to_state_dict,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from inception_helpers import random_cub_inception, slim_conv_scopes, smooth_images  # noqa: E402

torch.set_num_threads(1)


def _reference_logits(tv, images: torch.Tensor, monkeypatch) -> torch.Tensor:
    """torchvision's forward with TF 'SAME' average pools (padding not counted) on StackGAN's preprocessing."""
    import torchvision.models.inception as tv_inception

    plain = F.avg_pool2d

    def same_avg_pool(x, kernel_size, stride=None, padding=0, *args, **kwargs):
        return plain(x, kernel_size, stride, padding, count_include_pad=False)

    monkeypatch.setattr(tv_inception.F, "avg_pool2d", same_avg_pool)
    x = []
    for img in images.numpy():  # scipy.misc.imresize(img, (299, 299, 3), interp="bilinear") = PIL bilinear, uint8
        x.append(np.asarray(Image.fromarray(img.transpose(1, 2, 0)).resize((299, 299), Image.BILINEAR)))
    x = torch.from_numpy(np.stack(x)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        return tv(x)


def test_official_names_and_strict_conversion():
    names = official_variable_names()
    assert len(names) == 94 * 4 + 2 and len(set(names)) == len(names)
    assert [n[: -len("/weights")] for n in names if n.endswith("/weights") and "logits" not in n] == slim_conv_scopes()
    assert "mixed_17x17x1280a/branch7x7x3/Conv_3/BatchNorm/moving_variance" in names
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in CUBInceptionNetwork().state_dict().items()}
    zeros = {}
    for n in names:  # TF layouts from the network's shapes
        if n.endswith("/weights") and not n.startswith("logits"):
            continue
        zeros[n] = np.zeros(1, np.float32)
    with pytest.raises(CgmbenchError, match="missing 'conv0/weights'") as info:
        tf_to_state_dict(zeros, "x.safetensors")
    assert "\n" not in str(info.value)
    assert shapes["fc.weight"] == (51, 2048) and shapes["Mixed_7c.branch_pool.conv.weight"] == (192, 2048, 1, 1)


def test_missing_weights_name_the_conversion(monkeypatch, tmp_path):
    monkeypatch.setenv("CGMBENCH_HOME", str(tmp_path))
    with pytest.raises(CgmbenchError) as info:
        get_extractor("inception-v3-cub-finetuned")
    text = str(info.value)
    assert "inception_v3_cub_finetuned.safetensors" in text and "inception_cub convert" in text


@pytest.mark.slow
def test_converted_checkpoint_matches_torchvision(tmp_path, monkeypatch):
    from test_tf_checkpoint import v1_checkpoint

    tv, variables = random_cub_inception(seed=1)
    stored = {f"{k}/ExponentialMovingAverage": v for k, v in variables.items()}  # what evaluation restores
    stored["conv0/weights"] = np.zeros_like(variables["conv0/weights"])  # raw values: must not be used
    stored["logits/logits/biases"] = np.full(51, 100.0, np.float32)
    stored["aux_logits/FC/weights/ExponentialMovingAverage"] = np.zeros((768, 51), np.float32)  # ignored
    ckpt = tmp_path / "model.ckpt-5000"
    ckpt.write_bytes(v1_checkpoint(stored, per_block=64))
    out = convert_checkpoint(ckpt, tmp_path / "inception_v3_cub_finetuned.safetensors")
    extractor = get_extractor("inception-v3-cub-finetuned", weights_path=out)
    assert extractor.is_official_weights is False and extractor.weights_sha256
    images = smooth_images(3, 64, 80, seed=4)
    got = extractor.logits(images, batch_size=2)
    want = _reference_logits(tv, images, monkeypatch)[:, 1:].double()
    assert got.shape == (3, 50) and want.abs().max() > 1
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    both = extractor.extract(images, ("pool3", "known_logits", "logits"))
    assert both["pool3"].shape == (3, 2048) and torch.equal(both["known_logits"], both["logits"][:, 1:])
    with pytest.raises(CgmbenchError, match="has no variable 'conv0/BatchNorm/beta'"):  # raw: only conv0/weights
        convert_checkpoint(ckpt, tmp_path / "raw.safetensors", use_ema=False)
