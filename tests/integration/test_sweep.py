"""``cgmbench sweep``: grid expansion, one run per point, skipping and resuming, sweep.json."""

from __future__ import annotations

import json

import pytest
import torch

from cgmbench.conditions import CONDITION_KINDS
from cgmbench.errors import CgmbenchError
from cgmbench.generator import CheckpointInfo, Generator, Knob
from cgmbench.models.registry import register_model
from cgmbench.seeding import torch_generator
from cgmbench.sources.base import open_source
from cgmbench.run.sweep import SweepConfig, expand_grid, parse_knob_grid, point_dirname, run_sweep

TASK = "shapes-t2i"


class GuidedToy(Generator):
    """Returns the oracle image with probability ``1 - 1/guidance_scale``, noise otherwise.

    A generator whose judge score rises with the guidance scale; ``steps`` does nothing but is a
    second knob. ``calls`` counts samples made (for skip/resume checks); ``fail_after`` raises
    KeyboardInterrupt once that many samples were made (a killed sweep).
    """

    name = "guided-toy"
    condition_kinds = frozenset(CONDITION_KINDS)
    description = "test generator with a guidance knob"
    knobs = (Knob("guidance_scale", 1.0, "CFG scale", minimum=1.0, maximum=20.0),
             Knob("steps", 10, "sampler steps", kind="int", minimum=1, maximum=100))
    calls = 0
    fail_after: int | None = None

    @classmethod
    def load(cls, task, variant=None, checkpoint=None, device="cpu"):
        m = cls((task.resolution, task.resolution), checkpoint=CheckpointInfo(name="toy", sha256="0" * 64),
                device=device)
        m.task = task
        return m

    def generate(self, conditions, seeds, guidance_scale=1.0, steps=10):
        src = open_source(self.task, "conditions")
        real = torch.from_numpy(src.oracle(conditions.indices, list(seeds)))
        out = []
        for i, s in enumerate(seeds):
            if GuidedToy.fail_after is not None and GuidedToy.calls >= GuidedToy.fail_after:
                raise KeyboardInterrupt
            GuidedToy.calls += 1
            g = torch_generator(s)
            noise = torch.randint(0, 256, real.shape[1:], generator=g, dtype=torch.uint8)
            keep = torch.rand((), generator=g).item() < 1.0 - 1.0 / guidance_scale
            out.append(real[i] if keep else noise)
        return torch.stack(out)


@pytest.fixture(autouse=True)
def _toy():
    register_model("guided-toy", GuidedToy)
    GuidedToy.calls, GuidedToy.fail_after = 0, None
    yield
    GuidedToy.fail_after = None


def test_grid_parsing_and_expansion():
    grid = parse_knob_grid("1,2", ["steps=5, 10"])
    assert grid == {"steps": ["5", "10"], "guidance_scale": ["1", "2"]}
    points = expand_grid(GuidedToy, grid)
    assert points == [{"steps": 5, "guidance_scale": 1.0}, {"steps": 5, "guidance_scale": 2.0},
                      {"steps": 10, "guidance_scale": 1.0}, {"steps": 10, "guidance_scale": 2.0}]
    assert point_dirname({"steps": 5, "guidance_scale": 1.5}) == "guidance_scale=1.5-steps=5"
    with pytest.raises(CgmbenchError, match="out of range"):
        expand_grid(GuidedToy, {"guidance_scale": ["0.5"]})
    with pytest.raises(CgmbenchError, match="has no knob 'eta'"):
        expand_grid(GuidedToy, {"eta": ["1"]})
    with pytest.raises(CgmbenchError, match="given twice"):
        expand_grid(GuidedToy, {"guidance_scale": ["1", "1.0"]})
    with pytest.raises(CgmbenchError, match="empty item"):
        parse_knob_grid("1,,2", None)
    with pytest.raises(CgmbenchError, match="once"):
        parse_knob_grid("1", ["guidance_scale=2"])


@pytest.mark.slow
def test_sweep_runs_each_point_then_skips(tmp_path):
    cfg = SweepConfig(task=TASK, model="guided-toy", grid={"guidance_scale": ["1", "2", "8"]}, out=str(tmp_path / "s"),
                      num_samples=24, batch_size=8, progress=False)
    index = run_sweep(cfg, log=lambda m: None)
    assert [p["dir"] for p in index["points"]] == ["guidance_scale=1", "guidance_scale=2", "guidance_scale=8"]
    assert all(p["status"] == "complete" for p in index["points"])
    on_disk = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert on_disk == index
    for p in index["points"]:
        rec = json.loads((tmp_path / "s" / p["dir"] / "run.json").read_text())
        assert rec["model"]["knobs"]["guidance_scale"] == p["knobs"]["guidance_scale"]
        assert rec["identity_sha256"] == p["identity_sha256"]
    judge = [p["metrics"]["judge"]["value"] for p in index["points"]]
    assert judge[0] < judge[1] < judge[2]  # guidance 1 is all noise, 8 is mostly oracle
    assert GuidedToy.calls == 72
    messages = []
    again = run_sweep(cfg, log=messages.append)
    assert GuidedToy.calls == 72  # nothing regenerated
    assert sum("skipped" in m for m in messages) == 3
    assert [p["identity_sha256"] for p in again["points"]] == [p["identity_sha256"] for p in index["points"]]


@pytest.mark.slow
def test_interrupted_sweep_resumes_at_run_and_sample_level(tmp_path):
    grid = {"guidance_scale": ["1.5", "3"], "steps": ["4"]}
    ref = run_sweep(SweepConfig(task=TASK, model="guided-toy", grid=grid, out=str(tmp_path / "ref"),
                                num_samples=20, batch_size=4, progress=False), log=lambda m: None)
    GuidedToy.calls, GuidedToy.fail_after = 0, 28  # dies in the second point, after 2 of its 5 batches
    cfg = SweepConfig(task=TASK, model="guided-toy", grid=grid, out=str(tmp_path / "cut"), num_samples=20,
                      batch_size=4, progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, log=lambda m: None)
    index = json.loads((tmp_path / "cut" / "sweep.json").read_text())
    assert [p["status"] for p in index["points"]] == ["complete", "pending"]
    partial = json.loads((tmp_path / "cut" / "guidance_scale=3-steps=4" / "samples" / "index.json").read_text())
    assert [s["start"] for s in partial["shards"]] == [0, 4]
    GuidedToy.calls, GuidedToy.fail_after = 0, None
    done = run_sweep(cfg, log=lambda m: None)
    assert GuidedToy.calls == 12  # only the 12 missing samples of the interrupted point
    assert [p["status"] for p in done["points"]] == ["complete", "complete"]
    for a, b in zip(ref["points"], done["points"]):
        assert a["identity_sha256"] == b["identity_sha256"] and a["samples_sha256"] == b["samples_sha256"]


def test_sweep_defaults_to_task_grid_and_refuses_foreign_folders(tmp_path):
    # noise has no knobs: the task's [sweep] grid does not apply -> one default run
    idx = run_sweep(SweepConfig(task=TASK, model="noise", out=str(tmp_path / "n"), num_samples=8, progress=False),
                    log=lambda m: None)
    assert [p["dir"] for p in idx["points"]] == ["default"]
    with pytest.raises(CgmbenchError, match="another sweep"):
        run_sweep(SweepConfig(task=TASK, model="noise", out=str(tmp_path / "n"), num_samples=9, progress=False),
                  log=lambda m: None)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(CgmbenchError, match="not empty"):
        run_sweep(SweepConfig(task=TASK, model="noise", out=str(tmp_path / "junk"), num_samples=8), log=print)
    # the task's [sweep] table applies to a model with the knob
    calls = []
    run_sweep(SweepConfig(task=TASK, model="guided-toy", out=str(tmp_path / "t"), num_samples=2, progress=False),
              log=lambda m: None, run_fn=lambda rcfg, log: calls.append(rcfg.knobs) or _fake_record(rcfg))
    assert [c["guidance_scale"] for c in calls] == [1.0, 1.5, 2.0, 3.0, 5.0]


def _fake_record(rcfg):
    return {"identity_sha256": "x", "samples_sha256": "y", "model": {"knobs": rcfg.knobs}, "metrics": {}}


@pytest.mark.slow
def test_cli_sweep_handler(tmp_path, capsys):
    import argparse

    from cgmbench.cli.results import COMMANDS, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sweep", "--task", TASK, "--model", "guided-toy", "--guidance", "2,4",
                              "--knob", "steps=3", "--num-samples", "8", "--out", str(tmp_path / "c")])
    assert COMMANDS["sweep"](args) == 0
    out = capsys.readouterr().out
    assert "guidance_scale=2-steps=3" in out and "guidance_scale=4-steps=3" in out and "complete" in out
