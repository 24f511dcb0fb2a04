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


# TF-Slim Inception-v3 (tensorflow/models inception/slim/inception_model.py) as StackGAN's fine-tuned CUB model has
# it: the conv scopes in graph order, written out from that file independently of cgmbench's own table
_SLIM_BRANCHES = {
    "A": (("branch1x1", 1), ("branch5x5", 2), ("branch3x3dbl", 3), ("branch_pool", 1)),
    "B": (("branch3x3", 1), ("branch3x3dbl", 3)),
    "C": (("branch1x1", 1), ("branch7x7", 3), ("branch7x7dbl", 5), ("branch_pool", 1)),
    "D": (("branch3x3", 2), ("branch7x7x3", 4)),
    "E": (("branch1x1", 1), ("branch3x3", 3), ("branch3x3dbl", 4), ("branch_pool", 1)),
}
_SLIM_BLOCKS = (("mixed_35x35x256a", "A"), ("mixed_35x35x288a", "A"), ("mixed_35x35x288b", "A"),
                ("mixed_17x17x768a", "B"), ("mixed_17x17x768b", "C"), ("mixed_17x17x768c", "C"),
                ("mixed_17x17x768d", "C"), ("mixed_17x17x768e", "C"), ("mixed_17x17x1280a", "D"),
                ("mixed_8x8x2048a", "E"), ("mixed_8x8x2048b", "E"))


def slim_conv_scopes() -> list[str]:
    scopes = [f"conv{i}" for i in range(5)]
    for block, kind in _SLIM_BLOCKS:
        for branch, n in _SLIM_BRANCHES[kind]:
            scopes += [f"{block}/{branch}/{'Conv' if i == 0 else f'Conv_{i}'}" for i in range(n)]
    return scopes


def random_cub_inception(seed: int = 0):
    """``(torchvision Inception3 with 51 classes and random weights, the same weights as TF-Slim variables)``.

    The torchvision model's BasicConv2d units, in registration order, are the Slim graph's conv scopes in
    creation order; BatchNorm gamma stays 1 (Slim's ``scale=False``); kernels HWIO, the dense kernel [in, out]."""
    import numpy as np
    import torchvision

    g = torch.Generator().manual_seed(seed)
    tv = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=51).eval()
    convs = [m for m in tv.modules() if isinstance(m, torchvision.models.inception.BasicConv2d)]
    scopes = slim_conv_scopes()
    assert len(convs) == len(scopes) == 94
    variables = {}
    with torch.no_grad():
        for scope, unit in zip(scopes, convs):
            fan_in = unit.conv.weight[0].numel()
            unit.conv.weight.copy_(torch.randn(unit.conv.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            c = unit.bn.num_features
            unit.bn.weight.fill_(1.0)
            unit.bn.bias.copy_(0.1 * torch.randn(c, generator=g))
            unit.bn.running_mean.copy_(0.1 * torch.randn(c, generator=g))
            unit.bn.running_var.copy_(0.5 + torch.rand(c, generator=g))
            variables[f"{scope}/weights"] = unit.conv.weight.detach().permute(2, 3, 1, 0).numpy().copy()
            variables[f"{scope}/BatchNorm/beta"] = unit.bn.bias.detach().numpy().copy()
            variables[f"{scope}/BatchNorm/moving_mean"] = unit.bn.running_mean.numpy().copy()
            variables[f"{scope}/BatchNorm/moving_variance"] = unit.bn.running_var.numpy().copy()
        tv.fc.weight.copy_(0.05 * torch.randn(tv.fc.weight.shape, generator=g))
        tv.fc.bias.copy_(0.1 * torch.randn(51, generator=g))
    variables["logits/logits/weights"] = tv.fc.weight.detach().T.numpy().copy()
    variables["logits/logits/biases"] = tv.fc.bias.detach().numpy().copy()
    return tv, {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in variables.items()}


def write_cub_inception_safetensors(path, seed: int = 0):
    """A converted ``inception_v3_cub_finetuned.safetensors`` (official names, random weights) at ``path``."""
    from safetensors.numpy import save_file

    tv, variables = random_cub_inception(seed)
    save_file(variables, str(path))
    return tv
