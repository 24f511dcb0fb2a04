"""Issue 12, item 9: ``run --resume`` verifies every shard (also of a complete run) and regenerates deleted,
truncated or bit-flipped ones; samples are a pure function of the sample index, so the repaired run has the
samples and identity of an uninterrupted one. Faults injected: deletion, truncation, bit flips, a FIFO."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from cgmbench.conditions import CONDITION_KINDS
from cgmbench.errors import CgmbenchError, IntegrityError
from cgmbench.generator import Generator
from cgmbench.models.registry import register_model
from cgmbench.run.record import load_record
from cgmbench.run.runner import RunConfig, run
from cgmbench.run.samples import SampleStore
from cgmbench.seeding import torch_generator

N, BATCH = 12, 4


class CountingModel(Generator):
    """Deterministic per-sample noise; counts the samples it generates."""

    name = "counting"
    condition_kinds = frozenset(CONDITION_KINDS)
    knobs = ()
    generated: list[int] = []

    @classmethod
    def load(cls, task, variant=None, checkpoint=None, device="cpu"):
        return cls((task.resolution, task.resolution), frames=task.frames)

    def generate(self, conditions, seeds):
        h, w = self.resolution
        type(self).generated.extend(seeds)
        return torch.stack([torch.randint(0, 256, (3, h, w), generator=torch_generator(s), dtype=torch.uint8)
                            for s in seeds])


@pytest.fixture(autouse=True)
def _model():
    CountingModel.generated = []
    register_model("counting", CountingModel)
    yield


def _cfg(out, resume=False):
    return RunConfig(task="shapes-cc", model="counting", num_samples=N, seed=3, batch_size=BATCH, out=str(out),
                     resume=resume, progress=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: its record and its samples."""
    CountingModel.generated = []
    register_model("counting", CountingModel)
    out = tmp_path_factory.mktemp("ref") / "run"
    record = run(_cfg(out), log=lambda m: None)
    samples = np.concatenate([a for _, a in SampleStore.open(out / "samples").iter_batches()])
    return record, samples


def _shard(out, k=1):
    store = SampleStore.open(out / "samples")
    return out / "samples" / store.index["shards"][k]["file"]


def _damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "delete":
        path.unlink()
    elif how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "bitflip":
        data[len(data) - 7] ^= 0x10
        path.write_bytes(bytes(data))
    elif how == "fifo":
        path.unlink()
        os.mkfifo(path)
    elif how == "header":
        data[10] ^= 0x01
        path.write_bytes(bytes(data))


def _partial(out, reference, upto):
    """A run interrupted after ``upto`` samples: the first shards of the reference run."""
    run(_cfg(out), log=lambda m: None)
    store = SampleStore.open(out / "samples")
    for s in store.index["shards"]:
        if s["start"] >= upto:
            (out / "samples" / s["file"]).unlink()
    store.index["shards"] = [s for s in store.index["shards"] if s["start"] < upto]
    (out / "samples" / "index.json").write_text(json.dumps(store.index))
    (out / "run.json").unlink()


@pytest.mark.parametrize("how", ["delete", "truncate", "bitflip", "fifo", "header"])
def test_resume_of_complete_run_regenerates_damaged_shard(tmp_path, reference, how):
    ref_record, ref_samples = reference
    out = tmp_path / "run"
    run(_cfg(out), log=lambda m: None)
    before = (out / "run.json").read_bytes()
    _damage(_shard(out), how)
    with pytest.raises(IntegrityError, match="--resume"):  # score/iter detect it and now say what to do
        SampleStore.open(out / "samples").digest(N)
    CountingModel.generated = []
    logs = []
    record = run(_cfg(out, resume=True), log=logs.append)
    assert len(CountingModel.generated) == BATCH  # exactly the damaged shard's samples, nothing else
    assert record["identity_sha256"] == ref_record["identity_sha256"]
    samples = np.concatenate([a for _, a in SampleStore.open(out / "samples").iter_batches()])
    assert np.array_equal(samples, ref_samples)
    assert (out / "run.json").read_bytes() == before  # the record already described exactly these samples
    assert any("regenerating samples 4..7" in m for m in logs)


def test_resume_of_intact_complete_run_verifies_and_generates_nothing(tmp_path, reference):
    out = tmp_path / "run"
    run(_cfg(out), log=lambda m: None)
    CountingModel.generated = []
    logs = []
    record = run(_cfg(out, resume=True), log=logs.append)
    assert CountingModel.generated == [] and record["identity_sha256"] == reference[0]["identity_sha256"]
    assert any("every shard verified" in m for m in logs)


@pytest.mark.parametrize("how", ["delete", "bitflip"])
@pytest.mark.slow
def test_resume_of_interrupted_run_regenerates_damaged_and_missing(tmp_path, reference, how):
    ref_record, ref_samples = reference
    out = tmp_path / "run"
    _partial(out, reference, upto=8)  # shards 0..3, 4..7 present; 8..11 never written
    _damage(_shard(out, 0), how)
    CountingModel.generated = []
    record = run(_cfg(out, resume=True), log=lambda m: None)
    assert len(CountingModel.generated) == 2 * BATCH
    assert record["identity_sha256"] == ref_record["identity_sha256"]
    assert record["samples_sha256"] == ref_record["samples_sha256"]
    samples = np.concatenate([a for _, a in SampleStore.open(out / "samples").iter_batches()])
    assert np.array_equal(samples, ref_samples)


def test_resume_refuses_index_with_shard_outside_the_run_folder(tmp_path, reference):
    out = tmp_path / "run"
    run(_cfg(out), log=lambda m: None)
    index = json.loads((out / "samples" / "index.json").read_text())
    index["shards"][0]["file"] = "../../x.npy"
    (out / "samples" / "index.json").write_text(json.dumps(index))
    with pytest.raises(CgmbenchError, match="not a shard name"):
        run(_cfg(out, resume=True), log=lambda m: None)


def test_score_refuses_samples_dir_outside_the_run_folder(tmp_path, reference):
    from cgmbench.scoring.evaluate import score_run

    out = tmp_path / "run"
    run(_cfg(out), log=lambda m: None)
    rec = load_record(out / "run.json")
    rec["samples"]["dir"] = "../elsewhere"
    (out / "run.json").write_text(json.dumps(rec))
    with pytest.raises(CgmbenchError, match="paths that leave it are refused"):
        score_run(out)


def test_out_naming_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(CgmbenchError, match="is not a folder"):
        run(_cfg(tmp_path / "f"), log=lambda m: None)
