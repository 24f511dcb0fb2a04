"""Benchmark: tiny-DiT sampling speed of ``DiTGenerator.generate`` against a plain per-sample reference loop.

Both paths sample the same tiny pixel-space DiT (the ``tiny`` training recipe of
:mod:`baselines.dit_generator`: 32x32, 3 channels, 18 classes; random weights, see
:func:`build_tiny_dit`) with DDPM over ``--steps`` respaced steps, at each ``--guidance`` ``w``:

* ``cgmbench``: :meth:`baselines.dit.generator.DiTGenerator.generate`. The whole batch goes through the
  model at once; classifier-free guidance runs one doubled batch ``[cond, uncond]``
  (:func:`cgmbench.diffusion.cfg_model`) and is skipped at ``w == 1``; the initial noise and every step's
  noise are drawn row by row, one ``torch.Generator`` per sample (:class:`cgmbench.diffusion.PerSampleNoise`),
  so a sample does not depend on the batch it is in.
* ``reference``: :func:`reference_sample`, written out plainly here: one sample at a time, a Python loop over
  the respaced timesteps (schedule and respacing recomputed here with NumPy, as in ADM's
  ``gaussian_diffusion.py`` / ``respace.py``), the model called as the official ``sample.py`` does
  (``forward_with_cfg`` on the doubled batch ``[x, x]`` with labels ``[y, null]`` when ``w != 1``; plain
  ``forward`` otherwise, or always ``forward_with_cfg`` with ``--reference-cfg always``), and the
  learned-range ADM posterior computed by hand. It draws its noise from the same per-sample generators in the
  same order (``x_T`` first, then one draw per step, also at the last step), so both paths must give the
  same samples: the benchmark asserts it (uint8 images equal up to one level on a few pixels, float samples
  within ``--atol``) and prints the maximum absolute differences, so that the time ratio compares equal work.

Each path runs ``--repeats`` times per guidance value, interleaved (cgmbench, reference, cgmbench, ...) so
that a change of load on the shared machine hits both; the median is reported with every run, the ratio
``reference / cgmbench`` and samples per second. The 1-, 5- and 15-minute load averages are printed before
and after. The time cgmbench spends drawing per-sample noise is measured separately (the same draws made
outside the sampler) next to one batched ``torch.randn`` per step.

Run from the repository root::

    OMP_NUM_THREADS=2 python benchmarks/bench_dit_sampling.py [--num-samples 32] [--steps 50] [--guidance 1,4]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

try:
    from baselines.dit import DiT, DiTGenerator
    from baselines.dit.train import TRAIN_CONFIGS, DiTTrainConfig, _tiny_arch
except ImportError:  # running from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from baselines.dit import DiT, DiTGenerator
    from baselines.dit.train import TRAIN_CONFIGS, DiTTrainConfig, _tiny_arch
from cgmbench.conditions import Conditions
from cgmbench.diffusion import per_sample_noise
from baselines.common.latent import IdentityDecoder
from cgmbench.generator import CheckpointInfo, to_uint8
from cgmbench.seeding import sample_seeds, torch_generator

TASK = "shapes-cc"
NUM_CLASSES = 18
IMAGE_SIZE = 32


# ----------------------------------------------------------------------------- the model


def build_tiny_dit(seed: int = 0, num_classes: int = NUM_CLASSES, image_size: int = IMAGE_SIZE) -> DiT:
    """The ``tiny`` recipe's DiT for ``shapes-cc`` with random weights.

    DiT's adaLN-Zero initialisation zeroes the modulation and output layers, so a fresh DiT predicts
    exactly 0 whatever its input; every all-zero parameter is therefore redrawn from N(0, 0.02) so that the
    output depends on ``x``, ``t`` and the label (the cost of a forward pass does not depend on the values).
    """
    cfg = TRAIN_CONFIGS.get(("tiny", TASK), DiTTrainConfig())
    torch.manual_seed(seed)
    model = DiT(**_tiny_arch(cfg, image_size, num_classes))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad and not p.any():
                p.normal_(0.0, 0.02)
    return model.eval().requires_grad_(False)


class _KeepLatents(IdentityDecoder):
    """Identity decoder that keeps the last float samples, so the float outputs can be compared too."""

    last: torch.Tensor | None = None

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self.last = latents.detach().clone()
        return super().decode(latents)


def make_generator(model: DiT) -> tuple[DiTGenerator, _KeepLatents]:
    decoder = _KeepLatents()
    gen = DiTGenerator(model, decoder, IMAGE_SIZE, CheckpointInfo("bench:tiny-random", source="random init"),
                       clip_denoised=True, device="cpu")
    gen.micro_batch = None  # the whole batch through the network at once: this benchmark measures batched sampling
    return gen, decoder


def cgmbench_sample(gen: DiTGenerator, labels: torch.Tensor, seeds: Sequence[int], steps: int,
                    w: float) -> torch.Tensor:
    cond = Conditions("class", list(range(len(seeds))), labels=labels)
    return gen.generate(cond, seeds, guidance_scale=w, steps=steps, sampler="ddpm")


# ----------------------------------------------------------------------------- the reference loop


@dataclass
class Schedule:
    """ADM's linear schedule (1000 steps) respaced to ``steps`` as ``create_diffusion(str(steps))`` does;
    float64 tables indexed by the respaced step ``k``; ``timesteps[k]`` is what the model receives."""

    steps: int
    timesteps: list[int] = field(init=False)
    betas: np.ndarray = field(init=False)

    def __post_init__(self):
        T = 1000
        base = np.linspace(1e-4, 0.02, T, dtype=np.float64)
        abar = np.cumprod(1.0 - base)
        stride = 1 if self.steps <= 1 else (T - 1) / (self.steps - 1)  # ADM space_timesteps, one section
        kept, pos = set(), 0.0
        for _ in range(self.steps):
            kept.add(round(pos))
            pos += stride
        self.timesteps = sorted(kept)
        betas, last = [], 1.0
        for t in self.timesteps:  # ADM SpacedDiffusion: beta_k = 1 - abar[t_k] / abar[t_{k-1}]
            betas.append(1.0 - abar[t] / last)
            last = abar[t]
        self.betas = np.array(betas)
        ac = np.cumprod(1.0 - self.betas)
        ac_prev = np.append(1.0, ac[:-1])
        post_var = self.betas * (1.0 - ac_prev) / (1.0 - ac)
        self.sqrt_recip_ac = np.sqrt(1.0 / ac)
        self.sqrt_recipm1_ac = np.sqrt(1.0 / ac - 1.0)
        self.coef1 = self.betas * np.sqrt(ac_prev) / (1.0 - ac)
        self.coef2 = (1.0 - ac_prev) * np.sqrt(1.0 - self.betas) / (1.0 - ac)
        self.min_log = np.log(np.append(post_var[1], post_var[1:])) if self.steps > 1 else np.log(self.betas)
        self.max_log = np.log(self.betas)


def _f32(v: float) -> float:
    """A float64 table entry rounded to float32, as ADM's ``_extract_into_tensor(...).float()`` does."""
    return float(np.float32(v))


@torch.no_grad()
def reference_sample(model: DiT, label: int, seed: int, sched: Schedule, w: float,
                     always_cfg: bool = False) -> torch.Tensor:
    """One sample, the plain way: ``(1, 3, H, W)`` float in [-1, 1] (before the uint8 conversion)."""
    g = torch_generator(seed)
    C, side = model.in_channels, model.x_embedder.img_size[0]
    x = torch.randn((C, side, side), generator=g).unsqueeze(0)  # x_T
    use_cfg = always_cfg or w != 1
    y = torch.tensor([label, model.num_classes] if use_cfg else [label])
    for k in reversed(range(sched.steps)):
        t = torch.full((len(y),), sched.timesteps[k], dtype=torch.int64)
        if use_cfg:
            out = model.forward_with_cfg(torch.cat([x, x]), t, y, cfg_scale=w)[:1]
        else:
            out = model(x, t, y)
        eps, v = out[:, :C], out[:, C:]
        x0 = (_f32(sched.sqrt_recip_ac[k]) * x - _f32(sched.sqrt_recipm1_ac[k]) * eps).clamp(-1, 1)
        mean = _f32(sched.coef1[k]) * x0 + _f32(sched.coef2[k]) * x
        frac = (v + 1) / 2  # learned range: interpolate log variance between posterior and beta
        log_var = frac * _f32(sched.max_log[k]) + (1 - frac) * _f32(sched.min_log[k])
        noise = torch.randn((C, side, side), generator=g).unsqueeze(0)  # drawn at every step, as cgmbench does
        x = mean + torch.exp(0.5 * log_var) * noise if k > 0 else mean
    return x


def reference_batch(model, labels, seeds, sched, w, always_cfg=False) -> torch.Tensor:
    return torch.cat([reference_sample(model, int(lab), s, sched, w, always_cfg) for lab, s in zip(labels, seeds)])


# ----------------------------------------------------------------------------- the benchmark


def machine_info() -> str:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    la = os.getloadavg()
    return (f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}\n"
            f"cpu: {cpu}; os.cpu_count() = {os.cpu_count()}; torch threads = {torch.get_num_threads()} "
            f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}); mkldnn {torch.backends.mkldnn.is_available()}\n"
            f"load average (1/5/15 min) before: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")


def noise_draw_cost(n: int, steps: int, shape=(3, IMAGE_SIZE, IMAGE_SIZE)) -> tuple[float, float]:
    """Seconds for cgmbench's ``steps + 1`` per-sample noise draws of ``n`` rows, and for batched randn."""
    gens = [torch_generator(i) for i in range(n)]
    t0 = time.perf_counter()
    for _ in range(steps + 1):
        per_sample_noise(gens, shape)
    per_sample = time.perf_counter() - t0
    g = torch_generator(0)
    t0 = time.perf_counter()
    for _ in range(steps + 1):
        torch.randn((n, *shape), generator=g)
    return per_sample, time.perf_counter() - t0


def run_benchmark(num_samples: int = 32, steps: int = 50, guidance: Sequence[float] = (1.0, 4.0),
                  repeats: int = 3, always_cfg: bool = False, atol: float = 1e-4, log=print) -> list[dict]:
    """Time both paths per guidance value, check they give the same samples; one result dict per ``w``."""
    model = build_tiny_dit()
    gen, decoder = make_generator(model)
    sched = Schedule(steps)
    seeds = sample_seeds(0, TASK, range(num_samples))
    labels = torch.arange(num_samples) % model.num_classes
    log(f"model: tiny DiT ({sum(p.numel() for p in model.parameters()):,} parameters, hidden "
        f"{model.x_embedder.proj.out_channels}, depth {len(model.blocks)}, patch {model.patch_size}, "
        f"{model.num_classes} classes + null), {IMAGE_SIZE}x{IMAGE_SIZE}x3 pixels, random weights")
    log(f"sampling: DDPM, {steps} respaced steps, {num_samples} samples, guidance {list(guidance)}, "
        f"{repeats} repeats per path; reference CFG: "
        f"{'forward_with_cfg at every w' if always_cfg else 'forward_with_cfg when w != 1 (official sample.py)'}")
    # warm-up (allocator, oneDNN kernels), not timed
    cgmbench_sample(gen, labels[:2], seeds[:2], 2, 2.0)
    reference_batch(model, labels[:2], seeds[:2], Schedule(2), 2.0)

    results = []
    for w in guidance:
        times = {"cgmbench": [], "reference": []}
        cpu = {"cgmbench": [], "reference": []}  # process CPU seconds (all threads)
        outs = {"cgmbench": [], "reference": []}
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            img = cgmbench_sample(gen, labels, seeds, steps, w)
            times["cgmbench"].append(time.perf_counter() - t0)
            cpu["cgmbench"].append(time.process_time() - c0)
            outs["cgmbench"].append((img, decoder.last))
            t0, c0 = time.perf_counter(), time.process_time()
            x = reference_batch(model, labels, seeds, sched, w, always_cfg)
            times["reference"].append(time.perf_counter() - t0)
            cpu["reference"].append(time.process_time() - c0)
            outs["reference"].append((to_uint8(x), x))
        for name, runs in outs.items():  # every repeat must give the same samples (determinism)
            for img, x in runs[1:]:
                if not torch.equal(img, runs[0][0]):
                    raise AssertionError(f"{name}: repeats at w={w} gave different images")
        (img_c, x_c), (img_r, x_r) = outs["cgmbench"][0], outs["reference"][0]
        float_diff = (x_c - x_r).abs().max().item()
        level_diff = (img_c.int() - img_r.int()).abs()
        r = {"w": w, "float_max_abs_diff": float_diff, "uint8_max_abs_diff": int(level_diff.max()),
             "uint8_pixels_differing": int((level_diff != 0).sum()), "uint8_values": level_diff.numel(),
             "sample_std": x_c.std().item(), "times": times,
             "median": {k: statistics.median(v) for k, v in times.items()},
             "cpu_median": {k: statistics.median(v) for k, v in cpu.items()}}
        r["ratio"] = r["median"]["reference"] / r["median"]["cgmbench"]
        results.append(r)
        if float_diff > atol or r["uint8_max_abs_diff"] > 1 or r["uint8_pixels_differing"] > 1e-3 * level_diff.numel():
            raise AssertionError(f"w={w}: cgmbench and the reference loop disagree (float max |diff| "
                                 f"{float_diff:.3g}, uint8 max |diff| {r['uint8_max_abs_diff']} on "
                                 f"{r['uint8_pixels_differing']} values): the timings would not compare equal work")
        m = r["median"]
        log(f"w = {w:g}: same samples: float max |diff| {float_diff:.2e}, uint8 max |diff| "
            f"{r['uint8_max_abs_diff']} ({r['uint8_pixels_differing']}/{level_diff.numel()} values differ); "
            f"sample std {r['sample_std']:.3f}")
        for name in ("cgmbench", "reference"):
            shown = ", ".join(f"{t:.3f}" for t in times[name])
            log(f"  {name:9s} median {m[name]:7.3f} s  {num_samples / m[name]:8.1f} samples/s   (runs: {shown} s; "
                f"median CPU {r['cpu_median'][name]:.3f} s)")
        cm = r["cpu_median"]
        log(f"  ratio reference / cgmbench: {r['ratio']:.2f}x wall, {cm['reference'] / cm['cgmbench']:.2f}x CPU   "
            f"(load average now {os.getloadavg()[0]:.2f})")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-samples", type=int, default=32)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance", default="1,4", help="comma-separated guidance scales w")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--reference-cfg", choices=("official", "always"), default="official",
                   help="official: the reference calls forward_with_cfg only when w != 1 (as sample.py); "
                        "always: at every w (doubles the reference's work at w = 1)")
    p.add_argument("--atol", type=float, default=1e-4, help="allowed float max |diff| between the two paths")
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))
    print(machine_info())
    t_start = time.perf_counter()
    guidance = [float(v) for v in args.guidance.split(",")]
    results = run_benchmark(args.num_samples, args.steps, guidance, args.repeats,
                            args.reference_cfg == "always", args.atol)
    per_sample, batched = noise_draw_cost(args.num_samples, args.steps)
    best = min(r["median"]["cgmbench"] for r in results)
    print(f"cgmbench's per-sample noise draws ({args.steps + 1} x {args.num_samples} rows) made alone: "
          f"{per_sample:.4f} s ({100 * per_sample / best:.1f}% of its fastest median); one batched randn per "
          f"step instead: {batched:.4f} s")
    la = os.getloadavg()
    print(f"load average (1/5/15 min) after: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}; "
          f"total {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
