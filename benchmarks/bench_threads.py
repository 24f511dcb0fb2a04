"""CPU threads vs sampling time: the evidence behind ``cgmbench.threads``' default (issue 18).

Samples the shipped tiny SD3 (``sd3:shapes-t2i-tiny``, micro-batch 1 as a CPU run without ``--batch-size``) with
each thread count in ABBA order and prints wall seconds, the 1-minute load average before each timing, and what
``cgmbench.threads.default_threads()`` would choose. On a shared machine the load average says how many cores other
jobs already keep busy; torch's default (one thread per core) then makes the threads wait for each other.

Usage: ``PYTHONPATH=. python benchmarks/bench_threads.py [--threads 1,2] [--samples 8] [--steps 10] [--repeats 2]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch

    from cgmbench.conditions import Conditions
    from cgmbench.models.registry import load_model
    from cgmbench.sources.base import open_source
    from cgmbench.spec.task import load_task
    from cgmbench.threads import default_threads, physical_cores

    task = load_task("shapes-t2i")
    model = load_model("sd3:shapes-t2i-tiny", task)
    model.micro_batch = 1
    texts = open_source(task).conditions(list(range(args.samples))).texts
    cond = Conditions(kind="text", indices=list(range(args.samples)), texts=texts)
    counts = [int(t) for t in args.threads.split(",")]
    order = [c for r in range(args.repeats) for c in (counts if r % 2 == 0 else counts[::-1])]
    times: dict[int, list[float]] = {c: [] for c in counts}
    print(f"torch {torch.__version__}; {os.cpu_count()} logical CPUs, {physical_cores()} physical core(s) usable; "
          f"sd3:shapes-t2i-tiny, {args.samples} samples x {args.steps} steps, micro-batch 1")
    for c in order:
        torch.set_num_threads(c)
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        with torch.inference_mode():
            model.generate(cond, list(range(args.samples)), steps=args.steps)
        dt = time.perf_counter() - t0
        times[c].append(dt)
        print(f"threads {c}: {dt:7.2f} s   (load average before: {load:.2f}; default_threads() -> "
              f"{default_threads()})")
    for c in counts:
        print(f"threads {c}: median {statistics.median(times[c]):.2f} s over {len(times[c])}")


if __name__ == "__main__":
    main()
