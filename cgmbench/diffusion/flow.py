"""Rectified-flow sampling and training terms as in Stable Diffusion 3 / 3.5.

Paper: Esser et al. 2024, "Scaling Rectified Flow Transformers for High-Resolution Image Synthesis" (SD3).
Reference code: Stability-AI/sd3.5 (commit fbf8f48) ``sd3_impls.py`` (``ModelSamplingDiscreteFlow``,
``BaseModel.apply_model``, ``CFGDenoiser``, ``sample_euler``, ``sample_dpmpp_2m``, ``SD3LatentFormat``) and
``sd3_infer.py`` (``get_sigmas``, ``get_noise``); an independent implementation checked against that code's
recorded trajectories.

Conventions
-----------
* Forward process: ``x_sigma = (1 - sigma) x0 + sigma noise``, sigma in [0, 1]. The network predicts the
  velocity ``v ~ noise - x0``; the denoised prediction is ``x0_hat = x - v * sigma``.
* Timestep: the network receives ``t = sigma * 1000`` as float32 (not an integer).
* Shift: ``sigma(t) = shift * (t/1000) / (1 + (shift - 1) * t/1000)`` (identity for shift 1). SD3.5 uses 3.0;
  the sd3.5 repo's sd3_medium config uses 1.0.
* :func:`get_sigmas` reproduces the reference's quirk: the linspace runs in *timestep* space from
  ``1000 sigma(1000) = 1000`` to ``1000 sigma(1)`` and every value goes through ``sigma()`` again, so the last
  non-zero sigma for shift 3 and 10 steps is ``sigma(2.994) = 0.00893``, not ``sigma_min = 0.00299``.
  A final 0 is appended. ``sigmas[0] == 1`` exactly, so the initial latent is the noise itself.
* Samplers are deterministic (Euler, DPM-Solver++(2M)); all arithmetic float32 on 0-d sigma tensors.
* CFG (:class:`CFGDenoiser`) runs one doubled batch ``[cond, uncond]`` and guides the denoised prediction,
  ``neg + (pos - neg) * w``; ``cfg_scale`` is the suite's guidance scale ``w``
  (:mod:`cgmbench.diffusion.guidance`).
* SD3 latent format: ``process_in(z) = (z - 0.0609) * 1.5305`` (VAE latent -> model space),
  ``process_out(z) = z / 1.5305 + 0.0609``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

__all__ = [
    "ModelSamplingDiscreteFlow",
    "get_sigmas",
    "apply_flow_model",
    "CFGDenoiser",
    "sample_euler",
    "sample_dpmpp_2m",
    "SD3LatentFormat",
    "sample_logit_normal_sigmas",
    "rectified_flow_interpolate",
    "rectified_flow_target",
    "rectified_flow_loss",
]


class ModelSamplingDiscreteFlow(torch.nn.Module):
    """Sigma <-> timestep maps of SD3's discrete flow with a time ``shift``.

    ``self.sigmas`` is ``sigma(t)`` for the 1000 training timesteps ``t = 1 .. 1000`` (float32), so
    ``sigma_min = sigma(1)`` and ``sigma_max = sigma(1000) = 1``.
    """

    def __init__(self, shift: float = 1.0, num_timesteps: int = 1000):
        super().__init__()
        if not shift > 0:
            raise ValueError(f"shift must be positive, got {shift}")
        self.shift = float(shift)
        self.num_timesteps = int(num_timesteps)
        self.register_buffer("sigmas", self.sigma(torch.arange(1, self.num_timesteps + 1, 1)), persistent=False)

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The network's timestep ``sigma * 1000``."""
        return sigma * 1000

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        """``shift * s / (1 + (shift - 1) * s)`` with ``s = timestep / 1000``."""
        s = timestep / 1000.0
        if self.shift == 1.0:
            return s
        return self.shift * s / (1 + (self.shift - 1) * s)

    def calculate_denoised(
        self, sigma: torch.Tensor, model_output: torch.Tensor, model_input: torch.Tensor
    ) -> torch.Tensor:
        """``x0_hat = x - v * sigma`` (sigma: ``(N,)``)."""
        sigma = sigma.view(sigma.shape[:1] + (1,) * (model_output.ndim - 1))
        return model_input - model_output * sigma

    def noise_scaling(
        self, sigma, noise: torch.Tensor, latent_image: torch.Tensor, max_denoise: bool = False
    ) -> torch.Tensor:
        """``sigma * noise + (1 - sigma) * latent`` (the start point for img2img; equals noise at sigma = 1)."""
        return sigma * noise + (1.0 - sigma) * latent_image


def get_sigmas(model_sampling: ModelSamplingDiscreteFlow | float, steps: int) -> torch.Tensor:
    """``steps + 1`` float32 sigmas, from 1 down to ``sigma(1000 * sigma_min)``, then 0 (reference quirk kept).

    ``model_sampling`` may be a :class:`ModelSamplingDiscreteFlow` or just its shift.
    """
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    ms = model_sampling
    if not isinstance(ms, ModelSamplingDiscreteFlow):
        ms = ModelSamplingDiscreteFlow(shift=float(ms))
    start = ms.timestep(ms.sigma_max)
    end = ms.timestep(ms.sigma_min)
    timesteps = torch.linspace(start, end, int(steps))
    values = [float(ms.sigma(ts)) for ts in timesteps] + [0.0]
    return torch.tensor(values, dtype=torch.float32)


def apply_flow_model(
    model: Callable, model_sampling: ModelSamplingDiscreteFlow, x: torch.Tensor, sigma: torch.Tensor, **cond: Any
) -> torch.Tensor:
    """SD3 ``BaseModel.apply_model``: ``v = model(x, sigma * 1000, **cond)``; returns ``x - v * sigma``.

    ``sigma`` has shape ``(N,)``; ``cond`` are the network's keyword inputs (``context=``, ``y=`` for MM-DiT).
    """
    timestep = model_sampling.timestep(sigma).float()
    v = model(x, timestep, **cond).float()
    if v.shape != x.shape:
        raise ValueError(f"the flow model must return a velocity of shape {tuple(x.shape)}, got {tuple(v.shape)}")
    return model_sampling.calculate_denoised(sigma, v, x)


class CFGDenoiser:
    """Denoiser ``(x, sigma) -> x0_hat`` with classifier-free guidance on the denoised prediction.

    ``cond`` and ``uncond`` are dicts of the network's keyword inputs (e.g. ``{"context": ..., "y": ...}``), each
    batched like ``x``. One network call on ``[cond, uncond]`` (cond first, as the reference); the result is
    ``uncond + cfg_scale * (cond - uncond)``. With ``cfg_scale == 1`` or ``uncond is None`` only the conditional
    pass runs.
    """

    def __init__(self, model: Callable, model_sampling: ModelSamplingDiscreteFlow):
        self.model = model
        self.model_sampling = model_sampling

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: Mapping[str, torch.Tensor],
                 uncond: Mapping[str, torch.Tensor] | None = None, cond_scale: float = 1.0) -> torch.Tensor:
        if uncond is None or cond_scale == 1.0:
            return apply_flow_model(self.model, self.model_sampling, x, sigma, **cond)
        if set(cond) != set(uncond):
            raise ValueError(f"cond and uncond must have the same keys, got {sorted(cond)} and {sorted(uncond)}")
        batched = {k: torch.cat([cond[k], uncond[k]]) for k in cond}
        pos, neg = apply_flow_model(
            self.model, self.model_sampling, torch.cat([x, x]), torch.cat([sigma, sigma]), **batched
        ).chunk(2)
        return neg + (pos - neg) * cond_scale


def _check_sigmas(x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    sigmas = torch.as_tensor(sigmas)
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError(f"sigmas must be a 1-D tensor with at least 2 entries, got shape {tuple(sigmas.shape)}")
    return sigmas.to(x.device)


@torch.no_grad()
def sample_euler(denoiser: Callable, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                 callback: Callable | None = None) -> torch.Tensor:
    """Euler on the probability-flow ODE: ``x += (x - x0_hat) / sigma_i * (sigma_{i+1} - sigma_i)``.

    ``denoiser(x, sigma_batch, **extra_args) -> x0_hat``; ``callback(i, x_after_step, denoised)``.
    """
    sigmas = _check_sigmas(x, sigmas)
    extra_args = extra_args or {}
    ones = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma = sigmas[i]
        denoised = denoiser(x, sigma * ones, **extra_args)
        d = (x - denoised) / sigma
        x = x + d * (sigmas[i + 1] - sigma)
        if callback is not None:
            callback(i, x, denoised)
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoiser: Callable, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                    callback: Callable | None = None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022), in the log-SNR-like time ``t = -log(sigma)``.

    First order on the first step and on a step to sigma = 0 (which returns the denoised prediction exactly);
    otherwise the denoised predictions of this and the previous step are combined with ``r = h_last / h``:
    ``D = (1 + 1/(2r)) x0_i - 1/(2r) x0_{i-1}``, ``x = (sigma_{i+1}/sigma_i) x - expm1(-h) D``.
    """
    sigmas = _check_sigmas(x, sigmas)
    extra_args = extra_args or {}
    ones = x.new_ones([x.shape[0]])

    def t_of(sigma):
        return sigma.log().neg()

    def sigma_of(t):
        return t.neg().exp()

    old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = denoiser(x, sigmas[i] * ones, **extra_args)
        t, t_next = t_of(sigmas[i]), t_of(sigmas[i + 1])
        h = t_next - t
        if old_denoised is None or sigmas[i + 1] == 0:
            x = (sigma_of(t_next) / sigma_of(t)) * x - (-h).expm1() * denoised
        else:
            r = (t - t_of(sigmas[i - 1])) / h
            d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sigma_of(t_next) / sigma_of(t)) * x - (-h).expm1() * d
        old_denoised = denoised
        if callback is not None:
            callback(i, x, denoised)
    return x


class SD3LatentFormat:
    """SD3 VAE latent normalisation: ``process_in = (z - shift_factor) * scale_factor``, ``process_out`` inverts it."""

    scale_factor = 1.5305
    shift_factor = 0.0609

    def process_in(self, latent: torch.Tensor) -> torch.Tensor:
        return (latent - self.shift_factor) * self.scale_factor

    def process_out(self, latent: torch.Tensor) -> torch.Tensor:
        return (latent / self.scale_factor) + self.shift_factor


# ---------------------------------------------------------------------------- training
def sample_logit_normal_sigmas(batch_size: int, *, m: float = 0.0, s: float = 1.0,
                               generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Training sigmas ``sigmoid(u)``, ``u ~ N(m, s^2)`` (SD3 paper, sec. 3.1 "logit-normal"; best m=0, s=1).

    Shape ``(batch_size,)``, float32, in (0, 1).
    """
    if s <= 0:
        raise ValueError(f"the logit-normal scale s must be positive, got {s}")
    u = torch.randn(batch_size, generator=generator, device=device) * s + m
    return torch.sigmoid(u)


def rectified_flow_interpolate(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``x_sigma = (1 - sigma) x0 + sigma noise`` with ``sigma`` of shape ``(N,)``."""
    if x0.shape != noise.shape:
        raise ValueError(f"x0 shape {tuple(x0.shape)} differs from noise shape {tuple(noise.shape)}")
    s = sigma.view(-1, *([1] * (x0.ndim - 1)))
    return (1 - s) * x0 + s * noise


def rectified_flow_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The velocity target ``d x_sigma / d sigma = noise - x0``."""
    return noise - x0


def rectified_flow_loss(model: Callable, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor | None = None,
                        **cond: Any) -> torch.Tensor:
    """Per-sample ``mean((v_theta(x_sigma, 1000 sigma) - (noise - x0))^2)`` (conditional flow matching)."""
    if noise is None:
        noise = torch.randn_like(x0)
    x_t = rectified_flow_interpolate(x0, noise, sigma)
    v = model(x_t, sigma * 1000, **cond)
    err = (v.float() - rectified_flow_target(x0, noise)) ** 2
    return err.mean(dim=tuple(range(1, err.ndim)))
