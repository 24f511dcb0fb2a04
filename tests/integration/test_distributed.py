"""Sharded runs under torchrun (CPU, gloo, 2 processes) equal the 1-process run."""

from __future__ import annotations

import pytest

import json
import os
import shutil
import subprocess

import numpy as np

from cgmbench.run.distributed import RANK_INDEX, batches, merge_rank_indices, rank_indices
from cgmbench.run.config import RunConfig
from cgmbench.run.runner import run
from cgmbench.run.samples import SampleStore

pytestmark = [pytest.mark.slow, pytest.mark.torchrun]

TASK = "shapes-t2i"


def test_batches_and_rank_assignment():
    assert batches([0, 1, 2, 3, 4, 7, 8], 2) == [(0, 2), (2, 4), (4, 5), (7, 9)]
    assert rank_indices([0, 1, 2, 3, 4, 7, 8], 2, 0, 2) == [0, 1, 4]
    assert rank_indices([0, 1, 2, 3, 4, 7, 8], 2, 1, 2) == [2, 3, 7, 8]
    every = sorted(rank_indices(list(range(23)), 4, 0, 3) + rank_indices(list(range(23)), 4, 1, 3)
                   + rank_indices(list(range(23)), 4, 2, 3))
    assert every == list(range(23))


def test_merge_rank_indices_checks_and_folds(tmp_path):
    store = SampleStore.create(tmp_path / "samples", {"x": 1}, (3, 2, 2))
    from cgmbench.run.distributed import _rank_store_class

    cls = _rank_store_class()
    r1 = cls(store.root, {**store.index, "shards": []}, 1)
    r1.write_shard(2, np.full((2, 3, 2, 2), 7, np.uint8))
    r0 = cls(store.root, {**store.index, "shards": []}, 0)
    r0.write_shard(0, np.full((2, 3, 2, 2), 3, np.uint8))
    assert (store.root / RANK_INDEX.format(rank=1)).is_file()
    assert SampleStore.open(store.root).index["shards"] == []  # index.json untouched by the ranks
    assert merge_rank_indices(store) == 2
    again = SampleStore.open(store.root)
    assert again.missing(4) == [] and again.read(0, 4)[:, 0, 0, 0].tolist() == [3, 3, 7, 7]
    assert not list(store.root.glob("index.rank*.json"))


def _torchrun(args, nproc=2, timeout=240):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    torchrun = shutil.which("torchrun") or "torchrun"
    cmd = [torchrun, "--standalone", "--nproc-per-node", str(nproc), "-m", "cgmbench", "run", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def test_two_rank_gloo_run_equals_one_rank(tmp_path):
    for model in ("noise", "oracle"):
        one = run(RunConfig(task=TASK, model=model, num_samples=40, batch_size=16, out=str(tmp_path / f"{model}1"),
                            progress=False), log=lambda m: None)
        # another batch size on purpose: 5 batches of 8 spread over 2 ranks
        res = _torchrun(["--task", TASK, "--model", model, "--num-samples", "40", "--batch-size", "8",
                         "--out", str(tmp_path / f"{model}2"), "--device", "cpu", "--json"])
        assert res.returncode == 0, res.stderr[-3000:]
        two = json.loads((tmp_path / f"{model}2" / "run.json").read_text())
        assert two["samples_sha256"] == one["samples_sha256"]
        assert two["metrics"] == one["metrics"]
        assert two["identity_sha256"] == one["identity_sha256"]
        assert two["timings"]["world_size"] == 2
        printed = json.loads(res.stdout)  # rank 0 alone prints: stdout is one JSON document
        assert printed["identity_sha256"] == one["identity_sha256"]
        shards = SampleStore.open(tmp_path / f"{model}2" / "samples").index["shards"]
        assert [(s["start"], s["stop"]) for s in shards] == [(i, i + 8) for i in range(0, 40, 8)]
        assert not list((tmp_path / f"{model}2" / "samples").glob("index.rank*.json"))


def test_two_rank_errors_reach_every_rank_and_resume(tmp_path):
    res = _torchrun(["--task", TASK, "--model", "noise", "--num-samples", "0", "--out", str(tmp_path / "bad")])
    assert res.returncode != 0 and "--num-samples must be >= 1" in res.stderr
    # an interrupted 2-rank run: one rank's shards are listed only in its index.rank1.json
    out = tmp_path / "cut"
    one = run(RunConfig(task=TASK, model="noise", num_samples=24, batch_size=8, out=str(tmp_path / "ref"),
                        progress=False), log=lambda m: None)
    ref = SampleStore.open(tmp_path / "ref" / "samples")
    cfg = {**ref.config}
    store = SampleStore.create(out / "samples", cfg, ref.sample_shape)
    from cgmbench.run.distributed import _rank_store_class

    r1 = _rank_store_class()(store.root, {**store.index, "shards": []}, 1)
    r1.write_shard(8, ref.read(8, 16))
    res = _torchrun(["--task", TASK, "--model", "noise", "--num-samples", "24", "--batch-size", "8",
                     "--out", str(out), "--resume"])
    assert res.returncode == 0, res.stderr[-3000:]
    rec = json.loads((out / "run.json").read_text())
    assert rec["identity_sha256"] == one["identity_sha256"]
    assert rec["timings"]["samples_this_session"] == 16  # samples 8..15 were reused


def test_torchrun_honours_every_run_option_precision_included(tmp_path):
    """torchrun goes through the same parser and run-configuration builder as `cgmbench run`: --precision
    reaches every rank and the record (it once fell back to fp32 silently)."""
    args = ["--task", "shapes-cc", "--model", "dit", "--num-samples", "4", "--batch-size", "2", "--knob", "steps=2",
            "--precision", "bf16", "--device", "cpu", "--seed", "3"]
    res = _torchrun([*args, "--out", str(tmp_path / "bf16")])
    assert res.returncode == 0, res.stderr[-3000:]
    rec = json.loads((tmp_path / "bf16" / "run.json").read_text())
    assert rec["model"]["precision"] == "bf16" and rec["seed"] == 3 and rec["model"]["knobs"]["steps"] == 2
    one = run(RunConfig(task="shapes-cc", model="dit", num_samples=4, batch_size=2, micro_batch=2,
                        knobs={"steps": 2}, precision="bf16", device="cpu", seed=3, out=str(tmp_path / "one"),
                        progress=False),
              log=lambda m: None)  # --batch-size 2 on the command line is also the micro-batch
    assert rec["environment"]["micro_batch"] == 2 and one["environment"]["micro_batch"] == 2
    assert rec["identity_sha256"] == one["identity_sha256"]
