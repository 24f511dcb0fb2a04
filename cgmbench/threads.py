"""How many CPU threads torch may use: ``--threads N``, else ``CGMBENCH_THREADS``, else ``OMP_NUM_THREADS``, else a
default that does not oversubscribe a shared machine.

torch's own default is one thread per core, whatever else runs: on a busy 2-core machine that made CPU sampling ten
times slower than one thread (issue 18: sd3, N = 64, 399 s vs 36 s; measurements in ``docs/benchmarks.md``).
The default here is the **physical cores this process may use** (``os.sched_getaffinity``, hyper-threads counted
once) **minus the load already running** (the 1-minute load average, rounded), divided among the torchrun ranks of
this node (``LOCAL_WORLD_SIZE``), at least 1 and at most :data:`MAX_DEFAULT_THREADS`. The number chosen and where it
came from are recorded (``run.json`` ``environment.threads`` / ``environment.threads_from``).
"""

from __future__ import annotations

import os

#: the default never takes more: intra-op scaling of the sampling loops flattens out well before this, and a
#: shared node keeps cores for the other jobs (``--threads`` goes higher)
MAX_DEFAULT_THREADS = 8


def physical_cores() -> int:
    """Cores this process may run on, hyper-thread siblings counted once (Linux ``/sys`` topology)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1
    cores = set()
    for cpu in cpus:
        try:
            with open(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list") as f:
                cores.add(f.read().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def default_threads(cores: int | None = None, load: float | None = None, ranks: int | None = None) -> int:
    """The default (module docstring); ``cores``, ``load`` and ``ranks`` override what is read from the system."""
    cores = physical_cores() if cores is None else int(cores)
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    if ranks is None:
        ranks = int(os.environ.get("LOCAL_WORLD_SIZE") or 1)
    free = cores - int(round(load))
    return max(1, min(MAX_DEFAULT_THREADS, free // max(1, ranks)))


def resolve_threads(threads: int | None) -> tuple[int, str]:
    """``(threads, where the number came from)``: ``--threads``, ``CGMBENCH_THREADS``, ``OMP_NUM_THREADS`` or the
    default."""
    from cgmbench.errors import CgmbenchError

    if threads is not None:
        if threads < 1:
            raise CgmbenchError(f"--threads must be >= 1, got {threads}")
        return int(threads), "--threads"
    for var in ("CGMBENCH_THREADS", "OMP_NUM_THREADS"):
        text = os.environ.get(var, "").strip()
        if text:
            try:
                value = int(text)
            except ValueError:
                raise CgmbenchError(f"{var}={text!r} is not an integer", f"set {var} to a number of threads") from None
            if value < 1:
                raise CgmbenchError(f"{var}={value} must be >= 1")
            return value, var
    cores = physical_cores()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    return default_threads(cores, load), f"default: {cores} physical core(s), load {load:.2f}"


def apply_threads(threads: int | None) -> tuple[int, str]:
    """Set torch's intra-op threads; returns :func:`resolve_threads`'s ``(number, source)``."""
    import torch

    n, source = resolve_threads(threads)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n, source
