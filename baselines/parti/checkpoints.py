"""Strict loading of LlamaGen's released files into :mod:`baselines.parti`.

Files (https://huggingface.co/FoundationVision/LlamaGen, https://huggingface.co/peizesun/llamagen_t2i):

=========================  ==========================================  =====================================
file                       model                                       weights inside the file
=========================  ==========================================  =====================================
``vq_ds16_c2i.pt``         ``VQ_16(codebook_size=16384, codebook_embed_dim=8)``   ``["model"]`` (loaded strictly upstream)
``vq_ds16_t2i.pt``         same                                        ``["model"]``
``c2i_B_256.pt``           ``GPT_B(block_size=256, num_classes=1000)``  ``["model"]``
``c2i_L_256.pt``           ``GPT_L(block_size=256, num_classes=1000)``  ``["model"]``
``t2i_XL_stage1_256.pt``   ``GPT_XL(block_size=256, cls_token_num=120, model_type="t2i")``  ``["model"]``/``["module"]``
=========================  ==========================================  =====================================

Files are read with ``torch.load(map_location="cpu", weights_only=True)`` (or safetensors): nothing is
unpickled beyond tensors and plain containers. GPT weights are looked up as LlamaGen's sample scripts do —
``"model"`` (DDP), ``"module"`` (DeepSpeed), ``"state_dict"``, else the file itself (FSDP) — or under
``"ema"`` when asked. The official scripts load GPTs with ``strict=False``; here every load is strict:
the only entries dropped are ``freqs_cis`` (a plain attribute that some released files carry) and
KV-cache buffers (``*.kv_cache.k_cache``/``v_cache``, runtime state). A missing, unexpected or
mis-shaped key is one :class:`~cgmbench.errors.CgmbenchError` naming the file and the key.

The configuration is inferred from the state dict (widths, depths, codebook, vocabulary, classes,
caption width) where the shapes determine it; the rest (GPT ``block_size``, the head count for
non-preset widths, t2i ``cls_token_num``) is given and then checked by the strict load.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from cgmbench.errors import CgmbenchError

from . import models as gpt_models
from . import tokenizer as vq_models

__all__ = [
    "RELEASED",
    "read_checkpoint",
    "select_state_dict",
    "infer_vq_config",
    "infer_gpt_config",
    "load_state_dict_strict",
    "load_vq",
    "load_gpt",
    "check_codebook_match",
    "load_llamagen",
    "build_released",
]

#: released file name → (kind, factory name, factory kwargs) as LlamaGen's sample scripts build them
RELEASED: dict[str, tuple[str, str, dict]] = {
    "vq_ds16_c2i.pt": ("vq", "VQ_16", dict(codebook_size=16384, codebook_embed_dim=8)),
    "vq_ds16_t2i.pt": ("vq", "VQ_16", dict(codebook_size=16384, codebook_embed_dim=8)),
    "c2i_B_256.pt": ("gpt", "GPT_B", dict(vocab_size=16384, block_size=256, num_classes=1000, cls_token_num=1,
                                         model_type="c2i")),
    "c2i_B_384.pt": ("gpt", "GPT_B", dict(vocab_size=16384, block_size=576, num_classes=1000, cls_token_num=1,
                                         model_type="c2i")),
    "c2i_L_256.pt": ("gpt", "GPT_L", dict(vocab_size=16384, block_size=256, num_classes=1000, cls_token_num=1,
                                         model_type="c2i")),
    "t2i_XL_stage1_256.pt": ("gpt", "GPT_XL", dict(block_size=256, cls_token_num=120, model_type="t2i")),
    "t2i_XL_stage2_512.pt": ("gpt", "GPT_XL", dict(block_size=1024, cls_token_num=120, model_type="t2i")),
}

_MAX_LISTED = 3
_IGNORED_GPT_KEY = re.compile(r"^(freqs_cis|layers\.\d+\.attention\.kv_cache\.(k_cache|v_cache))$")


def build_released(name: str, device: str | torch.device = "cpu"):
    """The model a released file belongs to, built on ``device`` (``"meta"`` allocates nothing)."""
    if name not in RELEASED:
        raise CgmbenchError(f"unknown LlamaGen file {name!r}", f"known files: {sorted(RELEASED)}")
    kind, factory, kwargs = RELEASED[name]
    module = vq_models if kind == "vq" else gpt_models
    with torch.device(device):
        return getattr(module, factory)(**kwargs)


# --------------------------------------------------------------------------- reading
def read_checkpoint(path: str | Path) -> Mapping:
    """Read ``.safetensors`` or a torch file with ``weights_only=True`` on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CgmbenchError(f"LlamaGen checkpoint not found: {path}",
                            "download it from https://huggingface.co/FoundationVision/LlamaGen")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # safetensors raises its own error type
            raise CgmbenchError(f"{path} is not a readable safetensors file ({err})") from err
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        what = f"it contains the Python object {found.group(1)}" if found else "it needs unsafe unpickling"
        raise CgmbenchError(f"{path} cannot be read with torch.load(weights_only=True): {what}",
                            "re-save only the tensors, e.g. torch.save({'model': model.state_dict()}, path)") from err
    except (RuntimeError, EOFError, OSError) as err:
        raise CgmbenchError(f"{path} is not a readable torch checkpoint ({err})") from err
    if not isinstance(obj, Mapping):
        raise CgmbenchError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return obj


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def select_state_dict(obj: Mapping, source: str, kind: str, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """The weights inside a loaded file: see the module docstring for the keys tried, in order."""
    if use_ema:
        order = ("ema",)
    elif kind == "vq":
        order = ("model",)
    else:
        order = ("model", "module", "state_dict")
    for key in order:
        if key in obj:
            if not _is_state_dict(obj[key]):
                raise CgmbenchError(f"{source}: entry {key!r} is not a state dict of tensors")
            return dict(obj[key])
    if use_ema:
        raise CgmbenchError(f"{source} has no 'ema' weights", f"its entries: {sorted(obj)[:8]}; load without use_ema")
    if _is_state_dict(obj):  # a bare state dict (FSDP-saved GPTs, or a re-saved file)
        return dict(obj)
    raise CgmbenchError(f"{source}: no weights found under {list(order)} and the file is not a bare state dict",
                        f"its top-level entries: {sorted(map(str, obj))[:8]}")


def _load_obj(path_or_state_dict, kind: str, use_ema: bool = False) -> tuple[dict[str, torch.Tensor], str]:
    if isinstance(path_or_state_dict, Mapping):
        source = "the given state dict"
        obj = path_or_state_dict
    else:
        source = str(path_or_state_dict)
        obj = read_checkpoint(path_or_state_dict)
    return select_state_dict(obj, source, kind, use_ema), source


# --------------------------------------------------------------------------- config inference
def _shape(sd: Mapping[str, torch.Tensor], key: str, source: str) -> tuple[int, ...]:
    if key not in sd:
        raise CgmbenchError(f"{source}: missing key {key!r}", "is this a LlamaGen file of the right kind?")
    return tuple(sd[key].shape)


def infer_vq_config(sd: Mapping[str, torch.Tensor], source: str = "state dict",
                    codebook_l2_norm: bool = True) -> vq_models.ModelArgs:
    """Tokenizer config from the shapes (the L2-norm flag is not visible in a state dict: True in every release)."""
    n_e, e_dim = _shape(sd, "quantize.embedding.weight", source)
    z_channels = _shape(sd, "quant_conv.weight", source)[1]
    ch = _shape(sd, "encoder.conv_in.weight", source)[0]
    levels = sorted({int(m.group(1)) for k in sd if (m := re.match(r"encoder\.conv_blocks\.(\d+)\.", k))})
    enc_mult = [_shape(sd, f"encoder.conv_blocks.{i}.res.0.conv1.weight", source)[0] // ch for i in levels]
    dec_levels = sorted({int(m.group(1)) for k in sd if (m := re.match(r"decoder\.conv_blocks\.(\d+)\.", k))})
    dec_mult = [_shape(sd, f"decoder.conv_blocks.{i}.res.0.conv1.weight", source)[0] // ch for i in dec_levels][::-1]
    num_res = len({m.group(1) for k in sd if (m := re.match(r"encoder\.conv_blocks\.0\.res\.(\d+)\.", k))})
    return vq_models.ModelArgs(codebook_size=n_e, codebook_embed_dim=e_dim, codebook_l2_norm=codebook_l2_norm,
                               codebook_show_usage="quantize.codebook_used" in sd, encoder_ch_mult=enc_mult,
                               decoder_ch_mult=dec_mult, z_channels=z_channels, ch=ch, num_res_blocks=num_res)


def infer_gpt_config(sd: Mapping[str, torch.Tensor], block_size: int, *, n_head: int | None = None,
                     cls_token_num: int | None = None, source: str = "state dict") -> gpt_models.ModelArgs:
    """GPT config from the shapes plus ``block_size`` (and ``n_head`` when the width is not a preset's)."""
    vocab, dim = _shape(sd, "tok_embeddings.weight", source)
    n_layer = len({int(m.group(1)) for k in sd if (m := re.match(r"layers\.(\d+)\.", k))})
    if n_head is None:
        if dim not in gpt_models.GPT_N_HEAD:
            raise CgmbenchError(f"{source}: width {dim} is not one of LlamaGen's presets, so its head count is unknown",
                                "pass n_head=")
        n_head = gpt_models.GPT_N_HEAD[dim]
    kwargs: dict = dict(dim=dim, n_layer=n_layer, n_head=n_head, vocab_size=vocab, block_size=block_size)
    if "cls_embedding.embedding_table.weight" in sd:
        rows = _shape(sd, "cls_embedding.embedding_table.weight", source)[0]
        kwargs.update(model_type="c2i", num_classes=rows - 1, cls_token_num=cls_token_num or 1)
    elif "cls_embedding.cap_proj.fc1.weight" in sd:
        caption_dim = _shape(sd, "cls_embedding.cap_proj.fc1.weight", source)[1]
        token_num = _shape(sd, "cls_embedding.uncond_embedding", source)[0]
        kwargs.update(model_type="t2i", caption_dim=caption_dim, cls_token_num=cls_token_num or 120,
                      caption_token_num=token_num)
    else:
        raise CgmbenchError(f"{source}: neither cls_embedding.embedding_table (c2i) nor cls_embedding.cap_proj (t2i)",
                            "is this a LlamaGen GPT file?")
    hidden = _shape(sd, "layers.0.feed_forward.w1.weight", source)[0] if n_layer else 0
    args = gpt_models.ModelArgs(**kwargs)
    if n_layer and args.ffn_hidden != hidden:
        if hidden < int(8 * dim / 3):
            raise CgmbenchError(f"{source}: feed-forward width {hidden} is below 8·dim/3 for dim {dim}",
                                "this is not a LlamaGen GPT layout")
        args.multiple_of = hidden  # rounds int(8·dim/3) up to exactly `hidden`
    return args


# --------------------------------------------------------------------------- strict loading
def load_state_dict_strict(model: torch.nn.Module, sd: Mapping[str, torch.Tensor], source: str) -> torch.nn.Module:
    """``model.load_state_dict(sd, strict=True)`` with one clear error naming the file and the keys.

    A model on the meta device takes the given tensors as they are (``assign=True``); otherwise they are
    copied into its parameters.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [f"{k} (file {tuple(sd[k].shape)}, model {tuple(v.shape)})"
                  for k, v in expected.items() if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or unexpected or mismatched:
        parts = []
        for label, items in (("missing key", missing), ("unexpected key", unexpected),
                             ("mis-shaped key", mismatched)):
            if items:
                more = f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
                parts.append(f"{len(items)} {label}{'s' if len(items) > 1 else ''}: {', '.join(items[:_MAX_LISTED])}{more}")
        raise CgmbenchError(f"{source} does not match {type(model).__name__}: {'; '.join(parts)}",
                            "check the preset and its block_size / codebook size / classes against the file")
    on_meta = any(p.is_meta for p in model.parameters())
    model.load_state_dict(sd, strict=True, assign=on_meta)
    return model


def _finish(model: torch.nn.Module, sd: Mapping[str, torch.Tensor], device, dtype) -> torch.nn.Module:
    if not all(t.is_meta for t in sd.values()):  # a manifest of meta tensors stays on meta
        model = model.to(device=device, dtype=dtype)
    return model.eval()


def load_vq(path_or_state_dict, config: vq_models.ModelArgs | None = None,
            device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> vq_models.VQModel:
    """A :class:`VQModel` with the file's weights (config inferred when not given), in eval mode.

    The model is built on the meta device and takes the file's tensors, then moves to ``device``/``dtype``.
    """
    sd, source = _load_obj(path_or_state_dict, "vq")
    config = infer_vq_config(sd, source) if config is None else config
    with torch.device("meta"):  # nothing allocated twice: the file's tensors are assigned
        model = vq_models.VQModel(config)
    return _finish(load_state_dict_strict(model, sd, source), sd, device, dtype)


def load_gpt(path_or_state_dict, *, block_size: int | None = None, config: gpt_models.ModelArgs | None = None,
             n_head: int | None = None, cls_token_num: int | None = None, use_ema: bool = False,
             device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> gpt_models.Transformer:
    """A :class:`Transformer` with the file's weights, in eval mode.

    Give ``config``, or ``block_size`` (image tokens: 256 for 256 px with the ds16 tokenizer) and let the
    rest be inferred (see :func:`infer_gpt_config`). ``freqs_cis`` and KV-cache entries are dropped.
    """
    sd, source = _load_obj(path_or_state_dict, "gpt", use_ema)
    sd = {k: v for k, v in sd.items() if not _IGNORED_GPT_KEY.match(k)}
    if config is None:
        if block_size is None:
            raise CgmbenchError("load_gpt needs block_size (or a config)",
                                "block_size = (image size / 16)**2, e.g. 256 for the *_256.pt files")
        config = infer_gpt_config(sd, block_size, n_head=n_head, cls_token_num=cls_token_num, source=source)
    with torch.device("meta"):
        model = gpt_models.Transformer(config)
    return _finish(load_state_dict_strict(model, sd, source), sd, device, dtype)


def check_codebook_match(vq: vq_models.VQModel, gpt: gpt_models.Transformer,
                         vq_source: str = "the tokenizer", gpt_source: str = "the GPT") -> None:
    """One clear error when the GPT's vocabulary is not the tokenizer's codebook."""
    n_codes, n_vocab = vq.config.codebook_size, gpt.vocab_size
    if n_codes != n_vocab:
        raise CgmbenchError(
            f"codebook size mismatch: {vq_source} has {n_codes} codes but {gpt_source} predicts {n_vocab} tokens",
            "pair each GPT with the tokenizer it was trained on (vq_ds16_c2i.pt for c2i_*, vq_ds16_t2i.pt for t2i_*)")


def load_llamagen(vq_path, gpt_path, *, block_size: int, device: str | torch.device = "cpu", **gpt_kwargs):
    """Load a tokenizer and a GPT and check that they fit together; returns ``(vq, gpt)``."""
    vq = load_vq(vq_path, device=device)
    gpt = load_gpt(gpt_path, block_size=block_size, device=device, **gpt_kwargs)
    check_codebook_match(vq, gpt, str(vq_path) if not isinstance(vq_path, Mapping) else "the tokenizer",
                         str(gpt_path) if not isinstance(gpt_path, Mapping) else "the GPT")
    return vq, gpt
