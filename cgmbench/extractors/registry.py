"""Feature extractors by name: ``get_extractor("inception-v3", weights_path=None, protocol="tf-exact")``.

:data:`EXTRACTORS` maps a name to a factory ``(weights_path=None, **options) -> FeatureExtractor``.
Registered: ``inception-v3`` (the FID Inception), ``inception-v3-cub-finetuned`` (StackGAN's CUB
IS classifier), ``shapes-cnn`` and ``shapes-clip`` (trained by
cgmbench on the shapes world, shipped), ``clip-vit-b-32``, ``clip-vit-l-14`` and
``clip-vit-l-14-336`` (open_clip, OpenAI weights). Others register with :func:`register_extractor`.
"""

from __future__ import annotations

from cgmbench.extractors.errors import ExtractorError

import os
from typing import Any, Callable

from cgmbench.extractors.base import FeatureExtractor
from cgmbench.extractors.clip import FACTORIES as CLIP_FACTORIES
from cgmbench.extractors.inception import FIDInceptionV3
from cgmbench.extractors.shapes import ShapesCLIPExtractor, ShapesCNNExtractor

ExtractorFactory = Callable[..., FeatureExtractor]

EXTRACTORS: dict[str, ExtractorFactory] = {}


def register_extractor(name: str, factory: ExtractorFactory) -> ExtractorFactory:
    """Register ``factory`` under ``name``; it must accept ``weights_path=`` and return a FeatureExtractor."""
    if name in EXTRACTORS:
        raise ExtractorError(f"feature extractor {name!r} is already registered")
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
        raise ExtractorError(f"unknown feature extractor {name!r}; available: {available_extractors()}") from None
    return factory(weights_path=weights_path, **options)


register_extractor("inception-v3", FIDInceptionV3)


def _cub_inception(weights_path=None, **options):
    from cgmbench.extractors.inception_cub import CUBInceptionV3  # its own file; imported when asked for

    options.pop("protocol", None)  # its preprocessing is StackGAN's, whatever the task's protocol
    return CUBInceptionV3(weights_path=weights_path, **options)


register_extractor("inception-v3-cub-finetuned", _cub_inception)
register_extractor("shapes-cnn", ShapesCNNExtractor)
register_extractor("shapes-clip", ShapesCLIPExtractor)
for _name, _factory in CLIP_FACTORIES.items():
    register_extractor(_name, _factory)

