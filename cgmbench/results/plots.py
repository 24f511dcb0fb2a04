"""Figures: the Pareto plot of two metrics and labelled sample grids. Matplotlib, Agg backend.

``pareto_figure`` draws one curve per model (its sweep points joined in the order of the swept
knob, each point labelled with the knob value, e.g. ``w=1.5``), error bars from the 95% intervals
recorded with each metric, the non-dominated set over all points highlighted, and a caption with
the protocol, extractor (or judge version) and N. A model without a swept knob is a single
labelled point. Only one comparability group (see :mod:`cgmbench.results.leaderboard`) is drawn: the
largest; the others are named in a warning.

``sample_grid`` shows the first samples of a run, or of every run of a sweep folder (one row per
knob value, the same condition indices in every column).
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np

from cgmbench.errors import CgmbenchError
from cgmbench.results.leaderboard import (
    Leaderboard,
    collect_records,
    comparability_key,
    explain_difference,
    knob_text,
    leaderboard_dir,
    metric_entry,
    render_html,
)
from cgmbench.results.pareto import Point, curves, direction, frontier

FORMATS = {".png": "png", ".svg": "svg"}
#: the knob a model's curve follows (first one that varies across its runs); default Pareto axes: results/axes.py
SWEEP_KNOBS = ("guidance_scale", "truncation", "strength", "image_guidance_scale")
_KNOB_SYMBOL = {"guidance_scale": "w", "truncation": "ψ", "strength": "s", "image_guidance_scale": "s_I"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def format_for(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise CgmbenchError(f"cannot tell the figure format from {str(path)!r}",
                            "name the output file .png or .svg")
    return FORMATS[suffix]


def _available(records) -> set[str]:
    names = set()
    for _, r in records:
        names.update(k for k, v in (r.get("metrics") or {}).items() if isinstance(v, dict))
    return names


def _task_kind(task: str, records) -> str:
    """The kind of ``task``: from its records (a task file may be gone), else from its spec."""
    for _, r in records:
        kind = (r.get("task") or {}).get("kind")
        if isinstance(kind, str):
            return kind
    from cgmbench.spec.task import load_task

    return load_task(task).kind


def default_axes(task: str, records=None, roots=None, x: str | None = None,
                 y: str | None = None) -> tuple[str, str]:
    """The (x, y) metrics to plot: ``x`` / ``y`` when given, the missing ones from the task kind's table
    (:data:`cgmbench.results.axes.PARETO_AXES`) among the recorded metrics."""
    from cgmbench.results.axes import resolve_axes

    records = records if records is not None else collect_records(task, roots)
    if x is not None and y is not None:
        return x, y
    return resolve_axes(_task_kind(task, records), _available(records), x, y)


def _points(records, x: str, y: str, warn) -> tuple[list[Point], dict]:
    """Points of the largest comparability group and its key."""
    groups: list[tuple[dict, list]] = []
    for path, rec in records:
        ex, ey = metric_entry(rec, x), metric_entry(rec, y)
        if ex is None or ey is None:
            continue
        key = {**comparability_key(rec, x), **comparability_key(rec, y)}
        for k, members in groups:
            if k == key:
                members.append((path, rec, ex, ey))
                break
        else:
            groups.append((key, [(path, rec, ex, ey)]))
    if not groups:
        raise CgmbenchError(f"no run records both {x} and {y}",
                            f"metrics recorded: {', '.join(sorted(_available(records))) or 'none'}")
    groups.sort(key=lambda g: -len(g[1]))
    key, members = groups[0]
    for k, m in groups[1:]:
        warn(f"{len(m)} run(s) not drawn: not comparable with the plotted runs "
             f"(differs in {explain_difference(key, k)})")
    by_model: dict[str, list] = {}
    for item in members:
        by_model.setdefault(str((item[1].get("model") or {}).get("spec")), []).append(item)
    points = []
    for model, items in by_model.items():
        knob_sets = [(it[1].get("model") or {}).get("knobs") or {} for it in items]
        varying = sorted({k for ks in knob_sets for k in ks if len({json.dumps(s.get(k)) for s in knob_sets}) > 1})
        swept = next((k for k in SWEEP_KNOBS if k in varying), varying[0] if varying else None)
        for (path, rec, ex, ey), ks in zip(items, knob_sets):
            rest = {k: ks[k] for k in varying if k != swept}
            curve = f"{model} ({knob_text(rest)})" if rest else model
            if swept is None:
                label, sv = model, None
            else:
                v = ks.get(swept)
                label = f"{_KNOB_SYMBOL.get(swept, swept)}={v:g}" if isinstance(v, (int, float)) else f"{swept}={v}"
                sv = float(v) if isinstance(v, (int, float)) else None
            points.append(Point(ex["value"], ey["value"], ex["ci95"], ey["ci95"], curve, label, sv,
                                {"path": str(path), "entry_x": (rec["metrics"].get(x.split(".")[0])),
                                 "entry_y": rec["metrics"].get(y.split(".")[0]), "n": rec.get("n")}))
    return points, key


def _describe(metric: str, entry: dict) -> str:
    if metric.split(".")[0] == "judge":
        return f"{metric}: judge {entry.get('version', '?')}"
    bits = [f"protocol {entry.get('protocol', '?')}", f"extractor {entry.get('extractor', '?')}"]
    return f"{metric}: " + ", ".join(bits)


def pareto_figure(task: str, x: str, y: str, roots=None, fmt: str = "png", records=None,
                  warn=None) -> tuple[bytes, str]:
    """``(file bytes, caption)`` of the Pareto figure of ``task`` for metrics ``x`` and ``y``."""
    warn = warn or (lambda m: print(f"cgmbench: warning: {m}", file=sys.stderr))
    records = records if records is not None else collect_records(task, roots, warn)
    if not records:
        raise CgmbenchError(f"no run records of task {task!r} found", "run cgmbench sweep first or give --runs")
    points, _ = _points(records, x, y, warn)
    dx, dy = direction(x), direction(y)
    front = frontier(points, x, y)
    caption = "; ".join(dict.fromkeys([_describe(x, points[0].meta["entry_x"]),
                                       _describe(y, points[0].meta["entry_y"])])) + f"; N={points[0].meta['n']}"

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 5.5), dpi=110)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ci, (model, pts) in enumerate(sorted(curves(points).items())):
        c = colors[ci % len(colors)]
        xs, ys = [p.x for p in pts], [p.y for p in pts]
        xerr = np.array([[p.x - p.x_ci[0], p.x_ci[1] - p.x] if p.x_ci else [0, 0] for p in pts]).T.clip(0)
        yerr = np.array([[p.y - p.y_ci[0], p.y_ci[1] - p.y] if p.y_ci else [0, 0] for p in pts]).T.clip(0)
        ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="o-" if len(pts) > 1 else "s", color=c, label=model,
                    capsize=3, markersize=5, linewidth=1.4, elinewidth=0.8)
        for p in pts:
            ax.annotate(p.label, (p.x, p.y), textcoords="offset points", xytext=(5, 5), fontsize=8, color=c)
    fx = [points[i].x for i in front]
    fy = [points[i].y for i in front]
    ax.plot(fx, fy, linestyle="--", color="black", linewidth=1.0, zorder=1, alpha=0.6)
    ax.scatter(fx, fy, s=160, facecolors="none", edgecolors="black", linewidths=1.6, zorder=3,
               label="Pareto frontier")
    ax.set_xlabel(f"{x} ({'lower' if dx == 'min' else 'higher'} is better)")
    ax.set_ylabel(f"{y} ({'lower' if dy == 'min' else 'higher'} is better)")
    for axis, vals, setter in (("x", [p.x for p in points], ax.set_xscale), ("y", [p.y for p in points],
                                                                              ax.set_yscale)):
        if min(vals) > 0 and max(vals) / min(vals) > 20:  # e.g. FID of noise next to FID of models
            setter("log")
    ax.set_title(f"{task}: {y} vs {x}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.text(0.5, 0.01, caption + "; error bars: 95% CI", ha="center", va="bottom", fontsize=7.5, wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    plt.close(fig)
    return buf.getvalue(), caption


def plot_pareto(task: str, out: str | Path, x: str | None = None, y: str | None = None, roots=None,
                warn=None) -> Path:
    """Write the Pareto figure to exactly ``out`` (format from its extension); returns the path."""
    from cgmbench.atomic import atomic_write_bytes

    fmt = format_for(out)
    records = collect_records(task, roots, warn)
    if not records:
        raise CgmbenchError(f"no run records of task {task!r} found", "run cgmbench sweep first or give --runs")
    x, y = default_axes(task, records, x=x, y=y)
    data, _ = pareto_figure(task, x, y, roots=roots, fmt=fmt, records=records, warn=warn)
    atomic_write_bytes(out, data)
    return Path(out)


# -- sample grids ---------------------------------------------------------------------------------


def _runs_in(folder: Path) -> list[tuple[str, Path, dict]]:
    """``(row label, run dir, record-or-config)`` of a run folder or of each run of a sweep folder."""
    from cgmbench.run.samples import SampleStore

    def one(d: Path):
        if (d / "run.json").is_file():
            from cgmbench.safe_paths import read_json

            rec = read_json(d / "run.json", "record", "run record", strict=False)
            return (rec.get("model") or {}).get("knobs") or {}, (rec.get("model") or {}).get("spec"), rec.get("n")
        if SampleStore.exists(d / "samples"):
            cfg = SampleStore.open(d / "samples").config
            return cfg.get("knobs") or {}, cfg.get("model"), cfg.get("n")
        return None

    if one(folder) is not None:
        knobs, model, _ = one(folder)
        return [(f"{model} {knob_text(knobs)}".strip(), folder, knobs)]
    found = []
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        info = one(d)
        if info is not None:
            found.append((d, *info))
    if not found:
        raise CgmbenchError(f"{folder} holds no run (no run.json or samples/index.json, nor in its subfolders)")
    # label rows by the knobs that vary across the sweep (all knobs when nothing varies)
    all_knobs = [f[1] for f in found]
    varying = sorted({k for ks in all_knobs for k in ks if len({json.dumps(s.get(k)) for s in all_knobs}) > 1})
    rows = []
    for d, knobs, model, _ in found:
        shown = {k: knobs[k] for k in varying} if varying else knobs
        rows.append((knob_text(shown) or str(model), d, knobs))

    def order(r):
        return tuple((0, float(r[2][k])) if isinstance(r[2].get(k), (int, float)) else (1, str(r[2].get(k)))
                     for k in varying)
    return sorted(rows, key=order)


def _column_titles(run_dir: Path, k: int) -> list[str]:
    """``#i`` plus the condition text (text tasks) or the class name (:meth:`Source.class_name`), when the run's
    task can be loaded."""
    titles = [f"#{i}" for i in range(k)]
    try:
        from cgmbench.run.samples import SampleStore
        from cgmbench.sources.base import open_source
        from cgmbench.spec.task import load_task

        task = load_task(SampleStore.open(run_dir / "samples").config["task"])
        source = open_source(task, "conditions")
        cond = source.conditions(list(range(k)))
    except Exception:  # titles are decoration: a task spec that changed or is gone leaves "#i"
        return titles
    if cond.texts is not None:
        import textwrap

        return [f"#{i}\n" + "\n".join(textwrap.wrap(t, 18, max_lines=3, placeholder="…"))
                for i, t in enumerate(cond.texts)]
    if cond.labels is not None:  # the class's name where the source knows it ("red square"), else "class 7"
        return [f"#{i}\n{source.class_name(int(c))}" for i, c in enumerate(cond.labels)]
    return titles


def sample_grid(folder: str | Path, out: str | Path, columns: int = 8, rows_per_run: int = 1) -> Path:
    """A labelled grid: the first ``columns * rows_per_run`` samples of each run in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CgmbenchError(f"{folder} is not a folder", "give a run folder (with run.json) or a sweep folder")
    format_for(out)
    runs = [(label, d) for label, d, _ in _runs_in(folder)]
    return labelled_grid(runs, out, columns, rows_per_run,
                         title=f"{folder.name}: samples (same condition index per column)")


def labelled_grid(runs: list[tuple[str, Path]], out: str | Path, columns: int = 8, rows_per_run: int = 1,
                  title: str = "samples (same condition index per column)") -> Path:
    """The grid of :func:`sample_grid` for explicit ``(row label, run folder)`` pairs, e.g. one run per model of
    one task (``cgmbench demo``): row = run, column = condition index (titled with the first run's conditions)."""
    from cgmbench.atomic import atomic_write_bytes
    from cgmbench.run.samples import SampleStore

    fmt = format_for(out)
    if not runs:
        raise CgmbenchError("no run to draw a sample grid of")
    k = columns * rows_per_run
    images = []
    for label, d in runs:
        d = Path(d)
        store = SampleStore.open(d / "samples")
        have = store.covered()
        m = 0
        while m < len(have) and have[m] == m and m < k:
            m += 1
        if m == 0:
            raise CgmbenchError(f"run {d} has no samples yet", "continue it with cgmbench run --resume")
        arr = store.read(0, m)
        if arr.ndim == 5:  # video [B, T, 3, H, W]: a strip of its frames (issue 16)
            from cgmbench.results.video import frame_strips

            arr = frame_strips(arr)
        images.append((label, arr))
    titles = _column_titles(Path(runs[0][1]), k)
    plt = _plt()
    n_rows = len(images) * rows_per_run
    wide = max(a.shape[-1] / a.shape[-2] for _, a in images)  # frame strips of videos are wide
    fig, axes = plt.subplots(n_rows, columns, figsize=(1.3 * wide * columns + 1.6, 1.3 * n_rows + 1.0), squeeze=False)
    for r, (label, arr) in enumerate(images):
        for j in range(k):
            ax = axes[r * rows_per_run + j // columns][j % columns]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(arr):
                ax.imshow(arr[j].transpose(1, 2, 0), interpolation="nearest")
            else:
                ax.axis("off")
            if r == 0 and j < columns:
                ax.set_title(titles[j], fontsize=6.5, wrap=True)
            if j % columns == 0:
                ax.set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=100)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return Path(out)


def write_html(lb: Leaderboard, roots=None, out: str | Path | None = None, records=None,
               generated: str | None = None) -> Path:
    """Write ``leaderboards/<task>/index.html`` (or ``out``) with the Pareto figure when one can be drawn
    (``generated``: :func:`cgmbench.results.leaderboard.render_html`)."""
    from cgmbench.atomic import atomic_write_bytes

    png, caption = None, ""
    try:
        x, y = default_axes(lb.task, records)
        png, caption = pareto_figure(lb.task, x, y, roots=roots, fmt="png", records=records)
    except CgmbenchError as err:  # e.g. only one metric recorded: the table alone
        caption = f"no Pareto figure: {err}"
    path = Path(out) if out else leaderboard_dir(lb.task) / "index.html"
    atomic_write_bytes(path, render_html(lb, png, caption, generated=generated).encode("utf-8"))
    return path
