"""DINO structure distance on an injected key extractor: PIE-Bench's procedure re-computed image by image with
torchvision's Resize/Normalize (its 0..255 input, no antialias), the preprocessing of both protocols, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision import transforms

from cgmbench.errors import CgmbenchError
from cgmbench.metrics.structure import keys_self_similarity, preprocess, resized_shape, structure_distance

HEADS, HEAD_DIM, PATCH = 2, 4, 8


class TinyKeys:
    """ViT-style keys: 8x8 patches plus a CLS token, projected to [N, heads, T, head_dim]; records its inputs."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(3)
        self.proj = torch.randn(3 * PATCH * PATCH, HEADS * HEAD_DIM, generator=g) / 14
        self.cls = torch.randn(HEADS * HEAD_DIM, generator=g)
        self.inputs: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        patches = F.unfold(x, PATCH, stride=PATCH).transpose(1, 2)  # [N, T-1, 3*8*8]
        tokens = torch.cat([self.cls.expand(x.shape[0], 1, -1), torch.tanh(patches @ self.proj)], dim=1)
        return tokens.view(x.shape[0], -1, HEADS, HEAD_DIM).transpose(1, 2)  # [N, heads, T, head_dim]


def pie_reference(extract, src: np.ndarray, edited: np.ndarray) -> list[float]:
    """PIE-Bench: per image, 0..255 float [3, H, W] -> Resize(224, max_size=480) -> ImageNet Normalize -> keys of
    one image [heads, T, d] -> heads concatenated per token -> cosine self-similarity -> F.mse_loss."""
    tf = transforms.Compose([transforms.Resize(224, max_size=480, antialias=False),
                             transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])

    def self_sim(img):
        keys = extract(tf(torch.from_numpy(img).float()).unsqueeze(0))[0]
        h, t, d = keys.shape
        k = keys.transpose(0, 1).reshape(t, h * d)
        norm = k.norm(dim=1, keepdim=True)
        return (k @ k.T) / torch.clamp(norm @ norm.T, min=1e-8)

    return [F.mse_loss(self_sim(e), self_sim(s)).item() for s, e in zip(src, edited)]


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(11)
    base = np.kron(rng.integers(0, 256, (3, 3, 8, 8)), np.ones((1, 1, 16, 16))).astype(np.uint8)  # 128x128
    edited = base.copy()
    edited[0, :, 32:96, 32:96] = 255 - edited[0, :, 32:96, 32:96]
    edited[1] = np.roll(base[1], 24, axis=2)
    return base, edited  # pair 2 unchanged


def test_pie_compat_matches_pie_bench_procedure(pairs):
    src, edited = pairs
    got = structure_distance(src, edited, extract_keys=TinyKeys())
    want = pie_reference(TinyKeys(), src, edited)
    assert got.key == "structure_distance[dino_vitb8,pie_compat]"
    np.testing.assert_allclose(got.values, want, rtol=1e-5, atol=1e-7)
    assert got.values[2] == 0.0 and got.values[0] > 1e-4 and got.values[1] > 1e-4


def test_protocol_preprocessing(pairs):
    grey = np.full((1, 3, 512, 512), 128, np.uint8)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    pie = preprocess(grey, "pie_compat")
    unit = preprocess(grey, "unit_range")
    assert pie.shape == unit.shape == (1, 3, 224, 224) and pie.dtype == torch.float32
    np.testing.assert_allclose(pie[0, :, 0, 0], (128 - mean) / std, rtol=1e-6)  # PIE-Bench: 0..255 into Normalize
    np.testing.assert_allclose(unit[0, :, 0, 0], (128 / 255 - mean) / std, rtol=1e-6)
    x = torch.randint(0, 256, (1, 3, 300, 520), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for protocol, scale, aa in (("pie_compat", 255.0, False), ("unit_range", 1.0, True)):
        ref = transforms.Compose([transforms.Resize(224, max_size=480, antialias=aa),
                                  transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
        torch.testing.assert_close(preprocess(x, protocol)[0], ref(x[0].float() / 255 * scale), rtol=1e-5, atol=1e-5)
    assert resized_shape(512, 512) == (224, 224)
    assert resized_shape(300, 520) == (224, 388)
    assert resized_shape(1024, 256) == (480, 120)  # longer side capped at 480


def test_self_similarity_layouts_and_identity():
    keys = TinyKeys()(preprocess(np.zeros((2, 3, 64, 64), np.uint8) + 40))
    s4 = keys_self_similarity(keys)
    s3 = keys_self_similarity(keys.transpose(1, 2).reshape(2, keys.shape[2], -1))
    torch.testing.assert_close(s4, s3)
    assert s4.shape == (2, 785, 785)  # 224 px / 8 = 28, 28 * 28 patches + CLS
    assert torch.allclose(torch.diagonal(s4, dim1=1, dim2=2), torch.ones(2, 785).double())


def test_errors(pairs):
    src, edited = pairs
    with pytest.raises(CgmbenchError, match="unknown structure-distance protocol"):
        structure_distance(src, edited, extract_keys=TinyKeys(), protocol="splice")
    with pytest.raises(CgmbenchError, match="differ in shape after resizing"):
        structure_distance(src, edited[:, :, :, :64], extract_keys=TinyKeys())
    with pytest.raises(CgmbenchError, match=r"keys must be"):
        structure_distance(src, edited, extract_keys=lambda x: torch.zeros(x.shape[0], 5))
    with pytest.raises(CgmbenchError, match=r"not \[-1, 1\]"):
        structure_distance(src / 127.5 - 1, edited, extract_keys=TinyKeys())
