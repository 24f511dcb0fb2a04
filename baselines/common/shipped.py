"""The one format of the checkpoints cgmbench trains and ships.

A shipped checkpoint is ``NAME.safetensors`` (floating tensors stored as float16, the training configuration as
JSON in the safetensors metadata under ``cgmbench_config``, whose ``model`` names the family) and its card
``NAME.json`` (command, configuration, steps, final loss, sha256, bytes).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from cgmbench.atomic import atomic_write_json
from cgmbench.errors import CgmbenchError
from cgmbench.weights import sha256_file

__all__ = [ "save_shipped", "read_shipped",
]
def save_shipped(path: Path, tensors: dict[str, torch.Tensor], config: dict, card: dict) -> Path:
    """Write ``path`` (.safetensors, float16 floating tensors, ``config`` as JSON metadata) and the JSON card."""
    from safetensors.torch import save_file

    path = Path(path)
    out = {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous()
           for k, v in tensors.items()}
    save_file(out, str(path), metadata={"cgmbench_config": json.dumps(config, sort_keys=True), "format": "pt"})
    card = dict(card, file=path.name, sha256=sha256_file(path), bytes=path.stat().st_size, config=config,
                dtype="float16 (trained in float32)")
    atomic_write_json(path.with_suffix(".json"), card)
    return path


def read_shipped(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """``(float32 tensors, config)`` of a file written by :func:`save_shipped`."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = f.metadata() or {}
        if "cgmbench_config" not in meta:
            raise CgmbenchError(f"{path} is not a cgmbench shipped checkpoint (no cgmbench_config metadata)")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    return tensors, json.loads(meta["cgmbench_config"])




def _is_cgmbench_file(path: Path) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return "cgmbench_config" in (f.metadata() or {})
    except Exception:
        return False
