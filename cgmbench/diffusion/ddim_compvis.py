"""The CompVis/LDM ``DDIMSampler`` (Stable Diffusion 1.x, latent-diffusion), re-implemented.

Reference: CompVis/stable-diffusion ``ldm/models/diffusion/ddim.py`` (commit 21f890f; latent-diffusion a506df5
has the same sampling code) and ``ldm/modules/diffusionmodules/util.py``. Paper: Song et al. 2021 (DDIM).
This module reproduces that sampler's numbers, including its quirks:

* **Timesteps** (``ddim_discretize="uniform"``): ``range(0, T, T // S) + 1``, e.g. ``[1, 51, ..., 951]`` for
  S = 20: the first model call is at t = 951 and the last at t = 1. When ``T % S != 0`` the sampler takes
  ``len(range(0, T, T // S))`` steps, which can exceed S (S = 7 takes 8 steps, ``[1, 143, ..., 995]``).
  ``"quad"``: ``int(linspace(0, sqrt(0.8 T), S) ** 2) + 1``.
* **Last step** goes to ``alphas_prev[0] = alphas_cumprod[0]`` (0.99915 for SD), not 1: the final sample
  keeps a little noise, and with ``eta > 0`` noise is added at the last step too.
* **Precision**: ``ddim_alphas`` and ``ddim_sqrt_one_minus_alphas`` are float32, ``ddim_alphas_prev`` is a
  float64 array of float32 values, ``ddim_sigmas`` is computed in float64 except ``1 / (1 - alphas)``, which the
  reference forms in float32; every table entry is used as a float32 scalar and all state arithmetic is float32.
* **Guidance**: one doubled batch ordered ``[uncond, cond]``; ``e = e_u + w (e_c - e_u)``. The unconditional
  pass is skipped when ``unconditional_conditioning is None`` or ``w == 1``. ``unconditional_guidance_scale``
  is the suite's guidance scale ``w`` (:mod:`cgmbench.diffusion.guidance`), no translation needed.

The model is ``apply_model(x, t, c) -> eps`` (``LatentDiffusion.apply_model``), ``t`` int64 ``(N,)``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from cgmbench.diffusion.noise import NoiseSource, draw_noise

__all__ = ["make_ddim_timesteps", "make_ddim_sampling_parameters", "DDIMSampler"]


def make_ddim_timesteps(ddim_discr_method: str, num_ddim_timesteps: int, num_ddpm_timesteps: int) -> np.ndarray:
    """DDPM timesteps visited by DDIM, ascending, int64, with the CompVis ``+1`` offset."""
    if not 1 <= num_ddim_timesteps <= num_ddpm_timesteps:
        raise ValueError(f"number of DDIM steps must be in [1, {num_ddpm_timesteps}], got {num_ddim_timesteps}")
    if ddim_discr_method == "uniform":
        stride = num_ddpm_timesteps // num_ddim_timesteps
        steps = np.asarray(list(range(0, num_ddpm_timesteps, stride)))
    elif ddim_discr_method == "quad":
        steps = ((np.linspace(0, np.sqrt(num_ddpm_timesteps * 0.8), num_ddim_timesteps)) ** 2).astype(int)
    else:
        raise ValueError(f"ddim_discretize must be 'uniform' or 'quad', got {ddim_discr_method!r}")
    return (steps + 1).astype(np.int64)


def make_ddim_sampling_parameters(alphas_cumprod: torch.Tensor, ddim_timesteps: np.ndarray, eta: float):
    """``(alphas, alphas_prev, sigmas)`` of the DDIM chain, in the reference's dtypes.

    ``alphas = abar[tau_i]`` (float32 tensor), ``alphas_prev = [abar[0]] + abar[tau_{i-1}]`` (float64 numpy array
    of float32 values), ``sigmas = eta sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))`` (float64 tensor, with
    ``1 / (1 - a)`` formed in float32).
    """
    abar = alphas_cumprod.detach().cpu()
    if abar.dtype != torch.float32:
        raise ValueError(f"alphas_cumprod must be the float32 buffer, got {abar.dtype}")
    alphas = abar[torch.from_numpy(np.asarray(ddim_timesteps))]
    alphas_prev = np.asarray([abar[0].item()] + abar[ddim_timesteps[:-1]].tolist(), dtype=np.float64)
    prev64 = torch.from_numpy(alphas_prev)
    # The reference divides a float64 numpy array by a float32 tensor; torch evaluates that as
    # ``(1 - alphas).reciprocal() * (1 - alphas_prev)``, i.e. the reciprocal is taken in float32 and the rest in
    # float64. We spell out the same operations so the table matches bit for bit.
    ratio = (1 - alphas).reciprocal() * (1 - prev64)
    sigmas = eta * torch.sqrt(ratio * (1 - alphas / prev64))
    return alphas, alphas_prev, sigmas


class DDIMSampler:
    """DDIM sampling of an eps-prediction model with the CompVis schedule quirks.

    Args:
        model: ``apply_model(x, t, c) -> eps``; a callable, or an object with an ``apply_model`` method.
        alphas_cumprod: the model's float32 ``alphas_cumprod`` buffer (length T, usually 1000), e.g.
            :func:`cgmbench.diffusion.schedules.ldm_alphas_cumprod`.
    """

    def __init__(self, model: Callable | Any, alphas_cumprod: torch.Tensor):
        self.apply_model = model.apply_model if hasattr(model, "apply_model") else model
        if not callable(self.apply_model):
            raise ValueError("model must be callable as model(x, t, c) or have an apply_model(x, t, c) method")
        alphas_cumprod = torch.as_tensor(alphas_cumprod)
        if alphas_cumprod.ndim != 1:
            raise ValueError(f"alphas_cumprod must be 1-D, got shape {tuple(alphas_cumprod.shape)}")
        self.alphas_cumprod = alphas_cumprod.float()
        self.ddpm_num_timesteps = len(alphas_cumprod)

    def make_schedule(self, ddim_num_steps: int, ddim_discretize: str = "uniform", ddim_eta: float = 0.0) -> None:
        """Compute ``ddim_timesteps``, ``ddim_alphas``, ``ddim_alphas_prev``, ``ddim_sigmas``,
        ``ddim_sqrt_one_minus_alphas`` (see the module docstring for their dtypes)."""
        self.ddim_timesteps = make_ddim_timesteps(ddim_discretize, ddim_num_steps, self.ddpm_num_timesteps)
        if self.ddim_timesteps.max() >= self.ddpm_num_timesteps:
            raise ValueError(
                f"DDIM timestep {int(self.ddim_timesteps.max())} is outside the {self.ddpm_num_timesteps}-step schedule"
            )
        alphas, alphas_prev, sigmas = make_ddim_sampling_parameters(self.alphas_cumprod, self.ddim_timesteps, ddim_eta)
        self.ddim_alphas = alphas
        self.ddim_alphas_prev = alphas_prev
        self.ddim_sigmas = sigmas
        # numpy's float32 sqrt, as the reference (torch's vectorised float32 sqrt can differ by one ulp)
        self.ddim_sqrt_one_minus_alphas = torch.from_numpy(np.sqrt((1.0 - alphas).numpy()))

    @torch.no_grad()
    def sample(
        self,
        S: int,
        batch_size: int,
        shape: tuple[int, ...],
        conditioning: Any = None,
        eta: float = 0.0,
        x_T: torch.Tensor | None = None,
        unconditional_guidance_scale: float = 1.0,
        unconditional_conditioning: Any = None,
        ddim_discretize: str = "uniform",
        log_every_t: int = 100,
        temperature: float = 1.0,
        step_noise: NoiseSource = None,
        device: torch.device | str | None = None,
        callback: Callable | None = None,
    ) -> tuple[torch.Tensor, dict[str, list]]:
        """Sample ``(batch_size, *shape)`` latents; returns ``(samples, intermediates)``.

        ``intermediates`` holds ``x_inter`` and ``pred_x0`` (index 0 = ``x_T``, then every ``log_every_t``-th
        step and the last one, as the reference) and ``model_t`` (the t the model received at each step).
        ``step_noise`` supplies the noise of each step (drawn every step, multiplied by ``sigma_t``, which is 0
        for ``eta = 0``). ``callback(i, x, pred_x0)`` is called after each step.
        """
        self.make_schedule(S, ddim_discretize=ddim_discretize, ddim_eta=eta)
        size = (batch_size, *shape)
        if x_T is None:
            x = torch.randn(size, device=device)
        else:
            if tuple(x_T.shape) != size:
                raise ValueError(f"x_T has shape {tuple(x_T.shape)}, expected {size}")
            x = x_T if device is None else x_T.to(device)
        guided = unconditional_conditioning is not None and unconditional_guidance_scale != 1.0

        timesteps = self.ddim_timesteps
        total = len(timesteps)
        intermediates: dict[str, list] = {"x_inter": [x], "pred_x0": [x], "model_t": []}
        for i, step in enumerate(np.flip(timesteps)):
            index = total - i - 1
            t = torch.full((batch_size,), int(step), dtype=torch.int64, device=x.device)
            if guided:
                e_u, e_c = self.apply_model(
                    torch.cat([x, x]), torch.cat([t, t]), _cat_conditioning(unconditional_conditioning, conditioning)
                ).chunk(2)
                e_t = e_u + unconditional_guidance_scale * (e_c - e_u)
                intermediates["model_t"].append(torch.cat([t, t]))
            else:
                e_t = self.apply_model(x, t, conditioning)
                intermediates["model_t"].append(t)
            x, pred_x0 = self._step(x, e_t, index, draw_noise(step_noise, i, x), temperature)
            if callback is not None:
                callback(i, x, pred_x0)
            if index % log_every_t == 0 or index == total - 1:
                intermediates["x_inter"].append(x)
                intermediates["pred_x0"].append(pred_x0)
        return x, intermediates

    @torch.no_grad()
    def invert(
        self,
        x0: torch.Tensor,
        S: int,
        conditioning: Any = None,
        unconditional_guidance_scale: float = 1.0,
        unconditional_conditioning: Any = None,
        ddim_discretize: str = "uniform",
    ) -> list[torch.Tensor]:
        """Deterministic DDIM inversion of the clean latents ``x0``: the ``S``-step schedule run upwards.

        Returns ``len(ddim_timesteps) + 1`` latents: ``[x0, x_1, ..., x_T]`` where ``x_{i+1}`` sits at the noise
        level ``ddim_alphas[i]`` (timestep ``ddim_timesteps[i]``) and ``x0`` at ``ddim_alphas_prev[0]`` (the level
        the sampler ends at). Step ``i`` is the exact inverse of :meth:`sample`'s step at ``index = i`` (``eta =
        0``) except that ``eps`` is evaluated at the *current* latent with the target timestep
        ``ddim_timesteps[i]`` (the usual approximation of DDIM inversion, as null-text inversion's ``ddim_loop``):
        ``x0_hat = (x - sqrt(1 - a_cur) e) / sqrt(a_cur)``, ``x_next = sqrt(a_next) x0_hat + sqrt(1 - a_next) e``.
        So ``sample(S, x_T=invert(...)[-1])`` with the same conditioning returns approximately ``x0``;
        ``inverted[index]`` is where the sampler should be after its step at ``index``.
        Guidance as :meth:`sample` (null-text inversion inverts with ``w = 1``).
        """
        self.make_schedule(S, ddim_discretize=ddim_discretize, ddim_eta=0.0)
        guided = unconditional_conditioning is not None and unconditional_guidance_scale != 1.0
        b = x0.shape[0]
        x = x0
        out = [x0]
        for i, step in enumerate(self.ddim_timesteps):
            t = torch.full((b,), int(step), dtype=torch.int64, device=x.device)
            if guided:
                e_u, e_c = self.apply_model(
                    torch.cat([x, x]), torch.cat([t, t]), _cat_conditioning(unconditional_conditioning, conditioning)
                ).chunk(2)
                e_t = e_u + unconditional_guidance_scale * (e_c - e_u)
            else:
                e_t = self.apply_model(x, t, conditioning)
            e_t = e_t.float()
            a_cur = float(self.ddim_alphas_prev[i])
            a_next = float(self.ddim_alphas[i])
            pred_x0 = (x - (1.0 - a_cur) ** 0.5 * e_t) / a_cur ** 0.5
            x = a_next ** 0.5 * pred_x0 + (1.0 - a_next) ** 0.5 * e_t
            out.append(x)
        return out

    def _step(self, x, e_t, index, noise, temperature):
        """``x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) e + sigma noise``, float32 scalars."""
        b = x.shape[0]

        def scalar(value) -> torch.Tensor:
            return torch.full((b, 1, 1, 1), float(value), dtype=torch.float32, device=x.device)

        a_t = scalar(self.ddim_alphas[index])
        a_prev = scalar(self.ddim_alphas_prev[index])
        sigma_t = scalar(self.ddim_sigmas[index])
        sqrt_one_minus_at = scalar(self.ddim_sqrt_one_minus_alphas[index])
        pred_x0 = (x - sqrt_one_minus_at * e_t) / a_t.sqrt()
        dir_xt = (1.0 - a_prev - sigma_t**2).sqrt() * e_t
        x_prev = a_prev.sqrt() * pred_x0 + dir_xt + sigma_t * noise * temperature
        return x_prev, pred_x0


def _cat_conditioning(uc: Any, c: Any) -> Any:
    """``cat([uc, c])`` for tensors, key by key for dicts of tensors/lists (the CompVis hybrid format)."""
    if isinstance(c, dict):
        if not isinstance(uc, dict) or set(uc) != set(c):
            raise ValueError("conditioning and unconditional_conditioning must be dicts with the same keys")
        out = {}
        for k in c:
            if isinstance(c[k], list):
                out[k] = [torch.cat([u, v]) for u, v in zip(uc[k], c[k])]
            else:
                out[k] = torch.cat([uc[k], c[k]])
        return out
    if not isinstance(c, torch.Tensor) or not isinstance(uc, torch.Tensor):
        raise ValueError("guidance needs tensor (or dict of tensors) conditioning and unconditional_conditioning")
    return torch.cat([uc, c])
