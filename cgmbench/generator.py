"""The generator contract every model implements (ours and third-party ones alike).

A generator declares

* ``condition_kinds``: the condition kinds it accepts (:data:`cgmbench.conditions.CONDITION_KINDS`);
* ``resolution`` ``(H, W)`` and, for video, ``frames``;
* ``knobs``: its sampling settings (:class:`Knob`: name, default, valid range, meaning), e.g.
  ``guidance_scale`` (the suite's convention, :data:`GUIDANCE_CONVENTION`), ``steps``,
  ``truncation``, ``temperature``;
* ``checkpoint``: where its weights came from (:class:`CheckpointInfo`), or ``None``;
* ``precisions``: the numeric precisions it can sample in (:data:`PRECISIONS`; ``"fp32"`` always);

and implements ``generate(conditions, seeds, **knobs)``, which returns uint8 images
``[B, 3, H, W]`` (videos ``[B, T, 3, H, W]``). ``seeds[i]`` is the only source of randomness of
sample ``i`` (see :mod:`cgmbench.seeding`): draw it from ``torch_generator(seeds[i])`` so the
output does not depend on how samples are batched.

Models are found through the ``cgmbench.models`` entry-point group (:mod:`cgmbench.models.registry`);
an entry point names a :class:`Generator` subclass, whose :meth:`Generator.load` builds the
model for a task, a checkpoint variant (``--model NAME:VARIANT``) or a file (``--checkpoint``).

Two optional parts of the contract:

* :meth:`Generator.required_files` lists every file ``load`` with the same arguments would read that is not
  shipped in a package (checkpoints, VAEs, text encoders, tokenizers) as
  :class:`cgmbench.requirements.Requirement` items, so that a run checks them all before it samples and
  ``cgmbench fetch`` gets them (:mod:`cgmbench.run.preflight`);
* a model that runs a ``generate`` batch through its networks in chunks declares ``micro_batch`` (samples per
  chunk, ``None`` = the whole batch); the run sets it (:func:`cgmbench.run.execution.choose_micro_batch`: 1 on a
  CPU unless ``--batch-size`` is given, so that samples are bit-identical whatever the batch) and records it.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from pathlib import Path
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import torch

from cgmbench.conditions import Conditions
from cgmbench.errors import CgmbenchError

if TYPE_CHECKING:  # pragma: no cover
    from cgmbench.requirements import Requirement
    from cgmbench.spec.task import TaskSpec

#: The suite's one guidance convention (README, "The guidance convention"): every model's ``guidance_scale`` knob is
#: ``w`` in ``pred = uncond + w * (cond - uncond)`` -- on eps, velocity, denoised or logits, whatever the model
#: predicts. ``w = 1`` is plain conditional sampling (no unconditional pass needed), ``w = 0`` unconditional,
#: ``w > 1`` guided; Ho & Salimans' ``w'`` is ``w - 1``. GANs have no guidance: their trade-off knob is
#: ``truncation``. Sweeps and Pareto plots use only this scale.
GUIDANCE_CONVENTION = "pred = uncond + w * (cond - uncond)"

#: numeric precisions a run may ask for (``cgmbench run --precision``):
#: ``fp32``: every network in float32 (TF32 off: the default, and what reference numbers use);
#: ``bf16``: networks under ``torch.autocast(dtype=torch.bfloat16)`` -- matmuls, convolutions and attention in
#: bfloat16, while the sampler's own arithmetic (noise, schedules, guidance combination) stays float32.
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Knob:
    """A sampling setting: ``kind`` is 'float', 'int' or 'choice'; bounds are inclusive."""

    name: str
    default: Any
    meaning: str
    kind: str = "float"
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple = ()

    def parse(self, value: Any) -> Any:
        """Convert ``value`` (a string from the command line, or a number) and check its range."""
        try:
            if self.kind == "float":
                v = float(value)
                if not math.isfinite(v):
                    raise ValueError
            elif self.kind == "int":
                v = int(value) if not isinstance(value, str) else int(value, 10)
                if isinstance(value, float) and value != int(value):
                    raise ValueError
            else:
                v = value
        except (TypeError, ValueError):
            raise CgmbenchError(f"knob {self.name}={value!r} is not a valid {self.kind}",
                                f"{self.name}: {self.describe_range()}") from None
        if self.kind == "choice" and v not in self.choices:
            raise CgmbenchError(f"knob {self.name}={value!r} is not one of {list(self.choices)}")
        if self.minimum is not None and v < self.minimum or self.maximum is not None and v > self.maximum:
            raise CgmbenchError(f"knob {self.name}={v} is out of range", f"valid range: {self.describe_range()}")
        return v

    def describe_range(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.choices))
        lo = "-inf" if self.minimum is None else f"{self.minimum:g}"
        hi = "inf" if self.maximum is None else f"{self.maximum:g}"
        return f"{self.kind} in [{lo}, {hi}]"

    def to_dict(self) -> dict:
        d = {"name": self.name, "default": self.default, "kind": self.kind, "meaning": self.meaning,
             "range": self.describe_range()}
        return d


@dataclass(frozen=True)
class CheckpointInfo:
    """Where a generator's weights came from; ``sha256`` of the file (or of the shipped tensors)."""

    name: str
    sha256: str | None = None
    path: str | None = None
    source: str | None = None  # URL, hub id, or 'shipped'
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The record's ``model.checkpoint``. A shipped file is named by its place in the package
        (``cgmbench/shipped/<file>``), not by the folder cgmbench is installed in, so that the same run made on
        two machines has the same record (and ``identity_sha256``)."""
        path = self.path
        if self.source == "shipped" and path:
            path = f"cgmbench/shipped/{Path(path).name}"
        d = {"name": self.name, "sha256": self.sha256, "path": path, "source": self.source}
        d.update(self.extra)
        return d


class Generator(ABC):
    """Base class of every conditional generator (see the module docstring)."""

    #: registry name (set by the entry point's name when loaded through the registry)
    name: str = "generator"
    condition_kinds: frozenset[str] = frozenset()
    knobs: tuple[Knob, ...] = ()
    #: True for models without trained weights of their own (oracle, noise)
    reference: bool = False
    description: str = ""
    #: precisions this model can sample in (see :data:`PRECISIONS`); models that run their networks
    #: under :meth:`autocast` add ``"bf16"``
    precisions: tuple[str, ...] = ("fp32",)
    #: the precision in use (set through :meth:`set_precision`)
    precision: str = "fp32"

    def __init__(self, resolution: tuple[int, int], frames: int | None = None,
                 checkpoint: CheckpointInfo | None = None, device: str = "cpu"):
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self.frames = frames
        self.checkpoint = checkpoint
        self.device = device

    # -- construction -------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def load(cls, task: "TaskSpec", variant: str | None = None, checkpoint: str | None = None,
             device: str = "cpu") -> "Generator":
        """Build the model for ``task``: the task's default checkpoint, ``variant``, or a file."""

    @classmethod
    def variants(cls) -> dict[str, str]:
        """Named checkpoints this model knows (``--model NAME:VARIANT``), name -> description."""
        return {}

    @classmethod
    def required_files(cls, task: "TaskSpec", variant: str | None = None,
                       checkpoint: str | None = None) -> list["Requirement"]:
        """Every file :meth:`load` ``(task, variant, checkpoint)`` reads beyond the installed packages, present or
        not (:mod:`cgmbench.requirements`: registry weights, hub-cache files, data). Called before ``load``; may
        raise :class:`CgmbenchError` for arguments ``load`` would refuse (an unknown variant). The default, no
        file, suits models without downloaded weights."""
        return []

    # -- sampling -----------------------------------------------------------------------

    @abstractmethod
    def generate(self, conditions: Conditions, seeds: Sequence[int], **knobs) -> torch.Tensor:
        """uint8 ``[B, 3, H, W]`` (or ``[B, T, 3, H, W]``) samples, sample ``i`` from ``seeds[i]`` alone."""

    # -- precision ----------------------------------------------------------------------

    def set_precision(self, precision: str) -> None:
        """Sample in ``precision`` (one of :attr:`precisions`); a clear error otherwise."""
        if precision not in PRECISIONS:
            raise CgmbenchError(f"unknown precision {precision!r}", f"choose one of: {', '.join(PRECISIONS)}")
        if precision not in self.precisions:
            raise CgmbenchError(f"model {self.name!r} cannot sample in {precision}",
                                f"it supports: {', '.join(self.precisions)}")
        self.precision = precision

    def autocast(self):
        """Context for the network calls: ``torch.autocast(bfloat16)`` under ``bf16``, nothing under ``fp32``."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16)

    # -- knobs --------------------------------------------------------------------------

    def resolve_knobs(self, given: dict[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``given``, each validated; unknown names are an error."""
        known = {k.name: k for k in self.knobs}
        for name in given:
            if name not in known:
                valid = ", ".join(sorted(known)) or "none"
                raise CgmbenchError(f"model {self.name!r} has no knob {name!r}", f"its knobs: {valid}")
        return {name: knob.parse(given.get(name, knob.default)) for name, knob in known.items()}

    def describe(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "condition_kinds": sorted(self.condition_kinds),
            "knobs": [k.to_dict() for k in self.knobs],
            "resolution": list(self.resolution),
            "frames": self.frames,
            "precision": self.precision,
            "checkpoint": self.checkpoint.to_dict() if self.checkpoint else None,
        }


class NonFiniteSamples(CgmbenchError):
    """A model produced NaN or infinite values; ``index`` is the first bad sample of the ``batch`` samples
    handed to :func:`to_uint8` (the run's batch loop turns it into the run's sample index)."""

    def __init__(self, index: int, batch: int, count: int):
        self.index, self.batch, self.count = index, batch, count
        super().__init__(f"model output holds non-finite values (NaN or inf) in {count} of {batch} sample(s), "
                         f"the first at position {index} of the batch",
                         "check the checkpoint and knobs, or opt in to --allow-nonfinite")


#: the policy of the enclosing :func:`nonfinite_policy` block (None outside any: non-finite values raise)
_NONFINITE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("cgmbench_nonfinite", default=None)


@contextlib.contextmanager
def nonfinite_policy(allow: bool):
    """Within the block, :func:`to_uint8` raises :class:`NonFiniteSamples` on NaN/inf (``allow=False``) or, with
    ``allow=True``, maps NaN and -inf to 0, +inf to 255 and counts the affected samples in the yielded
    ``{"samples": count}``."""
    state = {"allow": bool(allow), "samples": 0}
    token = _NONFINITE.set(state)
    try:
        yield state
    finally:
        _NONFINITE.reset(token)


def to_uint8(x: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """Map float samples in ``value_range`` to uint8 with rounding (not truncation) and clamping.

    Non-finite values are never clamped silently: they raise :class:`NonFiniteSamples` unless the caller opted in
    with :func:`nonfinite_policy` ``(allow=True)``, which counts them."""
    lo, hi = value_range
    x = x.detach().float()
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        per_sample = (~finite).reshape(x.shape[0], -1).any(1) if x.ndim > 1 else ~finite
        count = int(per_sample.sum())
        state = _NONFINITE.get()
        if state is None or not state["allow"]:
            raise NonFiniteSamples(int(per_sample.nonzero()[0, 0]), int(per_sample.numel()), count)
        state["samples"] += count
        x = torch.nan_to_num(x, nan=lo, posinf=hi, neginf=lo)
    y = (x - lo) * (255.0 / (hi - lo))
    return y.round().clamp_(0, 255).to(torch.uint8)
