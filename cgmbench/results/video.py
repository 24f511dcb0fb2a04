"""Video samples for people: frame strips (``cgmbench plot samples`` of a video run) and GIF export
(``cgmbench plot gif RUN_DIR``). The sample store itself stays lossless uint8 ``[N, T, 3, H, W]``; a GIF's
256-colour palette is for viewing only and is never scored."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from cgmbench.errors import CgmbenchError

__all__ = ["frame_strips", "video_gif_bytes", "export_gif"]


def frame_strips(videos: np.ndarray, gap: int = 1) -> np.ndarray:
    """uint8 ``[B, T, 3, H, W]`` -> ``[B, 3, H, T*W + (T-1)*gap]``: the frames side by side, white gaps."""
    videos = np.asarray(videos)
    if videos.ndim != 5 or videos.shape[2] != 3:
        raise CgmbenchError(f"frame strips need videos [B, T, 3, H, W], got {videos.shape}")
    b, t, c, h, w = videos.shape
    out = np.full((b, c, h, t * w + (t - 1) * gap), 255, dtype=np.uint8)
    for k in range(t):
        out[..., k * (w + gap):k * (w + gap) + w] = videos[:, k]
    return out


def video_gif_bytes(video: np.ndarray, fps: float = 4.0, scale: int = 1) -> bytes:
    """One uint8 ``[T, 3, H, W]`` video as an animated, looping GIF (nearest-neighbour ``scale``)."""
    from PIL import Image

    video = np.asarray(video)
    if video.ndim != 4 or video.shape[1] != 3 or video.dtype != np.uint8:
        raise CgmbenchError(f"a GIF needs one uint8 video [T, 3, H, W], got {video.dtype} {video.shape}")
    frames = [Image.fromarray(np.ascontiguousarray(f.transpose(1, 2, 0))) for f in video]
    if scale > 1:
        frames = [f.resize((f.width * scale, f.height * scale), Image.NEAREST) for f in frames]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=int(round(1000 / fps)),
                   loop=0, disposal=1)
    return buf.getvalue()


def export_gif(run_dir: str | Path, out: str | Path | None = None, index: int = 0, fps: float = 4.0,
               scale: int = 4) -> Path:
    """Write sample ``index`` of a video run as ``out`` (default ``RUN_DIR/sample-<index>.gif``)."""
    from cgmbench.atomic import atomic_write_bytes
    from cgmbench.run.samples import SampleStore

    run_dir = Path(run_dir)
    if not (run_dir / "samples").is_dir():
        raise CgmbenchError(f"{run_dir} holds no samples/ store", "give a run folder written by cgmbench run")
    store = SampleStore.open(run_dir / "samples")
    if index < 0 or index not in set(store.covered()):
        raise CgmbenchError(f"run {run_dir} has no sample {index}", f"it holds {len(store.covered())} samples")
    arr = store.read(index, index + 1)
    if arr.ndim != 5:
        raise CgmbenchError(f"run {run_dir} holds images {arr.shape[1:]}, not videos", "a GIF needs a video run")
    out = Path(out) if out else run_dir / f"sample-{index}.gif"
    atomic_write_bytes(out, video_gif_bytes(arr[0], fps=fps, scale=scale))
    return out
