"""SD3-style MM-DiT (multimodal diffusion transformer) in Stability AI's original naming.

Reference: Esser et al., "Scaling Rectified Flow Transformers for High-Resolution Image
Synthesis" (SD3, 2024). The module follows the semantics of ``mmditx.py::MMDiTX`` in
https://github.com/Stability-AI/sd3.5 (commit ``fbf8f483``) for the SD3-medium configuration,
and uses its parameter names, so that the ``model.diffusion_model.`` slice of
``sd3_medium.safetensors`` loads strictly:

    x_embedder.proj                      patchify conv, (D, C, p, p)
    pos_embed                            persistent buffer (1, M*M, D), M = pos_embed_max_size
    t_embedder.mlp.{0,2}                 timestep MLP (256 -> D -> D)
    y_embedder.mlp.{0,2}                 pooled-text MLP (adm_in_channels -> D -> D)
    context_embedder                     Linear(context_dim -> D) on the token sequence
    joint_blocks.N.{context_block,x_block}.{attn.qkv, attn.proj, adaLN_modulation.1, mlp.fc1, mlp.fc2}
    final_layer.{linear, adaLN_modulation.1}

The last ``context_block`` is ``pre_only``: it only contributes keys/values/queries to the
final joint attention, so it has no ``attn.proj``, no ``mlp`` and a 2*D adaLN output.

Conventions
-----------
* ``x``: latent ``(B, C, H, W)``, ``H`` and ``W`` multiples of ``patch_size``; the
  positional table is centre-cropped to the ``(H/p, W/p)`` grid (``cropped_pos_embed``).
* ``t``: ``(B,)`` float timesteps on the 0..1000 scale, i.e. ``sigma * 1000`` for SD3's
  rectified-flow sigma in [0, 1].
* ``y``: pooled text embedding ``(B, adm_in_channels)`` (2048 = CLIP-L 768 + CLIP-G 1280).
* ``context``: text tokens ``(B, L, context_dim)`` (4096 = T5-XXL width, CLIP padded).
* Output: ``(B, out_channels, H, W)`` velocity prediction ``v = eps - x0``
  (denoised ``x0 = x_t - sigma * v``).
* Joint attention concatenates tokens in the order ``[context, x]`` as the official code.

Unlike the official class, ``hidden_size`` and ``num_heads`` are explicit arguments (the
official class hard-wires ``hidden_size = 64 * depth`` and ``num_heads = depth``);
``MMDiT.from_state_dict`` infers the architecture from tensor shapes as ``sd3_impls.BaseModel``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Mapping, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "SD3_VAE_SCALE_FACTOR",
    "SD3_VAE_SHIFT_FACTOR",
    "CHECKPOINT_PREFIX",
    "IGNORED_CHECKPOINT_PREFIXES",
    "SD3_MEDIUM_CONFIG",
    "sd3_latent_process_in",
    "sd3_latent_process_out",
    "get_2d_sincos_pos_embed",
    "modulate",
    "PatchEmbed",
    "TimestepEmbedder",
    "VectorEmbedder",
    "Mlp",
    "SelfAttention",
    "DismantledBlock",
    "JointBlock",
    "FinalLayer",
    "MMDiT",
    "check_state_dict",
]

# ----------------------------------------------------------------------------------------
# Latent format of the 16-channel SD3 VAE
# ----------------------------------------------------------------------------------------

#: Multiply VAE latents by this after subtracting the shift (``SD3LatentFormat.scale_factor``).
SD3_VAE_SCALE_FACTOR: float = 1.5305
#: Subtract this from raw VAE latents before scaling (``SD3LatentFormat.shift_factor``).
SD3_VAE_SHIFT_FACTOR: float = 0.0609


def sd3_latent_process_in(latent: torch.Tensor) -> torch.Tensor:
    """Raw VAE latent -> diffusion latent: ``(z - 0.0609) * 1.5305`` (after VAE encode)."""
    return (latent - SD3_VAE_SHIFT_FACTOR) * SD3_VAE_SCALE_FACTOR


def sd3_latent_process_out(latent: torch.Tensor) -> torch.Tensor:
    """Diffusion latent -> raw VAE latent: ``z / 1.5305 + 0.0609`` (before VAE decode)."""
    return latent / SD3_VAE_SCALE_FACTOR + SD3_VAE_SHIFT_FACTOR


# ----------------------------------------------------------------------------------------
# Checkpoint layout
# ----------------------------------------------------------------------------------------

#: Prefix of the MM-DiT tensors inside ``sd3_medium*.safetensors``.
CHECKPOINT_PREFIX = "model.diffusion_model."
#: Other components stored in the same single-file checkpoints (VAE, text encoders); skipped.
IGNORED_CHECKPOINT_PREFIXES = ("first_stage_model.", "text_encoders.")

#: Constructor arguments of SD3-medium (depth 24 -> hidden 64*24 = 1536, 24 heads).
SD3_MEDIUM_CONFIG = dict(
    patch_size=2,
    in_channels=16,
    out_channels=16,
    hidden_size=1536,
    depth=24,
    num_heads=24,
    mlp_ratio=4.0,
    adm_in_channels=2048,
    context_dim=4096,
    pos_embed_max_size=192,
    qk_norm=None,
    qkv_bias=True,
)


# ----------------------------------------------------------------------------------------
# Positional embedding
# ----------------------------------------------------------------------------------------


def _1d_sincos(embed_dim: int, pos: torch.Tensor) -> torch.Tensor:
    """``[sin(pos * omega), cos(pos * omega)]`` with ``omega_i = 10000^(-2i/embed_dim)``."""
    if embed_dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dimension, got {embed_dim}")
    omega = torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega
    out = pos.reshape(-1, 1).to(torch.float64) * omega[None]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def get_2d_sincos_pos_embed(
    embed_dim: int, grid_size: int, scaling_factor: Optional[float] = None, offset: Optional[float] = None
) -> torch.Tensor:
    """Fixed 2-D sin-cos table ``(grid_size**2, embed_dim)`` in float32, row-major over (h, w).

    The first half of the channels encodes the column (w) coordinate and the second half the
    row (h) coordinate, as the official ``get_2d_sincos_pos_embed``. Coordinates are divided by
    ``scaling_factor`` and then shifted by ``-offset`` when given. SD3 checkpoints store this
    table in ``pos_embed``; it is only needed to initialise a model trained from scratch
    (diffusers' SD3 uses ``scaling_factor = pos_embed_max_size / (sample_size / patch_size)``).
    """
    coords = torch.arange(grid_size, dtype=torch.float64)
    grid_w = coords[None, :].expand(grid_size, grid_size)
    grid_h = coords[:, None].expand(grid_size, grid_size)
    if scaling_factor is not None:
        grid_w, grid_h = grid_w / scaling_factor, grid_h / scaling_factor
    if offset is not None:
        grid_w, grid_h = grid_w - offset, grid_h - offset
    half = embed_dim // 2
    emb = torch.cat([_1d_sincos(half, grid_w), _1d_sincos(half, grid_h)], dim=1)
    return emb.to(torch.float32)


# ----------------------------------------------------------------------------------------
# Embedders
# ----------------------------------------------------------------------------------------


def modulate(x: torch.Tensor, shift: Optional[torch.Tensor], scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation ``x * (1 + scale) + shift`` with per-sample ``(B, D)`` shift/scale."""
    out = x * (1 + scale.unsqueeze(1))
    return out if shift is None else out + shift.unsqueeze(1)


class PatchEmbed(nn.Module):
    """Non-overlapping ``p x p`` patches -> tokens: ``(B, C, H, W) -> (B, H/p * W/p, D)``."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, bias: bool = True):
        super().__init__()
        self.patch_size = (patch_size, patch_size)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    """Scalar timestep -> ``(B, D)``: sinusoidal features ``[cos, sin]`` then ``mlp.{0,2}``."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size, bias=True),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )
        self.frequency_embedding_size = frequency_embedding_size

    @staticmethod
    def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
        """``[cos(t * f_i), sin(t * f_i)]`` with ``f_i = max_period^(-i/half)``, i < half = dim//2.

        ``t`` is ``(B,)`` and may be fractional; output ``(B, dim)`` float32 (zero-padded if dim
        is odd). As in the official code the arguments ``t * f_i`` are float32 products; ``f_i``
        and the cos/sin are evaluated in float64 and rounded to float32, so the result does not
        depend on the CPU's float32 ``exp``/``cos`` kernels (at t ~ 1000 one ulp of ``f_i``
        moves the argument by ~6e-5).
        """
        half = dim // 2
        # computed on the CPU (float64 is unavailable on some accelerators); t is only (B,)
        exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32) / half
        freqs = torch.exp(exponent.double()).float()
        args = (t.detach().to("cpu", torch.float32)[:, None] * freqs[None]).double()
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1).float()
        if dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return emb.to(t.device)

    def forward(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        t_freq = self.timestep_embedding(t, self.frequency_embedding_size).to(dtype)
        return self.mlp(t_freq)


class VectorEmbedder(nn.Module):
    """Flat vector (pooled text embedding) ``(B, input_dim) -> (B, D)`` through ``mlp.{0,2}``."""

    def __init__(self, input_dim: int, hidden_size: int):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(input_dim, hidden_size, bias=True),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


# ----------------------------------------------------------------------------------------
# Joint (MM-DiT) blocks
# ----------------------------------------------------------------------------------------


class Mlp(nn.Module):
    """``fc2(GELU_tanh(fc1(x)))`` (timm ``Mlp`` naming)."""

    def __init__(self, in_features: int, hidden_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Multi-head SDPA on ``(B, L, H*Dh)`` tensors; returns ``(B, L, H*Dh)``, scale ``Dh^-0.5``."""
    b, _, dim = q.shape
    dh = dim // num_heads
    q, k, v = (z.reshape(b, -1, num_heads, dh).transpose(1, 2) for z in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).reshape(b, -1, dim)


class SelfAttention(nn.Module):
    """Fused ``qkv`` projection (+ optional per-head RMS ``ln_q``/``ln_k``) and output ``proj``.

    Attention itself is computed jointly by :class:`JointBlock`; this module only provides
    ``pre_attention`` (tokens -> q, k, v) and ``post_attention`` (attended tokens -> ``proj``).
    ``pre_only=True`` drops ``proj`` (last context block).
    """

    def __init__(
        self, dim: int, num_heads: int, qkv_bias: bool = True, pre_only: bool = False, qk_norm: Optional[str] = None
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.pre_only = pre_only
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        if not pre_only:
            self.proj = nn.Linear(dim, dim)
        if qk_norm == "rms":
            self.ln_q = nn.RMSNorm(self.head_dim, eps=1e-6, elementwise_affine=True)
            self.ln_k = nn.RMSNorm(self.head_dim, eps=1e-6, elementwise_affine=True)
        elif qk_norm is None:
            self.ln_q = nn.Identity()
            self.ln_k = nn.Identity()
        else:
            raise ValueError(f"qk_norm must be None or 'rms', got {qk_norm!r}")

    def pre_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, _ = x.shape
        # qkv channels are laid out as (3, heads, head_dim)
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).unbind(2)
        q = self.ln_q(q).reshape(b, n, -1)
        k = self.ln_k(k).reshape(b, n, -1)
        return q, k, v.reshape(b, n, -1)

    def post_attention(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_only:
            raise RuntimeError("post_attention called on a pre_only attention (no proj)")
        return self.proj(x)


class DismantledBlock(nn.Module):
    """One stream (x or context) of an MM-DiT block, adaLN-Zero conditioned on ``c``.

    ``adaLN_modulation = Sequential(SiLU, Linear(D, 6D))`` gives
    ``shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp`` (in that order); the
    ``pre_only`` variant gives only ``shift_msa, scale_msa`` (2D). ``norm1``/``norm2`` are
    affine-free LayerNorms with eps 1e-6; the MLP is GELU(tanh) with ratio ``mlp_ratio``.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        pre_only: bool = False,
        qk_norm: Optional[str] = None,
    ):
        super().__init__()
        self.pre_only = pre_only
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(hidden_size, num_heads, qkv_bias=qkv_bias, pre_only=pre_only, qk_norm=qk_norm)
        if not pre_only:
            self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
            self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        n_mods = 2 if pre_only else 6
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, n_mods * hidden_size, bias=True))

    def pre_attention(self, x: torch.Tensor, c: torch.Tensor):
        """Return ``((q, k, v), intermediates)``; intermediates is None for ``pre_only``."""
        if self.pre_only:
            shift_msa, scale_msa = self.adaLN_modulation(c).chunk(2, dim=1)
            return self.attn.pre_attention(modulate(self.norm1(x), shift_msa, scale_msa)), None
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        qkv = self.attn.pre_attention(modulate(self.norm1(x), shift_msa, scale_msa))
        return qkv, (x, gate_msa, shift_mlp, scale_mlp, gate_mlp)

    def post_attention(self, attn, x, gate_msa, shift_mlp, scale_mlp, gate_mlp) -> torch.Tensor:
        """Gated residual attention output, then gated residual MLP."""
        x = x + gate_msa.unsqueeze(1) * self.attn.post_attention(attn)
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class JointBlock(nn.Module):
    """MM-DiT block: separate weights per stream, one attention over ``[context, x]`` tokens."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        pre_only: bool = False,
        qk_norm: Optional[str] = None,
    ):
        super().__init__()
        self.context_block = DismantledBlock(hidden_size, num_heads, mlp_ratio, qkv_bias, pre_only, qk_norm)
        self.x_block = DismantledBlock(hidden_size, num_heads, mlp_ratio, qkv_bias, False, qk_norm)

    def forward(self, context: torch.Tensor, x: torch.Tensor, c: torch.Tensor):
        """``(context (B,L,D), x (B,N,D), c (B,D)) -> (context or None if pre_only, x)``."""
        ctx_qkv, ctx_inter = self.context_block.pre_attention(context, c)
        x_qkv, x_inter = self.x_block.pre_attention(x, c)
        q, k, v = (torch.cat([ctx_qkv[i], x_qkv[i]], dim=1) for i in range(3))
        attn = attention(q, k, v, self.x_block.attn.num_heads)
        n_ctx = context.shape[1]
        ctx_attn, x_attn = attn[:, :n_ctx], attn[:, n_ctx:]
        context = None if self.context_block.pre_only else self.context_block.post_attention(ctx_attn, *ctx_inter)
        x = self.x_block.post_attention(x_attn, *x_inter)
        return context, x


class FinalLayer(nn.Module):
    """``linear(modulate(LayerNorm(x), shift, scale))``, ``adaLN_modulation`` -> ``shift | scale``."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


# ----------------------------------------------------------------------------------------
# Full network
# ----------------------------------------------------------------------------------------


class MMDiT(nn.Module):
    """SD3 MM-DiT (``MMDiTX`` semantics without registers / dual attention), original naming.

    Defaults are SD3-medium (see :data:`SD3_MEDIUM_CONFIG`). ``pos_embed`` is a persistent
    zero buffer ``(1, pos_embed_max_size**2, hidden_size)`` filled from the checkpoint
    (or by :func:`get_2d_sincos_pos_embed` for training from scratch).

    Args:
        patch_size: ``p``; the latent side must be a multiple of it.
        in_channels / out_channels: latent channels (16 for SD3); out defaults to in.
        hidden_size / depth / num_heads: width ``D``, number of joint blocks, attention heads.
        mlp_ratio: MLP width ``int(D * mlp_ratio)``.
        adm_in_channels: pooled-text width, or None for no ``y_embedder``.
        context_dim: text-token width for ``context_embedder``, or None for identity.
        pos_embed_max_size: side ``M`` of the stored positional grid.
        qk_norm: None (SD3-medium) or ``"rms"`` (SD3.5-large style per-head RMSNorm).
        qkv_bias: bias on the fused ``qkv`` projections.
    """

    def __init__(
        self,
        *,
        patch_size: int = 2,
        in_channels: int = 16,
        out_channels: Optional[int] = None,
        hidden_size: int = 1536,
        depth: int = 24,
        num_heads: int = 24,
        mlp_ratio: float = 4.0,
        adm_in_channels: Optional[int] = 2048,
        context_dim: Optional[int] = 4096,
        pos_embed_max_size: int = 192,
        qk_norm: Optional[str] = None,
        qkv_bias: bool = True,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size={hidden_size} must be divisible by num_heads={num_heads}")
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.out_channels = in_channels if out_channels is None else out_channels
        self.hidden_size = hidden_size
        self.depth = depth
        self.num_heads = num_heads
        self.pos_embed_max_size = pos_embed_max_size
        self.adm_in_channels = adm_in_channels
        self.context_dim = context_dim
        self.qk_norm = qk_norm

        self.x_embedder = PatchEmbed(patch_size, in_channels, hidden_size, bias=True)
        self.t_embedder = TimestepEmbedder(hidden_size)
        if adm_in_channels is not None:
            self.y_embedder = VectorEmbedder(adm_in_channels, hidden_size)
        self.context_embedder = nn.Linear(context_dim, hidden_size) if context_dim is not None else nn.Identity()
        self.register_buffer("pos_embed", torch.zeros(1, pos_embed_max_size**2, hidden_size), persistent=True)
        self.joint_blocks = nn.ModuleList(
            [
                JointBlock(hidden_size, num_heads, mlp_ratio, qkv_bias, pre_only=(i == depth - 1), qk_norm=qk_norm)
                for i in range(depth)
            ]
        )
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)

    # -- positional embedding / patch layout --------------------------------------------

    def cropped_pos_embed(self, hw: tuple[int, int]) -> torch.Tensor:
        """Centre crop of the ``M x M`` table to the patch grid of an ``(H, W)`` latent -> ``(1, h*w, D)``."""
        p = self.patch_size
        h, w = hw[0] // p, hw[1] // p
        m = self.pos_embed_max_size
        if h > m or w > m:
            raise ValueError(
                f"latent grid {h}x{w} patches exceeds pos_embed_max_size={m}; "
                f"use a latent of at most {m * p}x{m * p}"
            )
        top, left = (m - h) // 2, (m - w) // 2
        table = self.pos_embed.reshape(1, m, m, -1)[:, top : top + h, left : left + w, :]
        return table.reshape(1, h * w, -1)

    def unpatchify(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """``(B, h*w, p*p*C)`` tokens (channel-last within a patch) -> ``(B, C, H, W)``."""
        p, c = self.patch_size, self.out_channels
        h, w = hw[0] // p, hw[1] // p
        x = x.reshape(x.shape[0], h, w, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, h * p, w * p)

    # -- forward ------------------------------------------------------------------------

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        y: Optional[torch.Tensor] = None,
        context: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Velocity prediction.

        Args:
            x: ``(B, in_channels, H, W)`` noisy latent, H and W multiples of ``patch_size``.
            t: ``(B,)`` (or scalar) timesteps on the 0..1000 scale (``sigma * 1000``).
            y: ``(B, adm_in_channels)`` pooled text embedding (required when the model has
               a ``y_embedder``, as every SD3 checkpoint does).
            context: ``(B, L, context_dim)`` text tokens.
        Returns:
            ``(B, out_channels, H, W)``.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        hw = tuple(x.shape[-2:])
        if hw[0] % self.patch_size or hw[1] % self.patch_size:
            raise ValueError(f"latent size {hw} must be a multiple of patch_size={self.patch_size}")
        if context is None:
            raise ValueError("context (B, L, context_dim) text tokens are required")
        if context.ndim != 3 or context.shape[0] != x.shape[0]:
            raise ValueError(f"context must be (B={x.shape[0]}, L, D), got {tuple(context.shape)}")
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be a scalar or have shape ({x.shape[0]},), got {tuple(t.shape)}")

        tokens = self.x_embedder(x) + self.cropped_pos_embed(hw).to(x.dtype)
        c = self.t_embedder(t, dtype=tokens.dtype)
        if y is not None:
            if not hasattr(self, "y_embedder"):
                raise ValueError("this model has no y_embedder (adm_in_channels=None); pass y=None")
            c = c + self.y_embedder(y)
        elif hasattr(self, "y_embedder"):
            raise ValueError(f"y (B, {self.adm_in_channels}) pooled text embedding is required")
        ctx = self.context_embedder(context)
        for block in self.joint_blocks:
            ctx, tokens = block(ctx, tokens, c=c)
        tokens = self.final_layer(tokens, c)
        return self.unpatchify(tokens, hw)

    # -- construction from checkpoints ----------------------------------------------------

    @staticmethod
    def config_from_state_dict(
        state_dict: Mapping[str, torch.Tensor], num_heads: Optional[int] = None
    ) -> dict:
        """Constructor kwargs inferred from tensor shapes (as ``sd3_impls.BaseModel``).

        Accepts real tensors or anything with a ``.shape`` (e.g. meta tensors). Keys must not
        carry the ``model.diffusion_model.`` prefix (see :func:`extract_diffusion_model_state_dict`).
        ``num_heads`` defaults to ``depth``, the official rule (64-dim heads at 64*depth width).
        """
        keys = set(state_dict)
        required = ("x_embedder.proj.weight", "pos_embed", "final_layer.linear.weight")
        missing = [k for k in required if k not in keys]
        if missing:
            prefixed = [k for k in keys if k.startswith(CHECKPOINT_PREFIX)]
            hint = (
                f"; keys carry the {CHECKPOINT_PREFIX!r} prefix, strip it with extract_diffusion_model_state_dict"
                if prefixed
                else ""
            )
            raise ValueError(f"not an SD3 MM-DiT state dict: missing {missing}{hint}")
        if any(".attn2." in k for k in keys):
            raise ValueError(
                "state dict has x_block.attn2 (MMDiT-X dual attention, SD3.5-medium), which this "
                "SD3-medium-style MMDiT does not implement"
            )
        if "register" in keys:
            raise ValueError("state dict has register tokens ('register'), which this MMDiT does not implement")

        wx = state_dict["x_embedder.proj.weight"].shape  # (D, C, p, p)
        hidden_size, in_channels, patch_size = int(wx[0]), int(wx[1]), int(wx[2])
        block_ids = sorted({int(m.group(1)) for k in keys if (m := re.match(r"joint_blocks\.(\d+)\.", k))})
        if not block_ids:
            raise ValueError("state dict has no joint_blocks.N.* tensors")
        depth = len(block_ids)
        if block_ids != list(range(depth)):
            raise ValueError(f"joint_blocks indices are not contiguous from 0: {block_ids}")
        num_patches = int(state_dict["pos_embed"].shape[1])
        m = int(round(math.sqrt(num_patches)))
        if m * m != num_patches:
            raise ValueError(f"pos_embed has {num_patches} positions, not a square grid")
        out_channels = int(state_dict["final_layer.linear.weight"].shape[0]) // (patch_size * patch_size)
        fc1 = state_dict.get("joint_blocks.0.x_block.mlp.fc1.weight")
        mlp_ratio = float(fc1.shape[0]) / hidden_size if fc1 is not None else 4.0
        adm = state_dict.get("y_embedder.mlp.0.weight")
        ctx = state_dict.get("context_embedder.weight")
        return dict(
            patch_size=patch_size,
            in_channels=in_channels,
            out_channels=out_channels,
            hidden_size=hidden_size,
            depth=depth,
            num_heads=depth if num_heads is None else num_heads,
            mlp_ratio=mlp_ratio,
            adm_in_channels=int(adm.shape[1]) if adm is not None else None,
            context_dim=int(ctx.shape[1]) if ctx is not None else None,
            pos_embed_max_size=m,
            qk_norm="rms" if "joint_blocks.0.context_block.attn.ln_k.weight" in keys else None,
            qkv_bias="joint_blocks.0.x_block.attn.qkv.bias" in keys,
        )

    @classmethod
    def from_state_dict(
        cls,
        state_dict: Mapping[str, torch.Tensor],
        *,
        num_heads: Optional[int] = None,
        dtype: Optional[torch.dtype] = None,
        device: torch.device | str = "cpu",
    ) -> "MMDiT":
        """Build the network from an (unprefixed) official state dict's shapes and load it strictly.

        The model is created on the ``meta`` device and the checkpoint tensors are assigned
        (no double allocation), so without a ``dtype``/``device`` change the model shares
        storage with ``state_dict``. ``dtype`` casts floating tensors (default: keep the file's).
        Raises ``ValueError`` naming missing / unexpected keys and shape mismatches.
        """
        config = cls.config_from_state_dict(state_dict, num_heads=num_heads)
        with torch.device("meta"):
            model = cls(**config)
        model.load_official_state_dict(state_dict, assign=True)
        return model.to(device=device, dtype=dtype) if dtype is not None else model.to(device=device)

    def load_official_state_dict(self, state_dict: Mapping[str, torch.Tensor], assign: bool = False) -> None:
        """Strict load with a clear ``ValueError`` naming the first mismatching keys/shapes."""
        check_state_dict(self, state_dict)
        self.load_state_dict(dict(state_dict), strict=True, assign=assign)


def _first(items: Iterable[str], n: int = 8) -> str:
    items = sorted(items)
    more = f" ... (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise ``ValueError`` if ``state_dict`` does not match ``model`` key for key and shape for shape."""
    expected = model.state_dict()
    missing = set(expected) - set(state_dict)
    unexpected = set(state_dict) - set(expected)
    bad_shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state_dict))
        if tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_first(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_first(unexpected)}")
    if bad_shapes:
        problems.append(f"{len(bad_shapes)} shape mismatch(es): {'; '.join(bad_shapes[:8])}")
    if problems:
        hint = ""
        if any(k.startswith(CHECKPOINT_PREFIX) for k in unexpected):
            hint = f" (keys carry the {CHECKPOINT_PREFIX!r} prefix: strip it with extract_diffusion_model_state_dict)"
        elif any(k.startswith("transformer_blocks.") for k in unexpected):
            hint = " (diffusers naming: convert with diffusers_to_original)"
        raise ValueError("state dict does not match the SD3 MMDiT: " + "; ".join(problems) + hint)
