"""Shared by the Inception, harness and prefetch tests: smooth test images, a random FID-Inception state dict
in the official layout, and an offline torch-hub cache holding it."""

from __future__ import annotations

import shutil

import torch
import torch.nn.functional as F

from cgmbench.extractors.inception import FIDInceptionNetwork

TF_WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity


PT_FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"  # pytorch-fid




def smooth_images(n: int, height: int, width: int, seed: int) -> torch.Tensor:
    """uint8 [n, 3, height, width]: upsampled 6x6 noise plus fine noise (image-like statistics)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 6, 6, generator=g) * 255
    x = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    x = x + 12 * torch.randn(n, 3, height, width, generator=g)
    return x.round().clamp(0, 255).to(torch.uint8)


def random_fid_inception_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random FIDInceptionNetwork weights with BatchNorm running stats calibrated on smooth images."""
    torch.manual_seed(seed)
    net = FIDInceptionNetwork()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.copy_(1 + 0.1 * torch.randn(module.weight.shape, generator=g))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=g))
                module.momentum = None  # running stats = statistics of the calibration batch
        net.train()
        calibration = smooth_images(4, 299, 299, seed=seed + 2).float()
        net((calibration - 128) / 128)
    return net.state_dict()


def hub_cache_with(weights_file, home):
    """Make ``home`` a torch-hub cache holding ``weights_file`` under both official file names."""
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for name in (TF_WEIGHTS_NAME, PT_FID_WEIGHTS_NAME):
        shutil.copyfile(weights_file, checkpoints / name)
    return home
