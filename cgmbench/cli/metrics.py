"""Subcommands ``fid``, ``score`` and ``stats`` of the ``cgmbench`` command line (the metric harness).

* ``cgmbench fid DIR_A DIR_B [--protocol P] [--extractor E] [--extractor-weights PATH] [--json]``:
  FID between two folders of images (read with :func:`cgmbench.images.read_image`).
* ``cgmbench score RUN_DIR``: recompute a run's metrics from its samples into its ``run.json``
  (atomically; ``identity_sha256`` recomputed with :func:`cgmbench.run.record.finalize`).
* ``cgmbench stats --task T``: compute (or verify) the task's cached reference statistics.

:func:`register` adds the parsers to the main parser's subparsers; :data:`COMMANDS` maps each
name to its handler (``handler(args) -> exit status``). User errors raise
:class:`~cgmbench.errors.CgmbenchError` (one line, exit status 2).
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from cgmbench.errors import CgmbenchError


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def register(subparsers) -> None:
    """Add the ``fid``, ``score`` and ``stats`` parsers to ``subparsers``."""
    f = subparsers.add_parser(
        "fid", allow_abbrev=False, help="FID between two folders of images",
        description="Fréchet distance between the features of the images in DIR_A and DIR_B (files directly in "
                    "each folder: png, jpg, jpeg, bmp, webp, tif). The protocol (resize + normalisation), the "
                    "extractor and its weights' sha256 are printed with the number.")
    f.add_argument("dir_a")
    f.add_argument("dir_b")
    f.add_argument("--protocol", default="clean", help="tf-exact, clean (default) or pytorch-fid")
    f.add_argument("--extractor", default="inception-v3", help="feature extractor (default inception-v3)")
    f.add_argument("--extractor-weights", metavar="PATH",
                   help="weights file to use instead of the official one (its sha256 is recorded and the result is "
                        "marked non-standard: official_weights false)")
    f.add_argument("--batch-size", type=int, default=64)
    f.add_argument("--device", default="cpu")
    f.add_argument("--json", action="store_true", help="print one JSON object (numeric top-level 'fid')")

    s = subparsers.add_parser(
        "score", allow_abbrev=False, help="recompute a run's metrics from its samples into its run.json",
        description="Recompute every metric the run's task names from the samples stored in RUN_DIR/samples and "
                    "rewrite RUN_DIR/run.json atomically (identity_sha256 recomputed).")
    s.add_argument("run_dir")
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--device", default="cpu")
    s.add_argument("--extractor-weights", metavar="PATH",
                   help="weights for the task's extractor instead of the official ones (marked non-standard)")

    st = subparsers.add_parser(
        "stats", allow_abbrev=False, help="compute and cache a task's reference statistics",
        description="Push the task's reference images through its extractor (and its CLIP extractor when the task "
                    "computes cmmd) and cache the moments and features under $CGMBENCH_HOME/stats/, keyed by the "
                    "images' content, the extractor, its weights' sha256, the protocol and the resolution.")
    st.add_argument("--task", required=True)
    st.add_argument("--extractor", help="override the task's extractor")
    st.add_argument("--protocol", help="override the task's protocol")
    st.add_argument("--extractor-weights", metavar="PATH")
    st.add_argument("--max-images", type=int, help="use only the first N reference images")
    st.add_argument("--batch-size", type=int, default=256)
    st.add_argument("--device", default="cpu")
    st.add_argument("--json", action="store_true")


# ------------------------------------------------------------------------------------ fid


def folder_batches(folder: str | Path, batch_size: int) -> tuple[int, Iterator[np.ndarray]]:
    """``(count, batches)``: uint8 ``[B, 3, H, W]`` batches of one size each, files in name order."""
    from cgmbench.images import list_images, read_image

    path = Path(folder)
    if not path.is_dir():
        raise CgmbenchError(f"image folder {path} does not exist or is not a folder")
    files = list_images(path)
    if not files:
        raise CgmbenchError(f"image folder {path} holds no images",
                            "expected .png, .jpg, .jpeg, .bmp, .webp or .tif files directly in the folder")

    def batches() -> Iterator[np.ndarray]:
        group: list[np.ndarray] = []
        for file in files:
            image = read_image(file)
            if group and (image.shape != group[0].shape or len(group) == batch_size):
                yield np.stack(group)
                group = []
            group.append(image)
        if group:
            yield np.stack(group)

    return len(files), batches()


def folder_fid(dir_a, dir_b, protocol: str = "clean", extractor: str = "inception-v3",
               extractor_weights: str | None = None, batch_size: int = 64, device: str = "cpu") -> dict:
    """FID between two image folders, with its provenance (the object ``cgmbench fid --json`` prints)."""
    from cgmbench.metrics import frechet_distance
    from cgmbench.scoring.harness import load_extractor, provenance
    from cgmbench.scoring.reference_stats import iter_feature_batches, stats_from_features

    if batch_size < 1:
        raise CgmbenchError(f"--batch-size must be >= 1, got {batch_size}")
    ext = load_extractor(extractor, protocol, extractor_weights, device)
    side = {}
    for label, folder in (("a", dir_a), ("b", dir_b)):
        count, batches = folder_batches(folder, batch_size)
        if count < 2:
            raise CgmbenchError(f"image folder {folder} holds {count} image; FID needs at least 2 per folder")
        try:
            mu, sigma, n, _ = stats_from_features(iter_feature_batches(ext, batches, batch_size), max_features=0)
        except ValueError as error:
            raise CgmbenchError(f"{folder}: {error}") from None
        side[label] = (mu, sigma, n)
    value = frechet_distance(side["a"][0], side["a"][1], side["b"][0], side["b"][1])
    prov = provenance(ext, protocol, method="Fréchet distance of float64 moments (symmetric eigen method)")
    return {"fid": value, **prov, "n_a": side["a"][2], "n_b": side["b"][2], "n": [side["a"][2], side["b"][2]],
            "dir_a": str(dir_a), "dir_b": str(dir_b)}


def cmd_fid(args) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = folder_fid(args.dir_a, args.dir_b, args.protocol, args.extractor, args.extractor_weights,
                            args.batch_size, args.device)
    for w in caught:
        _log(f"cgmbench: warning: {w.message}")
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        flag = "" if result["official_weights"] else "  [non-standard weights]"
        print(f"FID {result['fid']:.6f}  ({result['extractor']}, protocol {result['protocol']}, "
              f"N {result['n_a']} vs {result['n_b']}, weights sha256 {str(result['weights_sha256'])[:12]}…){flag}")
    return 0


# ------------------------------------------------------------------------------------ score


def score_run(run_dir: str | Path, batch_size: int = 256, device: str = "cpu", extractor_weights: str | None = None,
              log=_log) -> dict:
    """Recompute the metrics of the run in ``run_dir`` and rewrite its ``run.json``; returns the record."""
    from cgmbench.run.record import finalize, load_record, write_record
    from cgmbench.run.samples import SampleStore
    from cgmbench.scoring.harness import HarnessOptions, compute_metrics
    from cgmbench.sources.base import open_source
    from cgmbench.spec.task import load_task

    run_dir = Path(run_dir)
    path = run_dir / "run.json"
    if not path.is_file():
        raise CgmbenchError(f"{run_dir} holds no run.json", "score a folder written by `cgmbench run`")
    record = load_record(path)
    task = load_task(record["task"]["name"])
    if record["task"].get("spec_sha256") != task.sha256:
        raise CgmbenchError(f"the task spec of {task.name} changed since this run was made "
                            f"({str(record['task'].get('spec_sha256'))[:12]}… vs {task.sha256[:12]}…)",
                            "re-run the task, or restore the spec the run was made with")
    root = run_dir / record.get("samples", {}).get("dir", "samples")
    if not SampleStore.exists(root):
        raise CgmbenchError(f"{root} holds no sample index (index.json)")
    store = SampleStore.open(root)
    n = int(record["n"])
    if store.digest(n) != record["samples_sha256"]:
        raise CgmbenchError(f"the samples in {root} do not match the record's samples_sha256",
                            "the samples were changed after the run; re-run it")
    source = open_source(task, "conditions")
    t0 = time.perf_counter()
    opts = HarnessOptions(batch_size=batch_size, device=device, extractor_weights=extractor_weights, log=log)
    metrics, pending = compute_metrics(task, source, store, n, opts)
    # model-side metrics (cycle_error needs the model's reverse generator) cannot be recomputed from samples
    # alone: keep what the run recorded
    for name, entry in record["metrics"].items():
        if name not in metrics and any(p.startswith(f"{name}:") for p in pending) and name == "cycle_error":
            metrics[name] = entry
            pending = [p for p in pending if not p.startswith(f"{name}:")]
    record["metrics"], record["metrics_pending"] = metrics, pending
    record.setdefault("timings", {})["metrics_s"] = round(time.perf_counter() - t0, 3)
    record["timings"]["rescored_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    finalize(record)
    write_record(path, record)
    return record


def cmd_score(args) -> int:
    from cgmbench.scoring.harness import summary_value

    record = score_run(args.run_dir, args.batch_size, args.device, args.extractor_weights)
    for name, entry in record["metrics"].items():
        value = summary_value(entry)
        ci = entry.get("ci95") or (entry.get("overall") or {}).get("ci95")
        interval = f"  [{ci[0]:.4g}, {ci[1]:.4g}]" if ci else ""
        print(f"{name}: {value:.6g}{interval}" if value is not None else f"{name}: -")
    for p in record["metrics_pending"]:
        print(f"pending: {p}")
    print(f"wrote {Path(args.run_dir) / 'run.json'}")
    return 0


# ------------------------------------------------------------------------------------ stats


def task_stats(task_name: str, extractor: str | None = None, protocol: str | None = None,
               extractor_weights: str | None = None, max_images: int | None = None, batch_size: int = 256,
               device: str = "cpu", log=_log) -> list[dict]:
    """Compute (or load and verify) the reference statistics a task's metrics need."""
    from cgmbench.scoring.harness import FEATURE_METRICS, default_clip_extractor, load_extractor
    from cgmbench.scoring.reference_stats import reference_stats
    from cgmbench.spec.task import load_task

    task = load_task(task_name)
    protocol = protocol or task.metric_settings.protocol
    compute = list(task.metric_settings.compute)
    wanted = []
    if extractor or any(m in FEATURE_METRICS for m in compute):
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


def cmd_stats(args) -> int:
    rows = task_stats(args.task, args.extractor, args.protocol, args.extractor_weights, args.max_images,
                      args.batch_size, args.device)
    for row in rows:
        if args.json:
            print(json.dumps(row, sort_keys=True))
        else:
            print(f"{row['task']} {row['extractor']} ({row['protocol']}): N {row['n']}, "
                  f"reference_stats_sha256 {row['reference_stats_sha256']} -> {row['path']}")
    return 0


COMMANDS = {"fid": cmd_fid, "score": cmd_score, "stats": cmd_stats}
