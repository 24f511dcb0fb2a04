"""The catalog's ``r_precision`` samples metric (issue 13) on the shapes world: the oracle ranks its captions first
far more often than noise does, and the value equals a direct computation from the shapes-clip features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cgmbench
from cgmbench.errors import CgmbenchError
from cgmbench.extractors.registry import get_extractor
from cgmbench.run.samples import SampleStore
from cgmbench.spec.task import load_task


def _task(tmp_path, extra=""):
    spec = (
        'name = "shapes-t2i-rp"\nkind = "text-to-image"\ndescription = "r-precision test"\nresolution = 32\n'
        'num_samples = 48\n[conditions]\nsource = "shapes"\nsize = 48\n[reference]\nsource = "shapes"\nsize = 48\n'
        '[metrics]\ncompute = ["r_precision"]\nextractor = "shapes-cnn"\n' + extra
        + '[data]\nlicense = "CC0-1.0"\nattribution = "cgmbench"\nobtain = "nothing"\n')
    path = tmp_path / "shapes-t2i-rp.toml"
    path.write_text(spec)
    return str(path)


def test_r_precision_oracle_beats_noise_and_matches_a_direct_computation(tmp_path):
    task = _task(tmp_path, '[metrics.r_precision]\nprotocol = "uniform"\nnum_negatives = 20\n')
    rec = cgmbench.run(task, "oracle", num_samples=48, out=str(tmp_path / "oracle"))
    noise = cgmbench.run(task, "noise", num_samples=48, out=str(tmp_path / "noise"))
    rp, rp_noise = rec["metrics"]["r_precision"], noise["metrics"]["r_precision"]
    assert rp["protocol"] == "uniform" and rp["num_negatives"] == 20 and "stands in" in rp["note"]
    assert rp["ci95"][0] <= rp["value"] <= rp["ci95"][1]
    assert rp["value"] > 60.0 and rp_noise["value"] < 30.0 and rp["value"] > rp_noise["value"] + 30

    # independently: features, the same seeded negatives (sample_negatives), cosine ranks by hand
    from cgmbench.metrics.r_precision import sample_negatives

    ex = get_extractor("shapes-clip")
    store = SampleStore.open(tmp_path / "oracle" / "samples")
    images = np.concatenate([arr for _, arr in store.iter_batches(48)])
    spec = load_task(task)
    from cgmbench.sources.base import open_source

    src = open_source(spec, "conditions")
    texts = src.conditions(list(range(48))).texts
    img = ex(torch.from_numpy(images)).double().numpy()
    txt = ex.encode_text(texts).double().numpy()
    neg = sample_negatives(torch.arange(48), 48, None, protocol="uniform", num_negatives=20, seed=rec["seed"]).numpy()
    hits = 0
    for i in range(48):
        cands = [i] + list(neg[i])
        cos = [img[i] @ txt[j] / max(np.linalg.norm(img[i]) * np.linalg.norm(txt[j]), 1e-8) for j in cands]
        hits += int(np.argmax(cos) == 0)
    assert rp["value"] == pytest.approx(100.0 * hits / 48, abs=1e-9)


def test_r_precision_dmgan_needs_classes(tmp_path):
    task = _task(tmp_path, '[metrics.r_precision]\nprotocol = "dmgan"\n')
    rec = cgmbench.run(task, "noise", num_samples=8, out=str(tmp_path / "n"))
    assert "r_precision" not in rec["metrics"]
    assert any(p.startswith("r_precision:") and "other classes" in p for p in rec["metrics_pending"])
