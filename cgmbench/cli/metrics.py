"""Subcommands ``fid``, ``score`` and ``stats`` of the ``cgmbench`` command line (the metric harness).

* ``cgmbench fid A B [--protocol P] [--extractor E] [--extractor-weights PATH] [--json]``:
  FID between two folders of images (read with :func:`cgmbench.images.read_image`) or saved statistics
  (``.npz`` from ``cgmbench stats``); the number :func:`cgmbench.fid` returns (:mod:`cgmbench.scoring.fid`).
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
import warnings
from pathlib import Path

from cgmbench.scoring.evaluate import score_run, task_stats
from cgmbench.scoring.fid import fid, folder_batches  # noqa: F401  (folder_batches: re-exported for callers)


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def register(subparsers) -> None:
    """Add the ``fid``, ``score`` and ``stats`` parsers to ``subparsers``."""
    f = subparsers.add_parser(
        "fid", allow_abbrev=False, help="FID between two folders of images (or saved statistics)",
        description="Fréchet distance between the features of the images in DIR_A and DIR_B (files directly in "
                    "each folder: png, jpg, jpeg, bmp, webp, tif); either may instead be a .npz of statistics written by "
                    "`cgmbench stats`. The protocol (resize + normalisation), the "
                    "extractor and its weights' sha256 are printed with the number.")
    f.add_argument("dir_a")
    f.add_argument("dir_b")
    f.add_argument("--protocol", help="tf-exact, clean (default, or what given statistics record) or pytorch-fid")
    f.add_argument("--extractor", help="feature extractor (default inception-v3, or what given statistics record)")
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


def cmd_fid(args) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fid(args.dir_a, args.dir_b, args.protocol, args.extractor, args.extractor_weights,
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
