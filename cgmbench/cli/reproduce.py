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
    r.add_argument("--batch-size", type=int, default=64)
    r.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: cgmbench.threads.default_threads())")
    r.add_argument("--file", action="append", metavar="NAME=PATH",
                   help="use a local copy of a registry file (repeatable), e.g. cifar10:python=./cifar-10-batches-py")

    f = subparsers.add_parser("fetch", allow_abbrev=False,
                              help="download every file a task + model (or a recipe) needs, verifying digests",
                              description="Fetch the model checkpoint, extractor weights and reference files of "
                                          "--task/--model, or everything --recipe names, into the paths cgmbench "
                                          "reads; files that need a manual step are listed with that step.")
    f.add_argument("--task")
    f.add_argument("--model")
    f.add_argument("--recipe")
    f.add_argument("--dry-run", action="store_true", help="only list what is missing")


def needed_files(task_name: str | None, model: str | None, recipe: str | None) -> list[str]:
    """Registry names of the files a recipe, or a task with a model, reads."""
    import cgmbench.reproduce.files  # noqa: F401
    from cgmbench import weights
    from cgmbench.reproduce.recipes import load_recipe, recipe_names

    names: list[str] = []
    if recipe:
        names += list(load_recipe(recipe).fetch)
    if task_name:
        from cgmbench.spec.task import load_task

        task = load_task(task_name)
        known = weights.known_files()
        if model:
            base, _, variant = model.partition(":")
            variant = variant or (task.checkpoints or {}).get(base)
            if variant and f"{base}:{variant}" in known:
                names.append(f"{base}:{variant}")
            for r in recipe_names():  # a recipe for this pair knows the model's secondary files (VAE, ...)
                rec = load_recipe(r)
                if rec.get("task") == task.name and rec.get("model") == f"{base}:{variant}":
                    names += list(rec.fetch)
        m = task.metric_settings
        for ext in (m.extractor, m.clip_extractor):
            if ext in known:
                names.append(ext)
        batch = str((task.reference or {}).get("batch") or "")
        names += [n for n, kf in known.items() if kf.folder and batch.endswith("/" + kf.filename)]
    return list(dict.fromkeys(names))


def cmd_fetch(args) -> int:
    from cgmbench import weights

    if not (args.recipe or args.task):
        raise CgmbenchError("cgmbench fetch needs --recipe R or --task T [--model M]")
    names = needed_files(args.task, args.model, args.recipe)
    manual = []
    for name in names:
        kf = weights.known_file(name)
        path = weights.destination(kf)
        if path.is_file() and not args.dry_run:
            weights.verify(kf, path)
            print(f"{name:40s} present  {path}")
            continue
        if not (kf.url or (kf.hub_id and kf.hub_filename)):
            manual.append(f"{name}: {kf.obtain or 'download it'} -> {path}")
            continue
        if args.dry_run:
            print(f"{name:40s} {'present' if path.is_file() else 'missing'}  {path}")
            continue
        got = weights.fetch(name)
        print(f"{name:40s} fetched  {got}  ({weights.digest_provenance(kf)})")
    for line in manual:
        print(f"manual step: {line}", file=sys.stderr)
    return 2 if manual else 0


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
    from cgmbench.threads import apply_threads

    apply_threads(args.threads)
    files = {}
    for item in args.file or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise CgmbenchError(f"--file {item!r} is not NAME=PATH")
        files[key] = value
    load_recipe(args.name)
    result = reproduce(args.name, out=args.out, device=resolve_device(args.device), batch_size=args.batch_size,
                       files=files, log=lambda m: print(m, file=sys.stderr))
    print(result["verdict"])
    return 0 if result["reproduced"] else 1


COMMANDS = {"reproduce": cmd_reproduce, "fetch": cmd_fetch}
