"""CycleGAN's public names (the family lives in :mod:`baselines.translation`, which CycleGAN shares with pix2pix)."""

from baselines.translation.generator import CycleGANGenerator
from baselines.translation.networks import NLayerDiscriminator, ResnetGenerator

__all__ = ["ResnetGenerator", "NLayerDiscriminator", "CycleGANGenerator"]
