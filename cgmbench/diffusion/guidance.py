"""Classifier-free guidance: the suite's one convention.

Every baseline states its guidance strength as ``guidance_scale = w`` in

    pred = uncond + w * (cond - uncond)

(Ho & Salimans 2021 use ``(1 + w') cond - w' uncond``, i.e. ``w = w' + 1``). So

* ``w = 1``: the plain conditional prediction (the unconditional pass can be skipped);
* ``w = 0``: the unconditional prediction;
* ``w > 1``: guided beyond the conditional model.

The official knobs are all this same ``w``, with no translation:

* CompVis/LDM ``DDIMSampler.sample(unconditional_guidance_scale=w)`` (batch ``[uncond, cond]``);
* DiT ``forward_with_cfg(cfg_scale=w)`` / ``sample.py --cfg-scale`` (batch ``[cond, uncond]``; guides only the
  first 3 output channels, see ``channels`` below);
* SD3/SD3.5 ``CFGDenoiser`` ``cond_scale`` / ``--cfg`` (batch ``[cond, uncond]``, on the denoised prediction);
* diffusers ``guidance_scale``.

Papers quoting Ho & Salimans' ``w'`` (e.g. "guidance weight 3" meaning ``w = 4``) translate with
:func:`from_ho_salimans` / :func:`to_ho_salimans`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

__all__ = ["apply_guidance", "from_ho_salimans", "to_ho_salimans", "needs_unconditional", "cfg_model"]


def from_ho_salimans(w_prime: float) -> float:
    """Ho & Salimans' weight ``w'`` (``(1+w') cond - w' uncond``) as the suite's ``w = w' + 1``."""
    return w_prime + 1


def to_ho_salimans(guidance_scale: float) -> float:
    """The suite's ``w`` as Ho & Salimans' ``w' = w - 1``."""
    return guidance_scale - 1


def needs_unconditional(guidance_scale: float) -> bool:
    """Whether an unconditional prediction is needed (``w != 1``)."""
    return guidance_scale != 1


def apply_guidance(cond: torch.Tensor, uncond: torch.Tensor, guidance_scale: float | torch.Tensor,
                   channels: int | None = None) -> torch.Tensor:
    """``uncond + w * (cond - uncond)`` (see the module docstring for the convention).

    Args:
        cond, uncond: predictions of the same shape ``(N, C, ...)`` (eps, denoised x0, velocity or logits).
        guidance_scale: ``w``, a float or a tensor broadcastable to ``cond`` (e.g. ``(N, 1, 1, 1)`` per sample).
            ``w == 1`` returns ``cond`` and ``w == 0`` returns ``uncond`` exactly (floats only).
        channels: ``None`` guides every channel. An integer k guides only channels ``[0, k)`` along dim 1 and
            passes the remaining channels of ``cond`` through unchanged: ``channels=3`` is DiT's official
            ``forward_with_cfg`` (its 4 eps channels are guided only on the first 3; the learned-variance
            channels are never guided).
    """
    if cond.shape != uncond.shape:
        raise ValueError(f"cond and uncond must have the same shape, got {tuple(cond.shape)} and {tuple(uncond.shape)}")
    if channels is not None:
        if cond.ndim < 2 or not 0 < channels <= cond.shape[1]:
            raise ValueError(
                f"channels={channels} must be in [1, {cond.shape[1] if cond.ndim >= 2 else 0}] for predictions of "
                f"shape {tuple(cond.shape)}"
            )
        guided = apply_guidance(cond[:, :channels], uncond[:, :channels], guidance_scale)
        return torch.cat([guided, cond[:, channels:]], dim=1)
    if not isinstance(guidance_scale, torch.Tensor):
        if guidance_scale == 1:
            return cond
        if guidance_scale == 0:
            return uncond
    return uncond + guidance_scale * (cond - uncond)


def _cat(a: Any, b: Any) -> Any:
    if isinstance(a, torch.Tensor):
        return torch.cat([a, b])
    if isinstance(a, Mapping):
        return {k: _cat(a[k], b[k]) for k in a}
    if isinstance(a, (list, tuple)):
        return type(a)(_cat(x, y) for x, y in zip(a, b))
    raise ValueError(f"cannot batch conditioning of type {type(a).__name__}; use tensors, dicts or lists of tensors")


def cfg_model(model: Callable, guidance_scale: float, uncond_kwargs: Mapping[str, Any], *,
              channels: int | None = None, uncond_first: bool = False) -> Callable:
    """Wrap ``model(x, t, **kwargs)`` into ``guided(x, t, **cond_kwargs)`` returning the guided prediction.

    The wrapper runs one doubled batch ``[cond, uncond]`` (``[uncond, cond]`` with ``uncond_first``, the CompVis
    order) and returns :func:`apply_guidance` of the two halves, batch ``N`` like ``x``. Each sample's prediction
    depends only on its own row, so per-sample noise stays per-sample. ``uncond_kwargs`` holds the unconditional
    inputs for the same batch (e.g. ``{"y": null_labels}`` for DiT, ``{"c": uc}`` for LDM). With ``w == 1`` only
    the conditional pass runs.

    For DiT, ``cfg_model(dit, w, {"y": full((N,), 1000)}, channels=3)`` gives the cond half of the official
    ``forward_with_cfg`` output; the learned-variance channels come from the conditional pass.
    """

    def guided(x: torch.Tensor, t: torch.Tensor, **cond_kwargs: Any) -> torch.Tensor:
        if not needs_unconditional(guidance_scale):
            return model(x, t, **cond_kwargs)
        if set(cond_kwargs) != set(uncond_kwargs):
            raise ValueError(
                f"conditional inputs {sorted(cond_kwargs)} and unconditional inputs {sorted(uncond_kwargs)} differ"
            )
        first, second = (uncond_kwargs, cond_kwargs) if uncond_first else (cond_kwargs, uncond_kwargs)
        batched = {k: _cat(first[k], second[k]) for k in cond_kwargs}
        out = model(torch.cat([x, x]), torch.cat([t, t]), **batched)
        a, b = out.chunk(2)
        cond, uncond = (b, a) if uncond_first else (a, b)
        return apply_guidance(cond, uncond, guidance_scale, channels=channels)

    return guided
