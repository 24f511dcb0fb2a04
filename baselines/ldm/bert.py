"""LDM-BERT: the text conditioner of LDM txt2img-f8-large, in the official CompVis naming.

Official class: ``ldm.modules.encoders.modules.BERTEmbedder(n_embed=1280, n_layer=32, vocab_size=30522,
max_seq_len=77)`` (``configs/latent-diffusion/txt2img-1p4B-eval.yaml``). Despite the name it is not BERT: it
is the Hugging Face BERT *tokenizer* (``bert-base-uncased``) in front of a transformer encoder trained from
scratch with the diffusion model, ``ldm.modules.x_transformer.TransformerWrapper(num_tokens=vocab_size,
max_seq_len, attn_layers=Encoder(dim=n_embed, depth=n_layer))`` (a copy of an early lucidrains
``x-transformers``), of which the x-transformers defaults apply:

* embeddings: ``x = token_emb(ids) + pos_emb.emb(arange(L))`` (learned absolute positions, no dropout);
* ``n_layer`` pairs of pre-norm residual layers, ``attn_layers.layers`` alternating attention (even index
  ``2i``) and feed-forward (odd index ``2i + 1``); each entry is ``[LayerNorm, block, Residual]``:
  ``x = x + block(LayerNorm(x))``;
* attention: ``heads = 8``, ``dim_head = 64`` (inner width 512 whatever ``n_embed``), ``to_q/to_k/to_v``
  without bias, ``softmax(q k^T * dim_head**-0.5) v``, ``to_out`` a biased ``Linear(512, n_embed)``;
  bidirectional and **without any mask**: ``BERTEmbedder.forward`` passes no mask, so the ``[PAD]`` tokens
  filling the 77 positions attend and are attended to, exactly as in the official model;
* feed-forward: ``Linear(n_embed, 4 n_embed) -> GELU (exact, erf) -> Dropout(0) -> Linear(4 n_embed, n_embed)``;
* output (``return_embeddings=True``): the final ``norm`` (LayerNorm, eps 1e-5) of the last hidden state,
  ``[B, 77, n_embed]``: the cross-attention context of the U-Net. ``to_logits`` (a ``Linear(n_embed,
  vocab_size)`` language-model head) is in the checkpoint but unused.

State-dict keys (the ``cond_stage_model.`` part of a LatentDiffusion checkpoint, all under ``transformer.``;
``i < 2 n_layer``, ``a = 2k`` the attention and ``f = 2k + 1`` the feed-forward entries, ``inner = heads *
dim_head``):

* ``token_emb.weight`` ``[vocab_size, n_embed]``; ``pos_emb.emb.weight`` ``[max_seq_len, n_embed]``;
* ``attn_layers.layers.{i}.0.{weight,bias}`` ``[n_embed]``: the pre-norm LayerNorm of every entry;
* ``attn_layers.layers.{a}.1.to_q/to_k/to_v.weight`` ``[inner, n_embed]``;
  ``attn_layers.layers.{a}.1.to_out.{weight,bias}`` ``[n_embed, inner]``, ``[n_embed]``;
* ``attn_layers.layers.{f}.1.net.0.0.{weight,bias}`` ``[4 n_embed, n_embed]``, ``[4 n_embed]``;
  ``attn_layers.layers.{f}.1.net.2.{weight,bias}`` ``[n_embed, 4 n_embed]``, ``[n_embed]``;
* ``norm.{weight,bias}`` ``[n_embed]``; ``to_logits.{weight,bias}`` ``[vocab_size, n_embed]``, ``[vocab_size]``.

For txt2img-f8-large: 2 * 32 entries, 1280-d, vocabulary 30522, 77 positions (about 580M parameters).

Tokenizer (official ``BERTTokenizer``): ``BertTokenizerFast.from_pretrained("bert-base-uncased")`` called with
``truncation=True, max_length=77, padding="max_length"``: ``[CLS] w1 ... wn [SEP] [PAD] ...`` (ids 101, ...,
102, 0, ... in the real vocabulary), lower-cased, WordPiece; longer prompts are cut to ``[CLS]`` + 75 pieces +
``[SEP]``. :class:`BERTTokenizer` reads the files from the local Hugging Face cache only and counts the
prompts it cuts.

Differences from the official module, none numeric: :class:`BERTEmbedder` here takes token ids (the official
one tokenizes inside ``forward``; :class:`baselines.ldm.bert.LDMBertEncoder` puts the two together); the
embedding and attention dropouts (p = 0) and the parameter-free ``Residual`` modules are left out (the
feed-forward keeps its ``Dropout(0)`` so that ``net.2`` keeps its index).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from baselines.common.state_dict import load_state_dict_strict
from baselines.common.text_encoders import TextEncoder
from cgmbench.errors import CgmbenchError

__all__ = [
    "BERT_TOKENIZER_HUB_ID",
    "BERT_TOKENIZER_FILES",
    "AbsolutePositionalEmbedding",
    "Attention",
    "FeedForward",
    "Encoder",
    "TransformerWrapper",
    "BERTEmbedder",
    "BERTTokenizer",
    "bert_config_from_state_dict",
]

#: the Hugging Face hub repository of the official tokenizer
BERT_TOKENIZER_HUB_ID = "bert-base-uncased"
#: its files: ``vocab.txt`` is required; the others, when present, are read too (as the official code does)
BERT_TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json")


# ----------------------------------------------------------------------------- the network


class AbsolutePositionalEmbedding(nn.Module):
    """Learned positions: ``emb.weight[:L]`` for a sequence of length ``L``, shape ``[1, L, dim]``."""

    def __init__(self, dim: int, max_seq_len: int):
        super().__init__()
        self.emb = nn.Embedding(max_seq_len, dim)
        nn.init.normal_(self.emb.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.emb(torch.arange(x.shape[1], device=x.device))[None]


class Attention(nn.Module):
    """Unmasked multi-head self-attention: ``to_out(softmax(q k^T * dim_head**-0.5) v)``, ``q, k, v``
    bias-free projections of ``x`` split into ``heads`` heads of ``dim_head``."""

    def __init__(self, dim: int, dim_head: int = 64, heads: int = 8):
        super().__init__()
        inner = dim_head * heads
        self.heads, self.dim_head, self.scale = heads, dim_head, dim_head ** -0.5
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (f(x).reshape(b, n, self.heads, self.dim_head).transpose(1, 2)
                   for f in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.to_out(out.transpose(1, 2).reshape(b, n, self.heads * self.dim_head))


class FeedForward(nn.Module):
    """``net = Sequential(Sequential(Linear(dim, mult*dim), GELU()), Dropout(0), Linear(mult*dim, dim))``."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        inner = int(dim * mult)
        self.net = nn.Sequential(nn.Sequential(nn.Linear(dim, inner), nn.GELU()), nn.Dropout(0.0),
                                 nn.Linear(inner, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Encoder(nn.Module):
    """x-transformers ``Encoder`` (``AttentionLayers`` with the defaults): ``depth`` times attention then
    feed-forward, each ``x = x + block(LayerNorm(x))``; ``layers[i] = [LayerNorm, block]``."""

    def __init__(self, dim: int, depth: int, heads: int = 8, dim_head: int = 64):
        super().__init__()
        self.dim, self.depth = dim, depth
        self.layers = nn.ModuleList()
        for _ in range(depth):
            self.layers.append(nn.ModuleList([nn.LayerNorm(dim), Attention(dim, dim_head=dim_head, heads=heads)]))
            self.layers.append(nn.ModuleList([nn.LayerNorm(dim), FeedForward(dim)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for norm, block in self.layers:
            x = x + block(norm(x))
        return x


class TransformerWrapper(nn.Module):
    """Token + position embedding, :class:`Encoder`, final LayerNorm ``norm``; ``to_logits`` LM head."""

    def __init__(self, *, num_tokens: int, max_seq_len: int, attn_layers: Encoder):
        super().__init__()
        dim = attn_layers.dim
        self.num_tokens, self.max_seq_len = num_tokens, max_seq_len
        self.token_emb = nn.Embedding(num_tokens, dim)
        self.pos_emb = AbsolutePositionalEmbedding(dim, max_seq_len)
        self.attn_layers = attn_layers
        self.norm = nn.LayerNorm(dim)
        self.to_logits = nn.Linear(dim, num_tokens)
        nn.init.normal_(self.token_emb.weight, std=0.02)

    def forward(self, ids: torch.Tensor, return_embeddings: bool = False) -> torch.Tensor:
        x = self.token_emb(ids)
        x = x + self.pos_emb(x)
        x = self.norm(self.attn_layers(x))
        return x if return_embeddings else self.to_logits(x)


class BERTEmbedder(nn.Module):
    """The LDM-BERT network: ``forward(ids int64 [B, L]) -> float [B, L, n_embed]`` (final-norm hidden
    states, ``return_embeddings=True``). ``L <= max_seq_len``; the official conditioner always feeds 77."""

    def __init__(self, n_embed: int, n_layer: int, vocab_size: int = 30522, max_seq_len: int = 77,
                 heads: int = 8, dim_head: int = 64):
        super().__init__()
        self.n_embed, self.n_layer, self.vocab_size, self.max_seq_len = n_embed, n_layer, vocab_size, max_seq_len
        self.heads, self.dim_head = heads, dim_head
        self.transformer = TransformerWrapper(num_tokens=vocab_size, max_seq_len=max_seq_len,
                                              attn_layers=Encoder(dim=n_embed, depth=n_layer, heads=heads,
                                                                  dim_head=dim_head))

    def config(self) -> dict:
        return dict(n_embed=self.n_embed, n_layer=self.n_layer, vocab_size=self.vocab_size,
                    max_seq_len=self.max_seq_len, heads=self.heads, dim_head=self.dim_head)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.ndim != 2 or ids.dtype not in (torch.int64, torch.int32):
            raise CgmbenchError(f"LDM-BERT takes integer token ids [B, L], got {ids.dtype} {tuple(ids.shape)}")
        if ids.shape[1] > self.max_seq_len:
            raise CgmbenchError(f"LDM-BERT got {ids.shape[1]} tokens, more than its max_seq_len {self.max_seq_len}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise CgmbenchError(f"LDM-BERT got a token id outside its vocabulary [0, {self.vocab_size})",
                                "the tokenizer's vocabulary does not fit this checkpoint")
        return self.transformer(ids, return_embeddings=True)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], *, heads: int = 8,
                        dtype: torch.dtype = torch.float32, **kwargs) -> "BERTEmbedder":
        """Build from the ``cond_stage_model.`` part of a checkpoint (keys ``transformer.*``), sizes read from
        the tensor shapes (:func:`bert_config_from_state_dict`), loaded strictly; floating tensors are cast
        to ``dtype``. Missing, unexpected or misshapen keys raise a :class:`CgmbenchError` naming the key.
        ``kwargs`` go to the constructor (subclasses)."""

        config = bert_config_from_state_dict(state_dict, heads=heads)
        with torch.device("meta"):
            model = cls(**config, **kwargs)
        sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
        try:
            load_state_dict_strict(model, sd, "LDM-BERT conditioner (cond_stage_model.)", assign=True)
        except ValueError as e:
            raise CgmbenchError(str(e).split(" check the configuration")[0],
                                "the checkpoint's cond_stage_model is not the CompVis BERTEmbedder of "
                                "txt2img-f8-large") from None
        return model.eval()


_LAYER_KEY = re.compile(r"^transformer\.attn_layers\.layers\.(\d+)\.")


def bert_config_from_state_dict(state_dict: Mapping[str, torch.Tensor], heads: int = 8) -> dict:
    """``n_embed, n_layer, vocab_size, max_seq_len, heads, dim_head`` of a ``cond_stage_model.`` state dict.

    ``heads`` cannot be read from shapes (only ``heads * dim_head`` can); the official value is 8.
    """
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise CgmbenchError("the checkpoint has no LDM-BERT conditioner (no cond_stage_model.transformer.* keys)",
                            "txt2img-f8-large checkpoints hold it; is this another LatentDiffusion model?")

    def get(key: str, ndim: int) -> torch.Tensor:
        t = state_dict.get(key)
        if t is None:
            raise CgmbenchError(f"the LDM-BERT conditioner has no tensor 'cond_stage_model.{key}'",
                                "the checkpoint's cond_stage_model is not the CompVis BERTEmbedder")
        if not isinstance(t, torch.Tensor) or t.ndim != ndim:
            raise CgmbenchError(f"'cond_stage_model.{key}' should be a {ndim}-d tensor, got "
                                f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
        return t

    vocab_size, n_embed = get("transformer.token_emb.weight", 2).shape
    max_seq_len, pos_dim = get("transformer.pos_emb.emb.weight", 2).shape
    if pos_dim != n_embed:
        raise CgmbenchError(f"LDM-BERT token embeddings are {n_embed}-d but position embeddings {pos_dim}-d")
    indices = {int(m.group(1)) for k in state_dict if (m := _LAYER_KEY.match(k))}
    if not indices:
        raise CgmbenchError("the LDM-BERT conditioner has no layers (no 'cond_stage_model.transformer."
                            "attn_layers.layers.*' keys)")
    count = max(indices) + 1
    if count % 2:
        raise CgmbenchError(f"LDM-BERT layers come in (attention, feed-forward) pairs, but the checkpoint has "
                            f"{count} (last: 'cond_stage_model.transformer.attn_layers.layers.{count - 1}.*')")
    inner = get("transformer.attn_layers.layers.0.1.to_q.weight", 2).shape[0]
    if inner % heads:
        raise CgmbenchError(f"LDM-BERT attention width {inner} is not divisible by heads={heads}")
    return dict(n_embed=int(n_embed), n_layer=count // 2, vocab_size=int(vocab_size), max_seq_len=int(max_seq_len),
                heads=heads, dim_head=inner // heads)


# ----------------------------------------------------------------------------- the tokenizer


def tokenizer_requirement(what: str):
    """The ``bert-base-uncased`` tokenizer files in the local Hugging Face cache (``vocab.txt`` is what must be
    there; the fetch gets :data:`BERT_TOKENIZER_FILES`)."""
    from cgmbench.requirements import hub_files

    return hub_files(BERT_TOKENIZER_HUB_ID, ("vocab.txt",), f"{what}: LDM-BERT tokenizer",
                     fetch_files=BERT_TOKENIZER_FILES)


class BERTTokenizer:
    """The official ``BERTTokenizer``: ``bert-base-uncased`` WordPiece, padded and cut to ``max_length``.

    ``tokenizer(texts) -> (ids int64 [B, max_length], info)``; ``info`` = ``context_length``, ``truncated``
    (how many prompts were longer than ``max_length`` tokens with ``[CLS]``/``[SEP]``, and cut) and
    ``encoder`` (the hub id). The files come from the local Hugging Face cache (``HF_HOME``) only.
    """

    def __init__(self, max_length: int = 77, hub_id: str = BERT_TOKENIZER_HUB_ID):
        from huggingface_hub import hf_hub_download

        from baselines.common.text_encoders import hf_cache_dir

        self.hub_id, self.max_length = hub_id, int(max_length)
        hint = (f"fetch it once with `hf download {hub_id} {' '.join(BERT_TOKENIZER_FILES)}`, which saves it in "
                "that cache (set HF_HOME to move it); cgmbench never downloads at run time")
        try:
            vocab = hf_hub_download(hub_id, "vocab.txt", cache_dir=hf_cache_dir(), local_files_only=True)
        except Exception as e:  # LocalEntryNotFoundError, offline mode
            raise CgmbenchError(f"the LDM-BERT tokenizer {hub_id!r} (its vocab.txt) is not in the local Hugging "
                                f"Face cache {hf_cache_dir()} ({type(e).__name__})", hint) from None
        from transformers import BertTokenizerFast

        try:
            self.tokenizer = BertTokenizerFast.from_pretrained(os.path.dirname(vocab), local_files_only=True)
        except (OSError, ValueError) as e:
            raise CgmbenchError(f"the LDM-BERT tokenizer {hub_id!r} in {os.path.dirname(vocab)} cannot be read "
                                f"({type(e).__name__}: {e})", hint) from None

    def __len__(self) -> int:
        return len(self.tokenizer)

    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, dict]:
        texts = list(texts)
        full = self.tokenizer(texts, truncation=False, padding=False, verbose=False)["input_ids"]
        truncated = sum(len(ids) > self.max_length for ids in full)
        batch = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding="max_length",
                               return_tensors="pt")
        info = {"context_length": self.max_length, "truncated": truncated, "encoder": self.hub_id}
        return batch["input_ids"].to(torch.int64), info


class LDMBertEncoder(BERTEmbedder, TextEncoder):
    """The LDM-BERT conditioner of LDM txt2img-f8-large: the CompVis ``BERTEmbedder`` (a 32-layer, 1280-d
    x-transformers encoder over the ``bert-base-uncased`` tokenizer; :mod:`baselines.ldm.bert`).

    Build it with :meth:`from_state_dict` from the checkpoint's ``cond_stage_model.`` part (keys
    ``transformer.*``; its own ``state_dict()`` has exactly these keys). The tokenizer is read from the local
    Hugging Face cache (``tokenizer=`` overrides it); a missing one is a :class:`CgmbenchError` naming
    ``bert-base-uncased`` and the files to fetch.

    ``encode(texts) -> (tokens, pooled, info)``: ``tokens`` float32 ``[B, 77, n_embed]``, the final-norm hidden
    states of all 77 positions (``[PAD]`` included and unmasked, as the official model computes them);
    ``pooled`` has no LDM-BERT counterpart and is an empty ``[B, 0]`` tensor (``pooled_width = 0``, like
    :class:`T5XXLEncoder`); ``info`` = ``context_length``, ``truncated`` (prompts longer than 77 tokens, cut),
    ``encoder``.
    """

    def __init__(self, n_embed: int = 1280, n_layer: int = 32, vocab_size: int = 30522, max_seq_len: int = 77,
                 heads: int = 8, dim_head: int = 64, *, tokenizer: "BERTTokenizer | None" = None):
        super().__init__(n_embed, n_layer, vocab_size, max_seq_len, heads, dim_head)
        self.tokenizer = tokenizer if tokenizer is not None else BERTTokenizer(max_length=max_seq_len)
        if self.tokenizer.max_length != max_seq_len:
            raise CgmbenchError(f"the LDM-BERT tokenizer pads to {self.tokenizer.max_length} tokens, the network "
                                f"has {max_seq_len} positions")
        if len(self.tokenizer) > vocab_size:
            raise CgmbenchError(f"the LDM-BERT tokenizer {self.tokenizer.hub_id!r} has {len(self.tokenizer)} tokens, "
                                f"more than the checkpoint's vocabulary of {vocab_size}",
                                "use the bert-base-uncased tokenizer files (30522 tokens)")
        self.context_length = max_seq_len
        self.width = n_embed
        self.pooled_width = 0

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, dict]:
        ids, info = self.tokenizer(texts)
        tokens = self(ids.to(self.transformer.token_emb.weight.device)).float()
        return tokens, tokens.new_zeros(len(ids), 0), info
