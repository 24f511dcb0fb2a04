"""AttnGAN (taoxugit/AttnGAN): networks in the official naming, strict loading of the release, the vocabulary.

``models`` holds the networks (imports only torch), ``checkpoints`` the loaders of ``*_AttnGAN2.pth`` and
the DAMSM encoders, ``vocab`` the safe reader of ``captions.pickle`` and the official tokenizer.
"""

from baselines.attngan.checkpoints import (
    g_net_config_from_state_dict,
    load_g_net,
    load_image_encoder,
    load_text_encoder,
    text_encoder_config_from_state_dict,
)
from baselines.attngan.models import (
    CA_NET,
    CNN_ENCODER,
    D_NET64,
    D_NET128,
    D_NET256,
    G_NET,
    GET_IMAGE_G,
    INIT_STAGE_G,
    NEXT_STAGE_G,
    RNN_ENCODER,
    GlobalAttentionGeneral,
    birds_config,
    coco_config,
)
from baselines.attngan.vocab import RestrictedUnpickler, Vocabulary, load_captions_pickle, pad_caption, tokenize

__all__ = [
    "CA_NET",
    "CNN_ENCODER",
    "D_NET64",
    "D_NET128",
    "D_NET256",
    "G_NET",
    "GET_IMAGE_G",
    "INIT_STAGE_G",
    "NEXT_STAGE_G",
    "RNN_ENCODER",
    "GlobalAttentionGeneral",
    "birds_config",
    "coco_config",
    "g_net_config_from_state_dict",
    "load_g_net",
    "load_image_encoder",
    "load_text_encoder",
    "text_encoder_config_from_state_dict",
    "RestrictedUnpickler",
    "Vocabulary",
    "load_captions_pickle",
    "pad_caption",
    "tokenize",
]
