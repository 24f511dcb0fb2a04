"""StackGAN (hanzhanggit/StackGAN-Pytorch): networks in the official naming and strict loading of the release.

``models`` holds the networks (imports only torch), ``checkpoints`` the loaders of ``netG_epoch_90.pth``
and of the char-CNN-RNN embedding pickles and ``.t7`` files (``torch7``: a restricted Torch7 reader).
"""

from baselines.stackgan.checkpoints import (
    build_for,
    load_char_cnn_rnn_embeddings,
    load_char_cnn_rnn_t7,
    load_stage1_generator,
    load_stage2_generator,
    load_strict,
    read_state_dict,
    stage1_config_from_state_dict,
    stage2_config_from_state_dict,
)
from baselines.stackgan.models import (
    CA_NET,
    D_GET_LOGITS,
    STAGE1_D,
    STAGE1_G,
    STAGE2_D,
    STAGE2_G,
    ResBlock,
    coco_stage1_config,
    coco_stage2_config,
    conv3x3,
    upBlock,
)

__all__ = [
    "CA_NET",
    "D_GET_LOGITS",
    "STAGE1_D",
    "STAGE1_G",
    "STAGE2_D",
    "STAGE2_G",
    "ResBlock",
    "coco_stage1_config",
    "coco_stage2_config",
    "conv3x3",
    "upBlock",
    "build_for",
    "load_char_cnn_rnn_embeddings",
    "load_char_cnn_rnn_t7",
    "load_stage1_generator",
    "load_stage2_generator",
    "load_strict",
    "read_state_dict",
    "stage1_config_from_state_dict",
    "stage2_config_from_state_dict",
]
