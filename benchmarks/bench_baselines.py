"""Every shipped baseline on its task next to ``oracle`` and ``noise``, and whether the issue's targets hold.

    OMP_NUM_THREADS=1 python benchmarks/bench_baselines.py [--num-samples 1000] [--tasks shapes-cc,...]
                                                           [--models dit,pix2pix,...] [--work DIR] [--device cpu]

Independent of the test suite: each (task, model) is an ordinary ``cgmbench run`` of the model's default shipped
checkpoint and knobs at seed 0, made through the public API
(:func:`cgmbench.results.shipped_boards.run_shipped`, i.e. :class:`cgmbench.run.config.RunConfig` +
:func:`cgmbench.run.runner.run` with ``resume``) into ``WORK/<task>/<model>-<digest>/``, the same folders
``cgmbench regenerate-leaderboards --work WORK`` uses: rerunning (or running after the leaderboards at the same
N) only reads the records back, and a retrained checkpoint gets a new folder. Prints one table: per task and model
the judge (overall, with its 95% interval), the task's distance (FID[shapes-cnn]; FVD for video) with its interval
and its ratio to the oracle's and to noise's on the same task, and the kind's adherence metric (CLIP score for
text-to-image, edit success and background PSNR for editing, motion accuracy for video); then every target of
issue 17 with the value it was checked on. N is the issue's 1,000 by default; a smaller N is quicker, but the FID
of N < 256 samples (d = 256 features) is biased upwards (for every row alike, the oracle's included).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

#: (task, models, metric, threshold, what): a target holds when the metric of the best (``any``) or of every
#: (``all``) listed model is at least the threshold
TARGETS = (
    ("shapes-cc", ("dit",), "judge", 0.90, "all"),
    ("shapes-paired", ("pix2pix",), "judge", 0.85, "all"),
    ("shapes-unpaired", ("cyclegan",), "judge", 0.50, "all"),
    ("shapes-t2i", None, "judge", 0.50, "any"),   # None: every shipped baseline of the task
    ("shapes-t2i", None, "judge", 0.25, "all"),
    ("shapes-t2v", ("latte",), "judge", 0.40, "all"),
)
#: every shipped model's distance must be within this factor of the oracle's on its task
DISTANCE_FACTOR = 5.0
#: the kind's adherence columns (beside judge and the distance)
ADHERENCE = {"text-to-image": ("clip_score",), "editing": ("edit_success", "psnr_bg"),
             "text-to-video": ("motion_accuracy",)}


def entry(rec: dict, metric: str) -> tuple[float, tuple[float, float] | None] | None:
    """``(value, ci95)`` of ``metric`` in a run record (judge: its overall entry); None when not recorded."""
    m = rec["metrics"].get(metric)
    if m is None:
        return None
    m = m["overall"] if metric == "judge" else m
    ci = m.get("ci95")
    return float(m["value"]), (float(ci[0]), float(ci[1])) if ci else None


def cell(e) -> str:
    if e is None:
        return "-"
    v, ci = e

    def f(x):
        return f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}" if abs(x) < 1000 else f"{x:.0f}"
    return f"{f(v)} [{f(ci[0])}, {f(ci[1])}]" if ci else f(v)


def distance_metric(rec: dict) -> str | None:
    return next((m for m in ("fid", "fvd") if m in rec["metrics"]), None)


def main() -> int:
    from cgmbench.results.shipped_boards import REFERENCE_MODELS, SHIPPED_BASELINES, run_shipped
    from cgmbench.spec.task import load_task

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num-samples", type=int, default=1000, help="samples per run (default 1000, the issue's N)")
    p.add_argument("--tasks", help=f"comma-separated (default: {','.join(SHIPPED_BASELINES)})")
    p.add_argument("--models", help="comma-separated shipped baselines (default: all); oracle and noise always run")
    p.add_argument("--work", default=None, help="folder of the runs (default: $CGMBENCH_RUNS/leaderboards, as "
                                                "cgmbench regenerate-leaderboards)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    tasks = args.tasks.split(",") if args.tasks else list(SHIPPED_BASELINES)
    models = set(args.models.split(",")) if args.models else None
    for t in tasks:
        if t not in SHIPPED_BASELINES:
            p.error(f"--tasks: {t} has no shipped baseline (tasks: {', '.join(SHIPPED_BASELINES)})")
    known = {m for ms in SHIPPED_BASELINES.values() for m in ms}
    if models and models - known:
        p.error(f"--models: {', '.join(sorted(models - known))} not shipped (models: {', '.join(sorted(known))})")

    records: dict[tuple[str, str], dict] = {}
    seconds: dict[tuple[str, str], float] = {}
    for task in tasks:
        wanted = [m for m in SHIPPED_BASELINES[task] if not models or m in models]
        if not wanted:
            continue
        for model in (*REFERENCE_MODELS, *wanted):
            t0 = time.perf_counter()
            _, rec = run_shipped(task, model, args.num_samples, seed=args.seed, batch_size=args.batch_size,
                                 device=args.device, work=args.work, log=lambda m: print(m, file=sys.stderr))
            records[task, model] = rec
            seconds[task, model] = time.perf_counter() - t0

    header = ["task", "model", "judge [95% CI]", "distance [95% CI]", "/oracle", "/noise", "adherence [95% CI]",
              "s"]
    rows = []
    for (task, model), rec in records.items():
        dist = distance_metric(rec)
        d = entry(rec, dist) if dist else None
        ratios = []
        for ref in REFERENCE_MODELS:
            r = entry(records[task, ref], dist) if dist else None
            ratios.append(f"{d[0] / r[0]:.2f}" if d and r and r[0] > 0 else "-")
        adh = [f"{m} {cell(entry(rec, m))}" for m in ADHERENCE.get(rec["task"]["kind"], ()) if m in rec["metrics"]]
        rows.append([task, model, cell(entry(rec, "judge")), f"{dist} {cell(d)}" if dist else "-", *ratios,
                     "; ".join(adh) or "-", f"{seconds[task, model]:.0f}"])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"N = {args.num_samples}, seed {args.seed}; distance = FID[shapes-cnn] (FVD for video), /oracle and "
          f"/noise = its ratio to the reference model's on the same task; s = wall-clock seconds of this call")
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())

    print("\ntargets (issue 17; checked on the point value, the 95% interval beside it):")
    holds_all = True
    for task, names, metric, threshold, how in TARGETS:
        names = names or SHIPPED_BASELINES[task]
        got = {m: entry(records[task, m], metric) for m in names if (task, m) in records}
        what = f"{'best' if how == 'any' else 'each'} of {','.join(names)} on {task}: {metric} >= {threshold:.2f}"
        if not got or any(v is None for v in got.values()):
            print(f"  not run  {what}")
            continue
        ok = (max if how == "any" else min)(v[0] for v in got.values()) >= threshold
        holds_all &= ok
        print(f"  {'holds' if ok else 'FAILS'}    {what}: " + ", ".join(f"{m} {cell(v)}" for m, v in got.items()))
    for task in tasks:
        if (task, "oracle") not in records:
            continue
        dist = distance_metric(records[task, "oracle"])
        if dist is None:
            continue
        ref = entry(records[task, "oracle"], dist)[0]
        shipped = {m: entry(rec, dist)[0] for (t, m), rec in records.items() if t == task
                   and m not in REFERENCE_MODELS and dist in rec["metrics"]}
        if not shipped:
            continue
        over = {m: v / ref for m, v in shipped.items() if v > DISTANCE_FACTOR * ref}
        holds_all &= not over
        print(f"  {'holds' if not over else 'FAILS'}    each shipped model on {task} ({load_task(task).kind}): "
              f"{dist} <= {DISTANCE_FACTOR:g} x oracle's {ref:.1f}"
              + (": " + ", ".join(f"{m} {r:.1f}x" for m, r in over.items()) if over else ""))
    print(f"\nall targets that ran hold: {'yes' if holds_all else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
