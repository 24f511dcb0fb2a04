"""CompVis DDIM sampling shared by the text- and class-conditional LDM generators."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from cgmbench.diffusion import DDIMSampler, PerSampleNoise, per_sample_noise
from cgmbench.errors import CgmbenchError
from cgmbench.generator import to_uint8
from cgmbench.seeding import torch_generator

__all__ = [
]
def sample_compvis_ddim(gen, c: torch.Tensor, uc: torch.Tensor | None, seeds: Sequence[int], *, steps: int,
                       eta: float, guidance_scale: float, decode: Callable[[torch.Tensor], torch.Tensor]
                       ) -> torch.Tensor:
    """uint8 CPU images of a latent-diffusion generator ``gen`` (``apply_model``, ``alphas_cumprod``,
    ``latent_shape``, ``micro_batch``, ``device``, ``autocast``): CompVis DDIM from per-sample noise, conditioning
    ``c`` (``uc`` the unconditional one, or None at w = 1), ``gen.micro_batch`` samples at a time, each decoded by
    ``decode`` (float32 latents -> images in [-1, 1])."""
    images = []
    for lo in range(0, len(seeds), gen.micro_batch):
        hi = min(lo + gen.micro_batch, len(seeds))
        generators = [torch_generator(int(s)) for s in seeds[lo:hi]]
        x_T = per_sample_noise(generators, gen.latent_shape, device=gen.device)
        sampler = DDIMSampler(gen.apply_model, gen.alphas_cumprod)
        with gen.autocast():
            z, _ = sampler.sample(steps, hi - lo, gen.latent_shape, conditioning=c[lo:hi], eta=eta, x_T=x_T,
                                  unconditional_guidance_scale=guidance_scale,
                                  unconditional_conditioning=None if uc is None else uc[lo:hi],
                                  step_noise=PerSampleNoise(generators, device=gen.device), log_every_t=10**9)
            images.append(decode(z.float()))
    return to_uint8(torch.cat(images)).cpu()


def check_ddim_steps(alphas_cumprod: torch.Tensor, steps: int, eta: float) -> None:
    """A clear error for step counts the CompVis DDIM discretisation cannot use: ``range(0, T, T // S) + 1``
    overshoots ``T`` for some ``S`` (3, 9, 27, anything above T / 2, ...), as in the official sampler."""
    try:
        DDIMSampler(lambda *a: None, alphas_cumprod).make_schedule(steps, ddim_eta=eta)
    except ValueError as e:
        raise CgmbenchError(f"steps={steps} cannot be used with the CompVis DDIM discretisation: {e}",
                            "choose another step count, e.g. 250, 200, 100, 50, 25 or 20") from None


