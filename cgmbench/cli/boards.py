"""``cgmbench regenerate-leaderboards``: the shipped leaderboards of ``leaderboards/`` from scratch, resumably
(:mod:`cgmbench.results.shipped_boards`)."""

from __future__ import annotations

import sys

from cgmbench.errors import CgmbenchError


def register(subparsers) -> None:
    from cgmbench.results.shipped_boards import REFERENCE_MODELS, SHIPPED_BASELINES

    tasks = ", ".join(SHIPPED_BASELINES)
    r = subparsers.add_parser(
        "regenerate-leaderboards", allow_abbrev=False,
        help="rerun, re-score and tabulate every shipped baseline on every offline task (leaderboards/)",
        description=f"Run every shipped baseline and {' and '.join(REFERENCE_MODELS)} on each offline task ({tasks}) "
                    "at the task's default N, verify each record by re-scoring its samples (as cgmbench submit "
                    "--samples does), and write leaderboards/<task>/records/<model>.json with the tables README.md, "
                    "leaderboard.csv and index.html, plus leaderboards/published.md (published numbers of the real "
                    "tasks, never ranked with re-scored rows). Rerunning resumes: finished runs are reused and "
                    "unchanged records kept (and the tables then come out the same, byte for byte). At "
                    "--num-samples 100 it took about 40 minutes on 2 CPU cores shared with other jobs; the default N "
                    "takes several times longer.")
    r.add_argument("--task", action="append", metavar="TASK", help=f"only this task (repeatable): {tasks}")
    r.add_argument("--model", action="append", metavar="MODEL",
                   help="only this model (repeatable); records of the other models are kept")
    r.add_argument("--num-samples", type=int, metavar="N",
                   help="samples per run (default: the task's own N, 1000 for most shapes tasks)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--batch-size", type=int, default=64)
    r.add_argument("--device", default="auto")
    r.add_argument("--work", metavar="DIR", help="folder for the runs and their samples "
                                                 "(default: $CGMBENCH_RUNS/leaderboards; not committed)")
    r.add_argument("--leaderboards", metavar="DIR", help="leaderboards folder (default ./leaderboards)")
    r.add_argument("--tables-only", action="store_true",
                   help="run nothing: rebuild the tables from the records already there")


def cmd_regenerate(args) -> int:
    from cgmbench.results.shipped_boards import regenerate

    if args.num_samples is not None and args.num_samples < 1:
        raise CgmbenchError(f"--num-samples must be >= 1, got {args.num_samples}")
    files = regenerate(tasks=args.task, models=args.model, num_samples=args.num_samples, seed=args.seed,
                       batch_size=args.batch_size, device=args.device, work=args.work, root=args.leaderboards,
                       tables_only=args.tables_only, log=lambda m: print(m, file=sys.stderr))
    for f in files:
        print(f)
    return 0


COMMANDS = {"regenerate-leaderboards": cmd_regenerate}
