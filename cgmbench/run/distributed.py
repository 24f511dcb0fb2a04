"""Sharded sampling on ``torchrun``: ``torchrun --nproc_per_node N -m cgmbench run --task T --model M …``.

When ``WORLD_SIZE > 1`` (set by torchrun), :func:`run_distributed` replaces :func:`cgmbench.run.runner.run`:

1. Rank 0 opens (or, with ``--resume``, reopens and checks) the output folder and its sample
   store exactly as a single-process run does; the outcome (ready / already complete / an error
   message) is broadcast, so every rank stops with the same error instead of hanging.
2. The missing sample indices are cut into batches exactly as the single-process runner cuts
   them (contiguous runs, ``batch_size`` each) and batch ``b`` goes to rank ``b mod WORLD_SIZE``
   (round robin over batches: the shards of the store are contiguous index ranges, so sharding is
   by batch rather than by single index ``i mod WORLD_SIZE``).
3. Each rank writes its shard files into the one store folder (names are index ranges, disjoint
   by construction) and lists them in its own ``samples/index.rank{r}.json``, each write atomic.
   ``samples/index.json`` is never written by two processes: only rank 0 touches it.
4. After a barrier that also collects every rank's status (a failed rank fails all), rank 0
   merges the per-rank indices into ``index.json`` (checking every shard's SHA-256), deletes
   them, scores the complete store with :func:`cgmbench.scoring.harness.compute_metrics` and writes
   ``run.json``. The record is broadcast so every rank returns it.

Sample ``i`` depends only on ``(seed, task, i)`` (:mod:`cgmbench.seeding`), so samples,
``samples_sha256``, metrics and ``identity_sha256`` equal those of a 1-process run; the world
size is noted in ``timings`` (outside the identity). A killed distributed run resumes with
``--resume`` under any world size: rank 0 first folds leftover ``index.rank*.json`` files of the
previous attempt into the store.

Metric statistics are computed by rank 0 over the merged store (for the judge: the per-sample
scores of all ranks in index order, then one bootstrap), which makes them identical to a 1-rank
run by construction.

Processes talk over ``gloo`` (only small Python objects are exchanged), also on GPUs; each rank
uses ``cuda:LOCAL_RANK`` when the device is CUDA.

Multi-node on Slurm (one torchrun per node, rendezvous on the first node)::

    #!/bin/bash
    #SBATCH --nodes=2 --ntasks-per-node=1 --gpus-per-node=8 --cpus-per-task=32
    head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    srun torchrun --nnodes "$SLURM_NNODES" --nproc_per_node 8 \\
        --rdzv_id "$SLURM_JOB_ID" --rdzv_backend c10d --rdzv_endpoint "$head:29500" \\
        -m cgmbench run --task coco-t2i --model sd3 --num-samples 30000 --out /shared/runs/sd3-coco --resume

The output folder must be on a file system every node sees.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from datetime import timedelta

from cgmbench.errors import CgmbenchError

RANK_INDEX = "index.rank{rank}.json"


def world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (``(0, 1, 0)`` outside torchrun)."""
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")))


def is_distributed() -> bool:
    return world()[1] > 1


def rank() -> int:
    return world()[0]


def batches(missing: list[int], batch_size: int) -> list[tuple[int, int]]:
    """``[(start, stop)]``: contiguous runs of ``missing`` cut into pieces of ``batch_size``."""
    out = []
    if not missing:
        return out
    run_start = prev = missing[0]
    for i in missing[1:] + [None]:
        if i is None or i != prev + 1:
            out += [(s, min(s + batch_size, prev + 1)) for s in range(run_start, prev + 1, batch_size)]
            run_start = i
        prev = i if i is not None else prev
    return out


def rank_indices(missing: list[int], batch_size: int, rank: int, world_size: int) -> list[int]:
    """The sample indices rank ``rank`` makes: batch ``b`` of :func:`batches` when ``b % world_size == rank``."""
    return [i for b, (s, e) in enumerate(batches(missing, batch_size)) if b % world_size == rank
            for i in range(s, e)]


def _rank_store_class():
    from cgmbench.run.samples import SampleStore

    class RankShardStore(SampleStore):
        """A rank's view of the shared store folder: its shards listed in ``index.rank{r}.json``."""

        def __init__(self, root, index, rank):
            super().__init__(root, index)
            self.rank = rank

        def _save(self):
            from cgmbench.atomic import atomic_write_json

            atomic_write_json(self.root / RANK_INDEX.format(rank=self.rank), self.index)

    return RankShardStore


def merge_rank_indices(store) -> int:
    """Fold every ``index.rank*.json`` of ``store``'s folder into its index; returns shards added."""
    added = 0
    for path in sorted(store.root.glob("index.rank*.json")):
        try:
            part = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            path.unlink()  # a torn write cannot happen (atomic); unreadable means foreign: drop it
            continue
        have = {(s["start"], s["stop"]) for s in store.index["shards"]}
        for shard in part.get("shards", []):
            if (shard["start"], shard["stop"]) in have:
                continue
            try:
                store._load_shard(shard)  # checks the file's name, SHA-256, dtype and shape
            except CgmbenchError:
                continue  # damaged: its samples stay missing and are generated again
            store.index["shards"].append(shard)
            added += 1
        path.unlink()
    store.index["shards"].sort(key=lambda s: s["start"])
    store._save()
    return added


def _init(device: str):
    import torch.distributed as dist

    owns = False
    if not dist.is_initialized():
        timeout = timedelta(seconds=float(os.environ.get("CGMBENCH_DIST_TIMEOUT_S", 6 * 3600)))
        dist.init_process_group(backend="gloo", init_method="env://", timeout=timeout)
        owns = True
    return dist, owns


def _bcast(dist, obj):
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def run_distributed(cfg, log=print) -> dict:
    """:func:`cgmbench.run.runner.run` for one rank of a torchrun job (see the module docstring)."""
    import torch

    from cgmbench.run.record import load_record
    from cgmbench.run.steps import finish, open_store, prepare, sample_into, utc_now
    from cgmbench.run.samples import SampleStore
    from cgmbench.sources.base import open_source

    r, w, local = world()
    device = cfg.device
    if str(device).startswith("cuda") and torch.cuda.is_available():
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    dist, owns = _init(device)
    import contextlib

    from cgmbench.run.lock import folder_lock

    locks = contextlib.ExitStack()  # rank 0 holds the output folder's lock for the whole run
    try:
        t0 = time.perf_counter()
        started = utc_now()
        status = None
        try:
            p = prepare(replace(cfg, device=device), log if r == 0 else None)
            task, n, out = p.task, p.n, p.out
            if r == 0:
                locks.enter_context(folder_lock(out, "run"))
                store = open_store(out, p.config, cfg.resume, p.sample_shape)
                if (out / "run.json").is_file() and not getattr(store, "repaired", []):
                    status = ("complete", load_record(out / "run.json"))
                else:
                    merge_rank_indices(store)  # leftovers of an interrupted distributed attempt
                    status = ("ready", None)
        except CgmbenchError as e:
            status = ("error", str(e))
        statuses = [None] * w
        dist.all_gather_object(statuses, status)  # rank 0's verdict, and any rank's own error
        for rr, st in enumerate(statuses):
            if st is not None and st[0] == "error":
                raise CgmbenchError(st[1] if rr == 0 else f"rank {rr}: {st[1]}")
        verdict, record = statuses[0]
        if verdict == "complete":
            if r == 0:
                log(f"{out}: run already complete")
            return record

        # -- sampling: every rank its batches, its own index file ---------------------------------
        shared = SampleStore.open(out / "samples")
        missing = shared.missing(n)
        mine = rank_indices(missing, cfg.batch_size, r, w)
        RankShardStore = _rank_store_class()
        rank_store = RankShardStore(shared.root, {**shared.index, "shards": []}, r)
        t_sample = time.perf_counter()
        error = None
        try:
            if mine:
                source = open_source(task, "conditions")
                sample_into(p.model, task, source, rank_store, mine, cfg, p.knobs, p.sample_shape, n)
        except CgmbenchError as e:
            error = str(e)
        except Exception as e:  # noqa: BLE001 - reported to every rank, then re-raised here
            error = f"{type(e).__name__}: {e}"
        sampling_s = time.perf_counter() - t_sample
        errors = [None] * w
        dist.all_gather_object(errors, error)  # doubles as the barrier before merging
        for rr, e in enumerate(errors):
            if e is not None:
                raise CgmbenchError(f"rank {rr} failed while sampling: {e}", "fix it and continue with --resume")

        # -- rank 0: merge, score, record ----------------------------------------------------------
        record = None
        if r == 0:
            store = SampleStore.open(out / "samples")
            merge_rank_indices(store)
            timings = {"started_at": started, "sampling_s": round(sampling_s, 3),
                       "samples_this_session": len(missing), "batch_size": cfg.batch_size, "world_size": w}
            record = finish(p, replace(cfg, device=device), store, timings, t0)
        return _bcast(dist, record)
    finally:
        locks.close()
        if owns:
            dist.destroy_process_group()
