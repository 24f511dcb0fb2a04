"""Loading SD3 checkpoints: the ``model.diffusion_model.`` slice of ``sd3_medium.safetensors``, strict
shape checks, and the conversion between Stability's original naming and diffusers'."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Mapping, Optional

import torch

from baselines.sd3.models import _first

from .models import CHECKPOINT_PREFIX, IGNORED_CHECKPOINT_PREFIXES, MMDiT

# ----------------------------------------------------------------------------------------
# Single-file checkpoints
# ----------------------------------------------------------------------------------------


def extract_diffusion_model_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Take the ``model.diffusion_model.`` slice of a single-file SD3 checkpoint, prefix stripped.

    Keys under :data:`IGNORED_CHECKPOINT_PREFIXES` (VAE ``first_stage_model.``, text encoders
    ``text_encoders.``) are skipped; any other unprefixed key is an error. A state dict with no
    prefixed key at all is taken to be a bare MM-DiT state dict and returned unchanged.
    """
    if not any(k.startswith(CHECKPOINT_PREFIX) for k in state_dict):
        return dict(state_dict)
    out, stray = {}, []
    for k, v in state_dict.items():
        if k.startswith(CHECKPOINT_PREFIX):
            out[k[len(CHECKPOINT_PREFIX) :]] = v
        elif not k.startswith(IGNORED_CHECKPOINT_PREFIXES):
            stray.append(k)
    if stray:
        raise ValueError(
            f"checkpoint has {len(stray)} key(s) outside {CHECKPOINT_PREFIX!r} and the known "
            f"components {IGNORED_CHECKPOINT_PREFIXES}: {_first(stray)}"
        )
    return out


def load_sd3_checkpoint(
    path: str | Path,
    *,
    num_heads: Optional[int] = None,
    dtype: Optional[torch.dtype] = None,
    device: torch.device | str = "cpu",
) -> MMDiT:
    """Load the MM-DiT of an official SD3 checkpoint (e.g. ``sd3_medium.safetensors``).

    ``.safetensors`` files are read lazily: only the ``model.diffusion_model.`` tensors are
    materialised; ``first_stage_model.`` (VAE) and ``text_encoders.`` are skipped by prefix.
    A file holding a bare (unprefixed) MM-DiT state dict is accepted too. ``.pt/.pth/.ckpt``
    files are read with ``torch.load(weights_only=True)`` (a top-level ``state_dict`` entry is
    unwrapped). The architecture is inferred by :meth:`MMDiT.from_state_dict`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SD3 checkpoint not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as f:
            keys = list(f.keys())
            if any(k.startswith(CHECKPOINT_PREFIX) for k in keys):
                stray = [
                    k
                    for k in keys
                    if not k.startswith(CHECKPOINT_PREFIX) and not k.startswith(IGNORED_CHECKPOINT_PREFIXES)
                ]
                if stray:
                    raise ValueError(
                        f"{path.name}: {len(stray)} key(s) outside {CHECKPOINT_PREFIX!r} and the known "
                        f"components {IGNORED_CHECKPOINT_PREFIXES}: {_first(stray)}"
                    )
                sd = {k[len(CHECKPOINT_PREFIX) :]: f.get_tensor(k) for k in keys if k.startswith(CHECKPOINT_PREFIX)}
            else:
                sd = {k: f.get_tensor(k) for k in keys}
    elif suffix in (".pt", ".pth", ".ckpt", ".bin"):
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
        if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
            obj = obj["state_dict"]
        if not isinstance(obj, Mapping):
            raise ValueError(f"{path.name}: expected a state dict, got {type(obj).__name__}")
        sd = extract_diffusion_model_state_dict(obj)
    else:
        raise ValueError(f"unsupported checkpoint format {suffix!r} for {path.name}; use .safetensors")
    try:
        return MMDiT.from_state_dict(sd, num_heads=num_heads, dtype=dtype, device=device)
    except ValueError as err:
        raise ValueError(f"{path.name}: {err}") from err


# ----------------------------------------------------------------------------------------
# diffusers <-> original naming
# ----------------------------------------------------------------------------------------

_TOP_LEVEL = {
    # original: diffusers (SD3Transformer2DModel)
    "pos_embed": "pos_embed.pos_embed",
    "x_embedder.proj.weight": "pos_embed.proj.weight",
    "x_embedder.proj.bias": "pos_embed.proj.bias",
    "t_embedder.mlp.0.weight": "time_text_embed.timestep_embedder.linear_1.weight",
    "t_embedder.mlp.0.bias": "time_text_embed.timestep_embedder.linear_1.bias",
    "t_embedder.mlp.2.weight": "time_text_embed.timestep_embedder.linear_2.weight",
    "t_embedder.mlp.2.bias": "time_text_embed.timestep_embedder.linear_2.bias",
    "y_embedder.mlp.0.weight": "time_text_embed.text_embedder.linear_1.weight",
    "y_embedder.mlp.0.bias": "time_text_embed.text_embedder.linear_1.bias",
    "y_embedder.mlp.2.weight": "time_text_embed.text_embedder.linear_2.weight",
    "y_embedder.mlp.2.bias": "time_text_embed.text_embedder.linear_2.bias",
    "context_embedder.weight": "context_embedder.weight",
    "context_embedder.bias": "context_embedder.bias",
    "final_layer.linear.weight": "proj_out.weight",
    "final_layer.linear.bias": "proj_out.bias",
    "final_layer.adaLN_modulation.1.weight": "norm_out.linear.weight",
    "final_layer.adaLN_modulation.1.bias": "norm_out.linear.bias",
}

# per joint block, original suffix -> diffusers suffix (both relative to the block)
_BLOCK = {
    "x_block.attn.proj": "attn.to_out.0",
    "context_block.attn.proj": "attn.to_add_out",
    "x_block.adaLN_modulation.1": "norm1.linear",
    "context_block.adaLN_modulation.1": "norm1_context.linear",
    "x_block.mlp.fc1": "ff.net.0.proj",
    "x_block.mlp.fc2": "ff.net.2",
    "context_block.mlp.fc1": "ff_context.net.0.proj",
    "context_block.mlp.fc2": "ff_context.net.2",
    "x_block.attn.ln_q": "attn.norm_q",
    "x_block.attn.ln_k": "attn.norm_k",
    "context_block.attn.ln_q": "attn.norm_added_q",
    "context_block.attn.ln_k": "attn.norm_added_k",
}
_QKV = {
    "x_block.attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "context_block.attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
}


def swap_scale_shift(w: torch.Tensor) -> torch.Tensor:
    """Swap the two halves along dim 0 (``shift | scale`` <-> ``scale | shift``); an involution."""
    a, b = w.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def _depth_of(keys: Iterable[str], pattern: str) -> int:
    ids = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    return max(ids) + 1 if ids else 0


def original_to_diffusers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original (``joint_blocks``) naming -> diffusers ``SD3Transformer2DModel`` naming.

    Same convention as diffusers' ``convert_sd3_transformer_checkpoint_to_diffusers``: fused
    ``qkv`` split into ``to_q/to_k/to_v`` (x) / ``add_{q,k,v}_proj`` (context), ``attn.proj`` ->
    ``to_out.0`` / ``to_add_out``, and ``swap_scale_shift`` on ``final_layer.adaLN_modulation.1``
    and on the last block's ``context_block.adaLN_modulation.1``. Input keys must be unprefixed;
    an unknown key raises ``ValueError``.
    """
    sd = extract_diffusion_model_state_dict(state_dict)
    depth = _depth_of(sd, r"joint_blocks\.(\d+)\.")
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key in _TOP_LEVEL:
            new = _TOP_LEVEL[key]
            if key.startswith("final_layer.adaLN_modulation"):
                value = swap_scale_shift(value)
            out[new] = value
            continue
        m = re.match(r"joint_blocks\.(\d+)\.(.+)\.(weight|bias)$", key)
        if m is None:
            raise ValueError(f"cannot map key {key!r} to diffusers naming")
        i, stem, kind = int(m.group(1)), m.group(2), m.group(3)
        prefix = f"transformer_blocks.{i}."
        if stem in _QKV:
            for name, part in zip(_QKV[stem], value.chunk(3, dim=0)):
                out[f"{prefix}{name}.{kind}"] = part
        elif stem in _BLOCK:
            if stem == "context_block.adaLN_modulation.1" and i == depth - 1:
                value = swap_scale_shift(value)
            out[f"{prefix}{_BLOCK[stem]}.{kind}"] = value
        else:
            raise ValueError(f"cannot map key {key!r} to diffusers naming")
    return out


def diffusers_to_original(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`original_to_diffusers` (diffusers naming -> ``joint_blocks`` naming)."""
    top = {v: k for k, v in _TOP_LEVEL.items()}
    block = {v: k for k, v in _BLOCK.items()}
    qkv_parts = {name: (stem, j) for stem, names in _QKV.items() for j, name in enumerate(names)}
    depth = _depth_of(state_dict, r"transformer_blocks\.(\d+)\.")
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, list] = {}
    for key, value in state_dict.items():
        if key in top:
            new = top[key]
            if new.startswith("final_layer.adaLN_modulation"):
                value = swap_scale_shift(value)
            out[new] = value
            continue
        m = re.match(r"transformer_blocks\.(\d+)\.(.+)\.(weight|bias)$", key)
        if m is None:
            raise ValueError(f"cannot map key {key!r} to original naming")
        i, stem, kind = int(m.group(1)), m.group(2), m.group(3)
        prefix = f"joint_blocks.{i}."
        if stem in qkv_parts:
            orig, j = qkv_parts[stem]
            fused.setdefault(f"{prefix}{orig}.{kind}", [None, None, None])[j] = value
        elif stem in block:
            orig = block[stem]
            if orig == "context_block.adaLN_modulation.1" and i == depth - 1:
                value = swap_scale_shift(value)
            out[f"{prefix}{orig}.{kind}"] = value
        else:
            raise ValueError(f"cannot map key {key!r} to original naming")
    for key, parts in fused.items():
        if any(p is None for p in parts):
            raise ValueError(f"incomplete q/k/v projections for {key!r}: need all of q, k and v")
        out[key] = torch.cat(parts, dim=0)
    return out



from . import weights as _weights  # noqa: E402,F401  (registers the official files of this family)
