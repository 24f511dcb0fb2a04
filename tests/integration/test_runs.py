"""Runs: per-sample seeding, batch-size independence, resume after a kill, the run record."""

import json

import numpy as np
import pytest
import torch

from cgmbench.conditions import CONDITION_KINDS
from cgmbench.generator import Generator, Knob
from cgmbench.run.record import VOLATILE_FIELDS, identity_digest, load_record
from cgmbench.models.registry import register_model
from cgmbench.run.runner import RunConfig, run
from cgmbench.run.samples import SampleStore
from cgmbench.seeding import sample_seed, torch_generator


class BlobModel(Generator):
    """A test generator with real float arithmetic: a coloured blob whose colour depends on the condition."""

    name = "blob"
    condition_kinds = frozenset(CONDITION_KINDS)
    knobs = (Knob("guidance_scale", 1.0, "test guidance", minimum=0.0, maximum=10.0),)
    fail_after: int | None = None  # simulate a kill after this many generate() calls
    calls = 0

    @classmethod
    def load(cls, task, variant=None, checkpoint=None, device="cpu"):
        return cls((task.resolution, task.resolution), frames=task.frames)

    def generate(self, conditions, seeds, guidance_scale=1.0):
        type(self).calls += 1
        if self.fail_after is not None and type(self).calls > self.fail_after:
            raise KeyboardInterrupt
        h, w = self.resolution
        out = []
        for i, s in enumerate(seeds):
            g = torch_generator(s)
            z = torch.randn(3, h, w, generator=g)
            tint = float(sum(map(ord, conditions.texts[i]))) if conditions.texts else float(i)
            img = torch.tanh(0.5 * z * guidance_scale + torch.cos(torch.tensor(tint)))
            if self.frames:
                img = img.expand(self.frames, 3, h, w)
            out.append(((img + 1) * 127.5).round().clamp(0, 255).to(torch.uint8))
        return torch.stack(out)


@pytest.fixture(autouse=True)
def _blob():
    BlobModel.fail_after, BlobModel.calls = None, 0
    register_model("blob", BlobModel)
    yield


def _samples(out):
    store = SampleStore.open(out / "samples")
    return np.concatenate([a for _, a in store.iter_batches()])


def test_seed_depends_only_on_run_seed_task_and_index():
    assert sample_seed(0, "shapes-t2i", 5) == sample_seed(0, "shapes-t2i", 5)
    assert len({sample_seed(0, "shapes-t2i", 5), sample_seed(1, "shapes-t2i", 5),
                sample_seed(0, "shapes-cc", 5), sample_seed(0, "shapes-t2i", 6)}) == 4


@pytest.mark.slow
@pytest.mark.parametrize("model", ["blob", "noise", "oracle"])
@pytest.mark.parametrize("task", ["shapes-t2i", "shapes-t2v"])
def test_samples_identical_for_batch_sizes_1_7_64(tmp_path, model, task):
    digests, arrays = [], []
    for bs in (1, 7, 64):
        rec = run(RunConfig(task=task, model=model, num_samples=20, batch_size=bs, out=str(tmp_path / f"b{bs}"),
                            progress=False), log=lambda m: None)
        digests.append(rec["samples_sha256"])
        arrays.append(_samples(tmp_path / f"b{bs}"))
        assert rec["identity_sha256"] == identity_digest(rec)
    assert len(set(digests)) == 1
    assert all(np.array_equal(arrays[0], a) for a in arrays[1:])
    # the shard layouts differ, the digest does not
    assert len(list((tmp_path / "b1" / "samples").glob("*.npy"))) == 20
    assert len(list((tmp_path / "b64" / "samples").glob("*.npy"))) == 1


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(tmp_path):
    full = run(RunConfig(task="shapes-t2i", model="blob", num_samples=30, batch_size=4, out=str(tmp_path / "full"),
                         knobs={"guidance_scale": "2.5"}, progress=False), log=lambda m: None)
    BlobModel.fail_after, BlobModel.calls = 3, 0
    cfg = RunConfig(task="shapes-t2i", model="blob", num_samples=30, batch_size=4, out=str(tmp_path / "killed"),
                    knobs={"guidance_scale": "2.5"}, progress=False)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, log=lambda m: None)
    assert not (tmp_path / "killed" / "run.json").exists()
    assert len(SampleStore.open(tmp_path / "killed" / "samples").covered()) == 12
    # resume with another batch size: only the missing samples are generated
    BlobModel.fail_after, BlobModel.calls = None, 0
    cfg.resume, cfg.batch_size = True, 5
    resumed = run(cfg, log=lambda m: None)
    assert BlobModel.calls == 4  # 18 missing samples in batches of 5
    assert np.array_equal(_samples(tmp_path / "full"), _samples(tmp_path / "killed"))
    strip = lambda r: {k: v for k, v in r.items() if k not in VOLATILE_FIELDS}  # noqa: E731
    assert strip(resumed) == strip(full)
    assert resumed["identity_sha256"] == full["identity_sha256"]


@pytest.mark.slow
def test_kill_between_shard_and_index_write_is_harmless(tmp_path):
    cfg = RunConfig(task="shapes-cc", model="noise", num_samples=10, batch_size=4, out=str(tmp_path / "r"),
                    progress=False)
    full = run(cfg, log=lambda m: None)
    # a leftover shard not listed in the index (killed after writing it) is overwritten on resume
    store_dir = tmp_path / "r" / "samples"
    index = json.loads((store_dir / "index.json").read_text())
    index["shards"] = index["shards"][:1]
    (store_dir / "index.json").write_text(json.dumps(index))
    (tmp_path / "r" / "run.json").unlink()
    cfg.resume = True
    again = run(cfg, log=lambda m: None)
    assert again["samples_sha256"] == full["samples_sha256"]


def test_run_record_fields(tmp_path):
    rec = run(RunConfig(task="shapes-t2i", model="oracle", num_samples=16, out=str(tmp_path / "r"), progress=False),
              log=lambda m: None)
    on_disk = load_record(tmp_path / "r" / "run.json")
    assert on_disk == rec
    assert rec["schema"] == "cgmbench.run/1"
    assert rec["task"]["name"] == "shapes-t2i" and len(rec["task"]["spec_sha256"]) == 64
    assert rec["n"] == 16 and rec["seed"] == 0
    assert rec["model"]["knobs"] == {} and rec["model"]["reference_model"]
    for key in ("cgmbench", "python", "torch", "numpy", "device"):
        assert key in rec["environment"]
    assert rec["timings"]["sampling_s"] >= 0
    judge = rec["metrics"]["judge"]
    assert judge["overall"]["value"] == 1.0 and judge["version"] == "shapes-judge/2"
    assert rec["metrics_pending"] == [] and {"fid", "clip_score"} <= set(rec["metrics"])


@pytest.mark.slow
def test_oracle_beats_noise_on_every_shapes_task(tmp_path):
    for task in ("shapes-cc", "shapes-paired", "shapes-unpaired", "shapes-edit", "shapes-t2v"):
        scores = {}
        for model in ("oracle", "noise"):
            rec = run(RunConfig(task=task, model=model, num_samples=24, out=str(tmp_path / f"{task}-{model}"),
                                progress=False), log=lambda m: None)
            scores[model] = rec["metrics"]["judge"]["overall"]["value"]
        assert scores["oracle"] >= 0.99 and scores["noise"] <= 0.05, (task, scores)


def test_digits_oracle_returns_heldout_image_of_the_same_class(tmp_path):
    from cgmbench.sources.base import open_source
    from cgmbench.spec.task import load_task
    from cgmbench.worlds.sources import digits_split, digits_to_rgb

    task = load_task("digits-cc")
    source = open_source(task)
    idx = list(range(40))
    oracle = source.oracle(idx, [sample_seed(0, task.name, i) for i in idx])
    held, labels = digits_split("heldout")
    held = digits_to_rgb(held, 32)
    for i, img in zip(idx, oracle):
        matches = np.flatnonzero((held == img).all(axis=(1, 2, 3)))
        assert len(matches) >= 1 and labels[matches[0]] == source.labels[i]
