"""The LDM vector-quantised first stage (``VQModelInterface``, taming ``VectorQuantizer2``), in CompVis naming.

Clean-room re-implementation of ``VQModelInterface`` (CompVis/latent-diffusion ``ldm/models/autoencoder.py``)
and of the quantizer it imports, ``VectorQuantizer2`` (CompVis/taming-transformers
``taming/modules/vqvae/quantize.py``), so that the ``first_stage_model.*`` part of an LDM-VQ checkpoint
(cin256-v2: VQ-f4, 8192 codes of dimension 3) loads with ``strict=True`` once the prefix is stripped.
The encoder and decoder are the KL autoencoder's (:mod:`baselines.common.kl_vae`) with
``double_z=False``.

Conventions
-----------
* Images ``x``: (B, in_channels, H, W) in [-1, 1].
* ``h = encode(x)``: the **pre-quantisation** latents ``quant_conv(encoder(x))``, (B, embed_dim, H/f, W/f)
  with ``f = 2**(len(ch_mult)-1)`` (4 for VQ-f4). This is what ``LatentDiffusion.encode_first_stage``
  returns; the diffusion model is trained on these (times ``scale_factor``, 1.0 for cin256-v2).
* ``decode(h)`` snaps ``h`` to the nearest codebook rows first (``LatentDiffusion.decode_first_stage``
  calls it this way, so sampled latents are re-quantised); ``decode(h, force_not_quantize=True)`` skips that.
* Quantizer: ``indices`` are flat (B·h·w,) int64, row-major over (b, i, j) (``sane_index_shape=False``,
  the LDM setting); nearest code by ``argmin(|z|² + |e|² − 2 z·e)`` (ties: lowest index);
  ``quant = z + (e − z).detach()`` (straight-through, equal to the codebook rows up to float rounding);
  ``emb_loss`` with ``legacy=True`` puts ``beta`` on the codebook term, i.e. ``1.25 · mse`` in eval.

Naming: ``encoder.*``, ``decoder.*`` (see :mod:`baselines.common.kl_vae`), ``quantize.embedding.weight``
(n_embed, embed_dim), ``quant_conv`` (z_channels → embed_dim, 1×1), ``post_quant_conv`` (embed_dim →
z_channels, 1×1), registered in that order (the official ``loss`` is ``torch.nn.Identity``, no keys).

Official quirks not reproduced: ``VQModelInterface.forward`` is broken upstream (it inherits
``VQModel.forward``, which unpacks ``encode``'s tensor); here ``forward`` is ``VQModel.forward``
(encode, quantise, decode). ``VQModel.decode_code`` calls a missing ``embed_code``; use
``quantize.get_codebook_entry`` then ``decode(..., force_not_quantize=True)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from baselines.common.kl_vae import Decoder, Encoder
from baselines.common.state_dict import load_state_dict_strict
from baselines.ldm.checkpoints import load_ldm_checkpoint

__all__ = [
    "LDM_VQ_F4_CONFIG",
    "VectorQuantizer2",
    "VQModelInterface",
    "load_vq_model",
]

#: ``configs/latent-diffusion/cin256-v2.yaml`` ``first_stage_config.params`` (= ``models/first_stage_models/
#: vq-f4/config.yaml``): 256×256×3 → 64×64×3, 8192 codes. Verified against
#: ``manifest_ldm_vq-f4_cin256-v2.json`` (205 tensors). Use as ``VQModelInterface(**LDM_VQ_F4_CONFIG)``.
LDM_VQ_F4_CONFIG: dict = dict(
    embed_dim=3,
    n_embed=8192,
    ddconfig=dict(
        double_z=False,
        z_channels=3,
        resolution=256,
        in_channels=3,
        out_ch=3,
        ch=128,
        ch_mult=(1, 2, 4),
        num_res_blocks=2,
        attn_resolutions=(),
        dropout=0.0,
    ),
)


class VectorQuantizer2(nn.Module):
    """Nearest-neighbour vector quantizer with a straight-through gradient (taming ``VectorQuantizer2``).

    Args:
        n_e: number of codes; ``embedding`` is ``nn.Embedding(n_e, e_dim)``.
        e_dim: code dimension (the channel count of the latents it quantises).
        beta: commitment weight (0.25 in every LDM VQ model).
        remap: index remapping file of the official class; only ``None`` (the LDM setting) is supported.
        sane_index_shape: return indices as (B, h, w) instead of flat (B·h·w,).
        legacy: ``True`` (official default) applies ``beta`` to the codebook term instead of the commitment
            term; both give ``(1 + beta) · mse`` as a value.
    """

    def __init__(self, n_e: int, e_dim: int, beta: float = 0.25, remap=None, unknown_index="random",
                 sane_index_shape: bool = False, legacy: bool = True):
        super().__init__()
        if remap is not None:
            raise ValueError("VectorQuantizer2 remap is not supported (no LDM checkpoint uses it); pass remap=None")
        self.n_e = int(n_e)
        self.e_dim = int(e_dim)
        self.beta = float(beta)
        self.legacy = bool(legacy)
        self.remap = None
        self.re_embed = self.n_e
        self.sane_index_shape = bool(sane_index_shape)
        self.embedding = nn.Embedding(self.n_e, self.e_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / self.n_e, 1.0 / self.n_e)

    def forward(self, z: torch.Tensor, temp=None, rescale_logits: bool = False, return_logits: bool = False):
        """``(quant, emb_loss, (None, None, indices))`` for latents ``z`` (B, e_dim, h, w).

        ``quant`` has ``z``'s shape; ``emb_loss`` is a scalar; ``indices`` int64, flat (B·h·w,) row-major
        over (b, i, j) unless ``sane_index_shape``. ``temp``/``rescale_logits``/``return_logits`` exist for
        interface compatibility with the Gumbel quantizer and must stay at their defaults.
        """
        if temp not in (None, 1.0) or rescale_logits or return_logits:
            raise ValueError("temp, rescale_logits and return_logits are only for the Gumbel quantizer")
        if z.dim() != 4 or z.shape[1] != self.e_dim:
            raise ValueError(f"expected latents (B, {self.e_dim}, h, w), got shape {tuple(z.shape)}")
        z = z.permute(0, 2, 3, 1).contiguous()  # (B, h, w, C)
        z_flat = z.view(-1, self.e_dim)
        codebook = self.embedding.weight
        d = (z_flat.pow(2).sum(dim=1, keepdim=True) + codebook.pow(2).sum(dim=1)
             - 2 * torch.einsum("bd,dn->bn", z_flat, codebook.t()))
        indices = torch.argmin(d, dim=1)
        z_q = self.embedding(indices).view(z.shape)
        commit = torch.mean((z_q.detach() - z) ** 2)
        codebook_term = torch.mean((z_q - z.detach()) ** 2)
        if self.legacy:
            loss = commit + self.beta * codebook_term
        else:
            loss = self.beta * commit + codebook_term
        z_q = z + (z_q - z).detach()  # straight-through estimator
        z_q = z_q.permute(0, 3, 1, 2).contiguous()
        if self.sane_index_shape:
            indices = indices.reshape(z_q.shape[0], z_q.shape[2], z_q.shape[3])
        return z_q, loss, (None, None, indices)

    def get_codebook_entry(self, indices: torch.Tensor, shape: tuple[int, int, int, int] | None) -> torch.Tensor:
        """Codebook rows of ``indices``; with ``shape = (B, h, w, e_dim)`` reshaped and returned as
        (B, e_dim, h, w), otherwise as (N, e_dim)."""
        indices = torch.as_tensor(indices).long()
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.n_e):
            raise ValueError(f"codebook indices must lie in [0, {self.n_e - 1}], got "
                             f"[{int(indices.min())}, {int(indices.max())}]")
        z_q = self.embedding(indices.reshape(-1) if shape is not None else indices)
        if shape is not None:
            shape = tuple(int(s) for s in shape)
            if len(shape) != 4 or shape[3] != self.e_dim or shape[0] * shape[1] * shape[2] != indices.numel():
                raise ValueError(f"shape {shape} does not fit {indices.numel()} indices of {self.e_dim}-d codes "
                                 "(expected (B, h, w, e_dim) with B·h·w indices)")
            z_q = z_q.view(shape).permute(0, 3, 1, 2).contiguous()
        return z_q


class VQModelInterface(nn.Module):
    """The VQ first stage of latent diffusion (inference part of CompVis ``VQModelInterface``).

    ``encode(x)`` → pre-quantisation latents ``h``; ``decode(h)`` → image, re-quantising ``h`` unless
    ``force_not_quantize``; ``forward(x)`` → ``(decode(quantize(encode(x))), emb_loss)`` as ``VQModel``.

    ``lossconfig`` must be ``None`` or ``{'target': 'torch.nn.Identity'}`` (the LDM configs): the training
    losses are not part of this module, so a standalone ``vq-f4`` training checkpoint's ``loss.*`` keys must
    be dropped explicitly (:func:`load_vq_model` ``ignore_prefixes``).
    """

    def __init__(self, ddconfig: Mapping, n_embed: int, embed_dim: int, lossconfig: Mapping | None = None,
                 remap=None, sane_index_shape: bool = False, **ignored):
        super().__init__()
        unknown = set(ignored) - {"ckpt_path", "ignore_keys", "image_key", "colorize_nlabels", "monitor",
                                  "batch_resize_range", "scheduler_config", "lr_g_factor", "use_ema"}
        if unknown:
            raise ValueError(f"unknown VQModelInterface arguments: {sorted(unknown)}")
        if ignored.get("ckpt_path"):
            raise ValueError("ckpt_path is not supported here; load weights with load_vq_model")
        if ignored.get("use_ema"):
            raise ValueError("use_ema=True (LitEma copies of the autoencoder) is not supported")
        if lossconfig is not None and dict(lossconfig).get("target") != "torch.nn.Identity":
            raise ValueError(f"lossconfig {dict(lossconfig)!r} is not supported: only the inference model is "
                             "built (use None or {'target': 'torch.nn.Identity'})")
        if ddconfig.get("double_z", True):
            raise ValueError("VQModelInterface needs ddconfig['double_z']=False (one latent per position)")
        self.embed_dim = int(embed_dim)
        self.n_embed = int(n_embed)
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        self.quantize = VectorQuantizer2(n_embed, embed_dim, beta=0.25, remap=remap,
                                         sane_index_shape=sane_index_shape)
        z_channels = ddconfig["z_channels"]
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)

    @property
    def downsample_factor(self) -> int:
        """Spatial factor ``f`` between images and latents."""
        return 2 ** (self.encoder.num_resolutions - 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-quantisation latents ``quant_conv(encoder(x))``, (B, embed_dim, H/f, W/f)."""
        return self.quant_conv(self.encoder(x))

    def decode(self, h: torch.Tensor, force_not_quantize: bool = False) -> torch.Tensor:
        """Image (B, out_ch, H, W) from latents ``h``; ``h`` is snapped to the codebook first unless
        ``force_not_quantize``."""
        quant = h if force_not_quantize else self.quantize(h)[0]
        return self.decoder(self.post_quant_conv(quant))

    def forward(self, x: torch.Tensor, return_pred_indices: bool = False):
        """``VQModel.forward``: ``(reconstruction, emb_loss)`` (``+ indices`` with ``return_pred_indices``)."""
        quant, diff, (_, _, indices) = self.quantize(self.encode(x))
        dec = self.decode(quant, force_not_quantize=True)
        return (dec, diff, indices) if return_pred_indices else (dec, diff)


def load_vq_model(
    checkpoint: str | Path | Mapping[str, torch.Tensor],
    config: Mapping = LDM_VQ_F4_CONFIG,
    *,
    prefix: str | None = None,
    ignore_prefixes: Iterable[str] = (),
) -> VQModelInterface:
    """Build :class:`VQModelInterface` (``config``) and load it **strictly** from a checkpoint.

    ``checkpoint`` is a path (:func:`baselines.ldm.load_ldm_checkpoint`: ``.ckpt`` with ``'state_dict'``,
    ``.safetensors``, …) or a loaded state_dict. ``prefix`` selects the keys that start with it and strips it;
    by default ``'first_stage_model.'`` when such keys exist (a whole LatentDiffusion checkpoint; its other
    parts are left alone), else none (a bare autoencoder state_dict). ``ignore_prefixes`` (after stripping)
    drops keys on purpose, e.g. ``['loss.']`` for the standalone ``vq-f4`` training checkpoint. Any other
    missing, unexpected or mis-shaped key raises ``ValueError`` naming it.

    The model is built on the ``meta`` device and takes the checkpoint tensors as its parameters. Returns
    it in ``eval()`` mode.
    """
    sd = checkpoint if isinstance(checkpoint, Mapping) else load_ldm_checkpoint(checkpoint)
    if prefix is None:
        prefix = "first_stage_model." if any(str(k).startswith("first_stage_model.") for k in sd) else ""
    ignore = (ignore_prefixes,) if isinstance(ignore_prefixes, str) else tuple(ignore_prefixes)
    part = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not part:
        raise ValueError(f"no key of the checkpoint starts with {prefix!r}; it holds no VQ first stage")
    if ignore:
        part = {k: v for k, v in part.items() if not k.startswith(ignore)}
    with torch.device("meta"):
        model = VQModelInterface(**config)
    what = f"VQModelInterface ({prefix})" if prefix else "VQModelInterface"
    load_state_dict_strict(model, part, what, assign=True)
    return model.eval()

