"""``pie-bench`` source: PIE-Bench (``mapping_file.json``) or PIE-Bench++ (Parquet) edits as conditions.

Parameters (task spec ``[conditions]``): ``layout`` (``"pie_bench"`` or ``"pie_bench_pp"``), ``path`` (PIE-Bench:
the ``data/`` folder holding ``mapping_file.json`` and ``annotation_images/``; PIE-Bench++: the Hugging Face
snapshot folder of ``<config>/V1-*.parquet``), ``url`` / ``obtain`` (shown when the files are missing),
``edit_types`` (optional list of type ids 0..9), ``force_border`` (default true: PIE-Bench's 1-pixel border rule
of its mask decoding). Loaders: :mod:`cgmbench.datasets.pie_bench`.

Conditions (``image+text``): ``images`` the source image (centre-cropped to a square and resized to the task's
resolution with PIL bicubic when it is not already that size; PIE-Bench images are 512x512), ``masks`` the
decoded edit mask (255 = edit; nearest-neighbour resized likewise), ``texts`` the target prompt without the
``[`` ``]`` markers; ``extras``: ``source_prompts``, ``instructions``, ``blended_words``, ``edit_types``.
There is no true edited image: ``references`` are the source images (for background metrics only).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from cgmbench.conditions import Conditions
from cgmbench.datasets.pie_bench import EDIT_TYPES, IMAGE_SHAPE, load_pie_bench, load_pie_bench_pp
from cgmbench.errors import CgmbenchError
from cgmbench.images import center_crop_resize
from cgmbench.paths import expand
from cgmbench.sources.base import Source, _obtain_hint

LAYOUTS = ("pie_bench", "pie_bench_pp")


class PieBenchSource(Source):
    """PIE-Bench / PIE-Bench++ (see the module docstring)."""

    def __init__(self, task, params, split="test"):
        super().__init__(task, params, split)
        self.layout = self.params.get("layout", "pie_bench")
        if self.layout not in LAYOUTS:
            raise CgmbenchError(f"task {task.name}: pie-bench layout {self.layout!r} unknown; known: {LAYOUTS}")
        if "path" not in self.params:
            raise CgmbenchError(f"task {task.name}: source 'pie-bench' needs a 'path'")
        self.force_border = bool(self.params.get("force_border", True))
        self._records = None

    @property
    def records(self):
        if self._records is None:
            root = expand(self.params["path"])
            want = self.params.get("edit_types")
            if self.layout == "pie_bench":
                mapping = root / "mapping_file.json"
                if not mapping.is_file():
                    raise CgmbenchError(f"PIE-Bench mapping file {mapping} for task {self.task.name} does not exist",
                                        f"put PIE-Bench's data/ folder there ({_obtain_hint(self.params, self.task)})")
                self._records = load_pie_bench(mapping, want)
            else:
                if not root.exists():
                    raise CgmbenchError(f"PIE-Bench++ folder {root} for task {self.task.name} does not exist",
                                        f"put the Parquet snapshot there ({_obtain_hint(self.params, self.task)})")
                configs = None if want is None else [EDIT_TYPES[int(t)] for t in want]
                self._records = load_pie_bench_pp(root, configs)
            if not self._records:
                raise CgmbenchError(f"no PIE-Bench records under {root}", _obtain_hint(self.params, self.task))
        return self._records

    def __len__(self):
        return len(self.records)

    def _image(self, rec) -> np.ndarray:
        root = expand(self.params["path"])
        img = rec.image(root / "annotation_images" if self.layout == "pie_bench" else None)
        res = self.task.resolution
        return img if img.shape[1:] == (res, res) else center_crop_resize(img, res)

    def _mask(self, rec) -> np.ndarray:
        m = rec.mask(IMAGE_SHAPE, force_border=self.force_border)
        res = self.task.resolution
        if m.shape != (res, res):
            m = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((res, res), Image.NEAREST)) > 0
        return (m.astype(np.uint8) * 255)[None]

    def references(self, indices):
        return np.stack([self._image(self.records[i]) for i in self.wrap(indices)])

    def conditions(self, indices):
        recs = [self.records[i] for i in self.wrap(indices)]
        return Conditions(kind=self.task.condition_kind, indices=list(indices),
                          images=torch.from_numpy(np.stack([self._image(r) for r in recs])),
                          masks=torch.from_numpy(np.stack([self._mask(r) for r in recs])),
                          texts=[r.target_prompt_plain for r in recs],
                          extras={"source_prompts": [r.source_prompt_plain for r in recs],
                                  "instructions": [r.instruction for r in recs],
                                  "blended_words": [r.blended_words for r in recs],
                                  "edit_types": [r.edit_type_name for r in recs]})

    def edit_types(self, indices) -> list[str]:
        return [self.records[i].edit_type_name for i in self.wrap(indices)]

    def edit_captions(self, indices) -> tuple[list[str], list[str]]:
        recs = [self.records[i] for i in self.wrap(indices)]
        return [r.source_prompt_plain for r in recs], [r.target_prompt_plain for r in recs]
