"""``cgmbench run``: sample a task with a model, store the samples, score them, write the record.

The flow is one way: task spec -> conditions -> generator -> samples -> metrics -> ``run.json``.

Resuming: the sample index is saved after every batch; ``--resume`` generates only the missing
indices (sample ``i`` depends only on ``(seed, task, i)``), so a run killed at any point ends with
exactly the samples and record of an uninterrupted run. An output folder that holds another run
is never touched; a complete record is only rewritten by ``--resume`` of the same run.
"""

from __future__ import annotations

import time

from cgmbench.run.config import RunConfig
from cgmbench.run.distributed import is_distributed, run_distributed
from cgmbench.run.lock import folder_lock
from cgmbench.run.record import load_record
from cgmbench.run.steps import finish, open_store, prepare, sample_into, utc_now
from cgmbench.sources.base import open_source

__all__ = ["RunConfig", "run"]


def run(cfg: RunConfig, log=print) -> dict:
    """Run one configuration; returns the record (also written to ``OUT/run.json``).

    Under torchrun (``WORLD_SIZE`` > 1) every rank calls this with the same configuration and the sample
    indices are sharded over the ranks (:func:`cgmbench.run.distributed.run_distributed`)."""
    if is_distributed():
        return run_distributed(cfg, log=log)
    return _run_local(cfg, log)


def _run_local(cfg: RunConfig, log) -> dict:
    t0 = time.perf_counter()
    started = utc_now()
    p = prepare(cfg, log)
    with folder_lock(p.out, "run"):  # one writer per folder: a concurrent run or --resume is refused
        return _run_locked(p, cfg, log, t0, started)


def _run_locked(p, cfg: RunConfig, log, t0: float, started: str) -> dict:
    store = open_store(p.out, p.config, cfg.resume, p.sample_shape)
    record_path = p.out / "run.json"
    repaired = getattr(store, "repaired", [])
    for shard, problem in repaired:
        log(f"cgmbench: warning: {problem}; regenerating samples {shard.get('start')}..{shard.get('stop', 1) - 1}")
    if record_path.is_file() and not repaired:  # only reachable with --resume of the same run
        log(f"{p.out}: run already complete (every shard verified)")
        return load_record(record_path)

    missing = store.missing(p.n)
    t_sample = time.perf_counter()
    if missing:
        source = open_source(p.task, "conditions")
        sample_into(p.model, p.task, source, store, missing, cfg, p.knobs, p.sample_shape, p.n)
    if record_path.is_file():  # a complete run whose damaged shards were just regenerated
        record = load_record(record_path)
        if store.digest(p.n) == record.get("samples_sha256"):
            log(f"{p.out}: {len(repaired)} shard(s) regenerated; the samples are identical to the record's")
            return record
        log(f"{p.out}: regenerated samples differ from the record's samples_sha256; scoring them again")
    timings = {"started_at": started, "sampling_s": round(time.perf_counter() - t_sample, 3),
               "samples_this_session": len(missing), "batch_size": cfg.batch_size}
    return finish(p, cfg, store, timings, t0, log)


