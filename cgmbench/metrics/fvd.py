"""Fréchet Video Distance: protocol presets, a seeded clip sampler, and the distance itself.

FVD (Unterthiner et al., 2018) is the Fréchet distance between Gaussians fitted to video-clip
features of a video classifier (I3D on Kinetics-400, or VideoMAE-v2 for content-debiased FVD).
There is no single FVD: the published numbers differ in the feature network and its resize, the
number of real and generated clips, the clip length and frame stride, where real clips start, which
videos are dropped as too short, the covariance divisor and the matrix square root. Every one of
those is a field of :class:`FVDProtocol`, and :meth:`FVDProtocol.to_dict` goes into the run record.

Presets (``PROTOCOLS``):

``styleganv_fvd2048_16f`` (StyleGAN-V ``fvd2048_16f``, the cgmbench default)
    2048 real and 2048 generated clips of 16 consecutive frames; real clips from the first 2048
    videos (sorted folder order) with at least 16 frames, shorter videos discarded and counted, each
    starting at a uniformly random offset; generated clips start at frame 0; TorchScript I3D with
    ``rescale=True, resize=True, return_features=True``; covariance divided by N (its
    ``FeatureStats``). StyleGAN-V draws offsets from Python's unseeded ``random``; here they come
    from ``seed``.
``tats_fvd2048`` (TATS ``tats/fvd/fvd.py``; VideoGPT lineage)
    2048/2048 clips of 16 frames at 128x128, PyTorch I3D (``i3d_pt400``) with bilinear
    ``align_corners=False`` resize to 224, logits averaged over time, unbiased covariance (N - 1).
``cdfvd_videomae`` (content-debiased FVD, ``cdfvd.fvd.cdfvd('videomae')``)
    VideoMAE-v2 ViT-g SSv2 features (1408-d, input ``x/255`` with no mean/std), all real videos
    (``n_real='full'``) with frame folders of *more than* 16 frames, random clip starts, 2048
    generated clips (the generated set is cycled when smaller), seed 42, covariance divided by N.

The distance always uses :func:`cgmbench.metrics.frechet.frechet_distance` (float64, symmetric
eigenvalue trace), never ``scipy.linalg.sqrtm(disp=False)``: the references' square roots agree
with it to ~1e-10 relative on well-conditioned statistics, so only ``covariance_ddof`` is kept.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from cgmbench.errors import CgmbenchError
from cgmbench.metrics.frechet import StreamingMoments, frechet_distance
from cgmbench.seeding import torch_generator

__all__ = [
    "FVDProtocol",
    "PROTOCOLS",
    "get_fvd_protocol",
    "ClipPlan",
    "plan_clips",
    "take_clips",
    "fake_clip_indices",
    "fvd_statistics",
    "fvd_from_features",
    "FVDResult",
    "compute_fvd",
]


# ---------------------------------------------------------------------------------------------
# Protocols
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FVDProtocol:
    """Everything that changes an FVD number. ``None`` for ``num_real`` means "every eligible real video"."""

    name: str
    extractor: str  # registry name of the feature network: i3d_tfhub_ts, i3d_pt400, videomae_v2_g_ssv2
    feature: str  # which activation is the feature
    feature_dim: int
    num_real: int | None  # real clips (one per real video); None = all eligible videos
    num_fake: int  # generated clips
    num_frames: int  # frames per clip
    frame_stride: int  # 1 = consecutive frames; k = every k-th frame
    resolution: int | None  # frame size (square) the clips have before the extractor; None = any
    extractor_input_size: int  # what the extractor resizes to
    resize: str  # the resize kernel and where it happens
    input_scaling: str
    real_split: str
    real_selection: str  # first_n: the first num_real eligible videos in order; all: every eligible video
    real_clip_start: str  # random: uniform over valid starts; first: frame 0
    fake_clip_start: str
    discard_short_videos: bool  # real videos with fewer than min_video_frames frames are dropped (and counted)
    min_video_frames: int  # the eligibility threshold as the reference code applies it
    fake_shortfall: str  # error: fewer generated videos than num_fake is refused; cycle: reuse them in order
    covariance_ddof: int  # 0: divide by N (StyleGAN-V, cd-fvd FeatureStats); 1: by N - 1 (TATS)
    matrix_sqrt: str
    seed: int  # seeds the real clip offsets (and nothing else)
    source: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("num_fake", "num_frames", "frame_stride", "min_video_frames"):
            if int(getattr(self, name)) < 1:
                raise CgmbenchError(f"FVD protocol {self.name!r}: {name} must be >= 1, got {getattr(self, name)}")
        if self.num_real is not None and self.num_real < 2:
            raise CgmbenchError(f"FVD protocol {self.name!r}: num_real must be >= 2 (a covariance), got {self.num_real}")
        if self.min_video_frames < self.clip_span:
            raise CgmbenchError(
                f"FVD protocol {self.name!r}: min_video_frames={self.min_video_frames} is shorter than one clip "
                f"({self.clip_span} frames)"
            )
        if self.real_clip_start not in ("random", "first") or self.fake_clip_start not in ("random", "first"):
            raise CgmbenchError(f"FVD protocol {self.name!r}: clip starts must be 'random' or 'first'")
        if self.real_selection not in ("first_n", "all"):
            raise CgmbenchError(f"FVD protocol {self.name!r}: real_selection must be 'first_n' or 'all'")
        if self.fake_shortfall not in ("error", "cycle"):
            raise CgmbenchError(f"FVD protocol {self.name!r}: fake_shortfall must be 'error' or 'cycle'")
        if self.covariance_ddof not in (0, 1):
            raise CgmbenchError(f"FVD protocol {self.name!r}: covariance_ddof must be 0 or 1")

    @property
    def clip_span(self) -> int:
        """Frames from the first to the last frame of a clip, inclusive: ``(num_frames - 1) * stride + 1``."""
        return (self.num_frames - 1) * self.frame_stride + 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable record of every field (plus the derived clip span)."""
        out = dataclasses.asdict(self)
        out["notes"] = list(self.notes)
        out["clip_span"] = self.clip_span
        return out

    def replace(self, **changes: Any) -> "FVDProtocol":
        """A copy with some fields changed (give it a new ``name`` when the numbers are no longer comparable)."""
        return dataclasses.replace(self, **changes)


PROTOCOLS: dict[str, FVDProtocol] = {
    "styleganv_fvd2048_16f": FVDProtocol(
        name="styleganv_fvd2048_16f",
        extractor="i3d_tfhub_ts",
        feature="detector(x, rescale=True, resize=True, return_features=True): pre-softmax 400-d",
        feature_dim=400,
        num_real=2048,
        num_fake=2048,
        num_frames=16,
        frame_stride=1,
        resolution=256,
        extractor_input_size=224,
        resize="inside the TorchScript I3D (resize=True), from the dataset resolution to 224x224",
        input_scaling="inside the TorchScript I3D (rescale=True): uint8 -> [-1, 1]",
        real_split="the dataset folder the model was trained on (StyleGAN-V passes its training dataset_kwargs)",
        real_selection="first_n",
        real_clip_start="random",
        fake_clip_start="first",
        discard_short_videos=True,
        min_video_frames=16,
        fake_shortfall="error",
        covariance_ddof=0,
        matrix_sqrt="reference: scipy.linalg.sqrtm(sigma_gen @ sigma_real, disp=False); here: symmetric eigenvalues",
        seed=0,
        source="universome/stylegan-v src/metrics/frechet_video_distance.py, metric_main.py (fvd2048_16f), "
               "src/training/dataset.py (load_n_consecutive, random offset, discard_short_videos)",
        notes=(
            "real offsets uniform in [0, len - 16] (random.randint, inclusive); the reference leaves them unseeded",
            "a video is kept when len >= num_frames * stride (the reference's rule, stricter than the span for stride > 1)",
            "fewer eligible videos than num_real: the reference silently uses them all; here it is an error unless allowed",
        ),
    ),
    "tats_fvd2048": FVDProtocol(
        name="tats_fvd2048",
        extractor="i3d_pt400",
        feature="InceptionI3d(400).forward: pre-softmax logits averaged over time, 400-d",
        feature_dim=400,
        num_real=2048,
        num_fake=2048,
        num_frames=16,
        frame_stride=1,
        resolution=128,
        extractor_input_size=224,
        resize="F.interpolate(bilinear, align_corners=False) of every frame to 224x224, no crop",
        input_scaling="2x/255 - 1 after the resize",
        real_split="UCF-101 train (the TATS training loader)",
        real_selection="first_n",
        real_clip_start="random",
        fake_clip_start="first",
        discard_short_videos=True,
        min_video_frames=16,
        fake_shortfall="error",
        covariance_ddof=1,
        matrix_sqrt="reference: TF-GAN trace_sqrt_product via SVD (torch); here: symmetric eigenvalues",
        seed=0,
        source="songweige/TATS tats/fvd/fvd.py (preprocess, frechet_distance, cov), "
               "scripts/sample_vqgan_transformer_short_videos.py",
        notes=(
            "the reference's real clips are the first 2048 of a shuffled torchvision VideoClips loader "
            "(inferred from code reading, not executed); here: one random clip from each of the first 2048 videos",
        ),
    ),
    "cdfvd_videomae": FVDProtocol(
        name="cdfvd_videomae",
        extractor="videomae_v2_g_ssv2",
        feature="VideoMAE-v2 ViT-g/14 (SSv2 fine-tuned) forward_features: fc_norm(mean of tokens), 1408-d",
        feature_dim=1408,
        num_real=None,
        num_fake=2048,
        num_frames=16,
        frame_stride=1,
        resolution=256,
        extractor_input_size=224,
        resize="F.interpolate(bilinear, align_corners=False) to 224x224 (after the loader's resize to resolution)",
        input_scaling="x/255, no mean/std normalisation",
        real_split="the given real dataset, every video (n_real='full')",
        real_selection="all",
        real_clip_start="random",
        fake_clip_start="first",
        discard_short_videos=True,
        min_video_frames=17,
        fake_shortfall="cycle",
        covariance_ddof=0,
        matrix_sqrt="reference: scipy.linalg.sqrtm(sigma_real @ sigma_fake, disp=False); here: symmetric eigenvalues",
        seed=42,
        source="songweige/content-debiased-fvd cdfvd/fvd.py, cdfvd/utils/data_utils.py (FrameDataset), "
               "cdfvd/utils/metric_utils.py (FeatureStats)",
        notes=(
            "frame folders need MORE than num_frames * stride frames (len > 16), hence min_video_frames=17",
            "the generated loader is iterated again until n_fake features are collected (cycle)",
            "loaders convert float videos to uint8 with truncation ((x*255).byte())",
        ),
    ),
}


def get_fvd_protocol(name: str) -> FVDProtocol:
    if name not in PROTOCOLS:
        raise CgmbenchError(f"unknown FVD protocol {name!r}", f"known protocols: {', '.join(sorted(PROTOCOLS))}")
    return PROTOCOLS[name]


# ---------------------------------------------------------------------------------------------
# Clip sampling
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipPlan:
    """Which clip of which video: ``frames[i]`` are the frame indices of clip ``i`` of video ``videos[i]``."""

    videos: tuple[int, ...]
    starts: tuple[int, ...]
    num_frames: int
    frame_stride: int
    discarded: tuple[int, ...]  # videos skipped as too short (before selection stopped)
    num_eligible: int  # eligible videos seen in total

    @property
    def frames(self) -> list[list[int]]:
        return [[s + k * self.frame_stride for k in range(self.num_frames)] for s in self.starts]

    def to_dict(self) -> dict[str, Any]:
        return {"num_clips": len(self.videos), "num_discarded": len(self.discarded),
                "num_eligible": self.num_eligible, "videos": list(self.videos), "starts": list(self.starts),
                "discarded": list(self.discarded)}


def plan_clips(lengths: Sequence[int], protocol: FVDProtocol, allow_fewer: bool = False) -> ClipPlan:
    """Choose the real clips for ``protocol`` from videos of the given frame counts, deterministically.

    Videos are visited in the given order. A video with fewer than ``min_video_frames`` frames is
    discarded (and listed) when ``discard_short_videos``, else refused. With ``real_selection ==
    "first_n"`` the first ``num_real`` eligible videos are used (one clip each), with ``"all"``
    every eligible video. A ``"random"`` start is uniform over ``[0, length - clip_span]``, drawn
    for the selected videos in order from ``torch_generator(protocol.seed)``; ``"first"`` starts at 0.
    Fewer eligible videos than ``num_real`` is a :class:`CgmbenchError` unless ``allow_fewer``.
    """
    lengths = [int(n) for n in lengths]
    g = torch_generator(protocol.seed)
    videos: list[int] = []
    starts: list[int] = []
    discarded: list[int] = []
    eligible = 0
    want = protocol.num_real if protocol.real_selection == "first_n" else None
    for i, n in enumerate(lengths):
        if want is not None and len(videos) >= want:
            break
        if n < protocol.min_video_frames:
            if not protocol.discard_short_videos:
                raise CgmbenchError(
                    f"real video {i} has {n} frames; protocol {protocol.name!r} needs {protocol.min_video_frames}",
                    "use a protocol with discard_short_videos=True or longer videos",
                )
            discarded.append(i)
            continue
        eligible += 1
        videos.append(i)
        if protocol.real_clip_start == "random":
            high = n - protocol.clip_span  # last valid start, inclusive
            starts.append(int(torch.randint(0, high + 1, (1,), generator=g)))
        else:
            starts.append(0)
    if want is not None and len(videos) < want and not allow_fewer:
        raise CgmbenchError(
            f"protocol {protocol.name!r} needs {want} real videos with >= {protocol.min_video_frames} frames, "
            f"found {len(videos)} ({len(discarded)} discarded as too short)",
            "use more real videos, or pass allow_fewer=True and report the count (the number is not comparable)",
        )
    if len(videos) < 2:
        raise CgmbenchError(f"protocol {protocol.name!r}: only {len(videos)} real clip(s); a covariance needs 2")
    return ClipPlan(tuple(videos), tuple(starts), protocol.num_frames, protocol.frame_stride,
                    tuple(discarded), eligible)


def take_clips(videos: Sequence[torch.Tensor] | torch.Tensor, plan: ClipPlan,
               indices: Sequence[int] | None = None) -> torch.Tensor:
    """The planned clips as one uint8 tensor ``[n, num_frames, 3, H, W]`` (``indices``: a subset of the plan)."""
    rows = range(len(plan.videos)) if indices is None else indices
    frames = plan.frames
    return torch.stack([videos[plan.videos[r]][frames[r]] for r in rows])


def fake_clip_indices(num_videos: int, protocol: FVDProtocol) -> list[int]:
    """Which generated video feeds each of the ``num_fake`` clips: each once, or cycled (``fake_shortfall``)."""
    if num_videos >= protocol.num_fake:
        return list(range(protocol.num_fake))
    if protocol.fake_shortfall == "cycle" and num_videos > 0:
        return [i % num_videos for i in range(protocol.num_fake)]
    raise CgmbenchError(
        f"protocol {protocol.name!r} needs {protocol.num_fake} generated videos, got {num_videos}",
        "generate more samples (--num-samples) or use a protocol variant with a smaller num_fake",
    )


# ---------------------------------------------------------------------------------------------
# The distance
# ---------------------------------------------------------------------------------------------


def fvd_statistics(moments: StreamingMoments | Any, covariance_ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(mu, sigma)`` in float64 from accumulated moments or a feature matrix ``(N, d)``.

    ``covariance_ddof=1`` is ``np.cov`` (divisor N - 1); ``0`` divides by N, as StyleGAN-V's and
    cd-fvd's ``FeatureStats.get_mean_cov``.
    """
    if not isinstance(moments, StreamingMoments):
        moments = StreamingMoments().update(moments)
    mu, sigma = moments.compute()
    if covariance_ddof == 0:
        sigma = sigma * ((moments.n - 1) / moments.n)
    elif covariance_ddof != 1:
        raise ValueError(f"covariance_ddof must be 0 or 1, got {covariance_ddof}")
    return mu, sigma


def fvd_from_features(real_feats: Any, fake_feats: Any, covariance_ddof: int = 1) -> float:
    """FVD between two feature matrices ``(N_real, d)`` and ``(N_fake, d)``."""
    mu_r, sigma_r = fvd_statistics(real_feats, covariance_ddof)
    mu_f, sigma_f = fvd_statistics(fake_feats, covariance_ddof)
    return frechet_distance(mu_r, sigma_r, mu_f, sigma_f)


@dataclass(frozen=True)
class FVDResult:
    value: float
    protocol: FVDProtocol
    num_real: int
    num_fake: int
    num_discarded: int
    extractor: dict[str, Any]
    real_plan: ClipPlan

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "num_real": self.num_real, "num_fake": self.num_fake,
                "num_discarded": self.num_discarded, "protocol": self.protocol.to_dict(),
                "extractor": self.extractor, "real_clips": self.real_plan.to_dict()}


def _check_resolution(clips: torch.Tensor, protocol: FVDProtocol, side: str) -> None:
    if protocol.resolution is not None and tuple(clips.shape[-2:]) != (protocol.resolution, protocol.resolution):
        raise CgmbenchError(
            f"{side} clips are {tuple(clips.shape[-2:])} pixels; protocol {protocol.name!r} is defined at "
            f"{protocol.resolution}x{protocol.resolution}",
            "resize the videos to the protocol resolution first, or use protocol.replace(name=..., resolution=None)",
        )


def compute_fvd(real_videos: Sequence[torch.Tensor] | torch.Tensor, fake_videos: Sequence[torch.Tensor] | torch.Tensor,
                extractor: Callable[[torch.Tensor], torch.Tensor], protocol: FVDProtocol | str,
                batch_size: int = 16, allow_fewer: bool = False) -> FVDResult:
    """FVD of generated videos against real videos under ``protocol``.

    Args:
        real_videos: uint8 videos ``[T_i, 3, H, W]`` (a list, lengths may differ) in dataset order.
        fake_videos: uint8 generated videos ``[T, 3, H, W]`` (list or ``[N, T, 3, H, W]`` tensor).
        extractor: uint8 clips ``[n, F, 3, H, W]`` -> features ``[n, d]`` (e.g. ``I3DPt400``,
            ``StyleGANVI3D``); the protocol's ``extractor`` field names which one it should be.
        batch_size: clips per extractor call (does not change the value beyond float rounding).
    """
    if isinstance(protocol, str):
        protocol = get_fvd_protocol(protocol)
    plan = plan_clips([len(v) for v in real_videos], protocol, allow_fewer=allow_fewer)

    real = StreamingMoments()
    for lo in range(0, len(plan.videos), batch_size):
        clips = take_clips(real_videos, plan, range(lo, min(lo + batch_size, len(plan.videos))))
        _check_resolution(clips, protocol, "real")
        real.update(extractor(clips))

    fake_idx = fake_clip_indices(len(fake_videos), protocol)
    fake_start = 0  # generated clips start at frame 0 ("first"); a random fake start is not used by any preset
    if protocol.fake_clip_start != "first":
        raise CgmbenchError(f"protocol {protocol.name!r}: only fake_clip_start='first' is implemented")
    frames = [fake_start + k * protocol.frame_stride for k in range(protocol.num_frames)]
    fake = StreamingMoments()
    for lo in range(0, len(fake_idx), batch_size):
        batch = [fake_videos[i] for i in fake_idx[lo:lo + batch_size]]
        if any(len(v) < protocol.clip_span for v in batch):
            raise CgmbenchError(
                f"generated videos must have at least {protocol.clip_span} frames for protocol {protocol.name!r}",
                "sample longer videos",
            )
        clips = torch.stack([v[frames] for v in batch])
        _check_resolution(clips, protocol, "generated")
        fake.update(extractor(clips))

    mu_r, sigma_r = fvd_statistics(real, protocol.covariance_ddof)
    mu_f, sigma_f = fvd_statistics(fake, protocol.covariance_ddof)
    value = frechet_distance(mu_r, sigma_r, mu_f, sigma_f)
    describe = getattr(extractor, "describe", None)
    return FVDResult(value=value, protocol=protocol, num_real=real.n, num_fake=fake.n,
                     num_discarded=len(plan.discarded), extractor=describe() if callable(describe) else {},
                     real_plan=plan)
