"""The exact judge of the shapes world.

From an image (or video) the judge recovers the objects — colour, shape, size, position, and
motion across frames — and scores adherence to the condition per attribute, GenEval-style
but exact: the world is rendered without anti-aliasing in six well separated hues, so on real
world samples every object is recovered (the tests require >= 0.99), and on noise nothing is.

Pixel rule: a pixel belongs to an object when its saturation ``(max-min)/max >= 0.5``, its
value ``max >= 90`` and its hue lies within 22 degrees of a palette hue. Objects are the
4-connected components of one colour with at least ``MIN_AREA_FRACTION * d_small**2`` pixels.
Shape comes from the fill ratio of the bounding box (square ~1, circle ~0.78, triangle ~0.5),
size from the bounding-box side, position from the bounding-box centre.

Scores: each sample gets a dict of attribute -> bool and ``overall`` (all attributes hold).
A task's score is the mean over samples, in [0, 1], higher is better.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from scipy import ndimage

from cgmbench.worlds import shapes as W

JUDGE_VERSION = "shapes-judge/2"  # 2: the five edit types of shapes-edit (judge_edit)
MIN_AREA_FRACTION = 0.2
HUE_TOLERANCE = 22.0
POSITION_TOLERANCE = 0.12  # of the canvas side


def _hue_deg(rgb: np.ndarray) -> np.ndarray:
    """Hue in degrees of float RGB ``[..., 3]`` (the HSV hexcone formula)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx, mn = rgb.max(-1), rgb.min(-1)
    c = np.where(mx - mn == 0, 1.0, mx - mn)
    h = np.where(mx == r, ((g - b) / c) % 6, np.where(mx == g, (b - r) / c + 2, (r - g) / c + 4))
    return h * 60.0


_PALETTE_HUES = _hue_deg(np.array([W.PALETTE[c] for c in W.COLORS], np.float64))


@dataclass(frozen=True)
class Detection:
    shape: str
    color: str
    size: str
    x: float
    y: float
    area: int


def color_classes(image: np.ndarray) -> np.ndarray:
    """Per-pixel colour class of a uint8 ``[3, H, W]`` image: 0 = none, k = colour index + 1."""
    rgb = image.transpose(1, 2, 0).astype(np.float64)
    mx, mn = rgb.max(-1), rgb.min(-1)
    sat = (mx - mn) / np.maximum(mx, 1.0)
    hue = _hue_deg(rgb)
    dist = np.abs((hue[..., None] - _PALETTE_HUES + 180.0) % 360.0 - 180.0)
    best = dist.argmin(-1)
    ok = (sat >= 0.5) & (mx >= 90) & (dist.min(-1) <= HUE_TOLERANCE)
    return np.where(ok, best + 1, 0)


def detect(image: np.ndarray) -> list[Detection]:
    """The objects in a uint8 ``[3, H, W]`` image, largest first."""
    if image.ndim != 3 or image.shape[0] != 3 or image.dtype != np.uint8:
        raise ValueError(f"judge expects uint8 [3, H, W] images, got {image.dtype} {tuple(image.shape)}")
    res = image.shape[1]
    d_small, d_large = W.diameter("small", res), W.diameter("large", res)
    min_area = max(4, int(MIN_AREA_FRACTION * d_small * d_small))
    classes = color_classes(image)
    found = []
    for k, color in enumerate(W.COLORS, start=1):
        labels, n = ndimage.label(classes == k)
        if n == 0:
            continue
        for sl_index, sl in enumerate(ndimage.find_objects(labels), start=1):
            comp = labels[sl] == sl_index
            area = int(comp.sum())
            if area < min_area:
                continue
            h, w = comp.shape
            fill = area / float(h * w)
            shape = "square" if fill > 0.9 else ("circle" if fill > 0.66 else "triangle")
            size = "large" if max(h, w) > (d_small + d_large) / 2 else "small"
            x = (sl[1].start + sl[1].stop) / 2.0
            y = (sl[0].start + sl[0].stop) / 2.0
            found.append(Detection(shape, color, size, x, y, area))
    found.sort(key=lambda d: -d.area)
    return found


def _matches(d: Detection, o: dict, res: int, check_size: bool = True, position: bool = True) -> bool:
    if d.color != o["color"] or d.shape != o["shape"]:
        return False
    if check_size and d.size != o["size"]:
        return False
    if position:
        tol = POSITION_TOLERANCE * res
        return abs(d.x - o["x"]) <= tol and abs(d.y - o["y"]) <= tol
    return True


def match_scene(dets: list[Detection], expected: list[dict], res: int) -> dict:
    """Object-level agreement of detections with an expected object list (positions included)."""
    unused = list(dets)
    found = 0
    for o in expected:
        for d in unused:
            if _matches(d, o, res):
                unused.remove(d)
                found += 1
                break
    return {"objects": found == len(expected), "no_extra": not unused}


# ----------------------------------------------------------------------------- per task kind


def judge_class(image: np.ndarray, label: int) -> dict:
    shape, color = W.class_attributes(label)
    dets = detect(image)
    top = dets[0] if dets else None
    res = {"shape": bool(top and top.shape == shape), "color": bool(top and top.color == color),
           "single_object": len(dets) == 1}
    res["overall"] = res["shape"] and res["color"]
    return res


def judge_prompt(image: np.ndarray, spec: dict) -> dict:
    """GenEval-style checks of a text-to-image ``spec`` (see :func:`shapes.random_prompt_spec`)."""
    res_px = image.shape[-1]
    dets = detect(image)
    want = spec["objects"]
    out = {
        "color": all(any(d.color == o["color"] for d in dets) for o in want),
        "shape": all(any(d.shape == o["shape"] for d in dets) for o in want),
    }
    bound = [[d for d in dets if d.color == o["color"] and d.shape == o["shape"]] for o in want]
    out["binding"] = all(bound)
    if spec["type"] == "single":
        out["size"] = bool(bound[0]) and bound[0][0].size == want[0]["size"]
        out["count"] = len(dets) == 1
    elif spec["type"] == "count":
        out["count"] = len(bound[0]) == spec["count"] and len(dets) == spec["count"]
    elif spec["type"] == "relation":
        out["count"] = len(dets) == 2
        out["position"] = bool(bound[0] and bound[1]) and W.relation_holds(
            spec["relation"], bound[0][0], bound[1][0], res_px)
    out["overall"] = all(out.values())
    return out


def judge_scene(image: np.ndarray, expected: list[dict], style: str | None = None) -> dict:
    """Translation / editing: the output must show exactly the expected objects in place."""
    res = image.shape[-1]
    out = match_scene(detect(image), expected, res)
    if style == "textured":
        bg = image[:, color_classes(image) == 0].astype(np.float64)
        out["style"] = bool(bg.size) and float(bg.mean(0).std()) >= 4.0
    out["overall"] = all(out.values())
    return out


def judge_label_map(image: np.ndarray, label_map: np.ndarray, expected: list[dict]) -> dict:
    """Paired translation (label map -> scene): object agreement plus the FCN-score analogue."""
    out = judge_scene(image, expected)
    truth = W.label_map_classes(label_map)
    pred = color_classes(image)
    out["pixel_accuracy"] = float((pred == truth).mean())
    return out


def judge_edit(image: np.ndarray, spec: dict) -> dict:
    """Editing (:func:`shapes.random_edit`): ``unchanged`` (every object the edit does not touch is found in
    place), ``edit`` (the edit is made, per type below), ``no_extra`` (no other object); ``overall`` = all three.

    ``edit``: recolor / swap: the object with its new colour / shape in place (position tolerance as everywhere)
    and no object of the old colour and shape; add: a new object of the asked colour, shape and size standing in
    the asked relation to the anchor's place (margin 0.1 of the canvas; the world draws 0.2); remove: no object of
    that colour and shape; move: the object (colour, shape, size) displaced along the direction by at least half
    the world's shift and across it by at most the position tolerance. Each detection serves one expectation.
    """
    res = image.shape[-1]
    unused = detect(image)
    target = spec["target_objects"]
    edited = spec.get("target_index")

    def take(pred) -> bool:
        for d in unused:
            if pred(d):
                unused.remove(d)
                return True
        return False

    unchanged = all([take(lambda d, o=o: _matches(d, o, res)) for i, o in enumerate(target) if i != edited])
    op = spec["type"]
    if op in ("recolor", "swap"):
        old = (spec["from"], spec["shape"]) if op == "recolor" else (spec["color"], spec["from_shape"])
        edit = take(lambda d: _matches(d, target[edited], res)) and not any(
            (d.color, d.shape) == old for d in unused)
    elif op == "add":
        o, anchor = target[edited], SimpleNamespace(**target[spec["anchor"]])
        edit = take(lambda d: _matches(d, o, res, position=False)
                    and W.relation_holds(spec["relation"], d, anchor, res))
    elif op == "remove":
        edit = not any(d.color == spec["color"] and d.shape == spec["shape"] for d in unused)
    elif op == "move":
        ux, uy = W.DIRECTION_VECTORS[spec["direction"]]
        (fx, fy), shift = spec["from"], W.MOVE_FRACTION * res

        def moved(d) -> bool:
            dx, dy = d.x - fx, d.y - fy
            return (_matches(d, target[edited], res, position=False) and dx * ux + dy * uy >= 0.5 * shift
                    and abs(dx * uy - dy * ux) <= POSITION_TOLERANCE * res)

        edit = take(moved)
    else:
        raise ValueError(f"unknown edit type {op!r}")
    out = {"unchanged": bool(unchanged), "edit": bool(edit), "no_extra": not unused}
    out["overall"] = all(out.values())
    return out


def judge_video(video: np.ndarray, spec: dict) -> dict:
    """Text-to-video: every object in every frame, moving in the captioned direction."""
    if video.ndim != 4:
        raise ValueError(f"judge_video expects uint8 [T, 3, H, W], got {tuple(video.shape)}")
    res = video.shape[-1]
    per_frame = [detect(f) for f in video]
    want = spec["objects"]
    tracks = [[next((d for d in dets if d.color == o["color"] and d.shape == o["shape"]), None) for dets in per_frame]
              for o in want]
    out = {"object": all(all(t is not None for t in tr) for tr in tracks),
           "count": all(len(dets) == len(want) for dets in per_frame)}
    motion = True
    for o, tr in zip(want, tracks):
        seen = [d for d in tr if d is not None]
        if len(seen) < 2:
            motion = False
            continue
        dx, dy = seen[-1].x - seen[0].x, seen[-1].y - seen[0].y
        ux, uy = W.DIRECTION_VECTORS[o["direction"]]
        along, across = dx * ux + dy * uy, abs(dx * uy - dy * ux)
        motion &= along >= 0.2 * res and across <= 0.1 * res
    out["motion"] = bool(motion)
    out["overall"] = all(out.values())
    return out


def aggregate(per_sample: list[dict], seed: int = 0, n_boot: int = 1000) -> dict:
    """Mean of every attribute over samples; ``overall`` with a percentile-bootstrap 95% interval."""
    if not per_sample:
        raise ValueError("no samples to judge")
    names = sorted({k for r in per_sample for k in r if k != "overall"})
    overall = np.array([float(r["overall"]) for r in per_sample])
    rng = np.random.default_rng(seed)
    boots = overall[rng.integers(0, len(overall), (n_boot, len(overall)))].mean(1)
    attrs = {}
    for name in names:
        vals = [float(r[name]) for r in per_sample if name in r]
        attrs[name] = {"value": float(np.mean(vals)), "n": len(vals)}
    return {
        "overall": {"value": float(overall.mean()), "ci95": [float(np.quantile(boots, 0.025)),
                                                            float(np.quantile(boots, 0.975))],
                    "n": int(len(overall)), "ci_method": f"percentile bootstrap over samples, {n_boot} resamples"},
        "attributes": attrs,
        "version": JUDGE_VERSION,
    }
