"""DAMSM R-precision (cgmbench.metrics.r_precision) against an independent brute-force computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cgmbench.metrics.r_precision import dmgan_group_summary, r_precision, sample_negatives


def _bank(seed=0, n_images=12, caps_per_image=3, n_classes=4, dim=8):
    rng = np.random.default_rng(seed)
    text = rng.standard_normal((n_images * caps_per_image, dim)).astype(np.float32)
    image_class = np.arange(n_images) % n_classes
    class_ids = np.repeat(image_class, caps_per_image)
    query = np.arange(n_images) * caps_per_image + rng.integers(0, caps_per_image, n_images)
    # images correlated with their true caption, so hits and misses both occur
    images = (text[query] + 1.5 * rng.standard_normal((n_images, dim))).astype(np.float32)
    return images, text, query, class_ids


def _brute_force_hit(image, true_text, negative_texts):
    """DM-GAN's rule with plain Python floats: cosine with clamp 1e-8, hit iff index 0 is the first maximum."""
    def cos(a, b):
        dot = sum(float(x) * float(y) for x, y in zip(a, b))
        na = math.sqrt(sum(float(x) ** 2 for x in a))
        nb = math.sqrt(sum(float(y) ** 2 for y in b))
        return dot / max(na * nb, 1e-8)

    scores = [cos(image, true_text)] + [cos(image, t) for t in negative_texts]
    return scores.index(max(scores)) == 0


@pytest.mark.parametrize("protocol", ["dmgan", "uniform"])
def test_hits_match_brute_force(protocol):
    images, text, query, class_ids = _bank()
    res = r_precision(images, text, query, class_ids, protocol=protocol, num_negatives=7, seed=3, chunk_size=5)
    assert res.hits.shape == (12,) and res.negatives.shape == (12, 7) and res.protocol == protocol
    expected = [_brute_force_hit(images[i], text[query[i]], text[res.negatives[i]]) for i in range(12)]
    assert res.hits.tolist() == expected
    assert 0 < res.value < 1  # the case is not degenerate
    assert res.value == pytest.approx(np.mean(expected))


def test_negative_policies():
    _, text, query, class_ids = _bank(n_images=40, caps_per_image=5, n_classes=5)
    m = len(text)
    neg = sample_negatives(query, m, class_ids, protocol="dmgan", num_negatives=99, seed=0).numpy()
    assert neg.shape == (40, 99) and neg.min() >= 0 and neg.max() < m
    assert (class_ids[neg] != class_ids[query][:, None]).all()  # never the true caption's class

    neg_u = sample_negatives(query, m, protocol="uniform", num_negatives=99, seed=0).numpy()
    assert (neg_u != query[:, None]).all()
    assert (class_ids[neg_u] == class_ids[query][:, None]).any()  # same-class captions are allowed

    # uniform over the allowed set: counts over many draws for one query
    q = np.array([7])
    draws = sample_negatives(q, m, class_ids, protocol="dmgan", num_negatives=40000, seed=1).numpy()[0]
    allowed = np.flatnonzero(class_ids != class_ids[7])
    counts = np.bincount(draws, minlength=m)
    assert set(np.flatnonzero(counts)) == set(allowed.tolist())
    expected = 40000 / len(allowed)
    assert np.abs(counts[allowed] - expected).max() < 5 * math.sqrt(expected)
    draws = sample_negatives(q, m, protocol="uniform", num_negatives=40000, seed=1).numpy()[0]
    counts = np.bincount(draws, minlength=m)
    assert counts[7] == 0 and np.abs(np.delete(counts, 7) - 40000 / (m - 1)).max() < 5 * math.sqrt(40000 / (m - 1))


def test_seeding():
    images, text, query, class_ids = _bank()
    a = r_precision(images, text, query, class_ids, seed=5)
    b = r_precision(images, text, query, class_ids, seed=torch.Generator().manual_seed(5))
    c = r_precision(images, text, query, class_ids, seed=6)
    np.testing.assert_array_equal(a.negatives, b.negatives)
    np.testing.assert_array_equal(a.hits, b.hits)
    assert (a.negatives != c.negatives).any()
    assert a.num_negatives == 99


def test_closed_form_cases():
    images, text, query, class_ids = _bank()
    # the image is its true caption's embedding (scaled): every distinct negative scores lower
    assert r_precision(3 * text[query], text, query, class_ids).value == 1.0
    # the image is orthogonal to its true caption and aligned with a negative of another class
    t = np.eye(2, dtype=np.float32)
    res = r_precision(t[[1]], t, [0], [0, 1], protocol="dmgan", num_negatives=5)
    assert res.hits.tolist() == [False]
    # exact ties count as hits (DM-GAN's argmax picks the first maximum)
    same = np.ones((6, 4), np.float32)
    assert r_precision(same[:2], same, [0, 3], [0, 0, 0, 1, 1, 1]).hits.tolist() == [True, True]


def test_bad_input():
    images, text, query, class_ids = _bank()
    with pytest.raises(ValueError, match="pass class_ids"):
        r_precision(images, text, query, protocol="dmgan")
    with pytest.raises(ValueError, match="unknown R-precision protocol"):
        r_precision(images, text, query, class_ids, protocol="clip")
    with pytest.raises(ValueError, match="at least two classes"):
        r_precision(images, text, query, np.zeros(len(text)))
    with pytest.raises(ValueError, match="12 images but 11"):
        r_precision(images, text, query[:11], class_ids)
    with pytest.raises(ValueError, match=r"must lie in \[0, 36\)"):
        r_precision(images, text, query + 100, class_ids)


def test_dmgan_group_summary():
    hits = np.zeros(30000)
    hits[:15000] = 1
    mean, std, groups = dmgan_group_summary(hits, seed=0)
    assert groups.shape == (10,)
    # each group mean is over 2,999 entries (DM-GAN's slice drops the last of each group)
    assert np.all(np.isclose(groups * 2999, np.round(groups * 2999)))
    assert mean == pytest.approx(groups.mean()) and std == pytest.approx(groups.std())
    assert abs(mean - 0.5) < 0.01
    ones = dmgan_group_summary(np.ones(30005))
    assert ones[:2] == (1.0, 0.0)
    assert dmgan_group_summary(hits, seed=0)[0] == mean
    with pytest.raises(ValueError, match="at least 10 x 3000"):
        dmgan_group_summary(np.ones(100))
