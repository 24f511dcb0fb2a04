"""What every metric feature extractor exposes, and the numerics all of them run under.

A feature extractor is an ``nn.Module`` (so ``.to(device)`` works) that maps uint8 images
``[B, 3, H, W]`` to float64 features ``[B, feature_dim]`` on the CPU, and records what it is:
``name``, ``feature_dim``, ``weights_sha256``, ``is_official_weights`` and :meth:`describe` (a
JSON-serialisable dict to store next to every number).

Numerics: metric networks run in float32 (or float64 when asked) with **TF32 disabled**. On
Ampere and newer GPUs PyTorch lets cuDNN convolutions use TF32 by default
(``torch.backends.cudnn.allow_tf32 is True``), which makes features depend on the batch size and
the kernel choice (torchmetrics#1620, torch-fidelity#43). :func:`tf32_disabled` switches
``torch.backends.cudnn.allow_tf32`` and ``torch.backends.cuda.matmul.allow_tf32`` off for the
duration of each forward pass and restores the caller's settings afterwards.
"""

from __future__ import annotations

from cgmbench.extractors.errors import ExtractorError

import contextlib
from typing import Any, Iterator

import torch
from torch import nn

from cgmbench.extractors.protocols import check_images


@contextlib.contextmanager
def tf32_disabled() -> Iterator[None]:
    """Run the block with TF32 off for cuDNN convolutions and CUDA matmuls; restore the flags after."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


class FeatureExtractor(nn.Module):
    """Base class: uint8 ``[B, 3, H, W]`` images -> float64 ``[B, feature_dim]`` CPU features.

    Subclasses set ``name``, ``feature_dim``, ``weights_sha256``, ``is_official_weights`` and
    implement :meth:`features` (one batch, no grad, TF32 already off). Extractors stay in eval mode:
    ``train()`` is a no-op, because BatchNorm in training mode would silently change the features.
    """

    name: str = "abstract"
    feature_dim: int = 0
    weights_sha256: str | None = None
    is_official_weights: bool = False
    #: bump when the meaning of the features changes (another layer, another preprocessing): it is part
    #: of the reference-statistics cache key, so statistics of the old features are never reused
    feature_version: str = "1"

    def train(self, mode: bool = True) -> "FeatureExtractor":
        return super().train(False)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def logits(self, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        raise NotImplementedError(f"extractor {self.name!r} has no classifier logits (needed for the Inception Score)")

    @torch.no_grad()
    def forward(self, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """Features ``[B, feature_dim]`` as float64 on the CPU, ``batch_size`` images per pass (all if None)."""
        return self.features_of_prepared(self.prepare(images, batch_size))

    # Two stages, so that a pipeline (:func:`cgmbench.scoring.reference_stats.iter_feature_batches`) can run the CPU-side
    # preparation of the next batch in a background thread while the network runs on this one. Together
    # they compute exactly what :meth:`forward` computes.

    def prepare(self, images: torch.Tensor, batch_size: int | None = None) -> list:
        """Stage 1 (thread-safe, no network): validate ``images`` and cut them into network batches.
        Subclasses may also do their CPU-bound preprocessing here (resizing, normalising)."""
        check_images(images)
        return split_batches(images, batch_size)

    @torch.no_grad()
    def features_of_prepared(self, chunks: list) -> torch.Tensor:
        """Stage 2: the network on what :meth:`prepare` returned; float64 CPU features."""
        with tf32_disabled():
            return torch.cat([self.features(chunk).to("cpu", torch.float64) for chunk in chunks])

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable record of the extractor (store it with every number)."""
        return {
            "name": self.name,
            "feature_dim": self.feature_dim,
            "weights_sha256": self.weights_sha256,
            "is_official_weights": self.is_official_weights,
            "feature_version": self.feature_version,
            "tf32": False,
        }


def split_batches(images: torch.Tensor, batch_size: int | None) -> list[torch.Tensor]:
    """``images`` in consecutive chunks of ``batch_size`` (one chunk if None)."""
    if batch_size is None:
        return [images]
    if int(batch_size) < 1:
        raise ExtractorError(f"batch_size must be a positive integer, got {batch_size}")
    return list(torch.split(images, int(batch_size)))
