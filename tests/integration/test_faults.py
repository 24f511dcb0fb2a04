"""Issue 12 part B: every fault of a run ends in one line and a state that the same command (or --resume)
continues from — non-finite model output, kills at every write step, concurrent writers, a full disk, a file-size
limit, a read-only folder, malformed indexes and shards, hostile task files and options."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cgmbench.cli.main import main
from cgmbench.errors import CgmbenchError, IntegrityError
from cgmbench.generator import CheckpointInfo, Generator, NonFiniteSamples, nonfinite_policy, to_uint8
from cgmbench.models.registry import register_model
from cgmbench.run.lock import folder_lock
from cgmbench.run.runner import RunConfig, run
from cgmbench.run.samples import SampleStore
from cgmbench.seeding import sample_seed, torch_generator

REPO = Path(__file__).resolve().parents[2]

TASK = """name = "faults-cc"
kind = "class-conditional"
description = "judge-only shapes task for fault tests"
resolution = 32
num_samples = 8

[conditions]
source = "shapes"
size = 64

[reference]
source = "shapes"
size = 64

[metrics]
compute = ["judge"]

[data]
license = "CC0-1.0"
attribution = "cgmbench shapes world"
obtain = "nothing to download"
"""


@pytest.fixture()
def task(tmp_path) -> str:
    path = tmp_path / "faults-cc.toml"
    path.write_text(TASK)
    return str(path)


class NaNModel(Generator):
    """Uniform noise; sample ``bad_index`` (of task ``faults-cc``, seed 0) comes out NaN. ``per_sample``: it
    converts one sample at a time (so the batch position of the error is not the run's index)."""

    name = "nanmodel"
    condition_kinds = frozenset({"class"})
    bad_index = 5
    per_sample = False

    @classmethod
    def load(cls, task, variant=None, checkpoint=None, device="cpu"):
        m = cls((task.resolution, task.resolution))
        m.checkpoint = CheckpointInfo(name="nan-weights", path="/ckpt/nan.safetensors", sha256="ab" * 32)
        return m

    def generate(self, conditions, seeds):
        h, w = self.resolution
        bad = sample_seed(0, "faults-cc", self.bad_index)
        xs = [torch.full((3, h, w), float("nan")) if s == bad else
              torch.rand(3, h, w, generator=torch_generator(s)) * 2 - 1 for s in seeds]
        if self.per_sample:
            return torch.stack([to_uint8(x[None])[0] for x in xs])
        return to_uint8(torch.stack(xs))


register_model("nanmodel", NaNModel)


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if line.startswith("cgmbench: error: ")]
    assert "Traceback" not in err and len(errors) == 1, err
    return errors[0]


# -- item 4: non-finite model output ---------------------------------------------------------------------


def test_to_uint8_refuses_nan_outside_a_policy_and_counts_inside():
    x = torch.zeros(4, 3, 2, 2)
    x[2, 1, 0, 0] = float("nan")
    x[3, 0, 1, 1] = float("inf")
    with pytest.raises(NonFiniteSamples) as e:
        to_uint8(x)
    assert (e.value.index, e.value.batch, e.value.count) == (2, 4, 2)
    with nonfinite_policy(True) as state:
        y = to_uint8(x)
    assert state["samples"] == 2 and y[2, 1, 0, 0] == 0 and y[3, 0, 1, 1] == 255 and y[0, 0, 0, 0] == 128


@pytest.mark.parametrize("per_sample", [False, True])
def test_nan_output_names_model_checkpoint_and_first_bad_index(task, tmp_path, capsys, monkeypatch, per_sample):
    monkeypatch.setattr(NaNModel, "per_sample", per_sample)
    out = tmp_path / "run"
    rc = main(["run", "--task", task, "--model", "nanmodel", "--num-samples", "8", "--batch-size", "4",
               "--out", str(out), "--device", "cpu"])
    err = one_line(capsys)
    assert rc == 2
    assert "'nanmodel'" in err and "nan-weights" in err and "/ckpt/nan.safetensors" in err and "sample 5" in err
    assert "--allow-nonfinite" in err
    store = SampleStore.open(out / "samples")  # the good first batch is kept, the bad one is not
    assert [(s["start"], s["stop"]) for s in store.index["shards"]] == [(0, 4)]


def test_allow_nonfinite_records_the_count(task, tmp_path):
    rec = run(RunConfig(task=task, model="nanmodel", num_samples=8, batch_size=4, out=str(tmp_path / "r"),
                        allow_nonfinite=True, progress=False), log=lambda m: None)
    assert rec["nonfinite_samples"] == 1
    samples = SampleStore.open(tmp_path / "r" / "samples").read(0, 8)
    assert (samples[5] == 0).all() and samples[4].std() > 10  # NaN stored as 0, the others untouched


# -- item 7: a kill at every write step ----------------------------------------------------------------------

KILLER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {repo!r})
    os.environ["OMP_NUM_THREADS"] = "1"
    import cgmbench.atomic as atomic
    step, when = int(sys.argv[1]), sys.argv[2]
    calls = [0]
    real_replace, real_mkdir = os.replace, os.mkdir
    def die():
        os.kill(os.getpid(), signal.SIGKILL)
    def replace(a, b):
        calls[0] += 1
        if calls[0] == step and when == "before":
            die()
        real_replace(a, b)
        if calls[0] == step and when == "after":
            die()
    def mkdir(path, *a, **k):
        real_mkdir(path, *a, **k)
        if when == "mkdir" and str(path).endswith("samples"):
            die()
    atomic.os.replace = replace
    os.mkdir = mkdir
    from cgmbench.cli.main import main
    sys.exit(main(sys.argv[3:]))
""")


def _reference(task, tmp_path, model="oracle", n=8):
    return run(RunConfig(task=task, model=model, num_samples=n, batch_size=4, out=str(tmp_path / "ref"),
                         progress=False), log=lambda m: None)


@pytest.mark.slow
def test_sigkill_at_every_write_step_resumes_to_the_identical_run(task, tmp_path):
    ref = _reference(task, tmp_path)
    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(repo=str(REPO)))
    # writes of an 8-sample run in batches of 4: index, shard, index, shard, index, run.json
    points = [(0, "mkdir")] + [(k, w) for k in range(1, 7) for w in ("before", "after")]
    for k, when in points:
        out = tmp_path / f"kill-{k}-{when}"
        proc = subprocess.run([sys.executable, str(script), str(k), when, "run", "--task", task, "--model",
                               "oracle", "--num-samples", "8", "--batch-size", "4", "--out", str(out),
                               "--device", "cpu"], capture_output=True, text=True)
        assert proc.returncode == -signal.SIGKILL, (k, when, proc.stderr[-500:])
        for resume in ([], ["--resume"]):  # a plain rerun is accepted only where nothing was written yet
            rc = main(["run", "--task", task, "--model", "oracle", "--num-samples", "8", "--batch-size", "4",
                       "--out", str(out), "--device", "cpu", *resume])
            if rc == 0:
                break
        assert rc == 0, (k, when)
        rec = json.loads((out / "run.json").read_text())
        assert rec["identity_sha256"] == ref["identity_sha256"], (k, when)
        assert not [p for p in out.rglob(".*.tmp")], (k, when)  # leftovers of the killed write are gone


@pytest.mark.slow
def test_sigkill_at_every_write_step_of_a_sweep_finishes_to_the_identical_sweep(task, tmp_path):
    args = ["sweep", "--task", task, "--model", "noise", "--num-samples", "4", "--batch-size", "4", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "ref")]) == 0
    ref = json.loads((tmp_path / "ref" / "sweep.json").read_text())
    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(repo=str(REPO)))
    # writes: sweep.json (pending), index, shard, index, run.json, sweep.json (complete)
    for k, when in [(0, "mkdir")] + [(k, w) for k in range(1, 7) for w in ("before", "after")]:
        out = tmp_path / f"kill-{k}-{when}"
        proc = subprocess.run([sys.executable, str(script), str(k), when, *args, "--out", str(out)],
                              capture_output=True, text=True)
        assert proc.returncode == -signal.SIGKILL, (k, when, proc.stderr[-500:])
        assert main([*args, "--out", str(out)]) == 0, (k, when)  # the same command finishes it
        index = json.loads((out / "sweep.json").read_text())
        assert [(p["dir"], p["status"], p["identity_sha256"]) for p in index["points"]] == \
            [(p["dir"], p["status"], p["identity_sha256"]) for p in ref["points"]], (k, when)
        assert not [p for p in out.rglob(".*.tmp")], (k, when)


def test_a_folder_killed_right_after_samples_was_created_is_accepted(task, tmp_path):
    ref = _reference(task, tmp_path)
    for i, extra in enumerate(([], [".index.json.x1y2.tmp"])):
        out = tmp_path / f"k{i}"
        (out / "samples").mkdir(parents=True)
        for name in extra:
            (out / "samples" / name).write_text("{")
        for flags in ([], ["--resume"]):
            rec = run(RunConfig(task=task, model="oracle", num_samples=8, batch_size=4, out=str(out),
                                resume=bool(flags), progress=False), log=lambda m: None)
            assert rec["identity_sha256"] == ref["identity_sha256"]


def test_a_failed_attempt_with_no_samples_does_not_block_a_retry(task, tmp_path):
    out = tmp_path / "r"
    with pytest.raises(CgmbenchError, match="non-finite"):
        run(RunConfig(task=task, model="nanmodel", num_samples=8, batch_size=8, out=str(out), progress=False),
            log=lambda m: None)
    assert SampleStore.open(out / "samples").index["shards"] == []
    rec = run(RunConfig(task=task, model="oracle", num_samples=4, out=str(out), progress=False), log=lambda m: None)
    assert rec["model"]["name"] == "oracle"


# -- item 8: one writer per folder ----------------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {repo!r})
    from cgmbench.run.lock import folder_lock
    with folder_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(600)
""")


def test_a_second_writer_is_refused_while_the_first_lives_and_a_killed_one_leaves_no_lock(task, tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER.format(repo=str(REPO)), str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for cmd in (["run", "--out", str(out)], ["run", "--out", str(out), "--resume"],
                    ["sweep", "--out", str(out)]):
            rc = main([cmd[0], "--task", task, "--model", "oracle", "--num-samples", "4", "--device", "cpu",
                       *cmd[1:]])
            err = one_line(capsys)
            assert rc == 2 and "in use by another cgmbench" in err, err
        assert not (out / "samples").exists()  # the refused writers touched nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert main(["run", "--task", task, "--model", "oracle", "--num-samples", "4", "--device", "cpu",
                 "--out", str(out)]) == 0  # the kernel dropped the killed holder's lock


@pytest.mark.slow
def test_concurrent_sweeps_on_one_folder_never_lose_an_update(task, tmp_path):
    """Two sweep processes started together on one folder: one runs, the other is refused with one line; the
    sweep.json the winner leaves lists every point it ran."""
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "cgmbench", "sweep", "--task", task, "--model", "noise", "--num-samples", "4",
           "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    if codes == [0, 0]:  # they did not overlap after all: the second found the point complete
        index = json.loads((out / "sweep.json").read_text())
        assert [p["status"] for p in index["points"]] == ["complete"]
    else:
        assert codes == [0, 2], results
        err = [e for rc, e in results if rc == 2][0].strip()
        assert "in use by another cgmbench" in err and "Traceback" not in err
        index = json.loads((out / "sweep.json").read_text())
        assert all(p["status"] == "complete" for p in index["points"])


# -- item 11: disks, limits, malformed files, hostile options ---------------------------------------------------


def _fail_on_call(monkeypatch, k: int, err: int):
    import cgmbench.atomic as atomic

    real, calls = atomic.os.fsync, [0]

    def fsync(fd):
        calls[0] += 1
        if calls[0] == k:
            raise OSError(err, os.strerror(err))
        return real(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_disk_full_at_a_write_is_one_line_and_resumable(task, tmp_path, capsys, monkeypatch, k):
    ref = _reference(task, tmp_path)
    out = tmp_path / "r"
    args = ["run", "--task", task, "--model", "oracle", "--num-samples", "8", "--batch-size", "4",
            "--out", str(out), "--device", "cpu"]
    with monkeypatch.context() as m:
        _fail_on_call(m, k, errno.ENOSPC)
        assert main(args) == 2
    assert "no space left on the device" in one_line(capsys)
    assert not list(out.rglob(".*.tmp"))
    assert main(args + ["--resume"]) == 0
    assert json.loads((out / "run.json").read_text())["identity_sha256"] == ref["identity_sha256"]


def test_read_only_folder_is_one_line(task, tmp_path, capsys, monkeypatch):
    _fail_on_call(monkeypatch, 1, errno.EROFS)
    assert main(["run", "--task", task, "--model", "oracle", "--num-samples", "4", "--out", str(tmp_path / "r"),
                 "--device", "cpu"]) == 2
    assert "read-only file system" in one_line(capsys)


@pytest.mark.slow
def test_file_size_limit_is_one_line_for_real(task, tmp_path):
    """A real EFBIG: the child's RLIMIT_FSIZE is below one shard (Python ignores SIGXFSZ)."""
    import resource

    out = tmp_path / "r"
    args = [sys.executable, "-m", "cgmbench", "run", "--task", task, "--model", "oracle", "--num-samples", "8",
            "--batch-size", "8", "--out", str(out), "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384)))
    assert proc.returncode == 2 and "file too large" in proc.stderr and "Traceback" not in proc.stderr
    assert subprocess.run(args + ["--resume"], env=env, capture_output=True).returncode == 0


def test_debug_flag_shows_the_traceback(task, tmp_path, monkeypatch):
    _fail_on_call(monkeypatch, 1, errno.ENOSPC)
    with pytest.raises(OSError):
        main(["--debug", "run", "--task", task, "--model", "oracle", "--num-samples", "4",
              "--out", str(tmp_path / "r"), "--device", "cpu"])


def test_hostile_options_leave_nothing_behind(task, tmp_path, capsys):
    out = tmp_path / "huge"
    assert main(["run", "--task", task, "--model", "oracle", "--num-samples", "100000000000", "--out", str(out),
                 "--device", "cpu"]) == 2
    assert "over the limit" in one_line(capsys) and not out.exists()
    f = tmp_path / "file"
    f.write_text("x")
    for target in (f, f / "sub"):
        assert main(["run", "--task", task, "--model", "oracle", "--num-samples", "4", "--out", str(target),
                     "--device", "cpu"]) == 2
        assert "not a folder" in one_line(capsys) or "is a file" in capsys.readouterr().err
    for cmd in (["run", "--task", task, "--model", "oracle"], ["fid", str(tmp_path), str(tmp_path)],
                ["score", str(tmp_path)], ["sweep", "--task", task, "--model", "oracle"]):
        assert main([*cmd, "--device", "tpu"]) == 2
        assert "not a device" in one_line(capsys)


@pytest.mark.parametrize("body, words", [
    ("a = " + "[" * 100000 + "]" * 100000, "nested too deeply"),
    (TASK.replace("size = 64", "size = -5", 1), "size must be an integer"),
    (TASK.replace("resolution = 32", "resolution = 4096"), "outside 8..1024"),
    (TASK + "# " + "x" * (2 * 1024 * 1024) + "\n", "over the 1048576-byte task file limit"),
])
def test_hostile_task_files_are_one_line(tmp_path, capsys, body, words):
    path = tmp_path / "faults-cc.toml"
    path.write_text(body)
    assert main(["run", "--task", str(path), "--model", "oracle", "--out", str(tmp_path / "r"),
                 "--device", "cpu"]) == 2
    assert words in one_line(capsys)
    assert not (tmp_path / "r").exists()


def _interrupted(task, tmp_path) -> Path:
    out = tmp_path / "r"
    run(RunConfig(task=task, model="oracle", num_samples=8, batch_size=4, out=str(out), progress=False),
        log=lambda m: None)
    (out / "run.json").unlink()
    return out


@pytest.mark.parametrize("mutate, words", [
    (lambda ix: ix["shards"][0].update(start="zero"), "start < stop"),
    (lambda ix: ix["shards"][0].update(file="../../x.npy"), "shards[0].file"),
    (lambda ix: ix.update(shards={"a": 1}), "shards must be a list"),
    (lambda ix: ix.update(sample_shape=[3, -1, 32]), "sample_shape"),
    (lambda ix: ix.update(config=[]), "config must be an object"),
])
def test_malformed_index_fields_are_one_line(task, tmp_path, capsys, mutate, words):
    out = _interrupted(task, tmp_path)
    path = out / "samples" / "index.json"
    index = json.loads(path.read_text())
    mutate(index)
    path.write_text(json.dumps(index))
    with pytest.raises(IntegrityError, match=words.replace("[", r"\[").replace("]", r"\]")):
        SampleStore.open(out / "samples")
    assert main(["run", "--task", task, "--model", "oracle", "--num-samples", "8", "--batch-size", "4",
                 "--out", str(out), "--device", "cpu", "--resume"]) == 2
    assert words in one_line(capsys)


def test_object_array_shard_is_one_line_in_plot_and_repaired_by_resume(task, tmp_path, capsys):
    import hashlib
    import io

    out = _interrupted(task, tmp_path)
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
    shard = out / "samples" / "00000000-00000004.npy"
    shard.write_bytes(buf.getvalue())
    path = out / "samples" / "index.json"
    index = json.loads(path.read_text())
    index["shards"][0]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    path.write_text(json.dumps(index))
    assert main(["plot", "samples", str(out), "--out", str(tmp_path / "grid.png")]) == 2
    assert "not a plain uint8 .npy array" in one_line(capsys)
    # --resume verifies every shard and regenerates the damaged one (samples are a function of their index)
    assert main(["run", "--task", task, "--model", "oracle", "--num-samples", "8", "--batch-size", "4",
                 "--out", str(out), "--device", "cpu", "--resume"]) == 0
    capsys.readouterr()
    assert np.load(shard, allow_pickle=False).dtype == np.uint8


def test_malformed_sweep_json_is_one_line(task, tmp_path, capsys):
    out = tmp_path / "s"
    args = ["sweep", "--task", task, "--model", "noise", "--num-samples", "4", "--device", "cpu", "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    index = json.loads((out / "sweep.json").read_text())
    for bad in ({**index, "points": "x"}, {**index, "points": [1]}, [1, 2]):
        (out / "sweep.json").write_text(json.dumps(bad))
        assert main(args) == 2
        err = one_line(capsys)
        assert "sweep" in err


def test_run_files_follow_the_umask(task, tmp_path):
    old = os.umask(0o022)
    try:
        run(RunConfig(task=task, model="oracle", num_samples=4, out=str(tmp_path / "r"), progress=False),
            log=lambda m: None)
    finally:
        os.umask(old)
    for p in [tmp_path / "r" / "run.json", *(tmp_path / "r" / "samples").iterdir()]:
        assert p.stat().st_mode & 0o777 == 0o644, p
