"""Latent decoding: from a diffusion model's state space to images in [-1, 1].

A latent diffusion model (DiT, LDM, Stable Diffusion) samples in the latent space of an autoencoder;
a pixel-space model samples images directly. Samplers return ``x_0`` in the model's space and a
:class:`LatentDecoder` turns it into images:

* :class:`IdentityDecoder`: pixel-space models (cgmbench's tiny DiTs at 32x32); ``decode(x) = x``.
* :class:`SDKLDecoder`: the Stable Diffusion KL-f8 VAE (``baselines.ldm.AutoencoderKL``) with the latent
  scale 0.18215, as DiT uses it (``vae.decode(z / 0.18215)``). DiT's official sampling scripts use
  ``stabilityai/sd-vae-ft-ema`` (``sample_ddp.py``, the FID-50K numbers) or ``sd-vae-ft-mse``
  (``sample.py``); both have the SD 1.x KL-f8 architecture.

Conventions: latents ``(N, C, h, w)`` float; images ``(N, 3, h * f, w * f)`` float in [-1, 1] (not
clamped: :func:`cgmbench.generator.to_uint8` clamps), ``f = downsample_factor``. Encoders are not
needed for sampling and are not part of this interface.

This module defines no weight files: a baseline resolves the VAE weights (``cgmbench.weights.resolve``)
and passes the path to :meth:`SDKLDecoder.from_file`, which reads CompVis naming (``encoder.*``,
``decoder.*``, ``quant_conv``, ``post_quant_conv``; an optional ``first_stage_model.`` prefix) and
diffusers naming (``encoder.down_blocks.*`` ... , the layout of the hub's ``sd-vae-ft-ema``
``diffusion_pytorch_model.safetensors``), converting the latter.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

import torch

from baselines.common.kl_vae import SD1_VAE_CONFIG, AutoencoderKL
from baselines.common.state_dict import load_state_dict_strict, read_state_dict_file

__all__ = ["LatentDecoder", "IdentityDecoder", "SDKLDecoder", "SD_VAE_SCALE_FACTOR", "diffusers_vae_to_compvis"]

#: Stable Diffusion 1.x latent scale (LatentDiffusion ``scale_factor``), used by DiT as well.
SD_VAE_SCALE_FACTOR = 0.18215


class LatentDecoder(ABC):
    """Maps diffusion latents to images in [-1, 1] (see the module docstring for the conventions)."""

    #: latents are ``scale_factor * encoder(image)``; decoding divides by it first
    scale_factor: float = 1.0
    #: image side / latent side
    downsample_factor: int = 1
    #: latent channels the decoder expects
    latent_channels: int = 3
    #: a short name recorded with runs (e.g. "identity", "sd-vae-ft-ema")
    name: str = "decoder"

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``(N, C, h, w)`` latents -> ``(N, 3, h * f, w * f)`` float images in [-1, 1]."""

    def to(self, device) -> "LatentDecoder":
        return self

    def latent_size(self, image_size: int) -> int:
        if image_size % self.downsample_factor:
            raise ValueError(f"image size {image_size} is not a multiple of the decoder's factor "
                             f"{self.downsample_factor}")
        return image_size // self.downsample_factor


class IdentityDecoder(LatentDecoder):
    """Pixel-space models: the sample already is the image (3 channels in [-1, 1])."""

    name = "identity"

    def __init__(self, channels: int = 3):
        self.latent_channels = channels

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.ndim != 4 or latents.shape[1] != 3:
            raise ValueError(f"IdentityDecoder needs (N, 3, H, W) samples, got {tuple(latents.shape)}")
        return latents


class SDKLDecoder(LatentDecoder):
    """The Stable Diffusion KL autoencoder's decoder: ``vae.decode(z / scale_factor)``.

    Args:
        vae: a ``baselines.ldm.AutoencoderKL`` with loaded weights.
        scale_factor: the latent scale (0.18215 for SD 1.x and DiT).
        name: recorded with runs.
    """

    def __init__(self, vae: torch.nn.Module, scale_factor: float = SD_VAE_SCALE_FACTOR, name: str = "sd-vae"):
        self.vae = vae.eval().requires_grad_(False)
        self.scale_factor = float(scale_factor)
        self.name = name
        ch_mult = vae.decoder.num_resolutions if hasattr(vae.decoder, "num_resolutions") else None
        self.downsample_factor = 2 ** (ch_mult - 1) if ch_mult else 8
        self.latent_channels = int(vae.post_quant_conv.in_channels)

    @classmethod
    def from_file(cls, path: str | Path, config: Mapping | None = None, scale_factor: float = SD_VAE_SCALE_FACTOR,
                  name: str = "sd-vae", device: str = "cpu") -> "SDKLDecoder":
        """Build ``AutoencoderKL(**config)`` (default: SD 1.x KL-f8) and load ``path`` strictly.

        Reads ``.safetensors`` or a plain-tensor torch file (``torch.load(weights_only=True)``; a Lightning
        ``state_dict`` wrapper is unwrapped). Diffusers naming is converted (:func:`diffusers_vae_to_compvis`).
        Raises ``ValueError`` naming the first mismatching keys.
        """

        state_dict = read_state_dict_file(path)
        state_dict = _compvis_vae_state_dict(state_dict)
        with torch.device("meta"):
            vae = AutoencoderKL(**(config or SD1_VAE_CONFIG))
        load_state_dict_strict(vae, state_dict, f"AutoencoderKL ({Path(path).name})", assign=True)
        return cls(vae.float().to(device), scale_factor=scale_factor, name=name)

    def to(self, device) -> "SDKLDecoder":
        self.vae.to(device)
        return self

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents / self.scale_factor)


# ----------------------------------------------------------------------------- naming


def _compvis_vae_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CompVis-named VAE weights from either naming (``first_stage_model.`` prefix stripped)."""
    sd = {k[len("first_stage_model."):] if k.startswith("first_stage_model.") else k: v
          for k, v in state_dict.items()}
    if any(".down_blocks." in k or ".up_blocks." in k or ".mid_block." in k for k in sd):
        sd = diffusers_vae_to_compvis(sd)
    return sd


_DIFFUSERS_ATTN = {"group_norm": "norm", "to_q": "q", "query": "q", "to_k": "k", "key": "k", "to_v": "v",
                   "value": "v", "to_out.0": "proj_out", "proj_attn": "proj_out"}


def diffusers_vae_to_compvis(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Diffusers ``AutoencoderKL`` naming -> CompVis naming (the inverse of diffusers' ``convert_ldm_vae_checkpoint``).

    ``down_blocks.i.resnets.j`` -> ``down.i.block.j``; ``down_blocks.i.downsamplers.0`` -> ``down.i.downsample``;
    ``up_blocks.i`` -> ``up.(n-1-i)`` (diffusers lists the decoder levels from the lowest resolution);
    ``mid_block.resnets.{0,1}`` -> ``mid.block_{1,2}``; ``mid_block.attentions.0.{group_norm, to_q|query,
    to_k|key, to_v|value, to_out.0|proj_attn}`` -> ``mid.attn_1.{norm, q, k, v, proj_out}`` with the Linear
    weights ``(C, C)`` reshaped to 1x1 convolutions ``(C, C, 1, 1)``; ``conv_shortcut`` -> ``nin_shortcut``;
    ``conv_norm_out`` -> ``norm_out``. Unknown keys raise ``ValueError``.
    """
    n_up = 1 + max((int(m.group(1)) for k in state_dict if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", k))),
                   default=-1)
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new = key
        m = re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)$", key)
        if m:
            part = _DIFFUSERS_ATTN.get(m.group(2))
            if part is None:
                raise ValueError(f"cannot map diffusers VAE key {key!r} to CompVis naming")
            new = f"{m.group(1)}.mid.attn_1.{part}.{m.group(3)}"
            if part != "norm" and m.group(3) == "weight" and value.ndim == 2:
                value = value[:, :, None, None]
            out[new] = value
            continue
        new = re.sub(r"^(encoder|decoder)\.mid_block\.resnets\.(\d)\.",
                     lambda g: f"{g.group(1)}.mid.block_{int(g.group(2)) + 1}.", new)
        new = re.sub(r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r"encoder.down.\1.block.\2.", new)
        new = re.sub(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", new)
        new = re.sub(r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.",
                     lambda g: f"decoder.up.{n_up - 1 - int(g.group(1))}.block.{g.group(2)}.", new)
        new = re.sub(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                     lambda g: f"decoder.up.{n_up - 1 - int(g.group(1))}.upsample.", new)
        new = new.replace(".conv_shortcut.", ".nin_shortcut.")
        new = re.sub(r"^(encoder|decoder)\.conv_norm_out\.", r"\1.norm_out.", new)
        if ("_blocks." in new or "mid_block" in new) or not re.match(
                r"^(encoder|decoder|quant_conv|post_quant_conv)(\.|$)", new):
            raise ValueError(f"cannot map diffusers VAE key {key!r} to CompVis naming")
        out[new] = value
    return out

from . import weights as _weights  # noqa: E402,F401  (registers the SD VAE file)
