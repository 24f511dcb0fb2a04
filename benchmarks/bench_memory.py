"""Benchmark: peak memory of moments-only statistics is independent of N.

Streams N = 1,000 and N = 10,000 random feature rows of d = 2048 (Inception pool3 size), generated
in chunks of ``--batch`` rows (no images), through

* ``StreamingMoments``: :class:`cgmbench.metrics.StreamingMoments` (``update`` per chunk, then
  ``compute``), the O(d^2) running mean and covariance the harness and ``cgmbench stats`` use;
* ``keep all + np.cov`` (the peer): every chunk is kept, then ``np.concatenate`` + ``np.mean`` +
  ``np.cov(rowvar=False)``, as a script that stores all features before computing FID does.

Each (method, N) runs in a fresh interpreter, so allocator caches of an earlier measurement do not hide
memory; libraries are imported and warmed (a small update/cov at d = 256) before measuring. Three measures:

* ``traced``: ``tracemalloc`` peak of Python/NumPy allocations. NumPy reports its buffers to tracemalloc,
  **torch's CPU allocator does not**: StreamingMoments' ``d x d`` float64 accumulator and its ``compute``
  temporaries are invisible here, so this column is a lower bound for that method;
* ``RSS``: increase of the resident-set high-water mark (Linux ``VmHWM``, reset through
  ``/proc/self/clear_refs``) over the resident set before the workload; it sees torch's buffers too;
* ``retained``: bytes the method holds once the stream ends (tensors of the StreamingMoments state;
  the kept rows for the peer): exact, noise-free.

The two ratios printed are 10k / 1k for each method (1.0 = independent of N) and peer / StreamingMoments
at each N. Run from the repository root: ``OMP_NUM_THREADS=1 python benchmarks/bench_memory.py``
(about 20-40 s on one core).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

try:
    from cgmbench.metrics import StreamingMoments
except ImportError:  # running from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from cgmbench.metrics import StreamingMoments

MIB = 2**20
METHODS = {"streaming": "StreamingMoments", "store": "keep all + np.cov"}


# -- measurement (runs in the child process) ------------------------------------------------------


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))
    except (OSError, AttributeError):
        return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _chunks(n: int, d: int, batch: int, seed: int = 1):
    """Random float64 feature rows, ``batch`` at a time (the only copy of each chunk is the caller's)."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, batch):
        yield rng.standard_normal((min(batch, n - start), d))


def run_streaming(n: int, d: int, batch: int) -> tuple[int, tuple]:
    moments = StreamingMoments(dim=d)
    for chunk in _chunks(n, d, batch):
        moments.update(chunk)
    state = sum(t.numel() * t.element_size() for t in (moments.shift, moments.sum, moments.sum_outer))
    return state, moments.compute()


def run_store(n: int, d: int, batch: int) -> tuple[int, tuple]:
    rows = list(_chunks(n, d, batch))
    retained = sum(r.nbytes for r in rows)
    feats = np.concatenate(rows)
    del rows
    return retained, (feats.mean(axis=0), np.cov(feats, rowvar=False))


RUNNERS = {"streaming": run_streaming, "store": run_store}


def measure(kind: str, n: int, d: int, batch: int) -> dict:
    """One measurement; returns peak traced MiB, RSS high-water increase MiB (or None), retained MiB, seconds."""
    RUNNERS[kind](600, 256, 250)  # warm up: imports, thread pools, BLAS buffers, first-call allocations
    can_reset = _reset_hwm()
    rss0 = _status_kib("VmRSS")
    tracemalloc.start()
    t0 = time.perf_counter()
    retained, (mu, sigma) = RUNNERS[kind](n, d, batch)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    hwm = _status_kib("VmHWM") if can_reset else None
    rss = (hwm - rss0) / 1024 if hwm is not None and rss0 is not None else None
    assert mu.shape == (d,) and sigma.shape == (d, d)
    return {"traced": peak / MIB, "rss": rss, "retained": retained / MIB, "seconds": seconds,
            "checksum": float(np.trace(sigma))}


# -- driver ------------------------------------------------------------------------------------


def child(kind: str, n: int, d: int, batch: int) -> dict:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--_child", kind, str(n), str(d), str(batch)],
                         check=True, capture_output=True, text=True).stdout.split()
    traced, rss, retained, seconds, checksum = out
    return {"traced": float(traced), "rss": None if rss == "nan" else float(rss), "retained": float(retained),
            "seconds": float(seconds), "checksum": float(checksum)}


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:6.2f}x" if a is not None and b else "    n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--sizes", type=int, nargs=2, default=(1_000, 10_000), metavar=("N_SMALL", "N_LARGE"))
    parser.add_argument("--batch", type=int, default=250, help="rows per generated chunk")
    parser.add_argument("--_child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        kind, n, d, batch = args._child
        r = measure(kind, int(n), int(d), int(batch))
        print(r["traced"], "nan" if r["rss"] is None else r["rss"], r["retained"], r["seconds"], r["checksum"])
        return

    d, batch = args.dim, args.batch
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}; "
          f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={threads}")
    print(f"d={d}, float64 rows generated in chunks of {batch}; d x d float64 = {d * d * 8 / MIB:.0f} MiB, "
          f"one fresh process per line")
    print(f"{'method':18s} {'N':>6s} {'traced MiB':>11s} {'RSS+ MiB':>9s} {'retained MiB':>13s} {'time s':>7s}")
    t_all = time.perf_counter()
    results: dict[tuple[str, int], dict] = {}
    for n in args.sizes:
        for kind, name in METHODS.items():
            r = results[kind, n] = child(kind, n, d, batch)
            rss = f"{r['rss']:9.1f}" if r["rss"] is not None else "      n/a"
            print(f"{name:18s} {n:6d} {r['traced']:11.1f} {rss} {r['retained']:13.1f} {r['seconds']:7.2f}")
        a, b = results["streaming", n]["checksum"], results["store", n]["checksum"]
        assert abs(a - b) <= 1e-9 * abs(b), f"the two methods disagree at N={n}: tr(sigma) {a} vs {b}"

    small, large = args.sizes
    print("\nratios (traced / RSS+ / retained):")
    for kind, name in METHODS.items():
        s, l_ = results[kind, small], results[kind, large]
        print(f"  {name:18s} N={large} / N={small}:  "
              + "  ".join(_ratio(l_[k], s[k]) for k in ("traced", "rss", "retained")))
    for n in args.sizes:
        s, p = results["streaming", n], results["store", n]
        print(f"  {'peer / streaming':18s} at N={n:<6d}:     "
              + "  ".join(_ratio(p[k], s[k]) for k in ("traced", "rss", "retained")))
    total = time.perf_counter() - t_all
    print(f"(same covariance from both methods, trace agrees to 1e-9 relative; total {total:.1f} s)")


if __name__ == "__main__":
    main()
