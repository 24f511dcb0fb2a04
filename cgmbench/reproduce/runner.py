"""Run one recipe and judge it: ``reproduce(recipe) -> result`` (also written to ``OUT/reproduce.json``).

Generator recipes are ordinary cgmbench runs (``OUT/run``; resumable with the same command, torchrun-able
since they go through :func:`cgmbench.run.runner.run`); harness recipes score published files directly.
A finished ``reproduce.json`` of the same recipe file is returned as is (the same command resumes or
re-prints)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Callable

from cgmbench.atomic import atomic_write_json
from cgmbench.errors import CgmbenchError
from cgmbench.reproduce.recipes import Recipe, load_recipe, verdict

SCHEMA = "cgmbench.reproduce/1"


def missing_files(recipe: Recipe, files: dict[str, str] | None = None) -> list[tuple[str, Path, str]]:
    """``(registry name, path, command that gets it)`` of every file the recipe needs and this machine lacks."""
    import cgmbench.reproduce.files  # noqa: F401 - registers the data files
    from cgmbench import weights

    files = files or {}
    out = []
    for name in recipe.fetch:
        if name in files:
            continue
        kf = weights.known_file(name)
        path = weights.destination(kf)
        if name.startswith("clip-") and not path.is_file():
            from cgmbench.extractors.clip import _hf_cached
            if _hf_cached(kf.hub_id) is not None:
                continue
        if not path.is_file():
            how = (f"cgmbench weights fetch {name}" if kf.url or (kf.hub_id and kf.hub_filename)
                   else (kf.obtain or f"download {name}"))
            out.append((name, path, how))
    return out


def preflight(recipe: Recipe, files: dict[str, str] | None = None) -> None:
    """One error listing every missing file with its command (nothing is sampled before all are there): the
    recipe's own files and, for a generator recipe, every file its run reads (:mod:`cgmbench.run.preflight`)."""
    missing = missing_files(recipe, files)
    lines = [f"{name} -> {path} (`{how}`)" for name, path, how in missing]
    if recipe.kind == "generator":
        from cgmbench.requirements import missing as missing_requirements
        from cgmbench.run.preflight import run_requirements
        from cgmbench.spec.task import load_task

        known = {str(path) for _, path, _ in missing}
        run_files = [r for part in run_requirements(load_task(recipe.get("task")), recipe.get("model")) for r in part]
        lines += [r.describe() for r in missing_requirements(run_files)
                  if r.path not in known and r.name not in (files or {})]
    if lines:
        raise CgmbenchError(f"recipe {recipe.name} needs {len(lines)} file(s) not on this machine: "
                            + "; ".join(f"({i}) {line}" for i, line in enumerate(lines, 1)),
                            f"get them all at once: cgmbench fetch --recipe {recipe.name}")


def _path(name: str, files: dict[str, str]) -> Path:
    if name in files:
        return Path(files[name])
    from cgmbench import weights

    import cgmbench.reproduce.files  # noqa: F401
    return weights.destination(weights.known_file(name))


def _harness(recipe: Recipe, files: dict, device: str, batch_size: int, log) -> tuple[dict, dict]:
    import torch

    from cgmbench.extractors.inception import FIDInceptionV3

    extractor = FIDInceptionV3(protocol=recipe.protocol, weights_path=files.get(recipe.extractor))
    extractor.to(torch.device(device))
    provenance = {"extractor": extractor.describe()}
    if recipe.get("evaluator") == "adm":
        from cgmbench.reproduce.adm import evaluate

        res = evaluate(_path(recipe.reference, files), _path(recipe.get("samples"), files), extractor,
                       batch_size=batch_size, log=log)
        provenance.update({k: res.pop(k) for k in ("n_samples", "n_reference_images", "reference_statistics")})
        return res, provenance
    # cifar10: torch-fidelity's anchors
    from cgmbench.metrics.frechet import feature_statistics, frechet_distance
    from cgmbench.metrics.inception_score import inception_score
    from cgmbench.reproduce.cifar import load_split

    src = _path(recipe.reference, files)
    limit = int(recipe.get("fid_limit"))
    a = load_split(src, recipe.get("fid_split_a"), limit)
    b = load_split(src, recipe.get("fid_split_b"), limit)
    log(f"FID: {len(a)} {recipe.get('fid_split_a')} vs {len(b)} {recipe.get('fid_split_b')} images")
    fa = extractor(torch.from_numpy(a), batch_size=batch_size).numpy()
    fb = extractor(torch.from_numpy(b), batch_size=batch_size).numpy()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fid = frechet_distance(*feature_statistics(fa), *feature_statistics(fb))
    c = load_split(src, recipe.get("is_split"), int(recipe.get("is_limit")))
    logits = extractor.logits(torch.from_numpy(c), batch_size=batch_size).numpy()
    is_mean, is_std = inception_score(logits, splits=min(int(recipe.get("is_splits")), len(c)), shuffle=True,
                                      seed=int(recipe.get("is_shuffle_seed")))
    provenance.update({"n_fid": [len(a), len(b)], "n_is": len(c), "is_std": is_std})
    return {"fid": fid, "is": is_mean}, provenance


def _generator(recipe: Recipe, out: Path, device: str, batch_size: int, log, micro_batch: int | None = None,
               threads: int | None = None) -> tuple[dict, dict, dict]:
    from cgmbench.run.config import RunConfig
    from cgmbench.run.runner import run
    from cgmbench.scoring.harness import summary_value

    cfg = RunConfig(task=recipe.get("task"), model=recipe.get("model"), num_samples=recipe.get("num_samples"),
                    seed=int(recipe.get("seed", 0)), batch_size=batch_size, out=str(out / "run"), resume=True,
                    knobs={k: str(v) for k, v in recipe.get("knobs").items()}, device=device,
                    precision=recipe.get("precision", "fp32"), micro_batch=micro_batch, threads=threads)
    record = run(cfg, log=log)
    values, cis = {}, {}
    for t in recipe.targets:
        entry = record["metrics"].get(t.metric)
        if entry is None:
            entry = (record["metrics"].get("precision_recall") or {}).get(t.metric)
        if isinstance(entry, dict):
            values[t.metric] = summary_value(entry) if "value" in entry or "overall" in entry else None
            ci = (entry.get("overall") or entry).get("ci95")
            if ci:
                cis[t.metric] = ci
    return values, cis, {"run": str(out / "run"), "identity_sha256": record.get("identity_sha256"),
                         "metrics_pending": record.get("metrics_pending")}


def reproduce(name: str, out: str | Path | None = None, device: str = "cpu", batch_size: int = 64,
              files: dict[str, str] | None = None, log: Callable[[str], None] = print,
              micro_batch: int | None = None, threads: int | None = None) -> dict:
    """Run recipe ``name`` (or a ``.toml`` path); ``files`` maps registry names to local paths (offline copies);
    ``micro_batch`` and ``threads`` as in :class:`cgmbench.run.config.RunConfig`."""
    from cgmbench.threads import apply_threads

    recipe = load_recipe(name)
    files = dict(files or {})
    out = Path(out) if out else Path("cgmbench-reproduce") / recipe.name
    recipe_sha = hashlib.sha256(recipe.path.read_bytes()).hexdigest()
    result_path = out / "reproduce.json"
    if result_path.is_file():
        import json

        done = json.loads(result_path.read_text())
        if done.get("recipe_sha256") == recipe_sha and done.get("files") == {k: str(v) for k, v in files.items()}:
            return done
    preflight(recipe, files)
    threads_used, threads_from = apply_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cis: dict = {}
    if recipe.kind == "harness":
        values, provenance = _harness(recipe, files, device, batch_size, log)
    else:
        values, cis, provenance = _generator(recipe, out, device, batch_size, log, micro_batch, threads)
    ok, line = verdict(recipe, values, cis)
    result = {"schema": SCHEMA, "recipe": recipe.name, "recipe_sha256": recipe_sha, "reproduced": ok,
              "values": values, "ci95": cis, "targets": [t.__dict__ for t in recipe.targets],
              "source": recipe.source, "files": {k: str(v) for k, v in files.items()}, "provenance": provenance,
              "seconds": round(time.perf_counter() - t0, 3), "verdict": line,
              "execution": {"device": device, "batch_size": batch_size, "threads": threads_used,
                            "threads_from": threads_from}}
    atomic_write_json(result_path, result)
    return result
