"""``cgmbench demo``: the plan is runnable data, and ``demo --quick`` writes the table, figures and page it promises."""

import math

import pandas as pd
import pytest

from cgmbench.cli.main import main
from cgmbench.demo import DEMO_PLAN, REFERENCE_MODELS, DemoEntry, demo_points, run_demo
from cgmbench.models.registry import model_class
from cgmbench.spec.task import load_task


def _baselines_and_kinds(points):
    baselines = {p.model for p in points if p.model not in REFERENCE_MODELS}
    kinds = {load_task(p.task).kind for p in points}
    return baselines, kinds


@pytest.mark.parametrize("quick", [False, True])
def test_plan_covers_six_baselines_and_five_kinds(quick):
    baselines, kinds = _baselines_and_kinds(demo_points(quick))
    assert len(baselines) >= 6 and len(kinds) >= 5, (baselines, kinds)


def test_every_planned_knob_is_a_knob_of_its_model_and_in_range():
    for entry in DEMO_PLAN:
        knobs = {k.name: k for k in model_class(entry.model).knobs}
        named = dict(entry.fixed)
        if entry.knob is not None:
            assert entry.values and entry.quick in entry.values, entry
            for v in entry.values:
                named[entry.knob] = v
                knobs[entry.knob].parse(str(v))  # raises on a value out of the knob's range
        for name, value in named.items():
            assert name in knobs, (entry.model, name)
            knobs[name].parse(str(value))
        assert entry.task in load_task(entry.task).name  # the task spec loads


def test_points_sweep_the_full_plan_and_one_value_in_quick():
    entry = DemoEntry("shapes-t2i", "ldm", "guidance_scale", (1.0, 2.0, 4.0), 2.0, {"steps": 5})
    full = demo_points(False, (entry,))
    quick = demo_points(True, (entry,))
    assert [p.model for p in full] == ["oracle", "noise", "ldm", "ldm", "ldm"]
    assert [p.knobs for p in full[2:]] == [{"steps": 5, "guidance_scale": w} for w in (1.0, 2.0, 4.0)]
    assert [p.in_grid for p in full[2:]] == [False, True, False]
    assert [(p.model, p.knobs) for p in quick] == [("oracle", {}), ("noise", {}),
                                                  ("ldm", {"steps": 5, "guidance_scale": 2.0})]
    assert quick[2].label == "ldm w=2" and full[0].n > quick[0].n


def test_rerun_reuses_finished_runs(tmp_path):
    plan = (DemoEntry("shapes-unpaired", "cyclegan"),)
    first = run_demo(tmp_path, quick=True, progress=False, log=lambda m: None, plan=plan)
    lines = []
    again = run_demo(tmp_path, quick=True, progress=True, log=lines.append, plan=plan)
    assert [r["identity_sha256"] for _, r in first.records["shapes-unpaired"]] == \
        [r["identity_sha256"] for _, r in again.records["shapes-unpaired"]]
    assert len(lines) == 3 and all("finished earlier, reused" in line for line in lines)


def test_rerun_replaces_a_run_of_an_older_checkpoint(tmp_path):
    import json

    plan = (DemoEntry("shapes-unpaired", "cyclegan"),)
    first = run_demo(tmp_path, quick=True, progress=False, log=lambda m: None, plan=plan)
    folder = first.records["shapes-unpaired"][0][0].parent
    index = folder / "samples" / "index.json"
    data = json.loads(index.read_text())
    data["config"]["checkpoint_sha256"] = "0" * 64  # as if an older cgmbench had shipped another file
    index.write_text(json.dumps(data))
    lines = []
    again = run_demo(tmp_path, quick=True, progress=False, log=lines.append, plan=plan)
    assert any("made by another checkpoint or task version; running it again" in line for line in lines)
    rec = again.records["shapes-unpaired"][0][1]
    assert rec["model"]["checkpoint"]["sha256"] != "0" * 64
    assert json.loads(index.read_text())["config"]["checkpoint_sha256"] == rec["model"]["checkpoint"]["sha256"]


def test_demo_quick_writes_leaderboard_plot_grid_and_page(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("leaderboard.md", "leaderboard.csv", "pareto.png", "grid.png", "index.html"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
        assert name in printed
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(out / "index.html") in printed

    table = pd.read_csv(out / "leaderboard.csv")
    baselines = set(table.loc[~table["model"].isin(REFERENCE_MODELS), "model"])
    assert len(baselines) >= 6 and table["kind"].nunique() >= 5, (baselines, set(table["kind"]))
    assert all(math.isfinite(v) and 0 <= v <= 1 for v in table["judge"])
    for task, rows in table.groupby("task"):
        judge = dict(zip(rows["model"], rows["judge"]))
        assert judge["oracle"] == 1.0 and judge["noise"] < judge["oracle"], task  # oracle above noise
        assert rows.iloc[0]["model"] == "oracle"  # ranked first
        assert (rows["n"] == rows["n"].iloc[0]).all()
    t2i = table[table["task"] == "shapes-t2i"]
    assert t2i[["fid", "clip_score"]].notna().all().all() and (t2i["fid"] > 0).all()
    fid = dict(zip(t2i["model"], t2i["fid"]))
    assert fid["oracle"] < fid["noise"]

    page = (out / "index.html").read_text()
    assert "src='pareto.png'" in page and "src='grid.png'" in page
    for task in set(table["task"]):
        assert f"<h2 id='{task}'>" in page


def test_record_notes_count_each_caveat_once_per_run():
    from cgmbench.demo import record_notes

    def rec(n, model):
        return {"metrics": {"fid": {"value": 1.0, "warnings": [f"only N={n} samples for d=256; use more",
                                                               f"rank {n - 1} < d"]},
                            "judge": {"value": 0.5}},
                "metrics_pending": [f"cycle_error: model {model!r} defines no reverse; see docs"]}

    notes = record_notes([rec(32, "oracle"), rec(32, "noise"), rec(64, "noise"), {"metrics": {}}])
    assert notes == ["fid: only N=32 samples for d=256 (3 run(s))", "fid: rank 31 < d (3 run(s))",
                     "not computed: cycle_error: model 'oracle' defines no reverse (3 run(s))"]
    assert record_notes([{"metrics": {"judge": {"value": 1.0}}}]) == []
