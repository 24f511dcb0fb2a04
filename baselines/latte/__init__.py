"""Latte (latent video diffusion transformer): the network in the official naming and strict checkpoint loading."""

from baselines.latte.checkpoints import check_state_dict, load_latte_checkpoint, read_state_dict, select_state_dict
from baselines.latte.models import (
    RELEASED_CONFIGS,
    Latte,
    Latte_models,
    Latte_XL_2,
    get_1d_sincos_temp_embed,
    get_2d_sincos_pos_embed,
    latte_from_release,
)

__all__ = [
    "RELEASED_CONFIGS",
    "Latte",
    "Latte_XL_2",
    "Latte_models",
    "check_state_dict",
    "get_1d_sincos_temp_embed",
    "get_2d_sincos_pos_embed",
    "latte_from_release",
    "load_latte_checkpoint",
    "read_state_dict",
    "select_state_dict",
]
