"""LlamaGen's text conditioning: a T5 encoder's last hidden states, 120 tokens, left-padded.

LlamaGen's t2i models (``t2i_XL_stage1_256.pt``) read ``google/flan-t5-xl`` encoder features:
``T5Embedder.get_text_embeddings`` tokenizes with ``max_length=120, padding="max_length", truncation=True,
add_special_tokens=True`` and returns ``last_hidden_state`` (B, 120, 2048) with the attention mask
(valid tokens first). ``sample_t2i.py`` then moves the padding to the front (its default, no
``--no-left-padding``): ``mask' = flip(mask)``, ``emb' = cat([emb[valid:], emb[:valid]])`` per prompt and
``emb' · mask'`` (padding rows zeroed). :class:`T5CaptionEncoder` does exactly that and counts the prompts
longer than 120 tokens (cut, as LlamaGen silently does) in ``info["truncated"]``.

The encoder is any ``transformers`` T5 encoder with its tokenizer: :meth:`T5CaptionEncoder.from_hub` reads
``google/flan-t5-xl`` from the local Hugging Face cache only (nothing is downloaded at run time); tests pass a
tiny randomly initialised ``T5EncoderModel`` and a word-level tokenizer built in memory.
"""

from __future__ import annotations

from typing import Sequence

import torch

from baselines.common.text_encoders import TextEncoder, _missing_hub
from cgmbench.errors import CgmbenchError
from cgmbench.paths import hf_cache_dir

__all__ = ["LLAMAGEN_T5_HUB_ID", "LLAMAGEN_T5_TOKENS", "T5CaptionEncoder", "left_pad"]

LLAMAGEN_T5_HUB_ID = "google/flan-t5-xl"
#: LlamaGen's ``model_max_length`` and the GPT's ``cls_token_num``
LLAMAGEN_T5_TOKENS = 120


def left_pad(emb: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``sample_t2i.py``'s left padding of right-padded features (B, T, D) with mask (B, T) (1 = token)."""
    out = torch.zeros_like(emb)
    new_mask = torch.flip(mask, dims=[-1])
    for i in range(emb.shape[0]):
        valid = int(mask[i].sum())
        out[i] = torch.cat([emb[i, valid:], emb[i, :valid]])
    return out * new_mask[:, :, None].to(out.dtype), new_mask


class T5CaptionEncoder(TextEncoder):
    """``encode(texts) -> (features (B, 120, D) left-padded, mask (B, 120) int64, info)``.

    Unlike the suite's other encoders the second value is the token mask (LlamaGen's ``emb_masks``), not a
    pooled vector; ``pooled_width`` is 0.
    """

    pooled_width = 0

    def __init__(self, tokenizer, model, *, context_length: int = LLAMAGEN_T5_TOKENS, name: str = "t5",
                 device: str = "cpu"):
        self.tokenizer = tokenizer
        self.model = model.to(device).eval()
        self.context_length = int(context_length)
        self.width = int(model.config.d_model)
        self.name = name
        self.device = device

    @classmethod
    def from_hub(cls, hub_id: str = LLAMAGEN_T5_HUB_ID, device: str = "cpu",
                 dtype: torch.dtype = torch.float32) -> "T5CaptionEncoder":
        """The encoder and tokenizer of ``hub_id`` from the local Hugging Face cache (never downloads)."""
        try:
            from transformers import AutoTokenizer, T5EncoderModel

            tok = AutoTokenizer.from_pretrained(hub_id, local_files_only=True, cache_dir=hf_cache_dir())
            model = T5EncoderModel.from_pretrained(hub_id, local_files_only=True, torch_dtype=dtype,
                                                   cache_dir=hf_cache_dir())
        except (OSError, ValueError) as e:
            raise _missing_hub(hub_id, "LlamaGen's T5 text encoder (flan-t5-xl)", e) from None
        return cls(tok, model, name=hub_id, device=device)

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, dict]:
        texts = list(texts)
        full = self.tokenizer(texts, truncation=False, padding=False, add_special_tokens=True)["input_ids"]
        truncated = sum(len(ids) > self.context_length for ids in full)
        batch = self.tokenizer(texts, max_length=self.context_length, padding="max_length", truncation=True,
                               return_attention_mask=True, add_special_tokens=True, return_tensors="pt")
        ids = batch["input_ids"].to(self.device)
        mask = batch["attention_mask"].to(self.device)
        if ids.shape[1] != self.context_length:
            raise CgmbenchError(f"the T5 tokenizer gave {ids.shape[1]} tokens, not {self.context_length}")
        emb = self.model(input_ids=ids, attention_mask=mask)["last_hidden_state"].float()
        emb, new_mask = left_pad(emb, mask.long())
        info = {"context_length": self.context_length, "truncated": truncated, "encoder": self.name}
        return emb, new_mask, info
