"""Fault injection: SIGKILL ``cgmbench run`` at random moments, resume, and check the record is the identical run.

For every shipped model on its shapes task (small N, few sampling steps) the script

1. makes one uninterrupted reference run in this process and times one uninterrupted ``cgmbench run`` in a forked
   child process (``T``: import, load, sample, score, write), noting when it starts writing (``W``: its output
   folder appears; imports and model loading come before);
2. ``--kills`` times: forks a child running ``cgmbench run`` into a fresh folder, sends SIGKILL after a delay
   drawn uniformly from ``[W - 0.1 s, T]``, notes what the kill left (nothing, ``samples/`` without an index, an index with
   k shards, a complete ``run.json``), then finishes the run the way a user would (``cgmbench run`` again, or
   ``--resume`` when the folder holds a started run) and compares ``identity_sha256`` (samples, metrics and
   configuration; timings and environment excluded) with the reference.

It prints one line per model and ``resumes identical / total``. Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_faults.py --kills 8 --seed 0
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: (model, task, knobs): every shipped model on its shapes task, few steps
MODELS = [
    ("oracle", "shapes-t2i", []),
    ("noise", "shapes-cc", []),
    ("dit", "shapes-cc", ["steps=4"]),
    ("ldm", "shapes-t2i", ["steps=4"]),
    ("sd3", "shapes-t2i", ["steps=4"]),
    ("pix2pix", "shapes-paired", []),
    ("cyclegan", "shapes-unpaired", []),
    # the families shipped later (issues 13-16)
    ("stackgan", "shapes-t2i", []),
    ("attngan", "shapes-t2i", []),
    ("parti", "shapes-t2i", []),
    ("latte", "shapes-t2v", ["steps=4"]),
    ("sdedit", "shapes-edit", ["steps=4"]),
    ("inpaint", "shapes-edit", ["steps=4"]),
    ("instruct-pix2pix", "shapes-edit", ["steps=4"]),
]


def _args(model, task, knobs, n, batch, out):
    a = ["run", "--task", task, "--model", model, "--num-samples", str(n), "--batch-size", str(batch),
         "--out", str(out), "--device", "cpu"]
    for k in knobs:
        a += ["--knob", k]
    return a


def _state(out: Path) -> str:
    """What a kill left in ``out``."""
    if (out / "run.json").is_file():
        return "complete"
    index = out / "samples" / "index.json"
    if index.is_file():
        try:
            return f"{len(json.loads(index.read_text())['shards'])} shards"
        except (OSError, ValueError, KeyError):
            return "index unreadable"
    if (out / "samples").is_dir():
        return "samples/ only"
    return "nothing" if not out.exists() or not any(out.iterdir()) else "other"


def _spawn(cli, args) -> int:
    """Fork a child that runs ``cgmbench ARGS`` (this process has imported everything already, so the kill
    window is the run itself: task, model loading, sampling, scoring, writing)."""
    pid = os.fork()
    if pid == 0:  # child
        try:
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            code = cli(args)
        except BaseException:  # noqa: BLE001
            code = 3
        os._exit(code)
    return pid


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=8, help="kills per model (default 8: 56 in all)")
    ap.add_argument("--num-samples", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    ap.add_argument("--models", help="comma-separated subset of the models")
    opts = ap.parse_args()

    import torch

    from cgmbench.cli.main import main as cli

    torch.set_num_threads(1)
    rng = random.Random(opts.seed)
    models = [m for m in MODELS if not opts.models or m[0] in opts.models.split(",")]
    root = Path(tempfile.mkdtemp(prefix="cgmbench-bench-faults-"))
    total = same = 0
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}; {os.cpu_count()} CPUs; "
          f"N={opts.num_samples}, batch {opts.batch_size}, {opts.kills} kills per model, seed {opts.seed}")
    t_all = time.perf_counter()
    try:
        for model, task, knobs in models:
            ref_out = root / f"{model}-ref"
            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                rc = cli(_args(model, task, knobs, opts.num_samples, opts.batch_size, ref_out))
            if rc != 0:
                print(f"{model}: reference run failed")
                return 1
            ref = json.loads((ref_out / "run.json").read_text())["identity_sha256"]
            timed = root / f"{model}-timed"
            t0 = time.perf_counter()
            pid = _spawn(cli, _args(model, task, knobs, opts.num_samples, opts.batch_size, timed))
            first = None
            while os.waitpid(pid, os.WNOHANG) == (0, 0):  # when the child starts writing (loading comes first)
                if first is None and timed.exists():
                    first = time.perf_counter() - t0
                time.sleep(0.01)
            wall = time.perf_counter() - t0
            first = max(0.0, (first if first is not None else 0.0) - 0.1)
            states, ok = [], 0
            for k in range(opts.kills):
                out = root / f"{model}-kill{k}"
                delay = rng.uniform(first, wall)  # uniform over the part of the run that writes
                pid = _spawn(cli, _args(model, task, knobs, opts.num_samples, opts.batch_size, out))
                t_kill = time.perf_counter() + delay
                while time.perf_counter() < t_kill and os.waitpid(pid, os.WNOHANG) == (0, 0):
                    time.sleep(0.002)
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass  # it had finished already
                states.append(_state(out))
                args = _args(model, task, knobs, opts.num_samples, opts.batch_size, out)
                with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                    rc = cli(args) if not (out / "samples" / "index.json").is_file() else cli(args + ["--resume"])
                if rc == 0 and json.loads((out / "run.json").read_text())["identity_sha256"] == ref:
                    ok += 1
                shutil.rmtree(out, ignore_errors=True)
            total += opts.kills
            same += ok
            kinds = {s: states.count(s) for s in sorted(set(states))}
            print(f"{model:9s} {task:16s} run {wall:5.1f} s (writes from {first:4.1f} s)  identical {ok}/{opts.kills}  killed at: "
                  + ", ".join(f"{s} x{c}" for s, c in kinds.items()), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"resumes identical / total: {same}/{total}  ({time.perf_counter() - t_all:.0f} s)")
    return 0 if same == total else 1


if __name__ == "__main__":
    sys.exit(main())
