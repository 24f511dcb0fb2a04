"""I3D (VideoGPT/TATS naming): state-dict layout, strict loading, the i3d_pt400 preprocessing, features.

The layout numbers (344 tensors, 12,711,824 parameters and buffers excluding num_batches_tracked, the
registration order starting with ``logits``) were checked once against VideoGPT's
``videogpt/fvd/pytorch_i3d.py``, whose time-averaged logits this implementation reproduced bit for bit on
random weights; no official fixture of I3D outputs is stored.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cgmbench.errors import CgmbenchError
from cgmbench.extractors.i3d import I3DPt400, InceptionI3d, load_i3d_state_dict, preprocess_i3d_pt400


@pytest.fixture(scope="module")
def random_state():
    net = InceptionI3d(400)
    g = torch.Generator().manual_seed(3)
    state = {}
    for k, v in net.state_dict().items():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            state[k] = torch.rand(v.shape, generator=g) + 0.5
        elif v.ndim >= 2:
            state[k] = torch.randn(v.shape, generator=g) / v[0].numel() ** 0.5
        else:
            state[k] = torch.randn(v.shape, generator=g) * 0.1 + (1.0 if k.endswith("weight") else 0.0)
    return state


def test_state_dict_layout_is_the_ports():
    sd = InceptionI3d(400).state_dict()
    assert len(sd) == 344
    assert sum(v.numel() for k, v in sd.items() if not k.endswith("num_batches_tracked")) == 12_711_824
    keys = list(sd)
    assert keys[:2] == ["logits.conv3d.weight", "logits.conv3d.bias"]
    assert keys[2] == "Conv3d_1a_7x7.conv3d.weight"
    shapes = {
        "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7),
        "Conv3d_2c_3x3.bn.running_var": (192,),
        "Mixed_3b.b1b.conv3d.weight": (128, 96, 3, 3, 3),
        "Mixed_4f.b3b.conv3d.weight": (128, 528, 1, 1, 1),
        "Mixed_5c.b0.bn.weight": (384,),
        "logits.conv3d.weight": (400, 1024, 1, 1, 1),
        "logits.conv3d.bias": (400,),
    }
    for k, shape in shapes.items():
        assert tuple(sd[k].shape) == shape, k
    assert "logits.bn.weight" not in sd and "Conv3d_1a_7x7.conv3d.bias" not in sd


def test_strict_load_from_file_and_errors(random_state, tmp_path):
    path = tmp_path / "i3d_pretrained_400.pt"
    torch.save(random_state, path)
    net = load_i3d_state_dict(InceptionI3d(400), path)
    torch.testing.assert_close(net.state_dict()["Mixed_4b.b2b.bn.running_mean"],
                               random_state["Mixed_4b.b2b.bn.running_mean"], atol=0, rtol=0)
    assert not net.training

    missing = {k: v for k, v in random_state.items() if k != "Mixed_5b.b1a.bn.running_var"}
    with pytest.raises(CgmbenchError, match=r"is missing key 'Mixed_5b\.b1a\.bn\.running_var'"):
        load_i3d_state_dict(InceptionI3d(400), missing, source="i3d.pt")
    with pytest.raises(CgmbenchError, match=r"i3d\.pt has unexpected key 'module\.extra'"):
        load_i3d_state_dict(InceptionI3d(400), {**random_state, "module.extra": torch.zeros(1)}, source="i3d.pt")
    with pytest.raises(CgmbenchError, match=r"'logits\.conv3d\.weight' has shape \(101, 1024, 1, 1, 1\)"):
        load_i3d_state_dict(InceptionI3d(400), {**random_state, "logits.conv3d.weight": torch.zeros(101, 1024, 1, 1, 1)})
    bad = tmp_path / "pickled.pt"
    torch.save({"net": object.__new__(_Opaque)}, bad)
    with pytest.raises(CgmbenchError, match="cannot read I3D weights"):
        load_i3d_state_dict(InceptionI3d(400), bad)


class _Opaque:
    pass


def test_preprocessing_is_tats():
    g = torch.Generator().manual_seed(0)
    videos = torch.randint(0, 256, (2, 3, 3, 20, 30), dtype=torch.uint8, generator=g)
    x = preprocess_i3d_pt400(videos)
    assert x.shape == (2, 3, 3, 224, 224) and x.dtype == torch.float32
    frame = F.interpolate(videos[1, 2][None].float(), size=(224, 224), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(x[1, :, 2], 2 * frame / 255 - 1, atol=1e-6, rtol=0)
    assert x.min() >= -1 and x.max() <= 1
    const = preprocess_i3d_pt400(torch.full((1, 2, 3, 8, 8), 51, dtype=torch.uint8))
    torch.testing.assert_close(const, torch.full_like(const, 2 * 51 / 255 - 1))


def test_features_are_time_averaged_logits(random_state):
    ext = I3DPt400(weights=random_state)
    videos = torch.randint(0, 256, (1, 9, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    feats = ext(videos)
    assert feats.shape == (1, 400) and feats.dtype == torch.float64
    with torch.no_grad():
        pooled = ext.net.extract_features(preprocess_i3d_pt400(videos))  # [1, 1024, T', 1, 1]
        assert pooled.shape == (1, 1024, 1, 1, 1)  # ceil(9/8) - 2 + 1 = 1 time step at 9 frames
        logits = ext.net.logits(pooled)[:, :, :, 0, 0].mean(dim=2)
    torch.testing.assert_close(feats, logits.double(), atol=0, rtol=0)
    ext.train()
    assert not ext.net.training  # BatchNorm never switches to batch statistics
    with pytest.raises(CgmbenchError, match="needs at least 9"):
        ext(videos[:, :8])
