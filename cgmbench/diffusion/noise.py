"""Injectable sampler noise.

Every stochastic sampler in :mod:`cgmbench.diffusion` takes its per-step noise from a *noise source*
instead of calling ``torch.randn`` itself, so that

* official-code fixtures can replay the exact noise they recorded, and
* cgmbench can make sample ``i`` depend only on its own ``torch.Generator`` (see :mod:`cgmbench.seeding`),
  whatever the batch it happens to be in.

A noise source is one of

* ``None``: fresh ``torch.randn`` from the global generator (not reproducible across batch layouts);
* a callable ``noise_fn(step_index, shape) -> Tensor`` (step_index counts sampling steps from 0);
* a sequence of tensors, or one tensor with a leading step axis: entry ``step_index`` is used;
* a :class:`PerSampleNoise` (a callable built from one generator per sample).
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import torch

__all__ = ["NoiseSource", "per_sample_noise", "PerSampleNoise", "draw_noise"]

NoiseFn = Callable[[int, torch.Size], torch.Tensor]
NoiseSource = Union[None, NoiseFn, Sequence[torch.Tensor], torch.Tensor]


def per_sample_noise(
    generators: Sequence[torch.Generator],
    shape_per_sample: Sequence[int],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Stack one ``torch.randn(shape_per_sample)`` draw from each generator: shape ``(len(generators), *shape)``.

    Row ``i`` depends only on ``generators[i]`` (and on how many draws it already made), so sample ``i`` gets
    the same noise whatever the batch composition. Each draw happens on the generator's own device and the
    result is moved to ``device`` (default: that of the first generator).
    """
    if len(generators) == 0:
        raise ValueError("per_sample_noise needs at least one torch.Generator")
    shape = tuple(int(s) for s in shape_per_sample)
    rows = [torch.randn(shape, generator=g, dtype=dtype, device=g.device) for g in generators]
    out_device = torch.device(device) if device is not None else generators[0].device
    return torch.stack([r.to(out_device) for r in rows])


class PerSampleNoise:
    """A noise function ``(step_index, shape) -> Tensor`` drawing row i from ``generators[i]``.

    Use it as the ``noise`` argument of the samplers (and draw the initial ``x_T`` with
    :func:`per_sample_noise` from the same generators first).
    """

    def __init__(self, generators: Sequence[torch.Generator], dtype: torch.dtype = torch.float32, device=None):
        if len(generators) == 0:
            raise ValueError("PerSampleNoise needs at least one torch.Generator")
        self.generators = list(generators)
        self.dtype = dtype
        self.device = device

    def __call__(self, step_index: int, shape: Sequence[int]) -> torch.Tensor:
        if shape[0] != len(self.generators):
            raise ValueError(
                f"noise requested for a batch of {shape[0]} but {len(self.generators)} generators were given; "
                "pass one generator per sample"
            )
        return per_sample_noise(self.generators, shape[1:], dtype=self.dtype, device=self.device)


def draw_noise(source: NoiseSource, step_index: int, like: torch.Tensor) -> torch.Tensor:
    """The noise for sampling step ``step_index``, shaped like ``like`` (checked), on its device and dtype."""
    if source is None:
        noise = torch.randn_like(like)
    elif callable(source):
        noise = source(step_index, like.shape)
    else:
        if step_index >= len(source):
            raise ValueError(
                f"the noise sequence has {len(source)} entries but step {step_index} needs one; "
                "give one noise tensor per sampling step"
            )
        noise = source[step_index]
    if not isinstance(noise, torch.Tensor) or tuple(noise.shape) != tuple(like.shape):
        got = tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__
        raise ValueError(f"noise for step {step_index} has shape {got}, expected {tuple(like.shape)}")
    return noise.to(device=like.device, dtype=like.dtype)
