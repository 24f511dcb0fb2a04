"""Discrete diffusion noise schedules and ADM timestep respacing.

A schedule is the float64 array ``betas`` of the forward process
``q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)``, t = 0 .. T-1, and its running product
``alphas_cumprod[t] = prod_{s <= t} (1 - beta_s)`` (written ``abar_t``), so that
``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)``.

Schedules provided (each as the official code computes it, so that the float tables match bit for bit):

* :func:`linear_beta_schedule`: Ho et al. 2020 / ADM / DiT "linear": ``linspace(1e-4, 0.02, T)`` in float64,
  with both ends multiplied by ``1000 / T`` (ADM ``get_named_beta_schedule("linear", T)``).
* :func:`cosine_beta_schedule`: Nichol & Dhariwal 2021, ``abar(t) = cos((t/T + 0.008) / 1.008 * pi/2)^2``,
  betas clipped at 0.999 (ADM "cosine").
* :func:`scaled_linear_beta_schedule`: LDM / Stable Diffusion 1.x, ``linspace(sqrt(0.00085), sqrt(0.012), T)**2``
  in float64 (CompVis ``make_beta_schedule("linear", ...)``, called "scaled_linear" in diffusers).
  :func:`ldm_alphas_cumprod` gives the float32 ``alphas_cumprod`` buffer that CompVis registers
  (cumprod in float64, then stored as float32) and that its ``DDIMSampler`` uses.

Respacing (:func:`space_timesteps`) follows ADM/improved-diffusion ``space_timesteps``: the kept timesteps
are ``start + round(k * stride)`` with Python ``round`` (round half to even) and the stride accumulated by
repeated addition, exactly as the reference does. For 1000 steps and ``"25"`` that gives
``[0, 42, 83, 125, 166, ...]`` (166.5 rounds to 166, not 167).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import torch

__all__ = [
    "linear_beta_schedule",
    "cosine_beta_schedule",
    "scaled_linear_beta_schedule",
    "get_named_beta_schedule",
    "alphas_cumprod_from_betas",
    "ldm_alphas_cumprod",
    "space_timesteps",
    "respace_betas",
]


def _check_num_timesteps(num_timesteps: int) -> int:
    if int(num_timesteps) != num_timesteps or num_timesteps < 1:
        raise ValueError(f"num_timesteps must be a positive integer, got {num_timesteps!r}")
    return int(num_timesteps)


def linear_beta_schedule(num_timesteps: int = 1000) -> np.ndarray:
    """ADM/DiT linear schedule: float64 ``linspace(s*1e-4, s*0.02, T)`` with ``s = 1000 / T``."""
    T = _check_num_timesteps(num_timesteps)
    scale = 1000 / T
    return np.linspace(scale * 0.0001, scale * 0.02, T, dtype=np.float64)


def cosine_beta_schedule(num_timesteps: int = 1000, max_beta: float = 0.999) -> np.ndarray:
    """Improved-DDPM cosine schedule: ``beta_i = min(1 - abar((i+1)/T) / abar(i/T), max_beta)``."""
    T = _check_num_timesteps(num_timesteps)

    def abar(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - abar((i + 1) / T) / abar(i / T), max_beta) for i in range(T)]
    return np.array(betas, dtype=np.float64)


def scaled_linear_beta_schedule(
    num_timesteps: int = 1000, linear_start: float = 0.00085, linear_end: float = 0.012
) -> np.ndarray:
    """LDM/SD1 schedule: float64 ``linspace(linear_start**0.5, linear_end**0.5, T) ** 2``.

    CompVis computes the linspace with ``torch.linspace(..., dtype=torch.float64)``; we do the same so the
    values are identical to the official buffers.
    """
    T = _check_num_timesteps(num_timesteps)
    root = torch.linspace(linear_start**0.5, linear_end**0.5, T, dtype=torch.float64)
    return (root**2).numpy()


def get_named_beta_schedule(name: str, num_timesteps: int = 1000) -> np.ndarray:
    """``"linear"`` (ADM/DiT), ``"cosine"`` (improved DDPM) or ``"scaled_linear"`` (LDM/SD1)."""
    schedules = {
        "linear": linear_beta_schedule,
        "cosine": cosine_beta_schedule,
        "scaled_linear": scaled_linear_beta_schedule,
    }
    if name not in schedules:
        raise ValueError(f"unknown beta schedule {name!r}; choose one of {sorted(schedules)}")
    return schedules[name](num_timesteps)


def alphas_cumprod_from_betas(betas: Sequence[float] | np.ndarray) -> np.ndarray:
    """``abar_t = prod_{s<=t} (1 - beta_s)`` in float64 (``np.cumprod``, as ADM and CompVis)."""
    betas = np.asarray(betas, dtype=np.float64)
    if betas.ndim != 1 or len(betas) == 0:
        raise ValueError(f"betas must be a non-empty 1-D array, got shape {betas.shape}")
    if not ((betas > 0).all() and (betas <= 1).all()):
        raise ValueError("betas must lie in (0, 1]")
    return np.cumprod(1.0 - betas, axis=0)


def ldm_alphas_cumprod(
    num_timesteps: int = 1000, linear_start: float = 0.00085, linear_end: float = 0.012
) -> torch.Tensor:
    """The float32 ``alphas_cumprod`` buffer of CompVis ``DDPM.register_schedule(beta_schedule="linear")``.

    The cumulative product runs in float64 and is stored as float32; the CompVis ``DDIMSampler`` reads
    this float32 buffer.
    """
    betas = scaled_linear_beta_schedule(num_timesteps, linear_start, linear_end)
    return torch.tensor(alphas_cumprod_from_betas(betas), dtype=torch.float32)


def space_timesteps(num_timesteps: int, section_counts: str | Iterable[int]) -> list[int]:
    """Which of the ``num_timesteps`` original steps a respaced sampler keeps (ADM ``space_timesteps``).

    ``section_counts`` is either

    * ``"ddimN"``: the evenly strided ``range(0, T, stride)`` with the smallest stride giving exactly N steps
      (the DDIM paper's choice);
    * a comma-separated string or a list of ints, e.g. ``"25"`` or ``"10,15,20"``: the T steps are cut into
      equal sections (the first ``T % len`` sections one step longer) and section i keeps ``count_i`` steps
      ``start + round(k * stride)`` with ``stride = (size - 1) / (count - 1)``. ``round`` is Python's
      (half to even) and the position is accumulated by repeated addition of the stride, as in the reference.

    Returns the kept timesteps, sorted ascending (the reference returns a ``set``; SpacedDiffusion iterates
    it in ascending order).
    """
    T = _check_num_timesteps(num_timesteps)
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            try:
                desired = int(section_counts[len("ddim") :])
            except ValueError:
                raise ValueError(f"bad respacing {section_counts!r}: expected 'ddimN' with an integer N") from None
            for stride in range(1, T):
                if len(range(0, T, stride)) == desired:
                    return list(range(0, T, stride))
            raise ValueError(f"cannot create exactly {desired} steps with an integer stride from {T} steps")
        try:
            counts = [int(c) for c in section_counts.split(",")]
        except ValueError:
            raise ValueError(
                f"bad respacing {section_counts!r}: expected e.g. '25', '10,15,20' or 'ddim50'"
            ) from None
    else:
        counts = [int(c) for c in section_counts]
    if not counts or any(c < 1 for c in counts):
        raise ValueError(f"respacing section counts must be positive integers, got {counts}")

    size_per, extra = divmod(T, len(counts))
    kept: set[int] = set()
    start = 0
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise ValueError(f"cannot take {count} steps from a section of {size} steps (respacing {section_counts!r})")
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        position = 0.0
        for _ in range(count):
            kept.add(start + round(position))
            position += stride
        start += size
    return sorted(kept)


def respace_betas(alphas_cumprod: np.ndarray, use_timesteps: Iterable[int]) -> tuple[np.ndarray, list[int]]:
    """Betas of the chain that visits only ``use_timesteps`` (ADM ``SpacedDiffusion``).

    ``beta_k = 1 - abar[t_k] / abar[t_{k-1}]`` with ``abar[t_{-1}] = 1``, in float64. Returns
    ``(betas, timestep_map)`` where ``timestep_map[k] = t_k`` is the original timestep that the model
    receives at respaced index k.
    """
    alphas_cumprod = np.asarray(alphas_cumprod, dtype=np.float64)
    keep = set(int(t) for t in use_timesteps)
    bad = sorted(t for t in keep if not 0 <= t < len(alphas_cumprod))
    if bad:
        raise ValueError(f"timesteps {bad[:5]} are outside [0, {len(alphas_cumprod)})")
    betas, timestep_map = [], []
    last = 1.0
    for t, abar in enumerate(alphas_cumprod):
        if t in keep:
            betas.append(1 - abar / last)
            last = abar
            timestep_map.append(t)
    return np.array(betas, dtype=np.float64), timestep_map
