"""Feature extractors by name: ``get_extractor("inception-v3", weights_path=None, protocol="tf-exact")``.

:data:`EXTRACTORS` maps a name to a factory ``(weights_path=None, **options) -> FeatureExtractor``.
Only ``inception-v3`` (the FID Inception) exists now; CLIP (CLIP-FID, CLIP score, CMMD) and
shape/video extractors register themselves the same way with :func:`register_extractor`.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from cgmbench.extractors.base import FeatureExtractor
from cgmbench.extractors.inception import FIDInceptionV3

ExtractorFactory = Callable[..., FeatureExtractor]

EXTRACTORS: dict[str, ExtractorFactory] = {}


def register_extractor(name: str, factory: ExtractorFactory) -> ExtractorFactory:
    """Register ``factory`` under ``name``; it must accept ``weights_path=`` and return a FeatureExtractor."""
    if name in EXTRACTORS:
        raise ValueError(f"feature extractor {name!r} is already registered")
    EXTRACTORS[name] = factory
    return factory


def available_extractors() -> list[str]:
    return sorted(EXTRACTORS)


def get_extractor(name: str, weights_path: str | os.PathLike | None = None, **options: Any) -> FeatureExtractor:
    """Build the extractor ``name``.

    Args:
        name: a key of :data:`EXTRACTORS` (``"inception-v3"``).
        weights_path: user-supplied weights instead of the official file in ``$CGMBENCH_HOME/weights``
            (the extractor then records ``is_official_weights`` from the file's sha256).
        **options: extractor-specific, e.g. ``protocol="clean"`` or ``compute_dtype=torch.float64``
            for ``inception-v3``.
    """
    try:
        factory = EXTRACTORS[name]
    except KeyError:
        raise ValueError(f"unknown feature extractor {name!r}; available: {available_extractors()}") from None
    return factory(weights_path=weights_path, **options)


register_extractor("inception-v3", FIDInceptionV3)
