"""Latent Diffusion (CompVis): the U-Net (:mod:`.unet`), the KL autoencoder (shared,
:mod:`baselines.common.kl_vae`), LDM-BERT (:mod:`.bert`), the VQ first stage (:mod:`.vq`), official checkpoint
loading and configurations (:mod:`.checkpoints`), DDIM sampling (:mod:`.sampling`) and the generators
(:mod:`.generator` text-to-image, :mod:`.class_generator` class-conditional)."""

from baselines.common.kl_vae import SD_LATENT_SCALE, AutoencoderKL

from .checkpoints import *  # noqa: F401,F403  (configurations and loaders)
from .checkpoints import __all__ as _checkpoint_names
from .generator import LDMGenerator
from .unet import UNetModel

__all__ = sorted(set(_checkpoint_names) | {"SD_LATENT_SCALE", "AutoencoderKL", "UNetModel", "LDMGenerator"})
