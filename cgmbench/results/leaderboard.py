"""Leaderboards: run records -> a ranked pandas DataFrame, with uncertainty and comparability.

Where records come from
    ``--runs DIR`` (repeatable): every ``*.json`` under DIR holding a ``cgmbench.run/1`` record
    (``run.json`` of runs and sweeps, accepted submissions). Default: the default runs folder
    (:func:`cgmbench.paths.runs_dir`) plus :func:`leaderboard_dir` ``(task)``. Records of other
    tasks are ignored; a record found twice (same ``identity_sha256``) is listed once.

Comparability
    Two numbers of metric M are comparable only when they were produced under the same task
    spec (``task.spec_sha256``), the same N, and — for the judge — the same judge ``version``;
    for feature metrics (FID, CLIP score, …) the same ``protocol``, ``extractor``,
    ``weights_sha256``, ``reference_stats_sha256`` and ``method``. Rows are split into
    comparability groups on exactly these fields (:func:`comparability_key`); each group is
    ranked on its own, and every group after the first says which fields separate it.

Rank bands
    Within a group rows are sorted best first (direction from :mod:`cgmbench.results.pareto`). The best
    row opens band 1; each following row joins the current band when its 95% interval overlaps
    the interval of the band's first row, otherwise it opens the next band. Rows in one band are
    not distinguishable at 95%. A row without an interval is a point ``[v, v]``.

Columns
    One table shows every metric the task's runs record: the ranking metric first (named in the caption), then
    the others in the order of the task's ``[metrics] compute``, each as ``value [low, high]`` (its 95%
    interval); the CSV has every column at full precision, ``<metric>_ci_low`` / ``<metric>_ci_high`` included.
    Groups are formed on the ranking metric; when another column mixes protocols inside a group, the group's
    note says so.
"""

from __future__ import annotations

import html
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cgmbench.errors import CgmbenchError
from cgmbench.results.pareto import direction, metric_base
from cgmbench.paths import runs_dir
from cgmbench.safe_paths import read_json
from cgmbench.run.record import SCHEMA

#: largest JSON file the collector reads (run records are a few KiB)
MAX_RECORD_BYTES = 4 * 1024 * 1024
_SKIP_NAMES = {"index.json", "sweep.json"}
JUDGE_FIELDS = ("version",)
FEATURE_FIELDS = ("protocol", "extractor", "weights_sha256", "reference_stats_sha256", "method")


def leaderboards_root() -> Path:
    """``$CGMBENCH_LEADERBOARDS`` or ``./leaderboards`` (the repository's folder when run from a checkout)."""
    return Path(os.environ.get("CGMBENCH_LEADERBOARDS", "leaderboards"))


def leaderboard_dir(task: str) -> Path:
    return leaderboards_root() / task


def default_roots(task: str) -> list[Path]:
    return [runs_dir(), leaderboard_dir(task)]


# -- collecting records ---------------------------------------------------------------------------


def collect_records(task: str, roots: list[str | Path] | None = None, warn=None) -> list[tuple[Path, dict]]:
    """``(path, record)`` for every run record of ``task`` under ``roots`` (sorted by path).

    A root given explicitly that does not exist is an error; the default roots may be missing."""
    warn = warn or (lambda m: print(f"cgmbench: warning: {m}", file=sys.stderr))
    explicit = bool(roots)
    roots = [Path(r) for r in (roots or default_roots(task))]
    found, seen = [], set()
    for root in roots:
        if not root.exists():
            if explicit:  # a folder the user named: a typo must not read as "no runs"
                raise CgmbenchError(f"--runs {root}: the folder does not exist",
                                    "give a folder of runs (e.g. a sweep's --out), or leave --runs out")
            continue
        files = [root] if root.is_file() else sorted(root.rglob("*.json"))
        for path in files:
            if path.name in _SKIP_NAMES or path.name.startswith(".") or path.is_symlink():
                continue
            try:  # only regular files, at most MAX_RECORD_BYTES: a FIFO named *.json never blocks
                if path.stat().st_size > MAX_RECORD_BYTES:
                    continue
                rec = read_json(path, "record", "run record", MAX_RECORD_BYTES, strict=False)
            except (OSError, CgmbenchError) as e:
                warn(f"skipping unreadable {path}: {e}")
                continue
            if not isinstance(rec, dict) or rec.get("schema") != SCHEMA:
                continue
            if not isinstance(rec.get("task"), dict) or rec["task"].get("name") != task:
                continue
            if not isinstance(rec.get("metrics"), dict):
                warn(f"skipping {path}: no metrics")
                continue
            problem = malformed(rec)
            if problem:
                warn(f"skipping {path}: {problem}")
                continue
            ident = rec.get("identity_sha256") or str(path.resolve())
            if ident in seen:
                continue
            seen.add(ident)
            found.append((path, rec))
    return found


def record_tasks(roots: list[Path]) -> list[str]:
    """The task names of the run records under ``roots`` (sorted); a root that does not exist is an error, as in
    :func:`collect_records`."""
    tasks = set()
    for root in roots:
        if not root.exists():
            raise CgmbenchError(f"--runs {root}: the folder does not exist",
                                "give a folder of runs (e.g. a sweep's --out), or leave --runs out")
        for path in [root] if root.is_file() else sorted(root.rglob("*.json")):
            if path.name in _SKIP_NAMES or path.name.startswith(".") or path.is_symlink():
                continue
            try:
                if path.stat().st_size > MAX_RECORD_BYTES:
                    continue
                rec = read_json(path, "record", "run record", MAX_RECORD_BYTES, strict=False)
            except (OSError, CgmbenchError):
                continue
            if isinstance(rec, dict) and rec.get("schema") == SCHEMA and isinstance(rec.get("task"), dict) \
                    and isinstance(rec["task"].get("name"), str):
                tasks.add(rec["task"]["name"])
    return sorted(tasks)


def malformed(rec: dict) -> str | None:
    """What makes a record unusable for a table (wrong field types: hand-edited or foreign), or None."""
    model = rec.get("model")
    if not isinstance(model, dict):
        return "model is not an object"
    if not isinstance(model.get("knobs", {}) or {}, dict):
        return "model.knobs is not an object"
    if not isinstance(model.get("checkpoint") or {}, dict):
        return "model.checkpoint is not an object"
    if not all(isinstance(model.get(k), (str, type(None))) for k in ("spec", "name")):
        return "model.spec/name is not a string"
    if type(rec.get("n")) is not int or rec["n"] < 1:
        return "n is not a positive integer"
    if rec.get("seed") is not None and type(rec.get("seed")) is not int:
        return "seed is not an integer"
    if not isinstance(rec["task"].get("spec_sha256"), (str, type(None))):
        return "task.spec_sha256 is not a string"
    if not isinstance(rec.get("identity_sha256", ""), str):
        return "identity_sha256 is not a string"
    sub = rec.get("submission")
    if sub is not None and (not isinstance(sub, dict) or not isinstance(sub.get("rescored", {}), dict)):
        return "submission is not an object"
    return None


def verification(rec: dict, metric: str) -> str:
    """``verified``: a submission whose samples were re-scored for ``metric`` by ``cgmbench submit``;
    ``claimed``: a submission whose number was not re-scored (no ``--samples``, or a metric this version cannot
    re-score); ``run``: a record written by ``cgmbench run`` from its own samples (not a submission)."""
    sub = rec.get("submission")
    if sub is None:
        return "run"
    base = metric_base(metric)
    if sub.get("samples_verified") is True and base in (sub.get("rescored") or {}):
        return "verified"
    return "claimed"


# -- metric values and comparability ---------------------------------------------------------------


_CATEGORY = re.compile(r"(?P<base>\w+)\[(?P<column>\w+)=(?P<label>[^\]]+)\]")


def metric_entry(record: dict, metric: str) -> dict | None:
    """``{"value", "ci95", "n"}`` of ``metric`` (``judge``, ``fid``, ``judge.color``, a part recorded beside a
    metric's value such as ``precision_recall.recall``, or one prompt category's value such as
    ``clip_score[category=Colors]``) or None."""
    sel = _CATEGORY.fullmatch(metric)
    base, _, attr = ("", "", "") if sel else metric.partition(".")
    m = record.get("metrics", {}).get(sel["base"] if sel else base)
    if sel and isinstance(m, dict):
        m = (m.get("by_category") or {}).get(sel["column"], {}).get(sel["label"])
    if not isinstance(m, dict):
        return None
    if attr and isinstance(m.get(attr), (int, float)) and not isinstance(m.get(attr), bool):
        m = {"value": m[attr], "ci95": m.get(f"{attr}_ci95"), "n": m.get("n")}  # a part: precision_recall.recall
    elif attr:
        a = (m.get("attributes") or {}).get(attr)
        if not isinstance(a, dict):
            return None
        m = a
    elif isinstance(m.get("overall"), dict):
        m = m["overall"]
    v = m.get("value")
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return None
    ci = m.get("ci95")
    ok_ci = isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(c, (int, float)) for c in ci)
    return {"value": float(v), "ci95": (float(ci[0]), float(ci[1])) if ok_ci else None, "n": m.get("n")}


def entry_problem(entry: dict) -> str | None:
    """Why a metric entry cannot be ranked (a non-finite value or interval, or an interval whose low end is above
    its high end), or None when it can."""
    import math

    if not math.isfinite(entry["value"]):
        return f"value {entry['value']!r} is not a finite number"
    ci = entry.get("ci95")
    if ci is not None:
        if not all(math.isfinite(c) for c in ci):
            return f"interval {list(ci)!r} is not finite"
        if ci[0] > ci[1]:
            return f"interval {list(ci)!r} is inverted (low above high)"
    return None


def comparability_key(record: dict, metric: str) -> dict:
    """The fields that must be equal for two records' ``metric`` values to be compared."""
    base = metric_base(metric)
    m = record.get("metrics", {}).get(base) or {}
    key = {"task_spec_sha256": (record.get("task") or {}).get("spec_sha256"), "n": record.get("n")}
    fields = JUDGE_FIELDS if base == "judge" else FEATURE_FIELDS
    for f in fields:
        key[f"{base}.{f}"] = m.get(f)
    return key


def explain_difference(a: dict, b: dict) -> str:
    """``"n (1000 vs 500), fid.protocol ('clean' vs 'tf-exact')"``: the fields where two keys differ."""
    diffs = [f"{k} ({_short(a.get(k))} vs {_short(b.get(k))})" for k in sorted(set(a) | set(b))
             if a.get(k) != b.get(k)]
    return ", ".join(diffs)


def _short(v) -> str:
    if isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v):
        return repr(v[:12] + "…")
    return repr(v)


def knob_text(knobs: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(knobs.items()))


def rank_bands(values, cis, dir_: str) -> list[int]:
    """Band of each row, rows given best first (see module docstring)."""
    bands, band, leader = [], 0, None
    for v, ci in zip(values, cis):
        lo, hi = ci if ci is not None else (v, v)
        if leader is None or not (lo <= leader[1] and hi >= leader[0]):
            band += 1
            leader = (lo, hi)
        bands.append(band)
    return bands


@dataclass
class Leaderboard:
    """The ranked table (``df``) and a note per comparability group explaining the split.

    ``metrics`` are the metric columns of ``df``, the ranking ``metric`` first, then the task's other metrics in
    the order of its ``[metrics] compute``; each has the columns ``<m>``, ``<m>_ci_low`` and ``<m>_ci_high``
    (empty where a run does not record it)."""

    task: str
    metric: str
    df: pd.DataFrame
    group_notes: dict[int, str]
    excluded: list[str]
    metrics: list[str] = field(default_factory=list)


def ci_columns(metric: str) -> tuple[str, str]:
    """The ``df`` columns holding ``metric``'s 95% interval."""
    return f"{metric}_ci_low", f"{metric}_ci_high"


def table_metrics(task: str, metric: str, records: list[dict]) -> list[str]:
    """The metric columns of a leaderboard: ``metric`` first, then every other recorded metric, in the task's
    ``[metrics] compute`` order (unknown tasks: by name), ``precision_recall``'s recall beside its precision."""
    recorded = _available(records)
    try:
        from cgmbench.spec.task import load_task

        order = list(load_task(task).metric_settings.compute)
    except CgmbenchError:  # a task file that is gone: its records still list their metrics
        order = []
    names = [m for m in order if m in recorded] + [m for m in recorded if m not in order]
    out = [metric]
    for m in names:
        for col in ((m, f"{m}.recall") if m == "precision_recall" else (m,)):
            if col != metric and col not in out:
                out.append(col)
    return out


def build(task: str, metric: str | None = None, roots=None, warn=None, records=None,
          rank_claims: bool = False) -> Leaderboard:
    """Rank the runs of ``task`` on ``metric`` (default: ``judge`` if recorded, else the task's first), with every
    other metric of the task beside it (value and 95% interval each; see :class:`Leaderboard`).

    Every row has a ``status`` (:func:`verification`). Claimed rows (submissions whose number was not re-scored)
    are listed after the ranked rows of their group with band ``claim``, never above a verified number, unless
    ``rank_claims`` ranks them with the others (still marked ``claimed``)."""
    records = records if records is not None else collect_records(task, roots, warn)
    if not records:
        where = ", ".join(str(r) for r in (roots or default_roots(task)))
        raise CgmbenchError(f"no run records of task {task!r} found in {where}",
                            "run cgmbench run/sweep first, or point --runs at a folder of runs")
    if metric is None:
        metric = _default_metric(task, [r for _, r in records])
    dir_ = direction(metric)
    columns = table_metrics(task, metric, [r for _, r in records])
    rows, excluded, keys, by_path = [], [], [], {}
    for path, rec in records:
        entry = metric_entry(rec, metric)
        if entry is None:
            excluded.append(f"{path}: no {metric} value")
            continue
        problem = entry_problem(entry)
        if problem:  # never ranked: NaN or inf would sort first or last, an inverted interval means nothing
            excluded.append(f"{path}: {metric} {problem}")
            continue
        key = comparability_key(rec, metric)
        if key not in keys:
            keys.append(key)
        model = rec.get("model") or {}
        row = {"group": keys.index(key) + 1, "model": str(model.get("spec") or model.get("name")),
               "knobs": knob_text(model.get("knobs") or {})}
        for m in columns:
            e = entry if m == metric else metric_entry(rec, m)
            if e is not None and m != metric and entry_problem(e):
                e = None  # a broken secondary number is left empty, never shown as if it were a result
            lo, hi = ci_columns(m)
            ci = e["ci95"] if e else None
            row.update({m: e["value"] if e else None, lo: ci[0] if ci else None, hi: ci[1] if ci else None})
        row.update({
            "n": rec.get("n"), "seed": rec.get("seed"),
            "checkpoint_sha256": ((model.get("checkpoint") or {}).get("sha256") or "")[:12],
            "submitted": "submission" in rec, "status": verification(rec, metric),
            "identity_sha256": rec.get("identity_sha256", ""),
            "path": str(path),
        })
        rows.append(row)
        by_path[str(path)] = rec
    if not rows:
        raise CgmbenchError(f"no run of task {task!r} has metric {metric!r}",
                            f"available: {', '.join(_available(r for _, r in records)) or 'none'}")
    # largest group first, then in order of first appearance
    sizes = pd.Series([r["group"] for r in rows]).value_counts()
    order = sorted(sizes.index, key=lambda g: (-sizes[g], g))
    renumber = {g: i + 1 for i, g in enumerate(order)}
    keys = [keys[g - 1] for g in order]
    for r in rows:
        r["group"] = renumber[r["group"]]
    df = pd.DataFrame(rows)
    lo, hi = ci_columns(metric)
    parts = []
    for g, part in df.groupby("group", sort=True):
        part = part.sort_values([metric, "model", "knobs"], ascending=[dir_ == "min", True, True], kind="stable")
        claims = part[part["status"] == "claimed"] if not rank_claims else part.iloc[0:0]
        part = part.drop(claims.index)
        cis = [None if pd.isna(a) else (a, b) for a, b in zip(part[lo], part[hi])]
        part = part.assign(band=rank_bands(part[metric].tolist(), cis, dir_))
        parts.append(part.astype({"band": object}))
        if len(claims):  # unverified numbers: listed, never ranked above a verified one
            parts.append(claims.assign(band="claim"))
    df = pd.concat(parts, ignore_index=True)
    metric_cols = [c for m in columns for c in (m, *ci_columns(m))]
    df = df[["group", "band", "model", "knobs", *metric_cols, "n", "seed", "checkpoint_sha256",
             "submitted", "status", "identity_sha256", "path"]]
    notes = {1: "comparable: " + _key_text(keys[0])}
    for g in range(2, len(keys) + 1):
        notes[g] = (f"not ranked with group 1: differs in {explain_difference(keys[0], keys[g - 1])}")
    for g, part in df.groupby("group", sort=True):  # the other columns may mix protocols inside a group: say so
        for m in columns[1:]:
            mixed = []
            for path in part.loc[part[m].notna(), "path"]:
                k = comparability_key(by_path[path], m)
                if k not in mixed:
                    mixed.append(k)
            if len(mixed) > 1:
                notes[g] += f"; {m} is not comparable across these rows (differs in " \
                            f"{explain_difference(mixed[0], mixed[1])})"
    return Leaderboard(task, metric, df, notes, excluded, columns)


def _key_text(key: dict) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in sorted(key.items()))


def _available(records) -> list[str]:
    names = set()
    for r in records:
        names.update(k for k, v in (r.get("metrics") or {}).items() if isinstance(v, dict))
    return sorted(names)


def _default_metric(task: str, records: list[dict]) -> str:
    avail = _available(records)
    if "judge" in avail:
        return "judge"
    try:
        from cgmbench.spec.task import load_task

        for name in load_task(task).metric_settings.compute:
            if name in avail:
                return name
    except CgmbenchError:
        pass
    if not avail:
        raise CgmbenchError(f"the runs of task {task!r} hold no metrics")
    return avail[0]


# -- rendering ------------------------------------------------------------------------------------



def format_value(v) -> str:
    """A metric value at a precision that suits its size (judge 0.812, FID 23.41, KID 1234)."""
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "-"
    a = abs(float(v))
    if a >= 1000:
        return f"{v:.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 0.01 or a == 0:
        return f"{v:.3f}"
    return f"{v:.2e}"


def format_cell(value, low, high) -> str:
    """``"0.812 [0.750, 0.860]"``; ``"-"`` when the run does not record the metric."""
    if value is None or pd.isna(value):
        return "-"
    if low is None or pd.isna(low):
        return format_value(value)
    return f"{format_value(value)} [{format_value(low)}, {format_value(high)}]"


def metric_header(metric: str) -> str:
    """A column title: the metric and its direction (``fid ↓``, ``judge ↑``)."""
    return f"{metric} {'↓' if direction(metric) == 'min' else '↑'}"


def display_frame(lb: Leaderboard, part: pd.DataFrame | None = None, metrics: list[str] | None = None
                  ) -> pd.DataFrame:
    """The rows of ``part`` (default: all) as text: band, model, knobs, one ``value [low, high]`` column per metric
    (``metrics``, default all of the leaderboard's), n, seed, status."""
    df = lb.df if part is None else part
    out = df[["band", "model", "knobs"]].copy()
    for m in metrics or lb.metrics or [lb.metric]:
        lo, hi = ci_columns(m)
        out[metric_header(m)] = [format_cell(v, a, b) for v, a, b in zip(df[m], df[lo], df[hi])]
    for c in ("n", "seed", "status"):
        out[c] = df[c]
    return out


def table_caption(lb: Leaderboard) -> str:
    """What the table shows and how it is ranked (the first line of every rendering)."""
    return (f"task {lb.task}: ranked by {lb.metric} ({'lower' if direction(lb.metric) == 'min' else 'higher'} is "
            "better); every metric with its 95% interval [low, high] (↑ higher is better, ↓ lower is better); rows "
            "in one band have overlapping 95% intervals of the ranking metric; status: run (this suite's run record), "
            "verified (submission re-scored from its samples), claimed (submission not re-scored: band 'claim', not "
            "ranked unless --rank-claims)")


def render_table(lb: Leaderboard) -> str:
    lines = [table_caption(lb)]
    for g, part in lb.df.groupby("group", sort=True):
        lines.append("")
        lines.append(f"group {g}: {lb.group_notes[g]}")
        lines.append(display_frame(lb, part).to_string(index=False))
    for e in lb.excluded:
        lines.append(f"(excluded {e})")
    return "\n".join(lines)


def render_csv(lb: Leaderboard) -> str:
    """Every column of the table at full precision, interval columns included (``<metric>_ci_low`` / ``_ci_high``)."""
    return lb.df.to_csv(index=False, lineterminator="\n")


def _md_cell(v) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def render_markdown(lb: Leaderboard) -> str:
    lines = [f"## {lb.task}: ranked by {lb.metric}", "", _md_cell(table_caption(lb)), ""]
    for g, part in lb.df.groupby("group", sort=True):
        d = display_frame(lb, part)
        lines += [f"**Group {g}** — {_md_cell(lb.group_notes[g])}", "",
                  "| " + " | ".join(d.columns) + " |", "|" + "---|" * len(d.columns)]
        lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in d.itertuples(index=False)]
        lines.append("")
    return "\n".join(lines)


_SORT_JS = """
function cgmSort(table, col, numeric, descending) {
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  rows.sort(function (a, b) {
    var x = a.cells[col].getAttribute('data-v'), y = b.cells[col].getAttribute('data-v');
    var r = numeric ? (parseFloat(x) - parseFloat(y)) : (x < y ? -1 : x > y ? 1 : 0);
    return descending ? -r : r;
  });
  rows.forEach(function (row) { body.appendChild(row); });
  table.setAttribute('data-sorted', col + (descending ? ':desc' : ':asc'));
}
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var desc = table.getAttribute('data-sorted') === col + ':asc';
      cgmSort(table, col, th.getAttribute('data-numeric') === '1', desc);
    });
  });
});
(function () {  /* #sort=COL or #sort=COL:desc sorts every table on load (links, tests) */
  var m = /sort=(\\d+)(:desc)?/.exec(location.hash);
  if (m) document.querySelectorAll('table.sortable').forEach(function (t) {
    var th = t.querySelectorAll('th')[+m[1]];
    if (th) cgmSort(t, +m[1], th.getAttribute('data-numeric') === '1', !!m[2]);
  });
})();
"""


def render_html(lb: Leaderboard, figure_png: bytes | None = None, caption: str = "", generated: str | None = None
                ) -> str:
    """A self-contained static page: one sortable table per comparability group, the Pareto figure.
    ``generated``: what the page says it was made from (default: the current UTC time; the shipped boards give
    their records' latest verification time, so unchanged records make the same bytes)."""
    import base64
    from datetime import datetime, timezone

    e = html.escape
    metrics = lb.metrics or [lb.metric]
    cols = [("band", True), ("model", False), ("knobs", False), *((m, True) for m in metrics), ("n", True),
            ("seed", True), ("status", False), ("identity_sha256", False)]
    parts = [
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>cgmbench leaderboard: {e(lb.task)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:90em}table{border-collapse:collapse;"
        "margin:1em 0}th,td{border:1px solid #bbb;padding:.3em .6em;text-align:left}th{cursor:pointer;"
        "background:#eee}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}"
        ".note{color:#555}figure img{max-width:100%}</style></head><body>",
        f"<h1>{e(lb.task)}: ranked by {e(lb.metric)}</h1>",
        f"<p class='note'>{e(table_caption(lb))}. Click a column header to sort. Generated "
        f"{e(generated or datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC'))} by cgmbench.</p>",
    ]
    for g, part in lb.df.groupby("group", sort=True):
        parts.append(f"<h2>Group {g}</h2><p class='note' id='group-{g}-note'>{e(lb.group_notes[g])}</p>")
        parts.append(f"<table class='sortable' id='group-{g}'><thead><tr>")
        parts += [f"<th data-numeric='{int(num)}'>{e(metric_header(c) if c in metrics else c)}</th>"
                  for c, num in cols]
        parts.append("</tr></thead><tbody>")
        for _, row in part.iterrows():
            parts.append("<tr>")
            for c, num in cols:
                v = row[c]
                if c in metrics:  # value [low, high]; sorted on the value
                    lo, hi = ci_columns(c)
                    v = "" if pd.isna(v) else v
                    parts.append(f"<td class='num' data-v='{e(str(v))}'>{e(format_cell(row[c], row[lo], row[hi]))}</td>")
                elif num:
                    v = "" if not isinstance(v, str) and pd.isna(v) else v
                    shown = f"{v:.4f}" if isinstance(v, float) else str(v)
                    parts.append(f"<td class='num' data-v='{e(str(v))}'>{e(shown)}</td>")
                else:
                    v = str(v)[:12] if c == "identity_sha256" else str(v)
                    parts.append(f"<td data-v='{e(v)}'>{e(v)}</td>")
            parts.append("</tr>")
        parts.append("</tbody></table>")
    if figure_png:
        data = base64.b64encode(figure_png).decode("ascii")
        parts.append(f"<figure><img alt='Pareto figure' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{e(caption)}</figcaption></figure>")
    parts.append(f"<script>{_SORT_JS}</script></body></html>")
    return "\n".join(parts)




def category_table(task: str, column: str, metric: str = "clip_score", roots=None, warn=None,
                   records=None) -> pd.DataFrame:
    """Per-category results: one row per run (model, knobs), one column per category label of ``column``
    (e.g. DrawBench's ``category``), cells ``value [low, high]``. Rows are the runs of the leaderboard's
    first comparability group on ``metric``, in its order; categories in the prompt file's order."""
    records = records if records is not None else collect_records(task, roots, warn)
    lb = build(task, metric, records=records)
    first = lb.df[lb.df["group"] == 1]
    by_path = {str(p): r for p, r in records}
    rows, labels = [], []
    for _, row in first.iterrows():
        rec = by_path.get(row["path"]) or {}
        groups = ((rec.get("metrics", {}).get(metric) or {}).get("by_category") or {}).get(column)
        if not groups:
            continue
        cells = {"model": row["model"], "knobs": row["knobs"], "overall": f"{row[metric]:.2f}"}
        for label, e in groups.items():
            if label not in labels:
                labels.append(label)
            ci = e.get("ci95") or [float("nan")] * 2
            cells[label] = f"{e['value']:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"
        rows.append(cells)
    if not rows:
        raise CgmbenchError(f"no run of task {task!r} records {metric} by {column!r}",
                            "per-category results come from tasks whose [conditions] name `categories`")
    return pd.DataFrame(rows, columns=["model", "knobs", "overall", *labels]).fillna("-")


def dataframe_markdown(df: pd.DataFrame) -> str:
    """A pipe table of ``df`` (pandas' ``to_markdown`` needs the optional ``tabulate``)."""
    lines = ["| " + " | ".join(_md_cell(c) for c in df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"

