"""DAMSM (AttnGAN §3.2): the word- and sentence-level image-text matching losses, and a small image encoder for
the shapes world.

The official DAMSM image encoder is the Inception-v3 ``CNN_ENCODER`` at 299x299 (17x17 local features and a
global code); for the 32x32 shapes world :class:`ShapesImageEncoder` plays its part (local ``(B, nef, 8, 8)``,
global ``(B, nef)``), pre-trained jointly with the shapes ``RNN_ENCODER`` by the AttnGAN recipe.

Losses, written from the paper's equations (gamma1 = 4, gamma2 = 5, gamma3 = 10 as ``TRAIN.SMOOTH``):

* word level: for caption ``i`` and image ``j``, each word ``e_t`` attends over the image regions ``v_r``
  (the scores ``e_t . v_r`` are first normalised over the words, then ``softmax_r(gamma1 * .)``), giving a region
  context ``c_t``; ``R(i, j) = log(sum_t exp(gamma2 * cos(e_t, c_t)))`` over the caption's real words;
* sentence level: ``R(i, j) = cos(sentence_i, global_j)``;
* each turned into a loss by ``cross_entropy(gamma3 * R, diag)`` in both directions (image->text and
  text->image). Pairs ``i != j`` with the same caption are excluded from the negatives (the official code excludes
  pairs of the same class).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ShapesImageEncoder", "words_similarity", "sentence_similarity", "matching_loss", "damsm_loss"]


class ShapesImageEncoder(nn.Module):
    """Small CNN for 32x32 (or larger, resized to 32) images in ``[-1, 1]``: ``(local (B, nef, 8, 8), global (B, nef))``."""

    def __init__(self, nef: int = 64, width: int = 32):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(3, width, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, width * 2, 4, 2, 1), nn.BatchNorm2d(width * 2), nn.LeakyReLU(0.2),   # 16
            nn.Conv2d(width * 2, width * 2, 4, 2, 1), nn.BatchNorm2d(width * 2), nn.LeakyReLU(0.2),  # 8
        )
        self.emb_features = nn.Conv2d(width * 2, nef, 1)
        self.emb_cnn_code = nn.Linear(width * 2 * 64, nef)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[-1] != 32:
            x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
        h = self.trunk(x)
        return self.emb_features(h), self.emb_cnn_code(h.flatten(1))


def words_similarity(words: torch.Tensor, word_mask: torch.Tensor, local: torch.Tensor,
                     gamma1: float = 4.0, gamma2: float = 5.0) -> torch.Tensor:
    """``R[i, j]`` for captions ``i`` (``words (B, D, T)``, ``word_mask (B, T)`` True at padding) and images ``j``
    (``local (B, D, H, W)``): ``(B_captions, B_images)``."""
    b, d, t = words.shape
    regions = local.flatten(2)  # (Bi, D, R)
    scores = torch.einsum("adt,bdr->abtr", words, regions)  # caption a, image b, word t, region r
    pad = word_mask[:, None, :, None]
    scores = scores.masked_fill(pad, float("-inf")).softmax(dim=2)  # normalise over the words
    attn = (gamma1 * scores).masked_fill(pad, float("-inf")).softmax(dim=3)  # each word over the regions
    attn = torch.nan_to_num(attn, nan=0.0)
    context = torch.einsum("abtr,bdr->abdt", attn, regions)
    cos = F.cosine_similarity(words[:, None], context, dim=2, eps=1e-8)  # (a, b, t)
    cos = (gamma2 * cos).masked_fill(word_mask[:, None, :], float("-inf"))
    return torch.logsumexp(cos, dim=2)


def sentence_similarity(sent: torch.Tensor, glob: torch.Tensor) -> torch.Tensor:
    """``R[i, j] = cos(sent_i, glob_j)``: ``(B_captions, B_images)``."""
    return F.normalize(sent, dim=1, eps=1e-8) @ F.normalize(glob, dim=1, eps=1e-8).t()


def matching_loss(sim: torch.Tensor, same: torch.Tensor | None = None, gamma3: float = 10.0) -> torch.Tensor:
    """Symmetric cross-entropy of ``gamma3 * sim`` against the diagonal; ``same[i, j]`` (off the diagonal) removes
    a pair from the negatives."""
    logits = gamma3 * sim
    if same is not None:
        off = same & ~torch.eye(len(sim), dtype=torch.bool, device=sim.device)
        logits = logits.masked_fill(off, float("-inf"))
    labels = torch.arange(len(sim), device=sim.device)
    return F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)


def damsm_loss(words, word_mask, sent, local, glob, texts: list[str] | None = None) -> tuple[torch.Tensor, dict]:
    """Word + sentence DAMSM loss of a batch of matching (caption, image) pairs."""
    same = None
    if texts is not None:
        same = torch.tensor([[a == b for b in texts] for a in texts], dtype=torch.bool, device=sent.device)
    w = matching_loss(words_similarity(words, word_mask, local), same)
    s = matching_loss(sentence_similarity(sent, glob), same)
    return w + s, {"damsm_words": w.item(), "damsm_sent": s.item()}
