"""Strict state-dict loading with errors that name the first missing / unexpected / mis-shaped key."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str = "model",
                           assign: bool = False) -> nn.Module:
    """``module.load_state_dict(state_dict, strict=True)``, with a ``ValueError`` that names the
    first missing / unexpected key and the first shape mismatch when the dict does not fit."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [(k, tuple(state_dict[k].shape), tuple(own[k].shape)) for k in own
              if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        msg = [f"checkpoint does not match the {what} architecture:"]
        if missing:
            msg.append(f"{len(missing)} missing keys, first {missing[0]!r}")
        if unexpected:
            msg.append(f"{len(unexpected)} unexpected keys, first {unexpected[0]!r}")
        if shapes:
            k, got, want = shapes[0]
            msg.append(f"{len(shapes)} shape mismatches, first {k!r}: checkpoint {got} vs model {want}")
        msg.append("check the configuration (e.g. SD1_UNET_CONFIG / SD1_VAE_CONFIG) against the checkpoint")
        raise ValueError(" ".join(msg))
    module.load_state_dict(state_dict, strict=True, assign=assign)
    return module


_TORCH_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin"}


def read_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an official LDM/SD checkpoint into a flat ``{key: tensor}`` dict on CPU.

    * ``.safetensors``: read with :func:`safetensors.torch.load_file`.
    * ``.ckpt`` / ``.pt`` / ``.pth`` / ``.bin``: ``torch.load(weights_only=True, map_location='cpu')``;
      a Lightning file's weights are under ``'state_dict'`` (``epoch``/``global_step`` are dropped).
      A pickle that needs arbitrary code (anything beyond tensors and plain containers) is refused
      with ``ValueError``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LDM checkpoint not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path), device="cpu"))
    if suffix not in _TORCH_SUFFIXES:
        raise ValueError(
            f"unsupported checkpoint type {path.name!r}: expected .safetensors or one of {sorted(_TORCH_SUFFIXES)}"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        start = msg.find("WeightsUnpickler error:")
        detail = msg[start:].split("Check the documentation")[0] if start >= 0 else msg.split("\n")[0]
        detail = " ".join(detail.split())
        raise ValueError(
            f"refusing to load {path}: it is not a plain weights pickle, torch.load(weights_only=True) "
            f"failed ({detail}). Only load files from trusted sources; convert such a file to "
            ".safetensors in a trusted environment."
        ) from e
    except (RuntimeError, EOFError, OSError) as e:
        raise ValueError(f"{path} is not a readable torch checkpoint: {e}") from e
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} holds a {type(obj).__name__}, expected a state_dict (or a dict with 'state_dict')")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(
            f"{path}: entry {bad[0]!r} is a {type(obj[bad[0]]).__name__}, not a tensor; expected a flat state_dict "
            "or a Lightning checkpoint with 'state_dict'"
        )
    return dict(obj)
