"""CLIP directional and image similarity on injected encoders: InstructPix2Pix's formulas re-computed with
torch's cosine_similarity, and regression tests for the two reference bugs ([-1, 1] inputs to a [0, 1] encoder;
uint8 pixels multiplied by 255 again)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cgmbench.errors import CgmbenchError
from cgmbench.metrics.clip_direction import clip_direction_similarity, clip_image_similarity, direction_similarity

D = 16


class SpyImageEncoder:
    """A fixed random projection of 4x4-pooled pixels; records every batch it is given."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.proj = torch.randn(3 * 4 * 4, D, generator=g)
        self.calls: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.clone())
        return F.adaptive_avg_pool2d(x, 4).flatten(1) @ self.proj + 0.1


def encode_text(prompts: list[str]) -> torch.Tensor:
    """A deterministic embedding per string."""
    rows = []
    for p in prompts:
        g = torch.Generator().manual_seed(sum(ord(c) * (i + 1) for i, c in enumerate(p)))
        rows.append(torch.randn(D, generator=g))
    return torch.stack(rows)


@pytest.fixture(scope="module")
def edits():
    rng = np.random.default_rng(7)
    src = rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    edited = src.copy()
    edited[:, :, 8:24, 8:24] = rng.integers(0, 256, (4, 3, 16, 16), dtype=np.uint8)
    edited[3] = src[3]  # edit 3 changed nothing
    src_prompts = ["a cat sitting on a bench", "a red car", "a house in winter", "a bowl of fruit"]
    tgt_prompts = ["a dog sitting on a bench", "a blue car", "a house in summer", "a bowl of flowers"]
    return src, edited, src_prompts, tgt_prompts


def ip2p_reference(enc, src, edited, p0, p1):
    """InstructPix2Pix ClipSimilarity.forward: normalise, then cosine of the differences (float64 here)."""
    def unit(e):
        e = e.double()
        return e / e.norm(dim=1, keepdim=True)

    i0 = unit(enc(torch.from_numpy(src).float() / 255))
    i1 = unit(enc(torch.from_numpy(edited).float() / 255))
    t0, t1 = unit(encode_text(p0)), unit(encode_text(p1))
    return F.cosine_similarity(i1 - i0, t1 - t0).numpy(), F.cosine_similarity(i0, i1).numpy()


def test_direction_and_image_similarity_match_instructpix2pix(edits):
    src, edited, p0, p1 = edits
    enc = SpyImageEncoder()
    direction = clip_direction_similarity(src, edited, p0, p1, encode_image=enc, encode_text=encode_text,
                                          backbone="ViT-L/14")
    image = clip_image_similarity(src, edited, encode_image=enc, backbone="ViT-L/14")
    want_dir, want_img = ip2p_reference(SpyImageEncoder(), src, edited, p0, p1)
    assert direction.key == "clip_direction[ViT-L/14]" and image.key == "clip_image[ViT-L/14]"
    np.testing.assert_allclose(direction.values, want_dir, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(image.values, want_img, rtol=1e-6, atol=1e-6)
    assert direction.values[3] == 0.0  # nothing edited: no image direction, similarity 0 (as F.cosine_similarity)
    assert image.values[3] == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.abs(direction.values[:3]) > 1e-3)


def test_encoder_receives_unit_range_float32_once_divided(edits):
    src, edited, p0, p1 = edits
    enc = SpyImageEncoder()
    clip_direction_similarity(src, edited, p0, p1, encode_image=enc, encode_text=encode_text, backbone="b")
    seen = enc.calls[0]
    assert seen.dtype == torch.float32 and seen.shape == (4, 3, 32, 32)
    assert torch.equal(seen, (torch.from_numpy(src).double() / 255).float())  # divided by 255 exactly once


def test_regression_instructpix2pix_minus_one_to_one_inputs_are_refused(edits):
    """InstructPix2Pix's compute_metrics.py feeds [-1, 1] tensors to ClipSimilarity.encode_image ([0, 1])."""
    src, edited, p0, p1 = edits
    enc = SpyImageEncoder()
    as_pm1 = lambda a: torch.from_numpy(a).float() / 127.5 - 1  # noqa: E731
    with pytest.raises(CgmbenchError, match=r"\(x \+ 1\) / 2"):
        clip_direction_similarity(as_pm1(src), as_pm1(edited), p0, p1, encode_image=enc, encode_text=encode_text,
                                  backbone="b")
    assert enc.calls == []  # refused before any embedding
    # mapped back as the guard says, the result equals the uint8 path
    fixed = clip_image_similarity((as_pm1(src) + 1) / 2, (as_pm1(edited) + 1) / 2, encode_image=SpyImageEncoder(),
                                  backbone="b")
    plain = clip_image_similarity(src, edited, encode_image=SpyImageEncoder(), backbone="b")
    np.testing.assert_allclose(fixed.values, plain.values, rtol=1e-5, atol=1e-6)


def test_regression_imagenhub_uint8_times_255_is_refused(edits):
    """ImagenHub's MetricCLIPScore does (np.array(pil) * 255).astype('uint8') on a uint8 array."""
    src, edited, _, _ = edits
    v = np.arange(256, dtype=np.uint8)
    assert np.array_equal((v * 255).astype(np.uint8), ((256 - v.astype(np.int64)) % 256).astype(np.uint8))  # the bug
    enc = SpyImageEncoder()
    with pytest.raises(CgmbenchError, match="above 1"):
        clip_image_similarity(src.astype(np.float32), edited, encode_image=enc, backbone="b")
    with pytest.raises(CgmbenchError, match="never multiply uint8 pixels by 255 again"):
        clip_image_similarity(src.astype(np.float32) * 255, edited, encode_image=enc, backbone="b")
    with pytest.raises(CgmbenchError, match="int64"):
        clip_image_similarity(src.astype(np.int64) * 255, edited, encode_image=enc, backbone="b")
    assert enc.calls == []


def test_bad_prompts_and_embeddings(edits):
    src, edited, p0, p1 = edits
    enc = SpyImageEncoder()
    with pytest.raises(CgmbenchError, match="embed identically"):
        clip_direction_similarity(src, edited, p0, p0, encode_image=enc, encode_text=encode_text, backbone="b")
    with pytest.raises(CgmbenchError, match="list of 4 strings"):
        clip_direction_similarity(src, edited, p0[:3], p1, encode_image=enc, encode_text=encode_text, backbone="b")
    with pytest.raises(CgmbenchError, match=r"embeddings \[4, D\]"):
        clip_image_similarity(src, edited, encode_image=lambda x: torch.zeros(4), backbone="b")
    with pytest.raises(CgmbenchError, match="all zeros"):
        clip_image_similarity(src, edited, encode_image=lambda x: torch.zeros(4, D), backbone="b")
    e = np.eye(3)
    np.testing.assert_allclose(direction_similarity(e, e[[1, 2, 0]], e, e[[1, 2, 0]]), 1.0)
    np.testing.assert_allclose(direction_similarity(e, e[[1, 2, 0]], e[[1, 2, 0]], e), -1.0)
