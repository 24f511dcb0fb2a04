"""Metric feature extractors (FID Inception now; CLIP and others plug into the same registry).

Input convention everywhere: ``torch.uint8`` images ``[B, 3, H, W]``; outputs are float64 CPU tensors.
"""

from cgmbench.extractors.base import FeatureExtractor, tf32_disabled
from cgmbench.extractors.inception import INCEPTION_WEIGHTS, FIDInceptionNetwork, FIDInceptionV3
from cgmbench.extractors.protocols import PROTOCOLS, Protocol, check_images, get_protocol, register_protocol, to_uint8
from cgmbench.extractors.registry import EXTRACTORS, available_extractors, get_extractor, register_extractor
from cgmbench.extractors.weights import WeightsSpec, cgmbench_home, resolve_weights, sha256_file, weights_dir

__all__ = [
    "EXTRACTORS",
    "INCEPTION_WEIGHTS",
    "PROTOCOLS",
    "FIDInceptionNetwork",
    "FIDInceptionV3",
    "FeatureExtractor",
    "Protocol",
    "WeightsSpec",
    "available_extractors",
    "cgmbench_home",
    "check_images",
    "get_extractor",
    "get_protocol",
    "register_extractor",
    "register_protocol",
    "resolve_weights",
    "sha256_file",
    "tf32_disabled",
    "to_uint8",
    "weights_dir",
]
