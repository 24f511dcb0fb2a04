"""``cgmbench sweep``: one run per point of a knob grid, resumable, indexed in ``sweep.json``.

The grid is the cartesian product of the values given per knob (``--guidance 1,1.5,2`` is
``guidance_scale``; ``--knob truncation=0.5,0.7,1``), or the task spec's ``[sweep]`` table
(restricted to the knobs the model has) when none are given. Values are parsed and range-checked
by the model's :class:`~cgmbench.generator.Knob` s before anything runs.

Layout of the sweep folder ``DIR`` (default ``<runs>/<task>/sweep-<model>-n<N>-s<seed>``)::

    sweep.json                          index: {schema, task, model, n, seed, grid, points: [...]}
    guidance_scale=1.5/run.json         one ordinary run per point (samples/ beside it)

Every point is an ordinary :func:`cgmbench.run.runner.run` with ``resume=True``: a complete point is
skipped (its record is read back), an interrupted one continues at the first missing sample, a new
one starts. So re-running the same command after an interruption (Ctrl-C, a killed job) finishes
the sweep with exactly the samples and records of an uninterrupted one. ``sweep.json`` is written
atomically after every point, so it always describes what is on disk.

Reference statistics of feature metrics are cached by the metric harness (``$CGMBENCH_HOME/stats``)
and shared by every point of every sweep of a task; :func:`run_sweep` calls ``before_point`` (a
hook, default: nothing) before each run, e.g. to warm that cache once.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cgmbench.atomic import atomic_write_json
from cgmbench.errors import CgmbenchError
from cgmbench.run.config import RunConfig
from cgmbench.paths import runs_dir

SCHEMA = "cgmbench.run.sweep/1"
#: lines of a point's run log the sweep passes on (the rest: its own "[i/n] ..." lines say it)
_PASSED_ON = ("cgmbench: warning", "computing reference statistics")


def parse_values(text: str, what: str = "value list") -> list[str]:
    """``"1,1.5, 2"`` -> ``["1", "1.5", "2"]`` (empty items and duplicates are errors)."""
    values = [v.strip() for v in str(text).split(",")]
    if not values or any(v == "" for v in values):
        raise CgmbenchError(f"{what} {text!r} has an empty item", "give comma-separated values, e.g. 1,1.5,2")
    return values


def parse_knob_grid(guidance: str | None, knob_args: list[str] | None) -> dict[str, list[str]]:
    """The grid from ``--guidance W1,W2`` and repeated ``--knob NAME=V1,V2`` (strings, unparsed)."""
    grid: dict[str, list[str]] = {}
    for text in knob_args or []:
        name, sep, values = text.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise CgmbenchError(f"--knob {text!r} is not NAME=V1,V2,…", "e.g. --knob steps=25,50")
        if name in grid:
            raise CgmbenchError(f"knob {name!r} is given twice")
        grid[name] = parse_values(values, f"--knob {name}")
    if guidance is not None:
        if "guidance_scale" in grid:
            raise CgmbenchError("give the guidance scales once: --guidance or --knob guidance_scale=…")
        grid["guidance_scale"] = parse_values(guidance, "--guidance")
    return grid


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def point_dirname(point: dict) -> str:
    """``{"guidance_scale": 1.5, "steps": 20}`` -> ``"guidance_scale=1.5-steps=20"`` (``"default"`` if empty)."""
    if not point:
        return "default"
    text = "-".join(f"{k}={_fmt(v)}" for k, v in sorted(point.items()))
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text)


def expand_grid(model_cls, grid: dict[str, list]) -> list[dict]:
    """Cartesian product of the grid, each value parsed and range-checked by the model's knobs."""
    known = {k.name: k for k in model_cls.knobs}
    parsed: dict[str, list] = {}
    for name, values in grid.items():
        if name not in known:
            raise CgmbenchError(f"model {getattr(model_cls, 'name', model_cls.__name__)!r} has no knob {name!r}",
                                f"its knobs: {', '.join(sorted(known)) or 'none'}")
        vals = []
        for v in values:
            pv = known[name].parse(v)
            if pv in vals:
                raise CgmbenchError(f"knob {name}: value {v!r} is given twice")
            vals.append(pv)
        parsed[name] = vals
    names = list(parsed)
    return [dict(zip(names, combo)) for combo in itertools.product(*(parsed[n] for n in names))]


@dataclass
class SweepConfig:
    task: str
    model: str
    grid: dict = field(default_factory=dict)  # knob name -> values (strings or numbers); empty: task [sweep]
    out: str | None = None
    num_samples: int | None = None
    seed: int = 0
    batch_size: int = 64
    checkpoint: str | None = None
    device: str = "cpu"
    fixed_knobs: dict = field(default_factory=dict)  # knobs held fixed at every point
    precision: str = "fp32"
    progress: bool = True
    allow_nonfinite: bool = False
    micro_batch: int | None = None
    threads: int | None = None
    allow_pending_metrics: bool = False

    @classmethod
    def from_run_config(cls, base: RunConfig, grid: dict, out: str | None) -> "SweepConfig":
        """A sweep of ``base`` (its knobs held fixed at every point) over ``grid``, written to ``out``."""
        return cls(task=base.task, model=base.model, grid=grid, out=out, num_samples=base.num_samples,
                   seed=base.seed, batch_size=base.batch_size, checkpoint=base.checkpoint, device=base.device,
                   fixed_knobs=dict(base.knobs), precision=base.precision, progress=base.progress,
                   allow_nonfinite=base.allow_nonfinite, micro_batch=base.micro_batch, threads=base.threads,
                   allow_pending_metrics=base.allow_pending_metrics)

    def base(self) -> RunConfig:
        """The run configuration every point shares (:meth:`RunConfig.with_point` adds the point's knobs)."""
        return RunConfig(task=self.task, model=self.model, num_samples=self.num_samples, seed=self.seed,
                         batch_size=self.batch_size, resume=True, knobs=dict(self.fixed_knobs),
                         checkpoint=self.checkpoint, device=self.device, precision=self.precision,
                         progress=self.progress, allow_nonfinite=self.allow_nonfinite, micro_batch=self.micro_batch,
                         threads=self.threads, allow_pending_metrics=self.allow_pending_metrics)


def default_sweep_out(task: str, model: str, n: int, seed: int) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._=-]+", "_", f"sweep-{model}-n{n}-s{seed}")
    return runs_dir() / task / slug


def _summary(record: dict) -> dict:
    from cgmbench.scoring.harness import summary_value

    out = {}
    for name, m in (record.get("metrics") or {}).items():
        if isinstance(m, dict):
            v = summary_value(m)
            ci = (m.get("overall") if isinstance(m.get("overall"), dict) else m).get("ci95")
            out[name] = {"value": v, "ci95": ci}
    return out


def run_sweep(cfg: SweepConfig, log=print, before_point: Callable[[dict], None] | None = None,
              run_fn: Callable | None = None) -> dict:
    """Run (or finish) every point of the sweep; returns the ``sweep.json`` index."""
    from cgmbench.models.registry import model_class, parse_model_spec
    from cgmbench.run.runner import run
    from cgmbench.spec.task import load_task

    run_fn = run_fn or run
    task = load_task(cfg.task)
    n = cfg.num_samples if cfg.num_samples is not None else task.num_samples
    if n < 1:
        raise CgmbenchError(f"--num-samples must be >= 1, got {n}")
    from cgmbench.run.steps import MAX_SAMPLES

    if n > MAX_SAMPLES:
        raise CgmbenchError(f"--num-samples {n} is over the limit of {MAX_SAMPLES:,} samples per run",
                            "use fewer samples")
    cls = model_class(parse_model_spec(cfg.model)[0])
    from cgmbench.run.preflight import check as preflight

    preflight(task, cfg.model, cfg.checkpoint, cfg.allow_pending_metrics, log)  # every missing file, before any point
    grid = dict(cfg.grid)
    if not grid:
        known = {k.name for k in cls.knobs}
        grid = {k: list(v) for k, v in task.sweep.items() if k in known}
        skipped = sorted(set(task.sweep) - known)
        if skipped:
            log(f"task {task.name} sweeps {', '.join(skipped)}, which model {cfg.model!r} does not have")
    clash = sorted(set(grid) & set(cfg.fixed_knobs))
    if clash:
        raise CgmbenchError(f"knob(s) {', '.join(clash)} are both swept and fixed")
    points = expand_grid(cls, grid) if grid else [{}]
    if not grid:
        log(f"nothing to sweep for {cfg.model!r} on {task.name}: one run with the default knobs")
    out = Path(cfg.out) if cfg.out else default_sweep_out(task.name, cfg.model, n, cfg.seed)
    from cgmbench.run.lock import folder_lock

    with folder_lock(out, "sweep"):  # a second sweep (or run) on this folder is refused, never interleaved
        return _sweep_locked(cfg, out, task, n, points, log, before_point, run_fn)


def _sweep_locked(cfg, out: Path, task, n: int, points: list[dict], log, before_point, run_fn) -> dict:
    from cgmbench.run.lock import is_pristine, remove_leftovers

    remove_leftovers(out)
    index_path = out / "sweep.json"
    identity = {"task": task.name, "task_spec_sha256": task.sha256, "model": cfg.model, "n": n, "seed": cfg.seed,
                "checkpoint": cfg.checkpoint, "fixed_knobs": cfg.fixed_knobs}
    index = {"schema": SCHEMA, **identity, "grid": {k: [_plain(v) for v in vs] for k, vs in
                                                    _grid_of(points).items()}, "points": []}
    if index_path.is_file():
        import json

        try:
            old = json.loads(index_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise CgmbenchError(f"cannot read {index_path}: {e}") from None
        if not isinstance(old, dict):
            raise CgmbenchError(f"{index_path} is not a sweep index (not a JSON object)", "choose another --out")
        diff = sorted(k for k in identity if old.get(k) != identity[k])
        if old.get("schema") != SCHEMA or diff:
            raise CgmbenchError(f"{out} holds another sweep (differs in: {', '.join(diff) or 'schema'})",
                                "choose another --out")
        # keep points of earlier invocations (another grid over the same folder) in the index
        new_dirs = {point_dirname(p) for p in points}
        kept = old.get("points", [])
        if not isinstance(kept, list) or not all(isinstance(p, dict) and isinstance(p.get("dir"), str)
                                                 and isinstance(p.get("knobs", {}), dict) for p in kept):
            raise CgmbenchError(f"{index_path}: points must be a list of objects with a dir",
                                "the sweep index is damaged; restore it or choose another --out")
        index["points"] = [p for p in kept if p.get("dir") not in new_dirs]
    elif out.exists() and not is_pristine(out):
        raise CgmbenchError(f"sweep folder {out} is not empty and holds no sweep.json", "choose another --out")

    entries = {p["dir"]: p for p in index["points"]}
    for point in points:
        d = point_dirname(point)
        entries[d] = {"dir": d, "knobs": {k: _plain(v) for k, v in point.items()}, "status": "pending"}
    index["points"] = sorted(entries.values(), key=lambda e: e["dir"])
    atomic_write_json(index_path, index)

    for i, point in enumerate(points):
        d = point_dirname(point)
        entry = entries[d]
        run_dir = out / d
        if (run_dir / "run.json").is_file():
            log(f"[{i + 1}/{len(points)}] {d}: complete, skipped")
        else:
            log(f"[{i + 1}/{len(points)}] {d}: running")
        if before_point is not None:
            before_point(point)
        rcfg = cfg.base().with_point(point, out=str(run_dir), num_samples=n)
        record = run_fn(rcfg, log=lambda m: log(m) if m.startswith(_PASSED_ON) else None)
        entry.update({"status": "complete", "identity_sha256": record.get("identity_sha256"),
                      "samples_sha256": record.get("samples_sha256"), "resolved_knobs": record["model"]["knobs"],
                      "metrics": _summary(record)})
        atomic_write_json(index_path, index)
    return index


def _plain(v):
    return v if isinstance(v, (int, float, str, bool)) or v is None else str(v)


def _grid_of(points: list[dict]) -> dict[str, list]:
    grid: dict[str, list] = {}
    for p in points:
        for k, v in p.items():
            if v not in grid.setdefault(k, []):
                grid[k].append(v)
    return grid


def sweep_table(index: dict) -> str:
    """A small text table of a sweep index (one line per point)."""
    lines = [f"sweep {index['task']} / {index['model']}  n {index['n']}  seed {index['seed']}"]
    for p in index["points"]:
        metrics = "  ".join(
            f"{k} {m['value']:.4f}" + (f" [{m['ci95'][0]:.4f}, {m['ci95'][1]:.4f}]" if m.get("ci95") else "")
            for k, m in (p.get("metrics") or {}).items() if m.get("value") is not None)
        lines.append(f"  {p['dir']:32s} {p['status']:9s} {metrics}")
    return "\n".join(lines)
