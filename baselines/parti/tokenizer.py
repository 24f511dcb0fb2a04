"""LlamaGen's VQ image tokenizer (``VQModel``), in LlamaGen's own naming.

A clean-room re-implementation of FoundationVision/LlamaGen ``tokenizer/tokenizer_image/vq_model.py``
(commit ce98ec4): the module tree and every parameter name match the official code, so the released
tokenizers (``vq_ds16_c2i.pt``, ``vq_ds16_t2i.pt``: ``VQ_16(codebook_size=16384, codebook_embed_dim=8)``)
load with a strict ``load_state_dict``. This is *not* taming's ``VectorQuantizer2`` (the LDM first stage):
the codes are low-dimensional (8) and L2-normalised (cosine lookup, as in ViT-VQGAN), the commitment weight
sits on the commitment term (the standard VQ-VAE placement, taming's ``legacy=False``), and the encoder and
decoder have their own layout (``conv_blocks.N.res/attn/downsample|upsample``, ``mid.0/1/2``).

This module is a leaf: it imports only torch and the standard library.

Conventions
-----------
* Images ``x``: (B, 3, H, W) float in [-1, 1]; ``decode`` returns the same layout and (nominal) range.
* Latents: (B, codebook_embed_dim, H/f, W/f) with ``f = 2**(len(ch_mult) - 1)`` (16 for ``VQ_16``).
* Indices: flat (B·h·w,) int64, row-major over (b, i, j). The GPT's token sequence of an image is
  ``indices.view(B, h*w)``, and ``decode_code(tokens, (B, C, h, w))`` turns it back into pixels.
* With ``codebook_l2_norm`` (every released tokenizer) both the latents and the codebook rows are
  L2-normalised before the nearest-code search, and ``quant`` / ``get_codebook_entry`` return the
  **normalised** rows; the stored ``quantize.embedding.weight`` is not normalised.

Order of the file: the config, the quantizer, the building blocks, encoder and decoder, the model,
codebook statistics, presets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "ModelArgs",
    "VectorQuantizer",
    "ResnetBlock",
    "AttnBlock",
    "Upsample",
    "Downsample",
    "Encoder",
    "Decoder",
    "VQModel",
    "compute_entropy_loss",
    "codebook_usage",
    "VQ_8",
    "VQ_16",
    "VQ_models",
]


@dataclass
class ModelArgs:
    """The tokenizer's configuration, with LlamaGen's field names and defaults.

    ``ch`` and ``num_res_blocks`` are not fields of the official ``ModelArgs``: the official ``VQModel``
    never passes them, so every released tokenizer has ``ch=128, num_res_blocks=2`` (the defaults here).
    They exist so that small test and training configurations can be built with the same code.
    """

    codebook_size: int = 16384
    codebook_embed_dim: int = 8
    codebook_l2_norm: bool = True
    codebook_show_usage: bool = True
    commit_loss_beta: float = 0.25
    entropy_loss_ratio: float = 0.0

    encoder_ch_mult: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])
    decoder_ch_mult: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])
    z_channels: int = 256
    dropout_p: float = 0.0

    ch: int = 128
    num_res_blocks: int = 2


#################################################################################
#                                 Quantizer                                     #
#################################################################################

#: length of the ``codebook_used`` ring buffer (a fixed size in the official code and its checkpoints)
CODEBOOK_USED_LEN = 65536


class VectorQuantizer(nn.Module):
    """Nearest-code quantizer with optional L2-normalised codes.

    ``forward(z)`` with ``z`` (B, e_dim, h, w) returns ``(z_q, losses, info)``:

    * ``z_q`` (B, e_dim, h, w): the (normalised) code rows, with straight-through gradients
      ``z + (e − z).detach()`` — equal to the rows only up to float rounding (~3e-8);
    * ``losses = (vq_loss, commit_loss, entropy_loss, codebook_usage)``: in training,
      ``vq_loss = mean((e − sg[z])²)`` moves the codebook, ``commit_loss = beta · mean((sg[e] − z)²)``
      moves the encoder (beta on the commitment term), ``entropy_loss = entropy_loss_ratio · H-term``;
      in eval the three losses are ``None`` and usage is 0;
    * ``info = (None, None, indices)``, ``indices`` flat (B·h·w,) int64.

    With ``show_usage``, the persistent buffer ``codebook_used`` (65536,) float32 keeps the most recent
    training indices (a ring filled from the end); it is only updated in training mode.
    """

    def __init__(self, n_e: int, e_dim: int, beta: float, entropy_loss_ratio: float,
                 l2_norm: bool, show_usage: bool):
        super().__init__()
        self.n_e = n_e
        self.e_dim = e_dim
        self.beta = beta
        self.entropy_loss_ratio = entropy_loss_ratio
        self.l2_norm = l2_norm
        self.show_usage = show_usage

        self.embedding = nn.Embedding(n_e, e_dim)
        with torch.no_grad():
            self.embedding.weight.uniform_(-1.0 / n_e, 1.0 / n_e)
            if l2_norm:
                self.embedding.weight.copy_(F.normalize(self.embedding.weight, p=2, dim=-1))
        if show_usage:
            self.register_buffer("codebook_used", torch.zeros(CODEBOOK_USED_LEN))

    def codebook(self) -> torch.Tensor:
        """The rows used for lookup, (n_e, e_dim): L2-normalised when ``l2_norm``."""
        weight = self.embedding.weight
        return F.normalize(weight, p=2, dim=-1) if self.l2_norm else weight

    def forward(self, z: torch.Tensor):
        z = z.permute(0, 2, 3, 1).contiguous()  # (B, h, w, C)
        if self.l2_norm:
            z = F.normalize(z, p=2, dim=-1)
        z_flat = z.view(-1, self.e_dim)
        embedding = self.codebook()

        # squared distances |z|^2 + |e|^2 - 2 z.e, the official summation
        d = (torch.sum(z_flat ** 2, dim=1, keepdim=True) + torch.sum(embedding ** 2, dim=1)
             - 2 * torch.einsum("bd,dn->bn", z_flat, embedding.t()))
        indices = torch.argmin(d, dim=1)
        z_q = embedding[indices].view(z.shape)

        vq_loss = commit_loss = entropy_loss = None
        usage = 0
        if self.show_usage and self.training:
            n = indices.shape[0]
            with torch.no_grad():
                self.codebook_used[:-n] = self.codebook_used[n:].clone()
                self.codebook_used[-n:] = indices.to(self.codebook_used.dtype)
            usage = len(torch.unique(self.codebook_used)) / self.n_e
        if self.training:
            vq_loss = torch.mean((z_q - z.detach()) ** 2)
            commit_loss = self.beta * torch.mean((z_q.detach() - z) ** 2)
            entropy_loss = self.entropy_loss_ratio * compute_entropy_loss(-d)

        z_q = z + (z_q - z).detach()
        z_q = z_q.permute(0, 3, 1, 2)
        return z_q, (vq_loss, commit_loss, entropy_loss, usage), (None, None, indices)

    def get_codebook_entry(self, indices: torch.Tensor, shape=None, channel_first: bool = True) -> torch.Tensor:
        """Code rows for ``indices`` (any int dtype, any shape).

        ``shape`` is (B, C, h, w) when ``channel_first`` (the result is permuted to that layout) and
        (B, h, w, C) otherwise; ``None`` returns the rows as ``indices.shape + (C,)``.
        """
        z_q = self.codebook()[indices.long()]
        if shape is None:
            return z_q
        if channel_first:
            b, c, h, w = shape
            return z_q.reshape(b, h, w, c).permute(0, 3, 1, 2).contiguous()
        return z_q.view(shape)


def compute_entropy_loss(affinity: torch.Tensor, temperature: float = 0.01) -> torch.Tensor:
    """Per-sample entropy minus entropy of the mean assignment (MaskGIT's codebook entropy penalty).

    ``affinity`` (N, n_e) is ``-distance``; the softmax is taken at ``temperature``. Lower is better:
    confident per-vector assignments spread evenly over the codebook.
    """
    flat = affinity.reshape(-1, affinity.shape[-1]) / temperature
    probs = F.softmax(flat, dim=-1)
    log_probs = F.log_softmax(flat + 1e-5, dim=-1)
    avg_probs = probs.mean(dim=0)
    avg_entropy = -torch.sum(avg_probs * torch.log(avg_probs + 1e-5))
    sample_entropy = -torch.mean(torch.sum(probs * log_probs, dim=-1))
    return sample_entropy - avg_entropy


#################################################################################
#                               Building blocks                                 #
#################################################################################

def nonlinearity(x: torch.Tensor) -> torch.Tensor:
    """Swish, ``x · sigmoid(x)``."""
    return x * torch.sigmoid(x)


def Normalize(in_channels: int) -> nn.GroupNorm:
    """GroupNorm(32 groups, eps 1e-6): every width must be a multiple of 32."""
    return nn.GroupNorm(num_groups=32, num_channels=in_channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """norm → swish → conv3×3 → norm → swish → dropout → conv3×3, plus a 1×1 ``nin_shortcut`` when widths differ."""

    def __init__(self, in_channels: int, out_channels: int | None = None, dropout: float = 0.0):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.norm1 = Normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = Normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nonlinearity(self.norm1(x)))
        h = self.conv2(self.dropout(nonlinearity(self.norm2(h))))
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the h·w positions, 1×1 convs ``q``, ``k``, ``v``, ``proj_out``."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.norm = Normalize(in_channels)
        self.q = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.k = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.v = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.proj_out = nn.Conv2d(in_channels, in_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h_ = self.norm(x)
        q, k, v = self.q(h_), self.k(h_), self.v(h_)
        b, c, h, w = q.shape
        q = q.reshape(b, c, h * w).permute(0, 2, 1)           # (b, hw, c)
        k = k.reshape(b, c, h * w)                             # (b, c, hw)
        weights = torch.bmm(q, k) * (int(c) ** -0.5)           # (b, hw_q, hw_k)
        weights = F.softmax(weights, dim=2)
        v = v.reshape(b, c, h * w)
        out = torch.bmm(v, weights.permute(0, 2, 1)).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Upsample(nn.Module):
    """Nearest ×2, then conv3×3."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Downsample(nn.Module):
    """Pad right and bottom by one (0, 1, 0, 1), then conv3×3 with stride 2 and no padding."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))


#################################################################################
#                             Encoder and decoder                               #
#################################################################################

class Encoder(nn.Module):
    """(B, in_channels, H, W) → (B, z_channels, H/f, W/f).

    Level ``i`` has ``num_res_blocks`` res blocks of width ``ch·ch_mult[i]``; attention follows each res
    block of the **last** level only; every level but the last ends with a ``downsample``.
    """

    def __init__(self, in_channels: int = 3, ch: int = 128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks: int = 2,
                 dropout: float = 0.0, z_channels: int = 256):
        super().__init__()
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        self.conv_in = nn.Conv2d(in_channels, ch, kernel_size=3, stride=1, padding=1)

        in_ch_mult = (1,) + tuple(ch_mult)
        self.conv_blocks = nn.ModuleList()
        block_in = ch
        for i_level in range(self.num_resolutions):
            block = nn.Module()
            block.res = nn.ModuleList()
            block.attn = nn.ModuleList()
            block_in = ch * in_ch_mult[i_level]
            block_out = ch * ch_mult[i_level]
            for _ in range(num_res_blocks):
                block.res.append(ResnetBlock(block_in, block_out, dropout=dropout))
                block_in = block_out
                if i_level == self.num_resolutions - 1:
                    block.attn.append(AttnBlock(block_in))
            if i_level != self.num_resolutions - 1:
                block.downsample = Downsample(block_in)
            self.conv_blocks.append(block)

        self.mid = nn.ModuleList([
            ResnetBlock(block_in, block_in, dropout=dropout),
            AttnBlock(block_in),
            ResnetBlock(block_in, block_in, dropout=dropout),
        ])
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, z_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for i_level, block in enumerate(self.conv_blocks):
            for i_block in range(self.num_res_blocks):
                h = block.res[i_block](h)
                if len(block.attn) > 0:
                    h = block.attn[i_block](h)
            if i_level != self.num_resolutions - 1:
                h = block.downsample(h)
        for layer in self.mid:
            h = layer(h)
        return self.conv_out(nonlinearity(self.norm_out(h)))


class Decoder(nn.Module):
    """(B, z_channels, h, w) → (B, out_channels, h·f, w·f).

    ``conv_blocks`` are stored lowest resolution first (level ``i`` has width ``ch·ch_mult[-1-i]``) with
    ``num_res_blocks + 1`` res blocks each; attention follows each res block of ``conv_blocks[0]`` only;
    every level but the last ends with an ``upsample``.
    """

    def __init__(self, z_channels: int = 256, ch: int = 128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks: int = 2,
                 dropout: float = 0.0, out_channels: int = 3):
        super().__init__()
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks

        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, kernel_size=3, stride=1, padding=1)
        self.mid = nn.ModuleList([
            ResnetBlock(block_in, block_in, dropout=dropout),
            AttnBlock(block_in),
            ResnetBlock(block_in, block_in, dropout=dropout),
        ])

        self.conv_blocks = nn.ModuleList()
        for i_level in reversed(range(self.num_resolutions)):
            block = nn.Module()
            block.res = nn.ModuleList()
            block.attn = nn.ModuleList()
            block_out = ch * ch_mult[i_level]
            for _ in range(num_res_blocks + 1):
                block.res.append(ResnetBlock(block_in, block_out, dropout=dropout))
                block_in = block_out
                if i_level == self.num_resolutions - 1:
                    block.attn.append(AttnBlock(block_in))
            if i_level != 0:
                block.upsample = Upsample(block_in)
            self.conv_blocks.append(block)

        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, out_channels, kernel_size=3, stride=1, padding=1)

    @property
    def last_layer(self) -> torch.Tensor:
        """The weight the adaptive GAN loss weight is computed against."""
        return self.conv_out.weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for layer in self.mid:
            h = layer(h)
        for i_level, block in enumerate(self.conv_blocks):
            for i_block in range(self.num_res_blocks + 1):
                h = block.res[i_block](h)
                if len(block.attn) > 0:
                    h = block.attn[i_block](h)
            if i_level != self.num_resolutions - 1:
                h = block.upsample(h)
        return self.conv_out(nonlinearity(self.norm_out(h)))


#################################################################################
#                                   VQModel                                     #
#################################################################################

class VQModel(nn.Module):
    """Encoder → ``quant_conv`` (z_channels → codebook_embed_dim) → quantizer → ``post_quant_conv`` → decoder.

    * ``encode(x)`` → ``(quant, losses, (None, None, indices))`` (see :class:`VectorQuantizer`);
    * ``decode(quant)`` → image (B, 3, H, W); ``quant`` is *not* re-quantised;
    * ``decode_code(tokens, shape)`` → image from token ids, ``shape = (B, codebook_embed_dim, h, w)``;
    * ``forward(x)`` → ``(decode(quant), losses)``.
    """

    def __init__(self, config: ModelArgs):
        super().__init__()
        self.config = config
        self.encoder = Encoder(ch=config.ch, ch_mult=config.encoder_ch_mult, num_res_blocks=config.num_res_blocks,
                               dropout=config.dropout_p, z_channels=config.z_channels)
        self.decoder = Decoder(z_channels=config.z_channels, ch=config.ch, ch_mult=config.decoder_ch_mult,
                               num_res_blocks=config.num_res_blocks, dropout=config.dropout_p)
        self.quantize = VectorQuantizer(config.codebook_size, config.codebook_embed_dim, config.commit_loss_beta,
                                        config.entropy_loss_ratio, config.codebook_l2_norm,
                                        config.codebook_show_usage)
        self.quant_conv = nn.Conv2d(config.z_channels, config.codebook_embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.codebook_embed_dim, config.z_channels, 1)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.config.encoder_ch_mult) - 1)

    def encode(self, x: torch.Tensor):
        return self.quantize(self.quant_conv(self.encoder(x)))

    def decode(self, quant: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(quant))

    def decode_code(self, code_b: torch.Tensor, shape=None, channel_first: bool = True) -> torch.Tensor:
        return self.decode(self.quantize.get_codebook_entry(code_b, shape, channel_first))

    def forward(self, input: torch.Tensor):
        quant, diff, _ = self.encode(input)
        return self.decode(quant), diff


#################################################################################
#                              Codebook statistics                              #
#################################################################################

def codebook_usage(indices: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """How a set of code indices spreads over the codebook.

    Returns ``usage`` (the fraction of the ``codebook_size`` codes used at least once), ``perplexity``
    (``exp`` of the entropy of the empirical code distribution, in nats: 1 when one code is used,
    ``codebook_size`` when all are used equally), ``used`` (number of distinct codes) and ``n``
    (number of indices counted). Any index shape; values must lie in ``[0, codebook_size)``.
    """
    flat = indices.reshape(-1).long()
    if flat.numel() == 0:
        raise ValueError("codebook_usage needs at least one index")
    if int(flat.min()) < 0 or int(flat.max()) >= codebook_size:
        raise ValueError(f"indices must lie in [0, {codebook_size}); got [{int(flat.min())}, {int(flat.max())}]")
    counts = torch.bincount(flat, minlength=codebook_size).double()
    p = counts / counts.sum()
    nz = p[p > 0]
    entropy = float(-(nz * nz.log()).sum())
    used = int((counts > 0).sum())
    return {"usage": used / codebook_size, "perplexity": float(torch.tensor(entropy).exp()),
            "used": used, "n": int(flat.numel())}


#################################################################################
#                                   Presets                                     #
#################################################################################

def VQ_8(**kwargs) -> VQModel:
    """Downsample 8: ``ch_mult [1, 2, 2, 4]``."""
    return VQModel(ModelArgs(encoder_ch_mult=[1, 2, 2, 4], decoder_ch_mult=[1, 2, 2, 4], **kwargs))


def VQ_16(**kwargs) -> VQModel:
    """Downsample 16: ``ch_mult [1, 1, 2, 2, 4]`` (``vq_ds16_c2i.pt``, ``vq_ds16_t2i.pt``)."""
    return VQModel(ModelArgs(encoder_ch_mult=[1, 1, 2, 2, 4], decoder_ch_mult=[1, 1, 2, 2, 4], **kwargs))


VQ_models = {"VQ-8": VQ_8, "VQ-16": VQ_16}
