"""GPU path of the baselines and the metric harness: CUDA/CPU parity, bf16 tolerance, throughput, memory.

Random weights in the official shapes (no checkpoint is needed), so this runs on any CUDA machine offline:

* DiT-XL/2-256 (675 M parameters) + SD KL-f8 VAE: 250-step DDPM with classifier-free guidance (the DiT
  paper's protocol), fp32 vs bf16 autocast, images/s, peak memory and achieved TFLOP/s of the network;
* SD3-medium-shaped MM-DiT (2 B parameters, 1024x1024, 16-channel VAE): Euler flow sampling with CFG;
* LDM-txt2img-f8-large-shaped U-Net (1280-d context, 256x256, KL-f8): CompVis DDIM with CFG;
* FID-Inception feature extraction (tf-exact and clean protocols): images/s and CUDA-vs-CPU parity.

Parity: the network forward on CUDA (fp32, TF32 off) against the CPU on the same inputs, and bf16 autocast
against fp32 on CUDA, as relative max errors; sample-level bf16 vs fp32 differences in uint8 levels.

Usage: ``PYTHONPATH=.:tests python benchmarks/gpu_check.py [--quick] [--out results.json]``.
``--quick`` shrinks every size so the script can be checked on a CPU-only machine (numbers meaningless).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from baselines.common.kl_vae import SD1_VAE_CONFIG, AutoencoderKL, Decoder
from baselines.dit.generator import DiTGenerator
from baselines.dit.models import DiT
from baselines.ldm.checkpoints import LDM_TXT2IMG_F8_LARGE_UNET_CONFIG
from baselines.ldm.generator import LDMGenerator
from baselines.ldm.unet import UNetModel
from baselines.sd3.generator import SD3_VAE_DDCONFIG, SD3Generator
from baselines.sd3.models import MMDiT
from cgmbench.conditions import Conditions  # noqa: E402
from cgmbench.diffusion import ldm_alphas_cumprod  # noqa: E402
from baselines.common.latent import SDKLDecoder  # noqa: E402
from cgmbench.generator import CheckpointInfo  # noqa: E402

#: dense peak of an H100 SXM (NVIDIA datasheet, without sparsity), TFLOP/s
PEAK_TFLOPS = {"bf16": 989.0, "fp32": 67.0, "tf32": 494.0}

RESULTS: dict = {}


def log(msg: str) -> None:
    print(msg, flush=True)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@contextlib.contextmanager
def timer(store: dict, key: str):
    sync()
    t0 = time.perf_counter()
    yield
    sync()
    store[key] = round(time.perf_counter() - t0, 4)


def rel_max(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def forward_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def peak_reset() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


class RandomText:
    """Stand-in text encoder: fixed random context/pooled vectors per prompt (throughput needs no real text)."""

    def __init__(self, tokens: int, width: int, pooled: int | None):
        self.tokens, self.width, self.pooled = tokens, width, pooled

    def encode(self, texts):
        g = torch.Generator().manual_seed(len(texts))
        ctx = torch.randn(len(texts), self.tokens, self.width, generator=g)
        pooled = torch.randn(len(texts), self.pooled, generator=g) if self.pooled else None
        return ctx, pooled, {"truncated": 0}


def init_small(module: torch.nn.Module, seed: int, std: float = 0.02, device: str = "cpu") -> torch.nn.Module:
    """Random weights with a realistic scale (zero-initialised output layers would make parity trivial),
    drawn on ``device`` (a 2 B-parameter model initialises in seconds on a GPU, minutes on one CPU thread)."""
    module.to(device)
    g = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g, device=device) * std)
            elif name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g, device=device) * 0.01)
    return module


def sampling(gen, conds, seeds, knobs, precision: str, label: str) -> tuple[torch.Tensor, dict]:
    gen.set_precision(precision)
    peak_reset()
    out = {}
    with timer(out, "seconds"):
        images = gen.generate(conds, seeds, **knobs)
    out.update(images=len(seeds), images_per_s=round(len(seeds) / out["seconds"], 3), peak_gib=peak_gib())
    log(f"  {label} {precision}: {out}")
    return images, out


# ------------------------------------------------------------------------------------ DiT-XL/2


def check_dit(device: str, quick: bool) -> None:
    log("DiT-XL/2-256 (random weights), SD KL-f8 VAE")
    r = RESULTS.setdefault("dit_xl2_256", {})
    arch = dict(input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28, num_heads=16,
                num_classes=1000, learn_sigma=True)
    vae_cfg = dict(SD1_VAE_CONFIG)
    if quick:
        arch.update(hidden_size=64, depth=2, num_heads=2, input_size=8)
        vae_cfg["ddconfig"] = dict(vae_cfg["ddconfig"], ch=32, ch_mult=(1, 2), resolution=16)
    model = init_small(DiT(**arch), 1)
    r["params_M"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 1)
    vae = init_small(AutoencoderKL(**vae_cfg), 2, std=0.01)
    factor = 2 ** (len(vae_cfg["ddconfig"]["ch_mult"]) - 1)
    side = arch["input_size"] * factor
    gen = DiTGenerator(model, SDKLDecoder(vae), side, CheckpointInfo("random", None, "", "random"), device=device)

    # network parity: CUDA fp32 vs CPU fp32, bf16 autocast vs fp32 (CFG batch: 2 x 4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 4, arch["input_size"], arch["input_size"], generator=g)
    t = torch.randint(0, 1000, (8,), generator=g)
    y = torch.randint(0, 1000, (8,), generator=g)
    with torch.no_grad():
        cpu = model.cpu()(x, t, y)
        model.to(device)
        xd, td, yd = x.to(device), t.to(device), y.to(device)
        fp32 = model(xd, td, yd)
        with torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16):
            bf16 = model(xd, td, yd)
    r["parity"] = {"cuda_fp32_vs_cpu_rel_max": rel_max(fp32, cpu), "bf16_vs_fp32_rel_max": rel_max(bf16.float(), fp32)}
    log(f"  parity {r['parity']}")
    flops_per_image = forward_flops(lambda: model(xd[:1], td[:1], yd[:1])) if not quick else 0
    r["gflops_per_forward_image"] = round(flops_per_image / 1e9, 2)

    # sampling throughput: 250 DDPM steps with CFG (w = 1.5, 3 guided channels), the paper's protocol
    batch = 2 if quick else 32
    steps = 4 if quick else 250
    conds = Conditions("class", list(range(batch)), labels=torch.arange(batch) % 1000)
    knobs = dict(steps=steps, guidance_scale=1.5, sampler="ddpm")
    seeds = list(range(batch))
    r["sampling"] = {"batch": batch, "steps": steps, "cfg": 1.5, "sampler": "ddpm"}
    fp32_steps = 2 if quick else 25  # fp32 is slow: fewer steps, per-step figures reported
    _, s32 = sampling(gen, conds, seeds, dict(knobs, steps=fp32_steps), "fp32", "DiT")
    _, s16 = sampling(gen, conds, seeds, knobs, "bf16", "DiT")
    for label, s, n_steps in (("fp32", s32, fp32_steps), ("bf16", s16, steps)):
        per_step = s["seconds"] / n_steps
        tflops = 2 * batch * flops_per_image / per_step / 1e12  # CFG doubles the batch through the network
        s.update(steps=n_steps, seconds_per_step=round(per_step, 5),
                 images_per_s_at_250_steps=round(batch / (per_step * 250), 3),
                 network_tflops=round(tflops, 1),
                 fraction_of_peak=round(tflops / PEAK_TFLOPS[label], 3))
        r["sampling"][label] = s
    # sample-level bf16 vs fp32 (deterministic DDIM, 50 steps, 8 images)
    few = list(range(8 if not quick else 2))
    c8 = Conditions("class", few, labels=torch.tensor(few) % 1000)
    gen.set_precision("fp32")
    a = gen.generate(c8, few, steps=50 if not quick else 3, sampler="ddim", eta=0.0, guidance_scale=1.5)
    gen.set_precision("bf16")
    b = gen.generate(c8, few, steps=50 if not quick else 3, sampler="ddim", eta=0.0, guidance_scale=1.5)
    d = (a.float() - b.float()).abs()
    r["bf16_vs_fp32_samples_uint8"] = {"mean_abs": round(float(d.mean()), 3), "p99": float(d.flatten().quantile(0.99)),
                                       "max": float(d.max())}
    log(f"  samples bf16 vs fp32 {r['bf16_vs_fp32_samples_uint8']}")
    gen.model.cpu()


# ------------------------------------------------------------------------------------ SD3-medium


def check_sd3(device: str, quick: bool) -> None:
    log("SD3-medium-shaped MM-DiT (random weights), 16-channel VAE")
    r = RESULTS.setdefault("sd3_medium_shaped", {})
    arch = dict(patch_size=2, in_channels=16, hidden_size=1536, depth=24, num_heads=24, adm_in_channels=2048,
                context_dim=4096, pos_embed_max_size=192)
    ddconfig, res, ctx_tokens = dict(SD3_VAE_DDCONFIG), 1024, 154
    if quick:
        arch.update(hidden_size=64, depth=2, num_heads=2, adm_in_channels=32, context_dim=32, pos_embed_max_size=16)
        ddconfig.update(ch=32, ch_mult=(1, 2))
        res, ctx_tokens = 32, 8
    mmdit = init_small(MMDiT(**arch), 3, device=device)
    r["params_M"] = round(sum(p.numel() for p in mmdit.parameters()) / 1e6, 1)
    decoder = init_small(Decoder(**ddconfig), 4, std=0.01, device=device)
    factor = 2 ** (len(ddconfig["ch_mult"]) - 1)
    text = RandomText(ctx_tokens, arch["context_dim"], arch["adm_in_channels"])
    gen = SD3Generator(mmdit, text, resolution=res, defaults=dict(guidance_scale=5.0, steps=50, shift=3.0,
                                                                  sampler="euler"),
                       decoder=decoder, vae_factor=factor, checkpoint=None, device=device)
    batch = 2 if quick else 4
    gen.micro_batch = batch
    side = res // factor
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, side, side, generator=g).to(device)
    ctx, pooled, _ = text.encode(["a"] * 2)
    ctx, pooled = ctx.to(device), pooled.to(device)
    tt = torch.tensor([500.0, 900.0], device=device)
    with torch.no_grad():
        fp32 = gen.mmdit(x, tt, y=pooled, context=ctx)
        with torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16):
            bf16 = gen.mmdit(x, tt, y=pooled, context=ctx)
        flops = forward_flops(lambda: gen.mmdit(x[:1], tt[:1], y=pooled[:1], context=ctx[:1])) if not quick else 0
    r["parity"] = {"bf16_vs_fp32_rel_max": rel_max(bf16.float(), fp32)}
    r["gflops_per_forward_image"] = round(flops / 1e9, 1)
    conds = Conditions("text", list(range(batch)), texts=[f"prompt {i}" for i in range(batch)])
    seeds = list(range(batch))
    steps = 3 if quick else 28
    r["sampling"] = {"batch": batch, "resolution": res, "cfg": 5.0, "sampler": "euler", "context_tokens": ctx_tokens}
    _, s16 = sampling(gen, conds, seeds, dict(steps=steps), "bf16", "SD3")
    _, s32 = sampling(gen, conds, seeds, dict(steps=2 if quick else 4), "fp32", "SD3")
    for label, s, n in (("bf16", s16, steps), ("fp32", s32, 2 if quick else 4)):
        per_step = s["seconds"] / n
        tflops = 2 * batch * flops / per_step / 1e12
        s.update(steps=n, seconds_per_step=round(per_step, 4), network_tflops=round(tflops, 1),
                 fraction_of_peak=round(tflops / PEAK_TFLOPS[label], 3))
        r["sampling"][label] = s
    gen.mmdit.cpu()


# ------------------------------------------------------------------------------------ LDM txt2img


def check_ldm(device: str, quick: bool) -> None:
    log("LDM-txt2img-f8-large-shaped U-Net (random weights), KL-f8 VAE, 256x256")
    r = RESULTS.setdefault("ldm_txt2img_f8_large_shaped", {})
    unet_cfg, vae_cfg, res = dict(LDM_TXT2IMG_F8_LARGE_UNET_CONFIG), dict(SD1_VAE_CONFIG), 256
    if quick:
        unet_cfg.update(model_channels=32, channel_mult=(1, 2), attention_resolutions=(2,), num_heads=2,
                        context_dim=32, num_res_blocks=1)
        vae_cfg["ddconfig"] = dict(vae_cfg["ddconfig"], ch=32, ch_mult=(1, 2))
        res = 16
    unet = init_small(UNetModel(**unet_cfg), 5, device=device)
    vae = init_small(AutoencoderKL(**vae_cfg), 6, std=0.01, device=device)
    r["params_M"] = round(sum(p.numel() for p in unet.parameters()) / 1e6, 1)
    text = RandomText(77, unet_cfg["context_dim"], None)
    gen = LDMGenerator(unet, vae, text, scale_factor=0.18215, alphas_cumprod=ldm_alphas_cumprod(1000, 0.00085, 0.012),
                       resolution=res, defaults=dict(guidance_scale=1.5, steps=250, eta=0.0), checkpoint=None,
                       device=device)
    batch = 2 if quick else 32
    gen.micro_batch = batch
    conds = Conditions("text", list(range(batch)), texts=[f"prompt {i}" for i in range(batch)])
    seeds = list(range(batch))
    lat = gen.latent_shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, *lat, generator=g).to(device)
    c = text.encode(["a", "b"])[0].to(device)
    tt = torch.tensor([10, 900], device=device)
    with torch.no_grad():
        fp32 = gen.unet(x, timesteps=tt, context=c)
        with torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16):
            bf16 = gen.unet(x, timesteps=tt, context=c)
        flops = forward_flops(lambda: gen.unet(x[:1], timesteps=tt[:1], context=c[:1])) if not quick else 0
    r["parity"] = {"bf16_vs_fp32_rel_max": rel_max(bf16.float(), fp32)}
    r["gflops_per_forward_image"] = round(flops / 1e9, 1)
    steps = 4 if quick else 250
    r["sampling"] = {"batch": batch, "resolution": res, "cfg": 1.5, "sampler": "ddim eta=0"}
    _, s16 = sampling(gen, conds, seeds, dict(steps=steps), "bf16", "LDM")
    _, s32 = sampling(gen, conds, seeds, dict(steps=2 if quick else 25), "fp32", "LDM")
    for label, s, n in (("bf16", s16, steps), ("fp32", s32, 2 if quick else 25)):
        per_step = s["seconds"] / n
        tflops = 2 * batch * flops / per_step / 1e12
        s.update(steps=n, seconds_per_step=round(per_step, 5), images_per_s_at_250_steps=round(batch / (per_step * 250), 3),
                 network_tflops=round(tflops, 1), fraction_of_peak=round(tflops / PEAK_TFLOPS[label], 3))
        r["sampling"][label] = s
    gen.unet.cpu()


# ------------------------------------------------------------------------------------ Inception


def check_inception(device: str, quick: bool) -> None:
    import tempfile

    from test_inception import random_fid_inception_state_dict, smooth_images

    from cgmbench.extractors.inception import FIDInceptionV3

    log("FID-Inception feature extraction (random BN-calibrated weights)")
    r = RESULTS.setdefault("inception_v3", {})
    path = Path(tempfile.mkdtemp()) / "random-inception.pth"
    torch.save(random_fid_inception_state_dict(seed=0), path)
    n = 16 if quick else 2000
    images = smooth_images(n, 256, 256, seed=1)
    for protocol in ("tf-exact", "clean"):
        ext = FIDInceptionV3(protocol, weights_path=path)
        cpu = ext(images[:16], batch_size=16)
        ext.to(device)
        gpu = ext(images[:16], batch_size=16)
        ext(images[:200], batch_size=200)  # warm-up
        out = {}
        with timer(out, "seconds"):
            ext(images, batch_size=200)
        out.update(images=n, images_per_s=round(n / out["seconds"], 1),
                   cuda_vs_cpu_max_abs=float((gpu - cpu).abs().max()), feature_abs_max=float(cpu.abs().max()))
        r[protocol] = out
        log(f"  {protocol}: {out}")
        ext.cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a CPU smoke test of the script)")
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--only", help="comma-separated subset of dit,sd3,ldm,inception")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    RESULTS["environment"] = {"torch": torch.__version__, "device": torch.cuda.get_device_name() if device == "cuda"
                              else "cpu", "tf32": False, "quick": args.quick}
    log(json.dumps(RESULTS["environment"]))
    checks = {"dit": check_dit, "ldm": check_ldm, "sd3": check_sd3, "inception": check_inception}
    chosen = args.only.split(",") if args.only else list(checks)
    for name in chosen:
        try:
            with torch.no_grad():
                checks[name](device, args.quick)
        except Exception as e:  # keep the other figures when one check fails
            RESULTS[name + "_error"] = f"{type(e).__name__}: {e}"
            log(f"  {name} FAILED: {e}")
        Path(args.out).write_text(json.dumps(RESULTS, indent=2))
    log(json.dumps(RESULTS, indent=2))


if __name__ == "__main__":
    main()
