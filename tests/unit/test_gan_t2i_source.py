"""The ``attngan-data`` source (issue 13) on tiny files in the official AttnGAN/CUB layout."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from cgmbench.errors import CgmbenchError
from cgmbench.sources.base import open_source
from cgmbench.sources.gan_t2i import read_filenames_pickle
from cgmbench.spec.task import load_task

NAMES = ["001.Black_footed_Albatross/Black_Footed_Albatross_0046_18",
         "001.Black_footed_Albatross/Black_Footed_Albatross_0009_34",
         "017.Cardinal/Cardinal_0001_17233"]


def make_birds(root, captions=10):
    rng = np.random.default_rng(0)
    (root / "test").mkdir(parents=True)
    with open(root / "test" / "filenames.pickle", "wb") as f:
        pickle.dump(NAMES, f, protocol=2)
    lines_ids, lines_box = [], []
    for k, name in enumerate(NAMES, start=1):
        (root / "text" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "text" / f"{name}.txt").write_text("\n".join(f"bird {k} caption {c}" for c in range(captions)) + "\n")
        img = root / "CUB_200_2011" / "images" / f"{name}.jpg"
        img.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(img, quality=95)
        lines_ids.append(f"{k} {name}.jpg")
        lines_box.append(f"{k} 10.0 5.0 30.0 20.0")
    (root / "CUB_200_2011" / "images.txt").write_text("\n".join(lines_ids) + "\n")
    (root / "CUB_200_2011" / "bounding_boxes.txt").write_text("\n".join(lines_box) + "\n")


@pytest.fixture
def birds(tmp_path, monkeypatch):
    data = tmp_path / "data"
    make_birds(data / "birds")
    monkeypatch.setenv("CGMBENCH_DATA", str(data))
    return load_task("cub200-t2i"), data / "birds"


def test_items_walk_images_then_captions_with_classes(birds):
    task, root = birds
    src = open_source(task, "conditions")
    assert len(src) == 30
    c = src.conditions([0, 2, 3, 31])
    assert c.texts == ["bird 1 caption 0", "bird 3 caption 0", "bird 1 caption 1", "bird 2 caption 0"]
    assert src.class_ids([0, 1, 2]) == [1, 1, 17]


def test_reference_is_the_bbox_crop_resized_bicubic(birds):
    task, root = birds
    ref = open_source(task, "reference").references([1])
    assert ref.shape == (1, 3, 256, 256) and ref.dtype == np.uint8
    img = np.asarray(Image.open(root / "CUB_200_2011" / "images" / f"{NAMES[1]}.jpg").convert("RGB"))
    r = int(30 * 0.75)  # max(w, h) = 30
    cx, cy = int((2 * 10 + 30) / 2), int((2 * 5 + 20) / 2)
    crop = img[max(0, cy - r):min(60, cy + r), max(0, cx - r):min(80, cx + r)]
    expect = np.asarray(Image.fromarray(crop).resize((256, 256), Image.BICUBIC)).transpose(2, 0, 1)
    assert np.array_equal(ref[0], expect)


def test_missing_files_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("CGMBENCH_DATA", str(tmp_path / "nothing"))
    with pytest.raises(CgmbenchError) as err:
        open_source(load_task("cub200-t2i"), "conditions")
    msg = str(err.value)
    for part in ("test/filenames.pickle", "text/<name>.txt", "CUB_200_2011/bounding_boxes.txt",
                 "CUB_200_2011/images/<name>.jpg"):
        assert part in msg


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_filenames_pickle_refuses_objects(tmp_path):
    bad = tmp_path / "filenames.pickle"
    bad.write_bytes(pickle.dumps([_Evil()], protocol=2))
    with pytest.raises(CgmbenchError, match="refusing global"):
        read_filenames_pickle(bad)
    ok = tmp_path / "ok.pickle"
    ok.write_bytes(pickle.dumps(NAMES, protocol=2))
    assert read_filenames_pickle(ok) == NAMES
