"""Issue 12 part B, results side: verified vs claimed rows (item 6), garbage records under ``leaderboard --runs``
(item 11)."""

from __future__ import annotations

import json

from cgmbench.atomic import atomic_write_json
from cgmbench.cli.main import main
from cgmbench.results.leaderboard import build, render_table
from cgmbench.run.record import finalize
from cgmbench.spec.task import load_task

TASK = "shapes-t2i"


def record(model, judge, ci, submission=None, **extra):
    task = load_task(TASK)
    rec = {"schema": "cgmbench.run/1", "task": {"name": TASK, "kind": task.kind, "spec_sha256": task.sha256},
           "model": {"name": model, "spec": model, "checkpoint": None, "knobs": {}}, "n": 100, "seed": 0,
           "samples_sha256": "c" * 64, "metrics": {"judge": {"overall": {"value": judge, "ci95": list(ci), "n": 100},
                                                              "attributes": {}, "version": "shapes-judge/1"}},
           "metrics_pending": [], "environment": {}, "timings": {}, **extra}
    if submission is not None:
        rec["submission"] = submission
    return finalize(rec)


VERIFIED = {"samples_verified": True, "rescored": {"judge": 0.6}}
CLAIMED = {"samples_verified": False, "rescored": {}}


def test_a_claim_is_never_ranked_above_a_verification_unless_asked(tmp_path):
    recs = [(tmp_path / "a.json", record("local", 0.5, (0.45, 0.54))),
            (tmp_path / "b.json", record("checked", 0.6, (0.55, 0.65), VERIFIED)),
            (tmp_path / "c.json", record("bold", 0.95, (0.94, 0.96), CLAIMED)),
            (tmp_path / "d.json", record("partly", 0.9, (0.89, 0.91),  # samples given, judge not re-scored
                                         {"samples_verified": True, "rescored": {"fid": 3.0}}))]
    lb = build(TASK, "judge", records=recs)
    rows = lb.df[["model", "band", "status"]].values.tolist()
    assert rows == [["checked", 1, "verified"], ["local", 2, "run"], ["bold", "claim", "claimed"],
                    ["partly", "claim", "claimed"]]
    text = render_table(lb)
    assert "claimed" in text and "verified" in text and "claim " in text
    ranked = build(TASK, "judge", records=recs, rank_claims=True)
    assert ranked.df[["model", "band", "status"]].values.tolist()[:2] == [["bold", 1, "claimed"],
                                                                           ["partly", 2, "claimed"]]


def test_submit_without_samples_shows_as_claimed_in_the_cli(tmp_path, capsys):
    for i, rec in enumerate([record("local", 0.5, (0.45, 0.55)), record("bold", 0.95, (0.9, 1.0), CLAIMED)]):
        atomic_write_json(tmp_path / f"r{i}" / "run.json", rec)
    assert main(["leaderboard", "--task", TASK, "--runs", str(tmp_path)]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    body = [ln for ln in lines if ln and ln[0] in ("1", "2", "claim")]
    assert [(ln[0], ln[1], ln[-1]) for ln in body] == [("1", "local", "run"), ("claim", "bold", "claimed")]


def test_garbage_records_under_runs_are_skipped_with_one_warning_each(tmp_path, capsys):
    good = record("good", 0.5, (0.4, 0.6))
    garbage = [
        {**good, "model": 5}, {**good, "model": {**good["model"], "knobs": "x"}}, {**good, "n": "100"},
        {**good, "n": -1}, {**good, "seed": [1]}, {**good, "model": {**good["model"], "spec": ["a"]}},
        {**good, "task": {**good["task"], "spec_sha256": {"a": 1}}}, {**good, "submission": "yes"},
        {**good, "identity_sha256": 7, "model": {**good["model"], "checkpoint": "x"}},
    ]
    atomic_write_json(tmp_path / "good" / "run.json", good)
    for i, rec in enumerate(garbage):
        atomic_write_json(tmp_path / f"bad{i}" / "run.json", rec)
    (tmp_path / "text" ).mkdir()
    (tmp_path / "text" / "run.json").write_bytes(b"\xff\xfe garbage")
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "run.json").write_text("[" * 100000 + "]" * 100000)
    rc = main(["leaderboard", "--task", TASK, "--runs", str(tmp_path)])
    cap = capsys.readouterr()
    assert rc == 0 and "Traceback" not in cap.err, cap.err
    assert cap.err.count("skipping ") == len(garbage) + 2
    assert " good " in cap.out and json.loads((tmp_path / "good" / "run.json").read_text())
