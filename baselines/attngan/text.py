"""Captions to AttnGAN inputs: the shapes vocabulary in AttnGAN's convention and the official caption encoding
(tokenize, drop unknown words, pad with 0 / keep a seeded ordered subset of ``words_num`` words)."""

from __future__ import annotations

import numpy as np
import torch

from baselines.attngan.vocab import pad_caption, tokenize
from baselines.common.text_encoders import shapes_vocabulary
from cgmbench.errors import CgmbenchError
from cgmbench.seeding import derive_seed, numpy_rng

__all__ = ["shapes_attngan_vocabulary", "encode_captions"]


def shapes_attngan_vocabulary() -> dict[str, int]:
    """``wordtoix`` of the shapes world in AttnGAN's convention: index 0 = ``<end>`` (padding), then the words."""
    words = ["<end>"] + [w for w in shapes_vocabulary() if not w.startswith("<")]
    return {w: i for i, w in enumerate(words)}


def encode_captions(texts, wordtoix: dict[str, int], words_num: int, seeds=None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(captions (B, words_num) int64, cap_lens (B,), number cut to words_num)``; see the module docstring."""
    rows, lens, cut = [], [], 0
    for i, text in enumerate(texts):
        ids = [wordtoix[t] for t in tokenize(text) if t in wordtoix]
        if not ids:
            raise CgmbenchError(f"prompt {text!r} has no word in the model's vocabulary",
                                "AttnGAN drops unknown words; a caption needs at least one known word")
        rng = None
        if len(ids) > words_num:
            cut += 1
            rng = numpy_rng(derive_seed("attngan-caption", 0 if seeds is None else seeds[i]))
        x, n = pad_caption(ids, words_num, rng)
        rows.append(x)
        lens.append(n)
    return torch.from_numpy(np.stack(rows)), torch.tensor(lens, dtype=torch.int64), cut
