"""``cgmbench reproduce`` (recipes for published numbers) and ``cgmbench fetch`` (every file a task, model or
recipe needs, verified, into the paths cgmbench reads)."""

from __future__ import annotations

import sys

from cgmbench.errors import CgmbenchError


def register(subparsers) -> None:
    r = subparsers.add_parser("reproduce", allow_abbrev=False, help="run a recipe for a published number",
                              description="Run the recipe NAME (cgmbench reproduce --list) and end with one line: "
                                          "reproduced / not reproduced, value [CI] vs target. Rerun the same "
                                          "command to resume.")
    r.add_argument("name", nargs="?", help="recipe name or path to a recipe .toml")
    r.add_argument("--list", action="store_true", help="list every recipe with its target and cost")
    r.add_argument("--out", help="output folder (default ./cgmbench-reproduce/NAME)")
    r.add_argument("--device", default="auto")
    r.add_argument("--batch-size", type=int, default=None,
                   help="samples per generate() call and per network pass (default 64; without it a CPU run "
                        "passes one sample at a time, see cgmbench run --help)")
    r.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: CGMBENCH_THREADS, OMP_NUM_THREADS, else the physical cores left "
                        "free by the load average, at most 8)")
    r.add_argument("--file", action="append", metavar="NAME=PATH",
                   help="use a local copy of a registry file (repeatable), e.g. cifar10:python=./cifar-10-batches-py")

    f = subparsers.add_parser("fetch", allow_abbrev=False,
                              help="download every file a task + model (or a recipe) needs, verifying digests",
                              description="Fetch every file `cgmbench run --task T --model M` reads (checkpoints, "
                                          "VAEs, text encoders and tokenizers into the Hugging Face cache, extractor "
                                          "weights, datasets and reference batches), or everything --recipe R "
                                          "needs, into the paths cgmbench reads, verifying registry digests; files "
                                          "that need a manual step are listed with that step (exit status 2).")
    f.add_argument("--task", help="task name or .toml path: its data and its metrics' files")
    f.add_argument("--model", help="NAME[:VARIANT]: also the files this model reads for --task")
    f.add_argument("--recipe", help="a reproduction recipe (cgmbench reproduce --list): every file it needs")
    f.add_argument("--dry-run", action="store_true", help="only list what is present and what is missing")


def needed(task_name: str | None, model: str | None, recipe: str | None) -> list:
    """Every file (:class:`cgmbench.requirements.Requirement`) a recipe, or a task with a model, reads: the model's,
    the task's data and the metrics' (:mod:`cgmbench.run.preflight`); a task without a model: its data and metrics."""
    from cgmbench.requirements import unique, weights_file
    from cgmbench.reproduce.recipes import load_recipe
    from cgmbench.run.preflight import metric_requirements, run_requirements, source_requirements
    from cgmbench.spec.task import load_task

    reqs = []
    if recipe:
        rec = load_recipe(recipe)
        reqs += [weights_file(name, f"recipe {rec.name}") for name in rec.fetch]
        if rec.kind == "generator":
            reqs += [r for part in run_requirements(load_task(rec.get("task")), rec.get("model")) for r in part]
    if task_name:
        task = load_task(task_name)
        if model:
            reqs += [r for part in run_requirements(task, model) for r in part]
        else:
            reqs += source_requirements(task, "conditions", "conditions")
            reqs += [r for part in metric_requirements(task).values() for r in part]
    elif model:
        raise CgmbenchError("cgmbench fetch --model needs --task (a model's files depend on the task's checkpoint)")
    return unique(reqs)


def cmd_fetch(args) -> int:
    from cgmbench.requirements import fetch

    if not (args.recipe or args.task):
        raise CgmbenchError("cgmbench fetch needs --recipe R or --task T [--model M]")
    manual, failed = [], []
    for req in needed(args.task, args.model, args.recipe):
        label = f"{req.what}"
        if args.dry_run:
            print(f"{'present' if req.present() else 'missing'}  {label}: {req.path}"
                  + ("" if req.present() else f"  (get it: {req.get})"))
            continue
        if not req.present() and not req.fetchable:
            manual.append(f"{label}: {req.get} -> {req.path}")
            continue
        try:
            print(f"{label}: {fetch(req)}")
        except CgmbenchError as e:  # the others are still fetched; every failure is listed at the end
            failed.append(f"{label}: {e}")
    for line in manual:
        print(f"manual step: {line}", file=sys.stderr)
    for line in failed:
        print(f"failed: {line}", file=sys.stderr)
    return 2 if manual or failed else 0


def cmd_reproduce(args) -> int:
    from cgmbench.reproduce.recipes import load_recipe, recipe_names

    if args.list:
        print(f"{'recipe':28s} {'kind':9s} {'GPU-h':>6s}  targets")
        for name in recipe_names():
            r = load_recipe(name)
            targets = ", ".join(f"{t.metric} {t.value:g}±{t.tolerance:g}" for t in r.targets)
            print(f"{name:28s} {r.kind:9s} {r.gpu_hours:6.3g}  {targets}   [{r.source}]")
        return 0
    if not args.name:
        raise CgmbenchError("cgmbench reproduce needs a recipe NAME", "see cgmbench reproduce --list")
    from cgmbench.run.config import resolve_device
    from cgmbench.reproduce.runner import reproduce
    files = {}
    for item in args.file or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise CgmbenchError(f"--file {item!r} is not NAME=PATH")
        files[key] = value
    load_recipe(args.name)
    from cgmbench.run.config import DEFAULT_BATCH_SIZE

    result = reproduce(args.name, out=args.out, device=resolve_device(args.device),
                       batch_size=args.batch_size or DEFAULT_BATCH_SIZE, micro_batch=args.batch_size,
                       threads=args.threads, files=files, log=lambda m: print(m, file=sys.stderr))
    print(result["verdict"])
    return 0 if result["reproduced"] else 1


COMMANDS = {"reproduce": cmd_reproduce, "fetch": cmd_fetch}
