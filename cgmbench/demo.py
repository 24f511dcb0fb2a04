"""``cgmbench demo``: the small offline benchmark a newcomer runs first, as a plan (data) and its execution.

What it answers: on each offline shapes task (one per task kind), how do the shipped baselines compare with each
other and with the reference models (``oracle``: held-out real data, the floor; ``noise``: uniform pixels), and
how does guidance (truncation for the GANs, edit strength for SDEdit) trade sample fidelity against adherence to
the condition?

The plan
    :data:`DEMO_PLAN` lists one :class:`DemoEntry` per (task, baseline): the knob it sweeps with the values of
    the full demo and the one value of ``--quick``, and the knobs held fixed (fewer sampler steps than the
    papers' defaults, so the demo fits its time budget; every row shows its knobs). ``oracle`` and ``noise``
    run on every task of the plan. N is :data:`DEMO_N` (``--quick``: :data:`QUICK_N`), seed 0. Models are named,
    never imported: they come from the model registry, so this module does not depend on ``baselines/``.

Execution
    Every point is an ordinary :func:`cgmbench.run.runner.run` with ``resume=True`` into
    ``OUT/runs/<task>/<model>/n<N>-<knobs>/``: a rerun reuses finished runs and continues interrupted ones.
    Runs pass :data:`BATCH_SIZE` samples per network pass, so their samples equal those of ``cgmbench run
    --batch-size 64`` with the same task, model, knobs, N and seed.

Outputs (all in ``OUT``)
    ``leaderboard.md`` / ``leaderboard.csv``  every task's ranked table (judge first, each metric with its 95%
                                              bootstrap interval; the CSV has every column)
    ``pareto.png``                            the text-to-image Pareto figure: FID against CLIP score over
                                              guidance, one curve per model (``pareto-<task>.png``: the other
                                              tasks, on their kind's axes, :mod:`cgmbench.results.axes`)
    ``grid.png``                              the text-to-image sample grid, one row per model (at the point of
                                              ``--quick``), one column per caption (``grid-<task>.png``: the others)
    ``index.html``                            one page with all of it (the figures are files beside it)
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cgmbench.errors import CgmbenchError

__all__ = ["DemoEntry", "DEMO_PLAN", "LEFT_OUT", "DEMO_N", "QUICK_N", "HEADLINE_TASK", "REFERENCE_MODELS", "DemoPoint",
           "demo_points", "run_demo", "DemoResult"]


@dataclass(frozen=True)
class DemoEntry:
    """One baseline on one task: ``knob`` swept over ``values`` (``quick``: the one value of ``--quick``; None
    leaves the model out of ``--quick``), ``fixed`` knobs held at every point. A model without a sweep knob
    (pix2pix, CycleGAN: a GAN translator has none) has ``knob=None`` and runs once."""

    task: str
    model: str
    knob: str | None = None
    values: tuple = ()
    quick: float | None = None
    fixed: dict = field(default_factory=dict)
    in_quick: bool = True


#: the plan of the full demo (and, through ``quick`` / ``in_quick``, of ``--quick``); see the module docstring
DEMO_PLAN: tuple[DemoEntry, ...] = (
    DemoEntry("shapes-t2i", "ldm", "guidance_scale", (1.0, 2.0, 4.0), 2.0),
    DemoEntry("shapes-t2i", "sd3", "guidance_scale", (1.0, 2.0, 4.0), 2.0, in_quick=False),
    DemoEntry("shapes-t2i", "parti", "guidance_scale", (1.0, 2.0, 4.0), 2.0),
    DemoEntry("shapes-t2i", "stackgan", "truncation", (0.5, 1.0, 2.0), 1.0),
    DemoEntry("shapes-t2i", "attngan", "truncation", (0.5, 1.0, 2.0), 1.0),
    DemoEntry("shapes-cc", "dit", "guidance_scale", (1.0, 2.0, 4.0), 2.0, {"steps": 25, "sampler": "ddim"}),
    DemoEntry("shapes-cc", "parti", "guidance_scale", (1.0, 2.0, 4.0), 2.0, in_quick=False),
    DemoEntry("shapes-paired", "pix2pix"),
    DemoEntry("shapes-unpaired", "cyclegan"),
    DemoEntry("shapes-edit", "sdedit", "strength", (0.3, 0.5, 0.7), 0.5),
    DemoEntry("shapes-edit", "instruct-pix2pix", "guidance_scale", (3.0,), 3.0, in_quick=False),
    DemoEntry("shapes-edit", "inpaint", "guidance_scale", (3.0,), 3.0, in_quick=False),
    # the text-to-video scores (FVD with a bootstrap interval) cost more than the rest of --quick together
    DemoEntry("shapes-t2v", "latte", "guidance_scale", (1.0, 4.0), 4.0, {"steps": 25, "sampler": "ddim"},
              in_quick=False),
)
#: shipped models of the demo's tasks that it leaves out, and why
LEFT_OUT = {"p2p": "DDIM inversion plus two guided passes per step: several times the cost of the other editors"}
#: samples per run of the full demo and of ``--quick``
DEMO_N = 100
QUICK_N = 32
#: samples per generate() call and per network pass (``cgmbench run --batch-size 64``): on a CPU four times faster
#: than one sample per pass, ``cgmbench run``'s default (whose samples are bit-identical whatever the batch)
BATCH_SIZE = 64
#: the floor and the ceiling, run on every task of the plan
REFERENCE_MODELS = ("oracle", "noise")
#: the task whose Pareto figure and sample grid are ``pareto.png`` / ``grid.png`` (the README's picture)
HEADLINE_TASK = "shapes-t2i"
#: symbols of the swept knobs in row labels
_SYMBOL = {"guidance_scale": "w", "truncation": "ψ", "strength": "s", "image_guidance_scale": "s_I"}


@dataclass(frozen=True)
class DemoPoint:
    """One run of the demo: ``task``, ``model``, its ``knobs`` (fixed and swept), ``n``; ``label`` names the row
    of the sample grid (``"ldm w=2"``); ``in_grid`` marks the one point per model the grid shows."""

    task: str
    model: str
    knobs: dict
    n: int
    label: str
    in_grid: bool

    def folder(self, out: Path) -> Path:
        from cgmbench.run.sweep import point_dirname

        return Path(out) / "runs" / self.task / self.model / f"n{self.n}-{point_dirname(self.knobs)}"


def _label(model: str, knob: str | None, value) -> str:
    if knob is None:
        return model
    return f"{model} {_SYMBOL.get(knob, knob)}={value:g}" if isinstance(value, (int, float)) else f"{model} {value}"


def demo_points(quick: bool = False, plan: tuple[DemoEntry, ...] = DEMO_PLAN) -> list[DemoPoint]:
    """Every run of the demo (``quick``: of ``--quick``), task by task, the reference models first."""
    n = QUICK_N if quick else DEMO_N
    entries = [e for e in plan if e.in_quick or not quick]
    points: list[DemoPoint] = []
    tasks = dict.fromkeys(e.task for e in entries)
    for task in tasks:
        for model in REFERENCE_MODELS:
            points.append(DemoPoint(task, model, {}, n, model, True))
        for e in (e for e in entries if e.task == task):
            if e.knob is None:
                points.append(DemoPoint(task, e.model, dict(e.fixed), n, e.model, True))
                continue
            values = (e.quick,) if quick else e.values
            for v in values:
                points.append(DemoPoint(task, e.model, {**e.fixed, e.knob: v}, n, _label(e.model, e.knob, v),
                                        v == e.quick))
    return points


@dataclass
class DemoResult:
    """What :func:`run_demo` made: the output folder, the files written, the printed tables, the run records
    ``(run.json path, record)`` per task, and per-run wall seconds of this session."""

    out: Path
    files: list[Path]
    tables: str
    records: dict[str, list]
    seconds: dict[str, float]
    notes: list[str]


class _Progress:
    """One bar over the demo's runs (its postfix: the run and whether it samples or scores) on a terminal;
    one line per finished run otherwise. The runs' own per-sample bars appear beneath it and are cleared."""

    def __init__(self, total: int, enabled: bool, log: Callable[[str], None]):
        from tqdm import tqdm

        self.tty = enabled and sys.stderr.isatty()
        self.enabled, self.total, self.done, self.log = enabled, total, 0, log
        self.bar = tqdm(total=total, desc="cgmbench demo", unit="run", disable=not self.tty, file=sys.stderr,
                        position=0, dynamic_ncols=True)
        self.current = ""

    def phase(self, what: str) -> None:
        if self.tty:
            self.bar.set_postfix_str(f"{self.current}: {what}", refresh=True)

    def start(self, label: str) -> None:
        self.current = label
        self.phase("sampling")

    def finish(self, seconds: float, reused: bool) -> None:
        self.done += 1
        if self.tty:
            self.bar.update(1)
        elif self.enabled:
            self.log(f"cgmbench demo [{self.done}/{self.total}] {self.current}: "
                     f"{'finished earlier, reused' if reused else f'{seconds:.1f} s'}")

    def close(self) -> None:
        self.bar.close()


def record_notes(records: list[dict]) -> list[str]:
    """One line per distinct caveat of the records: a metric's warnings (``metrics.<m>.warnings``, e.g. an FID
    from fewer samples than feature dimensions) and metrics left pending (``metrics_pending``, e.g. LPIPS
    without its backbone), each with the number of runs it applies to. Caveats that differ only in numbers or
    paths or quoted names count as one; the first is shown, up to its first ``;`` (plus the command that
    fetches a missing file, when the caveat names one)."""
    found: dict[str, list] = {}
    for rec in records:
        lines = [f"{name}: {w}" for name, entry in (rec.get("metrics") or {}).items() if isinstance(entry, dict)
                 for w in entry.get("warnings") or []]
        lines += [f"not computed: {p}" for p in rec.get("metrics_pending") or []]
        keyed = {}
        for line in lines:
            fetch = re.search(r"cgmbench weights fetch [\w:.-]+", line)
            short = line.split(";")[0] + (f" (get it: {fetch.group(0)})" if fetch and fetch.group(0) not in
                                          line.split(";")[0] else "")
            keyed.setdefault(re.sub(r"\d+(\.\d+)?", "#", re.sub(r"/\S+|'[^']*'", "", short)), short)
        for key, short in keyed.items():
            found.setdefault(key, [short, 0])[1] += 1
    return [f"{line} ({count} run(s))" for line, count in found.values()]


def run_demo(out: str | Path, quick: bool = False, device: str = "cpu", progress: bool = True,
             log: Callable[[str], None] | None = None, plan: tuple[DemoEntry, ...] = DEMO_PLAN) -> DemoResult:
    """Run the demo's plan into ``out`` (reusing finished runs), write its tables, figures and page there."""
    from cgmbench.run.config import RunConfig
    from cgmbench.run.runner import run
    from cgmbench.run.steps import DifferentRun

    log = log or (lambda m: print(m, file=sys.stderr))
    out = Path(out)
    points = demo_points(quick, plan)
    bar = _Progress(len(points), progress, log)
    def run_log(message: str) -> None:  # the metrics' warnings are in the records: notes() reads them there
        if "scoring" in message and not message.startswith("cgmbench: warning"):
            bar.phase("scoring")
        elif message.startswith("computing reference statistics"):
            bar.phase("reference statistics (once per task)")

    records: dict[str, list] = {}
    seconds: dict[str, float] = {}
    try:
        for pt in points:
            folder = pt.folder(out)
            name = f"{pt.task} {pt.label}"
            bar.start(name)
            reused = (folder / "run.json").is_file()
            t0 = time.perf_counter()
            config = RunConfig(task=pt.task, model=pt.model, num_samples=pt.n, seed=0, knobs=dict(pt.knobs),
                               out=str(folder), resume=True, device=device, progress=progress,
                               batch_size=BATCH_SIZE, micro_batch=BATCH_SIZE)
            try:
                rec = run(config, log=run_log)
            except DifferentRun:
                # the demo's own cached run of an older checkpoint or task version: replace it, say so
                log(f"{folder}: made by another checkpoint or task version; running it again")
                shutil.rmtree(folder)
                reused = False
                rec = run(config, log=run_log)
            seconds[name] = round(time.perf_counter() - t0, 2)
            records.setdefault(pt.task, []).append((folder / "run.json", rec))
            bar.finish(seconds[name], reused)
    finally:
        bar.close()
    notes = record_notes([rec for recs in records.values() for _, rec in recs])
    tables, files = write_outputs(out, points, records, quick)
    return DemoResult(out, files, tables, records, seconds, notes)


# -- outputs ------------------------------------------------------------------------------------------------


def _axes(task: str, records) -> tuple[str, str] | None:
    from cgmbench.results.plots import default_axes

    try:
        return default_axes(task, records)
    except CgmbenchError:
        return None


def write_outputs(out: Path, points: list[DemoPoint], records: dict[str, list], quick: bool
                  ) -> tuple[str, list[Path]]:
    """The tables (returned as printed text and written as ``leaderboard.md`` / ``.csv``), the Pareto figures,
    the sample grids and ``index.html`` of the demo's records (module docstring)."""
    import pandas as pd

    from cgmbench.atomic import atomic_write_bytes
    from cgmbench.results.leaderboard import build, display_frame, render_markdown
    from cgmbench.results.plots import labelled_grid, pareto_figure
    from cgmbench.spec.task import load_task

    files: list[Path] = []
    printed, markdown, csv_parts, sections = [], [], [], []
    n = points[0].n
    for task, recs in records.items():
        kind = load_task(task).kind
        lb = build(task, records=recs)
        axes = _axes(task, recs)
        shown = [lb.metric] + [m for m in (axes or ()) if m != lb.metric]
        table = display_frame(lb, metrics=shown).drop(columns=["seed", "status"])
        head = f"{task} ({kind}): ranked by {lb.metric}, N={n}; value [95% interval], ↑ higher / ↓ lower is better"
        printed += [head, table.to_string(index=False), ""]
        markdown.append(render_markdown(lb).replace(f"## {task}:", f"## {task} ({kind}):", 1))
        csv_parts.append(lb.df.assign(task=task, kind=kind))
        figure = out / ("pareto.png" if task == HEADLINE_TASK else f"pareto-{task}.png")
        caption = ""
        if axes is not None:
            png, caption = pareto_figure(task, axes[0], axes[1], fmt="png", records=recs, warn=lambda m: None)
            atomic_write_bytes(figure, png)
            files.append(figure)
        else:
            figure = None
        grid = out / ("grid.png" if task == HEADLINE_TASK else f"grid-{task}.png")
        rows = [(p.label, p.folder(out)) for p in points if p.task == task and p.in_grid]
        files.append(labelled_grid(rows, grid, columns=6, title=f"{task}: one row per model, one column per "
                                                                  "condition"))
        sections.append({"task": task, "kind": kind, "head": head, "table": table, "figure": figure,
                         "caption": caption, "grid": grid})
    md_path, csv_path, page = out / "leaderboard.md", out / "leaderboard.csv", out / "index.html"
    intro = (f"# cgmbench demo{' --quick' if quick else ''}\n\nEvery shipped baseline on its offline shapes task "
             f"next to `oracle` (held-out real data) and `noise`, N={n} per run, seed 0. Left out: "
             + "; ".join(f"`{m}` ({why})" for m, why in LEFT_OUT.items()) + ".\n\n")
    atomic_write_bytes(md_path, (intro + "\n".join(markdown) + "\n").encode("utf-8"))
    columns = ["task", "kind"]
    frame = pd.concat(csv_parts, ignore_index=True)
    frame = frame[columns + [c for c in frame.columns if c not in columns]]
    atomic_write_bytes(csv_path, frame.to_csv(index=False, lineterminator="\n").encode("utf-8"))
    atomic_write_bytes(page, render_page(sections, n, quick).encode("utf-8"))
    files = [md_path, csv_path, *files, page]
    return "\n".join(printed).rstrip() + "\n", files


def render_page(sections: list[dict], n: int, quick: bool) -> str:
    """``index.html``: per task its table, Pareto figure and sample grid (the PNGs are files beside the page)."""
    import html
    from datetime import datetime, timezone

    e = html.escape
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             f"<title>cgmbench demo{' (quick)' if quick else ''}</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;"
             "margin:1em 0}th,td{border:1px solid #bbb;padding:.3em .6em;text-align:left;white-space:nowrap}"
             "th{background:#eee}.note{color:#555}img{max-width:100%}</style></head><body>",
             f"<h1>cgmbench demo{' --quick' if quick else ''}</h1>",
             "<p class='note'>" + e(
                 "Every shipped baseline on its offline shapes task, one task per task kind, next to oracle "
                 f"(held-out real data) and noise (uniform pixels); N={n} per run, seed 0. Each metric is shown "
                 "with its 95% bootstrap interval; rows are ranked by the exact judge and rows in one band are not "
                 "distinguishable at 95%. The Pareto figures follow guidance (w), truncation (ψ) or edit strength "
                 "(s). Left out: " + "; ".join(f"{m} ({why})" for m, why in LEFT_OUT.items()) + ". Files beside "
                 "this page: leaderboard.md, leaderboard.csv, the figures. Generated "
                 f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by cgmbench.") + "</p>"]
    for s in sections:
        parts.append(f"<h2 id='{e(s['task'])}'>{e(s['task'])} ({e(s['kind'])})</h2>")
        parts.append(f"<p class='note'>{e(s['head'])}</p>")
        parts.append(s["table"].to_html(index=False, escape=True, border=0))
        if s["figure"] is not None:
            parts.append(f"<figure><img alt='Pareto figure of {e(s['task'])}' src='{e(s['figure'].name)}'>"
                         f"<figcaption>{e(s['caption'])}</figcaption></figure>")
        parts.append(f"<figure><img alt='samples of {e(s['task'])}' src='{e(s['grid'].name)}'>"
                     "<figcaption>first samples of each model (one row per model)</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)
