"""Strict loading of the official editing U-Net layouts, and their inputs.

Both are the Stable Diffusion 1.x CompVis U-Net (:class:`baselines.ldm.unet.UNetModel`, ``SD1_UNET_CONFIG``) with
more input channels, in a LatentDiffusion checkpoint (``model.diffusion_model.``, ``first_stage_model.``,
``cond_stage_model.`` prefixes; :func:`baselines.ldm.checkpoints.load_compvis_unet_vae`):

``sd-v1-5-inpainting`` (runwayml ``sd-v1-5-inpainting.ckpt``, ``configs/stable-diffusion/v1-inpainting-inference.yaml``)
    ``in_channels = 9``: the noisy latent (4), the edit mask downsampled to the latent size (1, 1 = fill), and the
    latent of the masked image (4; ``image * (mask < 0.5)`` in ``[-1, 1]``, encoded and scaled by 0.18215), in that
    order (``LatentInpaintDiffusion`` ``concat_keys = ("mask", "masked_image")``; diffusers
    ``torch.cat([latents, mask, masked_image_latents], dim=1)``): :func:`inpaint_unet_input`.
``instruct-pix2pix`` (timothybrooks ``instruct-pix2pix-00-22000.ckpt``, ``configs/generate.yaml``)
    ``in_channels = 8``: the noisy latent (4) and the source image's latent (4; the first stage's posterior *mode*,
    **not** multiplied by the scale factor, as ``encode_first_stage(x).mode()`` in ``edit_cli.py``):
    :func:`ip2p_unet_input`. Dual classifier-free guidance: :func:`dual_cfg`.

A file of the other layout (or a plain 4-channel text-to-image one) is refused with a one-line error naming the
layout it has; any other missing, unexpected or mis-shaped key too (strict).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F

from baselines.ldm.checkpoints import SD1_UNET_CONFIG, SD1_VAE_CONFIG, load_compvis_unet_vae, load_ldm_checkpoint
from cgmbench.errors import CgmbenchError

SD_INPAINTING_UNET_CONFIG: dict = dict(SD1_UNET_CONFIG, in_channels=9)
IP2P_UNET_CONFIG: dict = dict(SD1_UNET_CONFIG, in_channels=8)
LAYOUTS = {9: "sd-v1-5-inpainting (9 input channels)", 8: "instruct-pix2pix (8 input channels)",
           4: "a text-to-image SD 1.x U-Net (4 input channels)"}
FIRST_CONV = "model.diffusion_model.input_blocks.0.0.weight"


def _load(checkpoint, unet_config: Mapping, vae_config: Mapping, want: int, name: str, **kw):
    sd = checkpoint if isinstance(checkpoint, Mapping) else load_ldm_checkpoint(Path(checkpoint))
    conv = sd.get(FIRST_CONV)
    if conv is None:
        raise CgmbenchError(f"{name}: no {FIRST_CONV} in the checkpoint: not a LatentDiffusion U-Net file")
    got = int(conv.shape[1])
    if got != want:
        raise CgmbenchError(f"{name}: the checkpoint's U-Net takes {got} input channels, "
                            f"{LAYOUTS.get(got, 'an unknown layout')}; {LAYOUTS[want]} expected")
    config = dict(unet_config, in_channels=want)
    try:
        return load_compvis_unet_vae(sd, config, vae_config, **kw)
    except ValueError as e:
        raise CgmbenchError(f"{name}: {e}") from None


def load_sd_inpainting(checkpoint, unet_config: Mapping = SD_INPAINTING_UNET_CONFIG,
                       vae_config: Mapping = SD1_VAE_CONFIG, **kw):
    """``(unet, vae, parts)`` of an ``sd-v1-5-inpainting`` checkpoint (path or state dict), loaded strictly.
    ``unet_config``/``vae_config`` default to the released ones (tests pass tiny ones of the same layout)."""
    return _load(checkpoint, unet_config, vae_config, 9, "sd-v1-5-inpainting", **kw)


def load_instruct_pix2pix(checkpoint, unet_config: Mapping = IP2P_UNET_CONFIG,
                          vae_config: Mapping = SD1_VAE_CONFIG, **kw):
    """``(unet, vae, parts)`` of an InstructPix2Pix checkpoint (path or state dict), loaded strictly."""
    return _load(checkpoint, unet_config, vae_config, 8, "instruct-pix2pix", **kw)


def inpaint_unet_input(z_t: torch.Tensor, mask: torch.Tensor, masked_image_latent: torch.Tensor) -> torch.Tensor:
    """The 9-channel input: ``cat([z_t, mask at latent size, masked-image latent])``.

    ``mask``: float ``[B, 1, H, W]`` at image size (1 = fill), resized to the latent size by nearest-neighbour
    interpolation (diffusers ``prepare_mask_latents``; the runwayml script resizes the same way).
    """
    m = F.interpolate(mask.float(), size=z_t.shape[-2:], mode="nearest") if mask.shape[-2:] != z_t.shape[-2:] \
        else mask.float()
    return torch.cat([z_t, m.to(z_t.dtype), masked_image_latent.to(z_t.dtype)], dim=1)


def masked_image(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``image * (mask < 0.5)``: the source in ``[-1, 1]`` with the fill region set to 0 (runwayml/diffusers)."""
    return image * (mask < 0.5).to(image.dtype)


def ip2p_unet_input(z_t: torch.Tensor, image_latent: torch.Tensor) -> torch.Tensor:
    """The 8-channel input ``cat([z_t, image_latent])`` (the unconditional image is a zero latent)."""
    return torch.cat([z_t, image_latent.to(z_t.dtype)], dim=1)


def dual_cfg(e_full: torch.Tensor, e_image: torch.Tensor, e_uncond: torch.Tensor, guidance_scale: float,
             image_guidance_scale: float) -> torch.Tensor:
    """InstructPix2Pix's guidance, in the reference's form (``edit_cli.py`` ``CFGDenoiser``):
    ``e_uncond + s_I (e_image - e_uncond) + s_T (e_full - e_image)`` with ``e_full = e(I, T)``,
    ``e_image = e(I, "")`` and ``e_uncond = e(0, "")``. The suite's ``guidance_scale`` is ``s_T``
    (``--cfg-text``, diffusers ``guidance_scale``), ``image_guidance_scale`` is ``s_I`` (``--cfg-image``);
    ``s_T = s_I = 1`` gives ``e_full`` (plain conditional sampling), as ``w = 1`` does for one condition.
    """
    return e_uncond + image_guidance_scale * (e_image - e_uncond) + guidance_scale * (e_full - e_image)
