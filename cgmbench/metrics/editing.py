"""Catalog entries of the editing metrics: background preservation, edit success, CLIP direction (issue 15).

Each ``*_entry(inputs)`` is the ``compute`` function of one ``group = "samples"`` metric of
:mod:`cgmbench.catalog`: it reads the run's samples (already at the task's evaluation resolution), the source
images and edit masks of the task's conditions (``Conditions.images`` / ``.masks``, 255 = region to change), and
returns the record entry ``{"value", "ci95", "n", ...}``.

Background preservation (:mod:`cgmbench.metrics.masked`), two protocols, two families of names, never mixed:

=====================  ===============================  ====================================================
protocol               names                            definition
=====================  ===============================  ====================================================
``masked_mean``        ``psnr_bg``, ``mse_bg``,          the per-pixel quantity averaged over the background
                       ``ssim_bg``, ``lpips_bg``         pixels only (cgmbench's definition)
``pie_compat``         ``psnr_bg_pie_compat``, ...       PIE-Bench: both images times ``1 - mask``, metric over
                                                        the whole frame (diluted by the mask area)
=====================  ===============================  ====================================================

Per image; the value is the mean over images (as PIE-Bench averages its per-image columns), ``ci95`` a
percentile bootstrap over images. PSNR of an identical background is ``inf``; it is capped at
:data:`PSNR_CAP_DB` before averaging (the cap is recorded). The masks are the task's condition masks at the
task's resolution; images with a *full* mask (no background) have no background metric: they are left out and
counted (``left_out_full_mask``); when every image is such, the metric is a :class:`CgmbenchError` (the harness
lists it in ``metrics_pending``). Never NaN, never the string ``"nan"``.

``lpips_bg``: the LPIPS v0.1 AlexNet distance *map* (each tap's 1x1-conv output upsampled bilinearly to the
image size and summed, as ``lpips.LPIPS(spatial=True)``), averaged over the background; the network and its
weights are those of :mod:`cgmbench.extractors.lpips` (missing weights: pending with the fetch command).
PIE-Bench's published LPIPS uses the SqueezeNet variant; ``lpips_bg_pie_compat`` here is the AlexNet one, so it
is comparable with PIE-Bench's *protocol* but not its numbers (recorded as ``net``).

``edit_success``: the shapes world's exact judge of each edit (the edited object has the target attributes,
every other object is unchanged, nothing extra), per edit and by edit type.

``clip_direction_shapes_clip``: ``cos(I1 - I0, T1 - T0)`` (:mod:`cgmbench.metrics.clip_direction`) with the
shipped ``shapes-clip`` extractor (its ``clean`` protocol), captions from the source's ``edit_captions`` (the scene's
objects before and after). A ``move`` keeps the object list, so its text direction is zero and the similarity
undefined: such edits are left out and counted (``left_out_same_captions``); a task of moves only has no value.

Sources give per-item edit types with ``edit_types(indices)`` (used for the ``by_category["edit_type"]`` tables
of ``cgmbench leaderboard --by edit_type``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cgmbench.errors import CgmbenchError
from cgmbench.metrics.bootstrap import bootstrap_ci
from cgmbench.metrics.masked import background_score

#: per-image PSNR cap (dB) before averaging (the harness's ``psnr`` uses the same cap)
PSNR_CAP_DB = 100.0
N_BOOT = 1000
EDIT_KINDS = frozenset({"editing", "inpainting"})
#: the fixed chunk size of the passes (results do not depend on the run's batch size)
CHUNK = 64


def _ci(values: np.ndarray, seed: int) -> list[float] | None:
    if len(values) < 2:
        return None
    ci = bootstrap_ci(values, n_boot=N_BOOT, seed=seed)
    return [float(ci.low), float(ci.high)]


def _edit_types(source, indices) -> list[str] | None:
    fn = getattr(source, "edit_types", None)
    return list(fn(indices)) if fn is not None else None


def _entry(values: np.ndarray, types: list[str] | None, seed: int, **extra) -> dict:
    values = np.asarray(values, np.float64)
    if values.size == 0 or not np.isfinite(values).all():
        raise CgmbenchError("internal: an editing metric produced no or non-finite per-image values")
    entry = {"value": float(values.mean()), "ci95": _ci(values, seed), "n": int(values.size)}
    if types is not None:
        table = {}
        for t in dict.fromkeys(types):
            v = values[np.asarray([x == t for x in types])]
            table[t] = {"value": float(v.mean()), "ci95": _ci(v, seed), "n": int(v.size)}
        entry["by_category"] = {"edit_type": table}
    entry.update(extra)
    return entry


def _batches(inputs):
    """``(indices, samples uint8 [B,3,H,W], conditions)`` in fixed chunks of :data:`CHUNK`."""
    buf, start0 = [], 0
    for start, arr in inputs.store.iter_batches(inputs.n):
        if not buf:
            start0 = start
        buf.append(np.asarray(arr))
        while sum(len(b) for b in buf) >= CHUNK:
            cat = np.concatenate(buf)
            head, rest = cat[:CHUNK], cat[CHUNK:]
            idx = list(range(start0, start0 + CHUNK))
            yield idx, head, inputs.source.conditions(idx)
            start0 += CHUNK
            buf = [rest] if len(rest) else []
    if buf:
        cat = np.concatenate(buf)
        idx = list(range(start0, start0 + len(cat)))
        yield idx, cat, inputs.source.conditions(idx)


def _source_and_mask(cond, samples: np.ndarray, task) -> tuple[torch.Tensor, torch.Tensor]:
    if samples.ndim != 4:
        raise CgmbenchError(f"background metrics score images [N, 3, H, W], got samples of shape {samples.shape}")
    if cond.images is None:
        raise CgmbenchError(f"task {task.name!r} gives no source images; background preservation needs them")
    if cond.masks is None:
        raise CgmbenchError(f"task {task.name!r} gives no edit masks; background preservation needs the edited "
                            "region", "mask-free instruction edits are scored by edit_success / clip_direction")
    src = torch.as_tensor(cond.images)
    masks = torch.as_tensor(cond.masks)
    if tuple(src.shape) != tuple(samples.shape):
        raise CgmbenchError(f"source images {tuple(src.shape[1:])} and samples {tuple(samples.shape[1:])} differ "
                            f"in shape", f"task {task.name!r} scores at its resolution {task.resolution}")
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.ndim != 3 or tuple(masks.shape[1:]) != tuple(src.shape[2:]):
        raise CgmbenchError(f"edit masks have shape {tuple(masks.shape)}; the images are {tuple(src.shape[2:])}",
                            "one mask [1, H, W] per image at the task's resolution, 255 = region to change")
    return src, masks > 0


def background_entry(metric: str, protocol: str, inputs) -> dict:
    """The entry of ``<metric>_bg`` (``masked_mean``) or ``<metric>_bg_pie_compat`` (see the module docstring)."""
    lpips_fn, lpips_info = (None, None)
    if metric == "lpips":
        lpips_fn, lpips_info = _lpips_map_fn(protocol)
    values, types_all, fractions, left_out = [], [], [], 0
    for idx, samples, cond in _batches(inputs):
        src, edit = _source_and_mask(cond, samples, inputs.task)
        types = _edit_types(inputs.source, idx)
        keep = (~edit).flatten(1).any(dim=1)
        left_out += int((~keep).sum())
        if not keep.any():
            continue
        score = background_score(metric, src[keep], torch.as_tensor(samples)[keep], edit[keep], protocol=protocol,
                                 lpips=lpips_fn)
        v = score.values
        if metric == "psnr":
            v = np.minimum(v, PSNR_CAP_DB)
        values.append(v)
        fractions.append(score.background_fraction)
        if types is not None:
            types_all += [t for t, k in zip(types, keep.tolist()) if k]
    if not values:
        raise CgmbenchError(f"all {inputs.n} edit masks cover the whole image: background preservation is "
                            "undefined for every sample (no background pixel)")
    v = np.concatenate(values)
    how = ("mean over the background pixels of each image (masked mean)" if protocol == "masked_mean" else
           "PIE-Bench pie_compat: both images times (1 - mask), metric over the whole frame (diluted by the mask "
           "area)")
    extra = {"protocol": protocol, "mean_background_fraction": float(np.concatenate(fractions).mean()),
             "left_out_full_mask": left_out, "extractor": None, "weights_sha256": None,
             "reference_stats_sha256": None,
             "method": f"{metric} of the sample against its source image outside the edit mask: {how}; per image, "
                       f"mean over images" + (f"; per-image PSNR capped at {PSNR_CAP_DB:g} dB" if metric == "psnr"
                                              else "") + "; ci95: bootstrap over images"}
    if left_out:
        extra["note"] = (f"{left_out} sample(s) left out: their edit mask covers the whole image, so background "
                         "preservation is undefined there")
    if lpips_info is not None:
        extra.update(extractor="lpips-alex", weights_sha256=lpips_info["weights_sha256"], net="alex",
                     version=lpips_info["version"])
    return _entry(v, types_all or None, inputs.seed, **extra)


def lpips_map(net, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS distance map ``[N, 1, H, W]`` of ``[-1, 1]`` images with the v0.1 network ``net``
    (:class:`cgmbench.extractors.lpips.LPIPS`): each tap's 1x1-conv output upsampled (bilinear,
    ``align_corners=False``) to the input size and summed, as ``lpips.LPIPS(spatial=True)``. Its spatial mean
    is *not* ``net(x, y)`` (that averages each tap at its own resolution)."""
    from cgmbench.extractors.lpips import normalize_tensor

    device = next(net.parameters()).device
    x, y = x.to(device).float(), y.to(device).float()
    f0, f1 = net.net(net.scaling_layer(x)), net.net(net.scaling_layer(y))
    total = 0.0
    for lin, a, b in zip(net.lins, f0, f1):
        d = lin((normalize_tensor(a) - normalize_tensor(b)) ** 2)
        total = total + F.interpolate(d, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return total.cpu()


def _lpips_map_fn(protocol: str):
    from cgmbench.extractors.lpips import load_lpips

    net, info = load_lpips("cpu")

    def fn(x, y):
        with torch.no_grad():
            return lpips_map(net, x, y) if protocol == "masked_mean" else net(x.float(), y.float()).cpu()

    return fn, info


def edit_success_entry(inputs) -> dict:
    """The exact judge of each edit (shapes world): ``overall`` of :func:`cgmbench.worlds.judge.judge_edit`."""
    source = inputs.source
    if not getattr(source, "has_judge", False):
        raise CgmbenchError(f"edit_success needs an exact judge; the {inputs.task.name!r} source has none",
                            "it is defined on the shapes world (shapes-edit)")
    values, types_all = [], []
    for idx, samples, _ in _batches(inputs):
        values += [float(r["overall"]) for r in source.judge(samples, idx)]
        types = _edit_types(source, idx)
        if types is not None:
            types_all += types
    return _entry(np.asarray(values), types_all or None, inputs.seed, protocol="shapes-judge", extractor=None,
                  weights_sha256=None, reference_stats_sha256=None,
                  method="exact shapes-world judge per edit: the edited object has the target attributes, every "
                         "other object unchanged, nothing extra; ci95: bootstrap over edits")


def clip_direction_entry(inputs) -> dict:
    """``cos(I1 - I0, T1 - T0)`` with the shipped ``shapes-clip`` (see the module docstring)."""
    from cgmbench.extractors.shapes import ShapesCLIPExtractor
    from cgmbench.metrics.clip_direction import clip_direction_similarity

    source = inputs.source
    captions = getattr(source, "edit_captions", None)
    if captions is None:
        raise CgmbenchError(f"clip_direction needs source and target captions; the {inputs.task.name!r} source "
                            "gives none")
    clip = ShapesCLIPExtractor(protocol="clean")

    def encode_image(x):  # [0, 1] floats -> the extractor's uint8 input
        return clip((x * 255).round().clamp(0, 255).to(torch.uint8))

    values, types_all, left_out = [], [], 0
    for idx, samples, cond in _batches(inputs):
        if cond.images is None:
            raise CgmbenchError(f"task {inputs.task.name!r} gives no source images")
        t0, t1 = captions(idx)
        keep = [a != b for a, b in zip(t0, t1)]  # a move keeps the object list: no text direction
        left_out += keep.count(False)
        if not any(keep):
            continue
        k = torch.as_tensor(keep)
        score = clip_direction_similarity(torch.as_tensor(cond.images)[k], torch.as_tensor(samples)[k],
                                          [a for a, ok in zip(t0, keep) if ok], [b for b, ok in zip(t1, keep) if ok],
                                          encode_image=encode_image, encode_text=clip.encode_text,
                                          backbone="shapes-clip")
        values.append(score.values)
        types = _edit_types(source, idx)
        if types is not None:
            types_all += [t for t, ok in zip(types, keep) if ok]
    if not values:
        raise CgmbenchError(f"clip_direction is undefined on every edit of {inputs.task.name!r}: the source and "
                            "target captions are the same (the edits keep the object list)",
                            "score these edits with edit_success and the background metrics")
    return _entry(np.concatenate(values), types_all or None, inputs.seed, protocol="clean", extractor="shapes-clip",
                  weights_sha256=clip.weights_sha256, reference_stats_sha256=None, backbone="shapes-clip",
                  left_out_same_captions=left_out,
                  method="CLIP directional similarity cos(I1 - I0, T1 - T0) of L2-normalised shapes-clip "
                         "embeddings (InstructPix2Pix's sim_direction); 0 when the image did not change; edits "
                         "whose source and target captions are equal (moves) are left out and counted; "
                         "ci95: bootstrap over edits")


def _make(metric: str, protocol: str):
    def compute(inputs):
        return background_entry(metric, protocol, inputs)

    compute.__name__ = f"{metric}_bg_{protocol}_entry"
    return compute


BACKGROUND_METRICS = {  # name -> (metric, protocol, direction)
    **{f"{m}_bg": (m, "masked_mean", d) for m, d in (("psnr", "max"), ("mse", "min"), ("ssim", "max"),
                                                        ("lpips", "min"))},
    **{f"{m}_bg_pie_compat": (m, "pie_compat", d) for m, d in (("psnr", "max"), ("mse", "min"), ("ssim", "max"),
                                                                 ("lpips", "min"))},
}


#: catalog name -> compute function (:mod:`cgmbench.catalog` registers them lazily)
COMPUTE = {**{name: _make(metric, protocol) for name, (metric, protocol, _) in BACKGROUND_METRICS.items()},
           "edit_success": edit_success_entry, "clip_direction_shapes_clip": clip_direction_entry}

__all__ = ["background_entry", "edit_success_entry", "clip_direction_entry", "lpips_map", "COMPUTE",
           "BACKGROUND_METRICS", "PSNR_CAP_DB"]
