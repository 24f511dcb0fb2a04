"""UCF-101 in its official layout, as a video source (``source = "ucf101"``).

The official distribution (https://www.crcv.ucf.edu/data/UCF101.php) is ``UCF101.rar`` -> ``UCF-101/<Class>/
v_<Class>_gGG_cCC.avi`` and ``UCF101TrainTestSplits-RecognitionTask.zip`` -> ``ucfTrainTestlist/{classInd.txt,
trainlist0K.txt, testlist0K.txt}``. Most video-generation code (StyleGAN-V, Latte#97) reads the same videos as
**frame folders** ``<Class>/v_<Class>_gGG_cCC/<frame>.{png,jpg}`` instead. Both are accepted, per video:

* ``path`` (default ``${CGMBENCH_DATA}/ucf101``) holds ``UCF-101/`` (or the class folders directly) and,
  optionally, ``ucfTrainTestlist/``;
* a video is ``<Class>/<name>.avi`` or ``.mp4`` (decoded with PyAV: ``pip install 'cgmbench[video]'``) or a
  folder ``<Class>/<name>/`` of frame images in sorted file-name order;
* ``split``: ``"all"`` (train + test, StyleGAN-V's and DIGAN's real set; the default), ``"train"`` or ``"test"``
  (``trainlist0K`` / ``testlist0K`` of ``split_index`` K, default 1); without the list folder only ``"all"`` works,
  in sorted class / file order;
* labels: ``classInd.txt`` minus one (0 = ApplyEyeMakeup ... 100 = YoYo), else the sorted class folders;
* frames are centre-cropped to a square and resized to the task resolution with PIL bicubic (StyleGAN-V's
  preprocessing resizes its UCF-101 frames to 256x256 the same way); the transform is recorded.

Bad input is one line each: a missing dataset (where to put it), a listed video that is absent, an undecodable
video or frame image (:class:`~cgmbench.errors.IntegrityError`), a frame folder with no images.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from cgmbench.conditions import Conditions
from cgmbench.errors import CgmbenchError, IntegrityError
from cgmbench.paths import expand
from cgmbench.sources.base import Source

__all__ = ["UCF101Source", "UCF101_URL", "UCF101_SPLITS_URL", "NUM_CLASSES"]

UCF101_URL = "https://www.crcv.ucf.edu/data/UCF101/UCF101.rar"
UCF101_SPLITS_URL = "https://www.crcv.ucf.edu/data/UCF101/UCF101TrainTestSplits-RecognitionTask.zip"
NUM_CLASSES = 101
VIDEO_SUFFIXES = (".avi", ".mp4")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")


class UCF101Source(Source):
    """UCF-101 videos and labels in the official layout (see the module docstring)."""

    @classmethod
    def required_files(cls, task, params, purpose, oracle=False):
        """The dataset folder (``path``, default ``${CGMBENCH_DATA}/ucf101``); UCF101.rar needs unrar by hand."""
        from cgmbench.requirements import data_path

        return [data_path(params.get("path", "${CGMBENCH_DATA}/ucf101"), f"task {task.name} {purpose}",
                          UCF101_URL, params.get("obtain") or f"unpack it and {UCF101_SPLITS_URL} there")]

    def __init__(self, task, params, split="test"):
        super().__init__(task, params, split)
        self.root = expand(str(self.params.get("path", "${CGMBENCH_DATA}/ucf101")))
        self.which = str(self.params.get("split", "all"))
        self.split_index = int(self.params.get("split_index", 1))
        if self.which not in ("all", "train", "test"):
            raise CgmbenchError(f"task {task.name}: ucf101 split must be 'all', 'train' or 'test', got {self.which!r}")
        self.resolution = int(task.resolution)
        self.entries, self.classes = self._discover()

    # -- layout -------------------------------------------------------------------------

    def _missing(self, what: str) -> CgmbenchError:
        return CgmbenchError(
            f"UCF-101 {what} not found under {self.root}",
            f"download {UCF101_URL} and {UCF101_SPLITS_URL}, unpack them into {self.root} (UCF-101/<Class>/*.avi and "
            "ucfTrainTestlist/) or put frame folders <Class>/<video>/*.png there")

    def _video_root(self) -> Path:
        return self.root / "UCF-101" if (self.root / "UCF-101").is_dir() else self.root

    def _discover(self) -> tuple[list[tuple[str, int]], list[str]]:
        if not self.root.is_dir():
            raise self._missing("dataset")
        lists = self.root / "ucfTrainTestlist"
        if lists.is_dir() and (lists / "classInd.txt").is_file():
            classes = []
            for line in (lists / "classInd.txt").read_text().split("\n"):
                if line.strip():
                    idx, name = line.split()
                    if int(idx) != len(classes) + 1:
                        raise CgmbenchError(f"{lists / 'classInd.txt'}: class index {idx} out of order",
                                            "use the official classInd.txt (1 ApplyEyeMakeup ... 101 YoYo)")
                    classes.append(name)
            names = {"all": ("trainlist", "testlist"), "train": ("trainlist",), "test": ("testlist",)}[self.which]
            rels = []
            for stem in names:
                f = lists / f"{stem}{self.split_index:02d}.txt"
                if not f.is_file():
                    raise self._missing(f"split list {f.name}")
                rels += [line.split()[0] for line in f.read_text().split("\n") if line.strip()]
            index = {c: i for i, c in enumerate(classes)}
            entries = []
            for rel in rels:
                cls = rel.split("/")[0]
                if cls not in index:
                    raise CgmbenchError(f"split list entry {rel!r} names a class missing from classInd.txt")
                entries.append((rel, index[cls]))
        else:
            if self.which != "all":
                raise self._missing(f"split lists (ucfTrainTestlist/ needed for split={self.which!r})")
            vroot = self._video_root()
            classes = sorted(d.name for d in vroot.iterdir() if d.is_dir() and d.name != "ucfTrainTestlist")
            entries = []
            for i, c in enumerate(classes):
                for item in sorted((vroot / c).iterdir()):
                    if item.is_dir() or item.suffix.lower() in VIDEO_SUFFIXES:
                        entries.append((f"{c}/{item.name}", i))
        if not entries:
            raise self._missing("videos")
        return entries, classes

    def _locate(self, rel: str) -> Path:
        """The file or frame folder of a split-list entry ``Class/v_....avi``."""
        vroot = self._video_root()
        direct = vroot / rel
        if direct.exists():
            return direct
        stem = vroot / Path(rel).with_suffix("")
        if stem.is_dir():
            return stem
        raise CgmbenchError(f"UCF-101 video {rel} is listed but neither {direct} nor the frame folder {stem} exists",
                            "complete the dataset download or use split='all' over the folders present")

    # -- Source API -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.entries)

    def class_name(self, label: int) -> str:
        """The UCF-101 action (``ApplyEyeMakeup``), from ``classInd.txt`` or the folder names."""
        return self.classes[int(label)] if 0 <= int(label) < len(self.classes) else f"class {int(label)}"

    def labels(self, indices: Sequence[int]) -> list[int]:
        return [self.entries[i][1] for i in self.wrap(indices)]

    def conditions(self, indices):
        return Conditions(kind="class", indices=list(indices),
                          labels=torch.tensor(self.labels(indices), dtype=torch.int64))

    def video_lengths(self) -> list[int]:
        return [self._length(i) for i in range(len(self))]

    @lru_cache(maxsize=None)
    def _length(self, i: int) -> int:
        path = self._locate(self.entries[i][0])
        if path.is_dir():
            return len(_frame_files(path))
        return len(self.video(i))

    @lru_cache(maxsize=64)
    def video(self, i: int) -> torch.Tensor:
        """Video ``i`` as uint8 ``[T, 3, R, R]`` (R = the task resolution)."""
        path = self._locate(self.entries[i][0])
        frames = _read_frame_folder(path) if path.is_dir() else _read_video_file(path)
        return torch.from_numpy(np.stack([_square_resize(f, self.resolution) for f in frames]))

    def references(self, indices):
        vids = [self.video(i) for i in self.wrap(indices)]
        if len({v.shape[0] for v in vids}) > 1:
            raise CgmbenchError("UCF-101 videos differ in length; read them one by one with video(i)")
        return torch.stack(vids).numpy()

    def describe(self) -> dict:
        return {"root": str(self.root), "split": self.which, "split_index": self.split_index, "videos": len(self),
                "frame_transform": f"centre square crop, PIL bicubic to {self.resolution}x{self.resolution}"}


def _frame_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        raise CgmbenchError(f"frame folder {folder} holds no {'/'.join(FRAME_SUFFIXES)} images")
    return files


def _read_frame_folder(folder: Path) -> list[np.ndarray]:
    from PIL import Image

    out = []
    for f in _frame_files(folder):
        try:
            with Image.open(f) as im:
                out.append(np.asarray(im.convert("RGB")))
        except Exception as exc:
            raise IntegrityError(f"corrupt video frame {f}: {type(exc).__name__}: {exc}") from None
    return out


def _read_video_file(path: Path) -> list[np.ndarray]:
    try:
        import av  # noqa: F401
    except ImportError:
        raise CgmbenchError(f"cannot read {path}: {path.suffix} videos need PyAV, which is not installed",
                            "pip install 'cgmbench[video]' (PyAV), or convert the videos to frame folders "
                            "<Class>/<video>/*.png") from None
    import av

    try:
        with av.open(os.fspath(path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except Exception as exc:
        raise IntegrityError(f"corrupt video {path}: {type(exc).__name__}: {exc}") from None
    if not frames:
        raise IntegrityError(f"corrupt video {path}: no frames could be decoded")
    return frames


def _square_resize(frame: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``[H, W, 3]`` -> ``[3, size, size]``: centre square crop, PIL bicubic."""
    from PIL import Image

    h, w = frame.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = frame[top:top + s, left:left + s]
    if s != size:
        crop = np.asarray(Image.fromarray(crop).resize((size, size), Image.BICUBIC))
    return np.ascontiguousarray(crop.transpose(2, 0, 1))
