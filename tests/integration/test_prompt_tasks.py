"""Text-to-image tasks on real prompt suites and COCO, with small local files laid out like the real ones."""

import csv

import numpy as np
import pytest
from PIL import Image

from cgmbench.cli.main import main
from cgmbench.errors import CgmbenchError
from cgmbench.images import center_crop_resize, read_image
from cgmbench.sources.base import load_prompt_suite, open_source, prompt_dir
from cgmbench.spec.task import load_task


@pytest.mark.parametrize("task_name,count,first", [
    ("drawbench", 200, "A red colored car."),
    ("partiprompts", 1632, "bond"),
    ("geneval", 553, "a photo of a bench"),
    ("t2i-compbench", 2400, None),
    ("coco-t2i", 30000, "A bicycle replica with a clock as the front wheel."),
])
def test_prompt_suites_load_with_their_published_sizes(task_name, count, first):
    source = open_source(load_task(task_name))
    assert len(source) == count
    texts = source.conditions([0, 1, count]).texts  # index `count` wraps around to the first prompt
    assert texts[0] == texts[2] and all(isinstance(t, str) and t for t in texts)
    if first is not None:
        assert texts[0] == first


def test_t2i_compbench_uses_the_validation_split():
    rows = load_prompt_suite("t2i-compbench", {"split": "val"})
    assert len(rows) == 2400 and {r["split"] for r in rows} == {"val"}
    assert len({r["category"] for r in rows}) == 8


def test_shipped_prompt_files_match_their_recorded_checksums():
    import hashlib

    sums = {}
    in_block = False
    for line in (prompt_dir() / "SOURCES.md").read_text().splitlines():
        if line.startswith("SHA-256"):
            in_block = True
        elif in_block and len(line.split()) == 2 and len(line.split()[0]) == 64:
            sums[line.split()[1]] = line.split()[0]
    assert len(sums) == 6
    for name, digest in sums.items():
        assert hashlib.sha256((prompt_dir() / name).read_bytes()).hexdigest() == digest, name


@pytest.fixture
def coco_home(tmp_path, monkeypatch):
    """COCO-2014 val laid out as the official zip unpacks: data/coco2014/val2014/COCO_val2014_<id:012d>.jpg."""
    home = tmp_path / "home"
    folder = home / "data" / "coco2014" / "val2014"
    folder.mkdir(parents=True)
    with open(prompt_dir() / "coco2014_val_30k.csv", newline="", encoding="utf-8") as f:
        rows = [r for _, r in zip(range(5), csv.DictReader(f))]
    for i, r in enumerate(rows):
        h, w = (300, 420) if i % 2 else (480, 360)  # landscape and portrait, like COCO
        pixels = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"COCO_val2014_{int(r['image_id']):012d}.jpg", quality=95)
    monkeypatch.setenv("CGMBENCH_HOME", str(home))
    return folder, rows


def test_coco_oracle_and_references_read_the_official_layout(coco_home):
    folder, rows = coco_home
    task = load_task("coco-t2i")
    oracle = open_source(task).oracle(range(5), range(5))
    assert oracle.shape == (5, 3, 256, 256) and oracle.dtype == np.uint8
    for i, r in enumerate(rows):
        expected = center_crop_resize(read_image(folder / f"COCO_val2014_{int(r['image_id']):012d}.jpg"), 256)
        assert np.array_equal(oracle[i], expected)
    refs = open_source(task, "reference")
    assert len(refs) == 5 and refs.references([0]).shape == (1, 3, 256, 256)


def test_coco_run_end_to_end_on_local_files(coco_home, tmp_path, capsys):
    out = tmp_path / "run"
    # preflight: the images are here, the extractor weights are not; both are named before anything is sampled
    assert main(["run", "--task", "coco-t2i", "--model", "oracle", "--num-samples", "5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "needs 2 file(s)" in err and "inception-v3" in err and "clip-vit-l-14" in err and "val2014" not in err
    assert not (out / "samples").exists()
    assert main(["run", "--task", "coco-t2i", "--model", "oracle", "--num-samples", "5", "--out", str(out),
                 "--allow-pending-metrics"]) == 0
    import json

    rec = json.loads((out / "run.json").read_text())
    assert rec["n"] == 5 and rec["task"]["name"] == "coco-t2i"
    # the official extractor weights are not on this machine: the metrics say exactly what to fetch
    pending = " ".join(rec["metrics_pending"])
    assert "weights-inception-2015-12-05-6726825d.pth" in pending and "cgmbench weights fetch inception-v3" in pending


def test_coco_missing_image_names_the_file(coco_home):
    folder, rows = coco_home
    missing = folder / f"COCO_val2014_{int(rows[2]['image_id']):012d}.jpg"
    missing.unlink()
    with pytest.raises(CgmbenchError) as e:
        open_source(load_task("coco-t2i")).oracle([2], [0])
    assert missing.name in str(e.value) and "val2014.zip" in str(e.value)
