"""CycleGAN (Zhu et al., 2017): ResNet generator and the cycle-consistent objective.

A clean-room implementation of ``ResnetGenerator`` / ``ResnetBlock`` from
junyanz/pytorch-CycleGAN-and-pix2pix (``models/networks.py``) with the official module names,
so the released single-direction generators (``latest_net_G.pth``, built as
``define_G(3, 3, 64, 'resnet_9blocks', norm='instance', use_dropout=False)``) load strictly
through :func:`load_official_state_dict`. The PatchGAN discriminator, norm layers, GAN loss,
image pool, LR schedule, loader and test modes are shared with pix2pix and re-exported here.

Conventions: images ``(B, C, H, W)`` in ``[-1, 1]``; ``H`` and ``W`` divisible by 4. Generator
``G_A: A → B``, ``G_B: B → A``; discriminator ``D_A`` judges domain B, ``D_B`` domain A.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from baselines.pix2pix import (
    GANLoss,
    ImagePool,
    NLayerDiscriminator,
    TEST_MODES,
    define_D,
    define_G,
    discriminator_loss,
    get_norm_layer,
    init_weights,
    linear_decay_lambda,
    load_official_state_dict,
    patch_instance_norm_state_dict,
    read_state_dict,
    set_test_mode,
    uses_bias,
)

__all__ = [
    "ResnetBlock",
    "ResnetGenerator",
    "cyclegan_forward",
    "cyclegan_generator_loss",
    "cyclegan_discriminator_loss",
    # re-exported from baselines.pix2pix
    "GANLoss",
    "ImagePool",
    "NLayerDiscriminator",
    "TEST_MODES",
    "define_D",
    "define_G",
    "discriminator_loss",
    "get_norm_layer",
    "init_weights",
    "linear_decay_lambda",
    "load_official_state_dict",
    "patch_instance_norm_state_dict",
    "read_state_dict",
    "set_test_mode",
    "uses_bias",
]


# --------------------------------------------------------------------------------------
# Generator (Johnson et al. 2016 style: down-sample, residual blocks, up-sample)
# --------------------------------------------------------------------------------------


def _padding(padding_type: str) -> tuple[list[nn.Module], int]:
    """Explicit pad layer(s) and the conv ``padding`` for a 3×3 convolution."""
    if padding_type == "reflect":
        return [nn.ReflectionPad2d(1)], 0
    if padding_type == "replicate":
        return [nn.ReplicationPad2d(1)], 0
    if padding_type == "zero":
        return [], 1
    raise ValueError(f"padding {padding_type!r} is not implemented; use 'reflect', 'replicate' or 'zero'")


class ResnetBlock(nn.Module):
    """``x + conv_block(x)`` with ``conv_block`` = pad · conv3×3 · norm · ReLU (· Dropout(0.5)) ·
    pad · conv3×3 · norm, at constant width ``dim``.

    State-dict indices with reflect/replicate padding: ``conv_block.1`` and ``conv_block.5``
    (``conv_block.6`` with dropout); with ``'zero'`` padding (no pad layers) ``conv_block.0`` and
    ``conv_block.3`` (``.4``).
    """

    def __init__(
        self, dim: int, padding_type: str, norm_layer: Callable[[int], nn.Module], use_dropout: bool, use_bias: bool
    ) -> None:
        super().__init__()
        self.conv_block = self.build_conv_block(dim, padding_type, norm_layer, use_dropout, use_bias)

    def build_conv_block(
        self, dim: int, padding_type: str, norm_layer: Callable[[int], nn.Module], use_dropout: bool, use_bias: bool
    ) -> nn.Sequential:
        pad, p = _padding(padding_type)
        layers: list[nn.Module] = [
            *pad, nn.Conv2d(dim, dim, kernel_size=3, padding=p, bias=use_bias), norm_layer(dim), nn.ReLU(True)
        ]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        pad, p = _padding(padding_type)
        layers += [*pad, nn.Conv2d(dim, dim, kernel_size=3, padding=p, bias=use_bias), norm_layer(dim)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """ResNet generator: ``(B, input_nc, H, W)`` → ``(B, output_nc, H, W)`` in ``[-1, 1]``.

    ``self.model`` = ReflectionPad(3) · conv7×7(ngf) · norm · ReLU · 2 × [conv3×3 stride 2 ·
    norm · ReLU] (ngf → 2ngf → 4ngf) · ``n_blocks`` × ResnetBlock(4ngf) · 2 × [ConvTranspose3×3
    stride 2 (output_padding 1) · norm · ReLU] (4ngf → 2ngf → ngf) · ReflectionPad(3) ·
    conv7×7(output_nc, always with bias) · Tanh. For ``resnet_9blocks``: ``model.1`` (first conv),
    ``model.4``/``model.7`` (down), ``model.10``…``model.18`` (blocks), ``model.19``/``model.22``
    (up), ``model.26`` (last conv).
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        ngf: int = 64,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        use_dropout: bool = False,
        n_blocks: int = 6,
        padding_type: str = "reflect",
    ) -> None:
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        use_bias = uses_bias(norm_layer)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=use_bias),
            norm_layer(ngf),
            nn.ReLU(True),
        ]
        n_downsampling = 2
        for i in range(n_downsampling):
            mult = 2**i
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=use_bias),
                norm_layer(ngf * mult * 2),
                nn.ReLU(True),
            ]
        mult = 2**n_downsampling
        for _ in range(n_blocks):
            layers.append(
                ResnetBlock(ngf * mult, padding_type, norm_layer=norm_layer, use_dropout=use_dropout, use_bias=use_bias)
            )
        for i in range(n_downsampling):
            mult = 2 ** (n_downsampling - i)
            layers += [
                nn.ConvTranspose2d(
                    ngf * mult, ngf * mult // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=use_bias
                ),
                norm_layer(ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.model(input)


# --------------------------------------------------------------------------------------
# Objective (paper §3): LSGAN adversarial losses + cycle consistency + identity
# --------------------------------------------------------------------------------------


def cyclegan_forward(
    netG_A: nn.Module, netG_B: nn.Module, real_A: torch.Tensor, real_B: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Both translation cycles: ``fake_B = G_A(A)``, ``rec_A = G_B(fake_B)``, ``fake_A = G_B(B)``,
    ``rec_B = G_A(fake_A)``."""
    fake_B = netG_A(real_A)
    fake_A = netG_B(real_B)
    return {"fake_B": fake_B, "rec_A": netG_B(fake_B), "fake_A": fake_A, "rec_B": netG_A(fake_A)}


def cyclegan_generator_loss(
    netG_A: nn.Module,
    netG_B: nn.Module,
    netD_A: nn.Module,
    netD_B: nn.Module,
    real_A: torch.Tensor,
    real_B: torch.Tensor,
    images: dict[str, torch.Tensor],
    criterionGAN: GANLoss,
    lambda_A: float = 10.0,
    lambda_B: float = 10.0,
    lambda_identity: float = 0.5,
) -> dict[str, torch.Tensor]:
    """Generator objective, with ``images`` from :func:`cyclegan_forward` (``criterionGAN`` is
    ``GANLoss('lsgan')`` for CycleGAN):

    ``G = GAN(D_A(fake_B), real) + GAN(D_B(fake_A), real)
          + λ_A‖rec_A − A‖₁ + λ_B‖rec_B − B‖₁
          + λ_idt·(λ_B‖G_A(B) − B‖₁ + λ_A‖G_B(A) − A‖₁)``

    with mean-L1, λ_A = λ_B = 10 and λ_idt = 0.5 (the identity term is skipped when 0).
    Returns ``{'G_A', 'G_B', 'cycle_A', 'cycle_B', 'idt_A', 'idt_B', 'G'}``.
    """
    l1 = nn.functional.l1_loss
    if lambda_identity > 0:
        loss_idt_A = l1(netG_A(real_B), real_B) * lambda_B * lambda_identity
        loss_idt_B = l1(netG_B(real_A), real_A) * lambda_A * lambda_identity
    else:
        loss_idt_A = loss_idt_B = real_A.new_zeros(())
    loss_G_A = criterionGAN(netD_A(images["fake_B"]), True)
    loss_G_B = criterionGAN(netD_B(images["fake_A"]), True)
    loss_cycle_A = l1(images["rec_A"], real_A) * lambda_A
    loss_cycle_B = l1(images["rec_B"], real_B) * lambda_B
    total = loss_G_A + loss_G_B + loss_cycle_A + loss_cycle_B + loss_idt_A + loss_idt_B
    return {
        "G_A": loss_G_A,
        "G_B": loss_G_B,
        "cycle_A": loss_cycle_A,
        "cycle_B": loss_cycle_B,
        "idt_A": loss_idt_A,
        "idt_B": loss_idt_B,
        "G": total,
    }


def cyclegan_discriminator_loss(
    netD_A: nn.Module,
    netD_B: nn.Module,
    real_A: torch.Tensor,
    real_B: torch.Tensor,
    images: dict[str, torch.Tensor],
    criterionGAN: GANLoss,
    fake_A_pool: ImagePool,
    fake_B_pool: ImagePool,
) -> dict[str, torch.Tensor]:
    """Discriminator objectives: ``D_A`` on real B vs a pooled ``fake_B``, ``D_B`` on real A vs a
    pooled ``fake_A``, each ``0.5·(GAN(real) + GAN(fake))`` (:func:`discriminator_loss`).
    The pools (``ImagePool(50)`` upstream) are queried here. Returns ``{'D_A', 'D_B'}``.
    """
    fake_B = fake_B_pool.query(images["fake_B"])
    fake_A = fake_A_pool.query(images["fake_A"])
    return {
        "D_A": discriminator_loss(netD_A, real_B, fake_B, criterionGAN)["D"],
        "D_B": discriminator_loss(netD_B, real_A, fake_A, criterionGAN)["D"],
    }
