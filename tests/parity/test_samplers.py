"""cgmbench.diffusion against the official samplers' recorded trajectories (fixtures README section 6).

Each fixture drove an official sampler (DiT/ADM GaussianDiffusion, CompVis DDIMSampler, SD3.5 flow samplers)
with a small toy network and recorded noise. The toys are rebuilt here from ``toy_model.formula`` and the
stored weights, the recorded noise is fed in, and every step is compared. Tolerances follow the README:
trajectories ``atol = rtol = 1e-4``, integer timesteps exact, float tables <= 1e-7.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from cgmbench.diffusion import (
    CFGDenoiser,
    DDIMSampler,
    ModelSamplingDiscreteFlow,
    PerSampleNoise,
    SD3LatentFormat,
    alphas_cumprod_from_betas,
    apply_guidance,
    cfg_model,
    create_diffusion,
    from_ho_salimans,
    get_sigmas,
    ldm_alphas_cumprod,
    linear_beta_schedule,
    needs_unconditional,
    per_sample_noise,
    rectified_flow_interpolate,
    rectified_flow_loss,
    rectified_flow_target,
    sample_dpmpp_2m,
    sample_euler,
    sample_logit_normal_sigmas,
    scaled_linear_beta_schedule,
    space_timesteps,
    to_ho_salimans,
)

TRAJ = dict(atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------------- fixtures
def _load(official_dir, name):
    folder = official_dir / "samplers"
    meta = json.loads((folder / f"{name}.json").read_text())
    weights = load_file(str(folder / f"{name}.weights.safetensors"))
    io = load_file(str(folder / f"{name}.io.safetensors"))
    return meta, weights, io


@pytest.fixture(scope="module")
def dit_fx(official_dir):
    return _load(official_dir, "fixture_sampler_dit_diffusion")


@pytest.fixture(scope="module")
def ldm_fx(official_dir):
    return _load(official_dir, "fixture_sampler_ldm_ddim")


@pytest.fixture(scope="module")
def sd3_fx(official_dir):
    return _load(official_dir, "fixture_sampler_sd3_flow")


# ---------------------------------------------------------------------------------------------- toy models
def _toy_trunk(w, x, t, cvec):
    """The shared part of the three toys (README section 6, ``toy_model.formula``)."""
    s = t.to(torch.float32) / 1000.0
    ang = s[:, None] * w["freqs"][None, :]
    tf = torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)
    temb = F.linear(tf, w["Wt"], w["bt"])
    h = torch.tanh(F.conv2d(x, w["W1"][:, :, None, None], w["b1"]) + (temb + cvec)[:, :, None, None])
    return F.conv2d(h, w["W2"][:, :, None, None], w["b2"])


def _eps_through_x0(w, x, t, d):
    a = w["abar"][t][:, None, None, None]
    return (x - a.sqrt() * d) / (1.0 - a).sqrt()


class DiTToy:
    """model(x, t, y) -> cat([eps, v]); records the t it receives."""

    def __init__(self, w):
        self.w, self.seen_t = w, []

    def __call__(self, x, t, y):
        self.seen_t.append(t.clone())
        o = _toy_trunk(self.w, x, t, self.w["emb"][y])
        C = x.shape[1]
        return torch.cat([_eps_through_x0(self.w, x, t, o[:, :C]), o[:, C:]], dim=1)

    def forward_with_cfg(self, x, t, y, cfg_scale):
        """DiT's official CFG pattern, written with the suite's apply_guidance(channels=3)."""
        half = x[: len(x) // 2]
        out = self(torch.cat([half, half]), t, y)
        cond, uncond = out.chunk(2)
        guided = apply_guidance(cond, uncond, cfg_scale, channels=3)
        # cond rows keep the cond pass's channels 3.., uncond rows the uncond pass's
        return torch.cat([guided, torch.cat([guided[:, :3], uncond[:, 3:]], dim=1)])


class LDMToy:
    """apply_model(x, t, c) -> eps."""

    def __init__(self, w):
        self.w, self.seen_t = w, []

    def __call__(self, x, t, c):
        self.seen_t.append(t.clone())
        o = _toy_trunk(self.w, x, t, F.linear(c.mean(dim=1), self.w["Wc"]))
        return _eps_through_x0(self.w, x, t, o)


class SD3Toy:
    """v = model(x, t, context=, y=) with float t = sigma * 1000."""

    def __init__(self, w):
        self.w, self.seen_t = w, []

    def __call__(self, x, t, context, y):
        self.seen_t.append(t.clone())
        cvec = F.linear(context.mean(dim=1), self.w["Wc"]) + F.linear(y, self.w["Wy"])
        return _toy_trunk(self.w, x, t, cvec)


def _close(actual, expected, what, **tol):
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    diff = (actual.double() - expected.double()).abs().max().item()
    ok = torch.allclose(actual.double(), expected.double(), **tol)
    assert ok, f"{what}: max abs diff {diff:.3g} (tolerance {tol})"


# ---------------------------------------------------------------------------------------------- DiT / ADM
def test_dit_schedule_tables_match_official(dit_fx):
    _, weights, io = dit_fx
    diffusion = create_diffusion("25")
    assert diffusion.timestep_map.tolist() == io["output.schedule.timestep_map"].tolist()
    for name in ["betas", "alphas_cumprod", "alphas_cumprod_prev", "posterior_variance",
                 "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
                 "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod"]:
        ours = torch.from_numpy(getattr(diffusion, name))
        assert ours.dtype == torch.float64
        _close(ours, io[f"output.schedule.{name}"], name, atol=1e-7, rtol=0)
    base = alphas_cumprod_from_betas(linear_beta_schedule(1000))
    _close(torch.from_numpy(base), io["output.schedule.base_alphas_cumprod"], "base_alphas_cumprod", atol=1e-12, rtol=0)
    assert torch.equal(torch.from_numpy(base).float(), weights["abar"])


def test_space_timesteps_rounds_half_to_even():
    kept = space_timesteps(1000, "25")
    assert len(kept) == 25 and kept[:5] == [0, 42, 83, 125, 166] and 832 in kept and 500 in kept
    assert 167 not in kept and 833 not in kept  # floor(x + 0.5) would give these
    assert space_timesteps(1000, "ddim25") == list(range(0, 1000, 40))
    assert space_timesteps(1000, "250")[-1] == 999 and len(space_timesteps(1000, "250")) == 250
    two = space_timesteps(100, "3,2")  # sections [0, 50) and [50, 100)
    assert two == [0, 24, 49, 50, 99]
    with pytest.raises(ValueError, match="cannot take"):
        space_timesteps(10, "20")
    with pytest.raises(ValueError, match="exactly"):
        space_timesteps(1000, "ddim999")
    with pytest.raises(ValueError, match="bad respacing"):
        space_timesteps(1000, "fast")


DIT_RUNS = ["p_sample_y", "p_sample_y_clip", "p_sample_cfg", "ddim_cfg", "ddim_y"]


@pytest.mark.parametrize("run", DIT_RUNS)
def test_dit_gaussian_diffusion_reproduces_official_run(dit_fx, run):
    meta, weights, io = dit_fx
    call = next(c for c in meta["forward_calls"] if c["run"] == run)
    diffusion = create_diffusion("25")
    toy = DiTToy(weights)
    x_T, y = io[f"input.{run}.x_T"], io[f"input.{run}.y"]
    if call["cfg"]:
        model, kwargs = toy.forward_with_cfg, {"y": y, "cfg_scale": call["cfg_scale"]}
    else:
        model, kwargs = toy, {"y": y}
    common = dict(noise=x_T, clip_denoised=call["clip_denoised"], model_kwargs=kwargs,
                  step_noise=io[f"input.{run}.step_noise"])
    if call["loop"] == "ddim":
        steps = list(diffusion.ddim_sample_loop_progressive(model, x_T.shape, eta=call["eta"], **common))
    else:
        steps = list(diffusion.p_sample_loop_progressive(model, x_T.shape, **common))

    x_steps = torch.stack([s["sample"] for s in steps])
    pred = torch.stack([s["pred_xstart"] for s in steps])
    expected = io[f"output.{run}.x_steps"]
    if call["cfg"]:
        N = x_T.shape[0] // 2
        # cond half within the README's bound; the uncond half grows to O(500), compared relatively
        _close(x_steps[:, :N], expected[:, :N], "x_steps cond half", **TRAJ)
        _close(x_steps[:, N:], expected[:, N:], "x_steps uncond half", atol=1e-3, rtol=1e-5)
        _close(x_steps[-1, :N], io[f"output.{run}.final_cond_half"], "final_cond_half", **TRAJ)
        expected_pred = io[f"output.{run}.pred_xstart_steps"]
        _close(pred[:, :N], expected_pred[:, :N], "pred_xstart cond half", **TRAJ)
        _close(pred[:, N:], expected_pred[:, N:], "pred_xstart uncond half", atol=1e-3, rtol=1e-5)
    else:
        _close(x_steps, expected, "x_steps", **TRAJ)
        _close(pred, io[f"output.{run}.pred_xstart_steps"], "pred_xstart_steps", **TRAJ)
    _close(x_steps[-1], io[f"output.{run}.final"], "final", atol=1e-3, rtol=1e-4)
    seen = torch.stack(toy.seen_t)
    assert seen.dtype == torch.int64
    assert torch.equal(seen, io[f"output.{run}.model_t"]), "the model must receive the original int64 timesteps"
    assert [s["model_t"] for s in steps] == io[f"output.{run}.model_t"][:, 0].tolist()
    if call["clip_denoised"]:
        assert pred.abs().max() <= 1.0


@pytest.mark.parametrize("run, loop", [("p_sample_cfg", "p_sample"), ("ddim_cfg", "ddim")])
def test_dit_cfg_model_on_n_batch_equals_official_cond_half(dit_fx, run, loop):
    """cfg_model(channels=3) on the N-sample batch gives sample.py's final.chunk(2)[0] with only cond-half noise."""
    _, weights, io = dit_fx
    toy = DiTToy(weights)
    x_T, y, noise = io[f"input.{run}.x_T"], io[f"input.{run}.y"], io[f"input.{run}.step_noise"]
    N = x_T.shape[0] // 2
    guided = cfg_model(toy, 4.0, {"y": y[N:]}, channels=3)
    diffusion = create_diffusion("25")
    sampler = diffusion.ddim_sample_loop if loop == "ddim" else diffusion.p_sample_loop
    final = sampler(guided, (N, *x_T.shape[1:]), noise=x_T[:N], clip_denoised=False,
                    model_kwargs={"y": y[:N]}, step_noise=noise[:, :N])
    _close(final, io[f"output.{run}.final_cond_half"], "final_cond_half", **TRAJ)


def test_gaussian_rejects_bad_model_output_and_short_noise(dit_fx):
    _, weights, io = dit_fx
    diffusion = create_diffusion("25")
    x_T = io["input.p_sample_y.x_T"]

    def eps_only(x, t, y):  # forgets the learned-variance channels
        return torch.zeros_like(x)

    with pytest.raises(ValueError, match=r"cat\(\[eps, v\]\)"):
        diffusion.p_sample_loop(eps_only, x_T.shape, noise=x_T, model_kwargs={"y": io["input.p_sample_y.y"]},
                                step_noise=io["input.p_sample_y.step_noise"])
    with pytest.raises(ValueError, match="one noise tensor per sampling step"):
        diffusion.p_sample_loop(DiTToy(weights), x_T.shape, noise=x_T, model_kwargs={"y": io["input.p_sample_y.y"]},
                                step_noise=io["input.p_sample_y.step_noise"][:3])


def test_hybrid_training_loss_is_zero_for_the_true_posterior():
    """eps = the true noise and v = -1 (log var = the clipped posterior log var) give mse = 0 and KL = 0."""
    diffusion = create_diffusion("")
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 4, 4, generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([1, 10, 500, 999])

    def oracle(x, t_model, **_):
        return torch.cat([noise, -torch.ones_like(noise)], dim=1)

    terms = diffusion.training_losses(oracle, x0, t, noise=noise)
    assert torch.allclose(terms["mse"], torch.zeros(4), atol=1e-10)
    assert terms["vb"].abs().max() < 1e-3
    x_t = diffusion.q_sample(x0, t, noise)
    abar = torch.from_numpy(diffusion.alphas_cumprod)[t].view(-1, 1, 1, 1)
    _close(x_t, abar.sqrt() * x0.double() + (1 - abar).sqrt() * noise.double(), "q_sample", atol=1e-6, rtol=0)

    def wrong(x, t_model, **_):
        return torch.cat([torch.zeros_like(noise), torch.ones_like(noise)], dim=1)

    bad = diffusion.training_losses(wrong, x0, t, noise=noise)
    assert (bad["mse"] > 0.5).all() and (bad["vb"][1:] > 1e-3).all()
    assert torch.allclose(bad["loss"], bad["mse"] + bad["vb"])


def test_fixed_variance_and_start_x_parameterisations():
    """learn_sigma=False uses the fixed posterior (small) or beta (large) variances; predict_xstart returns x0."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 4, 4, generator=g)
    t = torch.tensor([0, 7])
    x0_model = lambda x, t_model: torch.full_like(x, 0.25)  # noqa: E731
    small = create_diffusion("10", learn_sigma=False, sigma_small=True, predict_xstart=True)
    out = small.p_mean_variance(x0_model, x, t, clip_denoised=False)
    assert torch.equal(out["pred_xstart"], torch.full_like(x, 0.25))
    expected_log = torch.from_numpy(small.posterior_log_variance_clipped)[t].float().view(-1, 1, 1, 1).expand(x.shape)
    assert torch.equal(out["log_variance"], expected_log)
    large = create_diffusion("10", learn_sigma=False, predict_xstart=True)
    out = large.p_mean_variance(x0_model, x, t, clip_denoised=False)
    assert torch.allclose(out["variance"][1], torch.tensor(large.betas[7], dtype=torch.float32))
    assert torch.allclose(out["variance"][0], torch.tensor(large.posterior_variance[1], dtype=torch.float32))
    with pytest.raises(ValueError, match="must return shape"):
        large.p_mean_variance(lambda x, t_model: torch.cat([x, x], 1), x, t)
    with pytest.raises(ValueError, match="model_var_type"):
        type(large)(large.betas, model_var_type="learned_log")


# ---------------------------------------------------------------------------------------------- CompVis DDIM
def test_ldm_schedule_matches_official(ldm_fx):
    _, weights, io = ldm_fx
    abar = ldm_alphas_cumprod()
    assert abar.dtype == torch.float32
    assert torch.equal(abar, io["output.schedule.alphas_cumprod"])
    assert torch.equal(abar, weights["abar"])
    assert torch.equal(torch.from_numpy(scaled_linear_beta_schedule()).float(), io["output.schedule.betas"])


LDM_RUNS = ["eta0_cfg3", "eta1_cfg3", "eta0_nocfg", "eta0_cfg3_S7"]


@pytest.mark.parametrize("run", LDM_RUNS)
def test_compvis_ddim_reproduces_official_run(ldm_fx, run):
    meta, weights, io = ldm_fx
    call = next(c for c in meta["forward_calls"] if c["run"] == run)
    toy = LDMToy(weights)
    sampler = DDIMSampler(toy, ldm_alphas_cumprod())
    x_T = io[f"input.{run}.x_T"]
    uc = io.get(f"input.{run}.uc") if call["inputs"]["uc"] else None
    samples, inter = sampler.sample(
        S=call["S_requested"], batch_size=x_T.shape[0], shape=tuple(x_T.shape[1:]), conditioning=io[f"input.{run}.c"],
        eta=call["eta"], x_T=x_T, unconditional_guidance_scale=call["unconditional_guidance_scale"],
        unconditional_conditioning=uc, log_every_t=1, step_noise=io[f"input.{run}.step_noise"],
    )
    # tables: integer timesteps exactly, float tables to 1e-7, in the reference's dtypes
    assert sampler.ddim_timesteps.tolist() == io[f"output.{run}.ddim_timesteps"].tolist()
    assert len(sampler.ddim_timesteps) == call["steps_taken"]
    for name, dtype in [("ddim_alphas", torch.float32), ("ddim_sigmas", torch.float64),
                        ("ddim_sqrt_one_minus_alphas", torch.float32)]:
        ours = getattr(sampler, name)
        assert ours.dtype == dtype, name
        assert torch.equal(ours, io[f"output.{run}.{name}"]), name  # bit for bit (README bound: 1e-7)
    assert sampler.ddim_alphas_prev.dtype == np.float64
    assert torch.equal(torch.from_numpy(sampler.ddim_alphas_prev), io[f"output.{run}.ddim_alphas_prev"])
    # trajectory
    assert len(inter["x_inter"]) == call["steps_taken"] + 1
    _close(torch.stack(inter["x_inter"][1:]), io[f"output.{run}.x_steps"], "x_steps", **TRAJ)
    _close(torch.stack(inter["pred_x0"][1:]), io[f"output.{run}.pred_x0_steps"], "pred_x0_steps", **TRAJ)
    _close(samples, io[f"output.{run}.final"], "final", **TRAJ)
    assert torch.equal(torch.stack(toy.seen_t), io[f"output.{run}.model_t"])
    assert torch.equal(torch.stack(inter["model_t"]), io[f"output.{run}.model_t"])


# ---------------------------------------------------------------------------------------------- SD3 flow
def test_sd3_sigmas_and_model_sampling(sd3_fx):
    _, _, io = sd3_fx
    sigmas = get_sigmas(ModelSamplingDiscreteFlow(shift=3.0), 10)
    assert sigmas.dtype == torch.float32
    assert torch.equal(sigmas, io["output.euler_cfg5.sigmas"])
    assert sigmas[0] == 1.0 and sigmas[-1] == 0.0
    assert abs(sigmas[-2].item() - 0.0089286) < 1e-6  # shift applied twice at the low end (reference quirk)
    assert torch.equal(get_sigmas(3.0, 10), sigmas)
    ms = ModelSamplingDiscreteFlow(shift=1.0)
    assert torch.equal(ms.sigmas, torch.arange(1, 1001) / 1000.0)
    with pytest.raises(ValueError, match="steps"):
        get_sigmas(3.0, 0)


SD3_RUNS = {"euler_cfg5": sample_euler, "dpmpp_2m_cfg5": sample_dpmpp_2m}


@pytest.mark.parametrize("run", list(SD3_RUNS))
def test_sd3_flow_sampler_reproduces_official_run(sd3_fx, run):
    meta, weights, io = sd3_fx
    call = next(c for c in meta["forward_calls"] if c["run"] == run)
    ms = ModelSamplingDiscreteFlow(shift=call["shift"])
    sigmas = get_sigmas(ms, call["steps"])
    _close(sigmas, io[f"output.{run}.sigmas"], "sigmas", atol=0, rtol=0)

    noise = io[f"input.{run}.noise"]
    # get_noise(seed) = torch.manual_seed(seed); torch.randn(shape): the same stream as a seeded CPU generator
    assert torch.equal(torch.randn(noise.shape, generator=torch.Generator().manual_seed(call["noise_seed"])), noise)
    x = ms.noise_scaling(sigmas[0], noise, io[f"input.{run}.empty_latent"])
    assert torch.equal(x, io[f"output.{run}.noise_scaled"])

    toy = SD3Toy(weights)
    xs, dens = [], []
    extra = {
        "cond": {"context": io[f"input.{run}.context"], "y": io[f"input.{run}.pooled"]},
        "uncond": {"context": io[f"input.{run}.neg_context"], "y": io[f"input.{run}.neg_pooled"]},
        "cond_scale": call["cfg_scale"],
    }
    final = SD3_RUNS[run](CFGDenoiser(toy, ms), x, sigmas, extra_args=extra,
                          callback=lambda i, xi, d: (xs.append(xi), dens.append(d)))
    _close(torch.stack(xs), io[f"output.{run}.x_steps"], "x_steps", **TRAJ)
    _close(torch.stack(dens), io[f"output.{run}.denoised_steps"], "denoised_steps", **TRAJ)
    _close(final, io[f"output.{run}.final"], "final", **TRAJ)
    _close(SD3LatentFormat().process_out(final), io[f"output.{run}.final_process_out"], "process_out", **TRAJ)
    seen = torch.stack(toy.seen_t)
    assert seen.dtype == torch.float32
    assert torch.equal(seen, io[f"output.{run}.model_timestep"])
    if run == "dpmpp_2m_cfg5":  # the last step (to sigma = 0) returns the denoised prediction exactly
        assert torch.equal(final, dens[-1])


def test_sd3_latent_format_round_trip_and_flow_training_terms():
    fmt = SD3LatentFormat()
    z = torch.randn(2, 16, 4, 4, generator=torch.Generator().manual_seed(1))
    _close(fmt.process_out(fmt.process_in(z)), z, "round trip", atol=1e-6, rtol=0)
    _close(fmt.process_in(torch.full((1,), 0.0609)), torch.zeros(1), "shift", atol=1e-7, rtol=0)

    g = torch.Generator().manual_seed(2)
    sig = sample_logit_normal_sigmas(20000, generator=g)
    assert sig.shape == (20000,) and (sig > 0).all() and (sig < 1).all()
    assert abs(sig.median().item() - 0.5) < 0.02  # sigmoid(N(0, 1)) has median 0.5
    assert sample_logit_normal_sigmas(20000, m=1.0, generator=g).median() > 0.7

    x0, noise = torch.randn(3, 4, 2, 2, generator=g), torch.randn(3, 4, 2, 2, generator=g)
    sigma = torch.tensor([0.0, 0.5, 1.0])
    xt = rectified_flow_interpolate(x0, noise, sigma)
    assert torch.equal(xt[0], x0[0]) and torch.equal(xt[2], noise[2])
    assert torch.equal(rectified_flow_target(x0, noise), noise - x0)
    # a velocity model that knows the target has zero loss; denoised = x - v sigma recovers x0
    oracle = lambda x, t: noise - x0  # noqa: E731
    assert torch.equal(rectified_flow_loss(oracle, x0, sigma, noise), torch.zeros(3))
    ms = ModelSamplingDiscreteFlow(3.0)
    _close(ms.calculate_denoised(sigma, noise - x0, xt), x0, "denoised", atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------- guidance
def test_guidance_convention():
    g = torch.Generator().manual_seed(3)
    cond, uncond = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g)
    assert torch.equal(apply_guidance(cond, uncond, 1.0), cond)
    assert torch.equal(apply_guidance(cond, uncond, 0.0), uncond)
    _close(apply_guidance(cond, uncond, 4.0), uncond + 4.0 * (cond - uncond), "w=4", atol=0, rtol=0)
    _close(apply_guidance(cond, uncond, 2.5), 2.5 * cond - 1.5 * uncond, "w=2.5", atol=1e-6, rtol=0)
    per_sample = torch.tensor([1.0, 0.0]).view(2, 1, 1, 1)
    mixed = apply_guidance(cond, uncond, per_sample)
    _close(mixed[0], cond[0], "per-sample w=1", atol=1e-6, rtol=0)
    _close(mixed[1], uncond[1], "per-sample w=0", atol=1e-6, rtol=0)
    # Ho & Salimans: (1 + w') cond - w' uncond  ==  uncond + (w' + 1)(cond - uncond)
    for w_prime in [0.0, 0.5, 3.0]:
        w = from_ho_salimans(w_prime)
        assert w == w_prime + 1 and to_ho_salimans(w) == w_prime
        _close(apply_guidance(cond, uncond, w), (1 + w_prime) * cond - w_prime * uncond, "ho-salimans",
               atol=1e-5, rtol=0)
    assert not needs_unconditional(1.0) and needs_unconditional(0.0) and needs_unconditional(7.5)
    # DiT: only the first 3 channels are guided, the rest is the conditional prediction
    dit = apply_guidance(cond, uncond, 4.0, channels=3)
    _close(dit[:, :3], apply_guidance(cond[:, :3], uncond[:, :3], 4.0), "dit guided", atol=0, rtol=0)
    assert torch.equal(dit[:, 3:], cond[:, 3:])
    with pytest.raises(ValueError, match="same shape"):
        apply_guidance(cond, uncond[:1], 2.0)
    with pytest.raises(ValueError, match="channels"):
        apply_guidance(cond, uncond, 2.0, channels=5)


def test_cfg_model_orders_and_skips_uncond_pass():
    calls = []

    def model(x, t, c):
        calls.append(c.clone())
        return x * 0 + c.view(-1, 1, 1, 1)

    x, t = torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.int64)
    c, uc = torch.tensor([5.0, 7.0]), torch.tensor([1.0, 1.0])
    out = cfg_model(model, 3.0, {"c": uc})(x, t, c=c)
    assert torch.equal(calls[-1], torch.tensor([5.0, 7.0, 1.0, 1.0]))  # [cond, uncond]
    assert torch.equal(out[:, 0, 0, 0], torch.tensor([13.0, 19.0]))  # 1 + 3 (c - 1)
    out = cfg_model(model, 3.0, {"c": uc}, uncond_first=True)(x, t, c=c)
    assert torch.equal(calls[-1], torch.tensor([1.0, 1.0, 5.0, 7.0]))  # [uncond, cond], CompVis
    assert torch.equal(out[:, 0, 0, 0], torch.tensor([13.0, 19.0]))
    n = len(calls)
    assert torch.equal(cfg_model(model, 1.0, {"c": uc})(x, t, c=c)[:, 0, 0, 0], c)
    assert len(calls) == n + 1 and calls[-1].shape == (2,)  # w = 1: conditional pass only


# ---------------------------------------------------------------------------------------------- per-sample noise
def _generators(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_per_sample_noise_is_independent_of_batch_composition():
    seeds = [11, 22, 33, 44]
    full = per_sample_noise(_generators(seeds), (4, 8, 8))
    assert full.shape == (4, 4, 8, 8)
    for i, s in enumerate(seeds):
        alone = per_sample_noise(_generators([s]), (4, 8, 8))[0]
        assert torch.equal(full[i], alone)
        assert torch.equal(full[i], torch.randn((4, 8, 8), generator=torch.Generator().manual_seed(s)))
    shuffled = per_sample_noise(_generators([33, 11]), (4, 8, 8))
    assert torch.equal(shuffled[0], full[2]) and torch.equal(shuffled[1], full[0])
    with pytest.raises(ValueError, match="one generator per sample"):
        PerSampleNoise(_generators(seeds))(0, (3, 4, 8, 8))


def test_per_sample_noise_makes_whole_trajectories_batch_independent(dit_fx):
    """Sample i's DDPM trajectory depends only on its own generator, alone or inside a larger batch."""
    _, weights, _ = dit_fx
    diffusion = create_diffusion("10")
    toy = DiTToy(weights)
    seeds, labels = [101, 202, 303], torch.tensor([1, 5, 9])

    def run(idx):
        gens = _generators([seeds[i] for i in idx])
        x_T = per_sample_noise(gens, (4, 8, 8))
        return diffusion.p_sample_loop(toy, (len(idx), 4, 8, 8), noise=x_T, clip_denoised=False,
                                       model_kwargs={"y": labels[idx]}, step_noise=PerSampleNoise(gens))

    batch = run([0, 1, 2])
    for i in range(3):
        _close(run([i])[0], batch[i], f"sample {i}", atol=1e-6, rtol=0)
    _close(run([2, 0]), batch[[2, 0]], "reordered", atol=1e-6, rtol=0)
