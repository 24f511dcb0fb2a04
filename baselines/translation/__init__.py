"""Image-to-image translation (junyanz/pytorch-CycleGAN-and-pix2pix): pix2pix and CycleGAN share their
networks (:mod:`.networks`), the official checkpoint loader (:mod:`.checkpoints`), the generator wrapper
(:mod:`.generator`) and the training loop (:mod:`.train`)."""

from .generator import CycleGANGenerator, Pix2PixGenerator
from .networks import NLayerDiscriminator, ResnetGenerator, UnetGenerator

__all__ = ["UnetGenerator", "ResnetGenerator", "NLayerDiscriminator", "Pix2PixGenerator", "CycleGANGenerator"]
