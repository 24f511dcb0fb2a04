"""Reproduction recipes: loading, validation, listing and the verdict line.

A recipe is a TOML file in ``cgmbench/reproduce/recipes/`` (or any path given to ``cgmbench reproduce``).
Common fields: ``name``, ``title``, ``kind`` (``"generator"``: a cgmbench run scored by the task's harness;
``"harness"``: a fixed set of published images scored by an ``evaluator``), ``protocol``, ``extractor``,
``reference``, ``seed_policy``, ``source`` (the paper table / README line), ``gpu_hours`` (expected cost),
``fetch`` (the registry names of every file it needs) and ``[[targets]]`` (``metric``, ``value``,
``tolerance``, ``why``). Generator recipes add ``task``, ``model``, ``num_samples``, ``seed``, ``knobs``,
``precision``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from cgmbench.errors import CgmbenchError

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
KINDS = ("generator", "harness")
EVALUATORS = ("adm", "cifar10")


@dataclass(frozen=True)
class Target:
    metric: str
    value: float
    tolerance: float
    why: str

    def met_by(self, value: float) -> bool:
        return abs(value - self.value) <= self.tolerance


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    kind: str
    targets: tuple[Target, ...]
    source: str
    gpu_hours: float
    fetch: tuple[str, ...]
    protocol: str
    extractor: str
    reference: str
    seed_policy: str
    path: Path
    fields: dict = field(default_factory=dict)  # everything else in the file (task, model, knobs, ...)

    def get(self, key, default=None):
        return self.fields.get(key, default)


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))


def load_recipe(name_or_path: str | Path) -> Recipe:
    path = Path(name_or_path)
    if not (str(name_or_path).endswith(".toml") and path.is_file()):
        path = RECIPES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise CgmbenchError(f"unknown recipe {str(name_or_path)!r}", f"known: {', '.join(recipe_names())} "
                            "(cgmbench reproduce --list)")
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CgmbenchError(f"recipe {path} is not valid TOML: {e}") from None
    return _validate(data, path)


def _validate(data: dict, path: Path) -> Recipe:
    def need(key, typ, where=data):
        if key not in where:
            raise CgmbenchError(f"recipe {path.name}: missing {key!r}")
        if not isinstance(where[key], typ) or isinstance(where[key], bool):
            raise CgmbenchError(f"recipe {path.name}: {key!r} must be {getattr(typ, '__name__', typ)}")
        return where[key]

    kind = need("kind", str)
    if kind not in KINDS:
        raise CgmbenchError(f"recipe {path.name}: kind must be one of {KINDS}, got {kind!r}")
    if kind == "generator":
        need("task", str), need("model", str), need("knobs", dict)
    else:
        evaluator = need("evaluator", str)
        if evaluator not in EVALUATORS:
            raise CgmbenchError(f"recipe {path.name}: evaluator must be one of {EVALUATORS}, got {evaluator!r}")
    targets = []
    for t in need("targets", list):
        targets.append(Target(need("metric", str, t), float(need("value", (int, float), t)),
                              float(need("tolerance", (int, float), t)), need("why", str, t)))
    if not targets:
        raise CgmbenchError(f"recipe {path.name}: no [[targets]]")
    common = {k: need(k, str) for k in ("name", "title", "source", "protocol", "extractor", "reference",
                                         "seed_policy")}
    if common["name"] != path.stem:
        raise CgmbenchError(f"recipe {path.name}: name {common['name']!r} differs from the file name")
    known = set(common) | {"kind", "targets", "gpu_hours", "fetch"}
    return Recipe(kind=kind, targets=tuple(targets), gpu_hours=float(need("gpu_hours", (int, float))),
                  fetch=tuple(need("fetch", list)), path=path,
                  fields={k: v for k, v in data.items() if k not in known}, **common)


def verdict(recipe: Recipe, values: dict[str, float], cis: dict[str, list] | None = None) -> tuple[bool, str]:
    """``(reproduced, line)``: every target within its tolerance, and the one line that says so."""
    cis = cis or {}
    parts, ok = [], True
    for t in recipe.targets:
        if t.metric not in values or values[t.metric] is None:
            ok = False
            parts.append(f"{t.metric} not computed vs {t.value:g}")
            continue
        v = float(values[t.metric])
        ok &= t.met_by(v)
        ci = cis.get(t.metric)
        ci_text = f" [{ci[0]:.4g}, {ci[1]:.4g}]" if ci else ""
        parts.append(f"{t.metric} {v:.6g}{ci_text} vs {t.value:g} ± {t.tolerance:g}")
    word = "reproduced" if ok else "not reproduced"
    return ok, f"{recipe.name}: {word}: " + "; ".join(parts)
