"""Strict loading of the released Latte checkpoints (huggingface.co/maxin-cn/Latte).

The official ``train.py`` saves ``{"model": ..., "ema": ..., ...}`` with ``torch.save``;
``utils.find_model`` takes ``checkpoint["ema"]`` when present, else ``checkpoint["model"]``, and
``sample.py`` loads it with a strict ``load_state_dict`` (no key prefix). This module reads the same
files without unpickling code (``torch.load(..., weights_only=True)``) or as safetensors, accepts
the same top-level keys (plus a bare state dict, and a uniform DDP ``module.`` prefix), and checks
every key and shape before loading: a missing, unexpected or mis-shaped key is one
:class:`~cgmbench.errors.CgmbenchError` naming the file and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from baselines.latte.models import Latte, latte_from_release
from cgmbench.errors import CgmbenchError

__all__ = ["TOP_LEVEL_KEYS", "read_state_dict", "select_state_dict", "check_state_dict", "load_latte_checkpoint"]

# Checked in this order, as utils.find_model does ("ema" first).
TOP_LEVEL_KEYS = ("ema", "model")
_PREFIX = "module."


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The network weights of a checkpoint file (``.pt``/``.pth``/``.ckpt`` or ``.safetensors``), on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CgmbenchError(f"Latte checkpoint {path} does not exist",
                            "download it from https://huggingface.co/maxin-cn/Latte (e.g. ucf101.pt)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, or a pickle holding more than tensors
        raise CgmbenchError(
            f"cannot read Latte checkpoint {path}: {type(exc).__name__}: {exc}",
            "pass the official .pt file (a dict of tensors under 'ema'/'model') or a .safetensors state dict",
        ) from exc
    return select_state_dict(obj, str(path))


def select_state_dict(obj: object, source: str = "<state dict>") -> dict[str, torch.Tensor]:
    """Pick the state dict out of a loaded checkpoint: ``obj["ema"]``, else ``obj["model"]``, else ``obj`` itself.

    A ``module.`` prefix carried by *every* key (a DDP-wrapped save) is removed.
    """
    if not isinstance(obj, Mapping):
        raise CgmbenchError(f"{source} holds a {type(obj).__name__}, not a dict of tensors",
                            "pass the official Latte .pt checkpoint")
    for key in TOP_LEVEL_KEYS:
        if key in obj:
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise CgmbenchError(f"{source} has no state dict under {list(TOP_LEVEL_KEYS)}",
                            "pass the official Latte .pt checkpoint")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CgmbenchError(
            f"{source}: entry '{bad[0]}' is a {type(obj[bad[0]]).__name__}, not a tensor",
            f"expected a state dict (top-level keys {list(TOP_LEVEL_KEYS)} or parameter names)",
        )
    state = dict(obj)
    if all(k.startswith(_PREFIX) for k in state):
        state = {k[len(_PREFIX):]: v for k, v in state.items()}
    return state


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str = "<state dict>") -> None:
    """Raise :class:`CgmbenchError` unless ``state`` has exactly ``model``'s keys with the same shapes."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise CgmbenchError(
            f"{source} is missing key '{missing[0]}' ({len(missing)} missing in all) for this Latte configuration",
            _hint(model),
        )
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise CgmbenchError(
            f"{source} has unexpected key '{unexpected[0]}' ({len(unexpected)} unexpected in all) for this Latte "
            "configuration",
            _hint(model),
        )
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CgmbenchError(
                f"{source}: key '{k}' has shape {tuple(state[k].shape)}, the model expects {tuple(v.shape)}",
                _hint(model),
            )


def _hint(model: torch.nn.Module) -> str:
    if isinstance(model, Latte):
        return (f"the model was built with extras={model.extras}, num_classes={model.num_classes}, "
                f"num_frames={model.num_frames}, patch_size={model.patch_size}, depth={len(model.blocks)}, "
                f"hidden_size={model.hidden_size}; build it with the checkpoint's configuration "
                "(latte_from_release('ucf101') for ucf101.pt, 'ffs'/'sky'/'taichi' for the unconditional ones)")
    return "build the model with the checkpoint's configuration"


def load_latte_checkpoint(path_or_state: str | Path | Mapping[str, torch.Tensor],
                          model: Latte | None = None, release: str = "ucf101") -> Latte:
    """Load a Latte checkpoint strictly into ``model`` (built with ``latte_from_release(release)`` if not given).

    A model on the meta device receives the checkpoint's tensors themselves (``assign=True``), so the
    key/shape check of a released layout runs without allocating its 674 M parameters.
    Returns the model in eval mode.
    """
    if isinstance(path_or_state, (str, Path)):
        source = str(path_or_state)
        state = read_state_dict(path_or_state)
    else:
        source = "<state dict>"
        state = select_state_dict(path_or_state, source)
    if model is None:
        model = latte_from_release(release)
    check_state_dict(model, state, source)
    on_meta = any(p.is_meta for p in model.parameters())
    model.load_state_dict(state, strict=True, assign=on_meta)
    return model.eval()
