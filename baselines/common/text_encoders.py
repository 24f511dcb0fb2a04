"""Text encoders of the text-to-image baselines, behind one small interface.

``encoder.encode(texts) -> (tokens, pooled, info)``:

* ``tokens``: float ``[B, L, D]``, the per-token context the denoiser cross-attends to (LDM) or
  concatenates with its image tokens (SD3 MM-DiT);
* ``pooled``: float ``[B, D']``, one vector per prompt (SD3's ``y``; LDM does not use it);
* ``info``: a dict with at least ``context_length`` and ``truncated`` (how many of the ``B`` prompts
  were cut to the encoder's context length, as every official pipeline silently does: 77 tokens
  for CLIP and for SD3's T5).

Implementations
---------------
=====================  =========================================================================
class                  weights
=====================  =========================================================================
ShapesWordEncoder      none to download: a small word-level transformer over the shapes-world
                       vocabulary, trained jointly with the tiny shapes-t2i baselines and stored
                       in their shipped checkpoints (prefix ``cond_stage_model.`` / ``text_encoders.``)
CLIPTextEncoder        ``openai/clip-vit-large-patch14`` (transformers), SD3's CLIP-L
OpenCLIPBigGEncoder    ``laion/CLIP-ViT-bigG-14-laion2B-39B-b160k`` (open_clip), SD3's CLIP-G
T5XXLEncoder           ``google/t5-v1_1-xxl`` (transformers), SD3's T5
LDMBertEncoder         inside the LDM txt2img-f8-large checkpoint (``cond_stage_model.transformer.*``),
                       with the ``bert-base-uncased`` tokenizer files (:mod:`baselines.ldm.bert`)
=====================  =========================================================================

Hub weights are read from the local Hugging Face cache only (``local_files_only=True``): nothing is
ever downloaded at run time. A missing model is a :class:`CgmbenchError` naming the hub id and the
cache folder (``HF_HOME``), with the command that fetches it.

Shapes vocabulary: built from the constants of :mod:`cgmbench.worlds.shapes` (colours, shapes and
their plurals, sizes, count words, relation and motion words) plus the few function words of its
captions; any other word maps to ``<unk>``. A prompt is ``<start> w1 ... wn <end> <pad> ...``; the
empty prompt ``""`` (the unconditional input of classifier-free guidance) is ``<start> <end> <pad>...``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from cgmbench.errors import CgmbenchError
from cgmbench.paths import hf_cache_dir

__all__ = [
    "TextEncoder",
    "shapes_vocabulary",
    "ShapesTokenizer",
    "ShapesWordEncoderConfig",
    "ShapesWordEncoder",
    "CLIPTextEncoder",
    "OpenCLIPBigGEncoder",
    "T5XXLEncoder",
    "SD3TextEncoders",
    "hf_cache_dir",
    "check_prompts",
]


class TextEncoder(ABC):
    """``encode(texts) -> (tokens [B, L, D], pooled [B, D'], info)``; see the module docstring."""

    #: the encoder's token limit (prompts are cut to it)
    context_length: int
    #: ``D`` of ``tokens`` and ``D'`` of ``pooled``
    width: int
    pooled_width: int

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Encode ``texts``; see the module docstring."""


def check_prompts(texts, model: str) -> list[str]:
    """The prompts of a text condition, checked: a non-empty list of non-empty strings."""
    if texts is None:
        raise CgmbenchError(f"model {model!r} needs text prompts, but the conditions carry none",
                            "use a text-to-image task")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise CgmbenchError(f"model {model!r} got an empty or non-text prompt at position {bad[0]} "
                            f"({texts[bad[0]]!r})", "every prompt must be a non-empty string")
    return texts


# ----------------------------------------------------------------------------- shapes world


def shapes_vocabulary() -> tuple[str, ...]:
    """The word list of the shapes-world captions, from :mod:`cgmbench.worlds.shapes` constants."""
    from cgmbench.worlds import shapes as W

    words: list[str] = ["<pad>", "<start>", "<end>", "<unk>"]

    def add(phrase: str) -> None:
        for w in phrase.split():
            if w not in words:
                words.append(w)

    for group in (("a", "an", "the", "and", "of", "to"), W.COLORS, W.SHAPES, tuple(s + "s" for s in W.SHAPES),
                  W.SIZES, tuple(W.COUNT_WORDS.values()), W.RELATIONS, W.DIRECTIONS, ("moving", "make", "remove")):
        for phrase in group:
            add(phrase)
    return tuple(words)


class ShapesTokenizer:
    """Word-level tokenizer: lower-case, letters only, ``<start> ... <end>`` padded to ``context_length``."""

    def __init__(self, context_length: int = 16, vocabulary: Sequence[str] | None = None):
        self.vocabulary = tuple(vocabulary) if vocabulary is not None else shapes_vocabulary()
        self.index = {w: i for i, w in enumerate(self.vocabulary)}
        self.context_length = int(context_length)
        if self.context_length < 3:
            raise ValueError("context_length must leave room for <start>, one word and <end>")
        self.pad, self.start, self.end, self.unk = (self.index[w] for w in ("<pad>", "<start>", "<end>", "<unk>"))

    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, dict]:
        """``(ids int64 [B, context_length], info)``; info counts truncated prompts and unknown words."""
        rows, truncated, unknown = [], 0, 0
        for text in texts:
            words = re.findall(r"[a-z]+", str(text).lower())
            ids = [self.index.get(w, self.unk) for w in words]
            unknown += sum(i == self.unk for i in ids)
            room = self.context_length - 2
            if len(ids) > room:
                truncated += 1
                ids = ids[:room]
            ids = [self.start] + ids + [self.end]
            rows.append(ids + [self.pad] * (self.context_length - len(ids)))
        info = {"context_length": self.context_length, "truncated": truncated, "unknown_words": unknown}
        return torch.tensor(rows, dtype=torch.int64), info


@dataclass(frozen=True)
class ShapesWordEncoderConfig:
    context_length: int = 16
    width: int = 64
    layers: int = 2
    heads: int = 4
    vocab_size: int = 0  # 0: len(shapes_vocabulary())

    def to_dict(self) -> dict:
        return asdict(self)


class _Block(nn.Module):
    """Pre-LayerNorm transformer block (bidirectional self-attention, GELU MLP)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln_1(x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + self.proj(a)
        return x + self.fc2(F.gelu(self.fc1(self.ln_2(x))))


class ShapesWordEncoder(nn.Module, TextEncoder):
    """A small trainable text encoder for the shapes world (CLIP-text-like, bidirectional).

    ``tokens`` are the final-LayerNorm hidden states ``[B, context_length, width]`` (padding
    included, as SD feeds all 77 CLIP tokens); ``pooled`` is the hidden state at ``<end>`` (CLIP's
    pooling). State-dict keys: ``token_embedding``, ``positional_embedding``, ``blocks.N.*``, ``ln_final``.
    """

    def __init__(self, config: ShapesWordEncoderConfig = ShapesWordEncoderConfig()):
        super().__init__()
        self.tokenizer = ShapesTokenizer(config.context_length)
        vocab = config.vocab_size or len(self.tokenizer.vocabulary)
        if vocab < len(self.tokenizer.vocabulary):
            raise ValueError(f"vocab_size {vocab} is smaller than the shapes vocabulary "
                             f"({len(self.tokenizer.vocabulary)} words)")
        self.config = ShapesWordEncoderConfig(**{**config.to_dict(), "vocab_size": vocab})
        self.context_length = config.context_length
        self.width = self.pooled_width = config.width
        self.token_embedding = nn.Embedding(vocab, config.width)
        self.positional_embedding = nn.Parameter(torch.randn(config.context_length, config.width) * 0.02)
        self.blocks = nn.ModuleList([_Block(config.width, config.heads) for _ in range(config.layers)])
        self.ln_final = nn.LayerNorm(config.width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.token_embedding(ids) + self.positional_embedding[: ids.shape[1]]
        for block in self.blocks:
            x = block(x)
        x = self.ln_final(x)
        end = (ids == self.tokenizer.end).int().argmax(dim=1)
        return x, x[torch.arange(len(ids), device=ids.device), end]

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, dict]:
        ids, info = self.tokenizer(texts)
        tokens, pooled = self(ids.to(self.positional_embedding.device))
        return tokens, pooled, info


# ----------------------------------------------------------------------------- hub encoders


def _missing_hub(hub_id: str, what: str, err: Exception | None = None) -> CgmbenchError:
    detail = f" ({type(err).__name__})" if err is not None else ""
    return CgmbenchError(
        f"{what} weights {hub_id!r} are not in the local Hugging Face cache {hf_cache_dir()}{detail}",
        f"fetch them once with `hf download {hub_id}`, which saves them in that cache (set HF_HOME to move it), "
        "or with `cgmbench fetch --task T --model M`; cgmbench never downloads text encoders at run time")


def _cached_file(hub_id: str, filename: str, what: str) -> str:
    from huggingface_hub import hf_hub_download

    try:
        # cache_dir explicitly: huggingface_hub reads HF_HOME once, at import, so a later change would be ignored
        return hf_hub_download(hub_id, filename, cache_dir=hf_cache_dir(), local_files_only=True)
    except Exception as e:  # LocalEntryNotFoundError, offline mode, gated repos
        raise _missing_hub(hub_id, what, e) from None


class _HFTextEncoder(TextEncoder):
    """Common part of the transformers-based encoders (tokenizer + model from the local cache)."""

    hub_id: str
    what: str

    def __init__(self, hub_id: str | None = None, device: str = "cpu", dtype: torch.dtype = torch.float32):
        self.hub_id = hub_id or self.hub_id
        self.device = device
        try:
            self.tokenizer, self.model = self._load(dtype)
        except CgmbenchError:
            raise
        except (OSError, ValueError) as e:
            raise _missing_hub(self.hub_id, self.what, e) from None
        self.model.to(device).eval()

    def _tokenize(self, texts):
        full = self.tokenizer(list(texts), truncation=False, padding=False)["input_ids"]
        truncated = sum(len(ids) > self.context_length for ids in full)
        batch = self.tokenizer(list(texts), truncation=True, max_length=self.context_length, padding="max_length",
                               return_tensors="pt")
        return batch["input_ids"].to(self.device), {"context_length": self.context_length, "truncated": truncated,
                                                    "encoder": self.hub_id}


class CLIPTextEncoder(_HFTextEncoder):
    """CLIP ViT-L/14 text tower (SD 1.x context; SD3's CLIP-L): penultimate hidden states + projected pool.

    ``tokens``: ``hidden_states[layer]`` (``layer=-2`` for SD3, ``-1`` final-LN output for SD 1.x);
    ``pooled``: ``text_embeds`` (the projected ``<eos>`` state, 768-d).
    """

    hub_id = "openai/clip-vit-large-patch14"
    what = "CLIP ViT-L/14 text encoder"
    context_length = 77

    def __init__(self, hub_id: str | None = None, layer: int = -1, device: str = "cpu",
                 dtype: torch.dtype = torch.float32):
        self.layer = layer
        super().__init__(hub_id, device, dtype)
        self.width = self.model.config.hidden_size
        self.pooled_width = self.model.config.projection_dim

    def _load(self, dtype):
        from transformers import CLIPTextModelWithProjection, CLIPTokenizer

        tok = CLIPTokenizer.from_pretrained(self.hub_id, local_files_only=True, cache_dir=hf_cache_dir())
        model = CLIPTextModelWithProjection.from_pretrained(self.hub_id, local_files_only=True, torch_dtype=dtype,
                                                            cache_dir=hf_cache_dir())
        return tok, model

    @torch.no_grad()
    def encode(self, texts):
        ids, info = self._tokenize(texts)
        out = self.model(ids, output_hidden_states=True)
        tokens = out.last_hidden_state if self.layer == -1 else out.hidden_states[self.layer]
        return tokens.float(), out.text_embeds.float(), info


class T5XXLEncoder(_HFTextEncoder):
    """T5 v1.1 XXL encoder (SD3's third encoder): last hidden states ``[B, 77, 4096]``; no pooled output
    (``pooled`` is zeros ``[B, 0]``)."""

    hub_id = "google/t5-v1_1-xxl"
    what = "T5-XXL text encoder"
    context_length = 77
    width = 4096
    pooled_width = 0

    def _load(self, dtype):
        from transformers import T5EncoderModel, T5TokenizerFast

        tok = T5TokenizerFast.from_pretrained(self.hub_id, local_files_only=True, cache_dir=hf_cache_dir())
        model = T5EncoderModel.from_pretrained(self.hub_id, local_files_only=True, torch_dtype=dtype,
                                               cache_dir=hf_cache_dir())
        return tok, model

    @torch.no_grad()
    def encode(self, texts):
        ids, info = self._tokenize(texts)
        tokens = self.model(ids).last_hidden_state.float()
        return tokens, tokens.new_zeros(len(ids), 0), info


class OpenCLIPBigGEncoder(TextEncoder):
    """OpenCLIP ViT-bigG/14 text tower (SD3's CLIP-G): penultimate hidden states ``[B, 77, 1280]`` and the
    projected pooled embedding ``[B, 1280]``; weights ``open_clip_model.safetensors`` of the hub repo."""

    hub_id = "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"
    context_length = 77
    width = 1280
    pooled_width = 1280

    def __init__(self, hub_id: str | None = None, device: str = "cpu"):
        import open_clip

        self.hub_id = hub_id or self.hub_id
        path = _cached_file(self.hub_id, "open_clip_model.safetensors", "OpenCLIP ViT-bigG/14")
        self.model = open_clip.create_model("ViT-bigG-14", pretrained=path).to(device).eval()
        self.tokenizer = open_clip.get_tokenizer("ViT-bigG-14")
        self.device = device

    @torch.no_grad()
    def encode(self, texts):
        m = self.model
        lengths = [len(self.tokenizer.encode(t)) + 2 for t in texts] if hasattr(self.tokenizer, "encode") else []
        ids = self.tokenizer(list(texts)).to(self.device)
        x = m.token_embedding(ids) + m.positional_embedding
        hidden = []
        for block in m.transformer.resblocks:
            x = block(x, attn_mask=m.attn_mask)
            hidden.append(x)
        penultimate = hidden[-2]
        final = m.ln_final(x)
        pooled = final[torch.arange(len(ids)), ids.argmax(dim=-1)] @ m.text_projection
        info = {"context_length": self.context_length, "truncated": sum(n > self.context_length for n in lengths),
                "encoder": self.hub_id}
        return penultimate.float(), pooled.float(), info


class SD3TextEncoders(TextEncoder):
    """SD3's three encoders combined as in ``sd3_infer.py``: context = ``cat([pad(cat(clip_l, clip_g), 4096),
    t5], dim=1)`` ``[B, 154, 4096]``; pooled = ``cat(clip_l_pool, clip_g_pool)`` ``[B, 2048]``."""

    context_length = 77
    width = 4096
    pooled_width = 2048

    @staticmethod
    def required_files(what: str) -> list:
        """The three encoders in the local Hugging Face cache (:mod:`cgmbench.requirements`)."""
        from cgmbench.requirements import hub_files, transformers_model

        return [transformers_model(CLIPTextEncoder.hub_id, f"{what}: CLIP-L text encoder",
                                   tokenizer=("vocab.json", "merges.txt")),
                hub_files(OpenCLIPBigGEncoder.hub_id, ("open_clip_model.safetensors",),
                          f"{what}: OpenCLIP bigG text encoder"),
                transformers_model(T5XXLEncoder.hub_id, f"{what}: T5-XXL text encoder",
                                   tokenizer=("spiece.model|tokenizer.json",))]

    def __init__(self, device: str = "cpu"):
        self.clip_l = CLIPTextEncoder(layer=-2, device=device)
        self.clip_g = OpenCLIPBigGEncoder(device=device)
        self.t5 = T5XXLEncoder(device=device)

    def encode(self, texts):
        l_tok, l_pool, info_l = self.clip_l.encode(texts)
        g_tok, g_pool, info_g = self.clip_g.encode(texts)
        t5_tok, _, info_t5 = self.t5.encode(texts)
        clip = torch.cat([l_tok, g_tok], dim=-1)
        clip = F.pad(clip, (0, self.width - clip.shape[-1]))
        info = {"context_length": self.context_length,
                "truncated": max(info_l["truncated"], info_g["truncated"], info_t5["truncated"]),
                "truncated_per_encoder": {"clip_l": info_l["truncated"], "clip_g": info_g["truncated"],
                                          "t5xxl": info_t5["truncated"]}}
        return torch.cat([clip, t5_tok], dim=1), torch.cat([l_pool, g_pool], dim=-1), info


