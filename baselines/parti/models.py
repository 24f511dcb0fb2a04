"""LlamaGen's autoregressive image GPT (``Transformer``), in LlamaGen's naming, with a static KV cache.

A clean-room re-implementation of FoundationVision/LlamaGen ``autoregressive/models/gpt.py`` (commit
ce98ec4), a Llama-style decoder over VQ image tokens: RMSNorm, SwiGLU feed-forward, no biases anywhere,
2-D rotary position embeddings over the token grid, and the condition as a prefix (one class token for
c2i, 120 projected T5 tokens for t2i). Every parameter name matches the official code, so the released
GPTs (``c2i_B_256.pt``, ``c2i_L_256.pt``, ``t2i_XL_stage1_256.pt`` ...) load with a strict
``load_state_dict``. This module is a leaf: it imports only torch and the standard library.

Conventions
-----------
* ``idx``: (B, L) int image tokens in [0, vocab_size), row-major over the √block_size × √block_size grid.
* ``cond_idx``: c2i (B,) int64 class labels in [0, num_classes]; ``num_classes`` is the null (CFG) label.
  t2i (B, 120, caption_dim) float caption features (flan-t5-xl for the released model), left-padded with
  zero rows; ``cls_embedding.uncond_embedding`` (120, caption_dim) is the null caption.
* Sequence: ``cls_token_num`` condition positions, then the image tokens; position ``cls_token_num - 1 + j``
  predicts image token ``j``.
* Logits: float32, (B, S, vocab_size).

Three ways to call ``forward`` (the official ones):

* **teacher forcing** ``forward(idx, cond_idx, input_pos=arange(S), mask=None)``: all positions at once,
  causal (or the given boolean ``mask`` (B, 1, S, S), True = attend). Eval returns all S positions;
  training returns ``logits[:, cls_token_num - 1:]`` (and a loss if ``targets`` is given). This path never
  touches the KV cache.
* **prefill** ``forward(None, cond_idx, input_pos=arange(T))`` after :meth:`Transformer.setup_caches`:
  writes the condition's keys and values into the caches.
* **decode** ``forward(idx (B, 1), None, input_pos=tensor([p]))``: one new token at position ``p``,
  attending over the cache.

Deviations from the official code (none changes a number): the KV caches and ``freqs_cis`` never enter
``state_dict()`` (the official caches do, once ``setup_caches`` ran); teacher forcing ignores existing
caches (the official naive path writes into them); ``remove_caches()`` drops them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "ModelArgs",
    "find_multiple",
    "LabelEmbedder",
    "CaptionEmbedder",
    "MLP",
    "RMSNorm",
    "FeedForward",
    "KVCache",
    "Attention",
    "TransformerBlock",
    "Transformer",
    "precompute_freqs_cis_2d",
    "apply_rotary_emb",
    "causal_mask_with_prefix",
    "GPT_B",
    "GPT_L",
    "GPT_XL",
    "GPT_XXL",
    "GPT_models",
    "GPT_N_HEAD",
]


def find_multiple(n: int, k: int) -> int:
    """The smallest multiple of ``k`` that is ≥ ``n``."""
    return n if n % k == 0 else n + k - (n % k)


@dataclass
class ModelArgs:
    """The GPT's configuration, with LlamaGen's field names and defaults."""

    dim: int = 4096
    n_layer: int = 32
    n_head: int = 32
    n_kv_head: int | None = None
    multiple_of: int = 256
    ffn_dim_multiplier: float | None = None
    rope_base: float = 10000
    norm_eps: float = 1e-5
    initializer_range: float = 0.02

    token_dropout_p: float = 0.1
    attn_dropout_p: float = 0.0
    resid_dropout_p: float = 0.1
    ffn_dropout_p: float = 0.1
    drop_path_rate: float = 0.0

    num_classes: int = 1000
    caption_dim: int = 2048
    class_dropout_prob: float = 0.1
    model_type: str = "c2i"

    vocab_size: int = 16384
    cls_token_num: int = 1
    block_size: int = 256
    max_batch_size: int = 32
    max_seq_len: int = 2048
    #: rows of the null caption ``cls_embedding.uncond_embedding``. Not an official field: LlamaGen's
    #: ``CaptionEmbedder`` is always built with 120; smaller t2i models (the tiny shapes recipe) set it to
    #: their ``cls_token_num``.
    caption_token_num: int = 120

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_head

    @property
    def ffn_hidden(self) -> int:
        """SwiGLU width: ``find_multiple(int(8·dim/3) (· ffn_dim_multiplier), multiple_of)``."""
        hidden = int(2 * (4 * self.dim) / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return find_multiple(hidden, self.multiple_of)


#################################################################################
#                          Condition embedders                                  #
#################################################################################

class LabelEmbedder(nn.Module):
    """Class label → one condition token (B, 1, dim); row ``num_classes`` is the learned null label.

    In training, labels are replaced by the null label with probability ``dropout_prob`` (CFG training).
    """

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden_size)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def token_drop(self, labels: torch.Tensor, force_drop_ids: torch.Tensor | None = None) -> torch.Tensor:
        if force_drop_ids is None:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
        else:
            drop = force_drop_ids == 1
        return torch.where(drop, self.num_classes, labels)

    def forward(self, labels: torch.Tensor, train: bool, force_drop_ids: torch.Tensor | None = None) -> torch.Tensor:
        if (train and self.dropout_prob > 0) or force_drop_ids is not None:
            labels = self.token_drop(labels, force_drop_ids)
        return self.embedding_table(labels).unsqueeze(1)


class MLP(nn.Module):
    """``fc2(gelu_tanh(fc1(x)))``, bias-free."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features, bias=False)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_features, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class CaptionEmbedder(nn.Module):
    """Caption features (B, token_num, caption_dim) → condition tokens (B, token_num, dim) through ``cap_proj``.

    ``uncond_embedding`` (token_num, caption_dim) is the null caption: a fixed random tensor, saved in the
    state_dict as a persistent buffer (not trained). ``token_num`` is 120 in every LlamaGen model (the
    official class is always built with its default). In training, whole captions are replaced by it with
    probability ``uncond_prob``.
    """

    def __init__(self, in_channels: int, hidden_size: int, uncond_prob: float, token_num: int = 120):
        super().__init__()
        self.cap_proj = MLP(in_channels, hidden_size, hidden_size)
        self.register_buffer("uncond_embedding", torch.randn(token_num, in_channels) / in_channels ** 0.5)
        self.uncond_prob = uncond_prob

    def token_drop(self, caption: torch.Tensor, force_drop_ids: torch.Tensor | None = None) -> torch.Tensor:
        if force_drop_ids is None:
            drop = torch.rand(caption.shape[0], device=caption.device) < self.uncond_prob
        else:
            drop = force_drop_ids == 1
        return torch.where(drop[:, None, None], self.uncond_embedding, caption)

    def forward(self, caption: torch.Tensor, train: bool, force_drop_ids: torch.Tensor | None = None) -> torch.Tensor:
        if (train and self.uncond_prob > 0) or force_drop_ids is not None:
            caption = self.token_drop(caption, force_drop_ids)
        return self.cap_proj(caption)


#################################################################################
#                              Transformer block                                #
#################################################################################

class RMSNorm(nn.Module):
    """``x · rsqrt(mean(x²) + eps) · weight``, the normalisation computed in float32."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        out = xf * torch.rsqrt(torch.mean(xf * xf, dim=-1, keepdim=True) + self.eps)
        return out.type_as(x) * self.weight


class FeedForward(nn.Module):
    """SwiGLU: ``w2(silu(w1 x) · w3 x)``, bias-free, hidden width :attr:`ModelArgs.ffn_hidden`."""

    def __init__(self, config: ModelArgs):
        super().__init__()
        hidden = config.ffn_hidden
        self.w1 = nn.Linear(config.dim, hidden, bias=False)
        self.w3 = nn.Linear(config.dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, config.dim, bias=False)
        self.ffn_dropout = nn.Dropout(config.ffn_dropout_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn_dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))


class KVCache(nn.Module):
    """Static per-layer cache, ``k_cache``/``v_cache`` (max_batch_size, n_head, max_seq_length, head_dim).

    Keys are stored after the rotary embedding. ``update`` writes at ``[:, :, input_pos]`` and returns the
    whole cache (unfilled positions are masked by the caller). Buffers are non-persistent: a cache is
    never part of a checkpoint.
    """

    def __init__(self, max_batch_size: int, max_seq_length: int, n_head: int, head_dim: int, dtype: torch.dtype):
        super().__init__()
        shape = (max_batch_size, n_head, max_seq_length, head_dim)
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype), persistent=False)

    def update(self, input_pos: torch.Tensor, k_val: torch.Tensor, v_val: torch.Tensor):
        bsz = k_val.shape[0]
        self.k_cache[:bsz, :, input_pos] = k_val
        self.v_cache[:bsz, :, input_pos] = v_val
        return self.k_cache[:bsz], self.v_cache[:bsz]


class Attention(nn.Module):
    """Multi-head (optionally grouped-query) causal self-attention; ``wqkv`` splits as [q | k | v]."""

    def __init__(self, config: ModelArgs):
        super().__init__()
        assert config.dim % config.n_head == 0
        self.dim = config.dim
        self.head_dim = config.dim // config.n_head
        self.n_head = config.n_head
        self.n_kv_head = config.n_kv_head if config.n_kv_head is not None else config.n_head
        self.wqkv = nn.Linear(config.dim, (self.n_head + 2 * self.n_kv_head) * self.head_dim, bias=False)
        self.wo = nn.Linear(config.dim, config.dim, bias=False)
        self.kv_cache: KVCache | None = None
        self.attn_dropout_p = config.attn_dropout_p
        self.resid_dropout = nn.Dropout(config.resid_dropout_p)

    def forward(self, x: torch.Tensor, freqs_cis: torch.Tensor, input_pos: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, use_cache: bool = False) -> torch.Tensor:
        bsz, seqlen, _ = x.shape
        kv_size = self.n_kv_head * self.head_dim
        xq, xk, xv = self.wqkv(x).split([self.dim, kv_size, kv_size], dim=-1)
        xq = apply_rotary_emb(xq.view(bsz, seqlen, self.n_head, self.head_dim), freqs_cis)
        xk = apply_rotary_emb(xk.view(bsz, seqlen, self.n_kv_head, self.head_dim), freqs_cis)
        xv = xv.view(bsz, seqlen, self.n_kv_head, self.head_dim)
        xq, xk, xv = (t.transpose(1, 2) for t in (xq, xk, xv))  # (B, heads, S, head_dim)

        if use_cache:
            keys, values = self.kv_cache.update(input_pos, xk, xv)
        else:
            keys, values = xk, xv
        repeat = self.n_head // self.n_kv_head
        keys = keys.repeat_interleave(repeat, dim=1)
        values = values.repeat_interleave(repeat, dim=1)

        out = F.scaled_dot_product_attention(
            xq, keys, values, attn_mask=mask, is_causal=mask is None,
            dropout_p=self.attn_dropout_p if self.training else 0.0)
        out = out.transpose(1, 2).contiguous().view(bsz, seqlen, self.dim)
        return self.resid_dropout(self.wo(out))


class DropPath(nn.Module):
    """Stochastic depth per sample (training only)."""

    def __init__(self, drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class TransformerBlock(nn.Module):
    """Pre-norm block: ``h = x + attention(attention_norm(x))``; ``out = h + feed_forward(ffn_norm(h))``."""

    def __init__(self, config: ModelArgs, drop_path: float):
        super().__init__()
        self.attention = Attention(config)
        self.feed_forward = FeedForward(config)
        self.attention_norm = RMSNorm(config.dim, eps=config.norm_eps)
        self.ffn_norm = RMSNorm(config.dim, eps=config.norm_eps)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor, freqs_cis: torch.Tensor, input_pos: torch.Tensor | None,
                mask: torch.Tensor | None, use_cache: bool = False) -> torch.Tensor:
        h = x + self.drop_path(self.attention(self.attention_norm(x), freqs_cis, input_pos, mask, use_cache))
        return h + self.drop_path(self.feed_forward(self.ffn_norm(h)))


#################################################################################
#                                 Transformer                                   #
#################################################################################

class Transformer(nn.Module):
    """The LlamaGen GPT. See the module docstring for the three ways to call :meth:`forward`."""

    def __init__(self, config: ModelArgs):
        super().__init__()
        self.config = config
        self.vocab_size = config.vocab_size
        self.n_layer = config.n_layer
        self.block_size = config.block_size
        self.num_classes = config.num_classes
        self.model_type = config.model_type
        self.cls_token_num = config.cls_token_num
        if config.model_type == "c2i":
            self.cls_embedding = LabelEmbedder(config.num_classes, config.dim, config.class_dropout_prob)
        elif config.model_type == "t2i":
            self.cls_embedding = CaptionEmbedder(config.caption_dim, config.dim, config.class_dropout_prob,
                                                 token_num=config.caption_token_num)
        else:
            raise ValueError(f"model_type must be 'c2i' or 't2i', got {config.model_type!r}")
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.tok_dropout = nn.Dropout(config.token_dropout_p)

        n = config.n_layer
        dpr = [config.drop_path_rate * i / (n - 1) if n > 1 else 0.0 for i in range(n)]  # linspace(0, rate, n)
        self.layers = nn.ModuleList(TransformerBlock(config, dpr[i]) for i in range(n))
        self.norm = RMSNorm(config.dim, eps=config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)

        grid_size = math.isqrt(config.block_size)
        if grid_size * grid_size != config.block_size:
            raise ValueError(f"block_size must be a square number of tokens, got {config.block_size}")
        if config.head_dim % 4 != 0:
            raise ValueError(f"2-D RoPE needs head_dim (dim / n_head) divisible by 4, got {config.head_dim}")
        # a plain attribute (not a buffer): kept float32 when the model is cast to bf16, moved on use
        self.freqs_cis = precompute_freqs_cis_2d(grid_size, config.head_dim, config.rope_base, self.cls_token_num)

        self.max_batch_size = -1
        self.max_seq_length = -1
        self.causal_mask: torch.Tensor | None = None
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """N(0, initializer_range) for every linear and embedding weight, then a zero output head."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                if module.weight.device.type != "meta":
                    nn.init.normal_(module.weight, mean=0.0, std=std)
        if self.output.weight.device.type != "meta":
            nn.init.zeros_(self.output.weight)

    # ------------------------------------------------------------------ caches
    def setup_caches(self, max_batch_size: int, max_seq_length: int, dtype: torch.dtype | None = None,
                     device: torch.device | str | None = None) -> None:
        """Allocate zeroed static KV caches for ``max_batch_size`` rows and ``max_seq_length`` positions.

        The length is rounded up to a multiple of 8 (as the official code does). Also resets
        ``causal_mask`` (max_batch_size, L8, L8) bool to the plain causal mask.
        """
        device = self.tok_embeddings.weight.device if device is None else torch.device(device)
        dtype = self.tok_embeddings.weight.dtype if dtype is None else dtype
        max_seq_length = find_multiple(max_seq_length, 8)
        self.max_seq_length = max_seq_length
        self.max_batch_size = max_batch_size
        for layer in self.layers:
            layer.attention.kv_cache = KVCache(max_batch_size, max_seq_length, self.config.n_head,
                                               self.config.head_dim, dtype).to(device)
        mask = torch.tril(torch.ones(max_seq_length, max_seq_length, dtype=torch.bool, device=device))
        self.causal_mask = mask.unsqueeze(0).repeat(max_batch_size, 1, 1)

    def remove_caches(self) -> None:
        for layer in self.layers:
            layer.attention.kv_cache = None
        self.causal_mask = None
        self.max_batch_size = self.max_seq_length = -1

    # ----------------------------------------------------------------- forward
    def forward(self, idx: torch.Tensor | None, cond_idx: torch.Tensor | None,
                input_pos: torch.Tensor | None = None, targets: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, valid: torch.Tensor | None = None):
        """Returns ``(logits, loss)``; ``loss`` is None unless ``targets`` is given."""
        if idx is not None and cond_idx is not None:  # teacher forcing (training or full recomputation)
            cond = self.cls_embedding(cond_idx, train=self.training)[:, :self.cls_token_num]
            h = torch.cat((cond, self.tok_embeddings(idx)), dim=1)
            use_cache = False
        else:
            if self.causal_mask is None:
                raise RuntimeError("prefill/decode calls need setup_caches() first")
            if cond_idx is not None:  # prefill
                h = self.cls_embedding(cond_idx, train=self.training)[:, :self.cls_token_num]
            else:  # decode
                h = self.tok_embeddings(idx)
            mask = self.causal_mask[:h.shape[0], None, input_pos]
            use_cache = True
        h = self.tok_dropout(h)

        freqs = self.freqs_cis.to(h.device)
        if self.training:
            freqs = freqs[:h.shape[1]]
        else:
            if input_pos is None:
                raise ValueError("eval-mode forward needs input_pos (it indexes the rotary table)")
            freqs = freqs[input_pos]
        for layer in self.layers:
            h = layer(h, freqs, input_pos, mask, use_cache)
        logits = self.output(self.norm(h)).float()
        if self.training:
            logits = logits[:, self.cls_token_num - 1:].contiguous()

        loss = None
        if valid is not None:
            per_token = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), reduction="none")
            weights = valid[:, None].repeat(1, targets.shape[1]).view(-1)
            loss = (per_token * weights).sum() / max(weights.sum(), 1)
        elif targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss


#################################################################################
#                           2-D rotary position embedding                       #
#################################################################################

def precompute_freqs_cis_2d(grid_size: int, n_elem: int, base: float = 10000, cls_token_num: int = 120) -> torch.Tensor:
    """The rotary table, (cls_token_num + grid_size², n_elem // 2, 2) float32 holding (cos, sin).

    Half of the ``n_elem // 2`` rotation angles of a token follow its grid row, half its column:
    ``cat([row · f, col · f])`` with ``f = base^(−arange(0, n_elem/2, 2) / (n_elem/2))``. The condition
    positions come first with cos = sin = 0, i.e. their queries and keys are zeroed.
    """
    half_dim = n_elem // 2
    freqs = 1.0 / (base ** (torch.arange(0, half_dim, 2, device="cpu")[: half_dim // 2].float() / half_dim))
    t = torch.arange(grid_size, device="cpu")
    freqs = torch.outer(t, freqs)  # (grid, n_elem // 4)
    grid = torch.cat([freqs[:, None, :].expand(-1, grid_size, -1),
                      freqs[None, :, :].expand(grid_size, -1, -1)], dim=-1)  # (grid, grid, n_elem // 2)
    cache = torch.stack([torch.cos(grid), torch.sin(grid)], dim=-1).flatten(0, 1)
    return torch.cat([torch.zeros(cls_token_num, half_dim, 2, device="cpu"), cache])


def apply_rotary_emb(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs ``(x[2i], x[2i+1])`` of x (B, S, heads, head_dim) by (S, head_dim/2, 2)."""
    xs = x.float().reshape(*x.shape[:-1], -1, 2)
    f = freqs_cis.view(1, xs.size(1), 1, xs.size(3), 2)
    out = torch.stack([xs[..., 0] * f[..., 0] - xs[..., 1] * f[..., 1],
                       xs[..., 1] * f[..., 0] + xs[..., 0] * f[..., 1]], dim=-1)
    return out.flatten(3).type_as(x)


def causal_mask_with_prefix(seq_len: int, prefix_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean attention mask (B or 1, seq_len, seq_len), True = attend.

    Causal; with ``prefix_mask`` (B, T) (1 = a real caption token, 0 = padding) the columns of the first T
    positions are multiplied by it and the diagonal is forced on, so padding positions attend only to
    themselves and no position attends to padding. This is the mask of LlamaGen's t2i training data
    and of its ``generate()`` with ``emb_masks``.
    """
    device = None if prefix_mask is None else prefix_mask.device
    mask = torch.tril(torch.ones(seq_len, seq_len, dtype=torch.bool, device=device)).unsqueeze(0)
    if prefix_mask is None:
        return mask
    t = prefix_mask.shape[1]
    mask = mask.repeat(prefix_mask.shape[0], 1, 1)
    mask[:, :, :t] &= prefix_mask.bool().unsqueeze(1)
    mask |= torch.eye(seq_len, dtype=torch.bool, device=device)
    return mask


#################################################################################
#                                  Presets                                      #
#################################################################################

def GPT_B(**kwargs) -> Transformer:
    """111M: 12 layers, dim 768, 12 heads (``c2i_B_256.pt``, ``c2i_B_384.pt``)."""
    return Transformer(ModelArgs(n_layer=12, n_head=12, dim=768, **kwargs))


def GPT_L(**kwargs) -> Transformer:
    """343M: 24 layers, dim 1024, 16 heads (``c2i_L_256.pt``, ``c2i_L_384.pt``)."""
    return Transformer(ModelArgs(n_layer=24, n_head=16, dim=1024, **kwargs))


def GPT_XL(**kwargs) -> Transformer:
    """775M: 36 layers, dim 1280, 20 heads (``c2i_XL_384.pt``, ``t2i_XL_stage1_256.pt``, ``t2i_XL_stage2_512.pt``)."""
    return Transformer(ModelArgs(n_layer=36, n_head=20, dim=1280, **kwargs))


def GPT_XXL(**kwargs) -> Transformer:
    """1.4B: 48 layers, dim 1536, 24 heads."""
    return Transformer(ModelArgs(n_layer=48, n_head=24, dim=1536, **kwargs))


GPT_models = {"GPT-B": GPT_B, "GPT-L": GPT_L, "GPT-XL": GPT_XL, "GPT-XXL": GPT_XXL}

#: heads per model width for the official presets (the head count is not visible in a state dict)
GPT_N_HEAD = {768: 12, 1024: 16, 1280: 20, 1536: 24}
