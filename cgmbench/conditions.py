"""Condition kinds and the batch of conditions a generator receives.

Every task kind maps to one condition kind; every generator declares the kinds it accepts.

=================  ===================================================================
condition kind     fields of :class:`Conditions` that are set
=================  ===================================================================
``class``          ``labels``: int64 ``[B]``
``text``           ``texts``: list of ``B`` strings
``image``          ``images``: uint8 ``[B, 3, H, W]`` (translation source)
``image+mask``     ``images`` and ``masks``: uint8 ``[B, 1, H, W]``, 255 = region to change
``image+text``     ``images`` and ``texts`` (an editing instruction); ``masks`` when the task has them
``text->video``    ``texts``; the output is a video ``[B, T, 3, H, W]``
=================  ===================================================================

``indices`` are the condition ids within the task's condition set (for the judge and the
oracle); generators must not use them to look up answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

CONDITION_KINDS = ("class", "text", "image", "image+mask", "image+text", "text->video")

#: The condition kind of each task kind.
TASK_KINDS = {
    "class-conditional": "class",
    "text-to-image": "text",
    "paired-translation": "image",
    "unpaired-translation": "image",
    "editing": "image+text",
    "inpainting": "image+mask",
    "text-to-video": "text->video",
}


@dataclass
class Conditions:
    """A batch of ``B`` conditions of one kind (see the module docstring for the fields)."""

    kind: str
    indices: list[int]
    labels: torch.Tensor | None = None
    texts: list[str] | None = None
    images: torch.Tensor | None = None
    masks: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.indices)

    def __post_init__(self):
        if self.kind not in CONDITION_KINDS:
            raise ValueError(f"unknown condition kind {self.kind!r}; expected one of {CONDITION_KINDS}")
        n = len(self.indices)
        for name in ("labels", "images", "masks"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"conditions.{name} has {len(value)} rows for {n} indices")
        if self.texts is not None and len(self.texts) != n:
            raise ValueError(f"conditions.texts has {len(self.texts)} entries for {n} indices")
