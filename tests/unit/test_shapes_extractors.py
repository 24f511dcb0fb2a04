"""The shipped shapes-world extractors make offline FID and CLIP score meaningful.

* FID[shapes-cnn] of the ``oracle`` (held-out real scenes) is far below that of ``noise``, and it
  rises monotonically with the strength of a blur and of additive noise applied to the oracle's images.
* ``shapes-clip`` picks the right caption among 100 for >= 90 % of held-out images and scores
  matching captions above shuffled ones.
* The shipped files are small, their JSON records the training command and the sha256, and the
  training command is deterministic.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from cgmbench.extractors import get_extractor
from cgmbench.extractors import shapes as S
from cgmbench.metrics import clip_score, feature_statistics, frechet_distance
from cgmbench.seeding import sample_seeds
from cgmbench.sources.base import open_source
from cgmbench.spec.task import load_task
from cgmbench.weights import sha256_file, shipped_dir

N_REF, N_GEN = 1000, 500


@pytest.fixture(scope="module")
def cnn():
    return get_extractor("shapes-cnn")


@pytest.fixture(scope="module")
def clip():
    return get_extractor("shapes-clip")


def _features(ext, images: np.ndarray) -> np.ndarray:
    return ext(torch.from_numpy(np.ascontiguousarray(images)), batch_size=500).numpy()


def _uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("task_name", ["shapes-cc", "shapes-t2i"])
@pytest.mark.slow
def test_fid_orders_oracle_corruptions_and_noise(cnn, task_name):
    task = load_task(task_name)
    mu_r, sigma_r = feature_statistics(_features(cnn, open_source(task, "reference").references(range(N_REF))))
    indices = list(range(N_GEN))
    oracle = open_source(task, "conditions").oracle(indices, sample_seeds(0, task_name, indices))

    def fid(images):
        return frechet_distance(mu_r, sigma_r, *feature_statistics(_features(cnn, images)))

    real = fid(oracle)
    noise = fid(np.random.default_rng(0).integers(0, 256, oracle.shape, dtype=np.uint8))
    assert real < 60 and noise > 100 * real, (real, noise)
    x = oracle.astype(np.float64)
    blurred = [fid(_uint8(ndimage.gaussian_filter(x, (0, 0, s, s)))) for s in (0.5, 1.0, 1.5, 2.0)]
    rng = np.random.default_rng(1)
    noisy = [fid(_uint8(x + rng.normal(0, s, x.shape))) for s in (8, 16, 32, 64)]
    for levels in (blurred, noisy):
        assert real < levels[0] and all(a < b for a, b in zip(levels, levels[1:])), (real, levels)
        assert levels[-1] < noise


def _heldout_pairs(n: int, resolution: int = 32):
    """Held-out shapes-t2i images and captions (the extractors never saw the heldout split)."""
    task = load_task("shapes-t2i")
    if resolution != task.resolution:
        import dataclasses

        task = dataclasses.replace(task, resolution=resolution)
    source = open_source(task, "conditions", split="heldout")
    from cgmbench.worlds import shapes as W

    items = [source.item(i) for i in range(n)]
    return np.stack([W.render(it["scene"], "flat") for it in items]), [it["text"] for it in items]


@pytest.mark.parametrize("resolution", [32, 64])
def test_shapes_clip_retrieves_the_caption_among_100(clip, resolution):
    images, captions = _heldout_pairs(500, resolution)
    img = torch.nn.functional.normalize(clip(torch.from_numpy(images)), dim=-1)
    txt = torch.nn.functional.normalize(clip.encode_text(captions), dim=-1)
    hits = 0
    for start in range(0, 500, 100):
        best = (img[start:start + 100] @ txt[start:start + 100].T).argmax(1)
        hits += sum(captions[start + int(b)] == captions[start + i] for i, b in enumerate(best))
    assert hits / 500 >= 0.9, hits / 500


def test_shapes_clip_scores_matching_captions_above_shuffled(clip):
    images, captions = _heldout_pairs(300)
    emb = clip(torch.from_numpy(images)).numpy()
    matched = clip_score(emb, clip.encode_text(captions).numpy())
    shuffled_captions = [captions[i] for i in np.random.default_rng(0).permutation(len(captions))]
    shuffled = clip_score(emb, clip.encode_text(shuffled_captions).numpy())
    different = np.array([a != b for a, b in zip(captions, shuffled_captions)])
    assert matched.mean() > shuffled.mean() + 20
    assert np.mean(matched[different] > shuffled[different]) >= 0.95


def test_extractors_accept_every_shapes_image_kind(cnn, clip):
    for task_name in ("shapes-paired", "shapes-unpaired", "shapes-edit"):
        task = load_task(task_name)
        refs = open_source(task, "reference").references(range(4))
        assert _features(cnn, refs).shape == (4, 256)
    video = open_source(load_task("shapes-t2v"), "reference").references(range(2))  # [2, T, 3, 32, 32]
    frames = video.reshape(-1, *video.shape[2:])
    assert _features(cnn, frames).shape == (len(frames), 256) and _features(clip, frames).shape[1] == 128
    big = np.zeros((2, 3, 64, 64), np.uint8)
    assert np.isfinite(_features(cnn, big)).all()
    record = cnn.describe()
    assert record["name"] == "shapes-cnn" and record["is_official_weights"] is True
    assert record["weights_sha256"] == sha256_file(shipped_dir() / S.CNN_FILE)
    assert record["protocol"]["name"] == "clean" and record["tf32"] is False
    assert cnn.logits(torch.from_numpy(big)).shape == (2, 18)


@pytest.mark.parametrize("stem", ["shapes-cnn", "shapes-clip"])
def test_shipped_weights_are_small_and_documented(stem):
    weights = shipped_dir() / f"{stem}.safetensors"
    info = json.loads((shipped_dir() / f"{stem}.json").read_text())
    assert weights.stat().st_size <= 3 * 1024 * 1024
    assert info["sha256"] == sha256_file(weights) and info["file"] == weights.name
    assert info["command"].startswith("python -m cgmbench.extractors.shapes train --which")
    assert info["config"]["steps"] == info["steps"] and info["train_seconds"] < 20 * 60


@pytest.mark.slow
def test_training_is_deterministic_and_user_weights_are_non_standard(tmp_path):
    torch.set_num_threads(1)
    small = {"images": 48, "steps": 2, "batch_size": 8}
    for run in ("a", "b"):
        S.train_cnn(tmp_path / run, small, log=lambda m: None)
    a, b = (json.loads((tmp_path / r / "shapes-cnn.json").read_text()) for r in ("a", "b"))
    assert a["sha256"] == b["sha256"] and a["config"]["steps"] == 2
    ext = get_extractor("shapes-cnn", weights_path=tmp_path / "a" / S.CNN_FILE)
    assert ext.is_official_weights is False and ext.weights_sha256 == a["sha256"]
