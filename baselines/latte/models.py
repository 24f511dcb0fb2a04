"""Latte: Latent Diffusion Transformer for Video Generation (Ma et al., 2024).

A clean-room implementation of ``models/latte.py`` of Vchitect/Latte (commit b27c24a, the same
file as maxin-cn/Latte f8980c5). Module tree and parameter names are the official ones, so the
released checkpoints (``ucf101.pt``, ``ffs.pt``, ``skytimelapse.pt``, ``taichi-hd.pt``) load with a strict
``load_state_dict`` (see :mod:`baselines.latte.checkpoints`). timm and einops are not needed:
``PatchEmbed`` and ``Mlp`` are written here with timm's submodule names (``proj``, ``fc1``/``fc2``)
and the einops rearranges are plain ``view``/``transpose``.

Latte is DiT applied to video latents with the transformer blocks split in two kinds that
alternate: even blocks attend over the patches of one frame (spatial), odd blocks over the frames
of one patch position (temporal). ``depth`` counts both kinds (Latte-XL/2: 28 = 14 pairs).

Tensors
-------
* ``x``: (N, F, C, H, W) float video latents, **frames before channels**; F = ``num_frames``
  (exactly: the conditioning is repeated ``num_frames`` times), C = ``in_channels`` (4, the SD
  VAE latents scaled by 0.18215), H = W = ``input_size`` (image size / 8).
* ``t``: (N,) diffusion timesteps in [0, 1000), int or float; cast to float32 inside.
* ``y``: (N,) int64 class labels in [0, num_classes]; ``num_classes`` is the null class
  (UCF-101: 101) used for classifier-free guidance.
* ``text_embedding``: (N, 77, 768) text features, only for ``extras == 78`` (the constructor's
  ``text_tokens`` x ``text_width``; 77 x 768 is the official size, the tiny shapes models use their own).
* Output: (N, F, out_channels, H, W); ``out_channels = 2 * in_channels`` when ``learn_sigma``
  (channels ``[:in_channels]`` = eps, the rest = the learned variance interpolation of
  Improved DDPM), else ``in_channels``.

``extras`` selects the conditioning: 1 = unconditional (FaceForensics, SkyTimelapse, Taichi-HD),
2 = class label (UCF-101), 78 = text (``text_embedding_projection`` = SiLU + Linear(77*768, D); the
final layer then sees the timestep embedding only, as in the official code).

The order of this file: shared layers, embedders, the block, the final layer, the model, the
fixed sin-cos tables, the presets.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "modulate",
    "PatchEmbed",
    "Attention",
    "Mlp",
    "TimestepEmbedder",
    "LabelEmbedder",
    "TransformerBlock",
    "FinalLayer",
    "Latte",
    "get_1d_sincos_temp_embed",
    "get_2d_sincos_pos_embed",
    "get_1d_sincos_pos_embed_from_grid",
    "Latte_XL_2",
    "Latte_XL_4",
    "Latte_XL_8",
    "Latte_L_2",
    "Latte_L_4",
    "Latte_L_8",
    "Latte_B_2",
    "Latte_B_4",
    "Latte_B_8",
    "Latte_S_2",
    "Latte_S_4",
    "Latte_S_8",
    "Latte_models",
    "RELEASED_CONFIGS",
    "latte_from_release",
]


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation ``x * (1 + scale) + shift``; x (B, T, D), shift/scale (B, D)."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


#################################################################################
#          ViT layers (same names as timm.models.vision_transformer)            #
#################################################################################


class PatchEmbed(nn.Module):
    """Frame to patch tokens: a stride-``p`` ``p x p`` convolution, flattened row-major.

    (B, C, H, W) -> (B, P, D) with P = (H / p) * (W / p); token index = row * (W / p) + col.
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3,
                 embed_dim: int = 768, bias: bool = True):
        super().__init__()
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(
                f"PatchEmbed expects latents of spatial size {self.img_size}, got {tuple(x.shape[-2:])}; "
                "build the model with input_size equal to the latent size (image size / 8)"
            )
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention ``softmax(q k^T * head_dim^-0.5) v`` over the token axis.

    ``attention_mode='math'`` (the official default, used by the released checkpoints) computes the
    softmax explicitly, in the official order; ``'sdpa'`` uses the fused
    ``F.scaled_dot_product_attention`` (same result to ~1e-6). The official ``'flash'`` branch is
    not offered: it reshapes the (B, heads, T, head_dim) output to (B, T, D) without the head/token
    transpose and so scrambles the result.
    """

    MODES = ("math", "sdpa")

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, attention_mode: str = "math"):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"hidden size {dim} is not divisible by num_heads {num_heads}")
        if attention_mode not in self.MODES:
            raise ValueError(
                f"attention_mode {attention_mode!r} is not supported; use one of {self.MODES} "
                "(the official 'flash' branch drops a transpose and gives wrong outputs)"
            )
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.attention_mode = attention_mode
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        # qkv layout along the feature axis: [q | k | v], each split into heads.
        qkv = self.qkv(x).reshape(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).contiguous()
        q, k, v = qkv.unbind(0)  # each (B, heads, T, head_dim)
        if self.attention_mode == "math":
            attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
            x = attn @ v
        else:
            x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, T, D))


class Mlp(nn.Module):
    """Two-layer MLP ``fc2(GELU_tanh(fc1(x)))``."""

    def __init__(self, in_features: int, hidden_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


#################################################################################
#               Embedding layers for timesteps and class labels                #
#################################################################################


class TimestepEmbedder(nn.Module):
    """Timestep t (N,) -> sinusoidal features (N, 256) -> Linear, SiLU, Linear -> (N, D)."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size, bias=True),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )
        self.frequency_embedding_size = frequency_embedding_size

    @staticmethod
    def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000) -> torch.Tensor:
        """GLIDE sinusoidal embedding of (N,) timesteps -> (N, dim), float32.

        With half = dim // 2 and f_i = max_period^(-i / half): ``[cos(t f_i) ..., sin(t f_i) ...]``
        (cos first), zero-padded by one column when ``dim`` is odd.
        """
        half = dim // 2
        steps = torch.arange(half, dtype=torch.float32, device=t.device)
        freqs = torch.exp(-math.log(max_period) * steps / half)
        args = t[:, None].float() * freqs[None]
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
        return embedding

    def forward(self, t: torch.Tensor, use_fp16: bool = False) -> torch.Tensor:
        t_freq = self.timestep_embedding(t, self.frequency_embedding_size)
        if use_fp16:
            t_freq = t_freq.to(torch.float16)
        return self.mlp(t_freq)


class LabelEmbedder(nn.Module):
    """Class label (N,) -> (N, D), with label dropout for classifier-free guidance.

    The table has ``num_classes + 1`` rows when ``dropout_prob > 0``; the last row (index
    ``num_classes``) is the null class.
    """

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float):
        super().__init__()
        use_cfg_embedding = int(dropout_prob > 0)
        self.embedding_table = nn.Embedding(num_classes + use_cfg_embedding, hidden_size)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def token_drop(self, labels: torch.Tensor, force_drop_ids: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """Replace labels by the null class: at random with ``dropout_prob``, or where ``force_drop_ids == 1``."""
        if force_drop_ids is None:
            drop_ids = torch.rand(labels.shape[0], device=labels.device, generator=generator) < self.dropout_prob
        else:
            drop_ids = force_drop_ids == 1
        return torch.where(drop_ids, self.num_classes, labels)

    def forward(self, labels: torch.Tensor, train: bool, force_drop_ids: torch.Tensor | None = None) -> torch.Tensor:
        if (train and self.dropout_prob > 0) or force_drop_ids is not None:
            labels = self.token_drop(labels, force_drop_ids)
        return self.embedding_table(labels)


#################################################################################
#                                Latte blocks                                   #
#################################################################################


class TransformerBlock(nn.Module):
    """adaLN-Zero transformer block (the same block serves as spatial and as temporal block).

    x (B, T, D) tokens, c (B, D) conditioning. With
    ``shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = Linear(SiLU(c)).chunk(6)``:
    ``x += gate_msa * attn(modulate(LN(x), shift_msa, scale_msa))``, then
    ``x += gate_mlp * mlp(modulate(LN(x), shift_mlp, scale_mlp))``; LN without affine, eps 1e-6.
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, attention_mode: str = "math"):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads=num_heads, qkv_bias=True, attention_mode=attention_mode)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    """``Linear(modulate(LN(x), shift, scale))`` with ``shift, scale = Linear(SiLU(c)).chunk(2)``; (B, P, p*p*C_out)."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


#################################################################################
#                                 The model                                     #
#################################################################################


class Latte(nn.Module):
    """Latte video diffusion transformer (official ``models/latte.py`` ``Latte``).

    Forward, for B videos of F frames and P = (input_size / patch_size)^2 patches per frame:

    1. patchify every frame, add the 2-D sin-cos ``pos_embed``: tokens (B*F, P, D);
    2. conditioning ``c = t_embedder(t) [+ y_embedder(y) | + text projection]``, repeated F times
       (spatial blocks, final layer) or P times (temporal blocks);
    3. for each pair (``blocks[2i]`` spatial, ``blocks[2i+1]`` temporal): spatial attention over
       the P tokens of each frame; regroup to (B*P, F, D); before the *first* temporal block only,
       add the 1-D sin-cos ``temp_embed``; temporal attention over the F frames; regroup back;
    4. final adaLN layer and unpatchify to (B, F, out_channels, H, W).
    """

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_frames: int = 16,
        class_dropout_prob: float = 0.1,
        num_classes: int | None = 1000,
        learn_sigma: bool = True,
        extras: int = 1,
        attention_mode: str = "math",
        text_tokens: int = 77,
        text_width: int = 768,
    ):
        super().__init__()
        if depth % 2:
            raise ValueError(f"depth must be even (spatial and temporal blocks alternate), got {depth}")
        if extras not in (1, 2, 78):
            raise ValueError(f"extras must be 1 (unconditional), 2 (class) or 78 (text), got {extras}")
        if extras == 2 and not num_classes:
            raise ValueError("extras=2 (class-conditional) needs num_classes")
        self.learn_sigma = learn_sigma
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.patch_size = patch_size
        self.num_heads = num_heads
        self.extras = extras
        self.num_frames = num_frames
        self.num_classes = num_classes
        self.hidden_size = hidden_size

        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size, bias=True)
        self.t_embedder = TimestepEmbedder(hidden_size)
        if extras == 2:
            self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        if extras == 78:
            # official: 77 CLIP tokens of width 768; the tiny shapes models pass their own encoder's size
            self.text_tokens, self.text_width = int(text_tokens), int(text_width)
            self.text_embedding_projection = nn.Sequential(
                nn.SiLU(), nn.Linear(self.text_tokens * self.text_width, hidden_size, bias=True))

        num_patches = self.x_embedder.num_patches
        # Fixed sin-cos tables, stored in the checkpoints (requires_grad=False).
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, hidden_size), requires_grad=False)
        self.temp_embed = nn.Parameter(torch.zeros(1, num_frames, hidden_size), requires_grad=False)

        self.blocks = nn.ModuleList([
            TransformerBlock(hidden_size, num_heads, mlp_ratio=mlp_ratio, attention_mode=attention_mode)
            for _ in range(depth)
        ])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """The official initialisation: xavier Linear layers, sin-cos tables, zeroed adaLN and output."""

        def _basic_init(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0)

        self.apply(_basic_init)
        grid = self.x_embedder.grid_size[0]
        self.pos_embed.data.copy_(get_2d_sincos_pos_embed(self.pos_embed.shape[-1], grid).float().unsqueeze(0))
        self.temp_embed.data.copy_(
            get_1d_sincos_temp_embed(self.temp_embed.shape[-1], self.temp_embed.shape[-2]).float().unsqueeze(0)
        )
        w = self.x_embedder.proj.weight.data  # like nn.Linear, not nn.Conv2d
        nn.init.xavier_uniform_(w.view([w.shape[0], -1]))
        nn.init.constant_(self.x_embedder.proj.bias, 0)
        if self.extras == 2:
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.constant_(block.adaLN_modulation[-1].weight, 0)
            nn.init.constant_(block.adaLN_modulation[-1].bias, 0)
        nn.init.constant_(self.final_layer.adaLN_modulation[-1].weight, 0)
        nn.init.constant_(self.final_layer.adaLN_modulation[-1].bias, 0)
        nn.init.constant_(self.final_layer.linear.weight, 0)
        nn.init.constant_(self.final_layer.linear.bias, 0)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B*F, P, p*p*C_out) tokens -> (B*F, C_out, H, W) frames (square grid)."""
        c = self.out_channels
        p = self.x_embedder.patch_size[0]
        h = w = int(x.shape[1] ** 0.5)
        if h * w != x.shape[1]:
            raise ValueError(f"unpatchify needs a square token grid, got {x.shape[1]} tokens")
        x = x.reshape(x.shape[0], h, w, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, h * p, w * p)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                text_embedding: torch.Tensor | None = None, use_fp16: bool = False) -> torch.Tensor:
        """Noise (and variance) prediction: (B, F, C, H, W) -> (B, F, out_channels, H, W)."""
        if x.ndim != 5 or x.shape[1] != self.num_frames:
            raise ValueError(
                f"Latte expects x of shape (N, {self.num_frames}, {self.in_channels}, H, W) (frames before channels), "
                f"got {tuple(x.shape)}"
            )
        if self.extras == 2 and y is None:
            raise ValueError("this Latte is class-conditional (extras=2): pass y")
        if self.extras == 78 and text_embedding is None:
            raise ValueError("this Latte is text-conditional (extras=78): pass text_embedding (N, 77, 768)")
        if use_fp16:
            x = x.to(torch.float16)
        B, F_, C, H, W = x.shape
        P = self.pos_embed.shape[1]
        x = self.x_embedder(x.reshape(B * F_, C, H, W)) + self.pos_embed  # (B*F, P, D)

        t_emb = self.t_embedder(t, use_fp16=use_fp16)  # (B, D)
        cond = t_emb
        if self.extras == 2:
            cond = cond + self.y_embedder(y, self.training)
        elif self.extras == 78:
            cond = cond + self.text_embedding_projection(text_embedding.reshape(B, -1))
        c_spatial = cond.repeat_interleave(F_, dim=0)  # (B*F, D), frame-major within each video
        c_temporal = cond.repeat_interleave(P, dim=0)  # (B*P, D)

        D = x.shape[-1]
        for i in range(0, len(self.blocks), 2):
            spatial_block, temp_block = self.blocks[i], self.blocks[i + 1]
            x = spatial_block(x, c_spatial)
            x = x.reshape(B, F_, P, D).transpose(1, 2).reshape(B * P, F_, D)  # (b f) p d -> (b p) f d
            if i == 0:
                x = x + self.temp_embed
            x = temp_block(x, c_temporal)
            x = x.reshape(B, P, F_, D).transpose(1, 2).reshape(B * F_, P, D)  # (b p) f d -> (b f) p d

        # The official final layer sees the timestep only when conditioned on text.
        c_final = t_emb.repeat_interleave(F_, dim=0) if self.extras == 78 else c_spatial
        x = self.unpatchify(self.final_layer(x, c_final))  # (B*F, C_out, H, W)
        return x.reshape(B, F_, *x.shape[1:])

    def forward_with_cfg(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                         cfg_scale: float = 7.0, use_fp16: bool = False,
                         text_embedding: torch.Tensor | None = None, guided_channels: int = 4) -> torch.Tensor:
        """Classifier-free guidance on a doubled batch, as ``sample/sample.py`` calls it.

        ``x`` (2N, F, C, H, W): only ``x[:N]`` is used (duplicated); ``t``, ``y`` are used whole with
        ``y = [cond labels, null labels]``. ``uncond + cfg_scale * (cond - uncond)`` is applied to
        channels ``[:guided_channels]`` (official: 4, i.e. every latent channel; DiT guides 3) and
        written into both halves; the remaining (sigma) channels pass through per half.
        """
        half = x[: len(x) // 2]
        combined = torch.cat([half, half], dim=0)
        model_out = self.forward(combined, t, y=y, text_embedding=text_embedding, use_fp16=use_fp16)
        eps, rest = model_out[:, :, :guided_channels], model_out[:, :, guided_channels:]
        cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
        half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)
        eps = torch.cat([half_eps, half_eps], dim=0)
        return torch.cat([eps, rest], dim=2)


#################################################################################
#                  Fixed sin-cos tables (MAE convention, float64)               #
#################################################################################


def get_1d_sincos_pos_embed_from_grid(embed_dim: int, pos: torch.Tensor) -> torch.Tensor:
    """(M,) positions -> (M, embed_dim): ``[sin(pos w_i) ..., cos(pos w_i) ...]``, w_i = 10000^(-2i/embed_dim)."""
    if embed_dim % 2:
        raise ValueError(f"embed_dim must be even, got {embed_dim}")
    omega = torch.arange(embed_dim // 2, dtype=torch.float64, device=pos.device) / (embed_dim / 2.0)
    omega = 1.0 / 10000 ** omega
    out = pos.reshape(-1).to(torch.float64)[:, None] * omega[None]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def get_1d_sincos_temp_embed(embed_dim: int, length: int) -> torch.Tensor:
    """The temporal table (length, embed_dim) for frame indices 0..length-1 (sin half first)."""
    return get_1d_sincos_pos_embed_from_grid(embed_dim, torch.arange(length))


def get_2d_sincos_pos_embed(embed_dim: int, grid_size: int) -> torch.Tensor:
    """The spatial table (grid_size**2, embed_dim), row-major tokens.

    As MAE/DiT: the first half of the channels encodes the *column* (w) coordinate, the second half
    the row (h) coordinate (``np.meshgrid(grid_w, grid_h)`` puts w first).
    """
    if embed_dim % 2:
        raise ValueError(f"embed_dim must be even, got {embed_dim}")
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    emb_w = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, cols.reshape(-1))
    emb_h = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, rows.reshape(-1))
    return torch.cat([emb_w, emb_h], dim=1)


#################################################################################
#                                   Presets                                     #
#################################################################################


def Latte_XL_2(**kwargs) -> Latte:
    return Latte(depth=28, hidden_size=1152, patch_size=2, num_heads=16, **kwargs)


def Latte_XL_4(**kwargs) -> Latte:
    return Latte(depth=28, hidden_size=1152, patch_size=4, num_heads=16, **kwargs)


def Latte_XL_8(**kwargs) -> Latte:
    return Latte(depth=28, hidden_size=1152, patch_size=8, num_heads=16, **kwargs)


def Latte_L_2(**kwargs) -> Latte:
    return Latte(depth=24, hidden_size=1024, patch_size=2, num_heads=16, **kwargs)


def Latte_L_4(**kwargs) -> Latte:
    return Latte(depth=24, hidden_size=1024, patch_size=4, num_heads=16, **kwargs)


def Latte_L_8(**kwargs) -> Latte:
    return Latte(depth=24, hidden_size=1024, patch_size=8, num_heads=16, **kwargs)


def Latte_B_2(**kwargs) -> Latte:
    return Latte(depth=12, hidden_size=768, patch_size=2, num_heads=12, **kwargs)


def Latte_B_4(**kwargs) -> Latte:
    return Latte(depth=12, hidden_size=768, patch_size=4, num_heads=12, **kwargs)


def Latte_B_8(**kwargs) -> Latte:
    return Latte(depth=12, hidden_size=768, patch_size=8, num_heads=12, **kwargs)


def Latte_S_2(**kwargs) -> Latte:
    return Latte(depth=12, hidden_size=384, patch_size=2, num_heads=6, **kwargs)


def Latte_S_4(**kwargs) -> Latte:
    return Latte(depth=12, hidden_size=384, patch_size=4, num_heads=6, **kwargs)


def Latte_S_8(**kwargs) -> Latte:
    return Latte(depth=12, hidden_size=384, patch_size=8, num_heads=6, **kwargs)


Latte_models = {
    "Latte-XL/2": Latte_XL_2, "Latte-XL/4": Latte_XL_4, "Latte-XL/8": Latte_XL_8,
    "Latte-L/2": Latte_L_2, "Latte-L/4": Latte_L_4, "Latte-L/8": Latte_L_8,
    "Latte-B/2": Latte_B_2, "Latte-B/4": Latte_B_4, "Latte-B/8": Latte_B_8,
    "Latte-S/2": Latte_S_2, "Latte-S/4": Latte_S_4, "Latte-S/8": Latte_S_8,
}

# The released checkpoints (huggingface.co/maxin-cn/Latte) and the constructor call of the official
# ``models/__init__.py::get_models`` for their ``configs/<name>/<name>_sample.yaml`` (256x256 videos,
# 16 frames, latent 32x32, learn_sigma). Sampling there: 250 DDPM steps, fp16, cfg 7.0 for UCF-101.
RELEASED_CONFIGS: dict[str, tuple[str, dict]] = {
    "ucf101": ("Latte-XL/2", dict(input_size=32, num_classes=101, num_frames=16, learn_sigma=True, extras=2)),
    "ffs": ("Latte-XL/2", dict(input_size=32, num_classes=None, num_frames=16, learn_sigma=True, extras=1)),
    "sky": ("Latte-XL/2", dict(input_size=32, num_classes=None, num_frames=16, learn_sigma=True, extras=1)),
    "taichi": ("Latte-XL/2", dict(input_size=32, num_classes=None, num_frames=16, learn_sigma=True, extras=1)),
}


def latte_from_release(name: str, **overrides) -> Latte:
    """The network of a released checkpoint, e.g. ``latte_from_release("ucf101")`` = Latte-XL/2, 101 classes.

    Builds on the current default device (use ``with torch.device("meta"):`` to skip allocation).
    """
    if name not in RELEASED_CONFIGS:
        raise ValueError(f"unknown Latte release {name!r}; known: {sorted(RELEASED_CONFIGS)}")
    arch, kwargs = RELEASED_CONFIGS[name]
    return Latte_models[arch](**{**kwargs, **overrides})
