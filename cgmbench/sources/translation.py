"""Sources for the official pix2pix and CycleGAN dataset layouts.

Both come from junyanz/pytorch-CycleGAN-and-pix2pix's download scripts and are unpacked under
``${CGMBENCH_DATA}`` (``$CGMBENCH_HOME/data``) exactly as distributed:

* **paired, AB side by side** (``pix2pix/datasets/{facades,maps,edges2shoes,cityscapes}.tar.gz``
  from ``http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/``): ``<root>/{train,val,test}/*.jpg``,
  each file one image of width ``2w``: the left half is A, the right half B (facades: A = photo,
  B = label map; maps: A = aerial, B = map; edges2shoes: A = edges, B = shoe; cityscapes:
  A = photo, B = label map). Not every archive has every split (maps, edges2shoes and
  cityscapes have ``train`` and ``val`` only).
* **unpaired** (``cyclegan/datasets/{horse2zebra,monet2photo,...}.zip`` from
  ``http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/``): ``<root>/{trainA,trainB,testA,testB}/``.

Preprocessing follows upstream's test-time pipeline (``load_size = crop_size``, no flip): the
halves / images are resized to the task resolution with PIL bicubic, no crop (the halves are
square in every official archive; other aspect ratios are squashed, as upstream). Files are
read with :func:`cgmbench.images.read_image` (size limits, corrupt-file errors naming the file).

Register in :data:`cgmbench.sources.base.SOURCES`::

    "pix2pix-ab": "cgmbench.sources.translation:PairedABSource",
    "cyclegan-unpaired": "cgmbench.sources.translation:UnpairedSource",
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from cgmbench.conditions import Conditions
from cgmbench.errors import CgmbenchError
from cgmbench.images import list_images, read_image
from cgmbench.paths import expand
from cgmbench.sources.base import Source

DIRECTIONS = ("AtoB", "BtoA")


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``[3, h, w]`` -> ``[3, size, size]``, PIL bicubic, no crop (upstream ``Resize([s, s])``)."""
    if image.shape[1:] == (size, size):
        return np.ascontiguousarray(image)
    im = Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).resize((size, size), Image.BICUBIC)
    return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()


def split_ab(image: np.ndarray, path: Path | str = "<array>") -> tuple[np.ndarray, np.ndarray]:
    """Left half A and right half B of an AB image ``[3, h, w]`` (upstream: ``w2 = int(w / 2)``)."""
    w = image.shape[2]
    if w < 2:
        raise CgmbenchError(f"image {path} is {w} pixel(s) wide: not an AB side-by-side pair")
    w2 = w // 2
    return image[:, :, :w2], image[:, :, w2:2 * w2]


class _DatasetFolderSource(Source):
    """Shared parameters: ``path`` (dataset root, ``${CGMBENCH_DATA}`` expands), ``url`` and
    ``obtain`` (shown when files are missing)."""

    default_phase = "test"

    def __init__(self, task, params, split="test"):
        super().__init__(task, params, split)
        if "path" not in self.params:
            raise CgmbenchError(f"task {task.name}: source {self.params.get('source', type(self).__name__)!r} "
                                "needs a 'path' (the dataset root)")
        self.root = expand(str(self.params["path"]))
        self._files: list[Path] | None = None

    def phase(self) -> str:
        """The folder of the requested split: the task's ``phase`` for 'test', ``train`` for 'train'."""
        if self.split == "train":
            return "train"
        if self.split == "test":
            return str(self.params.get("phase", self.default_phase))
        raise CgmbenchError(f"task {self.task.name}: the {type(self).__name__} has no split {self.split!r}",
                            "splits: test, train")

    def folder(self) -> Path:
        raise NotImplementedError

    @classmethod
    def subfolder(cls, params: dict) -> str:
        """The folder of the test split inside ``path`` (without opening anything)."""
        raise NotImplementedError

    @classmethod
    def required_files(cls, task, params, purpose, oracle=False):
        """The test split's folder inside the dataset root ``path``; the official archive (``url``) unpacks to
        that root."""
        from cgmbench.requirements import data_path

        if not isinstance(params.get("path"), str):
            return []
        root = params["path"]
        return [data_path(f"{root}/{cls.subfolder(params)}", f"task {task.name} {purpose}", params.get("url"),
                          params.get("obtain"), root=root)]

    def _missing_hint(self, folder: Path) -> str:
        parts = []
        if self.params.get("url"):
            parts.append(f"download {self.params['url']}")
        if self.params.get("obtain"):
            parts.append(str(self.params["obtain"]))
        parts.append(f"so that the images lie in {folder}/ (CGMBENCH_HOME or CGMBENCH_DATA move ${{CGMBENCH_DATA}})")
        return "; ".join(parts)

    @property
    def files(self) -> list[Path]:
        if self._files is None:
            folder = self.folder()
            if not folder.is_dir():
                raise CgmbenchError(f"dataset folder {folder} for task {self.task.name} does not exist",
                                    self._missing_hint(folder))
            files = list_images(folder)
            if not files:
                raise CgmbenchError(f"dataset folder {folder} for task {self.task.name} holds no images",
                                    self._missing_hint(folder))
            self._files = files
        return self._files

    def __len__(self) -> int:
        return len(self.files)


class PairedABSource(_DatasetFolderSource):
    """pix2pix's aligned layout: ``<path>/<phase>/*`` AB images.

    Parameters: ``path``, ``phase`` (folder of the test split: ``test`` or ``val``),
    ``direction`` (``AtoB``: condition = left half A, target = right half B; ``BtoA``: the
    reverse, as upstream's ``--direction``), ``url``, ``obtain``. Conditions and references are
    the two halves of the same files, so the oracle (the true target) exists.
    """

    has_oracle = True

    def __init__(self, task, params, split="test"):
        super().__init__(task, params, split)
        self.direction = str(self.params.get("direction", "AtoB"))
        if self.direction not in DIRECTIONS:
            raise CgmbenchError(f"task {task.name}: direction {self.direction!r} is not one of {list(DIRECTIONS)}")

    def folder(self) -> Path:
        return self.root / self.phase()

    @classmethod
    def subfolder(cls, params):
        return str(params.get("phase", cls.default_phase))

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(input, target)`` of item ``i`` at the task resolution, per ``direction``."""
        path = self.files[i]
        a, b = split_ab(read_image(path), path)
        res = self.task.resolution
        a, b = resize_square(a, res), resize_square(b, res)
        return (a, b) if self.direction == "AtoB" else (b, a)

    def conditions(self, indices: Sequence[int]) -> Conditions:
        images = np.stack([self.pair(i)[0] for i in self.wrap(indices)])
        return Conditions(kind=self.task.condition_kind, indices=list(indices), images=torch.from_numpy(images))

    def references(self, indices: Sequence[int]) -> np.ndarray:
        return np.stack([self.pair(i)[1] for i in self.wrap(indices)])

    def oracle(self, indices: Sequence[int], seeds: Sequence[int]) -> np.ndarray:
        return self.references(indices)


class UnpairedSource(_DatasetFolderSource):
    """CycleGAN's unaligned layout: ``<path>/<phase><domain>/*``.

    Parameters: ``path``, ``domain`` (``A`` or ``B``: which folder this section reads),
    ``phase`` (``test``), ``url``, ``obtain``. A task reads its conditions from domain A
    (``testA``) and its references from domain B (``testB``); the images are unrelated, so there
    is no oracle. ``conditions`` and ``references`` both return this section's images.
    """

    def __init__(self, task, params, split="test"):
        super().__init__(task, params, split)
        self.domain = str(self.params.get("domain", "A"))
        if self.domain not in ("A", "B"):
            raise CgmbenchError(f"task {task.name}: domain {self.domain!r} must be 'A' or 'B'")

    def folder(self) -> Path:
        return self.root / f"{self.phase()}{self.domain}"

    @classmethod
    def subfolder(cls, params):
        return f"{params.get('phase', cls.default_phase)}{params.get('domain', 'A')}"

    def images(self, indices: Sequence[int]) -> np.ndarray:
        res = self.task.resolution
        return np.stack([resize_square(read_image(self.files[i]), res) for i in self.wrap(indices)])

    def conditions(self, indices: Sequence[int]) -> Conditions:
        return Conditions(kind=self.task.condition_kind, indices=list(indices),
                          images=torch.from_numpy(self.images(indices)))

    def references(self, indices: Sequence[int]) -> np.ndarray:
        return self.images(indices)
