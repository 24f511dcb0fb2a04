"""The ``cgmbench`` command line.

Every user error ends as one line ``cgmbench: error: ...`` on stderr and exit status 2.
Option names avoid prefixes of torchrun's own options (``--n``, ``--no…``, ``--nproc…``), so
``torchrun … -m cgmbench run …`` works unchanged; abbreviations are disabled.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import json
import sys

from cgmbench.version import __version__
from cgmbench.cli.results import COMMANDS as EXTRA_COMMANDS
from cgmbench.cli.results import register as register_extra_commands
from cgmbench.cli.metrics import COMMANDS as METRIC_COMMANDS
from cgmbench.cli.metrics import register as register_metric_commands
from cgmbench.errors import CgmbenchError
from cgmbench.run.config import add_run_options, resolve_device, run_config_from_args

#: how long `cgmbench demo` takes on 2 CPU cores (measured: docs/benchmarks.md)
DEMO_MINUTES = "4 to 5 minutes"
QUICK_SECONDS = "35 seconds"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cgmbench", allow_abbrev=False,
                                description="Benchmark conditional generative models: sample, score, record.")
    p.add_argument("--version", action="version", version=f"cgmbench {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    r = sub.add_parser("run", allow_abbrev=False, help="sample a task with a model, score it, write run.json",
                       description="Sample TASK with MODEL, store the samples in shards, score them and write "
                                   "OUT/run.json. Without --out runs go to $CGMBENCH_RUNS (default ./cgmbench-runs)"
                                   "/<task>/<model>-<knobs>-n<N>-s<seed>/. Before sampling every file the model, "
                                   "the task and its metrics read is checked; missing ones are listed at once with "
                                   "the command that gets them (cgmbench fetch --task T --model M gets them all).")
    add_run_options(r)
    r.add_argument("--out", help="output folder (must be new or empty, unless --resume)")
    r.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    r.add_argument("--knob", action="append", metavar="NAME=VALUE", help="set a model knob (repeatable)")
    r.add_argument("--guidance", help="guidance scale w: pred = uncond + w*(cond - uncond); same as "
                                      "--knob guidance_scale=W")
    r.add_argument("--json", action="store_true", help="print the whole run record as JSON")

    ls = sub.add_parser("list", help="list tasks or models")
    ls.add_argument("what", choices=["tasks", "models"])

    info = sub.add_parser("info", help="describe a task or a model")
    info.add_argument("name", help="a task or model name")

    w = sub.add_parser("weights", help="list, locate or fetch known weight files")
    w.add_argument("action", choices=["list", "path", "fetch"])
    w.add_argument("name", nargs="?", help="a known weights name (cgmbench weights list)")

    tr = sub.add_parser("train", allow_abbrev=False, help="train a model on a task (tiny recipes run on a CPU)",
                        description="Train MODEL on TASK with a named recipe. Prints progress with steps/s and ETA "
                                    "from the first step, writes OUT/loss.csv (one row per logged step and stage) "
                                    "and checkpoints at the recipe's milestones, every 5 minutes and on Ctrl-C "
                                    "(which saves the step in progress, says which step is saved and stops; a "
                                    "second Ctrl-C stops at once). --resume continues from the last checkpoint.")
    tr.add_argument("--model", required=True)
    tr.add_argument("--task", required=True)
    tr.add_argument("--config", default="tiny", help="training recipe name (default: tiny)")
    tr.add_argument("--out", required=True, help="folder for checkpoints and logs")
    tr.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    tr.add_argument("--steps", type=int, help="override the recipe's number of steps")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--device", default="auto")

    demo = sub.add_parser(
        "demo", allow_abbrev=False,
        help="the offline default benchmark: every shipped baseline on its shapes task, with a guidance sweep",
        description="Run every shipped baseline (but p2p: too slow) on its offline shapes task (six task kinds: "
                    "class-conditional, "
                    "text-to-image, paired and unpaired translation, editing, text-to-video) next to oracle and "
                    "noise, with a short guidance / truncation / strength sweep per model; score every run with "
                    "95%% intervals, print the leaderboards and write leaderboard.md/.csv, pareto.png (FID vs CLIP "
                    "score over guidance for text-to-image; pareto-<task>.png on each kind's axes), grid.png "
                    "(labelled samples) and index.html into one folder. Takes about %s on a quiet 2-core CPU machine "
                    "(--quick: about %s; a busy machine takes longer); a rerun reuses the finished runs. The "
                    "plan is cgmbench/demo.py's DEMO_PLAN."
                    % (DEMO_MINUTES, QUICK_SECONDS))
    demo.add_argument("--quick", action="store_true",
                      help="a smaller N, one knob value per model and fewer models (a smoke run, about %s)"
                           % QUICK_SECONDS)
    demo.add_argument("--out", default=None, help="output folder (default: $CGMBENCH_RUNS/demo, "
                                                  "$CGMBENCH_RUNS/demo-quick with --quick)")
    demo.add_argument("--device", default="auto", help="cpu, cuda[:N], mps or auto (default)")

    register_extra_commands(sub)
    register_metric_commands(sub)
    from cgmbench.cli.reproduce import register as register_reproduce_commands  # issue 18

    register_reproduce_commands(sub)
    from cgmbench.cli.boards import register as register_board_commands  # issue 17: shipped leaderboards

    register_board_commands(sub)
    return p


def cmd_run(args) -> int:
    from cgmbench.run.runner import run
    from cgmbench.scoring.harness import summary_value

    cfg = run_config_from_args(args)
    from cgmbench.run.distributed import rank

    if rank() != 0:
        cfg = replace(cfg, progress=False)
    record = run(cfg, log=lambda m: print(m, file=sys.stderr))
    if rank() != 0:
        return 0
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    print(f"task {record['task']['name']}  model {record['model']['spec']}  n {record['n']}  seed {record['seed']}")
    for name, m in record["metrics"].items():
        v = summary_value(m)
        ci = (m.get("overall") or m).get("ci95")
        ci_text = f"  95% CI [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""
        print(f"  {name}: {v:.4f}{ci_text}" if v is not None else f"  {name}: {m}")
    if record.get("metrics_pending"):
        print(f"  not computed by this version: {', '.join(record['metrics_pending'])}")
    print(f"samples_sha256 {record['samples_sha256']}")
    return 0


def cmd_list(args) -> int:
    if args.what == "tasks":
        from cgmbench.spec.task import list_tasks, load_task

        for name in list_tasks():
            t = load_task(name)
            print(f"{name:22s} {t.kind:22s} {t.description}")
    else:
        from cgmbench.models.registry import list_models, model_class

        for name in list_models():
            try:
                cls = model_class(name)
            except CgmbenchError as e:
                print(f"{name:12s} unavailable: {e}")
                continue
            print(f"{name:12s} accepts {', '.join(sorted(cls.condition_kinds)):55s} {cls.description}")
    return 0


def cmd_info(args) -> int:
    from cgmbench.models.registry import list_models, model_class
    from cgmbench.spec.task import list_tasks, load_task

    if args.name in list_tasks() or args.name.endswith(".toml"):
        print(json.dumps(load_task(args.name).describe(), indent=2))
        return 0
    if args.name in list_models():
        cls = model_class(args.name)
        print(json.dumps({
            "name": args.name, "description": cls.description, "condition_kinds": sorted(cls.condition_kinds),
            "knobs": [k.to_dict() for k in cls.knobs], "checkpoints": cls.variants(),
            "class": f"{cls.__module__}.{cls.__qualname__}"}, indent=2))
        return 0
    raise CgmbenchError(f"{args.name!r} is neither a task nor a model",
                        "see cgmbench list tasks / cgmbench list models")


def cmd_demo(args) -> int:
    from pathlib import Path

    from cgmbench.demo import run_demo
    from cgmbench.paths import runs_dir

    out = Path(args.out) if args.out else runs_dir() / ("demo-quick" if args.quick else "demo")
    result = run_demo(out, quick=args.quick, device=args.device, log=lambda m: print(m, file=sys.stderr))
    print(result.tables)
    for note in result.notes:
        print(f"note: {note}")
    print(f"\nwrote into {result.out}:")
    for f in result.files:
        print(f"  {f.name}")
    print(f"open {result.out / 'index.html'} for the tables with the Pareto figures and sample grids")
    return 0


def cmd_weights(args) -> int:
    from cgmbench import weights

    if args.action == "list":
        for name, kf in sorted(weights.known_files().items()):
            state = "present" if weights.destination(kf).is_file() else "missing"
            pin = "pinned" if kf.sha256 else ("none-published" if (kf.digest_source or "").startswith("none")
                                              else "not-pinned")
            print(f"{name:32s} {state:8s} {pin:15s} {kf.license:45s} {kf.url or kf.hub_id or ''}")
        return 0
    if not args.name:
        raise CgmbenchError(f"cgmbench weights {args.action} needs a NAME", "see cgmbench weights list")
    if args.action == "path":
        print(weights.local_path(args.name))
        return 0
    path = weights.fetch(args.name)
    kf = weights.known_file(args.name)
    print(f"{path}  sha256 {weights.sha256_file(path)}")
    print(f"  checked against: {weights.digest_provenance(kf)}")
    return 0


def cmd_train(args) -> int:
    from cgmbench.models.registry import model_class, parse_model_spec
    from cgmbench.spec.task import load_task

    name, _ = parse_model_spec(args.model)
    cls = model_class(name)
    train = getattr(cls, "train", None)
    if train is None:
        raise CgmbenchError(f"model {name!r} has no training recipe in cgmbench")
    task = load_task(args.task)
    try:
        path = train(task, config=args.config, out=args.out, resume=args.resume, steps=args.steps, seed=args.seed,
                     device=resolve_device(args.device), log=lambda m: print(m, file=sys.stderr))
    except KeyboardInterrupt as e:  # the recipe's message names the step saved (baselines.common.monitor)
        import shlex

        what = getattr(e, "message", None) or "interrupted before training began; checkpoints already in --out are kept"
        again = ["cgmbench", "train", "--model", args.model, "--task", args.task, "--config", args.config,
                 "--out", args.out, "--resume"] + (["--steps", str(args.steps)] if args.steps is not None else []) \
            + (["--seed", str(args.seed)] if args.seed else [])
        print(f"cgmbench: {what}\ncgmbench: continue with: {shlex.join(again)}", file=sys.stderr)
        return 130
    print(path)
    return 0


COMMANDS = {"run": cmd_run, "list": cmd_list, "info": cmd_info, "demo": cmd_demo, "weights": cmd_weights,
            "train": cmd_train}
COMMANDS.update(EXTRA_COMMANDS)
COMMANDS.update(METRIC_COMMANDS)
# issue 18: reproduction recipes and `cgmbench fetch`
from cgmbench.cli.reproduce import COMMANDS as REPRODUCE_COMMANDS  # noqa: E402
COMMANDS.update(REPRODUCE_COMMANDS)
from cgmbench.cli.boards import COMMANDS as BOARD_COMMANDS  # noqa: E402
COMMANDS.update(BOARD_COMMANDS)


def main(argv: list[str] | None = None) -> int:
    from cgmbench.cli.faults import describe_failure, split_debug

    argv, debug = split_debug(sys.argv[1:] if argv is None else list(argv))
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if isinstance(getattr(args, "device", None), str):  # every command's --device: cpu, cuda[:N], mps or auto
            args.device = resolve_device(args.device)
        return COMMANDS[args.command](args)
    except BrokenPipeError:  # e.g. `cgmbench info T | head`
        return 0
    except KeyboardInterrupt:
        print("cgmbench: interrupted; the samples so far are kept, continue with --resume", file=sys.stderr)
        return 130
    except (Exception, RecursionError, MemoryError) as e:  # noqa: BLE001 - every failure ends in one line
        if debug:
            raise
        print(f"cgmbench: error: {describe_failure(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
