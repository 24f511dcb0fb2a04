"""Sweep cost: a first sweep over a task, then the same sweep again (everything reused).

    OMP_NUM_THREADS=1 python benchmarks/bench_sweep.py [--model guided-toy] [--num-samples 256]

The second invocation of the same sweep finds every point complete and only reads the records
back; a second sweep into a *new* folder re-samples but shares the process-level and on-disk
reference caches (the metric harness's reference statistics under ``$CGMBENCH_HOME/stats``).
Prints wall-clock seconds and the ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--task", default="shapes-t2i")
    p.add_argument("--model", default="guided-toy", help="guided-toy (test generator) or any registered model")
    p.add_argument("--guidance", default="1.5,3,6")
    p.add_argument("--num-samples", type=int, default=256)
    args = p.parse_args()
    torch.set_num_threads(1)
    from cgmbench.models.registry import register_model
    from cgmbench.run.sweep import SweepConfig, parse_knob_grid, run_sweep

    if args.model == "guided-toy":
        from test_sweep import GuidedToy

        register_model("guided-toy", GuidedToy)
    grid = parse_knob_grid(args.guidance, None)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CGMBENCH_HOME"] = str(Path(tmp) / "home")  # a cold reference-statistics cache

        def sweep(out):
            t = time.perf_counter()
            run_sweep(SweepConfig(task=args.task, model=args.model, grid=grid, out=str(Path(tmp) / out),
                                  num_samples=args.num_samples, progress=False), log=lambda m: None)
            return time.perf_counter() - t

        first = sweep("a")
        again = sweep("a")
        fresh = sweep("b")
    pts = len(grid["guidance_scale"])
    print(f"task {args.task}, model {args.model}, {pts} points x N={args.num_samples}")
    print(f"first sweep (cold cache):    {first:8.3f} s")
    print(f"same sweep again (resume):   {again:8.3f} s   ratio {again / first:.4f}")
    print(f"second sweep, new folder:    {fresh:8.3f} s   ratio {fresh / first:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
