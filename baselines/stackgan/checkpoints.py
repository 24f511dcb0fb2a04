"""Strict loading of the files released with hanzhanggit/StackGAN-Pytorch.

* ``netG_epoch_90.pth`` (README "StackGAN for coco"): ``torch.save(netG.state_dict())`` of
  ``STAGE2_G(STAGE1_G())`` with the ``coco_eval.yml`` config. No ``module.`` prefix (the trainer
  calls ``nn.parallel.data_parallel`` functionally); the Stage-I generator sits under ``STAGE1_G.``.
  Read with ``torch.load(map_location="cpu", weights_only=True)`` (or safetensors); the config is
  read from the tensor shapes, so no yml is needed. A 2017 file may lack BatchNorm
  ``num_batches_tracked``; torch then fills it (0), as the official strict load does.
* ``char-CNN-RNN-embeddings.pickle`` (README "preprocessed char-CNN-RNN text embeddings"): a
  Python-2 pickle of the 1024-d embeddings of reedscot/icml2016, one ``(captions_per_image, 1024)``
  float array per image (``datasets.py`` does ``np.array(pickle.load(f))``). It is read with a
  restricted unpickler that rebuilds plain numpy arrays and lists and refuses every other object.
* ``*.t7`` char-CNN-RNN embeddings (Torch7 ``torch.save`` of the Lua text encoder's outputs, as StackGAN's
  ``demo/get_embedding.lua`` writes them: ``{raw_txt = {caption, ...}, fea_txt = {FloatTensor(1, 1024), ...}}``),
  read by the restricted Torch7 reader :mod:`baselines.stackgan.torch7` (numbers, strings, tables and numeric
  tensors only).

Every mismatch is one :class:`cgmbench.errors.CgmbenchError` naming the file and the key.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
from collections import OrderedDict
from typing import Callable, Mapping, TypeVar

import numpy as np
import torch
import torch.nn as nn

from baselines.stackgan.models import STAGE1_G, STAGE2_G
from cgmbench.errors import CgmbenchError

__all__ = [
    "read_state_dict",
    "load_strict",
    "build_for",
    "stage1_config_from_state_dict",
    "stage2_config_from_state_dict",
    "load_stage1_generator",
    "load_stage2_generator",
    "load_char_cnn_rnn_embeddings",
    "load_char_cnn_rnn_t7",
]

_STAGE1_PREFIX = "STAGE1_G."


# --------------------------------------------------------------------------------------
# State dicts
# --------------------------------------------------------------------------------------


def read_state_dict(path_or_sd: str | os.PathLike | Mapping[str, torch.Tensor]) -> tuple["OrderedDict[str, torch.Tensor]", str]:
    """Return ``(state_dict, source)``: a plain name → tensor ``OrderedDict`` (no ``_metadata``) and its name.

    Files ending in ``.safetensors`` are read with safetensors, anything else with
    ``torch.load(map_location="cpu", weights_only=True)``: a pickle that needs arbitrary objects is
    refused and nothing in it runs.
    """
    if isinstance(path_or_sd, Mapping):
        raw, source = path_or_sd, "the given state dict"
    else:
        source = os.fspath(path_or_sd)
        if not os.path.isfile(source):
            raise CgmbenchError(f"checkpoint file {source} does not exist", "download it or fix the path")
        try:
            if source.endswith(".safetensors"):
                from safetensors.torch import load_file

                raw = load_file(source, device="cpu")
            else:
                raw = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any reader failure is one user-facing error
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CgmbenchError(
                f"cannot read {source} as a plain tensor state dict ({type(err).__name__}: {first})",
                "official StackGAN/AttnGAN .pth files are plain state dicts readable with weights_only=True",
            ) from None
    if not isinstance(raw, Mapping):
        raise CgmbenchError(f"{source} holds a {type(raw).__name__}, not a state dict")
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            hint = "pass its 'state_dict' entry" if "state_dict" in raw else "expected names mapping to tensors"
            raise CgmbenchError(f"{source} is not a plain state dict: entry {key!r} is not a tensor", hint)
    return OrderedDict(raw.items()), source


def _fillable(net: nn.Module) -> set[str]:
    """BatchNorm ``num_batches_tracked`` keys torch fills in when a pre-0.4 state dict lacks them."""
    return {
        f"{name}.num_batches_tracked"
        for name, m in net.named_modules()
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats
    }


_M = TypeVar("_M", bound=nn.Module)


def build_for(state_dict: Mapping[str, torch.Tensor], factory: Callable[[], _M]) -> _M:
    """``factory()``, on the meta device when the state dict holds meta tensors (a manifest check
    of a large released model then allocates nothing)."""
    meta = any(v.is_meta for v in state_dict.values())
    with torch.device("meta") if meta else contextlib.nullcontext():
        return factory()


def load_strict(net: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    """``net.load_state_dict(state_dict, strict=True)`` with one clear error instead of torch's list.

    The first missing, unexpected or mis-shaped key is named with the file. Only BatchNorm
    ``num_batches_tracked`` may be absent (2017/2018 files). Meta tensors are assigned (``net``
    must then be on the meta device, see :func:`build_for`). Returns ``net`` in eval mode.
    """
    expected = net.state_dict()
    fillable = _fillable(net)
    missing = [k for k in expected if k not in state_dict and k not in fillable]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [k for k in state_dict if k in expected and tuple(state_dict[k].shape) != tuple(expected[k].shape)]
    what = type(net).__name__
    if missing:
        raise CgmbenchError(
            f"{source} does not match {what}: key {missing[0]!r} is missing ({len(missing)} missing in all)",
            "the file is of another model or configuration",
        )
    if unexpected:
        raise CgmbenchError(
            f"{source} does not match {what}: unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected in all)",
            "the file is of another model or configuration",
        )
    if shapes:
        k = shapes[0]
        raise CgmbenchError(
            f"{source} does not match {what}: key {k!r} has shape {tuple(state_dict[k].shape)}, "
            f"the model expects {tuple(expected[k].shape)} ({len(shapes)} mis-shaped in all)",
            "the configuration read from the file disagrees with the one asked for",
        )
    meta = any(v.is_meta for v in state_dict.values())
    net.load_state_dict(OrderedDict(state_dict.items()), strict=True, assign=meta)
    return net.eval()


def _other_family(sd: Mapping[str, torch.Tensor]) -> str | None:
    if "h_net1.fc.0.weight" in sd or "img_net1.img.0.weight" in sd:
        return "an AttnGAN G_NET"
    if "rnn.weight_ih_l0" in sd:
        return "an AttnGAN DAMSM text encoder (RNN_ENCODER)"
    if "Conv2d_1a_3x3.conv.weight" in sd:
        return "an AttnGAN DAMSM image encoder (CNN_ENCODER)"
    return None


def _require(sd: Mapping[str, torch.Tensor], key: str, source: str, ndim: int) -> torch.Tensor:
    if key not in sd:
        other = _other_family(sd)
        if other:
            raise CgmbenchError(f"{source} is {other} checkpoint, not a StackGAN generator",
                                "load it with baselines.attngan")
        raise CgmbenchError(f"{source} is not a StackGAN generator checkpoint: key {key!r} is missing")
    if sd[key].ndim != ndim:
        raise CgmbenchError(f"{source}: key {key!r} has shape {tuple(sd[key].shape)}, expected a {ndim}-d tensor")
    return sd[key]


def stage1_config_from_state_dict(sd: Mapping[str, torch.Tensor], source: str = "state dict", prefix: str = "") -> dict:
    """``STAGE1_G`` kwargs read from the shapes: ``ca_net.fc.weight`` (2C, T), ``fc.0.weight`` (128·GF, Z + C)."""
    ca = _require(sd, prefix + "ca_net.fc.weight", source, 2)
    fc = _require(sd, prefix + "fc.0.weight", source, 2)
    condition_dim, text_dim = ca.shape[0] // 2, ca.shape[1]
    if fc.shape[0] % 128 or fc.shape[1] <= condition_dim:
        raise CgmbenchError(f"{source}: key {prefix + 'fc.0.weight'!r} has shape {tuple(fc.shape)}, which no "
                            f"STAGE1_G with CONDITION_DIM {condition_dim} has")
    return dict(z_dim=fc.shape[1] - condition_dim, gf_dim=fc.shape[0] // 128, condition_dim=condition_dim,
                text_dim=text_dim)


def stage2_config_from_state_dict(sd: Mapping[str, torch.Tensor], source: str = "state dict") -> dict:
    """``STAGE2_G`` kwargs (and those of its Stage I) read from a ``netG_epoch_*.pth`` state dict."""
    s1 = stage1_config_from_state_dict(sd, source, _STAGE1_PREFIX)
    ca = _require(sd, "ca_net.fc.weight", source, 2)
    gf_dim = _require(sd, "encoder.0.weight", source, 4).shape[0]
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"residual\.(\d+)\.", k))}
    cfg = dict(z_dim=s1["z_dim"], gf_dim=gf_dim, condition_dim=ca.shape[0] // 2, r_num=len(blocks), text_dim=ca.shape[1])
    if (cfg["condition_dim"], cfg["text_dim"], cfg["gf_dim"]) != (s1["condition_dim"], s1["text_dim"], s1["gf_dim"]):
        raise CgmbenchError(
            f"{source}: Stage I (GF_DIM {s1['gf_dim']}, CONDITION_DIM {s1['condition_dim']}, TEXT.DIMENSION "
            f"{s1['text_dim']}) and Stage II (GF_DIM {gf_dim}, CONDITION_DIM {cfg['condition_dim']}, TEXT.DIMENSION "
            f"{cfg['text_dim']}) disagree", "the official code builds both from one cfg")
    return cfg


def _check_expected(cfg: dict, expected: dict, source: str) -> None:
    for name, want in expected.items():
        if want is not None and cfg[name] != want:
            raise CgmbenchError(f"{source} has {name} = {cfg[name]}, but {name} = {want} was asked for",
                                "use the configuration of the released file")


def load_stage2_generator(path_or_sd, *, r_num: int | None = None, gf_dim: int | None = None,
                          text_dim: int | None = None) -> STAGE2_G:
    """Build ``STAGE2_G(STAGE1_G(...))`` from the file's shapes and load it strictly (eval mode).

    ``r_num``/``gf_dim``/``text_dim`` are optional expectations: a file that disagrees is refused.
    """
    sd, source = read_state_dict(path_or_sd)
    if not any(k.startswith(_STAGE1_PREFIX) for k in sd):
        if "ca_net.fc.weight" in sd and "fc.0.weight" in sd:
            raise CgmbenchError(f"{source} is a Stage-I generator (no '{_STAGE1_PREFIX}' keys)",
                                "load it with load_stage1_generator")
    cfg = stage2_config_from_state_dict(sd, source)
    _check_expected(cfg, dict(r_num=r_num, gf_dim=gf_dim, text_dim=text_dim), source)
    s1 = dict(z_dim=cfg["z_dim"], gf_dim=cfg["gf_dim"], condition_dim=cfg["condition_dim"], text_dim=cfg["text_dim"])
    return load_strict(build_for(sd, lambda: STAGE2_G(STAGE1_G(**s1), **cfg)), sd, source)


def load_stage1_generator(path_or_sd, *, from_stage2: bool = False) -> STAGE1_G:
    """Load a Stage-I generator: a ``STAGE1_G`` state dict, or (``from_stage2=True``) the
    ``STAGE1_G.*`` part of a Stage-II file such as ``netG_epoch_90.pth``."""
    sd, source = read_state_dict(path_or_sd)
    if from_stage2:
        sd = OrderedDict((k[len(_STAGE1_PREFIX):], v) for k, v in sd.items() if k.startswith(_STAGE1_PREFIX))
        if not sd:
            raise CgmbenchError(f"{source} holds no '{_STAGE1_PREFIX}' keys", "it is not a Stage-II generator file")
    elif any(k.startswith(_STAGE1_PREFIX) for k in sd):
        raise CgmbenchError(f"{source} is a Stage-II generator (keys under '{_STAGE1_PREFIX}')",
                            "pass from_stage2=True or use load_stage2_generator")
    cfg = stage1_config_from_state_dict(sd, source)
    return load_strict(build_for(sd, lambda: STAGE1_G(**cfg)), sd, source)


# --------------------------------------------------------------------------------------
# char-CNN-RNN text embeddings (pickle)
# --------------------------------------------------------------------------------------


def _reconstruct_ndarray(subtype, shape, dtype):
    """``numpy.core.multiarray._reconstruct`` restricted to plain ``ndarray``."""
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"refusing to build an array of type {subtype!r}")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _latin1_bytes(text, encoding="latin1"):
    """``_codecs.encode`` as Python 3 protocol-2 pickles use it for bytes; only the latin-1 codec."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refusing _codecs.encode with other arguments than (str, 'latin1')")
    return text.encode("latin1")


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds lists, tuples, dicts, strings, numbers and plain numpy arrays; refuses every other global."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct_ndarray,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct_ndarray,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_bytes,
    }

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def load_char_cnn_rnn_embeddings(path: str | os.PathLike, text_dim: int = 1024) -> np.ndarray:
    """Read ``char-CNN-RNN-embeddings.pickle``: float32 ``(num_images, captions_per_image, text_dim)``.

    The file is a Python-2 pickle (``encoding="latin1"`` rebuilds its byte strings) of a list of
    per-image arrays or of one array; ``(N, text_dim)`` files are returned as ``(N, 1, text_dim)``.
    Any object other than plain containers and numeric numpy arrays is refused before it is built.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CgmbenchError(f"embedding file {path} does not exist", "download the StackGAN preprocessed embeddings")
    with open(path, "rb") as f:
        data = f.read()
    try:
        obj = _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
        arr = np.asarray(obj)
    except Exception as err:  # noqa: BLE001
        raise CgmbenchError(f"cannot read {path} as char-CNN-RNN embeddings: {err}",
                            "only pickles of plain numeric arrays and lists are accepted") from None
    if arr.dtype.kind not in "fiu" or arr.ndim not in (2, 3) or arr.shape[-1] != text_dim:
        raise CgmbenchError(f"{path} holds a {arr.dtype} array of shape {arr.shape}",
                            f"expected float (num_images, captions_per_image, {text_dim})")
    arr = arr.astype(np.float32, copy=False)
    return arr[:, None, :] if arr.ndim == 2 else arr


def load_char_cnn_rnn_t7(path: str | os.PathLike, text_dim: int = 1024) -> tuple[np.ndarray, list[str] | None]:
    """Read char-CNN-RNN embeddings from a Torch7 ``.t7`` file: ``(float32 (N, text_dim), captions or None)``.

    Accepted layouts: ``get_embedding.lua``'s table ``{raw_txt = {str...}, fea_txt = {Tensor(1, text_dim)...}}``
    (captions returned, one per embedding) or a bare tensor ``(..., text_dim)`` (rows flattened; no captions).
    """
    from baselines.stackgan.torch7 import lua_list, read_t7

    obj = read_t7(path)
    path = os.fspath(path)
    captions = None
    if isinstance(obj, dict):
        if "fea_txt" not in obj:
            raise CgmbenchError(f"{path} holds a table with keys {sorted(map(str, obj))[:5]}, not get_embedding.lua's "
                                "{raw_txt, fea_txt}", "pass the .t7 file written by StackGAN's demo/get_embedding.lua")
        rows = [np.asarray(t) for t in lua_list(obj["fea_txt"], f"{path}: fea_txt")]
        if any(not isinstance(r, np.ndarray) or r.dtype.kind != "f" or r.size != text_dim for r in rows):
            raise CgmbenchError(f"{path}: fea_txt must hold float tensors of {text_dim} values each")
        arr = np.stack([r.reshape(text_dim) for r in rows]) if rows else np.zeros((0, text_dim))
        if "raw_txt" in obj:
            captions = lua_list(obj["raw_txt"], f"{path}: raw_txt")
            if len(captions) != len(arr) or not all(isinstance(c, str) for c in captions):
                raise CgmbenchError(f"{path}: raw_txt holds {len(captions)} entries for {len(arr)} embeddings",
                                    "raw_txt must list one caption string per fea_txt tensor")
    elif isinstance(obj, np.ndarray) and obj.dtype.kind == "f" and obj.ndim >= 1 and obj.shape[-1] == text_dim:
        arr = obj.reshape(-1, text_dim)
    else:
        what = f"a {obj.dtype} tensor of shape {obj.shape}" if isinstance(obj, np.ndarray) else type(obj).__name__
        raise CgmbenchError(f"{path} holds {what}", f"expected char-CNN-RNN embeddings (..., {text_dim})")
    return arr.astype(np.float32), captions
