"""The GAN-era text-to-image datasets in the layout of the AttnGAN metadata (source ``attngan-data``).

``root`` is the folder of the AttnGAN metadata as released (``data/birds`` or ``data/coco`` of taoxugit/AttnGAN's
``birds.zip`` / ``coco.zip``) with the images added:

birds (``dataset = "birds"``, CUB-200-2011 with the Reed et al. captions)::

    ROOT/test/filenames.pickle        list of 2,933 names "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18"
    ROOT/text/<name>.txt              10 captions, one per line (Reed et al. 2016)
    ROOT/CUB_200_2011/images.txt      "<id> <name>.jpg"
    ROOT/CUB_200_2011/bounding_boxes.txt  "<id> <x> <y> <w> <h>"
    ROOT/CUB_200_2011/images/<name>.jpg

coco (``dataset = "coco"``, the 2014 captions the GAN papers use: AttnGAN's 40,470-image test split = val2014)::

    ROOT/test/filenames.pickle        list of names "COCO_val2014_000000000042"
    ROOT/text/<name>.txt              5 captions, one per line
    ROOT/images/<name>.jpg

Item ``i`` is caption ``(i // N) % C`` of test image ``i % N`` (``N`` images, ``C`` captions per image): the first
``N`` items are one caption per image, as one pass of the papers' sampling loop, later items the next passes, so
``len = N * C`` (CUB: 29,330). ``filenames.pickle`` is read with an unpickler that admits only lists, strings and
numbers (nothing that could run code). Reference images follow AttnGAN's ``get_imgs``: for birds the crop of side
``1.5 * max(w, h)`` centred on the bounding box (clipped to the image), then a PIL bicubic resize to the task's
resolution (AttnGAN: bilinear ``Resize`` after ``Scale(int(imsize * 76 / 64))`` + random crop in training; the
test images are centre-resized here, and that is the named protocol). ``class_ids`` (birds: the 200 species from
the name's prefix; coco: none) serve DM-GAN's R-precision negatives.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Sequence

import numpy as np

from cgmbench.conditions import Conditions
from cgmbench.errors import CgmbenchError
from cgmbench.images import read_image
from cgmbench.paths import expand
from cgmbench.sources.base import Source

__all__ = ["AttnGANDataSource", "read_filenames_pickle"]

CAPTIONS_PER_IMAGE = {"birds": 10, "coco": 5}


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing global {module}.{name}: only plain lists and strings are accepted")


def read_filenames_pickle(path: Path) -> list[str]:
    """``filenames.pickle``: a list of image names (str); any other object is refused before it is built."""
    try:
        obj = _PlainUnpickler(io.BytesIO(Path(path).read_bytes()), encoding="latin1").load()
    except Exception as err:  # noqa: BLE001 - one user-facing error for any bad pickle
        raise CgmbenchError(f"cannot read {path}: {err}", "it must be a pickle of a list of image names") from None
    if not isinstance(obj, list) or not all(isinstance(x, (str, bytes)) for x in obj):
        raise CgmbenchError(f"{path} holds a {type(obj).__name__}, not a list of image names")
    return [x.decode("latin1") if isinstance(x, bytes) else x for x in obj]


class AttnGANDataSource(Source):
    """CUB-200 / COCO test captions and images in the AttnGAN layout (module docstring)."""

    has_oracle = True

    def __init__(self, task, params, split="test"):
        super().__init__(task, params, split)
        self.dataset = str(self.params.get("dataset", "birds"))
        if self.dataset not in CAPTIONS_PER_IMAGE:
            raise CgmbenchError(f"attngan-data: unknown dataset {self.dataset!r}", "dataset = 'birds' or 'coco'")
        if "root" not in self.params:
            raise CgmbenchError(f"task {task.name}: the attngan-data source needs root = the AttnGAN data folder")
        self.root = Path(expand(str(self.params["root"])))
        self.captions_per_image = int(self.params.get("captions_per_image", CAPTIONS_PER_IMAGE[self.dataset]))
        phase = "test" if split in ("test", "heldout") else "train"
        self.names = read_filenames_pickle(self._need(f"{phase}/filenames.pickle"))
        if not self.names:
            raise CgmbenchError(f"{self.root}/{phase}/filenames.pickle lists no images")
        self._bbox = None

    # -- files --------------------------------------------------------------------------

    def layout_files(self) -> list[str]:
        files = ["test/filenames.pickle", "text/<name>.txt"]
        if self.dataset == "birds":
            files += ["CUB_200_2011/images.txt", "CUB_200_2011/bounding_boxes.txt", "CUB_200_2011/images/<name>.jpg"]
        else:
            files += ["images/<name>.jpg"]
        return files

    def _need(self, rel: str) -> Path:
        path = self.root / rel
        if not path.is_file():
            obtain = self.params.get("obtain", "")
            raise CgmbenchError(f"task {self.task.name}: missing {path}; the {self.dataset} data needs, under {self.root}: "
                                + ", ".join(self.layout_files()), obtain or None)
        return path

    def __len__(self) -> int:
        return len(self.names) * self.captions_per_image

    def _locate(self, i: int) -> tuple[int, int]:
        n = len(self.names)
        return i % n, (i // n) % self.captions_per_image

    def captions(self, image: int) -> list[str]:
        lines = [ln.strip() for ln in self._need(f"text/{self.names[image]}.txt").read_text(
            encoding="utf-8", errors="replace").splitlines()]
        lines = [ln for ln in lines if ln]
        if len(lines) < self.captions_per_image:
            raise CgmbenchError(f"{self.root}/text/{self.names[image]}.txt has {len(lines)} captions, "
                                f"expected {self.captions_per_image}")
        return lines[: self.captions_per_image]

    def conditions(self, indices: Sequence[int]) -> Conditions:
        texts = []
        for i in self.wrap(indices):
            image, cap = self._locate(i)
            texts.append(self.captions(image)[cap])
        return Conditions(kind="text", indices=list(indices), texts=texts,
                          extras={"image_names": [self.names[self._locate(i)[0]] for i in self.wrap(indices)]})

    def class_ids(self, indices: Sequence[int]) -> list[int]:
        """The CUB species (1..200) of each item's image; COCO has none."""
        if self.dataset != "birds":
            raise CgmbenchError("COCO captions have no classes", "use the 'uniform' R-precision protocol")
        return [int(self.names[self._locate(i)[0]].split(".", 1)[0]) for i in self.wrap(indices)]

    # -- images -------------------------------------------------------------------------

    def _bboxes(self) -> dict[str, tuple[float, float, float, float]]:
        if self._bbox is None:
            ids = {}
            for ln in self._need("CUB_200_2011/images.txt").read_text().split("\n"):
                if ln.strip():
                    k, name = ln.split()
                    ids[k] = name[: -len(".jpg")] if name.endswith(".jpg") else name
            boxes = {}
            for ln in self._need("CUB_200_2011/bounding_boxes.txt").read_text().split("\n"):
                if ln.strip():
                    k, *box = ln.split()
                    boxes[ids[k]] = tuple(float(v) for v in box)
            self._bbox = boxes
        return self._bbox

    def image(self, image: int) -> np.ndarray:
        """uint8 ``[3, R, R]``: the (bird-cropped) test image resized with PIL bicubic."""
        from PIL import Image

        name = self.names[image]
        if self.dataset == "birds":
            arr = read_image(self._need(f"CUB_200_2011/images/{name}.jpg"))  # [3, H, W]
            if name not in self._bboxes():
                raise CgmbenchError(f"{self.root}/CUB_200_2011/bounding_boxes.txt has no box for {name}")
            x, y, w, h = self._bboxes()[name]
            height, width = arr.shape[1:]
            r = int(max(w, h) * 0.75)
            cx, cy = int((2 * x + w) / 2), int((2 * y + h) / 2)
            y1, y2 = max(0, cy - r), min(height, cy + r)
            x1, x2 = max(0, cx - r), min(width, cx + r)
            arr = arr[:, y1:y2, x1:x2]
        else:
            arr = read_image(self._need(f"images/{name}.jpg"))
        side = self.task.resolution
        pil = Image.fromarray(np.ascontiguousarray(arr.transpose(1, 2, 0)), "RGB").resize((side, side), Image.BICUBIC)
        return np.asarray(pil, np.uint8).transpose(2, 0, 1)

    def references(self, indices: Sequence[int]) -> np.ndarray:
        return np.stack([self.image(self._locate(i)[0]) for i in self.wrap(indices)])

    def oracle(self, indices: Sequence[int], seeds: Sequence[int]) -> np.ndarray:
        return self.references(indices)

