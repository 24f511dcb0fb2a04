"""Sources for the offline worlds: the shapes world (every task kind) and scikit-learn's digits.

Item ``i`` of split ``s`` of task ``t`` is drawn from ``derive_seed("shapes", t, s, i)``, so it is
the same on every machine. For each item the shapes source knows the structured truth (scene,
prompt spec, edit spec), which the judge scores against; generators only see the condition.

Oracle: "held-out real data matching the condition". Where the condition leaves freedom (a
class, a caption) the oracle renders a fresh scene that satisfies it, laid out from the
sample's seed, so oracle vs reference is a real-vs-real floor. Where the condition fixes the
answer (translation, editing) it returns the true target.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from cgmbench.conditions import Conditions
from cgmbench.errors import CgmbenchError
from cgmbench.seeding import derive_seed, numpy_rng
from cgmbench.sources.base import Source
from cgmbench.worlds import judge as J
from cgmbench.worlds import shapes as W

#: how many distinct items each split offers when the task spec gives no ``size``
DEFAULT_SPLIT_SIZE = {"train": 20000, "test": 1000, "heldout": 1000}


class ShapesSource(Source):
    """The shapes world. Parameters: ``size`` (items in the test split), ``style`` for plain renders, and for
    editing tasks ``edit_types`` (a list of :data:`cgmbench.worlds.shapes.EDIT_TYPES`, default all five, each
    item's type drawn uniformly; ``"v1"``: the recolor/remove stream of ``shapes-judge/1``)."""

    has_judge = True
    has_oracle = True

    def __init__(self, task, params, split="test"):
        super().__init__(task, params, split)
        if task.kind not in ("class-conditional", "text-to-image", "paired-translation", "unpaired-translation",
                             "editing", "text-to-video"):
            raise CgmbenchError(f"the shapes world has no {task.kind} task")
        size = self.params.get("size") if split == "test" else None
        self.size = int(size or DEFAULT_SPLIT_SIZE.get(split, 1000))
        self.style = self.params.get("style", "flat")
        self.res = task.resolution
        types = self.params.get("edit_types", W.EDIT_TYPES)
        if types != W.LEGACY_EDIT_MIX:
            if isinstance(types, str) or not types or any(t not in W.EDIT_TYPES for t in types):
                raise CgmbenchError(f"shapes edit_types {types!r} must be a non-empty list of {list(W.EDIT_TYPES)} "
                                    f"(or {W.LEGACY_EDIT_MIX!r})")
            types = tuple(types)
        self.edit_types_drawn = types

    def __len__(self):
        return self.size

    def class_name(self, label: int) -> str:
        """``"red square"``: the colour and shape of class ``label`` (:func:`cgmbench.worlds.shapes.class_attributes`)."""
        shape, color = W.class_attributes(int(label))
        return f"{color} {shape}"

    @lru_cache(maxsize=4096)
    def item(self, i: int, split: str | None = None) -> dict:
        """The structured truth of item ``i``: scene(s), condition, spec."""
        split = split or self.split
        rng = numpy_rng(derive_seed("shapes", self.task.name, split, i))
        kind = self.task.kind
        if kind == "class-conditional":
            label, scene = W.random_class_scene(rng, self.res)
            return {"label": label, "scene": scene}
        if kind == "text-to-image":
            spec = W.random_prompt_spec(rng)
            return {"spec": spec, "text": spec["caption"], "scene": W.scene_for_prompt(spec, rng, self.res)}
        if kind in ("paired-translation", "unpaired-translation"):
            return {"scene": W.random_scene(rng, self.res)}
        if kind == "editing":
            source, spec, target = W.random_edit(rng, self.res, types=self.edit_types_drawn)
            return {"source": source, "spec": spec, "text": spec["caption"], "scene": target}
        spec = W.random_motion_spec(rng, self.res, int(self.task.frames))
        return {"spec": spec, "text": spec["caption"], "scene": W.scene_for_motion(spec, rng, self.res)}

    # -- conditions ---------------------------------------------------------------------

    def conditions(self, indices):
        idx = self.wrap(indices)
        items = [self.item(i) for i in idx]
        kind = self.task.kind
        c = Conditions(kind=self.task.condition_kind, indices=list(indices))
        if kind == "class-conditional":
            c.labels = torch.tensor([it["label"] for it in items], dtype=torch.int64)
        elif kind in ("text-to-image", "text-to-video"):
            c.texts = [it["text"] for it in items]
        elif kind == "paired-translation":
            c.images = torch.from_numpy(np.stack([W.render_label_map(it["scene"]) for it in items]))
        elif kind == "unpaired-translation":
            c.images = torch.from_numpy(np.stack([W.render(it["scene"], "flat") for it in items]))
        elif kind == "editing":
            c.images = torch.from_numpy(np.stack([W.render(it["source"], "flat") for it in items]))
            c.masks = torch.from_numpy(np.stack([W.edit_mask(it["source"], it["spec"], it["scene"]) for it in items]))
            c.texts = [it["text"] for it in items]
        return c

    # -- real data ----------------------------------------------------------------------

    def _render_target(self, scene):
        if self.task.kind == "text-to-video":
            return W.render_video(scene, self.style)
        if self.task.kind in ("paired-translation", "unpaired-translation"):
            return W.render(scene, "textured")
        return W.render(scene, self.style)

    def references(self, indices):
        """Real targets. For unpaired translation, target-domain scenes independent of the conditions."""
        split = "test-b" if self.task.kind == "unpaired-translation" else None
        return np.stack([self._render_target(self.item(i, split)["scene"]) for i in self.wrap(indices)])

    def oracle(self, indices, seeds):
        out = []
        for i, seed in zip(self.wrap(indices), seeds):
            it, rng = self.item(i), numpy_rng(seed)
            kind = self.task.kind
            if kind == "class-conditional":
                scene = W.random_class_scene(rng, self.res, label=it["label"])[1]
            elif kind == "text-to-image":
                scene = W.scene_for_prompt(it["spec"], rng, self.res)
            elif kind == "text-to-video":
                scene = W.scene_for_motion(it["spec"], rng, self.res)
            else:
                scene = it["scene"]
            out.append(self._render_target(scene))
        return np.stack(out)

    # -- judge --------------------------------------------------------------------------

    def judge(self, samples, indices):
        kind = self.task.kind
        results = []
        for sample, i in zip(samples, self.wrap(indices)):
            it = self.item(i)
            if kind == "class-conditional":
                results.append(J.judge_class(sample, it["label"]))
            elif kind == "text-to-image":
                results.append(J.judge_prompt(sample, it["spec"]))
            elif kind == "paired-translation":
                objs = [o.to_dict() for o in it["scene"].objects]
                results.append(J.judge_label_map(sample, W.render_label_map(it["scene"]), objs))
            elif kind == "unpaired-translation":
                results.append(J.judge_scene(sample, [o.to_dict() for o in it["scene"].objects], style="textured"))
            elif kind == "editing":
                results.append(J.judge_edit(sample, it["spec"]))
            else:
                results.append(J.judge_video(sample, it["spec"]))
        return results

    # -- editing metrics (issue 15: cgmbench/metrics/editing.py) ------------------------

    def edit_types(self, indices) -> list[str]:
        """The edit type of each item (``recolor``, ``swap``, ``add``, ``remove``, ``move``): the rows of
        ``--by edit_type`` tables."""
        if self.task.kind != "editing":
            raise CgmbenchError(f"a {self.task.kind} task has no edit types")
        return [self.item(i)["spec"]["type"] for i in self.wrap(indices)]

    def edit_captions(self, indices) -> tuple[list[str], list[str]]:
        """``(source captions, target captions)``: every object of the scene before / after the edit, in the
        shapes-t2i phrasing (``"a red circle and a blue square"``), for CLIP direction metrics."""
        if self.task.kind != "editing":
            raise CgmbenchError(f"a {self.task.kind} task has no edit captions")

        def caption(objects) -> str:
            return " and ".join(W._noun({"color": o.color, "shape": o.shape}) for o in objects) or "nothing"

        items = [self.item(i) for i in self.wrap(indices)]
        return [caption(it["source"].objects) for it in items], [caption(it["scene"].objects) for it in items]


# ----------------------------------------------------------------------------- digits


@lru_cache(maxsize=1)
def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))  # fixed split, documented
    return d.images[order], d.target[order].astype(np.int64)


def digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits, permuted with seed 0: 60% train, 20% test, 20% heldout."""
    images, labels = _digits()
    n = len(labels)
    bounds = {"train": (0, int(0.6 * n)), "test": (int(0.6 * n), int(0.8 * n)), "heldout": (int(0.8 * n), n)}
    if split not in bounds:
        raise CgmbenchError(f"digits has no split {split!r}; splits: {sorted(bounds)}")
    lo, hi = bounds[split]
    return images[lo:hi], labels[lo:hi]


def digits_to_rgb(images: np.ndarray, resolution: int) -> np.ndarray:
    """8x8 digits in 0..16 -> uint8 ``[N, 3, res, res]`` (nearest-neighbour upsampling, grey)."""
    if resolution % 8:
        raise CgmbenchError(f"digits tasks need a resolution that is a multiple of 8, got {resolution}")
    f = resolution // 8
    up = np.kron(images, np.ones((f, f)))
    g = np.rint(up * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return np.repeat(g[:, None], 3, axis=1)


class DigitsSource(Source):
    """scikit-learn's bundled handwritten digits (Alpaydin & Kaynak, UCI), 10 classes."""

    has_oracle = True

    def __init__(self, task, params, split="test"):
        super().__init__(task, params, split)
        if task.kind != "class-conditional":
            raise CgmbenchError("the digits source only provides class-conditional tasks")
        images, self.labels = digits_split(split)
        self.images = digits_to_rgb(images, task.resolution)

    def __len__(self):
        return len(self.labels)

    def class_name(self, label: int) -> str:
        return f"digit {int(label)}"

    def conditions(self, indices):
        labels = torch.from_numpy(self.labels[self.wrap(indices)])
        return Conditions(kind="class", indices=list(indices), labels=labels)

    def references(self, indices):
        return self.images[self.wrap(indices)]

    def oracle(self, indices, seeds):
        held_images, held_labels = digits_split("heldout")
        held = digits_to_rgb(held_images, self.task.resolution)
        out = []
        for i, seed in zip(self.wrap(indices), seeds):
            pool = np.flatnonzero(held_labels == self.labels[i])
            out.append(held[pool[numpy_rng(seed).integers(len(pool))]])
        return np.stack(out)
