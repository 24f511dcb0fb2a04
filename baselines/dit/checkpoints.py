"""Loading DiT checkpoints: the released ``DiT-XL-2-*.pt`` state dicts and ``train.py`` checkpoints."""

from __future__ import annotations

import argparse
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from .models import DiT

#################################################################################
#                               Checkpoint loading                              #
#################################################################################

_MAX_LISTED = 5


def _read_checkpoint_file(path: Path) -> object:
    """Read a ``.safetensors`` file or a torch ``.pt``/``.pth`` file without unsafe unpickling."""
    if not path.is_file():
        raise FileNotFoundError(f"DiT checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # safetensors raises its own SafetensorError
            raise ValueError(f"{path} is not a readable safetensors file: {err}") from err
    try:
        # train.py stores its argparse.Namespace under "args"; allow that one plain class.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found is None:
            detail = re.search(r"WeightsUnpickler error:\s*(.+)", str(err))
            reason = detail.group(1).strip() if detail else str(err).splitlines()[0]
            raise ValueError(f"{path} is not a readable torch checkpoint ({reason})") from err
        raise ValueError(
            f"{path} cannot be loaded with torch.load(weights_only=True): it contains the Python "
            f"object {found.group(1)}, which would need unsafe unpickling, so it is refused. Re-save "
            "only the state dict (torch.save(model.state_dict(), path)) or convert it to .safetensors."
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"{path} is not a readable torch checkpoint: {err}") from err


def _select_state_dict(obj: object, source: str) -> Mapping[str, torch.Tensor]:
    """Pick the weights: ``obj["ema"]`` if present, else ``obj["model"]``, else ``obj`` itself."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{source}: expected a state dict (a mapping of name -> tensor), got {type(obj).__name__}")
    for key in ("ema", "model"):
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(
            f"{source}: not a DiT state dict; entries {bad[:_MAX_LISTED]} are not tensors "
            "(expected a plain state dict or a train.py checkpoint with 'ema'/'model')"
        )
    return obj


def load_dit_checkpoint(path_or_state_dict: str | Path | Mapping[str, torch.Tensor], model: DiT) -> DiT:
    """Strictly load DiT weights into ``model`` and return it.

    Accepts a ``.safetensors`` path, a ``.pt``/``.pth`` path (read with
    ``torch.load(weights_only=True, map_location="cpu")``), or an in-memory mapping.
    The content may be a plain state dict (the released ``DiT-XL-2-*.pt`` files) or a
    checkpoint as the official ``train.py`` saves it, ``{"model", "ema", "opt", "args"}``,
    in which case the EMA weights are used (``"model"`` when there is no ``"ema"``).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file needs unsafe unpickling or is unreadable, or the keys/shapes
            do not match ``model`` (the message names the first missing and unexpected keys
            and shape mismatches).
    """
    if isinstance(path_or_state_dict, Mapping):
        source = "state dict"
        obj = path_or_state_dict
    else:
        path = Path(path_or_state_dict)
        source = str(path)
        obj = _read_checkpoint_file(path)
    state_dict = _select_state_dict(obj, source)

    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                             ("shape mismatches", mismatched)):
            if items:
                more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
                parts.append(f"{len(items)} {label}: {items[:_MAX_LISTED]}{more}")
        raise ValueError(
            f"{source} does not match this DiT ({'; '.join(parts)}). Check the preset "
            "(e.g. DiT-XL/2), input_size (image size / 8), num_classes and learn_sigma."
        )
    model.load_state_dict(state_dict, strict=True)
    return model


from . import weights as _weights  # noqa: E402,F401  (registers the official files of this family)
