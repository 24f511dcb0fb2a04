"""The steps of a run, shared by the one-process and the torchrun paths: prepare (task, model, knobs, output
folder), open the sample store, the one batch loop, and finish (score, write the record).

The flow is one way: task spec -> conditions -> generator -> samples -> metrics -> ``run.json``.

Resuming: the sample index is saved after every batch; ``--resume`` generates only the missing
indices (sample ``i`` depends only on ``(seed, task, i)``), so a run killed at any point ends with
exactly the samples and record of an uninterrupted run. An output folder that holds another run
is never touched; a complete record is only rewritten by ``--resume`` of the same run.
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from cgmbench.errors import CgmbenchError
from cgmbench.generator import NonFiniteSamples, nonfinite_policy
from cgmbench.run.config import RunConfig
from cgmbench.run.execution import choose_micro_batch, generate_with_memory_fallback
from cgmbench.run.lock import check_out_folder, is_pristine, remove_leftovers
from cgmbench.paths import runs_dir
from cgmbench.run.record import SCHEMA, environment, finalize, write_record
from cgmbench.models.registry import load_model
from cgmbench.run.samples import FORMAT as SAMPLES_FORMAT
from cgmbench.run.samples import SampleStore
from cgmbench.scoring.harness import compute_metrics
from cgmbench.scoring.resize import plan as resize_plan
from cgmbench.seeding import sample_seeds
from cgmbench.sources.base import open_source
from cgmbench.spec.task import load_task


#: most samples one run may hold (the index of a larger run would not fit in memory: refused before any write)
MAX_SAMPLES = 10_000_000


def default_out(task: str, model: str, knobs: dict, n: int, seed: int) -> Path:
    knob_part = "-".join(f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}" for k, v in sorted(knobs.items()))
    slug = re.sub(r"[^A-Za-z0-9._=-]+", "_", "-".join(p for p in (model, knob_part, f"n{n}", f"s{seed}") if p))
    return runs_dir() / task / slug


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Prepared:
    """A run's resolved configuration: the task, the loaded model, knobs and where it writes."""

    task: object
    model: object
    n: int
    knobs: dict
    checkpoint: dict | None
    sample_shape: tuple
    config: dict  # what identifies the run in samples/index.json
    out: Path
    resize: dict | None = None  # native/eval resolution and the resize protocol (run.json ``samples``)
    execution: dict | None = None  # threads and micro-batch (run.json ``environment``, not the identity)


def prepare(cfg: RunConfig, log=None) -> Prepared:
    """Load and validate the task, model and knobs of ``cfg`` (no file is written). Before the model is loaded the
    preflight (:mod:`cgmbench.run.preflight`) checks every file the run reads and names all missing ones at once;
    the CPU threads are set (:mod:`cgmbench.threads`) and the model's micro-batch chosen
    (:mod:`cgmbench.run.execution`)."""
    from cgmbench.run.preflight import check as preflight
    from cgmbench.threads import apply_threads

    task = load_task(cfg.task)
    n = cfg.num_samples if cfg.num_samples is not None else task.num_samples
    if n < 1:
        raise CgmbenchError(f"--num-samples must be >= 1, got {n}")
    if n > MAX_SAMPLES:
        raise CgmbenchError(f"--num-samples {n} is over the limit of {MAX_SAMPLES:,} samples per run",
                            "split the work into several runs (different --seed) or use fewer samples")
    if cfg.batch_size < 1:
        raise CgmbenchError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    threads, threads_from = apply_threads(getattr(cfg, "threads", None))
    preflight(task, cfg.model, cfg.checkpoint, bool(getattr(cfg, "allow_pending_metrics", False)), log)
    model = load_model(cfg.model, task, checkpoint=cfg.checkpoint, device=cfg.device)
    model.set_precision(cfg.precision)
    choose_micro_batch(model, cfg.batch_size, getattr(cfg, "micro_batch", None), cfg.device)
    knobs = model.resolve_knobs(cfg.knobs)
    ckpt = model.checkpoint.to_dict() if model.checkpoint else None
    resize = resize_plan(tuple(model.resolution), task)  # samples are stored at the model's resolution
    if task.is_video and getattr(model, "frames", None) and int(model.frames) != int(task.frames):  # issue 16
        raise CgmbenchError(f"model {model.name!r} makes {model.frames}-frame videos; task {task.name} needs "
                            f"{task.frames} frames", "choose a checkpoint made for this task's frame count")
    sample_shape = (*task.sample_shape()[:-2], *model.resolution)
    config = {
        "task": task.name, "task_spec_sha256": task.sha256, "model": cfg.model,
        "checkpoint_sha256": ckpt.get("sha256") if ckpt else None, "knobs": knobs, "n": n, "seed": cfg.seed,
        "sample_shape": list(sample_shape),
    }
    if cfg.precision != "fp32":  # fp32 runs keep the index identity they always had
        config["precision"] = cfg.precision
    if getattr(cfg, "allow_nonfinite", False):  # runs that refuse NaN/inf keep the identity they always had
        config["nonfinite"] = "allow"
    if resize["resize"] != "none":  # runs at the task's resolution keep the index identity they always had
        config.update({k: resize[k] for k in ("native_resolution", "eval_resolution", "resize")})
    out = Path(cfg.out) if cfg.out else default_out(task.name, cfg.model, knobs, n, cfg.seed)
    check_out_folder(out)
    return Prepared(task, model, n, knobs, ckpt, sample_shape, config, out, resize,
                    {"threads": threads, "threads_from": threads_from})


def finish(p: Prepared, cfg: RunConfig, store: SampleStore, timings: dict, t0: float, log=None) -> dict:
    """Score the complete sample store and write ``OUT/run.json``.

    ``timings`` (sampling figures of this session) gets ``metrics_s``, ``finished_at`` and ``total_s``
    (seconds since ``t0``). ``log`` (default: standard error) gets the line saying scoring starts and the
    metrics' warnings (``cgmbench: warning: ...``, e.g. an FID from fewer samples than feature dimensions)."""
    from cgmbench.scoring.harness import HarnessOptions

    log = log or (lambda m: print(m, file=sys.stderr))
    source = open_source(p.task, "conditions")
    t_metrics = time.perf_counter()
    log(f"{p.out}: scoring {p.n} samples ({', '.join(p.task.metric_settings.compute)})")
    metrics, pending = compute_metrics(p.task, source, store, p.n, HarnessOptions(log=log), model=p.model)
    timings["metrics_s"] = round(time.perf_counter() - t_metrics, 3)
    timings["finished_at"] = utc_now()
    timings["total_s"] = round(time.perf_counter() - t0, 3)
    record = {
        "schema": SCHEMA,
        "task": {"name": p.task.name, "kind": p.task.kind, "spec_sha256": p.task.sha256},
        "model": {"name": p.model.name, "spec": cfg.model, "checkpoint": p.checkpoint, "knobs": p.knobs,
                  "reference_model": bool(p.model.reference), "precision": p.model.precision},
        "n": p.n,
        "seed": cfg.seed,
        "samples": {"dir": "samples", "format": SAMPLES_FORMAT, "sample_shape": list(p.sample_shape),
                    "seeding": "sample i uses cgmbench.seeding.sample_seed(seed, task, i)",
                    **(p.resize or resize_plan(tuple(p.model.resolution), p.task))},
        "samples_sha256": store.digest(p.n),
        **({"nonfinite_samples": store.nonfinite_count()} if p.config.get("nonfinite") == "allow" else {}),
        "metrics": metrics,
        "metrics_pending": pending,
        "environment": {**environment(cfg.device), **(p.execution or {}),
                        "micro_batch": getattr(p.model, "micro_batch", None)},
        "timings": timings,
    }
    finalize(record)
    write_record(p.out / "run.json", record)
    return record


class DifferentRun(CgmbenchError):
    """``--resume`` into a folder whose samples were made with another configuration (task, model, checkpoint,
    knobs, N, seed)."""


def open_store(out: Path, config: dict, resume: bool, sample_shape) -> SampleStore:
    """Open (``resume``) or create the sample store of ``out``; call while holding ``out``'s lock
    (:func:`cgmbench.run.lock.folder_lock`). Leftovers of interrupted atomic writes are removed first, and a
    folder that a kill left before its first index write counts as new."""
    root = out / "samples"
    check_out_folder(out)
    if out.is_dir():
        remove_leftovers(out)
    if not (out / "run.json").is_file() and SampleStore.exists(root) and _holds_no_samples(root):
        # a run that failed or was killed before its first shard holds nothing of value: start it afresh,
        # so a retry with corrected options is not blocked by the index the failed attempt wrote
        if all(n == "samples" or (n.startswith(".") and n.endswith(".tmp")) for n in os.listdir(out)):
            (root / "index.json").unlink()
            return SampleStore.create(root, config, sample_shape)
    if (out / "run.json").is_file() or SampleStore.exists(root):
        if not resume:
            state = "a complete run" if (out / "run.json").is_file() else "an interrupted run"
            raise CgmbenchError(f"output folder {out} already holds {state}",
                                "continue it with --resume, or choose another --out")
        if not SampleStore.exists(root):
            raise CgmbenchError(f"output folder {out} has a run.json but no samples/index.json",
                                "choose another --out")
        store = SampleStore.open(root)
        if store.config != config:
            diff = sorted(k for k in set(config) | set(store.config) if config.get(k) != store.config.get(k))
            raise DifferentRun(f"output folder {out} holds a different run (differs in: {', '.join(diff)})",
                                "--resume continues only the same task, model, knobs, N and seed; "
                                "choose another --out")
        # every shard is verified on resume, also of a complete run; damaged or missing ones are unlisted and
        # regenerated (sample i depends only on (seed, task, i)): store.repaired says what was dropped
        store.repaired = store.drop_damaged()
        return store
    if out.exists() and not out.is_dir():
        raise CgmbenchError(f"--out {out} exists and is not a folder", "choose a new or empty folder for --out")
    if out.exists() and not is_pristine(out):
        raise CgmbenchError(f"output folder {out} is not empty and holds no cgmbench run",
                            "choose an empty or new --out")
    return SampleStore.create(root, config, sample_shape)


def _holds_no_samples(root: Path) -> bool:
    """True when ``root/index.json`` lists no shard and no other file lies beside it."""
    try:
        index = SampleStore.open(root).index
    except CgmbenchError:
        return False
    return not index["shards"] and all(n == "index.json" or n.startswith(".") for n in os.listdir(root))


def sample_into(model, task, source, store, missing, cfg, knobs, sample_shape, n):
    from tqdm import tqdm

    # contiguous runs of missing indices, cut into batches
    batches, run_start = [], missing[0]
    prev = run_start
    for i in missing[1:] + [None]:
        if i is None or i != prev + 1:
            for s in range(run_start, prev + 1, cfg.batch_size):
                batches.append((s, min(s + cfg.batch_size, prev + 1)))
            run_start = i
        prev = i if i is not None else prev
    bar = tqdm(total=n, initial=n - len(missing), desc=f"{task.name}/{cfg.model}", unit="sample",
               disable=not cfg.progress or not sys.stderr.isatty(), file=sys.stderr,
               leave=None)  # kept when it is the only bar; cleared beneath an outer one (cgmbench demo)
    allow = bool(getattr(cfg, "allow_nonfinite", False))
    with torch.inference_mode():
        for start, stop in batches:
            indices = list(range(start, stop))
            conditions = source.conditions(indices)
            seeds = sample_seeds(cfg.seed, task.name, indices)
            with nonfinite_policy(allow) as nonfinite:
                try:
                    samples = generate_with_memory_fallback(model, conditions, seeds, knobs)
                except NonFiniteSamples as e:
                    raise nonfinite_error(model, task, source, cfg, knobs, indices, e) from None
            if not isinstance(samples, torch.Tensor):
                raise CgmbenchError(f"model {model.name!r} returned {type(samples).__name__}, not a torch.Tensor")
            if samples.dtype != torch.uint8 or tuple(samples.shape) != (len(indices), *sample_shape):
                raise CgmbenchError(f"model {model.name!r} returned {samples.dtype} {tuple(samples.shape)}; "
                                    f"this run stores uint8 {(len(indices), *sample_shape)} (the model's resolution)")
            store.write_shard(start, np.ascontiguousarray(samples.cpu().numpy()), nonfinite=nonfinite["samples"])
            bar.update(len(indices))
    bar.close()


def nonfinite_error(model, task, source, cfg, knobs, indices, e: NonFiniteSamples) -> CgmbenchError:
    """The one-line error for NaN/inf model output, naming the model, checkpoint and first bad sample index
    (found again sample by sample when the model converted part of the batch at a time)."""
    first = indices[e.index] if e.batch == len(indices) else None
    if first is None:
        for i in indices:  # samples are a pure function of their index: regenerate one at a time
            try:
                with nonfinite_policy(False):
                    model.generate(source.conditions([i]), sample_seeds(cfg.seed, task.name, [i]), **knobs)
            except NonFiniteSamples:
                first = i
                break
    ckpt = model.checkpoint
    where = (f"checkpoint {ckpt.name!r}" + (f" ({ckpt.path})" if ckpt.path else "")
             + (f" sha256 {ckpt.sha256[:12]}…" if ckpt.sha256 else "")) if ckpt else "no checkpoint"
    at = f"sample {first}" if first is not None else f"samples {indices[0]}..{indices[-1]}"
    return CgmbenchError(f"model {model.name!r} with {where} produced non-finite values (NaN or inf) at {at}; "
                         "nothing of this batch was stored",
                         "the weights or knobs are broken: re-fetch or retrain the checkpoint, or pass "
                         "--allow-nonfinite to store them as 0/255 and record the count in run.json")
