"""The cycle-reconstruction error of unpaired translation and LPIPS (v0.1, AlexNet) in the metric harness."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import cgmbench.weights as W
from baselines.translation.checkpoints import REVERSE_PREFIX
from baselines.translation.generator import CycleGANGenerator
from baselines.translation.networks import ResnetGenerator, build_generator, init_weights
from cgmbench.errors import CgmbenchError
from cgmbench.generator import to_uint8
from cgmbench.extractors.lpips import ALEXNET_WEIGHTS, LIN_WEIGHTS, LPIPS, load_lpips, torchmetrics_lin_copy
from cgmbench.run.samples import SampleStore
from cgmbench.scoring.harness import compute_metrics, cycle_error_entry
from cgmbench.sources.base import open_source
from cgmbench.spec.task import load_task

REPO = Path(__file__).resolve().parents[2]
TINY_ARCH = {"netG": "resnet", "n_blocks": 1, "ngf": 4, "norm": "instance", "use_dropout": False}


def spec_with(tmp_path: Path, task_name: str, compute: list[str], rename: str | None = None) -> str:
    """The shipped spec of ``task_name`` computing only ``compute`` (a .toml path for --task), named ``rename``."""
    name = rename or task_name
    lines = [f"compute = {json.dumps(compute)}" if ln.startswith("compute") else
             f'name = "{name}"' if ln.startswith("name =") else ln
             for ln in (REPO / "tasks" / f"{task_name}.toml").read_text().splitlines()]
    path = tmp_path / "specs" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def random_resnet(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return init_weights(build_generator(TINY_ARCH), "normal", 0.5).eval()


def store_of(tmp_path: Path, samples: np.ndarray, shard: int) -> SampleStore:
    store = SampleStore.create(tmp_path / f"store{shard}", {"test": shard}, samples.shape[1:])
    for s in range(0, len(samples), shard):
        store.write_shard(s, samples[s:s + shard])
    return store


# ------------------------------------------------------------------------------------------
# Cycle error
# ------------------------------------------------------------------------------------------


def test_cycle_error_equals_hand_computation_and_ignores_sharding(tmp_path):
    task = load_task("shapes-unpaired")
    source = open_source(task, "conditions")
    n = 70  # more than one internal chunk of 64
    G, F = random_resnet(0), random_resnet(1)
    model = CycleGANGenerator(G, (32, 32), arch=TINY_ARCH)
    model.reverse_net = F
    conditions = source.conditions(list(range(n)))
    fake = model.generate(conditions, list(range(n)))
    with torch.no_grad():
        rec = to_uint8(F(fake.float() / 127.5 - 1.0))
    x = conditions.images
    want = ((rec.double() - x.double()).abs() / 255.0).mean().item()
    assert 0.02 < want < 1.0
    values = [cycle_error_entry(model, source, store_of(tmp_path, fake.numpy(), shard), n)["value"]
              for shard in (7, 32, 70)]
    assert values[0] == values[1] == values[2]
    assert values[0] == pytest.approx(want, abs=1e-12)


def test_identity_generators_give_zero_cycle_error(tmp_path):
    task = load_task("shapes-unpaired")
    source = open_source(task, "conditions")
    model = CycleGANGenerator(nn.Identity(), (32, 32), arch=TINY_ARCH)
    model.reverse_net = nn.Identity()
    conditions = source.conditions(list(range(10)))
    fake = model.generate(conditions, list(range(10)))
    assert torch.equal(fake, conditions.images)
    entry = cycle_error_entry(model, source, store_of(tmp_path, fake.numpy(), 4), 10)
    assert entry["value"] == 0.0 and entry["ci95"] == [0.0, 0.0] and entry["n"] == 10


def test_cycle_error_pending_for_the_oracle_and_for_score_without_model(tmp_path, monkeypatch):
    from cgmbench.scoring.evaluate import score_run
    from cgmbench.run.runner import RunConfig, run

    spec = spec_with(tmp_path, "shapes-unpaired", ["judge", "cycle_error"], rename="shapes-unpaired-cycle")
    monkeypatch.setenv("CGMBENCH_TASKS", str(Path(spec).parent))  # cgmbench score loads the task by name
    rec = run(RunConfig(task=spec, model="oracle", num_samples=8, out=str(tmp_path / "o"), progress=False),
              log=lambda m: None)
    assert "judge" in rec["metrics"] and "cycle_error" not in rec["metrics"]
    assert rec["metrics_pending"] == [rec["metrics_pending"][0]]
    assert rec["metrics_pending"][0].startswith("cycle_error: model has no reverse generator")
    # a CycleGAN checkpoint with one direction only (the official pretrained layout)
    task = load_task(spec)
    source = open_source(task, "conditions")
    single = CycleGANGenerator(random_resnet(0), (32, 32), arch=TINY_ARCH)
    fake = single.generate(source.conditions(list(range(4))), [0, 1, 2, 3])
    metrics, pending = compute_metrics(task, source, store_of(tmp_path, fake.numpy(), 4), 4, model=single)
    assert "cycle_error" not in metrics
    assert pending[-1].startswith("cycle_error: model has no reverse generator") and "G_A only" in pending[-1]
    # re-scoring the samples has no model
    rescored = score_run(tmp_path / "o", log=lambda m: None)
    assert any(p.startswith("cycle_error:") and "cgmbench score" in p for p in rescored["metrics_pending"])


def test_shipped_cyclegan_carries_both_generators_and_records_cycle_error(tmp_path):
    from safetensors import safe_open

    from cgmbench.run.runner import RunConfig, run
    from cgmbench.weights import shipped

    path, digest = shipped("cyclegan-shapes-unpaired-tiny.safetensors")
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["sha256"] == digest
    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
        assert f.metadata()["cgmbench.reverse_prefix"] == REVERSE_PREFIX
    forward = [k for k in keys if not k.startswith(REVERSE_PREFIX)]
    assert sorted(forward) == sorted(k[len(REVERSE_PREFIX):] for k in keys if k.startswith(REVERSE_PREFIX))

    spec = spec_with(tmp_path, "shapes-unpaired", ["cycle_error"])
    outs = {}
    for name, batch in (("a", 5), ("b", 16)):  # the run's batch size does not change the number
        outs[name] = run(RunConfig(task=spec, model="cyclegan", num_samples=16, batch_size=batch,
                                   out=str(tmp_path / name), progress=False), log=lambda m: None)
    entry = outs["a"]["metrics"]["cycle_error"]
    assert outs["a"]["metrics_pending"] == [] and entry == outs["b"]["metrics"]["cycle_error"]
    assert 0.0 < entry["value"] < 0.2 and entry["n"] == 16
    model = CycleGANGenerator.load(load_task(spec), variant="shapes-unpaired-tiny")
    assert model.reverse_net is not None and model.checkpoint.sha256 == digest
    assert outs["a"]["model"]["checkpoint"]["sha256"] == digest


# ------------------------------------------------------------------------------------------
# LPIPS
# ------------------------------------------------------------------------------------------


@pytest.fixture
def random_lpips_weights(_isolated_home, monkeypatch):
    """Random AlexNet features and random non-negative lin layers, saved under the expected file names;
    the registry's checksums are lifted for them. Returns ``(alexnet_sd, lin_sd)``."""
    W.known_files()
    g = torch.Generator().manual_seed(0)
    net = LPIPS().net
    alex = {k: torch.randn(v.shape, generator=g) * (0.05 if k.endswith("weight") else 0.1)
            for k, v in net.state_dict().items()}
    lin = {f"lin{k}.model.1.weight": torch.rand((1, c, 1, 1), generator=g)
           for k, c in enumerate((64, 192, 384, 256, 256))}
    folder = _isolated_home / "weights"
    folder.mkdir(parents=True, exist_ok=True)
    for name, sd in ((ALEXNET_WEIGHTS, alex), (LIN_WEIGHTS, lin)):
        kf = W.known_file(name)
        monkeypatch.setitem(W._REGISTRY, name, dataclasses.replace(kf, sha256=None, sha256_prefix=None))
        torch.save(sd, folder / kf.filename)
    return alex, lin


def torchmetrics_lpips(alex: dict, lin: dict):
    """torchmetrics' ``_LPIPS`` (AlexNet, v0.1 layout) built offline with the given weights."""
    from torchmetrics.functional.image.lpips import _LPIPS

    tm = _LPIPS(pretrained=False, net="alex", pnet_rand=True)  # nothing downloaded
    tm_net = {}
    for name in tm.net.state_dict():  # slice2.3.weight holds torchvision features.3.weight
        tm_net[name] = alex["features." + name.split(".", 1)[1]]
    tm.net.load_state_dict(tm_net)
    missing, unexpected = tm.load_state_dict(lin, strict=False)
    assert not unexpected and all(k.startswith(("net.", "lins.")) for k in missing)  # lins.k aliases lin{k}
    assert all(torch.equal(getattr(tm, f"lin{k}").model[1].weight, lin[f"lin{k}.model.1.weight"]) for k in range(5))
    return tm.eval()


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.slow
def test_lpips_equals_torchmetrics_with_the_same_weights(random_lpips_weights, size):
    alex, lin = random_lpips_weights
    ours, info = load_lpips()
    assert info["lin_origin"] == "cgmbench weights folder" and info["version"] == "lpips-0.1-alex"
    tm = torchmetrics_lpips(alex, lin)
    g = torch.Generator().manual_seed(size)
    a = torch.randint(0, 256, (6, 3, size, size), generator=g, dtype=torch.uint8)
    b = torch.randint(0, 256, (6, 3, size, size), generator=g, dtype=torch.uint8)
    ref = tm(a.float() / 127.5 - 1, b.float() / 127.5 - 1).flatten()
    got = ours.distance(a, b)
    assert got.shape == (6,) and (got > 0).all()
    assert torch.allclose(got, ref, atol=1e-6, rtol=0)
    assert torch.equal(ours.distance(a, a), torch.zeros(6))


def test_lpips_reads_the_official_lin_file_that_torchmetrics_ships():
    path = torchmetrics_lin_copy()
    assert path is not None and W.sha256_file(path) == W.known_file(LIN_WEIGHTS).sha256
    from torchmetrics.functional.image.lpips import _LPIPS

    tm = _LPIPS(pretrained=True, net="alex", pnet_rand=True)  # loads that same alex.pth
    ours = LPIPS()
    ours.load_lin(torch.load(path, map_location="cpu", weights_only=True))
    for k in range(5):
        assert torch.equal(ours.lins[k].model[1].weight, getattr(tm, f"lin{k}").model[1].weight)
    with pytest.raises(CgmbenchError, match="not torchvision's AlexNet"):
        ours.load_backbone({"features.0.weight": torch.zeros(1)})


def test_lpips_in_a_run_record_and_pending_without_weights(tmp_path, monkeypatch, _isolated_home):
    from cgmbench.run.runner import RunConfig, run

    spec = spec_with(tmp_path, "shapes-paired", ["lpips", "psnr"])
    rec = run(RunConfig(task=spec, model="noise", num_samples=6, out=str(tmp_path / "missing"), progress=False),
              log=lambda m: None)
    assert "psnr" in rec["metrics"] and "lpips" not in rec["metrics"]
    (reason,) = rec["metrics_pending"]
    assert reason.startswith("lpips: LPIPS weights unavailable")
    assert "cgmbench weights fetch lpips:alexnet" in reason and str(_isolated_home / "weights") in reason


def test_lpips_entry_with_weights_present(tmp_path, random_lpips_weights):
    from cgmbench.run.runner import RunConfig, run

    alex, lin = random_lpips_weights
    spec = spec_with(tmp_path, "shapes-paired", ["lpips"])
    recs = {name: run(RunConfig(task=spec, model=name, num_samples=6, out=str(tmp_path / name), progress=False),
                      log=lambda m: None) for name in ("oracle", "noise")}
    oracle, noise = recs["oracle"]["metrics"]["lpips"], recs["noise"]["metrics"]["lpips"]
    assert recs["oracle"]["metrics_pending"] == []
    assert noise["value"] > oracle["value"] >= 0.0
    assert noise["protocol"] == noise["version"] == "lpips-0.1-alex" and noise["extractor"] == "lpips-alex"
    assert noise["alexnet_sha256"] == W.sha256_file(_home_file(ALEXNET_WEIGHTS))
    assert len(noise["weights_sha256"]) == 64 and noise["n"] == 6
    # the recorded value is the mean of the per-sample distances to the true targets
    task = load_task(spec)
    targets = open_source(task, "reference").references(list(range(6)))
    samples = SampleStore.open(tmp_path / "noise" / "samples")
    arr = np.concatenate([a for _, a in samples.iter_batches(6)])
    net, _ = load_lpips()
    assert noise["value"] == pytest.approx(net.distance(arr, targets).double().mean().item(), abs=1e-6)


def _home_file(name: str) -> Path:
    return W.weights_dir() / W.known_file(name).filename
