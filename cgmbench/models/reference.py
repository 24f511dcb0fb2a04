"""Reference models that exist for every task, so that every score has a scale.

* ``oracle`` returns held-out real data matching the condition: the real-vs-real floor of FID
  and the ceiling of adherence scores.
* ``noise`` returns uniform random pixels: the trivial ceiling of FID, the floor of adherence.
"""

from __future__ import annotations

import numpy as np
import torch

from cgmbench.conditions import CONDITION_KINDS
from cgmbench.generator import CheckpointInfo, Generator
from cgmbench.seeding import torch_generator
from cgmbench.sources.base import open_source


class _ReferenceModel(Generator):
    condition_kinds = frozenset(CONDITION_KINDS)
    reference = True

    @classmethod
    def load(cls, task, variant=None, checkpoint=None, device="cpu"):
        from cgmbench.errors import CgmbenchError

        if variant or checkpoint:
            raise CgmbenchError(f"model {cls.name!r} has no checkpoints; use --model {cls.name}")
        model = cls((task.resolution, task.resolution), frames=task.frames,
                    checkpoint=CheckpointInfo(name="none", source="reference model"), device=device)
        model.task = task
        return model

    def _shape(self):
        h, w = self.resolution
        return (self.frames, 3, h, w) if self.frames else (3, h, w)


class OracleModel(_ReferenceModel):
    name = "oracle"
    description = "held-out real data matching each condition (the real-vs-real floor)"

    @classmethod
    def required_files(cls, task, variant=None, checkpoint=None):
        """The real images the task's condition source gives the oracle."""
        from cgmbench.sources.base import source_class

        return list(source_class(task.conditions["source"]).required_files(task, task.conditions, "conditions",
                                                                            oracle=True))

    def generate(self, conditions, seeds, **knobs):
        if not hasattr(self, "_source"):
            self._source = open_source(self.task, "conditions")
        source = self._source
        return torch.from_numpy(np.ascontiguousarray(source.oracle(conditions.indices, list(seeds))))


class NoiseModel(_ReferenceModel):
    name = "noise"
    description = "uniform random uint8 pixels, one torch.Generator per sample (the trivial ceiling)"

    def generate(self, conditions, seeds, **knobs):
        shape = self._shape()
        return torch.stack([torch.randint(0, 256, shape, generator=torch_generator(s), dtype=torch.uint8)
                            for s in seeds])
