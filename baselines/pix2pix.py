"""pix2pix's public names (the family lives in :mod:`baselines.translation`, which pix2pix shares with CycleGAN)."""

from baselines.translation.generator import Pix2PixGenerator
from baselines.translation.networks import NLayerDiscriminator, UnetGenerator, define_D, define_G

__all__ = ["UnetGenerator", "NLayerDiscriminator", "define_G", "define_D", "Pix2PixGenerator"]
