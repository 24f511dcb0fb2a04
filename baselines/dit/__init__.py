"""DiT (Peebles & Xie 2023): networks in facebookresearch/DiT naming (:mod:`.models`), checkpoint loading
(:mod:`.checkpoints`), the cgmbench generator (:mod:`.generator`) and the training recipe (:mod:`.train`)."""

from .checkpoints import load_dit_checkpoint
from .models import DiT, DiT_models
from .generator import DiTGenerator

__all__ = ["DiT", "DiT_models", "load_dit_checkpoint", "DiTGenerator"]
