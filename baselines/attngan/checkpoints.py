"""Strict loading of the files released with taoxugit/AttnGAN.

* ``bird_AttnGAN2.pth`` / ``coco_AttnGAN2.pth``: ``torch.save(netG.state_dict())`` of ``G_NET``
  (no ``module.`` prefix).
* DAMSM ``text_encoder200.pth`` (birds) / ``text_encoder100.pth`` (coco): ``RNN_ENCODER``; the
  vocabulary size is ``encoder.weight.shape[0]`` and must equal ``len(ixtoword)`` of the
  matching ``captions.pickle`` (5450 birds, 27297 coco).
* DAMSM ``image_encoder200.pth`` / ``image_encoder100.pth``: ``CNN_ENCODER``.

Files are read with ``torch.load(map_location="cpu", weights_only=True)`` (or safetensors); the
configuration (branch count, widths, residual blocks, vocabulary) is read from the tensor shapes.
Given expectations (``branch_num``, ``vocab_size``, …) that the file contradicts, and every
missing, unexpected or mis-shaped key, raise one :class:`cgmbench.errors.CgmbenchError` naming the
file and the key. Missing BatchNorm ``num_batches_tracked`` (2018 files) are filled by torch.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from baselines.attngan.models import CNN_ENCODER, G_NET, RNN_ENCODER
from baselines.stackgan.checkpoints import build_for, load_strict, read_state_dict
from cgmbench.errors import CgmbenchError

__all__ = [
    "g_net_config_from_state_dict",
    "text_encoder_config_from_state_dict",
    "load_g_net",
    "load_text_encoder",
    "load_image_encoder",
]


def _family(sd: Mapping[str, torch.Tensor]) -> str:
    if any(k.startswith("STAGE1_G.") for k in sd) or "hr_joint.0.weight" in sd:
        return "a StackGAN Stage-II generator (load it with baselines.stackgan)"
    if "ca_net.fc.weight" in sd and "fc.0.weight" in sd:
        return "a StackGAN Stage-I generator (load it with baselines.stackgan)"
    if "h_net1.fc.0.weight" in sd:
        return "an AttnGAN G_NET (load it with load_g_net)"
    if "rnn.weight_ih_l0" in sd:
        return "a DAMSM text encoder (load it with load_text_encoder)"
    if "Conv2d_1a_3x3.conv.weight" in sd:
        return "a DAMSM image encoder (load it with load_image_encoder)"
    return "not a known AttnGAN file"


def _get(sd: Mapping[str, torch.Tensor], key: str, source: str, what: str, ndim: int) -> torch.Tensor:
    if key not in sd:
        raise CgmbenchError(f"{source} is not {what}: key {key!r} is missing; the file is {_family(sd)}")
    if sd[key].ndim != ndim:
        raise CgmbenchError(f"{source}: key {key!r} has shape {tuple(sd[key].shape)}, expected a {ndim}-d tensor")
    return sd[key]


def g_net_config_from_state_dict(sd: Mapping[str, torch.Tensor], source: str = "state dict") -> dict:
    """``G_NET`` kwargs read from the shapes: ``ca_net.fc.weight`` (4C, nef), ``h_net1.fc.0.weight``
    (512·GF_DIM, Z + C), the number of ``h_net*`` branches and of ``residual`` blocks."""
    what = "an AttnGAN G_NET checkpoint"
    ca = _get(sd, "ca_net.fc.weight", source, what, 2)
    fc = _get(sd, "h_net1.fc.0.weight", source, what, 2)
    condition_dim, embedding_dim = ca.shape[0] // 4, ca.shape[1]
    branches = {int(m.group(1)) for k in sd if (m := re.match(r"h_net(\d+)\.", k))}
    branch_num = max(branches)
    if branches != set(range(1, branch_num + 1)):
        raise CgmbenchError(f"{source}: branches {sorted(branches)} are not 1..{branch_num}")
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"h_net2\.residual\.(\d+)\.", k))}
    return dict(branch_num=branch_num, gf_dim=fc.shape[0] // 512, z_dim=fc.shape[1] - condition_dim,
                condition_dim=condition_dim, r_num=len(blocks) if blocks else 2, embedding_dim=embedding_dim)


def load_g_net(path_or_sd, *, branch_num: int | None = None, mask_alignment: str = "official") -> G_NET:
    """Build ``G_NET`` from the file's shapes and load it strictly (eval mode).

    ``branch_num`` is an expectation: a file with another number of stages is refused.
    """
    sd, source = read_state_dict(path_or_sd)
    cfg = g_net_config_from_state_dict(sd, source)
    if branch_num is not None and branch_num != cfg["branch_num"]:
        sizes = ", ".join(str(64 * 2**i) for i in range(cfg["branch_num"]))
        raise CgmbenchError(f"{source} has {cfg['branch_num']} branches ({sizes} px), but branch_num = {branch_num} "
                            "was asked for", "set TREE.BRANCH_NUM to the file's")
    return load_strict(build_for(sd, lambda: G_NET(**cfg, mask_alignment=mask_alignment)), sd, source)


def text_encoder_config_from_state_dict(sd: Mapping[str, torch.Tensor], source: str = "state dict") -> dict:
    """``RNN_ENCODER`` kwargs: ``ntoken``/``ninput`` from ``encoder.weight``, the hidden size, the RNN type
    (4 gates: LSTM, 3: GRU), the layer count and the directions from the ``rnn.*`` keys."""
    what = "a DAMSM text encoder checkpoint"
    emb = _get(sd, "encoder.weight", source, what, 2)
    w_hh = _get(sd, "rnn.weight_hh_l0", source, what, 2)
    per_direction = w_hh.shape[1]
    gates = w_hh.shape[0] // per_direction
    if gates not in (3, 4) or w_hh.shape[0] % per_direction:
        raise CgmbenchError(f"{source}: key 'rnn.weight_hh_l0' has shape {tuple(w_hh.shape)}, neither an LSTM nor a GRU")
    bidirectional = "rnn.weight_hh_l0_reverse" in sd
    nlayers = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"rnn\.weight_hh_l(\d+)", k)))
    return dict(ntoken=emb.shape[0], ninput=emb.shape[1], nhidden=per_direction * (2 if bidirectional else 1),
                nlayers=nlayers, bidirectional=bidirectional, rnn_type="LSTM" if gates == 4 else "GRU")


def load_text_encoder(path_or_sd, *, vocab_size: int | None = None, n_steps: int = 18) -> RNN_ENCODER:
    """Load a DAMSM ``RNN_ENCODER`` strictly (eval mode). ``vocab_size`` (``len(ixtoword)`` of the
    ``captions.pickle`` in use) must equal the encoder's number of tokens."""
    sd, source = read_state_dict(path_or_sd)
    cfg = text_encoder_config_from_state_dict(sd, source)
    if vocab_size is not None and vocab_size != cfg["ntoken"]:
        raise CgmbenchError(
            f"vocabulary mismatch: {source} embeds {cfg['ntoken']} tokens, the vocabulary has {vocab_size} words",
            "use the captions.pickle released with this text encoder (birds 5450, coco 27297)")
    return load_strict(build_for(sd, lambda: RNN_ENCODER(**cfg, n_steps=n_steps)), sd, source)


def load_image_encoder(path_or_sd, *, align_corners: bool = False) -> CNN_ENCODER:
    """Load a DAMSM ``CNN_ENCODER`` strictly (eval mode); ``nef`` from ``emb_cnn_code.weight``."""
    sd, source = read_state_dict(path_or_sd)
    nef = _get(sd, "emb_cnn_code.weight", source, "a DAMSM image encoder checkpoint", 2).shape[0]
    return load_strict(build_for(sd, lambda: CNN_ENCODER(nef, align_corners=align_corners)), sd, source)
