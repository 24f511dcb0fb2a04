"""Reproduction check of the original FVD example with the real StyleGAN-V I3D, when its weights are present.

google-research/frechet_video_distance ``example.py``: 16 all-zero videos against 16 all-255 videos of 15 frames
at 64x64 give FVD ~131. Identical videos within each set have zero covariance, so the value is the squared
distance of the two mean features; it checks the detector file and its call convention (rescale, resize inside).
Runs wherever ``cgmbench weights fetch i3d-styleganv`` has placed the file (it cannot be downloaded in CI).
"""

from __future__ import annotations

import pytest
import torch

from cgmbench.extractors.i3d import load_styleganv_detector
from cgmbench.metrics.fvd import fvd_from_features
from cgmbench.weights import local_path

WEIGHTS = local_path("i3d-styleganv")


@pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"needs the StyleGAN-V I3D at {WEIGHTS} "
                                                  "(cgmbench weights fetch i3d-styleganv)")
def test_tf_example_zeros_vs_255_is_about_131():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    extractor = load_styleganv_detector(WEIGHTS).to(device)
    zeros = torch.zeros(16, 15, 3, 64, 64, dtype=torch.uint8)
    full = torch.full((16, 15, 3, 64, 64), 255, dtype=torch.uint8)
    with torch.no_grad():
        a, b = extractor(zeros).double().cpu(), extractor(full).double().cpu()
    value = fvd_from_features(a.numpy(), b.numpy())
    assert value == pytest.approx(131.0, rel=0.05)
