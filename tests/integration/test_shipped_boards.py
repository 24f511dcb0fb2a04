"""The shipped leaderboards (issue 17, item 4): one command writes verified records and their tables; published
numbers of the real tasks are a separate table that never mixes with re-scored rows."""

from __future__ import annotations

import csv
import json

import pytest

from cgmbench.cli.main import main
from cgmbench.models.registry import list_models, model_class
from cgmbench.results import shipped_boards as sb
from cgmbench.results.leaderboard import collect_records
from cgmbench.spec.task import list_tasks, load_task


@pytest.mark.slow  # imports every family
def test_every_shipped_checkpoint_is_on_its_task_board():
    """A variant named '<task>-tiny' of a model that accepts the task's conditions is a shipped baseline of it."""
    for name in list_models():
        cls = model_class(name)
        for variant in cls.variants():
            task = variant.removesuffix("-tiny")
            if variant.endswith("-tiny") and task in sb.SHIPPED_BASELINES \
                    and load_task(task).condition_kind in cls.condition_kinds:
                assert name in sb.SHIPPED_BASELINES[task], (name, variant)
    for task, models in sb.SHIPPED_BASELINES.items():
        kind = load_task(task).condition_kind
        for m in (*sb.REFERENCE_MODELS, *models):
            name, _, variant = m.partition(":")  # a shipped variant has its own row: NAME:VARIANT
            assert kind in model_class(name).condition_kinds, (task, m)
            assert not variant or variant in model_class(name).variants(), (task, m)


@pytest.mark.slow
def test_one_model_small_n_writes_verified_records_and_tables_and_resumes(tmp_path, capsys):
    root, work = tmp_path / "leaderboards", tmp_path / "work"
    args = ["regenerate-leaderboards", "--task", "shapes-paired", "--model", "pix2pix", "--num-samples", "8",
            "--batch-size", "4", "--device", "cpu", "--work", str(work), "--leaderboards", str(root)]
    assert main(args) == 0
    printed = capsys.readouterr().out.split()
    board = root / "shapes-paired"
    for f in (board / "records" / "pix2pix.json", board / "README.md", board / "leaderboard.csv",
              board / "index.html", root / "published.md", root / "published.html", root / "README.md"):
        assert str(f) in printed and f.is_file(), f
    doc = json.loads((board / "records" / "pix2pix.json").read_text())
    assert doc["n"] == 8 and doc["model"]["spec"] == "pix2pix" and doc["submission"]["samples_verified"] is True
    assert {"judge", "fid"} <= set(doc["submission"]["rescored"])
    assert not list(board.rglob("*.npy"))  # samples stay in the work folder
    with open(board / "leaderboard.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["status"], r["n"], r["path"]) for r in rows] == [
        ("pix2pix", "verified", "8", "records/pix2pix.json")]
    readme = (board / "README.md").read_text()
    assert "N = 8, seed 0" in readme and "| pix2pix |" in readme and "`cgmbench regenerate-leaderboards " \
        "--num-samples 8 --task shapes-paired`" in readme  # the command names the N the board was made at
    index = (root / "README.md").read_text()
    assert "| `shapes-paired` | paired-translation | 1 | 8 |" in index
    assert "`cgmbench regenerate-leaderboards --num-samples 8`" in index
    # `cgmbench leaderboard` reads the board like any folder of runs
    assert [r["model"]["spec"] for _, r in collect_records("shapes-paired", [root / "shapes-paired"])] == ["pix2pix"]

    # rerunning resumes: nothing is sampled or re-scored again, the record stays byte for byte
    before = (board / "records" / "pix2pix.json").read_bytes()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "run already complete" in err and "record up to date" in err
    assert (board / "records" / "pix2pix.json").read_bytes() == before
    # and the tables made from unchanged records are the same bytes (a rerun leaves no diff to commit)
    tables = {f: f.read_bytes() for f in (board / "README.md", board / "leaderboard.csv", board / "index.html",
                                          root / "README.md", root / "published.md")}
    assert main(args[:-6] + ["--leaderboards", str(root), "--tables-only"]) == 0
    assert {f: f.read_bytes() for f in tables} == tables


@pytest.mark.slow
def test_published_numbers_are_a_separate_unranked_table(tmp_path):
    rows = sb.published_rows()
    tasks = {r["task"] for r in rows}
    assert tasks == {t for t in list_tasks() if load_task(t).targets}
    assert not tasks & set(sb.SHIPPED_BASELINES)  # no published row on a board of re-scored rows
    dit = next(r for r in rows if r["model"] == "dit:xl-2-256")
    assert dit["metrics"] == {"fid": 2.27, "is": 278.24, "precision": 0.83, "recall": 0.57}
    assert dit["settings"] == {"guidance_scale": 1.5, "steps": 250, "sampler": "ddpm", "guided_channels": "3"}
    assert dit["source"].startswith("Peebles & Xie 2023, Table 4")
    files = sb.write_published(tmp_path)
    md = files[0].read_text()
    assert md.startswith("# Published numbers (not re-scored by cgmbench)") and "never ranked" in md
    assert "| dit:xl-2-256 | fid 2.27, is 278.24, precision 0.83, recall 0.57 | guidance_scale=1.5, steps=250, " \
           "sampler=ddpm, guided_channels=3 | Peebles & Xie 2023, Table 4" in md
    assert "band" not in md and "rank" not in md.lower().replace("never ranked", "")
    assert "<h1>Published numbers (not re-scored by cgmbench)</h1>" in files[1].read_text()
    # the published tables are not run records: no leaderboard ever picks them up
    for task in tasks:
        assert collect_records(task, [tmp_path]) == []


def test_unknown_task_or_model_is_one_clear_error(tmp_path, capsys):
    assert main(["regenerate-leaderboards", "--task", "coco-t2i", "--leaderboards", str(tmp_path)]) == 2
    assert "no shipped leaderboard for task(s) coco-t2i" in capsys.readouterr().err
    assert main(["regenerate-leaderboards", "--model", "nosuch", "--leaderboards", str(tmp_path)]) == 2
    assert "nosuch: not a shipped baseline or reference model" in capsys.readouterr().err


@pytest.mark.slow
def test_editing_and_video_records_are_verified(tmp_path, capsys):
    """shapes-edit and shapes-t2v records have metrics without reference statistics (masked, temporal, judge-based)
    and a CLIP direction that leaves out the moves: the verifier accepts them and re-scores every metric."""
    root = tmp_path / "leaderboards"
    assert main(["regenerate-leaderboards", "--task", "shapes-edit", "--task", "shapes-t2v", "--model", "oracle",
                 "--num-samples", "12", "--device", "cpu", "--work", str(tmp_path / "work"),
                 "--leaderboards", str(root)]) == 0
    edit = json.loads((root / "shapes-edit" / "records" / "oracle.json").read_text())
    assert set(edit["metrics"]) == set(edit["submission"]["rescored"]) >= {"edit_success", "psnr_bg",
                                                                           "clip_direction_shapes_clip"}
    direction = edit["metrics"]["clip_direction_shapes_clip"]
    assert direction["left_out_same_captions"] > 0 and direction["n"] + direction["left_out_same_captions"] == 12
    assert edit["metrics"]["psnr_bg"]["reference_stats_sha256"] is None
    video = json.loads((root / "shapes-t2v" / "records" / "oracle.json").read_text())
    assert set(video["metrics"]) == set(video["submission"]["rescored"]) >= {"fvd", "motion_accuracy", "judge"}
    assert "| oracle |" in (root / "shapes-t2v" / "README.md").read_text()
