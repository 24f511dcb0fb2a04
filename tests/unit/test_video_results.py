"""Frame strips, GIF export and the sample grid of a video run; the store keeps the exact uint8 videos."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from cgmbench.errors import CgmbenchError
from cgmbench.results.video import export_gif, frame_strips, video_gif_bytes

torch.set_num_threads(1)


def test_frame_strips_place_every_frame():
    v = np.random.default_rng(0).integers(0, 256, (2, 3, 3, 4, 5), dtype=np.uint8)
    s = frame_strips(v, gap=1)
    assert s.shape == (2, 3, 4, 3 * 5 + 2)
    for k in range(3):
        assert np.array_equal(s[..., k * 6:k * 6 + 5], v[:, k])
    assert (s[..., 5] == 255).all() and (s[..., 11] == 255).all()
    with pytest.raises(CgmbenchError, match="videos"):
        frame_strips(v[:, 0])


def test_gif_round_trip_of_flat_frames():
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
    v = np.stack([np.broadcast_to(np.array(c, np.uint8)[:, None, None], (3, 6, 7)) for c in colours])
    gif = Image.open(io.BytesIO(video_gif_bytes(v, fps=5, scale=2)))
    assert gif.n_frames == 4 and gif.size == (14, 12)
    for k, c in enumerate(colours):
        gif.seek(k)
        assert gif.info["duration"] == 200
        assert tuple(np.asarray(gif.convert("RGB"))[0, 0]) == c


@pytest.mark.slow
def test_run_grid_and_gif_export(tmp_path):
    import cgmbench
    from cgmbench.results.plots import sample_grid
    from cgmbench.run.samples import SampleStore

    out = tmp_path / "run"
    cgmbench.run("shapes-t2v", "noise", num_samples=3, out=str(out))
    store = SampleStore.open(out / "samples")
    arr = store.read(0, 3)
    assert arr.dtype == np.uint8 and arr.shape == (3, 8, 3, 32, 32)  # lossless [N, T, 3, H, W]
    grid = sample_grid(out, tmp_path / "grid.png", columns=3)
    assert Image.open(grid).size[0] > Image.open(grid).size[1]  # strips are wide
    gif = export_gif(out, index=2, scale=1)
    img = Image.open(gif)
    assert img.n_frames == 8 and img.size == (32, 32)
    with pytest.raises(CgmbenchError, match="has no sample 5"):
        export_gif(out, index=5)
