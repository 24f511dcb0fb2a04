"""Condition and reference sources: where a task's conditions and real images come from.

A task spec names a source in ``[conditions]`` and in ``[reference]``; the other keys of that
section are the source's parameters. A source is indexed: item ``i`` of a split is always the
same. Condition ``i`` of a run with N samples is item ``i % len(source)`` (prompt suites shorter
than N repeat, as HEIM and the COCO-30k protocol do).

==============  ===========================================================================
source          what it provides
==============  ===========================================================================
shapes          the procedural shapes world (every task kind; oracle and exact judge)
digits          scikit-learn's bundled 8x8 digits, upsampled (class-conditional; oracle)
prompts         a prompt suite shipped in the package (DrawBench, PartiPrompts, GenEval,
                T2I-CompBench, COCO-2014 caption lists); oracle from a local image folder
image-folder    a folder of image files (references, translation sources)
pix2pix-ab      the official pix2pix datasets: A|B side by side (cgmbench.sources.translation)
cyclegan-unpaired  the official CycleGAN datasets: testA/ and testB/ folders
labels          class labels only, uniform: item i has label i % num_classes (ImageNet protocol)
photos          the photos bundled with scikit-learn / scikit-image (inpainting)
==============  ===========================================================================
"""

from __future__ import annotations

import csv
import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from cgmbench.conditions import Conditions
from cgmbench.errors import CgmbenchError
from cgmbench.images import center_crop_resize, list_images, read_image
from cgmbench.paths import expand

if TYPE_CHECKING:  # pragma: no cover
    from cgmbench.spec.task import TaskSpec

#: source name -> "module:Class" (or a Source subclass registered with :func:`register_source`)
SOURCES = {
    "shapes": "cgmbench.worlds.sources:ShapesSource",
    "digits": "cgmbench.worlds.sources:DigitsSource",
    "prompts": "cgmbench.sources.base:PromptSource",
    "image-folder": "cgmbench.sources.base:ImageFolderSource",
    "photos": "cgmbench.sources.base:PhotoSource",
    "labels": "cgmbench.sources.base:LabelSource",
    "pix2pix-ab": "cgmbench.sources.translation:PairedABSource",
    "cyclegan-unpaired": "cgmbench.sources.translation:UnpairedSource",
    "pie-bench": "cgmbench.sources.pie_bench:PieBenchSource",  # issue 15
}
# issue 13: the AttnGAN metadata layout of CUB-200 and COCO (GAN-era text-to-image)
SOURCES["attngan-data"] = "cgmbench.sources.gan_t2i:AttnGANDataSource"


class Source:
    """Base class. ``split`` is 'test' (conditions and references), 'train' or 'heldout'."""

    has_judge = False
    has_oracle = False

    def __init__(self, task: "TaskSpec", params: dict, split: str = "test"):
        self.task = task
        self.params = {k: v for k, v in params.items() if k != "source"}
        self.split = split

    def __len__(self) -> int:
        raise NotImplementedError

    def conditions(self, indices: Sequence[int]) -> Conditions:
        raise CgmbenchError(f"source {type(self).__name__} provides no conditions for task {self.task.name}")

    def references(self, indices: Sequence[int]) -> np.ndarray:
        raise CgmbenchError(f"source {type(self).__name__} provides no reference images for task {self.task.name}")

    def oracle(self, indices: Sequence[int], seeds: Sequence[int]) -> np.ndarray:
        raise CgmbenchError(f"task {self.task.name} has no held-out real data for the oracle",
                            "the oracle needs a task whose conditions come with real images")

    def judge(self, samples: np.ndarray, indices: Sequence[int]) -> list[dict]:
        raise CgmbenchError(f"task {self.task.name} has no judge")

    @classmethod
    def required_files(cls, task: "TaskSpec", params: dict, purpose: str, oracle: bool = False) -> list:
        """The data files and folders this source reads for ``task`` with ``params`` (its spec section), without
        opening anything (:class:`cgmbench.requirements.Requirement`); ``purpose`` names the section for the user
        ("conditions", "reference images"); ``oracle``: also what :meth:`oracle` reads. Default: the folder named
        by ``path`` (or ``root``), with the section's ``url`` and ``obtain``."""
        from cgmbench.requirements import data_path

        folder = params.get("path") or params.get("root")
        if not isinstance(folder, str):
            return []
        return [data_path(folder, f"task {task.name} {purpose}", params.get("url"), params.get("obtain"))]
    def class_name(self, label: int) -> str:
        """What class ``label`` is, for people (sample-grid titles): ``"class 7"`` unless the source knows a name."""
        return f"class {int(label)}"

    def wrap(self, indices: Sequence[int]) -> list[int]:
        n = len(self)
        if n == 0:
            raise CgmbenchError(f"task {self.task.name}: the condition source is empty")
        return [int(i) % n for i in indices]


def register_source(name: str, source: "type[Source] | str") -> None:
    """Make ``source = "<name>"`` usable in task specs: a :class:`Source` subclass or ``"module:Class"``.

    ``source`` is built as ``Source(task, params, split)``; a ``"module:Class"`` string is imported on first use.
    Registering a name twice is an error (built-in sources cannot be replaced)."""
    if not isinstance(name, str) or not name:
        raise CgmbenchError(f"a source name must be a non-empty string, got {name!r}")
    if name in SOURCES:
        raise CgmbenchError(f"source {name!r} is already registered", "choose another name")
    if isinstance(source, str):
        module, sep, cls = source.partition(":")
        if not sep or not module or not cls:
            raise CgmbenchError(f"source {name!r}: {source!r} is not 'module:Class'")
    elif not (isinstance(source, type) and issubclass(source, Source)):
        raise CgmbenchError(f"source {name!r}: {source!r} is not a cgmbench.sources.base.Source subclass")
    SOURCES[name] = source


def source_class(name: str) -> "type[Source]":
    """The :class:`Source` subclass registered as ``name`` (imported on first use)."""
    cls = SOURCES[name]
    if isinstance(cls, str):
        module, attr = cls.split(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise CgmbenchError(f"source {name!r} could not be imported from {SOURCES[name]}: "
                                f"{type(e).__name__}: {e}") from None
    return cls


def open_source(task: "TaskSpec", section: str = "conditions", split: str = "test") -> Source:
    params = task.conditions if section == "conditions" else task.reference
    return source_class(params["source"])(task, params, split)


# ----------------------------------------------------------------------------- prompt suites

#: suite -> (file in cgmbench/data/prompts, text column, format)
PROMPT_SUITES = {
    "drawbench": ("drawbench.csv", "prompt", "csv"),
    "partiprompts": ("partiprompts.csv", "prompt", "csv"),
    "geneval": ("geneval_metadata.jsonl", "prompt", "jsonl"),
    "t2i-compbench": ("t2i_compbench.csv", "prompt", "csv"),
    "coco2014-30k": ("coco2014_val_30k.csv", "caption", "csv"),
    "coco2014-5k": ("coco2014_val_5k_mlperf.csv", "caption", "csv"),
}


def prompt_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "prompts"


def load_prompt_suite(suite: str, where: dict | None = None) -> list[dict]:
    """Rows of a shipped prompt suite (dicts of strings), optionally filtered by ``where`` equalities."""
    if suite not in PROMPT_SUITES:
        raise CgmbenchError(f"unknown prompt suite {suite!r}", f"suites: {sorted(PROMPT_SUITES)}")
    fname, _, fmt = PROMPT_SUITES[suite]
    path = prompt_dir() / fname
    with open(path, encoding="utf-8", newline="") as f:
        rows = [json.loads(line) for line in f if line.strip()] if fmt == "jsonl" else list(csv.DictReader(f))
    for key, value in (where or {}).items():
        rows = [r for r in rows if str(r.get(key)) == str(value)]
    return rows


class PromptSource(Source):
    """Parameters: ``suite``, optional ``where`` (column equalities), ``limit``, ``categories`` (columns whose
    values group the prompts for per-category results, e.g. ``["category", "challenge"]``), and for the oracle
    ``images`` (folder) + ``image_pattern`` (e.g. ``COCO_val2014_{image_id:012d}.jpg``)."""

    def __init__(self, task, params, split="test"):
        super().__init__(task, params, split)
        suite = self.params.get("suite")
        if not suite:
            raise CgmbenchError(f"task {task.name}: [conditions] source 'prompts' needs a 'suite'")
        self.rows = load_prompt_suite(suite, self.params.get("where"))
        if "limit" in self.params:
            self.rows = self.rows[: int(self.params["limit"])]
        self.column = PROMPT_SUITES[suite][1]
        self.has_oracle = "images" in self.params
        columns = self.params.get("categories", [])
        self.category_columns = [columns] if isinstance(columns, str) else list(columns)
        missing = [c for c in self.category_columns if self.rows and c not in self.rows[0]]
        if missing:
            raise CgmbenchError(f"task {task.name}: categories column(s) {missing} are not in the {suite} prompt "
                                f"file", f"its columns: {', '.join(self.rows[0])}")

    @classmethod
    def required_files(cls, task, params, purpose, oracle=False):
        """Nothing (the suites ship with cgmbench), but the oracle's image folder for the oracle; a task without
        one has no oracle (the same error as sampling it would give, before anything runs)."""
        from cgmbench.requirements import data_path

        if not oracle:
            return []
        if "images" not in params:
            raise CgmbenchError(f"task {task.name} has no held-out real data for the oracle",
                                "the oracle needs a task whose conditions come with real images")
        return [data_path(params["images"], f"task {task.name} oracle images", params.get("url"),
                          params.get("obtain"))]

    def categories(self, indices) -> dict[str, list[str]]:
        """Per-category labels of conditions ``indices``: ``{column: [label of each index]}`` (empty: none)."""
        rows = [self.rows[i] for i in self.wrap(indices)]
        return {c: [str(r.get(c, "")) for r in rows] for c in self.category_columns}

    def __len__(self):
        return len(self.rows)

    def texts(self, indices):
        return [self.rows[i][self.column] for i in self.wrap(indices)]

    def conditions(self, indices):
        return Conditions(kind=self.task.condition_kind, indices=list(indices), texts=self.texts(indices))

    def oracle(self, indices, seeds):
        if not self.has_oracle:
            return super().oracle(indices, seeds)
        folder = _require_folder(self.params["images"], self.params, self.task)
        pattern = self.params["image_pattern"]
        out = []
        for i in self.wrap(indices):
            row = {k: (int(v) if k.endswith("_id") and str(v).isdigit() else v) for k, v in self.rows[i].items()}
            path = folder / pattern.format(**row)
            if not path.is_file():
                raise CgmbenchError(f"missing image {path} for condition {i} of task {self.task.name}",
                                    _obtain_hint(self.params, self.task))
            out.append(center_crop_resize(read_image(path), self.task.resolution))
        return np.stack(out)


# ----------------------------------------------------------------------------- image folders


def _obtain_hint(params: dict, task) -> str:
    parts = []
    if params.get("url"):
        parts.append(f"download {params['url']}")
    if params.get("obtain"):
        parts.append(str(params["obtain"]))
    parts.append(f"see `cgmbench info {task.name}`")
    return "; ".join(parts)


def _require_folder(path: str, params: dict, task) -> Path:
    folder = expand(path)
    if not folder.is_dir():
        raise CgmbenchError(f"dataset folder {folder} for task {task.name} does not exist",
                            f"put the files there ({_obtain_hint(params, task)}); "
                            "CGMBENCH_HOME moves the default location")
    return folder


class ImageFolderSource(Source):
    """Parameters: ``path`` (``${CGMBENCH_HOME}`` expands), ``url``/``obtain`` (shown when missing)."""

    def __init__(self, task, params, split="test"):
        super().__init__(task, params, split)
        if "path" not in self.params:
            raise CgmbenchError(f"task {task.name}: source 'image-folder' needs a 'path'")
        self._files: list[Path] | None = None

    @property
    def files(self) -> list[Path]:
        if self._files is None:
            self._files = list_images(_require_folder(self.params["path"], self.params, self.task))
            if not self._files:
                raise CgmbenchError(f"dataset folder {expand(self.params['path'])} holds no images",
                                    _obtain_hint(self.params, self.task))
        return self._files

    def __len__(self):
        return len(self.files)

    def references(self, indices):
        return np.stack([center_crop_resize(read_image(self.files[i]), self.task.resolution)
                         for i in self.wrap(indices)])

    def conditions(self, indices):
        images = torch.from_numpy(self.references(indices))
        return Conditions(kind=self.task.condition_kind, indices=list(indices), images=images)


# ----------------------------------------------------------------------------- bundled photos


def bundled_photos() -> list[tuple[str, np.ndarray]]:
    """Real photos that pip packages ship: scikit-learn's two sample images and scikit-image's."""
    from sklearn.datasets import load_sample_images

    photos = []
    sk = load_sample_images()
    for name, img in zip(sk.filenames, sk.images):
        photos.append((f"sklearn/{Path(name).stem}", np.asarray(img, np.uint8).transpose(2, 0, 1)))
    try:
        from skimage import data as skdata

        for name in ("astronaut", "coffee", "chelsea", "rocket", "cat"):
            img = np.asarray(getattr(skdata, name)(), np.uint8)
            if img.ndim == 3 and img.shape[2] == 3:
                photos.append((f"skimage/{name}", img.transpose(2, 0, 1)))
    except ImportError:  # scikit-image is optional; scikit-learn's two photos remain
        pass
    return photos


class PhotoSource(Source):
    """Inpainting on the bundled photos: each photo with ``masks_per_photo`` square holes."""

    has_oracle = True
    _cache: list | None = None

    def __init__(self, task, params, split="test"):
        super().__init__(task, params, split)
        if PhotoSource._cache is None:
            PhotoSource._cache = bundled_photos()
        res = task.resolution
        self.images = [center_crop_resize(img, res) for _, img in PhotoSource._cache]
        self.names = [n for n, _ in PhotoSource._cache]
        self.masks_per_photo = int(self.params.get("masks_per_photo", 4))

    def __len__(self):
        return len(self.images) * self.masks_per_photo

    def _mask(self, i: int) -> np.ndarray:
        res = self.task.resolution
        side = res // 2
        corner = i % self.masks_per_photo
        offsets = [(res // 4, res // 4), (0, 0), (0, res - side), (res - side, res // 4)]
        top, left = offsets[corner % len(offsets)]
        m = np.zeros((1, res, res), np.uint8)
        m[:, top:top + side, left:left + side] = 255
        return m

    def references(self, indices):
        return np.stack([self.images[i // self.masks_per_photo] for i in self.wrap(indices)])

    def conditions(self, indices):
        idx = self.wrap(indices)
        masks = np.stack([self._mask(i) for i in idx])
        images = self.references(indices) * (masks == 0)
        return Conditions(kind=self.task.condition_kind, indices=list(indices), images=torch.from_numpy(images),
                          masks=torch.from_numpy(masks))

    def oracle(self, indices, seeds):
        return self.references(indices)


# ----------------------------------------------------------------------------- uniform labels


class LabelSource(Source):
    """Class labels without images: item ``i`` has label ``i % num_classes``, so N = k·num_classes
    samples hold exactly k of every class (the ADM/DiT 50k protocol draws labels uniformly)."""

    def __init__(self, task, params, split="test"):
        super().__init__(task, params, split)
        n = self.params.get("num_classes")
        if not isinstance(n, int) or n < 1:
            raise CgmbenchError(f"task {task.name}: source 'labels' needs an integer num_classes >= 1")
        self.num_classes = n

    def __len__(self):
        return self.num_classes

    @classmethod
    def required_files(cls, task, params, purpose, oracle=False):
        """The ADM reference ``batch`` (``.npz``) when the section names one: its weights-registry entry when it
        has one (fetched with its digest), else the file with the section's ``url``/``obtain``."""
        from cgmbench import weights
        from cgmbench.requirements import data_path, weights_file

        batch = params.get("batch")
        if not isinstance(batch, str):
            return []
        path = expand(batch)
        for name, kf in weights.known_files().items():
            if kf.folder and weights.destination(kf) == path:
                return [weights_file(name, f"task {task.name} {purpose} (ADM reference batch)")]
        return [data_path(batch, f"task {task.name} {purpose} (ADM reference batch)", params.get("url"),
                          params.get("obtain"), folder=False)]

    def conditions(self, indices):
        labels = torch.tensor([int(i) % self.num_classes for i in indices], dtype=torch.int64)
        return Conditions(kind="class", indices=list(indices), labels=labels)

# issue 16 (video): UCF-101 in its official layout (videos or frame folders)
SOURCES["ucf101"] = "cgmbench.sources.ucf101:UCF101Source"
