"""DAMSM R-precision, the text-image retrieval metric of the GAN-era text-to-image papers.

AttnGAN released no R-precision code; the procedure later papers cite is DM-GAN's
(``code/trainer.py::sampling``): for each generated image, rank its true caption against
``num_negatives = 99`` mismatched captions by the cosine similarity of the DAMSM global image
code (``CNN_ENCODER``'s ``cnn_code``) and the DAMSM sentence embeddings (``RNN_ENCODER``'s
``sent_emb``); a *hit* is the true caption ranking first (R = 1 of 100). The score is the hit rate.

What is fixed here and what is a named protocol parameter:

* **Negatives** (``protocol``). ``"dmgan"``: each negative is a caption drawn uniformly (with
  replacement) from the captions whose class differs from the true caption's class. DM-GAN draws an
  image of another class uniformly, then one of its captions uniformly; with the same number of
  captions per image (CUB 10, COCO 5) that is the same distribution. ``"uniform"``: uniformly
  (with replacement) from all captions but the true one. Same-class negatives make ``uniform``
  harder than ``dmgan``.
* **Randomness**: DM-GAN draws from the unseeded global numpy generator; here every draw comes
  from one ``torch.Generator`` (``seed``), query ``i`` taking row ``i`` of one ``(N, K)`` draw.
* **Cosine**: ``a·b / max(|a|·|b|, 1e-8)`` as in DM-GAN, computed in float64 (DM-GAN: float32 on
  the GPU; they differ only on near-ties).
* **Ties**: DM-GAN's ``argmax(scores) == 0`` picks the first maximum, so a negative exactly tied
  with the true caption still counts as a hit. Kept.
* **Summary**: :func:`r_precision` returns the per-sample hits, so any bootstrap interval can be
  computed (``cgmbench.metrics.bootstrap.bootstrap_ci(hits)``). :func:`dmgan_group_summary`
  reproduces DM-GAN's own report: shuffle 30,000 hits, 10 groups of 3,000, mean of each group over
  its first 2,999 entries (DM-GAN's slice ``R[i*3000:(i+1)*3000-1]`` drops one), mean ± std (ddof 0)
  of the 10 group means.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["PROTOCOLS", "RPrecision", "sample_negatives", "r_precision", "dmgan_group_summary"]

PROTOCOLS = ("dmgan", "uniform")


@dataclass(frozen=True)
class RPrecision:
    """Result of :func:`r_precision`: per-sample hits and the negatives that produced them."""

    hits: np.ndarray  # bool (N,): the true caption ranked first
    negatives: np.ndarray = field(repr=False)  # int64 (N, K): caption-bank indices of the negatives
    protocol: str = "dmgan"
    num_negatives: int = 99

    @property
    def value(self) -> float:
        """The R-precision: fraction of hits, in [0, 1]."""
        return float(self.hits.mean())

    @property
    def n(self) -> int:
        return int(self.hits.shape[0])


def _generator(seed: int | torch.Generator) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(int(seed))


def sample_negatives(
    query_text_index,
    num_captions: int,
    class_ids=None,
    *,
    protocol: str = "dmgan",
    num_negatives: int = 99,
    seed: int | torch.Generator = 0,
) -> torch.Tensor:
    """Caption-bank indices ``(N, num_negatives)`` of the mismatched captions of each query.

    ``query_text_index (N,)``: bank index of each image's true caption; ``class_ids (num_captions,)``:
    the class of every bank caption (needed by ``"dmgan"``). Draws are with replacement.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown R-precision protocol {protocol!r}; choose one of {PROTOCOLS}")
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
    q = torch.as_tensor(np.asarray(query_text_index), dtype=torch.int64).reshape(-1)
    if q.numel() and (int(q.min()) < 0 or int(q.max()) >= num_captions):
        raise ValueError(f"query_text_index must lie in [0, {num_captions}), got {int(q.min())}..{int(q.max())}")
    u = torch.rand(q.numel(), num_negatives, generator=_generator(seed), dtype=torch.float64)

    if protocol == "uniform":
        if num_captions < 2:
            raise ValueError("the uniform protocol needs at least 2 captions")
        r = (u * (num_captions - 1)).floor().long().clamp_max(num_captions - 2)
        return torch.where(r < q[:, None], r, r + 1)  # skip the true caption itself

    if class_ids is None:
        raise ValueError("the dmgan protocol draws negatives from other classes: pass class_ids")
    classes = torch.as_tensor(np.asarray(class_ids)).reshape(-1)
    if classes.numel() != num_captions:
        raise ValueError(f"class_ids has {classes.numel()} entries for {num_captions} captions")
    _, inverse = torch.unique(classes, return_inverse=True)
    order = torch.argsort(inverse, stable=True)  # bank indices grouped by class
    counts = torch.bincount(inverse)
    starts = torch.cumsum(counts, 0) - counts
    c = inverse[q]
    n_same, start = counts[c], starts[c]
    available = num_captions - n_same
    if q.numel() and int(available.min()) == 0:
        raise ValueError("the dmgan protocol needs captions of at least two classes")
    r = (u * available[:, None]).floor().long()
    r = torch.minimum(r, (available - 1)[:, None])
    # position in the class-sorted bank, jumping over the query's own class block
    pos = torch.where(r < start[:, None], r, r + n_same[:, None])
    return order[pos]


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """DM-GAN's cosine of ``a (n, D)`` with each row of ``b (n, K, D)`` → ``(n, K)``."""
    dots = torch.einsum("nd,nkd->nk", a, b)
    norms = a.norm(dim=1, keepdim=True) * b.norm(dim=2)
    return dots / norms.clamp(min=1e-8)


def r_precision(
    image_features,
    text_features,
    query_text_index,
    class_ids=None,
    *,
    protocol: str = "dmgan",
    num_negatives: int = 99,
    seed: int | torch.Generator = 0,
    chunk_size: int = 1024,
) -> RPrecision:
    """R-precision of ``N`` images against a bank of ``M`` captions.

    Args:
        image_features: ``(N, D)`` DAMSM global image codes of the generated images.
        text_features: ``(M, D)`` DAMSM sentence embeddings of the caption bank (all captions
            negatives may come from, the true ones included).
        query_text_index: ``(N,)`` bank index of the caption each image was generated from.
        class_ids: ``(M,)`` class of each bank caption (CUB: bird species; required by ``dmgan``).
        protocol: ``"dmgan"`` or ``"uniform"`` (module docstring).
        num_negatives: mismatched captions per image (99 in the literature).
        seed: int or ``torch.Generator`` for the negative draws.
        chunk_size: images scored at once (memory ``chunk_size * K * D``).
    """
    img = torch.as_tensor(np.asarray(image_features) if not torch.is_tensor(image_features) else image_features)
    txt = torch.as_tensor(np.asarray(text_features) if not torch.is_tensor(text_features) else text_features)
    img, txt = img.detach().cpu().double(), txt.detach().cpu().double()
    if img.ndim != 2 or txt.ndim != 2 or img.shape[1] != txt.shape[1]:
        raise ValueError(f"need image features (N, D) and text features (M, D), got {tuple(img.shape)} and {tuple(txt.shape)}")
    q = torch.as_tensor(np.asarray(query_text_index), dtype=torch.int64).reshape(-1)
    if q.numel() != img.shape[0]:
        raise ValueError(f"{img.shape[0]} images but {q.numel()} true-caption indices")
    neg = sample_negatives(q, txt.shape[0], class_ids, protocol=protocol, num_negatives=num_negatives, seed=seed)
    hits = torch.zeros(img.shape[0], dtype=torch.bool)
    for s in range(0, img.shape[0], chunk_size):
        e = min(s + chunk_size, img.shape[0])
        candidates = torch.cat([txt[q[s:e]][:, None], txt[neg[s:e]]], dim=1)  # true caption first
        scores = _cosine(img[s:e], candidates)
        hits[s:e] = scores.argmax(dim=1) == 0  # first maximum wins, as torch.argmax in DM-GAN
    return RPrecision(hits=hits.numpy(), negatives=neg.numpy(), protocol=protocol, num_negatives=num_negatives)


def dmgan_group_summary(hits, num_groups: int = 10, group_size: int = 3000, seed: int = 0) -> tuple[float, float, np.ndarray]:
    """DM-GAN's report: ``(mean, std, group_means)`` over ``num_groups`` shuffled groups.

    Uses the first ``num_groups * group_size`` hits (DM-GAN stops at 30,000), shuffles them with
    ``np.random.default_rng(seed)``, and averages each group over its first ``group_size - 1``
    entries (DM-GAN's off-by-one slice). ``std`` is ``np.std`` (ddof 0) of the group means.
    """
    h = np.asarray(hits, dtype=np.float64).reshape(-1)
    total = num_groups * group_size
    if group_size < 2 or h.size < total:
        raise ValueError(f"need at least {num_groups} x {group_size} = {total} hits (group_size >= 2), got {h.size}")
    h = h[:total].copy()
    np.random.default_rng(seed).shuffle(h)
    means = np.array([h[i * group_size : (i + 1) * group_size - 1].mean() for i in range(num_groups)])
    return float(means.mean()), float(means.std()), means
