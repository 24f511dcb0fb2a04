"""Shared diffusion / flow sampling machinery for the diffusion and flow baselines.

* :mod:`.schedules`: beta schedules (ADM linear/cosine, LDM scaled-linear) and ADM timestep respacing;
* :mod:`.gaussian`: ADM/DiT ``GaussianDiffusion`` (DDPM and DDIM loops, learned-range variance, hybrid loss);
* :mod:`.ddim_compvis`: the CompVis/LDM ``DDIMSampler`` with its schedule quirks;
* :mod:`.flow`: SD3 rectified flow (shifted sigmas, Euler, DPM++(2M), latent format, training terms);
* :mod:`.guidance`: the suite's classifier-free guidance convention ``uncond + w (cond - uncond)``;
* :mod:`.noise`: injectable per-step noise (recorded tensors or per-sample ``torch.Generator`` draws).

Each is checked step by step against the official code's trajectories in ``tests/parity/test_samplers.py``.
"""

from cgmbench.diffusion.ddim_compvis import DDIMSampler, make_ddim_sampling_parameters, make_ddim_timesteps
from cgmbench.diffusion.flow import (
    CFGDenoiser,
    ModelSamplingDiscreteFlow,
    SD3LatentFormat,
    apply_flow_model,
    get_sigmas,
    rectified_flow_interpolate,
    rectified_flow_loss,
    rectified_flow_target,
    sample_dpmpp_2m,
    sample_euler,
    sample_logit_normal_sigmas,
)
from cgmbench.diffusion.gaussian import GaussianDiffusion, create_diffusion, discretized_gaussian_log_likelihood, normal_kl
from cgmbench.diffusion.guidance import apply_guidance, cfg_model, from_ho_salimans, needs_unconditional, to_ho_salimans
from cgmbench.diffusion.noise import NoiseSource, PerSampleNoise, draw_noise, per_sample_noise
from cgmbench.diffusion.schedules import (
    alphas_cumprod_from_betas,
    cosine_beta_schedule,
    get_named_beta_schedule,
    ldm_alphas_cumprod,
    linear_beta_schedule,
    respace_betas,
    scaled_linear_beta_schedule,
    space_timesteps,
)

__all__ = [
    # schedules
    "linear_beta_schedule", "cosine_beta_schedule", "scaled_linear_beta_schedule", "get_named_beta_schedule",
    "alphas_cumprod_from_betas", "ldm_alphas_cumprod", "space_timesteps", "respace_betas",
    # gaussian (ADM / DiT)
    "GaussianDiffusion", "create_diffusion", "normal_kl", "discretized_gaussian_log_likelihood",
    # CompVis DDIM
    "DDIMSampler", "make_ddim_timesteps", "make_ddim_sampling_parameters",
    # SD3 flow
    "ModelSamplingDiscreteFlow", "get_sigmas", "apply_flow_model", "CFGDenoiser", "sample_euler",
    "sample_dpmpp_2m", "SD3LatentFormat", "sample_logit_normal_sigmas", "rectified_flow_interpolate",
    "rectified_flow_target", "rectified_flow_loss",
    # guidance
    "apply_guidance", "from_ho_salimans", "to_ho_salimans", "needs_unconditional", "cfg_model",
    # noise
    "NoiseSource", "PerSampleNoise", "per_sample_noise", "draw_noise",
]
