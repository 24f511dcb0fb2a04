"""Subcommands ``sweep``, ``leaderboard``, ``plot`` and ``submit`` of the ``cgmbench`` command line.

:func:`register` adds their parsers to the main parser's subparsers; :data:`COMMANDS` maps each
name to its handler (``handler(args) -> exit status``). User errors raise
:class:`~cgmbench.errors.CgmbenchError`, which the main CLI prints as one line (exit 2).
"""

from __future__ import annotations

import sys

from cgmbench.errors import CgmbenchError
from cgmbench.run.config import add_run_options


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def register(subparsers) -> None:
    """Add the ``sweep``, ``leaderboard``, ``plot`` and ``submit`` parsers to ``subparsers``."""
    s = subparsers.add_parser(
        "sweep", allow_abbrev=False, help="one run per knob value (guidance sweeps); resumable",
        description="Run MODEL on TASK at every point of a knob grid (cartesian product), each point an "
                    "ordinary run in its own folder under OUT, indexed in OUT/sweep.json. Complete points are "
                    "skipped and interrupted ones continue, so re-running the command resumes the sweep. "
                    "Without --guidance/--knob the task's [sweep] table is used.")
    add_run_options(s)
    s.add_argument("--guidance", help="guidance scales, comma-separated (knob guidance_scale), e.g. 1,1.5,2")
    s.add_argument("--knob", action="append", metavar="NAME=V1,V2",
                   help="values of another knob, comma-separated (repeatable), e.g. truncation=0.5,0.7,1")
    s.add_argument("--set", action="append", metavar="NAME=VALUE", dest="fixed",
                   help="a knob held fixed at every point (repeatable)")
    s.add_argument("--out", help="sweep folder (default: <runs>/<task>/sweep-<model>-n<N>-s<seed>)")

    lb = subparsers.add_parser(
        "leaderboard", allow_abbrev=False, help="rank recorded runs of a task with confidence intervals",
        description="Rank the run records of TASK on one metric (named in the caption), with every other metric "
                    "of the task beside it, each as value [95% interval]; --format csv gives every column, "
                    "interval columns included. Rows whose 95% intervals overlap share a rank band; runs made "
                    "under different protocols, extractors, weights, reference statistics, judge versions or N are "
                    "shown in separate groups and never ranked together.")
    lb.add_argument("--task", required=True)
    lb.add_argument("--runs", action="append", metavar="DIR",
                    help="folder of runs (repeatable; default: the runs folder plus leaderboards/<task>/)")
    lb.add_argument("--format", choices=["table", "csv", "markdown", "html"], default="table")
    lb.add_argument("--metric", help="metric to rank on (default: judge, else the task's first recorded)")
    lb.add_argument("--rank-claims", action="store_true",
                    help="rank submissions whose numbers were not re-scored (status 'claimed') with the others; "
                         "by default they are listed after the ranked rows with band 'claim'")
    lb.add_argument("--html-out", help="with --format html: file to write (default leaderboards/<task>/index.html)")
    lb.add_argument("--by", metavar="COLUMN",
                    help="print a per-category table instead of the ranking: one column per value of the prompt "
                         "column COLUMN (e.g. category, challenge). To rank one category use "
                         "--metric 'clip_score[category=Colors]'")

    p = subparsers.add_parser("plot", help="figures: Pareto curves of a task, sample grids of a run or sweep")
    psub = p.add_subparsers(dest="plot_kind", metavar="KIND")
    psub.required = True
    pp = psub.add_parser("pareto", allow_abbrev=False, help="two metrics of every run of a task, one curve per model",
                         description="Plot metric Y against metric X for the runs of TASK: one curve per model "
                                     "(points labelled by the swept knob), 95% error bars, the Pareto frontier "
                                     "highlighted. By default x is the task kind's adherence metric and y its "
                                     "fidelity metric (never two distances). The format follows the extension of "
                                     "--out (.png or .svg).")
    pp.add_argument("--task", help="the task (may be left out with --runs when its records are of one task)")
    pp.add_argument("--runs", action="append", metavar="DIR", help="folder of runs (repeatable)")
    pp.add_argument("--x", metavar="METRIC",
                    help="metric on the x axis (default: the task kind's adherence metric: clip_score for "
                         "text-to-image, judge for class-conditional and translation, edit_success for editing, "
                         "motion_accuracy for video; see docs/metrics.md)")
    pp.add_argument("--y", metavar="METRIC",
                    help="metric on the y axis (default: the task kind's fidelity metric: fid, fvd for video, "
                         "psnr_bg (background preservation) for editing). Give one of --x/--y and the other is "
                         "the kind's default for that axis")
    pp.add_argument("--out", help="output file, .png or .svg (default: pareto-<task>.png)")
    ps = psub.add_parser("samples", allow_abbrev=False, help="a labelled grid of a run's (or a sweep's) samples")
    ps.add_argument("run_dir", metavar="RUN_DIR", help="a run folder, or a sweep folder (one row per point)")
    ps.add_argument("--out", help="output file, .png or .svg (default: RUN_DIR/samples.png)")
    ps.add_argument("--columns", type=int, default=8, help="samples per row")
    # issue 16 (video): one sample of a video run as an animated GIF (viewing only; the store stays lossless)
    pg = psub.add_parser("gif", allow_abbrev=False, help="one sample of a video run as an animated GIF")
    pg.add_argument("run_dir", metavar="RUN_DIR")
    pg.add_argument("--index", type=int, default=0, help="sample index (default 0)")
    pg.add_argument("--fps", type=float, default=4.0)
    pg.add_argument("--scale", type=int, default=4, help="nearest-neighbour upscaling factor")
    pg.add_argument("--out", help="output .gif (default: RUN_DIR/sample-<index>.gif)")

    sb = subparsers.add_parser(
        "submit", allow_abbrev=False, help="validate a result and add it to leaderboards/<task>/",
        description="Validate RESULT.json (a cgmbench run record): schema, provenance, and, with --samples, "
                    "re-score the samples and compare with the claimed numbers. An accepted result is written "
                    "atomically under a unique name into leaderboards/<task>/.")
    sb.add_argument("result", metavar="RESULT.json")
    sb.add_argument("--samples", metavar="DIR|ARCHIVE",
                    help="the samples: a run folder, a samples/ store, a folder of PNGs, or a .zip/.tar(.gz) of one")
    sb.add_argument("--leaderboards", metavar="DIR", help="leaderboards folder (default ./leaderboards)")
    sb.add_argument("--dry-run", action="store_true", help="validate only; write nothing")


def cmd_sweep(args) -> int:
    from cgmbench.run.config import parse_knob, run_config_from_args
    from cgmbench.run.sweep import SweepConfig, parse_knob_grid, run_sweep, sweep_table

    grid = parse_knob_grid(args.guidance, args.knob)
    fixed = dict(parse_knob(k) for k in (args.fixed or []))
    # the options a sweep shares with `run` go through the one run-configuration builder
    base = run_config_from_args(args, knobs=fixed, out=None, resume=True)
    cfg = SweepConfig.from_run_config(base, grid=grid, out=args.out)
    index = run_sweep(cfg, log=_log)
    print(sweep_table(index))
    return 0


def _task_name(task: str) -> str:
    """The name of a known task (a name, or a ``.toml`` whose records carry its name); unknown: one clear error."""
    from cgmbench.spec.task import load_task

    return load_task(task).name


def _task_of_runs(runs: list[str] | None) -> str:
    """The one task whose records are under the ``--runs`` folders (``plot pareto`` without ``--task``)."""
    from pathlib import Path

    from cgmbench.results.leaderboard import record_tasks

    if not runs:
        raise CgmbenchError("plot pareto needs --task (or --runs with the records of one task)",
                            "e.g. cgmbench plot pareto --task shapes-cc")
    tasks = record_tasks([Path(r) for r in runs])
    if len(tasks) != 1:
        found = f"records of {len(tasks)} tasks ({', '.join(tasks)})" if tasks else "no run records"
        raise CgmbenchError(f"--runs {', '.join(runs)}: {found}; give --task", "e.g. --task shapes-cc")
    return _task_name(tasks[0])


def cmd_leaderboard(args) -> int:
    from cgmbench.results import leaderboard as lbm

    args.task = _task_name(args.task)
    records = lbm.collect_records(args.task, args.runs, warn=_log)
    if args.by:
        default = "edit_success" if args.by == "edit_type" else "clip_score"  # editing tables (issue 15)
        table = lbm.category_table(args.task, args.by, args.metric or default, roots=args.runs, records=records)
        out = {"csv": lambda: table.to_csv(index=False, lineterminator="\n"),
               "markdown": lambda: lbm.dataframe_markdown(table)}.get(args.format)
        sys.stdout.write(out() if out else table.to_string(index=False) + "\n")
        return 0
    lb = lbm.build(args.task, args.metric, roots=args.runs, records=records,
                   rank_claims=bool(getattr(args, "rank_claims", False)))
    if args.format == "csv":
        sys.stdout.write(lbm.render_csv(lb))
    elif args.format == "markdown":
        print(lbm.render_markdown(lb))
    elif args.format == "html":
        from cgmbench.results.plots import write_html

        path = write_html(lb, roots=args.runs, out=args.html_out, records=records)
        print(path)
    else:
        print(lbm.render_table(lb))
    return 0


def cmd_plot(args) -> int:
    from cgmbench.results import plots

    if args.plot_kind == "pareto":
        args.task = _task_name(args.task) if args.task else _task_of_runs(args.runs)
        out = args.out or f"pareto-{args.task}.png"
        path = plots.plot_pareto(args.task, out, x=args.x, y=args.y, roots=args.runs, warn=_log)
    elif args.plot_kind == "gif":
        from cgmbench.results.video import export_gif

        path = export_gif(args.run_dir, args.out, index=args.index, fps=args.fps, scale=args.scale)
    else:
        from pathlib import Path

        out = args.out or str(Path(args.run_dir) / "samples.png")
        path = plots.sample_grid(args.run_dir, out, columns=args.columns)
    print(path)
    return 0


def cmd_submit(args) -> int:
    from cgmbench.results.submit import submit

    result = submit(args.result, samples=args.samples, leaderboards=args.leaderboards, dry_run=args.dry_run,
                    log=_log)
    print(result["message"])
    return 0


COMMANDS = {"sweep": cmd_sweep, "leaderboard": cmd_leaderboard, "plot": cmd_plot, "submit": cmd_submit}
