"""Loading the released pix2pix / CycleGAN generators (``latest_net_G.pth``: bare state dicts)."""

from __future__ import annotations

import json
import json as _json
import os
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn

from cgmbench.errors import CgmbenchError

# --------------------------------------------------------------------------------------
# Official checkpoints (.pth state dicts of the bare generator)
# --------------------------------------------------------------------------------------

_MODULE_PREFIX = "module."


def read_state_dict(path_or_sd: str | os.PathLike | Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Read a state dict safely and return a fresh ``OrderedDict`` **without** ``_metadata``.

    Files: ``.safetensors`` via safetensors, anything else via
    ``torch.load(weights_only=True, map_location='cpu')``; a pickle that needs arbitrary objects
    is refused with a ``ValueError`` (nothing in it is executed). Dropping ``_metadata`` is the
    official ``del state_dict._metadata`` step: without version metadata, torch fills a missing
    BatchNorm ``num_batches_tracked`` (pre-0.4 checkpoints) with 0 instead of failing.
    """
    if isinstance(path_or_sd, Mapping):
        raw = path_or_sd
        source = "the given state dict"
    else:
        path = os.fspath(path_or_sd)
        source = path
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint file not found: {path}")
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            raw = load_file(path, device="cpu")
        else:
            try:
                raw = torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as err:
                raise ValueError(
                    f"refusing to load {path}: it is not a plain tensor state dict and would need unsafe "
                    f"unpickling (torch.load weights_only=True failed: {str(err).splitlines()[0]}). Official "
                    "pix2pix/CycleGAN .pth files are plain state dicts; convert this file to one (or to "
                    "safetensors) in a trusted environment."
                ) from err
    if not isinstance(raw, Mapping):
        raise ValueError(f"{source} holds a {type(raw).__name__}, expected a state dict mapping names to tensors")
    bad = [k for k, v in raw.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        hint = " (it looks like a training checkpoint: pass its 'state_dict' entry)" if "state_dict" in raw else ""
        raise ValueError(f"{source} is not a plain state dict: entries {bad[:5]} are not name → tensor{hint}")
    return OrderedDict(raw.items())  # a new OrderedDict carries no _metadata attribute


def patch_instance_norm_state_dict(state_dict: "OrderedDict[str, torch.Tensor]", net: nn.Module) -> list[str]:
    """The official InstanceNorm compatibility rule (checkpoints from before PyTorch 0.4 / 2018).

    For every key whose owning module is an InstanceNorm layer, delete ``running_mean`` /
    ``running_var`` where the module holds ``None`` (``track_running_stats=False``), and delete
    ``num_batches_tracked`` always. Keys whose module does not exist in ``net`` are left for the
    strict check to report. Edits ``state_dict`` in place; returns the deleted keys.
    """
    removed = []
    for key in list(state_dict):
        module_path, _, leaf = key.rpartition(".")
        try:
            module = net.get_submodule(module_path)
        except AttributeError:
            continue
        if not isinstance(module, nn.modules.instancenorm._InstanceNorm):
            continue
        stale_stat = leaf in ("running_mean", "running_var") and getattr(module, leaf, None) is None
        if stale_stat or leaf == "num_batches_tracked":
            del state_dict[key]
            removed.append(key)
    return removed


def _fillable_keys(net: nn.Module) -> set[str]:
    """``num_batches_tracked`` keys that torch fills in (with 0) when absent and there is no metadata."""
    return {
        f"{name}.num_batches_tracked" if name else "num_batches_tracked"
        for name, m in net.named_modules()
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats
    }


def load_official_state_dict(
    path_or_sd: str | os.PathLike | Mapping[str, torch.Tensor],
    net: nn.Module,
    strip_module_prefix: bool = False,
) -> nn.Module:
    """Load an official pix2pix/CycleGAN checkpoint into ``net`` strictly, as ``load_networks`` does.

    Steps: safe read (:func:`read_state_dict`, drops ``_metadata``) → optional ``module.`` strip →
    InstanceNorm patch (:func:`patch_instance_norm_state_dict`) → check names and shapes →
    ``net.load_state_dict(strict=True)``. Official files are saved from the bare module and have
    no ``module.`` prefix; a prefixed state dict (saved from a ``DataParallel`` wrapper) raises
    ``ValueError`` unless ``strip_module_prefix=True``, which removes it from every key.

    On a mismatch (e.g. a ``resnet_6blocks`` file for a ``resnet_9blocks`` net, or a U-Net file
    for a ResNet) a ``ValueError`` names the first missing and unexpected keys and the first
    shape mismatches; ``net`` is left untouched. Returns ``net``.
    """
    state_dict = read_state_dict(path_or_sd)

    prefixed = [k for k in state_dict if k.startswith(_MODULE_PREFIX)]
    if prefixed:
        if not strip_module_prefix:
            raise ValueError(
                f"checkpoint keys carry a '{_MODULE_PREFIX}' prefix (e.g. {prefixed[0]!r}), so it was saved "
                "from a DataParallel wrapper, not as the official bare-module state dict; pass "
                "strip_module_prefix=True to remove the prefix"
            )
        if len(prefixed) != len(state_dict):
            other = next(k for k in state_dict if not k.startswith(_MODULE_PREFIX))
            raise ValueError(f"only some checkpoint keys carry the '{_MODULE_PREFIX}' prefix (e.g. not {other!r})")
        state_dict = OrderedDict((k[len(_MODULE_PREFIX) :], v) for k, v in state_dict.items())

    patch_instance_norm_state_dict(state_dict, net)

    expected = net.state_dict()
    fillable = _fillable_keys(net)
    missing = [k for k in expected if k not in state_dict and k not in fillable]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = [f"checkpoint does not match {type(net).__name__} (wrong generator/discriminator or options?)"]
        if missing:
            parts.append(f"{len(missing)} missing keys, first: {missing[:5]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys, first: {unexpected[:5]}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches, first: {mismatched[:5]}")
        raise ValueError("; ".join(parts))

    net.load_state_dict(state_dict, strict=True)
    return net


# --------------------------------------------------------------------------------------
# cgmbench generator (``--model pix2pix``) and the pieces CycleGAN's generator shares
# --------------------------------------------------------------------------------------
#
# A pix2pix/CycleGAN generator has no guidance: a GAN maps the source image to one output.
# The only sampling setting is ``test_mode`` (how BatchNorm and Dropout behave at inference,
# :func:`set_test_mode`). In ``official-default`` pix2pix's dropout is its only source of
# sample diversity (paper §3.3), so it is the knob that exists for guidance/diversity plots.


def _file_arch(path: Path) -> tuple[dict | None, dict]:
    """Architecture and metadata that cgmbench stores in its safetensors files (None for others)."""
    if path.suffix != ".safetensors":
        return None, {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # not a safetensors file at all
        raise CgmbenchError(f"cannot read {path} as safetensors: {type(e).__name__}: {e}") from None
    arch = _json.loads(meta["cgmbench.architecture"]) if "cgmbench.architecture" in meta else None
    return arch, meta


#: prefix of G_B's keys in a cgmbench CycleGAN file (G_A's keys are unprefixed, as the official
#: single-generator files): ``netG_B.model.1.weight`` is G_B's ``model.1.weight``. Official
#: training writes the two as separate files (``latest_net_G_A.pth`` / ``latest_net_G_B.pth``).
REVERSE_PREFIX = "netG_B."


def split_generators(state_dict) -> tuple["OrderedDict[str, torch.Tensor]", "OrderedDict[str, torch.Tensor]"]:
    """``(G_A, G_B)`` state dicts of a cgmbench CycleGAN file (G_B's keys under :data:`REVERSE_PREFIX`)."""
    forward = OrderedDict((k, v) for k, v in state_dict.items() if not k.startswith(REVERSE_PREFIX))
    reverse = OrderedDict((k[len(REVERSE_PREFIX):], v) for k, v in state_dict.items() if k.startswith(REVERSE_PREFIX))
    return forward, reverse


def _holds_reverse(path: Path) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return any(k.startswith(REVERSE_PREFIX) for k in f.keys())
    except Exception:  # not a safetensors file: the base loader reports it
        return False




from . import weights as _weights  # noqa: E402,F401  (registers the official files of this family)
