"""The LDM KL autoencoder (Stable Diffusion 1.x VAE, ``kl-f8`` family), in CompVis naming.

Clean-room re-implementation of ``AutoencoderKL`` (``ldm/models/autoencoder.py``), its
``Encoder``/``Decoder`` (``ldm/modules/diffusionmodules/model.py``) and
``DiagonalGaussianDistribution`` (``ldm/modules/distributions/distributions.py``), so that the
``first_stage_model.*`` part of an SD 1.x ``.ckpt`` loads with ``strict=True`` once the prefix is
stripped.

Conventions
-----------
* Images ``x``: (B, in_channels, H, W) in [-1, 1].
* Latents ``z``: (B, embed_dim, H/f, W/f) with ``f = 2**(len(ch_mult)-1)`` (8 for SD 1.x).
* The latent scale of Stable Diffusion (:data:`SD_LATENT_SCALE` = 0.18215, LatentDiffusion's
  ``scale_factor``) is applied OUTSIDE this module: the diffusion model sees
  ``SD_LATENT_SCALE * vae.encode(x).sample()``, and ``vae.decode(z_diffusion / SD_LATENT_SCALE)``
  gives the image.

Naming: ``encoder.{conv_in, down.N.block.M, down.N.attn.M, down.N.downsample.conv, mid.block_1,
mid.attn_1 (1×1 conv q, k, v, proj_out), mid.block_2, norm_out, conv_out}``, ``decoder.{conv_in,
mid.*, up.N.block.M, up.N.attn.M, up.N.upsample.conv, norm_out, conv_out}``, ``quant_conv``,
``post_quant_conv``. ResnetBlock: ``norm1, conv1, [temb_proj], norm2, conv2,
[nin_shortcut | conv_shortcut]``. All normalisations are ``GroupNorm(32, C, eps=1e-6)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "SD_LATENT_SCALE",
    "Normalize",
    "ResnetBlock",
    "AttnBlock",
    "Upsample",
    "Downsample",
    "Encoder",
    "Decoder",
    "DiagonalGaussianDistribution",
    "AutoencoderKL",
]

#: Stable Diffusion 1.x latent scale (LatentDiffusion ``scale_factor``), applied outside the VAE.
SD_LATENT_SCALE = 0.18215


def Normalize(in_channels: int, num_groups: int = 32) -> nn.GroupNorm:  # noqa: N802 (official name)
    """``GroupNorm(num_groups, in_channels, eps=1e-6, affine=True)``."""
    return nn.GroupNorm(num_groups=num_groups, num_channels=in_channels, eps=1e-6, affine=True)


def nonlinearity(x: torch.Tensor) -> torch.Tensor:
    """Swish / SiLU: ``x · sigmoid(x)``."""
    return F.silu(x)


class Upsample(nn.Module):
    """Nearest ×2 upsampling followed (``with_conv``) by a 3×3 conv ``conv``."""

    def __init__(self, in_channels: int, with_conv: bool):
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.with_conv else x


class Downsample(nn.Module):
    """×2 downsampling: asymmetric zero padding (right and bottom by 1) then a stride-2 3×3 conv
    with no padding (``with_conv``), else 2×2 average pooling."""

    def __init__(self, in_channels: int, with_conv: bool):
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x):
        if self.with_conv:
            return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))
        return F.avg_pool2d(x, kernel_size=2, stride=2)


class ResnetBlock(nn.Module):
    """``x' + conv2(drop(silu(norm2(conv1(silu(norm1(x))) [+ temb_proj(silu(temb))]))))``, where
    ``x'`` is ``x`` or its 1×1 (``nin_shortcut``) / 3×3 (``conv_shortcut``) projection when the
    channel count changes. The autoencoder uses ``temb_channels=0`` (no ``temb_proj``)."""

    def __init__(self, *, in_channels, out_channels=None, conv_shortcut=False, dropout, temb_channels=512):
        super().__init__()
        self.in_channels = in_channels
        out_channels = in_channels if out_channels is None else out_channels
        self.out_channels = out_channels
        self.use_conv_shortcut = conv_shortcut

        self.norm1 = Normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        if temb_channels > 0:
            self.temb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = Normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        if in_channels != out_channels:
            if conv_shortcut:
                self.conv_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
            else:
                self.nin_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0)

    def forward(self, x, temb=None):
        h = self.conv1(nonlinearity(self.norm1(x)))
        if temb is not None:
            h = h + self.temb_proj(nonlinearity(temb))[:, :, None, None]
        h = self.conv2(self.dropout(nonlinearity(self.norm2(h))))
        if self.in_channels != self.out_channels:
            x = self.conv_shortcut(x) if self.use_conv_shortcut else self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the H·W positions, ``x + proj_out(attn)``; ``q``, ``k``,
    ``v``, ``proj_out`` are 1×1 Conv2d (weights (C, C, 1, 1)), scale 1/√C."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.in_channels = in_channels
        self.norm = Normalize(in_channels)
        self.q = nn.Conv2d(in_channels, in_channels, kernel_size=1, stride=1, padding=0)
        self.k = nn.Conv2d(in_channels, in_channels, kernel_size=1, stride=1, padding=0)
        self.v = nn.Conv2d(in_channels, in_channels, kernel_size=1, stride=1, padding=0)
        self.proj_out = nn.Conv2d(in_channels, in_channels, kernel_size=1, stride=1, padding=0)

    def forward(self, x):
        h_ = self.norm(x)
        b, c, h, w = x.shape
        q, k, v = (t.reshape(b, 1, c, h * w).transpose(2, 3) for t in (self.q(h_), self.k(h_), self.v(h_)))
        out = F.scaled_dot_product_attention(q, k, v)  # (B, 1, HW, C)
        out = out.transpose(2, 3).reshape(b, c, h, w)
        return x + self.proj_out(out)


def make_attn(in_channels: int, attn_type: str = "vanilla") -> nn.Module:
    """Attention layer of the autoencoder: ``'vanilla'`` (:class:`AttnBlock`) or ``'none'``."""
    if attn_type == "vanilla":
        return AttnBlock(in_channels)
    if attn_type == "none":
        return nn.Identity()
    raise ValueError(f"attn_type {attn_type!r} is not supported; use 'vanilla' or 'none'")


class Encoder(nn.Module):
    """Image (B, in_channels, R, R) → moments (B, 2·z_channels if double_z else z_channels, R/f, R/f).

    ``len(ch_mult)`` levels of ``num_res_blocks`` ResnetBlocks (``ch·ch_mult[i]`` channels, an
    AttnBlock after each when the current resolution is in ``attn_resolutions``), a Downsample
    after every level but the last; then mid (block_1, attn_1, block_2), norm_out, SiLU, conv_out.
    """

    def __init__(self, *, ch, out_ch, ch_mult=(1, 2, 4, 8), num_res_blocks, attn_resolutions, dropout=0.0,
                 resamp_with_conv=True, in_channels, resolution, z_channels, double_z=True,
                 use_linear_attn=False, attn_type="vanilla", **ignore_kwargs):
        super().__init__()
        if use_linear_attn:
            raise ValueError("use_linear_attn=True is not supported (no released checkpoint uses it)")
        self.ch = ch
        self.temb_ch = 0
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        self.resolution = resolution
        self.in_channels = in_channels

        self.conv_in = nn.Conv2d(in_channels, ch, kernel_size=3, stride=1, padding=1)
        curr_res = resolution
        in_ch_mult = (1,) + tuple(ch_mult)
        self.in_ch_mult = in_ch_mult
        self.down = nn.ModuleList()
        for i_level in range(self.num_resolutions):
            block, attn = nn.ModuleList(), nn.ModuleList()
            block_in, block_out = ch * in_ch_mult[i_level], ch * ch_mult[i_level]
            for _ in range(num_res_blocks):
                block.append(ResnetBlock(in_channels=block_in, out_channels=block_out,
                                         temb_channels=self.temb_ch, dropout=dropout))
                block_in = block_out
                if curr_res in attn_resolutions:
                    attn.append(make_attn(block_in, attn_type))
            down = nn.Module()
            down.block = block
            down.attn = attn
            if i_level != self.num_resolutions - 1:
                down.downsample = Downsample(block_in, resamp_with_conv)
                curr_res //= 2
            self.down.append(down)

        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(in_channels=block_in, out_channels=block_in,
                                       temb_channels=self.temb_ch, dropout=dropout)
        self.mid.attn_1 = make_attn(block_in, attn_type)
        self.mid.block_2 = ResnetBlock(in_channels=block_in, out_channels=block_in,
                                       temb_channels=self.temb_ch, dropout=dropout)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, 2 * z_channels if double_z else z_channels,
                                  kernel_size=3, stride=1, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for i_level, down in enumerate(self.down):
            for i_block in range(self.num_res_blocks):
                h = down.block[i_block](h, None)
                if len(down.attn) > 0:
                    h = down.attn[i_block](h)
            if i_level != self.num_resolutions - 1:
                h = down.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h, None)), None)
        return self.conv_out(nonlinearity(self.norm_out(h)))


class Decoder(nn.Module):
    """Latent (B, z_channels, R/f, R/f) → image (B, out_ch, R, R); mirror of :class:`Encoder` with
    ``num_res_blocks + 1`` ResnetBlocks per level. ``up`` is indexed by level (``up.0`` is the
    full-resolution level, run last); ``give_pre_end`` returns the features before norm_out,
    ``tanh_out`` squashes the output."""

    def __init__(self, *, ch, out_ch, ch_mult=(1, 2, 4, 8), num_res_blocks, attn_resolutions, dropout=0.0,
                 resamp_with_conv=True, in_channels, resolution, z_channels, give_pre_end=False, tanh_out=False,
                 use_linear_attn=False, attn_type="vanilla", **ignorekwargs):
        super().__init__()
        if use_linear_attn:
            raise ValueError("use_linear_attn=True is not supported (no released checkpoint uses it)")
        self.ch = ch
        self.temb_ch = 0
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        self.resolution = resolution
        self.in_channels = in_channels
        self.give_pre_end = give_pre_end
        self.tanh_out = tanh_out

        block_in = ch * ch_mult[-1]
        curr_res = resolution // 2 ** (self.num_resolutions - 1)
        self.z_shape = (1, z_channels, curr_res, curr_res)
        self.conv_in = nn.Conv2d(z_channels, block_in, kernel_size=3, stride=1, padding=1)

        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(in_channels=block_in, out_channels=block_in,
                                       temb_channels=self.temb_ch, dropout=dropout)
        self.mid.attn_1 = make_attn(block_in, attn_type)
        self.mid.block_2 = ResnetBlock(in_channels=block_in, out_channels=block_in,
                                       temb_channels=self.temb_ch, dropout=dropout)

        ups = []
        for i_level in reversed(range(self.num_resolutions)):
            block, attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * ch_mult[i_level]
            for _ in range(num_res_blocks + 1):
                block.append(ResnetBlock(in_channels=block_in, out_channels=block_out,
                                         temb_channels=self.temb_ch, dropout=dropout))
                block_in = block_out
                if curr_res in attn_resolutions:
                    attn.append(make_attn(block_in, attn_type))
            up = nn.Module()
            up.block = block
            up.attn = attn
            if i_level != 0:
                up.upsample = Upsample(block_in, resamp_with_conv)
                curr_res *= 2
            ups.insert(0, up)  # keep ``up`` indexed by level
        self.up = nn.ModuleList(ups)

        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, kernel_size=3, stride=1, padding=1)

    def forward(self, z):
        self.last_z_shape = z.shape
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h, None)), None)
        for i_level in reversed(range(self.num_resolutions)):
            up = self.up[i_level]
            for i_block in range(self.num_res_blocks + 1):
                h = up.block[i_block](h, None)
                if len(up.attn) > 0:
                    h = up.attn[i_block](h)
            if i_level != 0:
                h = up.upsample(h)
        if self.give_pre_end:
            return h
        h = self.conv_out(nonlinearity(self.norm_out(h)))
        return torch.tanh(h) if self.tanh_out else h


class DiagonalGaussianDistribution:
    """Posterior N(mean, diag(exp(logvar))) from moments (B, 2·C, h, w) = [mean | logvar] on dim 1.

    ``logvar`` is clamped to [-30, 20]; ``std = exp(logvar/2)``; ``deterministic=True`` zeroes the
    variance. ``sample(generator)`` draws ``mean + std·ε``; ``mode()`` is the mean.
    """

    def __init__(self, parameters: torch.Tensor, deterministic: bool = False):
        if parameters.dim() < 2 or parameters.shape[1] % 2:
            raise ValueError(f"moments must have an even channel dimension, got shape {tuple(parameters.shape)}")
        self.parameters = parameters
        self.mean, logvar = torch.chunk(parameters, 2, dim=1)
        self.logvar = torch.clamp(logvar, -30.0, 20.0)
        self.deterministic = deterministic
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)
        if deterministic:
            self.var = self.std = torch.zeros_like(self.mean)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self, other: DiagonalGaussianDistribution | None = None) -> torch.Tensor:
        """KL(self ‖ other) summed over (C, h, w); ``other=None`` means N(0, I). Shape (B,)."""
        if self.deterministic:
            return torch.zeros(self.mean.shape[0], device=self.mean.device)
        if other is None:
            return 0.5 * torch.sum(self.mean.pow(2) + self.var - 1.0 - self.logvar, dim=[1, 2, 3])
        return 0.5 * torch.sum(
            (self.mean - other.mean).pow(2) / other.var + self.var / other.var - 1.0 - self.logvar + other.logvar,
            dim=[1, 2, 3],
        )

    def nll(self, sample: torch.Tensor, dims=(1, 2, 3)) -> torch.Tensor:
        """Negative log-likelihood of ``sample``, summed over ``dims``."""
        if self.deterministic:
            return torch.zeros(self.mean.shape[0], device=self.mean.device)
        log2pi = torch.log(torch.tensor(2.0 * torch.pi, dtype=self.mean.dtype, device=self.mean.device))
        return 0.5 * torch.sum(log2pi + self.logvar + (sample - self.mean).pow(2) / self.var, dim=list(dims))


class AutoencoderKL(nn.Module):
    """KL-regularised autoencoder (inference part of CompVis ``AutoencoderKL``).

    ``encode(x)`` → :class:`DiagonalGaussianDistribution` of ``quant_conv(encoder(x))``;
    ``decode(z)`` = ``decoder(post_quant_conv(z))``; ``forward(x, sample_posterior=True)`` →
    ``(decode(z), posterior)`` with ``z`` a posterior sample (or its mode).

    ``lossconfig`` is accepted for config compatibility and must be ``None`` or
    ``{'target': 'torch.nn.Identity'}`` (SD 1.x): the training loss (LPIPS + discriminator) is not
    part of this module, so a training checkpoint's ``loss.*`` keys must be dropped explicitly.
    """

    def __init__(self, ddconfig: Mapping, embed_dim: int, lossconfig: Mapping | None = None, **ignored):
        super().__init__()
        unknown = set(ignored) - {"ckpt_path", "ignore_keys", "image_key", "colorize_nlabels", "monitor"}
        if unknown:
            raise ValueError(f"unknown AutoencoderKL arguments: {sorted(unknown)}")
        if ignored.get("ckpt_path"):
            raise ValueError("ckpt_path is not supported here; load weights with load_state_dict")
        if lossconfig is not None and dict(lossconfig).get("target") != "torch.nn.Identity":
            raise ValueError(
                f"lossconfig {dict(lossconfig)!r} is not supported: only the inference model is built "
                "(use None or {'target': 'torch.nn.Identity'})"
            )
        if not ddconfig.get("double_z", True):
            raise ValueError("AutoencoderKL needs ddconfig['double_z']=True (mean and logvar)")
        self.embed_dim = embed_dim
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        z_channels = ddconfig["z_channels"]
        self.quant_conv = nn.Conv2d(2 * z_channels, 2 * embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)

    def encode(self, x: torch.Tensor) -> DiagonalGaussianDistribution:
        return DiagonalGaussianDistribution(self.quant_conv(self.encoder(x)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))

    def forward(self, input: torch.Tensor, sample_posterior: bool = True,
                generator: torch.Generator | None = None):
        posterior = self.encode(input)
        z = posterior.sample(generator) if sample_posterior else posterior.mode()
        return self.decode(z), posterior


#: ``v1-inference.yaml`` ``first_stage_config.params`` (KL-f8, 4 latent channels); verified
#: against ``manifest_sd1_vae_kl-f8_compvis.json``. Use as ``AutoencoderKL(**SD1_VAE_CONFIG)``.
SD1_VAE_CONFIG: dict = dict(
    embed_dim=4,
    ddconfig=dict(
        double_z=True,
        z_channels=4,
        resolution=256,
        in_channels=3,
        out_ch=3,
        ch=128,
        ch_mult=(1, 2, 4, 4),
        num_res_blocks=2,
        attn_resolutions=(),
        dropout=0.0,
    ),
)
