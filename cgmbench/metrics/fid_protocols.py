"""Named FID protocols of the GAN-era text-to-image papers: which real images the reference statistics hold, and
which sampling setting the generated side must use (a task's ``[metrics] fid_protocol``).

The FID of DM-GAN and DF-GAN is not the FID of the diffusion papers, and the two differ from each other
(``research/editing_video_ar.md`` §4.4). What changes the number beyond the feature network and its input
protocol (the task's ``[metrics] protocol``) is recorded here:

========  ====================================================================================================
name      protocol
========  ====================================================================================================
dmgan     MinfengZhu/DM-GAN ``eval/FID/fid_score.py`` (pytorch-fid, 2048-d pool3): reference = the task's test
          images as they are; generated images with untruncated noise.
dfgan     tobran/DF-GAN ``lib/modules.py::calculate_fid`` (pytorch-fid ``InceptionV3([2048])``): reference = the
          test images **and their horizontal mirror images** (``bird_val256_FIDK0.npz``; the maintainer, DF-GAN#18:
          CUB test images augmented with horizontal flips and small random shifts to about 30k); generated images
          with noise **truncated to [-0.88, 0.88]** (``truncation: True``, ``trunc_rate: 0.88``).
========  ====================================================================================================

DF-GAN's random shifts are neither seeded nor documented, so ``dfgan`` reproduces the flips only: the reference
is every test image followed by its mirror image (``x[..., ::-1]``), each batch in that order. A run whose model
knobs differ from the protocol's (``truncation`` 0.88 for ``dfgan``) is still scored, and the ``fid`` entry lists
the difference under ``deviations`` with ``comparable: false``; the input protocol is recorded the same way
(both papers feed pytorch-fid, cgmbench's ``pytorch-fid`` protocol).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cgmbench.errors import CgmbenchError

__all__ = ["FIDProtocol", "FID_PROTOCOLS", "get_fid_protocol", "augment_references", "protocol_deviations"]

AUGMENTATIONS = ("none", "hflip")


@dataclass(frozen=True)
class FIDProtocol:
    """What a published FID fixes beyond the extractor: the reference set and the sampling knobs."""

    name: str
    description: str
    reference_augmentation: str  # none | hflip (each reference image followed by its mirror image)
    knobs: dict  # model knobs the generated side must be sampled with (e.g. {"truncation": 0.88})
    input_protocol: str  # the feature extractor's input protocol the reference code used
    source: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.reference_augmentation not in AUGMENTATIONS:
            raise CgmbenchError(f"FID protocol {self.name!r}: reference_augmentation must be one of {AUGMENTATIONS}")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["notes"] = list(self.notes)
        return out


FID_PROTOCOLS: dict[str, FIDProtocol] = {
    "dmgan": FIDProtocol(
        name="dmgan",
        description="DM-GAN's FID: pytorch-fid pool3 of the generated images against the test images",
        reference_augmentation="none", knobs={"truncation": 0.0}, input_protocol="pytorch-fid",
        source="MinfengZhu/DM-GAN eval/FID/fid_score.py (pytorch-fid 802da39), README FID table",
        notes=("DM-GAN's bird_val.npz / coco_val.npz preprocessing is undocumented; the task's reference images "
               "(bounding-box crops for CUB) stand in for it",
               "DM-GAN's README: pytorch-fid and TF FID differ by up to 10 points (AttnGAN CUB 23.98 vs 14.01)")),
    "dfgan": FIDProtocol(
        name="dfgan",
        description="DF-GAN's FID: pytorch-fid pool3 against the test images plus their horizontal mirror images; "
                    "generated with noise truncated to [-0.88, 0.88]",
        reference_augmentation="hflip", knobs={"truncation": 0.88}, input_protocol="pytorch-fid",
        source="tobran/DF-GAN lib/modules.py (calculate_fid, truncated_noise), cfg/bird.yml (truncation, trunc_rate "
               "0.88), DF-GAN#18 (reference set)",
        notes=("DF-GAN's reference also holds small random shifts of the test images (unseeded, undocumented): "
               "not reproduced, only the flips",
               "DF-GAN resizes float [-1, 1] tensors with transforms.Resize((299, 299)); pytorch-fid's bilinear "
               "F.interpolate is the closest cgmbench protocol")),
}


def get_fid_protocol(name: str) -> FIDProtocol:
    if name not in FID_PROTOCOLS:
        raise CgmbenchError(f"unknown FID protocol {name!r}", f"known: {', '.join(sorted(FID_PROTOCOLS))}")
    return FID_PROTOCOLS[name]


def augment_references(batch: np.ndarray, augmentation: str) -> np.ndarray:
    """uint8 ``[B, 3, H, W]`` -> the reference rows the protocol counts: the batch itself (``none``) or the batch
    followed by its horizontal mirror images (``hflip``: ``[x_0..x_{B-1}, flip(x_0)..flip(x_{B-1})]``)."""
    if augmentation == "none":
        return batch
    if augmentation == "hflip":
        return np.concatenate([batch, np.ascontiguousarray(batch[..., ::-1])])
    raise CgmbenchError(f"unknown reference augmentation {augmentation!r}", f"known: {', '.join(AUGMENTATIONS)}")


def protocol_deviations(protocol: FIDProtocol, knobs: dict | None, input_protocol: str) -> dict:
    """``{what: {"protocol": expected, "used": actual}}`` for every knob or input protocol that differs."""
    out = {}
    knobs = knobs or {}
    for name, want in protocol.knobs.items():
        used = knobs.get(name)  # a model without the knob samples as its default: untruncated noise = 0
        if float(used if used is not None else 0.0) != float(want):
            out[name] = {"protocol": want, "used": used}
    if input_protocol != protocol.input_protocol:
        out["input_protocol"] = {"protocol": protocol.input_protocol, "used": input_protocol}
    return out
