"""Benchmark: cgmbench's Fréchet distance versus the ``scipy.linalg.sqrtm`` path.

Speed and agreement at d = 2048 (Inception pool3 size). Statistics come from synthetic
   ReLU features (low-rank structure + noise, full rank). Each method runs ``--repeats`` times
   in the same process; the median is reported with every individual time.

   * ``cgmbench``: :func:`cgmbench.metrics.frechet_distance` (Cholesky + symmetric eigenvalues);
   * ``sqrtm``: the TTUR / pytorch-fid / clean-fid / ADM formula ``tr sqrtm(sigma1 @ sigma2)``
     (called without the deprecated ``disp`` argument);
   * ``eigvals``: torch-fidelity >= 0.4 / torchmetrics, ``sum sqrt(eigvals(sigma1 @ sigma2))``.

Peak memory of streaming statistics: ``benchmarks/bench_memory.py``.

Run from the repository root: ``OMP_NUM_THREADS=2 python benchmarks/bench_frechet.py`` (add ``--quick`` for d = 512).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.linalg
import torch

try:
    from cgmbench.metrics import frechet_distance
except ImportError:  # running from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from cgmbench.metrics import frechet_distance


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--n", type=int, default=5000, help="feature rows per side for the statistics")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="d=512, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.dim, args.n, args.repeats = 512, 2000, 2

    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"torch {torch.__version__}; {os.cpu_count()} CPUs, OMP_NUM_THREADS={threads}")
    bench_speed(args.dim, args.n, args.repeats)


if __name__ == "__main__":
    main()
