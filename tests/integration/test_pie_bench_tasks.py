"""The pie-bench / pie-bench-pp tasks on local files in the official layouts: conditions, the border rule,
background metrics against PIE-Bench's formulas re-computed here, full masks, and the offline message."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

import cgmbench
from cgmbench.datasets.pie_bench import EDIT_TYPES
from cgmbench.errors import CgmbenchError
from cgmbench.run.samples import SampleStore
from cgmbench.sources.base import open_source
from cgmbench.spec.task import load_task

torch.set_num_threads(1)
TOP_HALF = [0, 512 * 256]          # rows 0..255 edited
BOX = [512 * 100 + 100, 50, 512 * 101 + 100, 50]
FULL = [0, 512 * 512]


def _png(seed, size=512) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _task_file(tmp_path, layout, path, resolution=512):
    name = f"pie-local-{layout.replace('_', '-')}-{resolution}"
    text = (f'name = "{name}"\nkind = "editing"\nresolution = {resolution}\nnum_samples = 3\n'
            f'[conditions]\nsource = "pie-bench"\nlayout = "{layout}"\npath = "{path}"\n'
            f'[reference]\nsource = "pie-bench"\nlayout = "{layout}"\npath = "{path}"\n'
            '[metrics]\ncompute = ["psnr_bg", "mse_bg", "psnr_bg_pie_compat", "mse_bg_pie_compat", "lpips_bg"]\n'
            'protocol = "clean"\nextractor = "inception-v3"\n'
            '[data]\nlicense = "test"\nattribution = "test"\nobtain = "test"\n')
    f = tmp_path / f"{name}.toml"
    f.write_text(text)
    return f


@pytest.fixture
def pie_dir(tmp_path):
    data = tmp_path / "data"
    entries = {}
    for k, (t, runs) in enumerate(((1, TOP_HALF), (6, BOX), (9, FULL))):
        key = f"{t}{k:011d}"
        rel = f"{EDIT_TYPES[t]}/{key}.jpg"
        (data / "annotation_images" / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / "annotation_images" / rel).write_bytes(_png(k))
        entries[key] = {"image_path": rel, "original_prompt": "a [cat]", "editing_prompt": "a [dog]",
                        "editing_instruction": "make it a dog", "editing_type_id": str(t), "blended_word": "cat dog",
                        "mask": runs}
    (data / "mapping_file.json").write_text(json.dumps(entries))
    return data


def test_conditions_follow_the_official_layout_and_border_rule(pie_dir, tmp_path):
    task = load_task(str(_task_file(tmp_path, "pie_bench", pie_dir)))
    src = open_source(task)
    c = src.conditions([0, 1, 2])
    assert c.images.shape == (3, 3, 512, 512) and c.masks.shape == (3, 1, 512, 512)
    assert c.texts == ["a dog"] * 3 and c.extras["source_prompts"] == ["a cat"] * 3
    m = c.masks[1, 0] > 0
    assert m[0].all() and m[:, -1].all() and m[100, 100:150].all() and int(m.sum()) == 2 * 512 + 2 * 510 + 100
    assert src.edit_types([0, 1, 2]) == [EDIT_TYPES[1], EDIT_TYPES[6], EDIT_TYPES[9]]
    small = open_source(load_task(str(_task_file(tmp_path, "pie_bench", pie_dir, resolution=64)))).conditions([0])
    assert small.images.shape == (1, 3, 64, 64) and (small.masks[0, 0, :32] > 0).all()
    assert not (small.masks[0, 0, 33:63, 1:63] > 0).any()


def test_noise_run_background_metrics_equal_pie_formulas(pie_dir, tmp_path):
    task_file = _task_file(tmp_path, "pie_bench", pie_dir)
    rec = cgmbench.run(str(task_file), "noise", num_samples=3, out=str(tmp_path / "run"))
    m = rec["metrics"]
    task = load_task(str(task_file))
    c = open_source(task).conditions([0, 1])  # image 2 has a full mask: left out
    samples = np.concatenate([a for _, a in SampleStore.open(tmp_path / "run" / "samples").iter_batches(3)])[:2]
    x, y = c.images.numpy() / 255.0, samples / 255.0
    keep = (c.masks.numpy() == 0).astype(np.float64)
    mse_pie = (((x * keep) - (y * keep)) ** 2).mean(axis=(1, 2, 3))            # matrics_calculator: x*(1-m)
    mse_bg = (((x - y) ** 2) * keep).sum(axis=(1, 2, 3)) / (3 * keep.sum(axis=(1, 2, 3)))
    assert m["mse_bg_pie_compat"]["value"] == pytest.approx(mse_pie.mean(), rel=1e-10)
    assert m["psnr_bg_pie_compat"]["value"] == pytest.approx(np.mean(10 * np.log10(1 / mse_pie)), rel=1e-10)
    assert m["mse_bg"]["value"] == pytest.approx(mse_bg.mean(), rel=1e-10)
    for name in ("psnr_bg", "mse_bg"):
        assert m[name]["n"] == 2 and m[name]["left_out_full_mask"] == 1
    assert set(m["psnr_bg"]["by_category"]["edit_type"]) == {EDIT_TYPES[1], EDIT_TYPES[6]}
    assert any(p.startswith("lpips_bg:") for p in rec["metrics_pending"])
    assert "nan" not in json.dumps(m).lower()


def test_pie_bench_pp_parquet_and_offline_messages(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "pp"
    folder = root / EDIT_TYPES[6]
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{
        "image": {"bytes": _png(5), "path": "0.jpg"}, "id": "600000000000", "source_prompt": "a [red] car",
        "target_prompt": "a [blue] car", "edit_action": "{}", "aspect_mapping": "{}", "blended_words": "[]",
        "mask": " ".join(map(str, BOX))}]), folder / "V1-00000-of-00001.parquet")
    src = open_source(load_task(str(_task_file(tmp_path, "pie_bench_pp", root))))
    c = src.conditions([0])
    assert c.texts == ["a blue car"] and (c.masks[0, 0, 0] > 0).all() and src.edit_types([0]) == [EDIT_TYPES[6]]
    with pytest.raises(CgmbenchError, match="mapping_file.json .*does not exist.*Google Form"):
        open_source(load_task("pie-bench")).conditions([0])
    with pytest.raises(CgmbenchError, match="hf download UB-CVML-Group/PIE_Bench_pp"):
        len(open_source(load_task("pie-bench-pp")))
