"""Leaderboards (ranking, rank bands, comparability groups, csv/markdown/html) and figures."""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cgmbench.atomic import atomic_write_json
from cgmbench.cli.results import COMMANDS, register
from cgmbench.errors import CgmbenchError
from cgmbench.results.leaderboard import build, collect_records, rank_bands, render_csv, render_markdown, render_table
from cgmbench.results.plots import plot_pareto, sample_grid
from cgmbench.run.record import finalize
from cgmbench.run.runner import RunConfig, run
from cgmbench.spec.task import load_task

TASK = "shapes-t2i"
CHROMIUM = Path("/usr/bin/chromium")


def make_record(model, knobs=None, judge=0.5, judge_ci=(0.4, 0.6), fid=None, fid_ci=None, clip=None,
                protocol="clean", n=100, seed=0, extractor="shapes-cnn"):
    """A run record as the runner and the metric harness write it (numbers made up)."""
    task = load_task(TASK)
    prov = {"protocol": protocol, "extractor": extractor, "weights_sha256": "a" * 64,
            "reference_stats_sha256": "b" * 64, "method": "exact"}
    metrics = {"judge": {"overall": {"value": judge, "ci95": list(judge_ci), "n": n}, "attributes": {},
                         "version": "shapes-judge/1"}}
    if fid is not None:
        metrics["fid"] = {"value": fid, "ci95": list(fid_ci) if fid_ci else None, "n": n, **prov}
    if clip is not None:
        metrics["clip_score"] = {"value": clip[0], "ci95": [clip[1], clip[2]], "n": n, **prov}
    rec = {"schema": "cgmbench.run/1", "task": {"name": TASK, "kind": task.kind, "spec_sha256": task.sha256},
           "model": {"name": model, "spec": model, "checkpoint": None, "knobs": knobs or {}}, "n": n, "seed": seed,
           "samples_sha256": "c" * 64, "metrics": metrics, "metrics_pending": [],
           "environment": {"cgmbench": "0.1.0"}, "timings": {}}
    return finalize(rec)


def write_runs(root: Path, records) -> Path:
    for i, rec in enumerate(records):
        atomic_write_json(root / f"run{i:02d}" / "run.json", rec)
    return root


def sweep_records(protocol="clean"):
    recs = []
    for w, (clip, fid) in {1.0: (0.24, 30.0), 2.0: (0.28, 22.0), 4.0: (0.31, 26.0)}.items():
        recs.append(make_record("sd3", {"guidance_scale": w, "steps": 28}, judge=clip * 2, judge_ci=(clip * 2 - .05,
                    clip * 2 + .05), fid=fid, fid_ci=(fid - 1.5, fid + 1.5), clip=(clip, clip - .01, clip + .01),
                    protocol=protocol))
    for w, (clip, fid) in {1.5: (0.26, 24.0), 3.0: (0.29, 25.0)}.items():
        recs.append(make_record("ldm", {"guidance_scale": w}, judge=clip * 2, fid=fid, fid_ci=(fid - 1, fid + 1),
                                clip=(clip, clip - .01, clip + .01), protocol=protocol))
    recs.append(make_record("noise", judge=0.0, judge_ci=(0.0, 0.0), fid=300.0, fid_ci=(295, 305),
                            clip=(0.15, 0.14, 0.16), protocol=protocol))
    return recs


def test_rank_bands_hand_case():
    values = [0.90, 0.88, 0.80, 0.70, 0.50]
    cis = [(0.85, 0.95), (0.83, 0.93), (0.75, 0.84), (0.65, 0.82), None]
    # 0.88 overlaps the leader 0.90; 0.80's [0.75, 0.84] misses [0.85, 0.95] -> band 2;
    # 0.70's [0.65, 0.82] overlaps the band-2 leader; 0.50 (a point) does not
    assert rank_bands(values, cis, "max") == [1, 1, 2, 2, 3]


def test_ranking_groups_and_formats(tmp_path):
    recs = sweep_records() + [make_record("ldm", {"guidance_scale": 7.0}, fid=18.0, fid_ci=(17, 19),
                                          protocol="tf-exact"),
                              make_record("sd3", {"guidance_scale": 9.0}, fid=19.0, fid_ci=(18, 20), n=50)]
    runs = write_runs(tmp_path / "runs", recs)
    lb = build(TASK, "fid", roots=[runs])
    df = lb.df
    assert list(df["group"]) == [1] * 6 + [2, 3]
    g1 = df[df.group == 1]
    assert list(g1["fid"]) == [22.0, 24.0, 25.0, 26.0, 30.0, 300.0]  # lower is better
    # 22±1.5 overlaps 24±1 and 25±1 (leader interval [20.5, 23.5] vs [23, 25] and [24, 26]: only 24's)
    assert list(g1["band"]) == [1, 1, 2, 2, 3, 4]
    assert "fid.protocol ('clean' vs 'tf-exact')" in lb.group_notes[2]
    assert "n (100 vs 50)" in lb.group_notes[3]
    text = render_table(lb)
    assert "not ranked with group 1: differs in fid.protocol" in text and "lower is better" in text
    rows = list(csv.DictReader(io.StringIO(render_csv(lb))))
    assert len(rows) == len(recs) and rows[0]["model"] == "sd3" and rows[0]["knobs"] == "guidance_scale=2, steps=28"
    assert render_csv(lb).count("\n") == len(recs) + 1
    md = render_markdown(lb)
    assert md.count("| band | model |") == 3 and "**Group 2**" in md
    # judge ranks higher-is-better; the judge is comparable across protocols -> two groups (n differs)
    lbj = build(TASK, roots=[runs])
    assert lbj.metric == "judge" and set(lbj.df["group"]) == {1, 2}
    assert lbj.df.iloc[0]["model"] == "sd3" and lbj.df.iloc[0]["knobs"].startswith("guidance_scale=4")
    with pytest.raises(CgmbenchError, match="no run of task 'shapes-t2i' has metric 'kid'"):
        build(TASK, "kid", roots=[runs])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CgmbenchError, match="no run records"):
        build(TASK, "fid", roots=[tmp_path / "empty"])
    with pytest.raises(CgmbenchError, match="missing: the folder does not exist"):
        build(TASK, "fid", roots=[tmp_path / "missing"])


def test_default_roots_and_dedupe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CGMBENCH_RUNS", str(tmp_path / "myruns"))
    a, b = sweep_records()[:2]
    write_runs(tmp_path / "myruns" / TASK, [a])
    atomic_write_json(tmp_path / "leaderboards" / TASK / "sub-1.json", a)  # the same result submitted
    atomic_write_json(tmp_path / "leaderboards" / TASK / "sub-2.json", b)
    atomic_write_json(tmp_path / "leaderboards" / TASK / "index.json", {"not": "a record"})
    found = collect_records(TASK)
    assert len(found) == 2
    assert {r["identity_sha256"] for _, r in found} == {a["identity_sha256"], b["identity_sha256"]}


def _cli(argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return COMMANDS[args.command](args)


class _Rows(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.scripts, self.imgs = 0, 0, 0

    def handle_starttag(self, tag, attrs):
        self.rows += tag == "tr"
        self.scripts += tag == "script"
        self.imgs += tag == "img" and dict(attrs).get("src", "").startswith("data:image/png;base64,")


class _Cells(HTMLParser):
    """``data-v`` of every body cell, row by row, in document order."""

    def __init__(self):
        super().__init__()
        self.rows = []

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self.rows[-1].append(dict(attrs)["data-v"])

    def close(self):
        super().close()


def test_html_page_renders_in_chromium(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    recs = sweep_records() + [make_record("<script>alert(1)</script>", fid=40.0, fid_ci=(39, 41),
                                          clip=(0.2, 0.19, 0.21))]
    runs = write_runs(tmp_path / "runs", recs)
    assert _cli(["leaderboard", "--task", TASK, "--runs", str(runs), "--format", "html", "--metric", "fid"]) == 0
    page = tmp_path / "leaderboards" / TASK / "index.html"
    assert capsys.readouterr().out.strip() == str(Path("leaderboards") / TASK / "index.html")
    text = page.read_text()
    p = _Rows()
    p.feed(text)
    assert p.rows == len(recs) + 1 and p.scripts == 1 and p.imgs == 1  # the hostile name is escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    if not CHROMIUM.exists():  # an environment condition: .ci/run installs Debian's chromium
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + str(tmp_path / "prof")]
    # sort by the fid column (index 3), descending, through the page's own script
    dom = subprocess.run(cmd + ["--dump-dom", page.as_uri() + "#sort=3:desc"], capture_output=True, text=True,
                         timeout=120).stdout
    assert 'data-sorted="3:desc"' in dom
    cells = _Cells()
    cells.feed(dom)
    fids = [float(row[3]) for row in cells.rows if row]
    assert fids == sorted(fids, reverse=True) and len(fids) == len(recs)
    shot = tmp_path / "shot.png"
    subprocess.run(cmd + ["--window-size=1200,1600", f"--screenshot={shot}", page.as_uri()], capture_output=True,
                   timeout=120)
    img = np.asarray(Image.open(shot).convert("L"))
    assert img.shape == (1600, 1200) and img.std() > 10  # not a blank page


def test_pareto_figure_png_svg_and_errors(tmp_path):
    runs = write_runs(tmp_path / "runs", sweep_records() + sweep_records("tf-exact")[:1])
    warnings = []
    png = plot_pareto(TASK, tmp_path / "p.png", roots=[runs], warn=warnings.append)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any("not comparable" in w and "fid.protocol" in w for w in warnings)
    im = np.asarray(Image.open(png).convert("RGB"))
    assert im.shape[0] > 300 and im.std() > 10
    svg = plot_pareto(TASK, tmp_path / "p.svg", x="judge", y="fid", roots=[runs], warn=warnings.append)
    text = svg.read_text()
    assert "<svg" in text and "w=2" in text and "Pareto frontier" in text and "protocol clean" in text
    with pytest.raises(CgmbenchError, match=r"\.png or \.svg"):
        plot_pareto(TASK, tmp_path / "p.jpg", roots=[runs])
    with pytest.raises(CgmbenchError, match="no run records both"):
        plot_pareto(TASK, tmp_path / "q.png", x="judge", y="kid", roots=[runs])


@pytest.mark.slow
def test_cli_leaderboard_csv_and_sample_grid(tmp_path, capsys):
    root = tmp_path / "runs"
    for model in ("oracle", "noise"):
        run(RunConfig(task=TASK, model=model, num_samples=16, batch_size=8, out=str(root / model), progress=False),
            log=lambda m: None)
    assert _cli(["leaderboard", "--task", TASK, "--runs", str(root), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("group,band,model")
    assert lines[1].split(",")[2] == "oracle" and lines[2].split(",")[2] == "noise"
    assert _cli(["plot", "samples", str(root), "--out", str(tmp_path / "grid.png"), "--columns", "6"]) == 0
    im = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB"))
    assert im.shape[0] > 150 and im.std() > 10
    out = sample_grid(root / "oracle", tmp_path / "one.svg")
    assert "<svg" in out.read_text()
    shutil.rmtree(root / "noise" / "samples")
    (root / "noise" / "run.json").unlink()
    with pytest.raises(CgmbenchError, match="holds no run"):
        sample_grid(root / "noise", tmp_path / "x.png")
    # a model without knobs on a Pareto plot is one labelled point
    recs = [make_record("noise", fid=300.0, clip=(0.15, 0.14, 0.16)),
            make_record("sd3", {"guidance_scale": 2.0}, fid=20.0, clip=(0.3, 0.29, 0.31))]
    runs2 = write_runs(tmp_path / "r2", recs)
    assert _cli(["plot", "pareto", "--task", TASK, "--runs", str(runs2), "--out", str(tmp_path / "pp.svg")]) == 0
    assert ">noise<" in (tmp_path / "pp.svg").read_text() or "noise" in (tmp_path / "pp.svg").read_text()
    assert json.loads((root / "oracle" / "run.json").read_text())["n"] == 16


def test_every_metric_with_its_interval_in_one_table(tmp_path):
    recs = sweep_records() + sweep_records("tf-exact")[:1]  # one FID under another protocol
    runs = write_runs(tmp_path / "runs", recs)
    lb = build(TASK, roots=[runs])  # ranked by the judge, FID and CLIP score beside it
    assert lb.metrics == ["judge", "fid", "clip_score"]  # the task's [metrics] compute order
    top = lb.df.iloc[0]
    assert (top["model"], top["judge"], top["fid"], top["clip_score"]) == ("sd3", 0.62, 26.0, 0.31)
    assert (top["fid_ci_low"], top["fid_ci_high"], top["clip_score_ci_low"]) == (24.5, 27.5, 0.30)
    text = render_table(lb)
    assert text.splitlines()[0].startswith("task shapes-t2i: ranked by judge (higher is better)")
    assert "fid ↓" in text and "clip_score ↑" in text and "26.00 [24.50, 27.50]" in text
    # the judge groups FIDs of two protocols together: the note says the FID column mixes them
    assert "fid is not comparable across these rows (differs in fid.protocol" in lb.group_notes[1]
    rows = list(csv.DictReader(io.StringIO(render_csv(lb))))
    for col in ("judge", "judge_ci_low", "judge_ci_high", "fid", "fid_ci_low", "fid_ci_high", "clip_score",
                "clip_score_ci_low", "clip_score_ci_high"):
        assert col in rows[0], col
    assert float(rows[0]["fid_ci_high"]) == 27.5
    assert "ranked by judge" in render_markdown(lb)


def _main(capsys, *argv):
    from cgmbench.cli.main import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


def test_unknown_task_and_missing_runs_folder_are_one_line(tmp_path, capsys):
    code, _, err = _main(capsys, "leaderboard", "--task", "nosuch")
    assert code == 2 and len(err) == 1 and err[0].startswith("cgmbench: error: unknown task 'nosuch'")
    code, _, err = _main(capsys, "plot", "pareto", "--task", TASK, "--runs", str(tmp_path / "missing"))
    assert code == 2 and len(err) == 1 and "missing: the folder does not exist" in err[0]
    code, _, err = _main(capsys, "leaderboard", "--task", TASK, "--runs", str(tmp_path / "missing"))
    assert code == 2 and len(err) == 1 and "missing: the folder does not exist" in err[0]
    # without --task too (the issue's `plot pareto --runs missing/`): the folder, not a usage error
    code, _, err = _main(capsys, "plot", "pareto", "--runs", str(tmp_path / "missing") + "/")
    assert code == 2 and len(err) == 1 and "missing: the folder does not exist" in err[0]


def test_plot_pareto_takes_the_task_of_its_runs(tmp_path, capsys):
    runs = write_runs(tmp_path / "runs", _cc_records())
    code, out, _ = _main(capsys, "plot", "pareto", "--runs", str(runs), "--out", str(tmp_path / "p.svg"))
    assert code == 0 and out.strip() == str(tmp_path / "p.svg")
    assert _axis_labels((tmp_path / "p.svg").read_text()) == ("precision_recall (higher is better)",
                                                              "fid (lower is better)")
    write_runs(tmp_path / "runs" / "t2i", sweep_records())  # now two tasks under --runs: which one is not guessed
    code, _, err = _main(capsys, "plot", "pareto", "--runs", str(runs), "--out", str(tmp_path / "q.svg"))
    assert code == 2 and len(err) == 1 and f"records of 2 tasks (shapes-cc, {TASK}); give --task" in err[0]
    code, _, err = _main(capsys, "plot", "pareto", "--runs", str(tmp_path / "empty"), "--out", str(tmp_path / "e.svg"))
    assert code == 2 and "the folder does not exist" in err[0]
    (tmp_path / "empty").mkdir()
    code, _, err = _main(capsys, "plot", "pareto", "--runs", str(tmp_path / "empty"))
    assert code == 2 and len(err) == 1 and "no run records; give --task" in err[0]
    code, _, err = _main(capsys, "plot", "pareto")
    assert code == 2 and len(err) == 1 and "plot pareto needs --task" in err[0]


def _axis_labels(svg: str) -> tuple[str, str]:
    """The x and y axis titles of a matplotlib SVG (text is kept in comments beside its glyph paths)."""
    import re

    x_part, y_part = svg.split('id="matplotlib.axis_2"', 1)
    x_part = x_part.split('id="matplotlib.axis_1"', 1)[1]

    def title(part):
        return [t for t in re.findall(r"<!-- (.*?) -->", part) if "is better" in t][0]
    return title(x_part), title(y_part)


def _cc_records():
    """shapes-cc runs as digits-cc records them (FID, KID, precision/recall; no judge): numbers made up."""
    task = load_task("shapes-cc")
    prov = {"protocol": "clean", "extractor": "shapes-cnn", "weights_sha256": "a" * 64,
            "reference_stats_sha256": "b" * 64, "method": "exact"}
    recs = []
    for w, (fid, kid, prec) in {1.0: (30.0, 3.0, 0.5), 2.0: (20.0, 2.0, 0.7), 4.0: (25.0, 2.5, 0.8)}.items():
        metrics = {"fid": {"value": fid, "ci95": [fid - 1, fid + 1], "n": 100, **prov},
                   "kid": {"value": kid, "ci95": [kid - .1, kid + .1], "n": 100, **prov},
                   "precision_recall": {"value": prec, "ci95": [prec - .05, prec + .05], "precision": prec,
                                        "recall": 0.5, "recall_ci95": [0.45, 0.55], "n": 100, **prov}}
        recs.append(finalize({"schema": "cgmbench.run/1", "task": {"name": task.name, "kind": task.kind,
                                                                    "spec_sha256": task.sha256},
                              "model": {"name": "dit", "spec": "dit", "checkpoint": None,
                                        "knobs": {"guidance_scale": w}},
                              "n": 100, "seed": 0, "samples_sha256": "c" * 64, "metrics": metrics,
                              "metrics_pending": [], "environment": {}, "timings": {}}))
    return recs


def test_pareto_default_axes_fit_the_task_kind(tmp_path):
    runs = write_runs(tmp_path / "runs", _cc_records())
    svg = plot_pareto("shapes-cc", tmp_path / "d.svg", roots=[runs]).read_text()
    # class-conditional without a judge: precision (adherence-like) against FID, never FID against KID
    assert _axis_labels(svg) == ("precision_recall (higher is better)", "fid (lower is better)")
    lb = build("shapes-cc", "fid", roots=[runs])
    assert lb.metrics == ["fid", "kid", "precision_recall", "precision_recall.recall"]
    assert lb.df.iloc[0]["precision_recall.recall_ci_high"] == 0.55


def test_pareto_x_option_sets_only_the_x_axis(tmp_path):
    runs = write_runs(tmp_path / "runs", _cc_records())
    svg = plot_pareto("shapes-cc", tmp_path / "x.svg", x="precision_recall", roots=[runs]).read_text()
    assert _axis_labels(svg) == ("precision_recall (higher is better)", "fid (lower is better)")  # KID nowhere
    svg = plot_pareto("shapes-cc", tmp_path / "x2.svg", x="kid", roots=[runs]).read_text()
    assert _axis_labels(svg) == ("kid (lower is better)", "fid (lower is better)")  # asked for: kept


def test_pareto_y_option_sets_only_the_y_axis(tmp_path):
    runs = write_runs(tmp_path / "runs", _cc_records())
    svg = plot_pareto("shapes-cc", tmp_path / "y.svg", y="kid", roots=[runs]).read_text()
    assert _axis_labels(svg) == ("precision_recall (higher is better)", "kid (lower is better)")
    runs_t2i = write_runs(tmp_path / "t2i", sweep_records())
    svg = plot_pareto(TASK, tmp_path / "y2.svg", y="judge", roots=[runs_t2i]).read_text()
    assert _axis_labels(svg) == ("clip_score (higher is better)", "judge (higher is better)")
