"""Gaussian diffusion as in ADM / improved DDPM / DiT (``GaussianDiffusion`` + ``SpacedDiffusion``).

Papers: Ho et al. 2020 (DDPM), Nichol & Dhariwal 2021 (improved DDPM: learned-range variance, hybrid loss,
respacing), Song et al. 2021 (DDIM), Peebles & Xie 2023 (DiT, which reuses the ADM code). The reference is
``facebookresearch/DiT`` ``diffusion/`` (commit ed81ce2), itself a trimmed openai/guided-diffusion; this is an
independent implementation of the same equations, checked step by step against that code's recorded
trajectories (``tests/parity/test_samplers.py``).

Conventions
-----------
* Images/latents ``x``: float32 ``(N, C, ...)``. Respaced step index ``k = 0 .. S-1`` (``S = num_timesteps``);
  the model always receives the **original** integer timestep ``timestep_map[k]`` (int64, shape ``(N,)``);
  there is no ``1000 / S`` rescaling (DiT comments ``rescale_timesteps`` out).
* Coefficient tables are float64 numpy arrays (``self.betas``, ``self.alphas_cumprod``, ...); at use one
  entry per sample is taken and cast to float32 (ADM ``_extract_into_tensor(...).float()``), all state
  arithmetic is float32.
* Model output: ``eps`` (``model_mean_type="epsilon"``) or ``x0`` (``"start_x"``); with a learned variance
  (``model_var_type="learned_range"``, DiT's default) it is ``cat([eps, v], dim=1)`` with ``2C`` channels and
  ``log var = frac * log(beta_k) + (1 - frac) * posterior_log_variance_clipped[k]``, ``frac = (v + 1) / 2``
  (``v`` is *not* clipped to [-1, 1], so ``frac`` may extrapolate, as in the reference).
* ``posterior_log_variance_clipped[0]`` is replaced by the value at index 1 (the posterior variance is 0 at
  k = 0), as in the reference.
* Noise: ``noise`` is the initial ``x_T``; ``step_noise`` is a noise source (:mod:`cgmbench.diffusion.noise`):
  a ``noise_fn(step_index, shape)``, a per-step list/tensor, or ``None``. One draw is made every step, also at
  the last step (where DDPM masks it with ``k != 0``) and in DDIM with ``eta = 0`` (multiplied by 0).

Classifier-free guidance is not part of the diffusion: wrap the model with
:func:`cgmbench.diffusion.guidance.cfg_model` (or the baseline's own ``forward_with_cfg``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from cgmbench.diffusion.noise import NoiseSource, draw_noise
from cgmbench.diffusion.schedules import alphas_cumprod_from_betas, get_named_beta_schedule, respace_betas, space_timesteps

__all__ = ["GaussianDiffusion", "create_diffusion", "normal_kl", "discretized_gaussian_log_likelihood"]

MEAN_TYPES = ("epsilon", "start_x")
VAR_TYPES = ("learned_range", "learned", "fixed_small", "fixed_large")
LOSS_TYPES = ("mse", "rescaled_mse")


def _mean_flat(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=tuple(range(1, x.ndim)))


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise, in nats."""
    return 0.5 * (
        -1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2)
    )


def _approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    # tanh approximation of Phi (Page 1977), as used by ADM
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, *, means: torch.Tensor, log_scales: torch.Tensor
) -> torch.Tensor:
    """Log-likelihood (nats) of data ``x`` in [-1, 1] quantised to 256 bins under N(means, e^(2 log_scales)).

    The two outermost bins extend to -inf / +inf (DDPM decoder L_0).
    """
    if x.shape != means.shape or x.shape != log_scales.shape:
        raise ValueError(
            f"shapes differ: x {tuple(x.shape)}, means {tuple(means.shape)}, log_scales {tuple(log_scales.shape)}"
        )
    centered = x - means
    inv_std = torch.exp(-log_scales)
    cdf_plus = _approx_standard_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = _approx_standard_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


class GaussianDiffusion:
    """DDPM/DDIM sampling and training terms for a (possibly respaced) discrete Gaussian diffusion.

    Args:
        betas: float64 betas of the chain actually sampled (already respaced, see :func:`create_diffusion`).
        model_mean_type: ``"epsilon"`` (model predicts the noise) or ``"start_x"`` (predicts x0).
        model_var_type: ``"learned_range"`` (DiT), ``"learned"`` (log-variance), ``"fixed_small"``
            (posterior variance) or ``"fixed_large"`` (betas, with the first entry = posterior variance[1]).
        loss_type: ``"mse"`` (DiT) or ``"rescaled_mse"`` (the VLB term scaled by ``num_timesteps / 1000``).
        timestep_map: original timestep of each respaced index; the model receives ``timestep_map[k]``.
            Default ``range(len(betas))``.
    """

    def __init__(
        self,
        betas: Sequence[float] | np.ndarray,
        *,
        model_mean_type: str = "epsilon",
        model_var_type: str = "learned_range",
        loss_type: str = "mse",
        timestep_map: Sequence[int] | None = None,
    ):
        if model_mean_type not in MEAN_TYPES:
            raise ValueError(f"model_mean_type must be one of {MEAN_TYPES}, got {model_mean_type!r}")
        if model_var_type not in VAR_TYPES:
            raise ValueError(f"model_var_type must be one of {VAR_TYPES}, got {model_var_type!r}")
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
        self.model_mean_type = model_mean_type
        self.model_var_type = model_var_type
        self.loss_type = loss_type

        betas = np.asarray(betas, dtype=np.float64)
        self.betas = betas
        self.num_timesteps = len(betas)
        if timestep_map is None:
            timestep_map = list(range(self.num_timesteps))
        if len(timestep_map) != self.num_timesteps:
            raise ValueError(f"timestep_map has {len(timestep_map)} entries for {self.num_timesteps} betas")
        self.timestep_map = torch.tensor(list(timestep_map), dtype=torch.int64)

        # q(x_t | x_0) and its inverses (float64)
        self.alphas_cumprod = alphas_cumprod_from_betas(betas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.alphas_cumprod_next = np.append(self.alphas_cumprod[1:], 0.0)
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.log_one_minus_alphas_cumprod = np.log(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)

        # q(x_{t-1} | x_t, x_0) = N(coef1 x_0 + coef2 x_t, posterior_variance)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        if self.num_timesteps > 1:
            self.posterior_log_variance_clipped = np.log(
                np.append(self.posterior_variance[1], self.posterior_variance[1:])
            )
        else:
            self.posterior_log_variance_clipped = np.array([], dtype=np.float64)
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (
            (1.0 - self.alphas_cumprod_prev) * np.sqrt(1.0 - betas) / (1.0 - self.alphas_cumprod)
        )

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _extract(table: np.ndarray, t: torch.Tensor, ndim: int) -> torch.Tensor:
        """``table[t]`` as float32, shaped ``(N, 1, ..., 1)`` to broadcast over an ``ndim``-d batch."""
        values = torch.from_numpy(np.asarray(table)).to(t.device)[t].float()
        return values.view(-1, *([1] * (ndim - 1)))

    def _model_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """The original timestep the model receives for respaced index ``t`` (ADM ``_WrappedModel``)."""
        return self.timestep_map.to(t.device)[t]

    def _call_model(self, model: Callable, x: torch.Tensor, t: torch.Tensor, model_kwargs: dict | None):
        out = model(x, self._model_timesteps(t), **(model_kwargs or {}))
        if isinstance(out, tuple):  # (output, extra), as the reference allows
            out = out[0]
        return out

    def _check_t(self, t: torch.Tensor, x: torch.Tensor) -> None:
        if t.ndim != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"t must have shape ({x.shape[0]},), got {tuple(t.shape)}")

    # ------------------------------------------------------------------ forward process
    def q_sample(self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Draw ``x_t ~ q(x_t | x_0) = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise`` (t: respaced index, (N,))."""
        self._check_t(t, x_start)
        if noise is None:
            noise = torch.randn_like(x_start)
        if noise.shape != x_start.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} differs from x_start shape {tuple(x_start.shape)}")
        n = x_start.ndim
        return self._extract(self.sqrt_alphas_cumprod, t, n) * x_start + self._extract(
            self.sqrt_one_minus_alphas_cumprod, t, n
        ) * noise

    def q_posterior_mean_variance(self, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """Mean, variance and clipped log-variance of ``q(x_{t-1} | x_t, x_0)``."""
        n = x_t.ndim
        coef1 = self._extract(self.posterior_mean_coef1, t, n)
        coef2 = self._extract(self.posterior_mean_coef2, t, n)
        mean = coef1 * x_start + coef2 * x_t
        variance = self._extract(self.posterior_variance, t, n)
        return mean, variance, self._extract(self.posterior_log_variance_clipped, t, n)

    def _predict_xstart_from_eps(self, x_t, t, eps):
        n = x_t.ndim
        recip = self._extract(self.sqrt_recip_alphas_cumprod, t, n)
        recipm1 = self._extract(self.sqrt_recipm1_alphas_cumprod, t, n)
        return recip * x_t - recipm1 * eps

    def _predict_eps_from_xstart(self, x_t, t, pred_xstart):
        n = x_t.ndim
        return (self._extract(self.sqrt_recip_alphas_cumprod, t, n) * x_t - pred_xstart) / self._extract(
            self.sqrt_recipm1_alphas_cumprod, t, n
        )

    # ------------------------------------------------------------------ reverse process
    def p_mean_variance(
        self,
        model: Callable,
        x: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = True,
        denoised_fn: Callable | None = None,
        model_kwargs: dict | None = None,
        model_output: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``p(x_{t-1} | x_t)``: dict with ``mean``, ``variance``, ``log_variance``, ``pred_xstart``, ``model_output``.

        ``pred_xstart`` is passed through ``denoised_fn`` and then clamped to [-1, 1] when ``clip_denoised``.
        ``model_output`` may be given to skip the model call (used by the VLB term).
        """
        self._check_t(t, x)
        n = x.ndim
        C = x.shape[1]
        if model_output is None:
            model_output = self._call_model(model, x, t, model_kwargs)
        if self.model_var_type in ("learned", "learned_range"):
            expected = (x.shape[0], 2 * C, *x.shape[2:])
            if tuple(model_output.shape) != expected:
                raise ValueError(
                    f"with a learned variance the model must return cat([eps, v]) of shape {expected}, "
                    f"got {tuple(model_output.shape)}"
                )
            model_output, var_values = torch.split(model_output, C, dim=1)
            if self.model_var_type == "learned":
                log_variance = var_values
            else:
                min_log = self._extract(self.posterior_log_variance_clipped, t, n)
                max_log = self._extract(np.log(self.betas), t, n)
                frac = (var_values + 1) / 2
                log_variance = frac * max_log + (1 - frac) * min_log
            variance = torch.exp(log_variance)
        else:
            if tuple(model_output.shape) != tuple(x.shape):
                raise ValueError(f"the model must return shape {tuple(x.shape)}, got {tuple(model_output.shape)}")
            if self.model_var_type == "fixed_large":
                var_table = np.append(self.posterior_variance[1], self.betas[1:])
                log_table = np.log(var_table)
            else:
                var_table, log_table = self.posterior_variance, self.posterior_log_variance_clipped
            variance = self._extract(var_table, t, n).expand(x.shape)
            log_variance = self._extract(log_table, t, n).expand(x.shape)

        if self.model_mean_type == "start_x":
            pred_xstart = model_output
        else:
            pred_xstart = self._predict_xstart_from_eps(x, t, model_output)
        if denoised_fn is not None:
            pred_xstart = denoised_fn(pred_xstart)
        if clip_denoised:
            pred_xstart = pred_xstart.clamp(-1, 1)
        mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        return {
            "mean": mean,
            "variance": variance,
            "log_variance": log_variance,
            "pred_xstart": pred_xstart,
            "model_output": model_output,
        }

    def p_sample(self, model, x, t, noise: torch.Tensor, clip_denoised=True, denoised_fn=None, model_kwargs=None):
        """One ancestral step ``x_{t-1} = mean + [t != 0] exp(log_var / 2) noise``.

        Returns a dict with ``sample`` and ``pred_xstart``.
        """
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        nonzero = (t != 0).float().view(-1, *([1] * (x.ndim - 1)))
        sample = out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * noise
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def ddim_sample(
        self, model, x, t, noise: torch.Tensor, clip_denoised=True, denoised_fn=None, model_kwargs=None, eta=0.0
    ):
        """One DDIM step (Song et al. 2021, eq. 12) with ``sigma = eta sqrt((1-abar')/(1-abar)) sqrt(1-abar/abar')``.

        As in the reference, eps is re-derived from the (possibly clamped) x0 and ``abar' = 1`` at k = 0.
        """
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        eps = self._predict_eps_from_xstart(x, t, out["pred_xstart"])
        n = x.ndim
        alpha_bar = self._extract(self.alphas_cumprod, t, n)
        alpha_bar_prev = self._extract(self.alphas_cumprod_prev, t, n)
        sigma = eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) * torch.sqrt(1 - alpha_bar / alpha_bar_prev)
        mean_pred = out["pred_xstart"] * torch.sqrt(alpha_bar_prev) + torch.sqrt(1 - alpha_bar_prev - sigma**2) * eps
        nonzero = (t != 0).float().view(-1, *([1] * (n - 1)))
        return {"sample": mean_pred + nonzero * sigma * noise, "pred_xstart": out["pred_xstart"]}

    def _loop(self, step, model, shape, noise, step_noise, device, progress, **kw) -> Iterator[dict[str, Any]]:
        if noise is not None:
            if tuple(noise.shape) != tuple(shape):
                raise ValueError(f"initial noise has shape {tuple(noise.shape)}, expected {tuple(shape)}")
            x = noise.to(device) if device is not None else noise
        else:
            x = torch.randn(*shape, device=device)
        indices = list(range(self.num_timesteps))[::-1]
        if progress:
            from tqdm.auto import tqdm

            indices = tqdm(indices)
        for i, k in enumerate(indices):
            t = torch.full((shape[0],), k, dtype=torch.int64, device=x.device)
            with torch.no_grad():
                out = step(model, x, t, draw_noise(step_noise, i, x), **kw)
            x = out["sample"]
            yield {"sample": x, "pred_xstart": out["pred_xstart"], "t": k, "model_t": int(self.timestep_map[k])}

    def p_sample_loop_progressive(
        self, model, shape, noise=None, clip_denoised=True, denoised_fn=None, model_kwargs=None,
        device=None, progress=False, step_noise: NoiseSource = None,
    ) -> Iterator[dict[str, Any]]:
        """Ancestral sampling from ``x_T = noise``.

        Yields after each step a dict: ``sample``, ``pred_xstart``, ``t`` (respaced index) and ``model_t`` (the
        original timestep the model received).
        """
        return self._loop(self.p_sample, model, shape, noise, step_noise, device, progress,
                          clip_denoised=clip_denoised, denoised_fn=denoised_fn, model_kwargs=model_kwargs)

    def p_sample_loop(self, model, shape, noise=None, clip_denoised=True, denoised_fn=None, model_kwargs=None,
                      device=None, progress=False, step_noise: NoiseSource = None) -> torch.Tensor:
        """The final sample of :meth:`p_sample_loop_progressive` (note: ``clip_denoised`` defaults to True as in
        ADM; DiT's ``sample.py`` passes False)."""
        final = None
        for final in self.p_sample_loop_progressive(model, shape, noise, clip_denoised, denoised_fn, model_kwargs,
                                                    device, progress, step_noise):
            pass
        return final["sample"]

    def ddim_sample_loop_progressive(
        self, model, shape, noise=None, clip_denoised=True, denoised_fn=None, model_kwargs=None,
        device=None, progress=False, eta=0.0, step_noise: NoiseSource = None,
    ) -> Iterator[dict[str, Any]]:
        """DDIM sampling over the respaced steps; yields like :meth:`p_sample_loop_progressive`."""
        return self._loop(self.ddim_sample, model, shape, noise, step_noise, device, progress,
                          clip_denoised=clip_denoised, denoised_fn=denoised_fn, model_kwargs=model_kwargs, eta=eta)

    def ddim_sample_loop(self, model, shape, noise=None, clip_denoised=True, denoised_fn=None, model_kwargs=None,
                         device=None, progress=False, eta=0.0, step_noise: NoiseSource = None) -> torch.Tensor:
        final = None
        for final in self.ddim_sample_loop_progressive(model, shape, noise, clip_denoised, denoised_fn, model_kwargs,
                                                       device, progress, eta, step_noise):
            pass
        return final["sample"]

    # ------------------------------------------------------------------ training
    def _vb_terms_bpd(self, x_start, x_t, t, model_output, clip_denoised=False) -> torch.Tensor:
        """VLB term in bits/dim: KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) for t > 0, decoder NLL at t = 0."""
        true_mean, _, true_log_var = self.q_posterior_mean_variance(x_start, x_t, t)
        out = self.p_mean_variance(None, x_t, t, clip_denoised=clip_denoised, model_output=model_output)
        kl = _mean_flat(normal_kl(true_mean, true_log_var, out["mean"], out["log_variance"])) / math.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x_start, means=out["mean"], log_scales=0.5 * out["log_variance"])
        nll = _mean_flat(nll) / math.log(2.0)
        return torch.where(t == 0, nll, kl)

    def training_losses(self, model, x_start, t, model_kwargs=None, noise=None) -> dict[str, torch.Tensor]:
        """Per-sample training loss at respaced index ``t``: dict ``loss``, ``mse`` and (learned variance) ``vb``.

        ``mse`` is ``mean((target - prediction)^2)`` with target = the noise (``epsilon``) or ``x_start``.
        With a learned variance, the "hybrid" loss of improved DDPM adds the VLB term ``vb`` (bits/dim) computed
        with the mean prediction detached, so ``vb`` trains only the variance; ``rescaled_mse`` multiplies it by
        ``num_timesteps / 1000``. DiT uses ``mse`` (no rescale).
        """
        self._check_t(t, x_start)
        if noise is None:
            noise = torch.randn_like(x_start)
        x_t = self.q_sample(x_start, t, noise)
        model_output = self._call_model(model, x_t, t, model_kwargs)
        terms: dict[str, torch.Tensor] = {}
        C = x_start.shape[1]
        if self.model_var_type in ("learned", "learned_range"):
            expected = (x_start.shape[0], 2 * C, *x_start.shape[2:])
            if tuple(model_output.shape) != expected:
                raise ValueError(
                    f"model must return cat([eps, v]) of shape {expected}, got {tuple(model_output.shape)}"
                )
            model_output, var_values = torch.split(model_output, C, dim=1)
            frozen = torch.cat([model_output.detach(), var_values], dim=1)
            terms["vb"] = self._vb_terms_bpd(x_start, x_t, t, frozen)
            if self.loss_type == "rescaled_mse":
                terms["vb"] = terms["vb"] * (self.num_timesteps / 1000.0)
        target = noise if self.model_mean_type == "epsilon" else x_start
        if model_output.shape != target.shape:
            raise ValueError(
                f"model output shape {tuple(model_output.shape)} differs from target {tuple(target.shape)}"
            )
        terms["mse"] = _mean_flat((target - model_output) ** 2)
        terms["loss"] = terms["mse"] + terms["vb"] if "vb" in terms else terms["mse"]
        return terms


def create_diffusion(
    timestep_respacing: str | Sequence[int] = "",
    noise_schedule: str = "linear",
    use_kl: bool = False,
    sigma_small: bool = False,
    predict_xstart: bool = False,
    learn_sigma: bool = True,
    rescale_learned_sigmas: bool = False,
    diffusion_steps: int = 1000,
) -> GaussianDiffusion:
    """DiT's ``create_diffusion``: the respaced diffusion with DiT's defaults (linear, learned range, 1000 steps).

    ``timestep_respacing`` ``""`` (or ``None``) keeps all ``diffusion_steps``; ``"250"``, ``"ddim50"`` etc. as in
    :func:`~cgmbench.diffusion.schedules.space_timesteps`. ``use_kl`` (the pure-VLB loss) is not implemented.
    """
    if use_kl:
        raise ValueError("use_kl=True (the KL-only loss) is not implemented; use the default hybrid MSE loss")
    betas = get_named_beta_schedule(noise_schedule, diffusion_steps)
    if not timestep_respacing:
        timestep_respacing = [diffusion_steps]
    use = space_timesteps(diffusion_steps, timestep_respacing)
    new_betas, timestep_map = respace_betas(alphas_cumprod_from_betas(betas), use)
    if learn_sigma:
        var_type = "learned_range"
    else:
        var_type = "fixed_small" if sigma_small else "fixed_large"
    return GaussianDiffusion(
        new_betas,
        model_mean_type="start_x" if predict_xstart else "epsilon",
        model_var_type=var_type,
        loss_type="rescaled_mse" if rescale_learned_sigmas else "mse",
        timestep_map=timestep_map,
    )
