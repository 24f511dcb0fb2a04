"""Benchmark: cgmbench's Fréchet distance versus the ``scipy.linalg.sqrtm`` path, and streaming memory.

1. Speed and agreement at d = 2048 (Inception pool3 size). Statistics come from synthetic
   ReLU features (low-rank structure + noise, full rank). Each method runs ``--repeats`` times
   in the same process; the median is reported with every individual time.

   * ``cgmbench``: :func:`cgmbench.metrics.frechet_distance` (Cholesky + symmetric eigenvalues);
   * ``sqrtm``: the TTUR / pytorch-fid / clean-fid / ADM formula ``tr sqrtm(sigma1 @ sigma2)``
     (called without the deprecated ``disp`` argument);
   * ``eigvals``: torch-fidelity >= 0.4 / torchmetrics, ``sum sqrt(eigvals(sigma1 @ sigma2))``.

2. Peak memory of :class:`cgmbench.metrics.StreamingMoments` fed 1k versus 10k rows in batches
   (rows generated on the fly), next to the "keep every feature, then np.cov" approach.
   ``tracemalloc`` sees NumPy buffers only, so the resident-set high-water mark (Linux
   ``VmHWM``, reset through ``/proc/self/clear_refs``) is reported too; it covers torch's
   ``d x d`` accumulator.

Run from the repository root: ``OMP_NUM_THREADS=2 python benchmarks/bench_frechet.py`` (add ``--quick`` for d = 512).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import statistics
import time
import tracemalloc

from pathlib import Path

import numpy as np
import scipy
import scipy.linalg
import torch

try:
    from cgmbench.metrics import StreamingMoments, frechet_distance
except ImportError:  # running from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from cgmbench.metrics import StreamingMoments, frechet_distance


def fd_sqrtm(mu1, sigma1, mu2, sigma2) -> float:
    """The classic formula with ``scipy.linalg.sqrtm`` (real part of the trace)."""
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean).real)


def fd_eigvals(mu1, sigma1, mu2, sigma2) -> float:
    """torch-fidelity >= 0.4: eigenvalues of the non-symmetric product, complex square root."""
    diff = mu1 - mu2
    tr = np.sqrt(np.linalg.eigvals(sigma1 @ sigma2).astype(np.complex128)).real.sum()
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr)


def synthetic_statistics(rng: np.random.Generator, n: int, d: int, shift: float):
    """Mean/covariance of ReLU(z @ B + noise): realistic non-negative, correlated, full-rank features."""
    basis = rng.standard_normal((256, d)) / 16
    feats = np.maximum(rng.standard_normal((n, 256)) @ basis + 0.3 * rng.standard_normal((n, d)) + shift, 0)
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def time_method(fn, args, repeats: int) -> tuple[float, list[float]]:
    times, value = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn(*args)
        times.append(time.perf_counter() - t0)
    return value, times


def bench_speed(d: int, n: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    mu1, s1 = synthetic_statistics(rng, n, d, shift=0.0)
    mu2, s2 = synthetic_statistics(rng, n, d, shift=0.05)
    print(f"statistics: d={d}, N={n} per side, float64 (built in {time.perf_counter() - t0:.1f} s)")

    results = {}
    for name, fn in (("cgmbench", frechet_distance), ("sqrtm", fd_sqrtm), ("eigvals", fd_eigvals)):
        value, times = time_method(fn, (mu1, s1, mu2, s2), repeats)
        results[name] = (value, statistics.median(times))
        shown = ", ".join(f"{t:.2f}" for t in times)
        print(f"  {name:9s} FD = {value:.10f}   median {statistics.median(times):7.2f} s   (runs: {shown} s)")

    ours, t_ours = results["cgmbench"]
    for name in ("sqrtm", "eigvals"):
        value, t = results[name]
        rel = abs(ours - value) / abs(value)
        print(f"  {name:9s} / cgmbench: time ratio {t / t_ours:5.2f}x, |relative difference| {rel:.2e}")


def _vm_hwm_kib() -> int | None:
    """Reset and return the resident-set high-water mark (Linux); None where unsupported."""
    try:
        with open("/proc/self/status") as f:
            return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))
    except (OSError, AttributeError):
        return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _rss_kib() -> int | None:
    try:
        with open("/proc/self/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    except (OSError, AttributeError):
        return None


def measure(fn) -> tuple[float, float | None]:
    """(tracemalloc peak MiB, RSS high-water increase MiB or None) while running ``fn``."""
    can_reset = _reset_hwm()
    rss0 = _rss_kib()
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    hwm = _vm_hwm_kib() if can_reset else None
    rss_delta = (hwm - rss0) / 1024 if hwm is not None and rss0 is not None else None
    return peak / 2**20, rss_delta


def _workload(kind: str, n: int, d: int, batch: int) -> None:
    rng = np.random.default_rng(1)
    if kind == "streaming":
        m = StreamingMoments(dim=d)
        for start in range(0, n, batch):
            m.update(rng.standard_normal((min(batch, n - start), d)))
        m.compute()
    else:  # keep every row, then np.cov
        rows = [rng.standard_normal((min(batch, n - start), d)) for start in range(0, n, batch)]
        np.cov(np.concatenate(rows), rowvar=False)


def bench_memory(d: int, batch: int) -> None:
    """Each measurement runs in a fresh interpreter so allocator caches of earlier runs do not hide memory."""
    print(f"peak memory, d={d}, rows fed in batches of {batch} generated on the fly "
          f"(d x d float64 = {d * d * 8 / 2**20:.0f} MiB), one fresh process per line:")
    for n in (1_000, 10_000):
        for kind, name in (("streaming", "StreamingMoments"), ("store", "store all + np.cov")):
            out = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--_measure", kind, str(n), str(d), str(batch)],
                check=True, capture_output=True, text=True,
            ).stdout.split()
            traced, rss = float(out[0]), out[1]
            rss_txt = f"{float(rss):8.1f} MiB" if rss != "nan" else "     n/a"
            print(f"  N={n:6d}  {name:18s} tracemalloc peak {traced:8.1f} MiB   RSS high-water +{rss_txt}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--n", type=int, default=5000, help="feature rows per side for the statistics")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--quick", action="store_true", help="d=512, 2 repeats")
    parser.add_argument("--_measure", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._measure:  # child process of bench_memory
        kind, n, d, batch = args._measure
        traced, rss = measure(lambda: _workload(kind, int(n), int(d), int(batch)))
        print(traced, "nan" if rss is None else rss)
        return
    if args.quick:
        args.dim, args.n, args.repeats = 512, 2000, 2

    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"torch {torch.__version__}; {os.cpu_count()} CPUs, OMP_NUM_THREADS={threads}")
    bench_speed(args.dim, args.n, args.repeats)
    bench_memory(args.dim, args.batch)


if __name__ == "__main__":
    main()
