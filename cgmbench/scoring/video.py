"""The harness's ``video`` pass: FVD under a named protocol and the temporal metrics, with intervals.

Called by :func:`cgmbench.scoring.harness.compute_metrics` for the catalog's ``video`` group. Samples are the
store's lossless uint8 ``[N, T, 3, H, W]`` videos (after the run's resize protocol).

=========================  ==========================================================================================
metric                     value and uncertainty
=========================  ==========================================================================================
fvd                        Fréchet distance (:func:`cgmbench.metrics.frechet.frechet_distance`) of clip features under
                           the task's FVD protocol (``[metrics] fvd_protocol``; default ``shapes_fvd_<T>f`` for tasks
                           scored with a ``shapes-*`` extractor, ``styleganv_fvd2048_16f`` otherwise); the entry holds
                           the whole protocol, the real clip plan (videos, offsets, discarded short videos) and any
                           deviation from the protocol's clip counts (``comparable: false`` then). ``ci95``: bootstrap
                           over generated clips, real statistics fixed, re-centred on the estimate (as FID).
clip_frame_consistency     mean cosine of consecutive frame embeddings (the task's CLIP extractor: ``shapes-clip`` on
                           the shapes world); bootstrap over videos
first_frame_consistency    mean cosine of each later frame with frame 0; same embeddings; bootstrap over videos
temporal_flickering        VBench's ``(255 - mean |frame_i - frame_i+1|)/255`` (1 = static); bootstrap over videos
dynamic_degree             VBench's rule on frame-difference magnitudes (no RAFT: not VBench's number), threshold
                           ``6 * min(H, W) / 256``; fraction of moving videos, bootstrap over videos
motion_accuracy            the shapes judge's per-video motion verdict (every object tracked, moving the captioned
                           way); bootstrap over videos
=========================  ==========================================================================================

A metric that cannot be computed (no video samples, weights missing, no judge) goes to ``metrics_pending`` with
its reason.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterator

import numpy as np
import torch

from cgmbench.errors import CgmbenchError, IntegrityError
from cgmbench.metrics.fvd import (
    PROTOCOLS,
    FVDProtocol,
    fake_clip_indices,
    fvd_statistics,
    get_fvd_protocol,
    plan_clips,
)

__all__ = ["VIDEO_METRICS", "VIDEO_EXTRACTOR_WEIGHTS", "shapes_fvd_protocol", "task_fvd_protocol",
           "fvd_protocol_name", "fvd_extractor_name", "load_video_extractor", "fvd_entry",
           "video_entries", "real_video_lengths", "real_video"]

VIDEO_METRICS = ("fvd", "clip_frame_consistency", "first_frame_consistency", "temporal_flickering",
                 "dynamic_degree", "motion_accuracy")
N_BOOT = 100
DYNAMIC_THRESHOLD = 6.0


def shapes_fvd_protocol(frames: int, num_real: int, num_fake: int) -> FVDProtocol:
    """The shapes world's FVD: whole ``frames``-frame clips, ``shapes-cnn-video`` stand-in features."""
    return FVDProtocol(
        name=f"shapes_fvd_{frames}f", extractor="shapes-cnn-video",
        feature="[mean_t f_t, (f_last - f_first)/(F-1)] of shapes-cnn 256-d frame features (512-d)",
        feature_dim=512, num_real=num_real, num_fake=num_fake, num_frames=frames, frame_stride=1, resolution=None,
        extractor_input_size=64, resize="shapes-cnn's own protocol (clean) per frame",
        input_scaling="shapes-cnn's", real_split="the task's reference source (test split)",
        real_selection="first_n", real_clip_start="first", fake_clip_start="first", discard_short_videos=True,
        min_video_frames=frames, fake_shortfall="error", covariance_ddof=1,
        matrix_sqrt="symmetric eigenvalues (cgmbench.metrics.frechet)", seed=0,
        source="cgmbench stand-in (issue 16): not comparable with any I3D FVD",
        notes=("features from the shipped shapes-cnn, trained by cgmbench; no video network is trained",))


def _reference_size(task) -> int:
    from cgmbench.sources.base import open_source

    return len(open_source(task, "reference"))


def task_fvd_protocol(task, n: int) -> tuple[FVDProtocol, dict]:
    """``(protocol, deviations)`` for ``n`` generated videos: the named protocol, its fake count lowered to ``n``
    (recorded as a deviation) when the run has fewer samples."""
    name = fvd_protocol_name(task)
    protocol = get_fvd_protocol(name) if name in PROTOCOLS else None
    if protocol is None and name.startswith("shapes_fvd_"):
        if int(task.frames or 0) < 2:
            raise CgmbenchError(f"FVD needs videos; task {task.name} has no frame count")
        protocol = shapes_fvd_protocol(int(task.frames), _reference_size(task), n)
    if protocol is None:
        raise CgmbenchError(f"unknown FVD protocol {name!r}", f"known: {', '.join(sorted(PROTOCOLS))}, shapes_fvd_<T>f")
    deviations = {}
    if n < protocol.num_fake:
        deviations["num_fake"] = {"protocol": protocol.num_fake, "used": n}
        protocol = protocol.replace(num_fake=n)
    return protocol, deviations


#: the weights-registry file of each downloadable video feature network (the shipped ``shapes-cnn-video`` needs none)
VIDEO_EXTRACTOR_WEIGHTS = {"i3d_tfhub_ts": "i3d-styleganv", "i3d_pt400": "i3d-pt400",
                           "videomae_v2_g_ssv2": "videomae-v2-g-ssv2"}


def fvd_protocol_name(task) -> str:
    """The name of the task's FVD protocol: ``[metrics] fvd_protocol``, else ``shapes_fvd_<T>f`` for tasks scored with
    a ``shapes-*`` extractor and ``styleganv_fvd2048_16f`` otherwise."""
    name = task.metrics.get("fvd_protocol")
    if name is not None:
        return str(name)
    if task.metric_settings.extractor.startswith("shapes-"):
        return f"shapes_fvd_{int(task.frames or 0)}f"
    return "styleganv_fvd2048_16f"


def fvd_extractor_name(task) -> str:
    """The clip feature network of the task's FVD protocol, without reading any data: what the preflight checks
    before a run (an unknown protocol name fails when the run scores, naming the protocols)."""
    name = fvd_protocol_name(task)
    return PROTOCOLS[name].extractor if name in PROTOCOLS else "shapes-cnn-video"


def load_video_extractor(name: str, device: str = "cpu"):
    """The clip feature network a protocol names, as ``clips uint8 [n, F, 3, H, W] -> [n, d]`` with ``describe()``."""
    from cgmbench import weights

    if name == "shapes-cnn-video":
        from cgmbench.extractors.shapes_video import ShapesVideoExtractor

        return ShapesVideoExtractor(device=device)
    if name == "i3d_tfhub_ts":
        from cgmbench.extractors.i3d import load_styleganv_detector

        path, _ = weights.resolve(VIDEO_EXTRACTOR_WEIGHTS[name])
        return load_styleganv_detector(path).to(device)
    if name == "i3d_pt400":
        from cgmbench.extractors.i3d import I3DPt400

        path, _ = weights.resolve(VIDEO_EXTRACTOR_WEIGHTS[name])
        return I3DPt400(path).to(device)
    if name == "videomae_v2_g_ssv2":
        from cgmbench.extractors.videomae import VideoMAEv2Extractor

        path, _ = weights.resolve(VIDEO_EXTRACTOR_WEIGHTS[name])
        return VideoMAEv2Extractor(path).to(device)
    raise CgmbenchError(f"the {name} video extractor is not available in this version",
                        "use the styleganv_fvd2048_16f, tats_fvd2048 or cdfvd_videomae protocol")


# ------------------------------------------------------------------------------------------- real videos


def real_video_lengths(source) -> list[int]:
    """Frame count of every real video of a reference source (``video_lengths()``, else ``task.frames`` each)."""
    if hasattr(source, "video_lengths"):
        return [int(x) for x in source.video_lengths()]
    return [int(source.task.frames)] * len(source)


def real_video(source, i: int) -> torch.Tensor:
    """Real video ``i`` as uint8 ``[T, 3, H, W]``."""
    if hasattr(source, "video"):
        return source.video(i)
    return torch.from_numpy(np.ascontiguousarray(source.references([i])[0]))


def _features(extractor, clips: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        out = extractor(clips)
    out = out.detach().cpu().double().numpy()
    if not np.isfinite(out).all():
        raise CgmbenchError("video features contain NaN or infinite values", "the extractor weights may be corrupt")
    return out


def _videos(store, n: int) -> Iterator[tuple[int, torch.Tensor]]:
    for start, arr in store.iter_batches(n):
        if arr.ndim != 5:
            raise CgmbenchError(f"video metrics need video samples [N, T, 3, H, W]; the store holds {arr.shape[1:]}")
        yield start, torch.from_numpy(np.ascontiguousarray(arr))


def fvd_entry(task, store, n: int, seed: int = 0, device: str = "cpu", batch_size: int = 16,
              return_features: bool = False) -> dict:
    """The ``fvd`` record entry (see the module docstring); ``return_features`` adds the feature rows (tests)."""
    from cgmbench.metrics.frechet import frechet_distance
    from cgmbench.sources.base import open_source

    protocol, deviations = task_fvd_protocol(task, n)
    extractor = load_video_extractor(protocol.extractor, device)
    ref = open_source(task, "reference")
    lengths = real_video_lengths(ref)
    plan = plan_clips(lengths, protocol, allow_fewer=True)
    if protocol.num_real is not None and len(plan.videos) < protocol.num_real:
        deviations["num_real"] = {"protocol": protocol.num_real, "used": len(plan.videos)}
    real_rows = []
    frames = plan.frames
    for lo in range(0, len(plan.videos), batch_size):
        rows = range(lo, min(lo + batch_size, len(plan.videos)))
        clips = torch.stack([real_video(ref, plan.videos[r])[frames[r]] for r in rows])
        _check_side(clips, protocol, "real")
        real_rows.append(_features(extractor, clips))
    real = np.concatenate(real_rows)

    wanted = fake_clip_indices(n, protocol)
    fake_frames = [k * protocol.frame_stride for k in range(protocol.num_frames)]
    fake_rows = []
    for start, vids in _videos(store, n):
        if vids.shape[1] < protocol.clip_span:
            raise CgmbenchError(f"generated videos have {vids.shape[1]} frames; protocol {protocol.name} needs "
                                f"clips of {protocol.clip_span}", "sample videos with the task's frame count")
        keep = [i - start for i in wanted if start <= i < start + len(vids)]
        if keep:
            clips = vids[keep][:, fake_frames]
            _check_side(clips, protocol, "generated")
            fake_rows.append(_features(extractor, clips))
    fake = np.concatenate(fake_rows)

    with warnings.catch_warnings(record=True) as caught:  # N < d: recorded with the number, not printed
        warnings.simplefilter("always")
        mu_r, sigma_r = fvd_statistics(real, protocol.covariance_ddof)
        mu_f, sigma_f = fvd_statistics(fake, protocol.covariance_ddof)
        value = frechet_distance(mu_r, sigma_r, mu_f, sigma_f)
    notes = sorted({str(w.message) for w in caught})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rng = np.random.default_rng(seed)
        boots = []
        for _ in range(N_BOOT):
            idx = rng.integers(0, len(fake), len(fake))
            m, s = fvd_statistics(fake[idx], protocol.covariance_ddof)
            boots.append(frechet_distance(mu_r, sigma_r, m, s))
    boots = np.asarray(boots)
    shift = float(boots.mean()) - value
    low, high = np.percentile(boots - shift, [2.5, 97.5])
    describe = getattr(extractor, "describe", None)
    info = describe() if callable(describe) else {}
    entry = {
        "value": float(value), "ci95": [min(float(low), value), max(float(high), value)], "n": int(len(fake)),
        "n_reference": int(len(real)), "protocol": protocol.name, "protocol_details": protocol.to_dict(),
        "comparable": not deviations, "deviations": deviations,
        "extractor": protocol.extractor, "weights_sha256": info.get("weights_sha256"),
        "official_weights": bool(info.get("official_weights", info.get("is_official_weights", False))),
        "extractor_details": info,
        "real_clips": {k: v for k, v in plan.to_dict().items() if k in ("num_clips", "num_discarded", "num_eligible",
                                                                          "discarded")},
        "real_clip_starts_sha256": _digest(plan.starts),
        "bootstrap": {"n_boot": N_BOOT, "bias": shift, "unit": "generated clips", "reference": "moments fixed"},
        "method": "Fréchet distance of clip features (float64, symmetric eigenvalue square root)",
    }
    if plan.discarded:
        notes.append(f"{len(plan.discarded)} real video(s) shorter than {protocol.min_video_frames} frames "
                     "discarded (as StyleGAN-V)")
    if notes:
        entry["warnings"] = notes
    if return_features:
        entry["_features"] = (real, fake)
    return entry


def _digest(values) -> str:
    import hashlib

    return hashlib.sha256(",".join(str(int(v)) for v in values).encode()).hexdigest()


def _check_side(clips: torch.Tensor, protocol: FVDProtocol, side: str) -> None:
    if protocol.resolution is not None and tuple(clips.shape[-2:]) != (protocol.resolution, protocol.resolution):
        raise CgmbenchError(f"{side} clips are {tuple(clips.shape[-2:])} pixels; protocol {protocol.name!r} is "
                            f"defined at {protocol.resolution}x{protocol.resolution}",
                            "use a task at the protocol's resolution")


# ------------------------------------------------------------------------------------------- temporal metrics


def _mean_entry(values: np.ndarray, method: str, seed: int, **extra: Any) -> dict:
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    boots = values[rng.integers(0, len(values), (1000, len(values)))].mean(axis=1)
    ci = [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))]
    return {"value": float(values.mean()), "ci95": ci, "n": int(len(values)),
            "method": method + "; ci95: percentile bootstrap over videos, 1000 resamples", **extra}


def _frame_embedder_name(task) -> str:
    """The task's image-text extractor (as the harness's CLIP group chooses it)."""
    settings = task.metric_settings
    if settings.clip_extractor:
        return settings.clip_extractor
    main = settings.extractor if settings.extractor_given else ""
    if main == "shapes-clip" or main.startswith("clip-"):
        return main
    return "shapes-clip" if main.startswith("shapes-") else "clip-vit-l-14"


def temporal_entries(names: list[str], task, source, store, n: int, seed: int = 0, device: str = "cpu"
                     ) -> tuple[dict, dict]:
    from cgmbench.metrics import temporal

    metrics, pending = {}, {}
    need_embed = [m for m in names if m in ("clip_frame_consistency", "first_frame_consistency")]
    embed, provenance = None, {}
    if need_embed:
        from cgmbench.extractors import get_extractor

        name = _frame_embedder_name(task)
        try:
            options = {"protocol": task.metric_settings.protocol} if not name.startswith("clip-") else {}
            try:
                extractor = get_extractor(name, **options).to(device)
            except (ValueError, FileNotFoundError, OSError) as error:
                raise CgmbenchError(f"{type(error).__name__}: {error}") from None
            embed = lambda v: extractor(v).double()  # noqa: E731
            provenance = {"extractor": name, "weights_sha256": extractor.weights_sha256,
                          "official_weights": bool(extractor.is_official_weights)}
        except IntegrityError:
            raise
        except CgmbenchError as error:
            for m in need_embed:
                pending[m] = f"frame embeddings need the {name} extractor: {error}"
    judge_ok = "motion_accuracy" in names and getattr(source, "has_judge", False) and task.kind == "text-to-video"
    if "motion_accuracy" in names and not judge_ok:
        pending["motion_accuracy"] = "motion accuracy needs the shapes judge of a text-to-video shapes task"
    values: dict[str, list] = {m: [] for m in names}
    for start, vids in _videos(store, n):
        if embed is not None:
            for m, pairs in (("clip_frame_consistency", "consecutive"), ("first_frame_consistency", "first")):
                if m in names:
                    values[m].extend(temporal.frame_consistency_scores(vids, embed, pairs))
        if "temporal_flickering" in names:
            values["temporal_flickering"].extend(temporal.temporal_flickering(vids))
        if "dynamic_degree" in names:
            values["dynamic_degree"].extend(temporal.dynamic_degree(vids, threshold=DYNAMIC_THRESHOLD))
        if judge_ok:
            verdicts = source.judge(vids.numpy(), list(range(start, start + len(vids))))
            values["motion_accuracy"].extend(float(v["motion"]) for v in verdicts)
    methods = {
        "clip_frame_consistency": ("mean cosine of consecutive frame embeddings", provenance),
        "first_frame_consistency": ("mean cosine of each later frame's embedding with frame 0's", provenance),
        "temporal_flickering": ("VBench (255 - mean abs consecutive-frame difference)/255", {}),
        "dynamic_degree": (f"VBench dynamic-degree rule on frame-difference magnitudes (not RAFT flow), threshold "
                           f"{DYNAMIC_THRESHOLD}*min(H,W)/256", {"threshold": DYNAMIC_THRESHOLD}),
        "motion_accuracy": ("shapes judge: every object tracked in every frame and moving the captioned way",
                            {"judge": "shapes-judge"}),
    }
    for m in names:
        if m in pending or not values[m]:
            continue
        method, extra = methods[m]
        metrics[m] = _mean_entry(np.asarray(values[m]), method, seed, **extra)
    return metrics, pending


def video_entries(names: list[str], task, source, store, n: int, seed: int = 0, device: str = "cpu"
                  ) -> tuple[dict, dict]:
    """``(metrics, pending)`` of the ``video`` group metrics ``names``."""
    metrics, pending = {}, {}
    shape = store.sample_shape if hasattr(store, "sample_shape") else None
    if shape is not None and len(shape) != 4:
        return {}, {m: f"{m} needs video samples [T, 3, H, W]; this task's samples are images" for m in names}
    if "fvd" in names:
        try:
            metrics["fvd"] = fvd_entry(task, store, n, seed=seed, device=device)
        except IntegrityError:
            raise
        except CgmbenchError as error:
            pending["fvd"] = str(error)
    rest = [m for m in names if m != "fvd"]
    if rest:
        got, why = temporal_entries(rest, task, source, store, n, seed=seed, device=device)
        metrics.update(got)
        pending.update(why)
    return metrics, pending
