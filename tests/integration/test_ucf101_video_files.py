"""The UCF-101 loader on real video files (.avi as the official distribution, .mp4), written with PyAV here.

Needs PyAV (the ``video`` and ``test`` extras); skipped only when it is not installed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cgmbench.errors import CgmbenchError, IntegrityError
from cgmbench.spec.task import load_task

av = pytest.importorskip("av", reason="PyAV is not installed (pip install 'cgmbench[video]')")

ROOT = Path(__file__).resolve().parents[2]


def _write_video(path: Path, frames: list[np.ndarray], codec: str, pix_fmt: str) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _frames(n: int, seed: int, h: int = 24, w: int = 32) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _task(tmp_path: Path, data: Path):
    text = (ROOT / "tasks" / "ucf101-cc.toml").read_text().replace('path = "${CGMBENCH_DATA}/ucf101"',
                                                                   f'path = "{data}"')
    path = tmp_path / "ucf101-cc.toml"
    path.write_text(text)
    return load_task(str(path))


def _expected(frame: np.ndarray, size: int = 256) -> np.ndarray:
    h, w = frame.shape[:2]
    s = min(h, w)
    crop = frame[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.BICUBIC)).transpose(2, 0, 1)


def test_avi_and_mp4_files_are_decoded(tmp_path):
    from cgmbench.sources.base import open_source

    data = tmp_path / "ucf"
    (data / "UCF-101" / "ApplyEyeMakeup").mkdir(parents=True)
    (data / "UCF-101" / "Archery").mkdir(parents=True)
    lossless = _frames(5, 0)
    _write_video(data / "UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", lossless, "ffv1", "bgr0")
    _write_video(data / "UCF-101/Archery/v_Archery_g01_c01.mp4", _frames(7, 1), "mpeg4", "yuv420p")
    src = open_source(_task(tmp_path, data), "reference")
    assert [e[0] for e in src.entries] == ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
                                           "Archery/v_Archery_g01_c01.mp4"]
    assert src.video_lengths() == [5, 7]
    video = src.video(0)
    assert video.dtype == torch.uint8 and tuple(video.shape) == (5, 3, 256, 256)
    # lossless codec: exactly the written frames, centre-cropped and PIL-bicubic resized
    assert all(np.array_equal(video[t].numpy(), _expected(f)) for t, f in enumerate(lossless))
    assert tuple(src.video(1).shape) == (7, 3, 256, 256)


def test_corrupt_file_and_missing_pyav_are_one_line(tmp_path, monkeypatch):
    from cgmbench.sources.base import open_source

    data = tmp_path / "ucf"
    (data / "UCF-101" / "Archery").mkdir(parents=True)
    good = data / "UCF-101/Archery/v_Archery_g01_c01.avi"
    _write_video(good, _frames(3, 2), "ffv1", "bgr0")
    (data / "UCF-101/Archery/v_Archery_g02_c01.avi").write_bytes(good.read_bytes()[:200])  # truncated
    src = open_source(_task(tmp_path, data), "reference")
    with pytest.raises(IntegrityError, match=r"corrupt video .*v_Archery_g02_c01\.avi") as info:
        src.video(1)
    assert "\n" not in str(info.value)
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    with pytest.raises(CgmbenchError, match=r"need PyAV.*pip install 'cgmbench\[video\]'"):
        open_source(_task(tmp_path, data), "reference").video(0)
