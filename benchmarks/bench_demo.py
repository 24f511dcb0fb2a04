"""Benchmark: how long ``cgmbench demo`` (and ``--quick``) takes on a fresh clone, run by run.

It runs :func:`cgmbench.demo.run_demo` into a new temporary folder with a new, empty ``CGMBENCH_HOME`` (so the
reference statistics of every task are computed, as on a fresh clone) and prints, per run, the wall seconds of
this session; then the total wall time, this process's CPU seconds (user + system) and the 1-minute load average
before and after. On a shared machine the wall time grows with the load, while the CPU seconds stay close to what
a quiet machine needs: with one torch thread, CPU seconds ≈ wall seconds when nothing else runs.

``--cores 2`` pins the process to two cores (``os.sched_setaffinity``), as on the 2-core machine the demo's
time budget is stated for (docs/benchmarks.md).

Run from the repository root::

    OMP_NUM_THREADS=1 python benchmarks/bench_demo.py [--quick] [--cores 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="time cgmbench demo --quick")
    ap.add_argument("--cores", type=int, default=None, help="pin to this many cores (default: all)")
    args = ap.parse_args()
    if args.cores:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:args.cores]))
    work = Path(tempfile.mkdtemp(prefix="cgmbench-bench-demo-"))
    os.environ["CGMBENCH_HOME"] = str(work / "home")  # nothing cached: a fresh clone
    from cgmbench.demo import run_demo

    load0, t0, c0 = os.getloadavg()[0], time.perf_counter(), _cpu()
    result = run_demo(work / "out", quick=args.quick, progress=False, log=lambda m: None)
    wall, cpu, load1 = time.perf_counter() - t0, _cpu() - c0, os.getloadavg()[0]
    print(f"cgmbench demo{' --quick' if args.quick else ''}: {len(result.seconds)} runs, "
          f"cores {len(os.sched_getaffinity(0))}, torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}")
    for name, s in result.seconds.items():
        print(f"  {s:7.1f} s  {name}")
    print(f"total wall {wall:.1f} s, process CPU {cpu:.1f} s; load average {load0:.1f} before, {load1:.1f} after")
    print(f"outputs in {result.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
