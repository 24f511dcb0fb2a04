"""Latent Diffusion (LDM) / Stable Diffusion 1.x networks in CompVis naming, and checkpoint loading.

The networks live in :mod:`baselines.ldm.unet` (``UNetModel``) and :mod:`baselines.common.kl_vae`
(``AutoencoderKL``); this module re-exports them, records the configurations of the released
checkpoints and loads the official LatentDiffusion ``.ckpt`` / ``.safetensors`` files **strictly**.

An official checkpoint is the ``state_dict`` of a whole ``LatentDiffusion`` Lightning module:

=================================  ================================================================
prefix                              content
=================================  ================================================================
``model.diffusion_model.``          the :class:`UNetModel`
``first_stage_model.``              the :class:`AutoencoderKL` (or a VQ model for LDM-VQ)
``cond_stage_model.``               the conditioner (CLIP text encoder for SD 1.x, ``ClassEmbedder``
                                    for cin256-v2, LDM-BERT for txt2img-f8-large)
``betas``, ``alphas_cumprod``, …    DDPM schedule buffers (:data:`LATENT_DIFFUSION_BUFFER_KEYS`)
``model_ema.*``                     EMA copies of the U-Net parameters (non-pruned files): LitEma
                                    names them ``model_ema.`` + ``"diffusion_model." + key`` with
                                    every dot removed, plus ``model_ema.decay`` / ``num_updates``
=================================  ================================================================

The official scripts load this with ``strict=False``. Here :func:`split_compvis_checkpoint`
accepts only the keys above (an explicit allow-list) and raises ``ValueError`` naming any other
key; the parts are then loaded into the networks with ``strict=True``.

The SD latent scale :data:`SD_LATENT_SCALE` (0.18215) is applied outside the autoencoder.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from baselines.common.kl_vae import (
    SD1_VAE_CONFIG,
    SD_LATENT_SCALE,
    AttnBlock,
    AutoencoderKL,
    Decoder,
    DiagonalGaussianDistribution,
    Encoder,
    ResnetBlock,
)
from baselines.common.state_dict import load_state_dict_strict, read_state_dict_file
from baselines.ldm.unet import (
    BasicTransformerBlock,
    CrossAttention,
    GroupNorm32,
    ResBlock,
    SpatialTransformer,
    UNetModel,
    timestep_embedding,
)

__all__ = [
    "SD_LATENT_SCALE",
    "UNetModel",
    "AutoencoderKL",
    "Encoder",
    "Decoder",
    "DiagonalGaussianDistribution",
    "ResBlock",
    "ResnetBlock",
    "AttnBlock",
    "SpatialTransformer",
    "BasicTransformerBlock",
    "CrossAttention",
    "GroupNorm32",
    "timestep_embedding",
    "SD1_UNET_CONFIG",
    "SD1_VAE_CONFIG",
    "LDM_TXT2IMG_F8_LARGE_UNET_CONFIG",
    "LDM_CIN256_V2_UNET_CONFIG",
    "COMPVIS_PREFIXES",
    "LATENT_DIFFUSION_BUFFER_KEYS",
    "EMA_META_KEYS",
    "ema_key",
    "split_compvis_checkpoint",
    "load_ldm_checkpoint",  # = baselines.common.state_dict.read_state_dict_file
    "load_state_dict_strict",
    "load_compvis_unet_vae",
]

# ----------------------------------------------------------------------------------------------
# Released configurations
# ----------------------------------------------------------------------------------------------

#: ``configs/stable-diffusion/v1-inference.yaml`` ``unet_config.params`` (sd-v1-4, v1-5); verified
#: key for key against ``manifest_sd1_unet_compvis.json``. 859,520,964 parameters.
SD1_UNET_CONFIG: dict = dict(
    image_size=32,
    in_channels=4,
    out_channels=4,
    model_channels=320,
    attention_resolutions=(4, 2, 1),
    num_res_blocks=2,
    channel_mult=(1, 2, 4, 4),
    num_heads=8,
    use_spatial_transformer=True,
    transformer_depth=1,
    context_dim=768,
    use_checkpoint=True,
    legacy=False,
)


#: LDM txt2img-f8-large (1.45B, LAION-400M; ``configs/latent-diffusion/txt2img-1p4B-eval.yaml``):
#: the SD 1.x U-Net with 1280-d LDM-BERT context. Taken from the research notes (no manifest).
LDM_TXT2IMG_F8_LARGE_UNET_CONFIG: dict = dict(SD1_UNET_CONFIG, context_dim=1280)

#: LDM cin256-v2 (``configs/latent-diffusion/cin256-v2.yaml``, VQ-f4 latents 64×64×3): class
#: conditioning through cross-attention on a ``ClassEmbedder`` token (512-d), legacy head split.
#: Taken from the research notes (no manifest).
LDM_CIN256_V2_UNET_CONFIG: dict = dict(
    image_size=64,
    in_channels=3,
    out_channels=3,
    model_channels=192,
    attention_resolutions=(8, 4, 2),
    num_res_blocks=2,
    channel_mult=(1, 2, 3, 5),
    num_heads=1,
    use_spatial_transformer=True,
    transformer_depth=1,
    context_dim=512,
)

# ----------------------------------------------------------------------------------------------
# Checkpoint layout
# ----------------------------------------------------------------------------------------------

#: Part name → key prefix inside a LatentDiffusion state_dict.
COMPVIS_PREFIXES: dict[str, str] = {
    "diffusion_model": "model.diffusion_model.",
    "first_stage_model": "first_stage_model.",
    "cond_stage_model": "cond_stage_model.",
}

#: LatentDiffusion/DDPM buffers that are not part of any network (``DDPM.register_schedule``,
#: ``logvar``, ``scale_factor`` with ``scale_by_std``). They are returned under ``'buffers'``.
LATENT_DIFFUSION_BUFFER_KEYS: frozenset[str] = frozenset(
    {
        "betas",
        "alphas_cumprod",
        "alphas_cumprod_prev",
        "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod",
        "sqrt_recip_alphas_cumprod",
        "sqrt_recipm1_alphas_cumprod",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
        "logvar",
        "scale_factor",
    }
)

#: LitEma bookkeeping buffers, ignored.
EMA_META_KEYS: frozenset[str] = frozenset({"model_ema.decay", "model_ema.num_updates"})

_EMA_PREFIX = "model_ema."


def ema_key(unet_key: str) -> str:
    """The LitEma buffer name of a U-Net key (without the ``model.diffusion_model.`` prefix).

    ``'input_blocks.0.0.weight'`` → ``'model_ema.diffusion_modelinput_blocks00weight'``.
    """
    return _EMA_PREFIX + ("diffusion_model." + unet_key).replace(".", "")


def split_compvis_checkpoint(
    state_dict: Mapping[str, torch.Tensor],
    *,
    use_ema: bool = False,
    ignore_prefixes: Iterable[str] = (),
) -> dict[str, dict[str, torch.Tensor]]:
    """Split a LatentDiffusion state_dict into its networks' state_dicts (prefixes stripped).

    Returns ``{'diffusion_model': …, 'first_stage_model': …, 'cond_stage_model': …, 'buffers': …}``;
    ``'buffers'`` holds the :data:`LATENT_DIFFUSION_BUFFER_KEYS` found (schedule, ``scale_factor``).

    Accepted besides the three prefixes: the schedule buffers, :data:`EMA_META_KEYS`, and
    ``model_ema.<name>`` where ``<name>`` is :func:`ema_key` of a U-Net key present in the
    checkpoint. ``ignore_prefixes`` drops further keys explicitly (e.g. ``'first_stage_model.loss.'``
    of an autoencoder training checkpoint). Any other key raises ``ValueError`` naming it.

    ``use_ema=True`` returns the EMA weights for the U-Net instead of the raw ones (every U-Net key
    must then have its EMA copy).
    """
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"expected a state_dict mapping of names to tensors, got {type(state_dict).__name__}")
    ignore_prefixes = (ignore_prefixes,) if isinstance(ignore_prefixes, str) else tuple(ignore_prefixes)
    parts: dict[str, dict[str, torch.Tensor]] = {name: {} for name in COMPVIS_PREFIXES}
    parts["buffers"] = {}
    ema: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise ValueError(f"state_dict key {key!r} is not a string")
        if key in EMA_META_KEYS or key.startswith(ignore_prefixes):
            continue
        for name, prefix in COMPVIS_PREFIXES.items():
            if key.startswith(prefix):
                parts[name][key[len(prefix):]] = value
                break
        else:
            if key in LATENT_DIFFUSION_BUFFER_KEYS:
                parts["buffers"][key] = value
            elif key.startswith(_EMA_PREFIX):
                ema[key] = value
            else:
                unknown.append(key)

    # EMA copies must correspond one-to-one to U-Net keys (dot-stripped names).
    stripped_to_key: dict[str, str] = {}
    for key in parts["diffusion_model"]:
        s = ema_key(key)
        if s in stripped_to_key:
            raise ValueError(
                f"U-Net keys {stripped_to_key[s]!r} and {key!r} map to the same EMA name {s!r}; "
                "cannot tell the EMA weights apart"
            )
        stripped_to_key[s] = key
    unknown.extend(k for k in ema if k not in stripped_to_key)
    if unknown:
        raise ValueError(
            f"unexpected key {unknown[0]!r} in the LatentDiffusion checkpoint ({len(unknown)} unexpected in all"
            + (f", e.g. {unknown[1:4]}" if len(unknown) > 1 else "")
            + "). Known: the prefixes "
            f"{sorted(COMPVIS_PREFIXES.values())}, the schedule buffers {sorted(LATENT_DIFFUSION_BUFFER_KEYS)}, "
            "model_ema.* copies of U-Net keys. Pass ignore_prefixes=[...] to drop keys on purpose."
        )

    if use_ema:
        if not ema:
            raise ValueError("use_ema=True but the checkpoint has no model_ema.* weights (a pruned/EMA-only file?)")
        missing = [k for k in parts["diffusion_model"] if ema_key(k) not in ema]
        if missing:
            raise ValueError(
                f"use_ema=True but {len(missing)} U-Net keys have no EMA copy, first {missing[0]!r} "
                f"(expected {ema_key(missing[0])!r})"
            )
        parts["diffusion_model"] = {k: ema[ema_key(k)] for k in parts["diffusion_model"]}
    return parts


# ----------------------------------------------------------------------------------------------
# Files and loading
# ----------------------------------------------------------------------------------------------






def load_compvis_unet_vae(
    checkpoint: str | Path | Mapping[str, torch.Tensor],
    unet_config: Mapping = SD1_UNET_CONFIG,
    vae_config: Mapping = SD1_VAE_CONFIG,
    *,
    use_ema: bool = False,
    ignore_prefixes: Iterable[str] = (),
) -> tuple[UNetModel, AutoencoderKL, dict[str, dict[str, torch.Tensor]]]:
    """Build the U-Net and the KL autoencoder and load them strictly from a LatentDiffusion checkpoint.

    ``checkpoint`` is a path (see :func:`load_ldm_checkpoint`) or an already loaded state_dict.
    The networks are built on the ``meta`` device and take the checkpoint tensors as their
    parameters (no random init, dtype as stored). Returns ``(unet.eval(), vae.eval(), parts)``,
    ``parts`` being :func:`split_compvis_checkpoint`'s output (for ``cond_stage_model`` and the
    schedule buffers).
    """
    sd = checkpoint if isinstance(checkpoint, Mapping) else load_ldm_checkpoint(checkpoint)
    parts = split_compvis_checkpoint(sd, use_ema=use_ema, ignore_prefixes=ignore_prefixes)
    with torch.device("meta"):
        unet = UNetModel(**unet_config)
        vae = AutoencoderKL(**vae_config)
    load_state_dict_strict(unet, parts["diffusion_model"], "UNetModel (model.diffusion_model.)", assign=True)
    load_state_dict_strict(vae, parts["first_stage_model"], "AutoencoderKL (first_stage_model.)", assign=True)
    return unet.eval(), vae.eval(), parts



#: an official LDM/SD checkpoint file is read by the generic reader (``.ckpt`` Lightning files unwrapped)
load_ldm_checkpoint = read_state_dict_file

from . import weights as _weights  # noqa: E402,F401  (registers the official files of this family)
