"""``videomae_v2_g_ssv2``: the VideoMAE-v2 ViT-g/14 (SSv2 fine-tuned) features of content-debiased FVD.

cd-FVD (songweige/content-debiased-fvd, ``cdfvd.fvd.cdfvd('videomae')``) feeds VideoMAE-v2's
``vit_g_hybrid_pt_1200e_ssv2_ft.pth`` through ``model.forward_features``: the mean of the last block's tokens
after ``fc_norm`` (1408-d). :class:`VideoMAEv2` is that network (OpenGVLab/VideoMAEv2
``models/modeling_finetune.py`` ``VisionTransformer``, as cd-fvd vendors it) with the official module and
parameter names, so the released state dict loads strictly:

``patch_embed.proj.{weight,bias}`` (Conv3d, kernel = stride = (tubelet 2, 14, 14)), ``blocks.{i}.norm1``,
``blocks.{i}.attn.qkv.weight`` (no bias; ``attn.q_bias`` and ``attn.v_bias`` are separate, the k bias is zero),
``blocks.{i}.attn.proj``, ``blocks.{i}.norm2``, ``blocks.{i}.mlp.fc1`` / ``fc2`` (exact GELU), ``fc_norm``, ``head``
(174 SSv2 classes, unused by FVD). The position table is the fixed sinusoid one (not in the file); for a clip with
another number of time steps than the model's it is interpolated trilinearly over time, as the official
``interpolate_pos_encoding`` does. LayerNorm eps 1e-6, no layer scale (``init_values = 0``).

Preprocessing (cd-fvd ``third_party/VideoMAEv2/utils.py::preprocess_videomae``): uint8 frames ``x / 255``,
**no mean/std normalisation**, each frame resized with ``F.interpolate(bilinear, align_corners=False)`` to
224x224, layout ``[B, 3, T, 224, 224]``.

:data:`VIDEOMAE_V2_G` is the released configuration (depth 40, width 1408, 16 heads, MLP 6144); tests use a
reduced-depth :class:`VideoMAEv2Config` with the same names. The released file holds the state dict under
``"model"`` or ``"module"`` (cd-fvd's loader tries both); it is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cgmbench.extractors.errors import ExtractorError
from cgmbench.extractors.i3d import _VideoExtractor

__all__ = ["VideoMAEv2Config", "VIDEOMAE_V2_G", "VideoMAEv2", "sinusoid_table", "preprocess_videomae",
           "load_videomae_state_dict", "VideoMAEv2Extractor"]


@dataclass(frozen=True)
class VideoMAEv2Config:
    img_size: int = 224
    patch_size: int = 14
    embed_dim: int = 1408
    depth: int = 40
    num_heads: int = 16
    mlp_ratio: float = 48 / 11
    num_classes: int = 174
    all_frames: int = 16
    tubelet_size: int = 2
    norm_eps: float = 1e-6

    @property
    def grid(self) -> tuple[int, int, int]:
        """Token grid (time, height, width)."""
        side = self.img_size // self.patch_size
        return self.all_frames // self.tubelet_size, side, side


#: ``vit_giant_patch14_224(num_classes=174, all_frames=16, tubelet_size=2, use_mean_pooling=True)``
VIDEOMAE_V2_G = VideoMAEv2Config()


def sinusoid_table(n_position: int, dim: int) -> torch.Tensor:
    """``[1, n_position, dim]``: angle ``pos / 10000^(2 (j // 2) / dim)``, sin on even ``j``, cos on odd (float64
    arithmetic, float32 result, as the official numpy table)."""
    pos = torch.arange(n_position, dtype=torch.float64, device="cpu")[:, None]  # a fixed table: always computed
    j = torch.arange(dim, dtype=torch.float64, device="cpu")[None]
    angle = pos / torch.pow(torch.tensor(10000.0, dtype=torch.float64, device="cpu"),
                            2 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = torch.where(j.long() % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float().unsqueeze(0)


class PatchEmbed(nn.Module):
    def __init__(self, cfg: VideoMAEv2Config):
        super().__init__()
        k = (cfg.tubelet_size, cfg.patch_size, cfg.patch_size)
        self.proj = nn.Conv3d(3, cfg.embed_dim, kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, T, H, W] -> [B, N, D]
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: VideoMAEv2Config):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.attn = Attention(cfg.embed_dim, cfg.num_heads)
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.mlp = Mlp(cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VideoMAEv2(nn.Module):
    """The fine-tuned VideoMAE-v2 ViT in the official naming; :meth:`forward_features` is cd-FVD's feature."""

    def __init__(self, cfg: VideoMAEv2Config = VIDEOMAE_V2_G):
        super().__init__()
        if cfg.embed_dim % cfg.num_heads:
            raise ExtractorError(f"VideoMAE-v2 width {cfg.embed_dim} is not divisible by {cfg.num_heads} heads")
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        t, h, w = cfg.grid
        self.register_buffer("pos_embed", sinusoid_table(t * h * w, cfg.embed_dim), persistent=False)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        self.fc_norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes)

    def position_table(self, frames: int) -> torch.Tensor:
        """The fixed table for ``frames`` input frames: the model's own, or trilinearly resized over time
        (official ``interpolate_pos_encoding``, which adds 0.1 to the target length against rounding)."""
        t, h, w = self.cfg.grid
        t0 = frames // self.cfg.tubelet_size
        if t0 == t:
            return self.pos_embed
        dim = self.pos_embed.shape[-1]
        grid = self.pos_embed.permute(0, 2, 1).reshape(1, dim, t, h, w)
        grid = F.interpolate(grid, scale_factor=((t0 + 0.1) / t, 1, 1), mode="trilinear")
        if grid.shape[2] != t0:
            raise ExtractorError(f"cannot resize the position table from {t} to {t0} time steps")
        return grid.reshape(1, dim, -1).permute(0, 2, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, H, W]`` in [0, 1] -> ``fc_norm(mean of the last block's tokens)`` ``[B, embed_dim]``."""
        tokens = self.patch_embed(x)
        tokens = tokens + self.position_table(x.shape[2]).to(tokens.dtype)
        for block in self.blocks:
            tokens = block(tokens)
        return self.fc_norm(tokens.mean(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def preprocess_videomae(videos: torch.Tensor, size: int = 224) -> torch.Tensor:
    """uint8 ``[B, T, 3, H, W]`` -> float32 ``[B, 3, T, size, size]``: ``x / 255`` (no mean/std), then each frame
    ``F.interpolate(bilinear, align_corners=False)`` to ``size`` (cd-fvd ``preprocess_videomae``)."""
    b, t, c, h, w = videos.shape
    x = videos.permute(0, 2, 1, 3, 4).reshape(b * c, t, h, w).float() / 255  # per video [C, T, H, W], as cd-fvd
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.reshape(b, c, t, size, size)


def load_videomae_state_dict(model: VideoMAEv2, source: Mapping | str | os.PathLike, name: str | None = None) -> VideoMAEv2:
    """Strictly load the released ``vit_g_hybrid_pt_1200e_ssv2_ft.pth`` (state dict under ``model``/``module``,
    or bare) into ``model``; one :class:`ExtractorError` names the file and the first bad key."""
    if isinstance(source, (str, os.PathLike)):
        name = name or os.fspath(source)
        try:  # the training scripts may store their argparse Namespace beside the weights: plain data, admitted
            with torch.serialization.safe_globals([argparse.Namespace]):
                source = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - unreadable or unsafe pickle: one line
            raise ExtractorError(f"cannot read VideoMAE-v2 weights {name}: {type(error).__name__}: "
                                 f"{str(error).splitlines()[0] if str(error) else ''}",
                                 "pass vit_g_hybrid_pt_1200e_ssv2_ft.pth (a weights-only PyTorch file)") from None
    name = name or "<state dict>"
    if isinstance(source, Mapping):
        for key in ("model", "module"):
            if key in source and isinstance(source[key], Mapping):
                source = source[key]
                break
    if not isinstance(source, Mapping) or not all(isinstance(v, torch.Tensor) for v in source.values()):
        raise ExtractorError(f"{name} does not hold a VideoMAE-v2 state dict")
    expected = model.state_dict()
    hint = "expected OpenGVLab VideoMAE-v2 ViT names (patch_embed.proj, blocks.N.attn.qkv, fc_norm, head)"
    for k in expected:
        if k not in source:
            raise ExtractorError(f"{name} is missing key '{k}'", hint)
    for k in source:
        if k not in expected:
            raise ExtractorError(f"{name} has unexpected key '{k}'", hint)
    for k, v in expected.items():
        if tuple(source[k].shape) != tuple(v.shape):
            raise ExtractorError(f"{name}: key '{k}' has shape {tuple(source[k].shape)}, the "
                                 f"{model.cfg.depth}-block, {model.cfg.embed_dim}-wide model expects {tuple(v.shape)}",
                                 hint)
    model.load_state_dict(dict(source), strict=True)
    return model.eval()


class VideoMAEv2Extractor(_VideoExtractor):
    """``videomae_v2_g_ssv2``: uint8 videos ``[B, T, 3, H, W]`` -> float64 ``[B, embed_dim]`` (cd-FVD features)."""

    name = "videomae_v2_g_ssv2"

    def __init__(self, weights: Mapping | str | Path | None = None, config: VideoMAEv2Config = VIDEOMAE_V2_G):
        super().__init__()
        self.net = VideoMAEv2(config)
        self.feature_dim = config.embed_dim
        self.min_frames = config.tubelet_size
        self.config = config
        if weights is not None:
            if isinstance(weights, (str, Path)):
                from cgmbench.weights import sha256_file

                self.weights_sha256 = sha256_file(weights)
            load_videomae_state_dict(self.net, weights)
        self.net.eval().requires_grad_(False)

    def features(self, videos: torch.Tensor) -> torch.Tensor:
        x = preprocess_videomae(videos, self.config.img_size).to(self.net.fc_norm.weight.device)
        return self.net.forward_features(x)

    def preprocessing(self) -> dict[str, Any]:
        return {"input": "uint8 [B,T,3,H,W] -> [B,3,T,224,224]", "scale": "x/255, no mean/std normalisation",
                "resize": "F.interpolate bilinear align_corners=False per frame to 224x224",
                "feature": "forward_features: fc_norm(mean of the last block's tokens)",
                "config": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self.config).items()}}
