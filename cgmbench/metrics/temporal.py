"""Per-video temporal metrics on injected feature functions (no ``vbench`` dependency).

Every function takes uint8 videos ``[N, T, 3, H, W]`` (a tensor, or a list of ``[T_i, 3, H, W]``)
and returns a float64 NumPy array with **one value per video**, so that intervals can be
bootstrapped over videos (:func:`cgmbench.metrics.bootstrap_ci`). Networks are injected as
callables; the definitions follow the reference code named in each docstring.

================================= ============================================================
:func:`frame_consistency`         mean cosine similarity of frame embeddings over frame pairs
:func:`clip_frame_consistency`    consecutive pairs (EvalCrafter CLIP-Temp, Gen-1 "frame consistency")
:func:`first_frame_consistency`   each frame vs frame 0 (EvalCrafter face consistency)
:func:`vbench_consistency`        VBench subject/background consistency: ½[cos⁺(i, i−1) + cos⁺(i, 0)]
:func:`mean_abs_frame_difference` mean |frame_i − frame_{i+1}| in 0–255 units (0 = static)
:func:`temporal_flickering`       VBench: (255 − mean abs frame difference) / 255 (1 = static)
:func:`dynamic_degree`            VBench: 1 if enough frame pairs move more than a threshold, else 0
================================= ============================================================

Consistency values are cosines: 1.0 for a static video (identical frames), lower when frames differ.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from cgmbench.errors import CgmbenchError

__all__ = [
    "PAIRINGS",
    "CONSISTENCY_PRESETS",
    "frame_consistency",
    "frame_consistency_scores",
    "clip_frame_consistency",
    "first_frame_consistency",
    "vbench_consistency",
    "mean_abs_frame_difference",
    "temporal_flickering",
    "frame_difference_magnitude",
    "flow_magnitude",
    "dynamic_degree_pair_scores",
    "dynamic_degree",
]

PAIRINGS = ("consecutive", "first", "first+prev", "all")

# Published variants: (pairing, clip negative cosines at 0, the backbone the reference uses).
CONSISTENCY_PRESETS: dict[str, tuple[str, bool, str]] = {
    "evalcrafter_clip_temp": ("consecutive", False, "HF CLIP ViT-B/32 on unnormalised 0-255 frames (EvalCrafter)"),
    "evalcrafter_face_consistency": ("first", False, "HF CLIP ViT-B/32 (EvalCrafter)"),
    "vbench_subject_consistency": ("first+prev", True, "DINO ViT-B/16 (VBench)"),
    "vbench_background_consistency": ("first+prev", True, "CLIP ViT-B/32 (VBench)"),
    "tune_a_video_frame_consistency": ("all", False, "CLIP ViT-L/14 (paper; not checked against code)"),
}


def _video_list(videos) -> list[torch.Tensor]:
    items = list(videos) if not isinstance(videos, torch.Tensor) else list(videos.unbind(0))
    if isinstance(videos, torch.Tensor) and videos.ndim != 5:
        raise CgmbenchError(f"videos must have shape [N, T, 3, H, W], got {tuple(videos.shape)}")
    for i, v in enumerate(items):
        if not isinstance(v, torch.Tensor) or v.dtype != torch.uint8 or v.ndim != 4 or v.shape[1] != 3:
            what = f"{v.dtype} {tuple(v.shape)}" if isinstance(v, torch.Tensor) else type(v).__name__
            raise CgmbenchError(f"video {i} must be a uint8 tensor [T, 3, H, W], got {what}",
                                "pass uint8 videos [N, T, 3, H, W] (cgmbench's sample layout)")
        if v.shape[0] < 2:
            raise CgmbenchError(f"video {i} has {v.shape[0]} frame(s); temporal metrics need at least 2")
    if not items:
        raise CgmbenchError("no videos given")
    return items


# ---------------------------------------------------------------------------------------------
# Frame-embedding consistency
# ---------------------------------------------------------------------------------------------


def frame_consistency(features, pairs: str = "consecutive", clip_negative: bool = False) -> float:
    """Mean cosine similarity of one video's frame embeddings ``[T, d]`` over frame pairs.

    ``pairs``: ``"consecutive"`` (i, i+1); ``"first"`` (i, 0) for i >= 1; ``"first+prev"`` the VBench
    term ½[cos(i, i−1) + cos(i, 0)] for i >= 1; ``"all"`` every unordered pair i < j.
    ``clip_negative`` replaces negative cosines by 0 before averaging (VBench's ``max(0, ·)``).
    """
    f = torch.as_tensor(np.asarray(features, dtype=np.float64) if not isinstance(features, torch.Tensor)
                        else features.detach().cpu().to(torch.float64))
    if f.ndim != 2 or f.shape[0] < 2:
        raise CgmbenchError(f"frame features must be [T >= 2, d], got {tuple(f.shape)}")
    if pairs not in PAIRINGS:
        raise CgmbenchError(f"unknown frame pairing {pairs!r}", f"use one of {PAIRINGS}")
    norms = f.norm(dim=1, keepdim=True)
    if bool((norms == 0).any()):
        raise CgmbenchError("a frame embedding is all zeros; its cosine similarity is undefined")
    u = f / norms
    cos = u @ u.T
    if clip_negative:
        cos = cos.clamp(min=0.0)
    t = f.shape[0]
    idx = torch.arange(t)
    if pairs == "consecutive":
        vals = cos[idx[:-1], idx[1:]]
    elif pairs == "first":
        vals = cos[idx[1:], 0]
    elif pairs == "first+prev":
        vals = 0.5 * (cos[idx[1:], idx[:-1]] + cos[idx[1:], 0])
    else:
        i, j = torch.triu_indices(t, t, offset=1)
        vals = cos[i, j]
    return float(vals.mean())


def frame_consistency_scores(videos, embed: Callable[[torch.Tensor], torch.Tensor], pairs: str = "consecutive",
                             clip_negative: bool = False) -> np.ndarray:
    """Per-video :func:`frame_consistency` of ``embed(frames)``; ``embed``: uint8 ``[T, 3, H, W]`` -> ``[T, d]``."""
    out = []
    for v in _video_list(videos):
        feats = embed(v)
        if not isinstance(feats, torch.Tensor) or feats.ndim != 2 or feats.shape[0] != v.shape[0]:
            shape = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
            raise CgmbenchError(f"the frame embedding returned {shape} for {v.shape[0]} frames; expected [T, d]")
        out.append(frame_consistency(feats, pairs, clip_negative))
    return np.asarray(out, dtype=np.float64)


def clip_frame_consistency(videos, embed: Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray:
    """Mean cosine of consecutive frame embeddings per video (EvalCrafter CLIP-Temp when ``embed`` is its CLIP)."""
    return frame_consistency_scores(videos, embed, "consecutive")


def first_frame_consistency(videos, embed: Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray:
    """Mean cosine of every later frame's embedding with the first frame's, per video."""
    return frame_consistency_scores(videos, embed, "first")


def vbench_consistency(videos, embed: Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray:
    """VBench subject (DINO) / background (CLIP) consistency per video.

    Per video: mean over i >= 1 of ½[max(0, cos(f_i, f_{i−1})) + max(0, cos(f_i, f_0))]. VBench's
    overall number weights videos by their number of frame pairs (sum of all terms / all pairs);
    that equals the plain mean of these values when all videos have the same length.
    """
    return frame_consistency_scores(videos, embed, "first+prev", clip_negative=True)


# ---------------------------------------------------------------------------------------------
# Frame differences
# ---------------------------------------------------------------------------------------------


def mean_abs_frame_difference(videos) -> np.ndarray:
    """Per video: mean over consecutive pairs of the mean |frame_i − frame_{i+1}| over pixels and channels (0–255)."""
    out = []
    for v in _video_list(videos):
        x = v.to(torch.float64)
        out.append(float((x[1:] - x[:-1]).abs().mean(dim=(1, 2, 3)).mean()))
    return np.asarray(out, dtype=np.float64)


def temporal_flickering(videos) -> np.ndarray:
    """VBench temporal flickering per video: ``(255 − mean_abs_frame_difference) / 255``.

    1.0 for a static video, lower with more change between consecutive frames. VBench computes it
    on all decoded frames (``cv2.absdiff`` of float32 frames, the mean of the per-pair means) and
    only for prompts describing static scenes: on moving content it measures motion, not flicker.
    """
    return (255.0 - mean_abs_frame_difference(videos)) / 255.0


# ---------------------------------------------------------------------------------------------
# Dynamic degree
# ---------------------------------------------------------------------------------------------


def frame_difference_magnitude(frame_a: torch.Tensor, frame_b: torch.Tensor) -> torch.Tensor:
    """A flow-free motion map ``[H, W]``: the channel mean of |frame_b − frame_a| in 0–255 units.

    The fallback where no optical-flow model is available. Its values are intensity changes, not
    pixel displacements, so a threshold tuned for RAFT flow (VBench's 6 px at 256²) does not carry
    over: pass a threshold of its own and do not compare the result with VBench's numbers.
    """
    return (frame_b.to(torch.float64) - frame_a.to(torch.float64)).abs().mean(dim=0)


def flow_magnitude(flow: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable:
    """Wrap an optical-flow callable ``(frame_a, frame_b) -> [2, H, W]`` (u, v in pixels) as a magnitude map."""

    def magnitude(frame_a: torch.Tensor, frame_b: torch.Tensor) -> torch.Tensor:
        uv = flow(frame_a, frame_b).to(torch.float64)
        if uv.ndim != 3 or uv.shape[0] != 2:
            raise CgmbenchError(f"the flow callable returned {tuple(uv.shape)}, expected [2, H, W] (u, v)")
        return torch.sqrt(uv[0] ** 2 + uv[1] ** 2)

    return magnitude


def _subsample(v: torch.Tensor, fps: float | None) -> tuple[torch.Tensor, float]:
    """VBench's 8-fps subsampling of decoded videos: every round(fps/8)-th frame, threshold factor max(1, 8/fps)."""
    if fps is None:
        return v, 1.0  # frame folders: VBench uses every frame and fps 8
    interval = max(1, round(fps / 8))
    return v[::interval], max(1.0, 8.0 / fps)


def dynamic_degree_pair_scores(video: torch.Tensor, magnitude: Callable | None = None,
                               top_fraction: float = 0.05) -> np.ndarray:
    """Per consecutive pair: the mean of the top ``top_fraction`` of the motion map's values.

    As VBench ``get_score``: the ``int(H * W * 0.05)`` largest magnitudes, averaged.
    ``magnitude=None`` uses :func:`frame_difference_magnitude`.
    """
    magnitude = magnitude or frame_difference_magnitude
    scores = []
    for a, b in zip(video[:-1], video[1:]):
        m = magnitude(a, b).to(torch.float64).flatten()
        k = int(m.numel() * top_fraction)
        if k < 1:
            raise CgmbenchError(f"frames of {m.numel()} pixels have no top {top_fraction:.0%} to average")
        scores.append(float(torch.topk(m, k).values.mean()))
    return np.asarray(scores, dtype=np.float64)


def dynamic_degree(videos, magnitude: Callable | None = None, threshold: float = 6.0, fps: float | None = None,
                   top_fraction: float = 0.05) -> np.ndarray:
    """VBench dynamic degree per video: 1.0 if the video moves, else 0.0 (their mean is VBench's score).

    With ``n`` frames (after subsampling to ~8 fps when ``fps`` is given) and pair scores from
    :func:`dynamic_degree_pair_scores`, a video moves when at least ``round(4 * n / 16)`` pairs
    (Python rounding, as VBench) score above ``threshold * max(1, 8 / fps) * min(H, W) / 256``.

    ``magnitude`` is a motion-map callable ``(frame_a, frame_b) -> [H, W]``: for VBench's number, RAFT
    flow wrapped with :func:`flow_magnitude` and ``threshold=6.0``. ``None`` uses frame differences
    (:func:`frame_difference_magnitude`), which is **not** VBench's metric: choose ``threshold`` for it.
    """
    out = []
    for v in _video_list(videos):
        v, factor = _subsample(v, fps)
        n = v.shape[0]
        if n < 2:
            raise CgmbenchError("after subsampling to 8 fps a video has fewer than 2 frames")
        scale = min(v.shape[-2:])
        thres = factor * threshold * (scale / 256.0)
        count_num = round(4 * (n / 16.0))
        scores = dynamic_degree_pair_scores(v, magnitude, top_fraction)
        moving = int((scores > thres).sum()) >= count_num
        out.append(1.0 if moving else 0.0)
    return np.asarray(out, dtype=np.float64)
