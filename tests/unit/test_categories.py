"""Per-category CLIP score (DrawBench / PartiPrompts categories): recorded per run, recomputed independently,
shown as a table and rankable per category."""

import csv
import json

import numpy as np
import pytest
import torch

from cgmbench.cli.main import main
from cgmbench.errors import CgmbenchError
from cgmbench.extractors import get_extractor
from cgmbench.run.samples import SampleStore
from cgmbench.sources.base import open_source, prompt_dir
from cgmbench.spec.task import load_task

SPEC = """name = "{name}"
kind = "text-to-image"
description = "DrawBench prompts scored with the offline shapes-clip (test)"
resolution = 32
num_samples = 40

[conditions]
source = "prompts"
suite = "drawbench"
categories = {categories}

[reference]
source = "prompts"
suite = "drawbench"

[metrics]
compute = ["clip_score"]
clip_extractor = "shapes-clip"

[data]
license = "see cgmbench/data/prompts/SOURCES.md"
attribution = "Saharia et al. 2022"
obtain = "ships with cgmbench"
"""


@pytest.fixture()
def mini_task(tmp_path):
    path = tmp_path / "drawbench-mini.toml"
    path.write_text(SPEC.format(name="drawbench-mini", categories='["category"]'))
    return path


def test_shipped_suites_declare_their_category_columns():
    assert open_source(load_task("drawbench")).category_columns == ["category"]
    assert open_source(load_task("partiprompts")).category_columns == ["category", "challenge"]
    cats = open_source(load_task("partiprompts")).categories(range(1632))
    assert len(set(cats["category"])) == 12 and len(set(cats["challenge"])) == 11
    assert len(set(open_source(load_task("drawbench")).categories(range(200))["category"])) == 11


def test_per_category_clip_score_matches_an_independent_recomputation(mini_task, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--task", str(mini_task), "--model", "noise", "--num-samples", "40", "--out", str(out)]) == 0
    entry = json.loads((out / "run.json").read_text())["metrics"]["clip_score"]
    by_cat = entry["by_category"]["category"]
    # independent: the prompt file's own category column, the extractor on the stored samples
    with open(prompt_dir() / "drawbench.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:40]
    store = SampleStore.open(out / "samples")
    images = torch.from_numpy(np.concatenate([arr for _, arr in store.iter_batches(40)]))
    ext = get_extractor("shapes-clip")
    img = torch.nn.functional.normalize(ext(images), dim=1)
    txt = torch.nn.functional.normalize(ext.encode_text([r["prompt"] for r in rows]), dim=1)
    scores = (100 * (img * txt).sum(1).clamp(min=0)).numpy()
    expected = {}
    for r, s in zip(rows, scores):
        expected.setdefault(r["category"], []).append(s)
    assert list(by_cat) == list(expected)  # the file's order
    for label, values in expected.items():
        assert by_cat[label]["n"] == len(values)
        assert by_cat[label]["value"] == pytest.approx(float(np.mean(values)), rel=1e-9, abs=1e-9)
        lo, hi = by_cat[label]["ci95"]
        assert lo <= by_cat[label]["value"] <= hi
    weighted = sum(e["value"] * e["n"] for e in by_cat.values()) / 40
    assert weighted == pytest.approx(entry["value"], rel=1e-9)

    # a second run, then the per-category table and a per-category ranking
    out2 = tmp_path / "run2"
    assert main(["run", "--task", str(mini_task), "--model", "noise", "--num-samples", "40", "--seed", "1",
                 "--out", str(out2)]) == 0
    capsys.readouterr()
    assert main(["leaderboard", "--task", str(mini_task), "--runs", str(tmp_path), "--by", "category",
                 "--format", "csv"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split(",")[:5] == ["model", "knobs", "overall", "Colors", "Conflicting"]
    assert len(table) == 3
    assert main(["leaderboard", "--task", str(mini_task), "--runs", str(tmp_path),
                 "--metric", "clip_score[category=Counting]"]) == 0
    text = capsys.readouterr().out
    assert "clip_score[category=Counting]" in text and "noise" in text
    assert main(["leaderboard", "--task", str(mini_task), "--runs", str(tmp_path), "--by", "challenge"]) == 2
    assert "by 'challenge'" in capsys.readouterr().err


def test_unknown_category_column_is_a_clear_error(tmp_path):
    path = tmp_path / "drawbench-bad.toml"
    path.write_text(SPEC.format(name="drawbench-bad", categories='["genre"]'))
    with pytest.raises(CgmbenchError, match=r"categories column\(s\) \['genre'\]"):
        open_source(load_task(str(path)))
