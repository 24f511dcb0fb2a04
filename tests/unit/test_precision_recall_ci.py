"""Bootstrap intervals of k-NN precision and recall: functional core and harness.

* the per-sample indicators equal torch-fidelity's own memberships (its ``calc_cdist_full`` +
  ``kthvalue`` radii), and their means are the unchanged point values of :func:`precision_recall`;
* the percentile bootstrap of the indicators (manifolds fixed): contains the value, shrinks like
  1/sqrt(N), matches the binomial standard error, is deterministic for a seed;
* grouped resampling (prompts) is the harness's convention: it equals ``scoring._bootstrap_mean``;
* the harness records ``ci95`` / ``precision_ci95`` / ``recall_ci95`` and the method, by sample for
  class-conditional tasks and by prompt for text conditions.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cgmbench.metrics import (
    PrecisionRecallIndicators,
    bootstrap_ci,
    bootstrap_precision_recall,
    precision_recall,
    precision_recall_indicators,
)
from cgmbench.scoring.harness import N_BOOT, _bootstrap_mean, precision_groups


def _features(n_real: int, n_fake: int, d: int = 16, seed: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((n_real, d)).astype(np.float32)
    fake = (rng.standard_normal((n_fake, d)) * 1.1 + 0.2).astype(np.float32)
    return real, fake


# ---------------------------------------------------------------------------------------------
# Per-sample indicators: same memberships and point values as the references
# ---------------------------------------------------------------------------------------------


def test_indicators_equal_torch_fidelity_memberships_and_keep_the_point_values():
    from torch_fidelity.metric_prc import calc_cdist_full, calculate_precision_recall_full

    real, fake = _features(600, 500)
    ind = precision_recall_indicators(real, fake, k=3)
    assert ind.fake_in_real.dtype == bool and ind.fake_in_real.shape == (500,)
    assert ind.real_in_fake.dtype == bool and ind.real_in_fake.shape == (600,)
    # torch-fidelity's memberships, element by element (features_1 = generated, features_2 = real)
    f, r = torch.from_numpy(fake), torch.from_numpy(real)
    radius_fake = calc_cdist_full(f, f).kthvalue(4).values
    radius_real = calc_cdist_full(r, r).kthvalue(4).values
    d_real_fake = calc_cdist_full(r, f)
    np.testing.assert_array_equal(ind.real_in_fake, (d_real_fake <= radius_fake).any(dim=1).numpy())
    np.testing.assert_array_equal(ind.fake_in_real, (d_real_fake.T <= radius_real).any(dim=1).numpy())
    # the point values are the existing ones, bit for bit, and still torch-fidelity's
    p, r_ = precision_recall(real, fake, k=3)
    assert (ind.precision, ind.recall) == (p, r_)
    ref_p, ref_r = calculate_precision_recall_full(f, torch.from_numpy(real), 3, 10000)
    assert p == pytest.approx(ref_p, abs=1e-6) and r_ == pytest.approx(ref_r, abs=1e-6)
    assert 0.05 < p < 0.95 and 0.05 < r_ < 0.95
    # every distance arithmetic and block size: precision_recall is the mean of the indicators
    for distance in ("float16", "float64"):
        ind_d = precision_recall_indicators(real, fake, distance=distance, batch_size=128)
        assert precision_recall(real, fake, distance=distance) == (ind_d.precision, ind_d.recall)
    assert precision_recall(real, fake, batch_size=128) == (p, r_)


# ---------------------------------------------------------------------------------------------
# Bootstrap intervals
# ---------------------------------------------------------------------------------------------


def test_intervals_contain_the_value_match_the_binomial_error_and_are_seeded():
    real, fake = _features(1200, 1000)
    ind = precision_recall_indicators(real, fake)
    ci_p, ci_r = bootstrap_precision_recall(ind, n_boot=2000, seed=5)
    for ci, value, n in ((ci_p, ind.precision, 1000), (ci_r, ind.recall, 1200)):
        assert ci.estimate == value
        assert ci.low < value < ci.high
        # indicators resampled with manifolds fixed: the replicates are Binomial(n, value) / n
        assert ci.std == pytest.approx(np.sqrt(value * (1 - value) / n), rel=0.1)
        assert ci.high - ci.low == pytest.approx(2 * 1.96 * np.sqrt(value * (1 - value) / n), rel=0.15)
        assert ci.n_boot == 2000 and len(ci.replicates) == 2000 and ci.alpha == 0.05
    # deterministic for a seed, different for another
    again_p, again_r = bootstrap_precision_recall(ind, n_boot=2000, seed=5)
    np.testing.assert_array_equal(again_p.replicates, ci_p.replicates)
    np.testing.assert_array_equal(again_r.replicates, ci_r.replicates)
    other_p, _ = bootstrap_precision_recall(ind, n_boot=2000, seed=6)
    assert not np.array_equal(other_p.replicates, ci_p.replicates)
    # the same draws as the harness's per-sample bootstrap (_bootstrap_mean, N_BOOT replicates)
    h_p, h_r = bootstrap_precision_recall(ind, n_boot=N_BOOT, seed=0)
    assert [h_p.low, h_p.high] == _bootstrap_mean(ind.fake_in_real.astype(np.float64), seed=0)
    assert [h_r.low, h_r.high] == _bootstrap_mean(ind.real_in_fake.astype(np.float64), seed=0)


def test_intervals_shrink_with_n():
    widths = {}
    for n in (250, 2000):
        real, fake = _features(n, n, seed=3)
        ci_p, ci_r = bootstrap_precision_recall(precision_recall_indicators(real, fake), n_boot=1000, seed=0)
        widths[n] = (ci_p.high - ci_p.low, ci_r.high - ci_r.low)
    for small, large in zip(widths[250], widths[2000]):
        assert 0 < large < 0.6 * small  # ~1/sqrt(8) = 0.35 for a mean of N indicators


def test_grouped_resampling_is_the_harness_prompt_convention():
    rng = np.random.default_rng(0)
    prompts = np.repeat(np.arange(40), 5)
    # the samples of a prompt agree (all inside or all outside): resampling prompts must see 40 units, not 200
    inside = np.repeat(rng.random(40) < 0.6, 5)
    ind = PrecisionRecallIndicators(fake_in_real=inside, real_in_fake=rng.random(300) < 0.5, k=3)
    grouped, _ = bootstrap_precision_recall(ind, n_boot=N_BOOT, seed=0, groups_fake=prompts)
    flat, _ = bootstrap_precision_recall(ind, n_boot=N_BOOT, seed=0)
    assert grouped.estimate == flat.estimate == inside.mean()
    assert grouped.high - grouped.low > 1.8 * (flat.high - flat.low)  # sqrt(5) = 2.24 for perfectly tied prompts
    # exactly the harness's grouped bootstrap (the clip_score convention)
    assert [grouped.low, grouped.high] == _bootstrap_mean(inside.astype(np.float64), prompts, seed=0)
    # one group per item equals the plain bootstrap
    single = bootstrap_ci(inside, n_boot=200, seed=1, groups=np.arange(200))
    np.testing.assert_allclose(single.replicates, bootstrap_ci(inside, n_boot=200, seed=1).replicates, rtol=1e-12)


def test_bad_input_is_refused_with_clear_errors():
    real, fake = _features(20, 20)
    ind = precision_recall_indicators(real, fake)
    with pytest.raises(ValueError, match="groups must hold one label per value"):
        bootstrap_precision_recall(ind, groups_fake=np.arange(5))
    with pytest.raises(ValueError, match="indicators must be PrecisionRecallIndicators"):
        bootstrap_precision_recall((0.5, 0.5))
    with pytest.raises(ValueError, match="per-item values only"):
        bootstrap_ci(lambda idx: 0.0, n_items=3, groups=[0, 1, 2])
    with pytest.raises(ValueError, match="n_boot must be >= 2"):
        bootstrap_precision_recall(ind, n_boot=1)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        precision_recall_indicators(real, fake, batch_size=0)
    with pytest.raises(ValueError, match="at least 4 rows"):
        precision_recall_indicators(real[:3], fake)


# ---------------------------------------------------------------------------------------------
# The harness
# ---------------------------------------------------------------------------------------------


def _spec(tmp_path, kind: str, conditions: int) -> str:
    path = tmp_path / f"pr-{kind}.toml"
    path.write_text(
        f'name = "pr-{kind}"\nkind = "{kind}"\ndescription = "precision/recall interval test"\n'
        f'resolution = 32\nnum_samples = 48\n\n[conditions]\nsource = "shapes"\nsize = {conditions}\n\n'
        f'[reference]\nsource = "shapes"\nsize = 300\n\n'
        f'[metrics]\ncompute = ["precision_recall"]\nprotocol = "clean"\nextractor = "shapes-cnn"\n\n'
        f'[data]\nlicense = "CC0-1.0"\nattribution = "test"\nobtain = "nothing"\n'
    )
    return str(path)


@pytest.mark.parametrize("kind, conditions, unit", [("class-conditional", 1000, "samples"),
                                                    ("text-to-image", 8, "prompts")])
def test_harness_records_precision_and_recall_intervals(tmp_path, kind, conditions, unit):
    from cgmbench.run.runner import RunConfig, run
    from cgmbench.run.samples import SampleStore
    from cgmbench.scoring.harness import extract_samples, load_extractor
    from cgmbench.sources.base import open_source
    from cgmbench.scoring.reference_stats import reference_stats
    from cgmbench.spec.task import load_task

    spec = _spec(tmp_path, kind, conditions)
    out = tmp_path / "run"
    rec = run(RunConfig(task=spec, model="oracle", num_samples=48, out=str(out), progress=False), log=lambda m: None)
    entry = json.loads((out / "run.json").read_text())["metrics"]["precision_recall"]
    assert entry == json.loads(json.dumps(rec["metrics"]["precision_recall"]))
    assert entry["value"] == entry["precision"] and entry["ci95"] == entry["precision_ci95"]
    assert entry["precision_ci95"][0] <= entry["precision"] <= entry["precision_ci95"][1]
    assert entry["recall_ci95"][0] <= entry["recall"] <= entry["recall_ci95"][1]
    assert entry["bootstrap"]["unit"] == unit and entry["bootstrap"]["n_boot"] == N_BOOT
    assert f"precision over {unit}" in entry["method"] and "manifolds fixed" in entry["method"]

    # recompute by hand: the same features, indicators and (grouped) bootstrap
    task = load_task(spec)
    extractor = load_extractor("shapes-cnn", "clean")
    sample = extract_samples(extractor, SampleStore.open(out / "samples"), 48, 256)
    ref = reference_stats(task, extractor, "clean", batch_size=256, log=lambda m: None)
    ind = precision_recall_indicators(ref.features.astype(np.float64), sample.features.astype(np.float64))
    assert (entry["precision"], entry["recall"]) == (ind.precision, ind.recall)
    source = open_source(task, "conditions")
    groups, got_unit = precision_groups(task, source, 48, len(sample.features))
    assert got_unit == unit
    if unit == "prompts":
        np.testing.assert_array_equal(groups, np.arange(48) % 8)
    else:
        assert groups is None
    low, high = _bootstrap_mean(ind.fake_in_real.astype(np.float64), groups, seed=0)
    assert entry["precision_ci95"] == [min(low, ind.precision), max(high, ind.precision)]
    low, high = _bootstrap_mean(ind.real_in_fake.astype(np.float64), seed=0)
    assert entry["recall_ci95"] == [min(low, ind.recall), max(high, ind.recall)]


def test_video_frames_of_a_sample_move_together():
    from cgmbench.spec.task import load_task

    task = load_task("shapes-cc")
    groups, unit = precision_groups(task, None, 4, 12)  # 4 samples x 3 frames, class conditions
    assert unit == "samples"
    np.testing.assert_array_equal(groups, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])


# ---------------------------------------------------------------------------------------------
# benchmarks/bench_memory.py at toy size
# ---------------------------------------------------------------------------------------------


def test_memory_benchmark_methods_agree_and_only_the_peer_grows_with_n():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import bench_memory as bench

    held = {}
    for n in (100, 1000):
        s_bytes, (s_mu, s_sigma) = bench.run_streaming(n, 32, 25)
        p_bytes, (p_mu, p_sigma) = bench.run_store(n, 32, 25)
        rows = np.concatenate(list(bench._chunks(n, 32, 25)))
        np.testing.assert_allclose(s_mu, rows.mean(axis=0), rtol=0, atol=1e-12)
        np.testing.assert_allclose(s_sigma, np.cov(rows, rowvar=False), rtol=0, atol=1e-12)
        np.testing.assert_allclose(p_sigma, np.cov(rows, rowvar=False), rtol=0, atol=0)
        held[n] = (s_bytes, p_bytes)
    assert held[100][0] == held[1000][0] == (32 * 32 + 2 * 32) * 8  # the O(d^2) state
    assert held[100][1] == 100 * 32 * 8 and held[1000][1] == 1000 * 32 * 8  # every row kept
