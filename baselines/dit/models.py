"""DiT: Scalable Diffusion Models with Transformers (Peebles & Xie, ICCV 2023).

A clean-room re-implementation of the class-conditional latent DiT of
facebookresearch/DiT ``models.py`` (commit ed81ce2). The module tree and every
parameter name match the official code, so the released checkpoints
(``DiT-XL-2-256x256.pt``, ``DiT-XL-2-512x512.pt``) load with a strict
``load_state_dict``. timm is not needed: ``PatchEmbed``, ``Attention`` and ``Mlp``
are written here with timm's submodule names (``proj``, ``qkv``/``proj``,
``fc1``/``fc2``).

Conventions
-----------
* ``x``: (N, C, H, W) float latents (C = ``in_channels`` = 4 for the SD VAE latents,
  H = W = ``input_size`` = image size / 8).
* ``t``: (N,) diffusion timesteps in [0, 1000), int or float; cast to float inside.
* ``y``: (N,) int64 class labels in [0, num_classes]; the value ``num_classes`` is the
  null ("unconditional") class used for classifier-free guidance.
* Output: (N, out_channels, H, W), ``out_channels = 2 * in_channels`` when
  ``learn_sigma`` (first ``in_channels`` channels = eps, the rest = the learned
  variance interpolation ``v`` of Improved DDPM), else ``in_channels``.

The order of this file follows the paper: embedders, the adaLN-Zero block, the final
layer, the model, the fixed positional embedding, the presets, and a checkpoint loader.
"""

from __future__ import annotations

import math

import numpy as np
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
    "DiTBlock",
    "FinalLayer",
    "DiT",
    "get_2d_sincos_pos_embed",
    "get_2d_sincos_pos_embed_from_grid",
    "get_1d_sincos_pos_embed_from_grid",
    "DiT_XL_2",
    "DiT_XL_4",
    "DiT_XL_8",
    "DiT_L_2",
    "DiT_L_4",
    "DiT_L_8",
    "DiT_B_2",
    "DiT_B_4",
    "DiT_B_8",
    "DiT_S_2",
    "DiT_S_4",
    "DiT_S_8",
    "DiT_models",
]


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation ``x * (1 + scale) + shift``; x (N, T, D), shift/scale (N, D)."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


#################################################################################
#          ViT layers (same names as timm.models.vision_transformer)            #
#################################################################################


class PatchEmbed(nn.Module):
    """Image to patch tokens: a stride-``p`` ``p x p`` convolution, flattened row-major.

    (N, C, H, W) -> (N, T, D) with T = (H / p) * (W / p); token index = row * (W/p) + col.
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
                f"PatchEmbed expects spatial size {self.img_size}, got {tuple(x.shape[-2:])}; "
                "build the model with input_size equal to the latent size (image size / 8)"
            )
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention, ``softmax(q k^T / sqrt(d_head)) v`` via fused SDPA."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"hidden size {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        # qkv layout along the feature axis: [q | k | v], each split into heads.
        qkv = self.qkv(x).reshape(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, T, head_dim)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, T, D))


class Mlp(nn.Module):
    """Two-layer MLP ``fc2(act(fc1(x)))``."""

    def __init__(self, in_features: int, hidden_features: int, act_layer=nn.GELU):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


#################################################################################
#               Embedding layers for timesteps and class labels                #
#################################################################################


class TimestepEmbedder(nn.Module):
    """Timestep t -> sinusoidal features (dim 256) -> MLP (Linear, SiLU, Linear) -> (N, D)."""

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
        """GLIDE/ADM sinusoidal embedding of (N,) timesteps (may be fractional) -> (N, dim).

        With half = dim // 2 and f_i = max_period^(-i / half), i = 0..half-1:
        ``[cos(t f_0), ..., cos(t f_{half-1}), sin(t f_0), ..., sin(t f_{half-1})]``
        (cos first), zero-padded by one column when ``dim`` is odd. Computed in float32.
        """
        half = dim // 2
        steps = torch.arange(half, dtype=torch.float32, device=t.device)
        freqs = torch.exp(-math.log(max_period) * steps / half)  # this rounding order, as ADM
        args = t[:, None].float() * freqs[None]
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
        return embedding

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.timestep_embedding(t, self.frequency_embedding_size))


class LabelEmbedder(nn.Module):
    """Class label -> (N, D) embedding, with label dropout for classifier-free guidance.

    The table has ``num_classes + 1`` rows when ``dropout_prob > 0`` (as in every
    official config); the last row (index ``num_classes``) is the null class. With
    ``dropout_prob == 0`` there is no null row, exactly as in the official code.
    """

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float):
        super().__init__()
        use_cfg_embedding = int(dropout_prob > 0)
        self.embedding_table = nn.Embedding(num_classes + use_cfg_embedding, hidden_size)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def token_drop(self, labels: torch.Tensor, force_drop_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Replace labels by the null class ``num_classes``.

        Without ``force_drop_ids`` each label is dropped with probability ``dropout_prob``
        (the draw uses the global generator, on ``labels.device``); with it, exactly the
        positions where ``force_drop_ids == 1`` are dropped.
        """
        if force_drop_ids is None:
            drop_ids = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
        else:
            drop_ids = force_drop_ids.to(labels.device) == 1
        return torch.where(drop_ids, torch.full_like(labels, self.num_classes), labels)

    def forward(self, labels: torch.Tensor, train: bool,
                force_drop_ids: torch.Tensor | None = None) -> torch.Tensor:
        if (train and self.dropout_prob > 0) or force_drop_ids is not None:
            labels = self.token_drop(labels, force_drop_ids)
        return self.embedding_table(labels)


#################################################################################
#                                 Core DiT model                                #
#################################################################################


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning (paper Fig. 3, right).

    ``c`` -> SiLU -> Linear -> (shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp);
    ``x += gate_msa * Attn(modulate(LN(x), shift_msa, scale_msa))``;
    ``x += gate_mlp * MLP(modulate(LN(x), shift_mlp, scale_mlp))``.
    The LayerNorms have no affine parameters (eps 1e-6); the MLP uses tanh-GELU.
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads=num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), act_layer=lambda: nn.GELU(approximate="tanh"))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    """adaLN (shift, scale) -> Linear to ``p * p * out_channels`` per token."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    """Class-conditional Diffusion Transformer predicting eps (and the variance ``v``).

    Args:
        input_size: latent height = width (32 for 256x256 images, 64 for 512x512).
        patch_size: p; the sequence length is (input_size / p)^2.
        in_channels: latent channels.
        hidden_size, depth, num_heads, mlp_ratio: transformer width, blocks, heads, MLP ratio.
        class_dropout_prob: label-dropout probability during training (> 0 adds the null row).
        num_classes: number of real classes; label ``num_classes`` is the null class.
        learn_sigma: if True, output ``2 * in_channels`` channels: [eps, v].
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
        class_dropout_prob: float = 0.1,
        num_classes: int = 1000,
        learn_sigma: bool = True,
    ):
        super().__init__()
        if input_size % patch_size != 0:
            raise ValueError(f"input_size {input_size} is not divisible by patch_size {patch_size}")
        self.learn_sigma = learn_sigma
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.patch_size = patch_size
        self.num_heads = num_heads
        self.num_classes = num_classes

        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size, bias=True)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        num_patches = self.x_embedder.num_patches
        # Fixed 2-D sin-cos table; a frozen Parameter, so it is part of the checkpoint.
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, hidden_size), requires_grad=False)

        self.blocks = nn.ModuleList([DiTBlock(hidden_size, num_heads, mlp_ratio=mlp_ratio) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """The paper's initialisation.

        Xavier-uniform Linear weights with zero biases; the patch projection initialised
        like a Linear on its flattened weight; N(0, 0.02) label table and timestep-MLP
        weights; the sin-cos ``pos_embed``; and adaLN-Zero: every adaLN modulation layer
        and the final linear layer are zero, so a fresh model outputs exactly 0.
        """
        def _basic_init(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

        self.apply(_basic_init)

        grid = self.x_embedder.grid_size[0]
        pos_embed = get_2d_sincos_pos_embed(self.pos_embed.shape[-1], grid)
        self.pos_embed.data.copy_(torch.from_numpy(pos_embed).float().unsqueeze(0))

        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)

        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)

        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, p*p*C) tokens -> (N, C, H, W); each token's features are ordered (p_row, p_col, C)."""
        c = self.out_channels
        p = self.x_embedder.patch_size[0]
        h = w = int(x.shape[1] ** 0.5)
        if h * w != x.shape[1]:
            raise ValueError(f"unpatchify needs a square token grid, got {x.shape[1]} tokens")
        x = x.reshape(x.shape[0], h, w, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, h * p, w * p)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x (N, C, H, W), t (N,), y (N,) -> (N, out_channels, H, W).

        In training mode labels are dropped to the null class with ``class_dropout_prob``;
        in eval mode they are used as given.
        """
        x = self.x_embedder(x) + self.pos_embed  # (N, T, D), T = H * W / p^2
        c = self.t_embedder(t) + self.y_embedder(y, self.training)  # (N, D)
        for block in self.blocks:
            x = block(x, c)
        x = self.final_layer(x, c)  # (N, T, p^2 * out_channels)
        return self.unpatchify(x)

    def forward_with_cfg(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, cfg_scale: float,
                         guided_channels: int | None = 3) -> torch.Tensor:
        """Batched classifier-free guidance, exactly as the official ``sample.py`` uses it.

        Guidance convention (the same in all of cgmbench): with guidance scale ``w``,
        ``pred = uncond + w * (cond - uncond)``; ``w = 1`` is the plain conditional model
        and ``w = 0`` the unconditional one. DiT's ``cfg_scale`` *is* this ``w``
        (cgmbench's ``guidance_scale``, see ``cgmbench.generator.GUIDANCE_CONVENTION``; the paper's FID-50K
        2.27 uses 1.5). Ho & Salimans' ``w'`` is ``w - 1``.

        Layout: the batch is ``[cond half, uncond half]``; ``y = [labels, null...]`` with
        null = ``num_classes``. Official behaviour reproduced on purpose:

        * only ``x[: N // 2]`` is used; it is duplicated, so the second half of ``x`` is
          ignored (the sampler's uncond half of the state never reaches the model);
        * guidance is applied to output channels ``[:guided_channels]`` only. The
          official default is 3 (of the 4 eps channels); the remaining channels (eps
          channel 3 and, with ``learn_sigma``, the ``v`` channels) are passed through from
          the batched forward, so cond and uncond halves differ there. ``None`` guides
          all eps channels (``in_channels``), the textbook CFG.

        Returns (N, out_channels, H, W) whose guided channels are identical in both halves.
        """
        if guided_channels is None:
            guided_channels = self.in_channels
        if not 0 <= guided_channels <= self.out_channels:
            raise ValueError(f"guided_channels must be in [0, {self.out_channels}] or None, got {guided_channels}")
        if len(x) % 2 != 0:
            raise ValueError(f"forward_with_cfg needs an even batch [cond, uncond], got {len(x)}")
        half = x[: len(x) // 2]
        model_out = self.forward(torch.cat([half, half], dim=0), t, y)
        eps, rest = model_out[:, :guided_channels], model_out[:, guided_channels:]
        cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
        half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)
        return torch.cat([torch.cat([half_eps, half_eps], dim=0), rest], dim=1)


#################################################################################
#                   Fixed 2-D sine/cosine positional embedding                  #
#################################################################################
# As in MAE: the first half of the features encodes one grid axis, the second half the
# other, each as [sin(pos * omega), cos(pos * omega)], omega_i = 10000^(-i / (D/4)).


def get_1d_sincos_pos_embed_from_grid(embed_dim: int, pos: np.ndarray) -> np.ndarray:
    """Positions (any shape, M values) -> (M, embed_dim) ``[sin(pos * omega), cos(pos * omega)]`` in float64."""
    if embed_dim % 2 != 0:
        raise ValueError(f"1-D sin-cos embedding needs an even dimension, got {embed_dim}")
    omega = np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega
    out = np.outer(pos.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def get_2d_sincos_pos_embed_from_grid(embed_dim: int, grid: np.ndarray) -> np.ndarray:
    """grid (2, 1, H, W) -> (H*W, embed_dim): ``[emb(grid[0]), emb(grid[1])]``."""
    if embed_dim % 2 != 0:
        raise ValueError(f"2-D sin-cos embedding needs an even dimension, got {embed_dim}")
    emb_0 = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[0])
    emb_1 = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[1])
    return np.concatenate([emb_0, emb_1], axis=1)


def get_2d_sincos_pos_embed(embed_dim: int, grid_size: int) -> np.ndarray:
    """(grid_size^2, embed_dim) float64 table; token k = row * grid_size + col.

    Quirk kept from MAE/DiT: ``grid[0]`` is the *column* (w) coordinate, so the first
    half of the features encodes the column and the second half the row.
    """
    coords = np.arange(grid_size, dtype=np.float32)
    cols, rows = np.meshgrid(coords, coords)  # cols[r, c] = c, rows[r, c] = r
    grid = np.stack([cols, rows], axis=0).reshape(2, 1, grid_size, grid_size)
    return get_2d_sincos_pos_embed_from_grid(embed_dim, grid)


#################################################################################
#                                  DiT presets                                  #
#################################################################################
# Name "DiT-<size>/<p>": S/B/L/XL = (depth, hidden, heads) (12,384,6) (12,768,12)
# (24,1024,16) (28,1152,16); p = patch size. Other kwargs go to DiT.


def DiT_XL_2(**kwargs) -> DiT:
    return DiT(depth=28, hidden_size=1152, patch_size=2, num_heads=16, **kwargs)


def DiT_XL_4(**kwargs) -> DiT:
    return DiT(depth=28, hidden_size=1152, patch_size=4, num_heads=16, **kwargs)


def DiT_XL_8(**kwargs) -> DiT:
    return DiT(depth=28, hidden_size=1152, patch_size=8, num_heads=16, **kwargs)


def DiT_L_2(**kwargs) -> DiT:
    return DiT(depth=24, hidden_size=1024, patch_size=2, num_heads=16, **kwargs)


def DiT_L_4(**kwargs) -> DiT:
    return DiT(depth=24, hidden_size=1024, patch_size=4, num_heads=16, **kwargs)


def DiT_L_8(**kwargs) -> DiT:
    return DiT(depth=24, hidden_size=1024, patch_size=8, num_heads=16, **kwargs)


def DiT_B_2(**kwargs) -> DiT:
    return DiT(depth=12, hidden_size=768, patch_size=2, num_heads=12, **kwargs)


def DiT_B_4(**kwargs) -> DiT:
    return DiT(depth=12, hidden_size=768, patch_size=4, num_heads=12, **kwargs)


def DiT_B_8(**kwargs) -> DiT:
    return DiT(depth=12, hidden_size=768, patch_size=8, num_heads=12, **kwargs)


def DiT_S_2(**kwargs) -> DiT:
    return DiT(depth=12, hidden_size=384, patch_size=2, num_heads=6, **kwargs)


def DiT_S_4(**kwargs) -> DiT:
    return DiT(depth=12, hidden_size=384, patch_size=4, num_heads=6, **kwargs)


def DiT_S_8(**kwargs) -> DiT:
    return DiT(depth=12, hidden_size=384, patch_size=8, num_heads=6, **kwargs)


DiT_models = {
    "DiT-XL/2": DiT_XL_2, "DiT-XL/4": DiT_XL_4, "DiT-XL/8": DiT_XL_8,
    "DiT-L/2": DiT_L_2, "DiT-L/4": DiT_L_4, "DiT-L/8": DiT_L_8,
    "DiT-B/2": DiT_B_2, "DiT-B/4": DiT_B_4, "DiT-B/8": DiT_B_8,
    "DiT-S/2": DiT_S_2, "DiT-S/4": DiT_S_4, "DiT-S/8": DiT_S_8,
}
