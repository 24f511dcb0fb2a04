"""Scoring samples against a task outside a run: ``cgmbench score``, ``cgmbench stats`` and :func:`cgmbench.evaluate`.

* :func:`evaluate` scores a run folder, a sample store (``…/samples`` with its ``index.json``) or a uint8
  array against a task and returns the metrics dict of a run record (nothing is written). Sample ``i`` is
  scored against condition ``i`` of the task, as in a run.
* :func:`score_run` recomputes a run's metrics and rewrites its ``run.json`` (``cgmbench score``).
* :func:`task_stats` computes (or loads and verifies) a task's cached reference statistics (``cgmbench stats``).
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from cgmbench.errors import CgmbenchError
from cgmbench.run.samples import SampleStore


def _log(message: str) -> None:
    print(message, file=sys.stderr)


class ArraySamples(SampleStore):
    """A read-only sample store over an in-memory uint8 array (one shard)."""

    def __init__(self, samples: np.ndarray):
        self.samples = np.ascontiguousarray(samples)
        super().__init__("<array>", {"format": "in-memory", "config": {}, "sample_shape": list(samples.shape[1:]),
                                     "shards": [{"file": "<array>", "start": 0, "stop": len(samples)}]})

    def _save(self) -> None:
        raise CgmbenchError("an in-memory sample array cannot be written to")

    def _load_shard(self, shard: dict) -> np.ndarray:
        return self.samples


def _task(task):
    from cgmbench.spec.task import TaskSpec, load_task

    return task if isinstance(task, TaskSpec) else load_task(str(task))


def _check_spec(task, recorded: str | None, where) -> None:
    if recorded is not None and recorded != task.sha256:
        raise CgmbenchError(f"the task spec of {task.name} changed since {where} was made "
                            f"({str(recorded)[:12]}… vs {task.sha256[:12]}…)",
                            "re-run the task, or restore the spec the samples were made with")


def _run_metrics(run_dir: Path, record: dict, options) -> tuple[dict, list[str]]:
    """The metrics of the run in ``run_dir`` (its record ``record``), recomputed from its samples."""
    from cgmbench.scoring.harness import compute_metrics
    from cgmbench.sources.base import open_source

    task = _task(record["task"]["name"])
    _check_spec(task, record["task"].get("spec_sha256"), "this run")
    sub = (record.get("samples") or {}).get("dir", "samples")
    if not isinstance(sub, str) or sub in ("", ".", "..") or "/" in sub or "\\" in sub:
        raise CgmbenchError(f"{run_dir}/run.json: samples.dir {str(sub)[:80]!r} is not a folder name inside the run "
                            "folder (paths that leave it are refused)")
    root = run_dir / sub
    if not SampleStore.exists(root):
        raise CgmbenchError(f"{root} holds no sample index (index.json)")
    store = SampleStore.open(root)
    n = int(record["n"])
    if store.digest(n) != record["samples_sha256"]:
        raise CgmbenchError(f"the samples in {root} do not match the record's samples_sha256",
                            "the samples were changed after the run; re-run it")
    metrics, pending = compute_metrics(task, open_source(task, "conditions"), store, n, options)
    # model-side metrics (cycle_error needs the model's reverse generator) cannot be recomputed from samples
    # alone: keep what the run recorded
    for name, entry in record["metrics"].items():
        if name not in metrics and any(p.startswith(f"{name}:") for p in pending) and name == "cycle_error":
            metrics[name] = entry
            pending = [p for p in pending if not p.startswith(f"{name}:")]
    return metrics, pending


def _load_run(run_dir: Path) -> dict:
    from cgmbench.run.record import load_record

    from cgmbench.safe_paths import check_folder

    path = check_folder(run_dir, "run folder") / "run.json"
    if not path.is_file():
        raise CgmbenchError(f"{run_dir} holds no run.json", "score a folder written by `cgmbench run`")
    return load_record(path)


def score_run(run_dir: str | Path, batch_size: int = 256, device: str = "cpu", extractor_weights: str | None = None,
              log=_log) -> dict:
    """Recompute the metrics of the run in ``run_dir`` and rewrite its ``run.json``; returns the record."""
    from cgmbench.run.record import finalize, write_record
    from cgmbench.scoring.harness import HarnessOptions

    run_dir = Path(run_dir)
    record = _load_run(run_dir)
    t0 = time.perf_counter()
    opts = HarnessOptions(batch_size=batch_size, device=device, extractor_weights=extractor_weights, log=log)
    record["metrics"], record["metrics_pending"] = _run_metrics(run_dir, record, opts)
    record.setdefault("timings", {})["metrics_s"] = round(time.perf_counter() - t0, 3)
    record["timings"]["rescored_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    finalize(record)
    write_record(run_dir / "run.json", record)
    return record


def evaluate(samples: Any, task=None, batch_size: int = 256, device: str = "cpu",
             extractor_weights: str | None = None, log=_log) -> dict:
    """Score ``samples`` against ``task``; returns the metrics dict of a run record (nothing is written).

    ``samples``: a run folder (its ``run.json`` names the task), a sample store folder (its ``index.json``
    names the task), or a uint8 array ``[N, 3, H, W]`` (video ``[N, T, 3, H, W]``; numpy or torch) whose
    sample ``i`` answers condition ``i`` of ``task``. ``task``: a name, a ``.toml`` path or a
    :class:`~cgmbench.spec.task.TaskSpec`; required for arrays, checked against the folder's otherwise.
    Metrics the task names that cannot be computed are reported with a :class:`UserWarning` each
    (``name: reason``), never faked.
    """
    from cgmbench.scoring.fid import as_uint8_images
    from cgmbench.scoring.harness import HarnessOptions, compute_metrics
    from cgmbench.sources.base import open_source

    opts = HarnessOptions(batch_size=batch_size, device=device, extractor_weights=extractor_weights, log=log)
    if isinstance(samples, (str, Path)):
        path = Path(samples)
        if (path / "run.json").is_file():
            record = _load_run(path)
            if task is not None and _task(task).name != record["task"]["name"]:
                raise CgmbenchError(f"{path} is a run of task {record['task']['name']}, not {_task(task).name}")
            metrics, pending = _run_metrics(path, record, opts)
        else:
            root = path if SampleStore.exists(path) else path / "samples"
            if not SampleStore.exists(root):
                raise CgmbenchError(f"{path} holds neither a run.json nor a sample index (index.json)",
                                    "pass a folder written by `cgmbench run`, its samples/ folder, or an array")
            store = SampleStore.open(root)
            spec = _task(task if task is not None else store.config.get("task"))
            if store.config.get("task") not in (None, spec.name):
                raise CgmbenchError(f"{root} holds samples of task {store.config['task']}, not {spec.name}")
            _check_spec(spec, store.config.get("task_spec_sha256"), "these samples")
            covered = store.covered()
            n = int(store.config.get("n", len(covered)))
            if len(covered) < n:
                raise CgmbenchError(f"{root} holds {len(covered)} of its {n} samples", "finish the run with --resume")
            metrics, pending = compute_metrics(spec, open_source(spec, "conditions"), store, n, opts)
    else:
        if task is None:
            raise CgmbenchError("evaluate(array) needs task=…", "e.g. cgmbench.evaluate(samples, task='shapes-t2i')")
        spec = _task(task)
        arr = as_uint8_images(samples, "samples")
        if tuple(arr.shape[1:]) != tuple(spec.sample_shape()):
            raise CgmbenchError(f"task {spec.name} samples are [N, {', '.join(map(str, spec.sample_shape()))}], "
                                f"got {list(arr.shape)}")
        if len(arr) < 1:
            raise CgmbenchError("evaluate() got no samples")
        metrics, pending = compute_metrics(spec, open_source(spec, "conditions"), ArraySamples(arr), len(arr), opts)
    for reason in pending:
        warnings.warn(f"metric pending: {reason}", UserWarning, stacklevel=2)
    return metrics


def task_stats(task_name: str, extractor: str | None = None, protocol: str | None = None,
               extractor_weights: str | None = None, max_images: int | None = None, batch_size: int = 256,
               device: str = "cpu", log=_log) -> list[dict]:
    """Compute (or load and verify) the reference statistics a task's metrics need."""
    from cgmbench.catalog import in_group
    from cgmbench.scoring.harness import default_clip_extractor, load_extractor
    from cgmbench.scoring.reference_stats import reference_stats

    task = _task(task_name)
    protocol = protocol or task.metric_settings.protocol
    compute = list(task.metric_settings.compute)
    wanted = []
    if extractor or in_group("features", compute):
        wanted.append((extractor or task.metric_settings.extractor, extractor_weights))
    if not extractor and "cmmd" in compute:
        wanted.append((default_clip_extractor(task), None))
    if not wanted:
        raise CgmbenchError(f"task {task.name} computes no metric that needs reference statistics "
                            f"({', '.join(compute)})", "pass --extractor to compute them anyway")
    out = []
    for name, weights in wanted:
        ext = load_extractor(name, protocol, weights, device)
        proto = ext.describe().get("protocol", {}).get("name", protocol) if name.startswith("clip-") else protocol
        t0 = time.perf_counter()
        stats = reference_stats(task, ext, proto, batch_size=batch_size, max_images=max_images, log=log)
        out.append({"task": task.name, "extractor": ext.name, "protocol": proto, "weights_sha256": ext.weights_sha256,
                    "official_weights": bool(ext.is_official_weights), "reference_stats_sha256": stats.key,
                    "n": stats.n, "feature_dim": int(stats.mu.shape[0]), "path": str(stats.path),
                    "seconds": round(time.perf_counter() - t0, 3)})
    return out
