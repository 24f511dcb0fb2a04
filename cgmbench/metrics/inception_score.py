"""Inception Score (Salimans et al., 2016) from classifier logits.

With ``p(y|x) = softmax(logits)`` and, per split, the marginal ``p(y) = mean_x p(y|x)``:

    IS = exp( mean_x KL(p(y|x) || p(y)) ),

computed in ``float64`` on each of ``splits`` disjoint splits; the result is the mean over
splits and their standard deviation.

Conventions reproduced exactly (``rng``):

* ``"torch-fidelity"`` (default): if ``shuffle``, rows are permuted by
  ``np.random.RandomState(seed).permutation(N)`` (torch-fidelity's default seed 2020); split
  ``i`` is rows ``[i*N//splits, (i+1)*N//splits)``; std with ``ddof=0`` (``np.std``).
  ``shuffle=False`` with ``splits = N // 5000`` is the ADM evaluator's convention (it reports the
  mean only).
* ``"torchmetrics"``: permutation ``torch.randperm(N, generator=torch.Generator().manual_seed(seed))``
  (= torchmetrics' global draw after ``torch.manual_seed(seed)`` on CPU), splits by
  ``torch.chunk`` (size ``ceil(N/splits)``, the last one shorter), std with ``ddof=1``.
  torchmetrics itself computes in the logits' dtype (usually float32); here it is float64.

For Inception-v3 the logits are the 1008-way ``logits_unbiased`` (pool3 @ W, no bias), as in
the original TF code, torch-fidelity, torchmetrics and the ADM evaluator.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cgmbench.metrics import _checks


def inception_score(
    logits: Any,
    splits: int = 10,
    shuffle: bool = True,
    seed: int = 2020,
    rng: str = "torch-fidelity",
    ddof: int | None = None,
) -> tuple[float, float]:
    """Inception Score of ``logits`` ``(N, num_classes)`` as ``(mean, std)`` over ``splits``.

    Args:
        logits: unnormalised class scores (not probabilities), shape ``(N, C)``.
        splits: number of splits (10 in torch-fidelity / torchmetrics).
        shuffle: permute the rows before splitting (see ``rng``).
        seed: seed of the permutation.
        rng: ``"torch-fidelity"`` or ``"torchmetrics"`` permutation *and* split convention.
        ddof: delta degrees of freedom of the std; default 0 for torch-fidelity, 1 for torchmetrics.
    """
    x = _checks.features(logits, "logits", min_rows=1)
    n = x.shape[0]
    if rng not in ("torch-fidelity", "torchmetrics"):
        raise ValueError(f"rng must be 'torch-fidelity' or 'torchmetrics', got {rng!r}")
    if not 1 <= splits <= n:
        raise ValueError(f"splits must be between 1 and the number of samples ({n}), got {splits}")
    if ddof is None:
        ddof = 0 if rng == "torch-fidelity" else 1

    t = torch.from_numpy(x)
    if rng == "torch-fidelity":
        if shuffle:
            t = t[torch.from_numpy(np.random.RandomState(seed).permutation(n))]
        bounds = [(i * n // splits, (i + 1) * n // splits) for i in range(splits)]
        parts = [t[lo:hi] for lo, hi in bounds]
    else:
        if shuffle:
            t = t[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]
        parts = list(t.chunk(splits, dim=0))

    scores = np.array([_split_score(p) for p in parts])
    std = float(scores.std(ddof=ddof)) if len(scores) > ddof else float("nan")
    return float(scores.mean()), std


def _split_score(logits: torch.Tensor) -> float:
    """``exp(mean KL(p(y|x) || p(y)))`` for one split of float64 logits."""
    p = logits.softmax(dim=1)
    log_p = logits.log_softmax(dim=1)
    log_marginal = p.mean(dim=0, keepdim=True).log()
    kl = (p * (log_p - log_marginal)).sum(dim=1)
    return float(kl.mean().exp())
