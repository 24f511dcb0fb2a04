"""StackGAN (Zhang et al., ICCV 2017): the networks of hanzhanggit/StackGAN-Pytorch ``code/model.py``.

A clean-room re-implementation with the official class names, module attribute names and
``nn.Sequential`` layouts, so the released COCO generator ``netG_epoch_90.pth`` loads with
``strict=True``. The official code reads a global ``cfg``; here every setting is a constructor
argument, named after its ``cfg`` key and defaulting to ``code/miscc/config.py``:

=====================  =======================  ==========  ============================
argument               official cfg key         default     COCO (``coco_eval.yml``)
=====================  =======================  ==========  ============================
``z_dim``              ``Z_DIM``                100         100
``gf_dim``             ``GAN.GF_DIM``           128         192
``df_dim``             ``GAN.DF_DIM``           64          96
``condition_dim``      ``GAN.CONDITION_DIM``    128         128
``r_num``              ``GAN.R_NUM``            4           2
``text_dim``           ``TEXT.DIMENSION``       1024        1024 (char-CNN-RNN embeddings)
=====================  =======================  ==========  ============================

Conventions and quirks kept from the official code:

* Images are ``(B, 3, H, W)`` float tensors in ``[-1, 1]`` (``Tanh``): 64×64 from Stage I,
  256×256 from Stage II. Text embeddings are ``(B, text_dim)`` float tensors.
* ``CA_NET`` applies ``ReLU`` to ``fc(text)`` *before* splitting it into ``mu`` and ``logvar``,
  so ``mu >= 0`` and ``logvar >= 0`` (``std >= 1``).
* Conditioning augmentation draws noise in every forward pass, also in eval mode. The official
  code draws ``torch.FloatTensor(B, C).normal_()`` from the global generator; here the noise is
  an explicit argument: pass ``ca_eps`` (the drawn values) or a ``torch.Generator``; with
  neither, it is drawn from the global generator as the official code does.
  ``c_code = ca_eps * exp(0.5 * logvar) + mu``.
* Stage I feeds ``cat(z, c_code)`` (noise first; AttnGAN puts the condition first).
* ``ResBlock`` is ``relu(block(x) + x)``.
* Stage II runs its (frozen) Stage-I generator, which draws its own CA noise first, detaches the
  64×64 image, encodes it to 16×16, then tiles its own ``c_code`` to 16×16 and concatenates it
  *after* the image code.
* The width of Stage I is ``8 * GAN.GF_DIM`` (attribute ``gf_dim``), of Stage II ``GAN.GF_DIM``.

Order: shared blocks, conditioning augmentation, Stage-I G and D, Stage-II G and D, presets.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = [
    "conv3x3",
    "upBlock",
    "ResBlock",
    "CA_NET",
    "D_GET_LOGITS",
    "STAGE1_G",
    "STAGE1_D",
    "STAGE2_G",
    "STAGE2_D",
    "coco_stage1_config",
    "coco_stage2_config",
]


# --------------------------------------------------------------------------------------
# Shared blocks
# --------------------------------------------------------------------------------------


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3×3 convolution, padding 1, no bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def upBlock(in_planes: int, out_planes: int) -> nn.Sequential:
    """×2 nearest upsampling, conv3x3, BatchNorm, ReLU. Keys ``1.weight`` (conv) and ``2.*`` (BN)."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        conv3x3(in_planes, out_planes),
        nn.BatchNorm2d(out_planes),
        nn.ReLU(True),
    )


class ResBlock(nn.Module):
    """``relu(block(x) + x)`` with ``block`` = conv3x3, BN, ReLU, conv3x3, BN (keys ``block.{0,1,3,4}``)."""

    def __init__(self, channel_num: int):
        super().__init__()
        self.block = nn.Sequential(
            conv3x3(channel_num, channel_num),
            nn.BatchNorm2d(channel_num),
            nn.ReLU(True),
            conv3x3(channel_num, channel_num),
            nn.BatchNorm2d(channel_num),
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.block(x) + x)


# --------------------------------------------------------------------------------------
# Conditioning augmentation (paper §3.1)
# --------------------------------------------------------------------------------------


def _draw_ca_noise(std: torch.Tensor, ca_eps: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
    if ca_eps is not None:
        if ca_eps.shape != std.shape:
            raise ValueError(f"ca_eps has shape {tuple(ca_eps.shape)}, expected {tuple(std.shape)}")
        return ca_eps.to(device=std.device, dtype=std.dtype)
    return torch.randn(std.shape, generator=generator, device=std.device, dtype=std.dtype)


class CA_NET(nn.Module):
    """Conditioning augmentation: text embedding ``(B, text_dim)`` → ``c_code, mu, logvar``, each ``(B, condition_dim)``.

    ``fc = Linear(text_dim, 2 * condition_dim)``; ``x = ReLU(fc(text))``; ``mu = x[:, :C]``,
    ``logvar = x[:, C:]`` (the official ReLU-before-split: both are ``>= 0``).
    """

    def __init__(self, text_dim: int = 1024, condition_dim: int = 128):
        super().__init__()
        self.t_dim = text_dim
        self.c_dim = condition_dim
        self.fc = nn.Linear(text_dim, condition_dim * 2, bias=True)
        self.relu = nn.ReLU()

    def encode(self, text_embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.relu(self.fc(text_embedding))
        return x[:, : self.c_dim], x[:, self.c_dim :]

    def reparametrize(
        self,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        ca_eps: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``c_code = eps * exp(0.5 * logvar) + mu`` with ``eps = ca_eps`` or N(0, 1) drawn from ``generator``."""
        std = torch.exp(0.5 * logvar)
        return _draw_ca_noise(std, ca_eps, generator) * std + mu

    def forward(
        self,
        text_embedding: torch.Tensor,
        ca_eps: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(text_embedding)
        return self.reparametrize(mu, logvar, ca_eps, generator), mu, logvar


class D_GET_LOGITS(nn.Module):
    """Discriminator head on the ``(B, 8*ndf, 4, 4)`` image code → ``(B,)`` probabilities (Sigmoid).

    With ``bcondition`` the condition ``(B, nef)`` is tiled to 4×4 and concatenated after the
    image code (``outlogits.{0,1}`` = conv3x3 + BN, ``outlogits.3`` = 4×4 stride-4 conv).
    """

    def __init__(self, ndf: int, nef: int, bcondition: bool = True):
        super().__init__()
        self.df_dim = ndf
        self.ef_dim = nef
        self.bcondition = bcondition
        if bcondition:
            self.outlogits = nn.Sequential(
                conv3x3(ndf * 8 + nef, ndf * 8),
                nn.BatchNorm2d(ndf * 8),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(ndf * 8, 1, kernel_size=4, stride=4),
                nn.Sigmoid(),
            )
        else:
            self.outlogits = nn.Sequential(nn.Conv2d(ndf * 8, 1, kernel_size=4, stride=4), nn.Sigmoid())

    def forward(self, h_code: torch.Tensor, c_code: torch.Tensor | None = None) -> torch.Tensor:
        if self.bcondition and c_code is not None:
            c_code = c_code.view(-1, self.ef_dim, 1, 1).repeat(1, 1, 4, 4)
            h_code = torch.cat((h_code, c_code), 1)
        return self.outlogits(h_code).view(-1)


# --------------------------------------------------------------------------------------
# Stage I (64×64)
# --------------------------------------------------------------------------------------


class STAGE1_G(nn.Module):
    """Stage-I generator: ``(text_embedding (B, text_dim), noise (B, z_dim))`` → 64×64 image.

    ``forward`` returns ``(None, fake_img (B, 3, 64, 64) in [-1, 1], mu, logvar)`` as the official
    code does. ``gf_dim`` is ``cfg.GAN.GF_DIM``; the network width ``self.gf_dim`` is 8× that.
    """

    def __init__(self, z_dim: int = 100, gf_dim: int = 128, condition_dim: int = 128, text_dim: int = 1024):
        super().__init__()
        self.gf_dim = gf_dim * 8
        self.ef_dim = condition_dim
        self.z_dim = z_dim
        ngf = self.gf_dim
        self.ca_net = CA_NET(text_dim, condition_dim)
        # (z, c) -> ngf x 4 x 4
        self.fc = nn.Sequential(
            nn.Linear(z_dim + condition_dim, ngf * 4 * 4, bias=False),
            nn.BatchNorm1d(ngf * 4 * 4),
            nn.ReLU(True),
        )
        self.upsample1 = upBlock(ngf, ngf // 2)  # 8 x 8
        self.upsample2 = upBlock(ngf // 2, ngf // 4)  # 16 x 16
        self.upsample3 = upBlock(ngf // 4, ngf // 8)  # 32 x 32
        self.upsample4 = upBlock(ngf // 8, ngf // 16)  # 64 x 64
        self.img = nn.Sequential(conv3x3(ngf // 16, 3), nn.Tanh())

    def forward(
        self,
        text_embedding: torch.Tensor,
        noise: torch.Tensor,
        ca_eps: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[None, torch.Tensor, torch.Tensor, torch.Tensor]:
        c_code, mu, logvar = self.ca_net(text_embedding, ca_eps, generator)
        h_code = self.fc(torch.cat((noise, c_code), 1)).view(-1, self.gf_dim, 4, 4)
        h_code = self.upsample4(self.upsample3(self.upsample2(self.upsample1(h_code))))
        return None, self.img(h_code), mu, logvar


def _encode_img(ndf: int, depth: int) -> list[nn.Module]:
    """The strided 4×4 conv stack of the discriminators: 3 → ndf → 2ndf → … → ``2**(depth-1)`` ndf."""
    layers: list[nn.Module] = [nn.Conv2d(3, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
    for i in range(1, depth):
        layers += [
            nn.Conv2d(ndf * 2 ** (i - 1), ndf * 2**i, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2**i),
            nn.LeakyReLU(0.2, inplace=True),
        ]
    return layers


class STAGE1_D(nn.Module):
    """Stage-I discriminator: image ``(B, 3, 64, 64)`` → image code ``(B, 8*df_dim, 4, 4)``.

    The logits come from ``get_cond_logits(img_code, mu)``; Stage I has no unconditional head
    (``get_uncond_logits = None``).
    """

    def __init__(self, df_dim: int = 64, condition_dim: int = 128):
        super().__init__()
        self.df_dim = df_dim
        self.ef_dim = condition_dim
        self.encode_img = nn.Sequential(*_encode_img(df_dim, 4))
        self.get_cond_logits = D_GET_LOGITS(df_dim, condition_dim)
        self.get_uncond_logits = None

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encode_img(image)


# --------------------------------------------------------------------------------------
# Stage II (256×256)
# --------------------------------------------------------------------------------------


class STAGE2_G(nn.Module):
    """Stage-II generator on top of a frozen Stage-I generator (registered as ``STAGE1_G``).

    ``forward(text_embedding (B, text_dim), noise (B, z_dim))`` returns
    ``(stage1_img (B, 3, 64, 64), fake_img (B, 3, 256, 256), mu, logvar)``, images in ``[-1, 1]``,
    ``mu``/``logvar`` of the Stage-II ``ca_net``. Two CA draws happen, Stage I's first:
    ``ca_eps_stage1`` and ``ca_eps_stage2`` inject them (or both come from ``generator``).
    """

    def __init__(
        self,
        STAGE1_G: STAGE1_G,
        gf_dim: int = 128,
        condition_dim: int = 128,
        z_dim: int = 100,
        r_num: int = 4,
        text_dim: int = 1024,
    ):
        super().__init__()
        self.gf_dim = gf_dim
        self.ef_dim = condition_dim
        self.z_dim = z_dim
        self.STAGE1_G = STAGE1_G
        for param in self.STAGE1_G.parameters():  # Stage I is fixed while Stage II trains
            param.requires_grad = False
        ngf = gf_dim
        self.ca_net = CA_NET(text_dim, condition_dim)
        # 3 x 64 x 64 -> 4ngf x 16 x 16
        self.encoder = nn.Sequential(
            conv3x3(3, ngf),
            nn.ReLU(True),
            nn.Conv2d(ngf, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.Conv2d(ngf * 2, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
        )
        self.hr_joint = nn.Sequential(conv3x3(condition_dim + ngf * 4, ngf * 4), nn.BatchNorm2d(ngf * 4), nn.ReLU(True))
        self.residual = nn.Sequential(*[ResBlock(ngf * 4) for _ in range(r_num)])
        self.upsample1 = upBlock(ngf * 4, ngf * 2)  # 32 x 32
        self.upsample2 = upBlock(ngf * 2, ngf)  # 64 x 64
        self.upsample3 = upBlock(ngf, ngf // 2)  # 128 x 128
        self.upsample4 = upBlock(ngf // 2, ngf // 4)  # 256 x 256
        self.img = nn.Sequential(conv3x3(ngf // 4, 3), nn.Tanh())

    def forward(
        self,
        text_embedding: torch.Tensor,
        noise: torch.Tensor,
        ca_eps_stage1: torch.Tensor | None = None,
        ca_eps_stage2: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        _, stage1_img, _, _ = self.STAGE1_G(text_embedding, noise, ca_eps_stage1, generator)
        stage1_img = stage1_img.detach()
        encoded_img = self.encoder(stage1_img)

        c_code, mu, logvar = self.ca_net(text_embedding, ca_eps_stage2, generator)
        c_code = c_code.view(-1, self.ef_dim, 1, 1).repeat(1, 1, 16, 16)
        h_code = self.hr_joint(torch.cat([encoded_img, c_code], 1))
        h_code = self.residual(h_code)
        h_code = self.upsample4(self.upsample3(self.upsample2(self.upsample1(h_code))))
        return stage1_img, self.img(h_code), mu, logvar


class STAGE2_D(nn.Module):
    """Stage-II discriminator: image ``(B, 3, 256, 256)`` → image code ``(B, 8*df_dim, 4, 4)``.

    Heads: ``get_cond_logits(img_code, mu)`` and ``get_uncond_logits(img_code)``.
    """

    def __init__(self, df_dim: int = 64, condition_dim: int = 128):
        super().__init__()
        ndf = df_dim
        self.df_dim = df_dim
        self.ef_dim = condition_dim
        self.encode_img = nn.Sequential(
            *_encode_img(ndf, 6),  # 4 x 4 x 32ndf
            conv3x3(ndf * 32, ndf * 16),
            nn.BatchNorm2d(ndf * 16),
            nn.LeakyReLU(0.2, inplace=True),
            conv3x3(ndf * 16, ndf * 8),
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.get_cond_logits = D_GET_LOGITS(ndf, condition_dim, bcondition=True)
        self.get_uncond_logits = D_GET_LOGITS(ndf, condition_dim, bcondition=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encode_img(image)


# --------------------------------------------------------------------------------------
# Presets (the released COCO configuration, ``code/cfg/coco_*.yml``)
# --------------------------------------------------------------------------------------


def coco_stage1_config() -> dict:
    """``STAGE1_G`` kwargs of ``coco_s1.yml``: GF_DIM 192 (width 1536), CONDITION_DIM 128, Z_DIM 100."""
    return dict(z_dim=100, gf_dim=192, condition_dim=128, text_dim=1024)


def coco_stage2_config() -> dict:
    """``STAGE2_G`` kwargs of ``coco_eval.yml`` (the released ``netG_epoch_90.pth``): GF_DIM 192, R_NUM 2."""
    return dict(z_dim=100, gf_dim=192, condition_dim=128, r_num=2, text_dim=1024)
