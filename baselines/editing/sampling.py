"""DDIM from a noised source latent: SDEdit and training-free latent-blending inpainting.

Both reuse :class:`cgmbench.diffusion.DDIMSampler` (its CompVis schedule and its update ``_step``); only the
start and the blending are new here.

**Strength** (the diffusers ``StableDiffusionImg2ImgPipeline`` convention, ``get_timesteps``): with ``N`` DDIM
steps and strength ``s``, ``k = min(int(N s), N)`` steps run; the source latent ``z0`` is noised to the first of
them, the ``k``-th smallest DDIM timestep ``t_k`` (``z = sqrt(a_tk) z0 + sqrt(1 - a_tk) eps``), and DDIM runs
``t_k -> ... -> t_1 -> alphas_cumprod[0]``. ``s = 0`` returns ``z0`` unchanged; ``s = 1`` starts at the largest
timestep (951 of 1000 for N = 20), nearly pure noise. (CompVis' ``img2img.py`` noises to the index ``t_enc`` but
decodes from ``t_enc - 1``, one DDIM step apart; we follow diffusers, as recorded.)

**Latent blending** (``keep`` given, Avrahami et al.'s Blended Latent Diffusion without its final pixel blend):
after every step the latents outside the edit region are replaced by the source latent noised to the step's
target level with the same ``eps`` (``sqrt(a_prev) z0 + sqrt(1 - a_prev) eps``), and after the last step by
``z0`` itself, so only the masked region is generated, in context.

Randomness: ``eps`` and every step's noise come from the sample's own ``torch.Generator``.

**Rectified flow** (:func:`edit_flow`, SD3; the diffusers ``StableDiffusion3Img2ImgPipeline.get_timesteps``
convention, which differs from the img2img one above): with ``N`` steps, ``t_start = int(max(N - N s, 0))``, so
``ceil(N s)`` steps run where SD 1.x img2img runs ``floor(N s)`` (``N = 20, s = 0.33``: 7 against 6; any ``s > 0``
runs at least one); the source ``x0`` is mixed at ``sigma = sigmas[t_start]`` of the shared schedule
(:func:`cgmbench.diffusion.get_sigmas`), ``x = (1 - sigma) x0 + sigma eps`` (``scale_noise``), and the flow sampler
runs ``sigmas[t_start:]``. ``sigma`` is the schedule value nearest below ``s`` (equal to ``s`` only on the grid);
``s = 1`` starts from ``eps`` itself (plain text-to-image sampling), ``s = 0`` returns ``x0``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from cgmbench.diffusion import DDIMSampler, PerSampleNoise, per_sample_noise
from cgmbench.diffusion.noise import draw_noise

#: sources whose side is a multiple of this are edited at their own size by the latent editors and the tiny
#: inpainter (KL-f4 latents, one U-Net downsampling; convolutions, attention over positions)
FULLY_CONVOLUTIONAL_MULTIPLE = 8


def strength_steps(num_steps: int, strength: float) -> int:
    """How many DDIM steps run at ``strength`` (diffusers: ``min(int(N * strength), N)``)."""
    return min(int(num_steps * strength), num_steps)


@torch.no_grad()
def edit_ddim(apply_model: Callable, alphas_cumprod: torch.Tensor, z0: torch.Tensor, c: torch.Tensor,
              uc: torch.Tensor | None, generators: Sequence[torch.Generator], *, steps: int, strength: float,
              eta: float, guidance_scale: float, keep: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Edited latents ``[B, C, h, w]`` and ``{"steps_run", "start_t"}``.

    ``keep``: float ``[B, 1, h, w]``, 1 where the source latent is kept (latent blending), or None (SDEdit).
    ``uc``: the unconditional (negative-prompt) context, or None for ``guidance_scale = 1``.
    """
    sampler = DDIMSampler(apply_model, alphas_cumprod)
    sampler.make_schedule(steps, ddim_eta=eta)
    total = len(sampler.ddim_timesteps)
    k = strength_steps(total, strength)
    if k == 0:
        return z0.clone(), {"steps_run": 0, "start_t": None}
    eps = per_sample_noise(generators, tuple(z0.shape[1:]), device=z0.device)
    a = float(sampler.ddim_alphas[k - 1])
    x = a ** 0.5 * z0 + (1.0 - a) ** 0.5 * eps
    noise = PerSampleNoise(generators, device=z0.device)
    guided = uc is not None and guidance_scale != 1.0
    b = z0.shape[0]
    for i, index in enumerate(range(k - 1, -1, -1)):
        t = torch.full((b,), int(sampler.ddim_timesteps[index]), dtype=torch.int64, device=z0.device)
        if guided:
            e_u, e_c = apply_model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([uc, c])).chunk(2)
            e_t = e_u + guidance_scale * (e_c - e_u)
        else:
            e_t = apply_model(x, t, c)
        x, _ = sampler._step(x, e_t.float(), index, draw_noise(noise, i, x), 1.0)
        if keep is not None:
            a_prev = float(sampler.ddim_alphas_prev[index])
            background = a_prev ** 0.5 * z0 + (1.0 - a_prev) ** 0.5 * eps
            x = keep * background + (1.0 - keep) * x
    if keep is not None:
        x = keep * z0 + (1.0 - keep) * x
    return x, {"steps_run": k, "start_t": int(sampler.ddim_timesteps[k - 1])}


def flow_start_index(num_steps: int, strength: float) -> int:
    """``t_start`` of the flow edit (diffusers SD3 img2img): ``int(max(N - N * strength, 0))``."""
    return int(max(num_steps - num_steps * strength, 0))


@torch.no_grad()
def edit_flow(sampler: Callable, denoiser: Callable, x0: torch.Tensor, sigmas: torch.Tensor, eps: torch.Tensor,
              strength: float, extra_args: dict | None = None) -> tuple[torch.Tensor, dict]:
    """Edited samples and ``{"steps_run", "start_sigma"}``: ``x0`` mixed with ``eps`` at ``sigmas[t_start]``, then
    ``sampler(denoiser, x, sigmas[t_start:], extra_args)`` (:func:`cgmbench.diffusion.sample_euler` or
    :func:`~cgmbench.diffusion.sample_dpmpp_2m`). ``sigmas``: the ``N + 1`` values of the full schedule."""
    n = len(sigmas) - 1
    start = flow_start_index(n, strength)
    if start >= n:
        return x0.clone(), {"steps_run": 0, "start_sigma": None}
    sigma = sigmas[start].to(x0)
    x = (1.0 - sigma) * x0 + sigma * eps
    return sampler(denoiser, x, sigmas[start:], extra_args=extra_args), {"steps_run": n - start,
                                                                          "start_sigma": float(sigma)}
