"""PIE-Bench mapping_file.json and PIE-Bench++ Parquet loaders, on tiny files written here in the official
layouts; the run-length mask decoding against a direct re-computation of PIE-Bench's loop (border rule included)."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
from PIL import Image

from cgmbench.datasets.pie_bench import (
    EDIT_TYPES,
    decode_mask,
    load_pie_bench,
    load_pie_bench_pp,
    parse_rle,
    strip_brackets,
)
from cgmbench.errors import CgmbenchError


def pie_mask_reference(encoded: list[int], shape=(512, 512)) -> np.ndarray:
    """PIE-Bench's decoding, pixel by pixel: each run clipped at the end, then the 1-px border set to 1."""
    length = shape[0] * shape[1]
    flat = np.zeros(length)
    for i in range(0, len(encoded), 2):
        for j in range(min(encoded[i + 1], length - encoded[i])):
            flat[encoded[i] + j] = 1
    m = flat.reshape(shape)
    m[0, :] = m[-1, :] = 1
    m[:, 0] = m[:, -1] = 1
    return m


RUNS = [
    [1000, 300, 5000, 2000, 70000, 513],     # runs crossing row ends
    [0, 0, 262000, 5000],                    # an empty run, a run past the end (clipped)
    [131072, 512 * 256],                     # bottom half
]


@pytest.mark.parametrize("runs", RUNS)
def test_decode_mask_matches_pie_bench(runs):
    got = decode_mask(runs)
    assert got.dtype == bool and got.shape == (512, 512)
    np.testing.assert_array_equal(got, pie_mask_reference(runs).astype(bool))
    raw = decode_mask(runs, force_border=False)
    assert raw[1:-1, 1:-1].sum() == got[1:-1, 1:-1].sum() and not raw[0, 100]
    assert got[0].all() and got[-1].all() and got[:, 0].all() and got[:, -1].all()


def test_parse_rle_forms_and_errors():
    assert parse_rle("1000 300  5000 2000") == (1000, 300, 5000, 2000)
    assert parse_rle("[1000, 300]") == parse_rle([1000, 300]) == (1000, 300)
    for bad, msg in (([1, 2, 3], "pairs"), ([5, -1], "negative"), ("12 x", "non-negative integers"),
                     ([1.5, 2], "list of integers")):
        with pytest.raises(CgmbenchError, match=msg):
            parse_rle(bad)
    with pytest.raises(CgmbenchError, match="past the end of a 512x512 image"):
        decode_mask([512 * 512, 4])


def _write_png(path, seed) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buf.getvalue())
    return buf.getvalue()


@pytest.fixture
def pie_bench_dir(tmp_path):
    """A three-entry data/ folder in PIE-Bench's layout."""
    data = tmp_path / "data"
    entries = {
        "000000000000": {"image_path": "0_random_140/000000000000.jpg", "original_prompt": "a [cat] on a mat",
                         "editing_prompt": "a [dog] on a mat", "editing_instruction": "Make the cat a dog",
                         "editing_type_id": "0", "blended_word": "cat dog", "mask": RUNS[0]},
        "111000000001": {"image_path": "1_change_object_80/1_artificial/1_animal/111000000001.jpg",
                         "original_prompt": "a [red] car", "editing_prompt": "a [blue] car",
                         "editing_instruction": "Paint the car blue", "editing_type_id": "1",
                         "blended_word": "red blue", "mask": RUNS[2]},
        "922000000002": {"image_path": "9_change_style_80/2_natural/922000000002.jpg",
                         "original_prompt": "a photo of a lake", "editing_prompt": "a [watercolor] of a lake",
                         "editing_instruction": "Make it a watercolor", "editing_type_id": "9",
                         "blended_word": "", "mask": [0, 512 * 512]},
    }
    for key, e in entries.items():
        _write_png(data / "annotation_images" / e["image_path"], seed=int(key[-1]))
    (data / "mapping_file.json").write_text(json.dumps(entries))
    return data


def test_load_pie_bench(pie_bench_dir):
    records = load_pie_bench(pie_bench_dir / "mapping_file.json")
    assert [r.id for r in records] == ["000000000000", "111000000001", "922000000002"]
    r = records[0]
    assert (r.layout, r.edit_type, r.edit_type_name) == ("pie_bench", 0, "0_random_140")
    assert r.source_prompt == "a [cat] on a mat" and r.source_prompt_plain == "a cat on a mat"
    assert r.target_prompt_plain == "a dog on a mat" and r.instruction == "Make the cat a dog"
    assert r.blended_words == "cat dog"
    np.testing.assert_array_equal(r.mask(), pie_mask_reference(RUNS[0]).astype(bool))
    assert records[2].mask().all()  # a global edit: no background at all
    img = records[1].image(pie_bench_dir / "annotation_images")
    assert img.dtype == np.uint8 and img.shape == (3, 24, 32)
    only = load_pie_bench(pie_bench_dir / "mapping_file.json", edit_types=[1, 9])
    assert [r.edit_type for r in only] == [1, 9]


def test_load_pie_bench_errors(pie_bench_dir, tmp_path):
    mapping = json.loads((pie_bench_dir / "mapping_file.json").read_text())
    cases = [
        (lambda m: m["000000000000"].pop("mask"), "missing field.*mask"),
        (lambda m: m["000000000000"].update(editing_type_id="12"), "'0'..'9'"),
        (lambda m: m["000000000000"].update(image_path="../../etc/passwd"), "without '..'"),
        (lambda m: m["000000000000"].update(mask=[5, 1, 7]), "pairs"),
        (lambda m: m["000000000000"].update(original_prompt=3), "must be a string"),
    ]
    for i, (change, msg) in enumerate(cases):
        bad = json.loads(json.dumps(mapping))
        change(bad)
        path = tmp_path / f"bad{i}.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(CgmbenchError, match=msg) as info:
            load_pie_bench(path)
        assert "000000000000" in str(info.value) and path.name in str(info.value)
    with pytest.raises(CgmbenchError, match="cannot read PIE-Bench mapping file"):
        load_pie_bench(tmp_path / "absent.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(CgmbenchError, match="keyed by image id"):
        load_pie_bench(tmp_path / "list.json")


def _pp_rows(config_index: int, n: int) -> list[dict]:
    return [{
        "image": {"bytes": _write_png(None, seed=10 * config_index + i), "path": f"{i}.jpg"},
        "id": f"{config_index}{i:011d}",
        "source_prompt": "a [cat] sitting on a [sofa]",
        "target_prompt": "a [dog] sitting on a [bench]",
        "edit_action": json.dumps({"cat": {"position": 1, "edit_type": 1, "action": "dog"}}),
        "aspect_mapping": json.dumps({"cat": ["dog"], "sofa": ["bench"]}),
        "blended_words": json.dumps(["cat,dog", "sofa,bench"]),
        "mask": " ".join(str(v) for v in RUNS[i % len(RUNS)]),
    } for i in range(n)]


@pytest.fixture
def pie_bench_pp_dir(tmp_path):
    """Two configs in the Hugging Face layout <config>/V1-00000-of-00001.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "PIE_Bench_pp"
    for t in (1, 6):
        folder = root / EDIT_TYPES[t]
        folder.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(_pp_rows(t, 2)), folder / "V1-00000-of-00001.parquet")
    return root


def test_load_pie_bench_pp(pie_bench_pp_dir):
    records = load_pie_bench_pp(pie_bench_pp_dir)
    assert [(r.edit_type, r.id) for r in records] == [(1, "100000000000"), (1, "100000000001"),
                                                      (6, "600000000000"), (6, "600000000001")]
    r = records[1]
    assert r.layout == "pie_bench_pp" and r.instruction is None and r.image_path is None
    assert r.target_prompt_plain == "a dog sitting on a bench"
    assert json.loads(r.blended_words) == ["cat,dog", "sofa,bench"]
    assert json.loads(r.aspect_mapping) == {"cat": ["dog"], "sofa": ["bench"]}
    np.testing.assert_array_equal(r.mask(), pie_mask_reference(RUNS[1]).astype(bool))
    want = np.asarray(Image.open(io.BytesIO(_write_png(None, seed=11)))).transpose(2, 0, 1)
    np.testing.assert_array_equal(r.image(), want)
    one = load_pie_bench_pp(pie_bench_pp_dir / EDIT_TYPES[6] / "V1-00000-of-00001.parquet")
    assert [x.edit_type for x in one] == [6, 6]
    assert [x.edit_type for x in load_pie_bench_pp(pie_bench_pp_dir, configs=[EDIT_TYPES[6]])] == [6, 6]


def test_load_pie_bench_pp_errors(pie_bench_pp_dir, tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pytest.raises(CgmbenchError, match="unknown PIE-Bench\\+\\+ config"):
        load_pie_bench_pp(pie_bench_pp_dir, configs=["10_everything"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CgmbenchError, match="no PIE-Bench\\+\\+ Parquet files"):
        load_pie_bench_pp(tmp_path / "empty")
    with pytest.raises(CgmbenchError, match="does not exist"):
        load_pie_bench_pp(tmp_path / "absent")
    stray = tmp_path / "somewhere" / "x.parquet"
    stray.parent.mkdir()
    pq.write_table(pa.Table.from_pylist(_pp_rows(1, 1)), stray)
    with pytest.raises(CgmbenchError, match="edit type is unknown"):
        load_pie_bench_pp(stray)
    rows = _pp_rows(1, 1)
    del rows[0]["mask"]
    bad = tmp_path / EDIT_TYPES[2] / "V1-00000-of-00001.parquet"
    bad.parent.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), bad)
    with pytest.raises(CgmbenchError, match="missing column.*mask"):
        load_pie_bench_pp(bad)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # as if pyarrow were not installed
    with pytest.raises(CgmbenchError, match="needs pyarrow"):
        load_pie_bench_pp(pie_bench_pp_dir)


def test_strip_brackets_is_pie_bench_evaluation_text():
    assert strip_brackets("a [red] car with [two] doors") == "a red car with two doors"
