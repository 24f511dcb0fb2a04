"""How many CPU threads torch may use: ``--threads N``, else ``CGMBENCH_THREADS``, else a default that does not
oversubscribe a shared machine.

torch's own default is one thread per core, whatever else runs: on a busy 2-core machine that made CPU
sampling ten times slower than one thread (issue 18: sd3, N = 64, 399 s vs 36 s). The default here is the
cores this process may use (``os.sched_getaffinity``) minus the load already running (the 1-minute load
average), at least 1 and at most 8; the number chosen is recorded (``run.json`` ``environment.threads``)."""

from __future__ import annotations

import os

MAX_DEFAULT_THREADS = 8


def default_threads() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    try:
        busy = int(round(os.getloadavg()[0]))
    except (AttributeError, OSError):
        busy = 0
    return max(1, min(MAX_DEFAULT_THREADS, cores - busy))


def resolve_threads(threads: int | None) -> int:
    from cgmbench.errors import CgmbenchError

    if threads is None and os.environ.get("CGMBENCH_THREADS"):
        try:
            threads = int(os.environ["CGMBENCH_THREADS"])
        except ValueError:
            raise CgmbenchError(f"CGMBENCH_THREADS={os.environ['CGMBENCH_THREADS']!r} is not an integer") from None
    if threads is None:
        return default_threads()
    if threads < 1:
        raise CgmbenchError(f"--threads must be >= 1, got {threads}")
    return threads


def apply_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (and, unless set already, OMP/MKL for child processes); returns the number."""
    import torch

    n = resolve_threads(threads)
    torch.set_num_threads(n)
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    return n
