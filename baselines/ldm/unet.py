"""The LDM / Stable Diffusion 1.x denoising U-Net, in CompVis naming.

Clean-room re-implementation of ``UNetModel`` from CompVis/latent-diffusion and
CompVis/stable-diffusion (``ldm/modules/diffusionmodules/openaimodel.py`` and
``ldm/modules/attention.py``), written so that the ``model.diffusion_model.*`` part of the
official ``.ckpt`` files loads with ``strict=True`` once the prefix is stripped
(see :func:`baselines.ldm.split_compvis_checkpoint`).

Conventions
-----------
* ``x``: (B, in_channels, H, W) latents (the SD latent is already multiplied by 0.18215).
* ``timesteps``: (B,) integer DDPM step indices in [0, 1000) (floats are accepted too).
* ``context``: (B, L, context_dim) cross-attention tokens (CLIP ViT-L/14 hidden states for SD 1.x,
  LDM-BERT for txt2img-f8-large, a ``ClassEmbedder`` token for cin256-v2), needed by every
  ``SpatialTransformer``.
* ``y``: (B,) int64 class labels, only when ``num_classes`` is set (ADM-style ``label_emb``).
* Output: (B, out_channels, H, W), the ε prediction for the SD/LDM checkpoints.

State-dict layout (CompVis): ``time_embed.{0,2}``, ``label_emb``, ``input_blocks.N.M.*``,
``middle_block.{0,1,2}.*``, ``output_blocks.N.M.*``, ``out.{0,2}``. ``ResBlock``:
``in_layers.{0,2}``, ``emb_layers.1``, ``out_layers.{0,3}``, ``skip_connection``;
``Downsample.op``; ``Upsample.conv``; ``SpatialTransformer``: ``norm``, ``proj_in`` (1×1 conv),
``transformer_blocks.N.{attn1,ff.net.0.proj,ff.net.2,attn2,norm1,norm2,norm3}``, ``proj_out``.

Attention is computed with :func:`torch.nn.functional.scaled_dot_product_attention`, whose default
scale 1/√d_head is the official one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

__all__ = [
    "GroupNorm32",
    "timestep_embedding",
    "TimestepBlock",
    "TimestepEmbedSequential",
    "Upsample",
    "Downsample",
    "ResBlock",
    "AttentionBlock",
    "CrossAttention",
    "FeedForward",
    "GEGLU",
    "BasicTransformerBlock",
    "SpatialTransformer",
    "UNetModel",
]


# ----------------------------------------------------------------------------------------------
# Helpers (ldm/modules/diffusionmodules/util.py)
# ----------------------------------------------------------------------------------------------


class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32 groups, eps 1e-5) evaluated in float32 and cast back to the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def normalization(channels: int) -> GroupNorm32:
    """The U-Net's normalisation layer: ``GroupNorm32(32, channels)``."""
    return GroupNorm32(32, channels)


def conv_nd(dims: int, *args, **kwargs) -> nn.Module:
    """``nn.Conv{1,2,3}d`` chosen by ``dims``."""
    if dims == 1:
        return nn.Conv1d(*args, **kwargs)
    if dims == 2:
        return nn.Conv2d(*args, **kwargs)
    if dims == 3:
        return nn.Conv3d(*args, **kwargs)
    raise ValueError(f"unsupported dims={dims}; expected 1, 2 or 3")


def avg_pool_nd(dims: int, *args, **kwargs) -> nn.Module:
    """``nn.AvgPool{1,2,3}d`` chosen by ``dims``."""
    if dims == 1:
        return nn.AvgPool1d(*args, **kwargs)
    if dims == 2:
        return nn.AvgPool2d(*args, **kwargs)
    if dims == 3:
        return nn.AvgPool3d(*args, **kwargs)
    raise ValueError(f"unsupported dims={dims}; expected 1, 2 or 3")


def zero_module(module: nn.Module) -> nn.Module:
    """Zero every parameter of ``module`` (official init of output projections) and return it."""
    for p in module.parameters():
        p.detach().zero_()
    return module


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
    """Sinusoidal timestep embedding, ``cat[cos, sin]`` order (CompVis ``util.timestep_embedding``).

    ``freqs_i = exp(-ln(max_period) * i / half)`` for ``i < half = dim // 2``;
    returns (B, dim) float32 (a zero column is appended when ``dim`` is odd).
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    args = timesteps[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


# ----------------------------------------------------------------------------------------------
# Blocks of the U-Net (openaimodel.py)
# ----------------------------------------------------------------------------------------------


class TimestepBlock(nn.Module):
    """A module whose ``forward`` takes the timestep embedding as second argument."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class TimestepEmbedSequential(nn.Sequential):
    """Sequential that routes ``emb`` to :class:`TimestepBlock` and ``context`` to
    :class:`SpatialTransformer` children; other children get ``x`` only."""

    def forward(self, x, emb, context=None):
        for layer in self:
            if isinstance(layer, TimestepBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class Upsample(nn.Module):
    """Nearest ×2 upsampling (only H, W for ``dims=3``), then an optional 3×3 conv ``conv``."""

    def __init__(self, channels, use_conv, dims=2, out_channels=None, padding=1):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        self.dims = dims
        if use_conv:
            self.conv = conv_nd(dims, self.channels, self.out_channels, 3, padding=padding)

    def forward(self, x):
        if x.shape[1] != self.channels:
            raise ValueError(f"Upsample expects {self.channels} channels, got {x.shape[1]}")
        if self.dims == 3:
            x = F.interpolate(x, (x.shape[2], x.shape[3] * 2, x.shape[4] * 2), mode="nearest")
        else:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        if self.use_conv:
            x = self.conv(x)
        return x


class Downsample(nn.Module):
    """×2 downsampling: a stride-2 3×3 conv ``op`` (``use_conv``) or average pooling."""

    def __init__(self, channels, use_conv, dims=2, out_channels=None, padding=1):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        self.dims = dims
        stride = 2 if dims != 3 else (1, 2, 2)
        if use_conv:
            self.op = conv_nd(dims, self.channels, self.out_channels, 3, stride=stride, padding=padding)
        else:
            if self.channels != self.out_channels:
                raise ValueError("Downsample without conv cannot change the number of channels")
            self.op = avg_pool_nd(dims, kernel_size=stride, stride=stride)

    def forward(self, x):
        if x.shape[1] != self.channels:
            raise ValueError(f"Downsample expects {self.channels} channels, got {x.shape[1]}")
        return self.op(x)


class ResBlock(TimestepBlock):
    """Residual block conditioned on the timestep embedding.

    ``h = in_layers(x)`` (GroupNorm, SiLU, conv3×3); then either ``h + emb_layers(emb)`` or, with
    ``use_scale_shift_norm``, ``norm(h)·(1+scale)+shift``; ``out_layers`` = (GroupNorm, SiLU,
    Dropout, conv3×3); output ``skip_connection(x) + h``. With ``up``/``down`` the resampling sits
    between the in-layers' SiLU and conv (and is applied to the skip path too).
    """

    def __init__(
        self,
        channels,
        emb_channels,
        dropout,
        out_channels=None,
        use_conv=False,
        use_scale_shift_norm=False,
        dims=2,
        use_checkpoint=False,
        up=False,
        down=False,
    ):
        super().__init__()
        self.channels = channels
        self.emb_channels = emb_channels
        self.dropout = dropout
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        self.use_checkpoint = use_checkpoint
        self.use_scale_shift_norm = use_scale_shift_norm

        self.in_layers = nn.Sequential(
            normalization(channels),
            nn.SiLU(),
            conv_nd(dims, channels, self.out_channels, 3, padding=1),
        )
        self.updown = up or down
        if up:
            self.h_upd = Upsample(channels, False, dims)
            self.x_upd = Upsample(channels, False, dims)
        elif down:
            self.h_upd = Downsample(channels, False, dims)
            self.x_upd = Downsample(channels, False, dims)
        else:
            self.h_upd = self.x_upd = nn.Identity()

        self.emb_layers = nn.Sequential(
            nn.SiLU(),
            nn.Linear(emb_channels, 2 * self.out_channels if use_scale_shift_norm else self.out_channels),
        )
        self.out_layers = nn.Sequential(
            normalization(self.out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            zero_module(conv_nd(dims, self.out_channels, self.out_channels, 3, padding=1)),
        )
        if self.out_channels == channels:
            self.skip_connection = nn.Identity()
        elif use_conv:
            self.skip_connection = conv_nd(dims, channels, self.out_channels, 3, padding=1)
        else:
            self.skip_connection = conv_nd(dims, channels, self.out_channels, 1)

    def forward(self, x, emb):
        if self.use_checkpoint and self.training and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(self._forward, x, emb, use_reentrant=False)
        return self._forward(x, emb)

    def _forward(self, x, emb):
        if self.updown:
            h = self.in_layers[:-1](x)
            h = self.h_upd(h)
            x = self.x_upd(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)
        while emb_out.dim() < h.dim():
            emb_out = emb_out[..., None]
        if self.use_scale_shift_norm:
            out_norm, out_rest = self.out_layers[0], self.out_layers[1:]
            scale, shift = emb_out.chunk(2, dim=1)
            h = out_rest(out_norm(h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Plain spatial self-attention of the ADM/LDM U-Net (used when ``use_spatial_transformer`` is
    False): ``x + proj_out(attn(qkv(norm(x))))`` over the flattened spatial positions.

    ``qkv``/``proj_out`` are 1-D 1×1 convs. ``use_new_attention_order=False`` (legacy) splits the
    qkv channels per head as ``(heads, 3·ch)``; ``True`` splits ``(3, heads·ch)``.
    """

    def __init__(self, channels, num_heads=1, num_head_channels=-1, use_checkpoint=False,
                 use_new_attention_order=False):
        super().__init__()
        self.channels = channels
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(f"channels {channels} not divisible by num_head_channels {num_head_channels}")
            self.num_heads = channels // num_head_channels
        self.use_checkpoint = use_checkpoint
        self.use_new_attention_order = use_new_attention_order
        self.norm = normalization(channels)
        self.qkv = conv_nd(1, channels, channels * 3, 1)
        self.proj_out = zero_module(conv_nd(1, channels, channels, 1))

    def forward(self, x):
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))  # (B, 3C, T)
        heads, ch, length = self.num_heads, c // self.num_heads, x.shape[-1]
        if self.use_new_attention_order:
            q, k, v = (t.reshape(b * heads, ch, length) for t in qkv.chunk(3, dim=1))
        else:
            q, k, v = qkv.reshape(b * heads, 3 * ch, length).split(ch, dim=1)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        h = a.transpose(1, 2).reshape(b, c, length)
        h = self.proj_out(h)
        return (x + h).reshape(b, c, *spatial)


# ----------------------------------------------------------------------------------------------
# Spatial transformer (ldm/modules/attention.py)
# ----------------------------------------------------------------------------------------------


class GEGLU(nn.Module):
    """``proj`` to 2·dim_out, split into (a, gate); return ``a · gelu(gate)`` (exact erf GELU)."""

    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x):
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    """``net = (GEGLU or Linear+GELU, Dropout, Linear)``, hidden width ``mult·dim``."""

    def __init__(self, dim, dim_out=None, mult=4, glu=False, dropout=0.0):
        super().__init__()
        inner_dim = int(dim * mult)
        dim_out = dim if dim_out is None else dim_out
        project_in = GEGLU(dim, inner_dim) if glu else nn.Sequential(nn.Linear(dim, inner_dim), nn.GELU())
        self.net = nn.Sequential(project_in, nn.Dropout(dropout), nn.Linear(inner_dim, dim_out))

    def forward(self, x):
        return self.net(x)


class CrossAttention(nn.Module):
    """Multi-head attention of tokens ``x`` (B, N, query_dim) over ``context`` (B, L, context_dim);
    ``context=None`` makes it self-attention. ``to_q/to_k/to_v`` have no bias; ``to_out`` =
    (Linear, Dropout). Scale 1/√dim_head.

    ``processor``: when set, ``processor(self, x, context)`` computes the layer instead of the built-in
    scaled-dot-product attention (an attention processor in the diffusers sense; prompt-to-prompt's attention
    control, :mod:`baselines.editing.attention_control`, installs one per layer). None (default): built-in."""

    processor = None

    def __init__(self, query_dim, context_dim=None, heads=8, dim_head=64, dropout=0.0):
        super().__init__()
        inner_dim = dim_head * heads
        context_dim = query_dim if context_dim is None else context_dim
        self.heads = heads
        self.dim_head = dim_head
        self.scale = dim_head**-0.5
        self.to_q = nn.Linear(query_dim, inner_dim, bias=False)
        self.to_k = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_v = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner_dim, query_dim), nn.Dropout(dropout))

    def forward(self, x, context=None):
        if self.processor is not None:
            return self.processor(self, x, context)
        context = x if context is None else context
        b = x.shape[0]
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        q, k, v = (t.reshape(b, -1, self.heads, self.dim_head).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, dim_head)
        out = out.transpose(1, 2).reshape(b, -1, self.heads * self.dim_head)
        return self.to_out(out)


class BasicTransformerBlock(nn.Module):
    """Pre-norm transformer block: self-attention ``attn1``, cross-attention ``attn2`` on the
    context, GEGLU feed-forward ``ff``; LayerNorms ``norm1..3`` (registration order as official:
    attn1, ff, attn2, norm1, norm2, norm3)."""

    def __init__(self, dim, n_heads, d_head, dropout=0.0, context_dim=None, gated_ff=True, checkpoint=True):
        super().__init__()
        self.attn1 = CrossAttention(query_dim=dim, heads=n_heads, dim_head=d_head, dropout=dropout)
        self.ff = FeedForward(dim, dropout=dropout, glu=gated_ff)
        self.attn2 = CrossAttention(query_dim=dim, context_dim=context_dim, heads=n_heads, dim_head=d_head,
                                    dropout=dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.checkpoint = checkpoint

    def forward(self, x, context=None):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context=context) + x
        x = self.ff(self.norm3(x)) + x
        return x


class SpatialTransformer(nn.Module):
    """Transformer over the H·W positions of a feature map (LDM cross-attention conditioning).

    ``x_in + proj_out(blocks(proj_in(norm(x_in))))`` where ``norm`` is a plain
    ``GroupNorm(32, C, eps=1e-6)`` (not GroupNorm32), ``proj_in``/``proj_out`` are 1×1 Conv2d and
    the blocks see tokens (B, H·W, n_heads·d_head).
    """

    def __init__(self, in_channels, n_heads, d_head, depth=1, dropout=0.0, context_dim=None):
        super().__init__()
        self.in_channels = in_channels
        inner_dim = n_heads * d_head
        self.norm = nn.GroupNorm(num_groups=32, num_channels=in_channels, eps=1e-6, affine=True)
        self.proj_in = nn.Conv2d(in_channels, inner_dim, kernel_size=1, stride=1, padding=0)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner_dim, n_heads, d_head, dropout=dropout, context_dim=context_dim)
             for _ in range(depth)]
        )
        self.proj_out = zero_module(nn.Conv2d(inner_dim, in_channels, kernel_size=1, stride=1, padding=0))

    def forward(self, x, context=None):
        b, c, h, w = x.shape
        x_in = x
        x = self.proj_in(self.norm(x))
        x = x.flatten(2).transpose(1, 2)  # (B, H*W, inner)
        for block in self.transformer_blocks:
            x = block(x, context=context)
        x = x.transpose(1, 2).reshape(b, -1, h, w)
        return self.proj_out(x) + x_in


# ----------------------------------------------------------------------------------------------
# The U-Net
# ----------------------------------------------------------------------------------------------


class UNetModel(nn.Module):
    """CompVis ``UNetModel`` (openaimodel.py), arguments and defaults as official.

    ``attention_resolutions`` holds downsampling *factors* (``ds`` = 1, 2, 4, …) at which attention
    is inserted. Heads: with ``num_head_channels == -1`` each attention layer has ``num_heads``
    heads of ``ch // num_heads`` channels; otherwise ``ch // num_head_channels`` heads of
    ``num_head_channels``. ``legacy=True`` keeps the old quirk ``d_head = ch // num_heads`` for the
    spatial transformer (and passes ``num_head_channels`` to the plain AttentionBlock).
    ``use_checkpoint`` only toggles gradient checkpointing (no effect on keys or outputs).
    ``use_fp16=True`` (the ADM half-precision torso) is not supported: use ``torch.autocast``
    or cast the inputs and the whole model instead.
    """

    def __init__(
        self,
        image_size,
        in_channels,
        model_channels,
        out_channels,
        num_res_blocks,
        attention_resolutions,
        dropout=0,
        channel_mult=(1, 2, 4, 8),
        conv_resample=True,
        dims=2,
        num_classes=None,
        use_checkpoint=False,
        use_fp16=False,
        num_heads=-1,
        num_head_channels=-1,
        num_heads_upsample=-1,
        use_scale_shift_norm=False,
        resblock_updown=False,
        use_new_attention_order=False,
        use_spatial_transformer=False,
        transformer_depth=1,
        context_dim=None,
        n_embed=None,
        legacy=True,
    ):
        super().__init__()
        if use_spatial_transformer and context_dim is None:
            raise ValueError("use_spatial_transformer=True needs context_dim (the cross-attention width)")
        if context_dim is not None and not use_spatial_transformer:
            raise ValueError("context_dim is only used with use_spatial_transformer=True")
        if num_heads == -1 and num_head_channels == -1:
            raise ValueError("set either num_heads or num_head_channels")
        if use_fp16:
            raise ValueError("use_fp16=True is not supported; run the model under torch.autocast instead")
        if num_heads_upsample == -1:
            num_heads_upsample = num_heads
        if isinstance(context_dim, Sequence):
            context_dim = list(context_dim)

        self.image_size = image_size
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.num_res_blocks = num_res_blocks
        self.attention_resolutions = tuple(attention_resolutions)
        self.dropout = dropout
        self.channel_mult = tuple(channel_mult)
        self.conv_resample = conv_resample
        self.num_classes = num_classes
        self.use_checkpoint = use_checkpoint
        self.num_heads = num_heads
        self.num_head_channels = num_head_channels
        self.num_heads_upsample = num_heads_upsample
        self.predict_codebook_ids = n_embed is not None

        def attention_layer(ch: int, heads_arg: int) -> nn.Module:
            # Head split as in the official constructor (including the ``legacy`` quirk).
            if num_head_channels == -1:
                dim_head = ch // heads_arg
                n_heads = heads_arg
            else:
                n_heads = ch // num_head_channels
                dim_head = num_head_channels
            if legacy:
                dim_head = ch // n_heads if use_spatial_transformer else num_head_channels
            if use_spatial_transformer:
                return SpatialTransformer(ch, n_heads, dim_head, depth=transformer_depth, context_dim=context_dim)
            return AttentionBlock(ch, use_checkpoint=use_checkpoint, num_heads=n_heads,
                                  num_head_channels=dim_head, use_new_attention_order=use_new_attention_order)

        def res_block(ch_in: int, ch_out: int, **kw) -> ResBlock:
            return ResBlock(ch_in, time_embed_dim, dropout, out_channels=ch_out, dims=dims,
                            use_checkpoint=use_checkpoint, use_scale_shift_norm=use_scale_shift_norm, **kw)

        time_embed_dim = model_channels * 4
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, time_embed_dim),
            nn.SiLU(),
            nn.Linear(time_embed_dim, time_embed_dim),
        )
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, time_embed_dim)

        # Encoder path.
        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(conv_nd(dims, in_channels, model_channels, 3, padding=1))]
        )
        input_block_chans = [model_channels]
        ch, ds = model_channels, 1
        for level, mult in enumerate(self.channel_mult):
            for _ in range(num_res_blocks):
                layers = [res_block(ch, mult * model_channels)]
                ch = mult * model_channels
                if ds in self.attention_resolutions:
                    layers.append(attention_layer(ch, num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                input_block_chans.append(ch)
            if level != len(self.channel_mult) - 1:
                down = (res_block(ch, ch, down=True) if resblock_updown
                        else Downsample(ch, conv_resample, dims=dims, out_channels=ch))
                self.input_blocks.append(TimestepEmbedSequential(down))
                input_block_chans.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(
            res_block(ch, ch), attention_layer(ch, num_heads), res_block(ch, ch)
        )

        # Decoder path (each block consumes one skip connection).
        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(self.channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                ich = input_block_chans.pop()
                layers = [res_block(ch + ich, model_channels * mult)]
                ch = model_channels * mult
                if ds in self.attention_resolutions:
                    layers.append(attention_layer(ch, num_heads_upsample))
                if level and i == num_res_blocks:
                    layers.append(res_block(ch, ch, up=True) if resblock_updown
                                  else Upsample(ch, conv_resample, dims=dims, out_channels=ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(
            normalization(ch),
            nn.SiLU(),
            zero_module(conv_nd(dims, model_channels, out_channels, 3, padding=1)),
        )
        if self.predict_codebook_ids:
            self.id_predictor = nn.Sequential(normalization(ch), conv_nd(dims, model_channels, n_embed, 1))

    def forward(self, x, timesteps=None, context=None, y=None):
        """x (B, C, ...), timesteps (B,), context (B, L, context_dim), y (B,) → (B, out_channels, ...)."""
        if timesteps is None:
            raise ValueError("UNetModel.forward needs timesteps (B,)")
        if (y is not None) != (self.num_classes is not None):
            raise ValueError("pass y (class labels) if and only if the model is class-conditional (num_classes)")
        t_emb = timestep_embedding(timesteps, self.model_channels)
        emb = self.time_embed(t_emb.to(self.time_embed[0].weight.dtype))
        if self.num_classes is not None:
            if y.shape != (x.shape[0],):
                raise ValueError(f"y must have shape ({x.shape[0]},), got {tuple(y.shape)}")
            emb = emb + self.label_emb(y)

        hs = []
        h = x
        for module in self.input_blocks:
            h = module(h, emb, context)
            hs.append(h)
        h = self.middle_block(h, emb, context)
        for module in self.output_blocks:
            h = module(torch.cat([h, hs.pop()], dim=1), emb, context)
        if self.predict_codebook_ids:
            return self.id_predictor(h)
        return self.out(h)
