"""SD3-style rectified-flow MM-DiT: networks in Stability's naming (:mod:`.models`), checkpoint loading and
naming conversion (:mod:`.checkpoints`), the generator and tiny recipe (:mod:`.generator`)."""

from .checkpoints import load_sd3_checkpoint
from .models import check_state_dict
from .generator import SD3Generator
from .models import MMDiT

__all__ = ["MMDiT", "check_state_dict", "load_sd3_checkpoint", "SD3Generator"]
