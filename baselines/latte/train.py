"""Training recipe of the tiny shipped Latte: ``cgmbench train --model latte --task shapes-t2v --config tiny``.

The official ``train.py`` (Latte-XL/2 on VAE latents, AdamW lr 1e-4, EMA 0.9999, DiT's hybrid loss with the
learned variance, uniform t over 1000 steps) is kept in its loss, schedule, network and EMA; ``tiny`` deviates
where a CPU budget of well under an hour on a shared machine needs it:

* **pixel space** (8 frames of 32x32, patch 4, 64 patches per frame): no VAE to train or ship;
* width 96, depth 4 (2 spatial/temporal pairs), 4 heads; batch 8; lr 1e-3 with 100 warm-up steps, then constant;
  EMA 0.995 (0.9999 would still hold the zero adaLN-Zero init after a few thousand steps); 1,000 steps (1,226 s
  wall on the loaded 2-core machine with ``OMP_NUM_THREADS=1``, rendering the 4,000 training videos included);
* a **fixed** (DDPM "large") variance instead of the learned one (``learn_sigma=False``, a flag of Latte's own
  constructor): after 600 steps the learned variance channels still spread over [-3.5, 5] (std 0.8) per pixel,
  far outside the [-1, 1] interpolation range, and a budget this short cannot train them;
* patch 4 rather than 8: an eps network must pass the noise of its patch through one token. At patch 8 (192
  values a token) and width 96 the eps model plateaued at MSE 0.51 even at t = 900, where eps is nearly x_t
  itself; at width 192 (600 steps) it denoised training videos in one step (x0 MSE 0.0001 at t = 0, 0.007 at
  t = 50) but its sampled videos stayed patch-wise noise with DDPM and DDIM, w = 1 and 4, learned or fixed
  variance: what a token cannot represent of the noise is never removed. Patch 4 puts 48 values in a 96-wide
  token, the ratio of the working DiT tiny recipe (48 in 128), at the same cost per step as patch 8 width 192;
* the network predicts **eps**, as the official Latte (issue 16). The first shipped file predicted x0 and sampled
  per-patch colour blocks. Diagnosis (2026-12-02): the sampler is right -- an oracle returning the exact training
  target reproduces the training videos exactly (``tests/unit/test_latte_generator.py``, DDPM and DDIM, with
  guidance) -- but the x0 network had not learned to use its input: on clean training videos (t = 0) its x0 had
  MSE 0.065, the mean video's 0.073. Over-fitting 4 fixed videos shows why: with the x0 target (patch 8 width 96
  or patch 4 width 128, lr 1e-3 or 2e-4) the MSE sat at the mean video's 0.073 at every t, t = 0 included, for
  100-300 steps (the dark background is most of every frame, so the mean video is a deep first minimum), while
  the eps target gave an x0 of MSE 0.0001 at t = 0 and 0.023 at t = 100 (x_t itself: 0.03) after 50 steps;
* text through the shapes word encoder (:class:`baselines.common.text_encoders.ShapesWordEncoder`, 16 tokens of
  width 64), its tokens flattened into Latte's ``text_embedding_projection`` (the official extras=78 path with
  16x64 instead of 77x768); 10% of captions dropped to the empty prompt for guidance. The encoder is **frozen** at
  its seeded random initialisation (``freeze_text_encoder``), as the official text-to-video Latte keeps its
  pre-trained text encoder frozen. Trained jointly (the first shipped checkpoint), it collapsed: its only route to
  the loss is the adaLN conditioning, which starts at zero (adaLN-Zero) and then pushes every prompt's tokens the
  same way, so AdamW grew the shared biases of its blocks by ~lr per step until they swamped the 0.02-scale word
  embeddings; after LayerNorm every prompt gave the same tokens (mean |difference| 0.002 between two captions,
  0.17 at initialisation), the network ignored the text and guidance did nothing (w = 1 and w = 4 gave the same
  FVD). Measured over 300 steps of this recipe: the network's x0 prediction at t = 900 changes by 0.0000 of its
  norm between two captions when the encoder trains, by 0.02-0.03 when it is frozen.

Writes ``OUT/latte-<task>-<config>.safetensors`` (EMA weights, float16, configuration in the metadata) and its
``.json`` card, plus the resumable ``OUT/latte.state.pt`` and ``OUT/loss.csv``.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch

from baselines.common.shipped import save_shipped
from baselines.common.training import TrainLoop, caption_dropout
from baselines.latte.sampling import build_latte, latte_diffusion, latte_eps_model
from cgmbench.errors import CgmbenchError

__all__ = ["LATTE_TINY_CONFIGS", "shapes_video_training_set", "train_latte"]

LATTE_TINY_CONFIGS: dict[str, dict] = {
    "tiny": dict(
        resolution=32,
        latte=dict(input_size=32, patch_size=4, in_channels=3, hidden_size=96, depth=4, num_heads=4,
                   mlp_ratio=4.0, num_frames=8, class_dropout_prob=0.0, num_classes=None, learn_sigma=False,
                   extras=78, text_tokens=16, text_width=64),
        text_encoder=dict(context_length=16, width=64, layers=2, heads=4),
        train=dict(items=4000, batch_size=8, steps=1000, lr=1e-3, warmup=100, ema_decay=0.995,
                   caption_dropout=0.1),
        defaults=dict(guidance_scale=4.0, steps=50, sampler="ddpm"),
        clip_denoised=True,
        # the word encoder stays at its seeded initialisation (see the module docstring: trained jointly it collapses)
        freeze_text_encoder=True,
        # the network predicts eps, as official Latte (the x0 target stalled at the mean video, see the docstring)
        prediction="eps",
    ),
}


def shapes_video_training_set(task, n: int) -> tuple[torch.Tensor, list[str]]:
    """Items ``0..n-1`` of the ``train`` split of a shapes text-to-video task: uint8 ``[n, T, 3, H, W]`` and captions."""
    from cgmbench.sources.base import open_source

    if task.kind != "text-to-video" or task.conditions.get("source") != "shapes":
        raise CgmbenchError(f"the tiny Latte recipe trains on the shapes world's videos; task {task.name!r} is "
                            f"{task.kind} from {task.conditions.get('source')!r}", "use --task shapes-t2v")
    source = open_source(task, "conditions", split="train")
    n = min(int(n), len(source))
    indices = list(range(n))
    videos = torch.from_numpy(np.ascontiguousarray(source.references(indices)))
    texts = [source.item(i)["text"] for i in indices]
    return videos, texts


def train_latte(task, config: str = "tiny", out=None, resume: bool = False, steps: int | None = None,
                seed: int = 0, device: str = "cpu", log=print) -> Path:
    if config not in LATTE_TINY_CONFIGS:
        raise CgmbenchError(f"unknown latte training config {config!r}", f"known: {', '.join(LATTE_TINY_CONFIGS)}")
    cfg = copy.deepcopy(LATTE_TINY_CONFIGS[config])
    tc = cfg["train"]
    if steps is not None:
        tc["steps"] = int(steps)
    if task.resolution != cfg["resolution"] or int(task.frames or 0) != cfg["latte"]["num_frames"]:
        raise CgmbenchError(f"the {config} Latte recipe makes {cfg['latte']['num_frames']} frames of "
                            f"{cfg['resolution']}x{cfg['resolution']}; task {task.name} has {task.frames} frames of "
                            f"{task.resolution}x{task.resolution}", "use --task shapes-t2v")
    out = Path(out or f"runs/train/latte-{task.name}-{config}")
    if out.exists() and any(out.glob("*.state.pt")) and not resume:
        raise CgmbenchError(f"{out} already holds a training run", "continue it with --resume or choose --out")
    torch.manual_seed(seed)
    t_start = time.perf_counter()
    model, text = build_latte(cfg)
    videos, texts = shapes_video_training_set(task, tc["items"])
    x_all = videos.float() / 127.5 - 1.0  # [n, T, 3, H, W]
    n, bs = len(texts), tc["batch_size"]
    log(f"[latte] {n} training videos; latte {sum(p.numel() for p in model.parameters()):,} params, text "
        f"{sum(p.numel() for p in text.parameters()):,} ({time.perf_counter() - t_start:.1f}s to render)")
    # 1000 steps, learned-range variance, hybrid loss (DiT/Latte); x0 target for the tiny recipe (see the docstring)
    diffusion = latte_diffusion(cfg.get("prediction", "eps"), cfg["latte"]["learn_sigma"])
    frozen = bool(cfg.get("freeze_text_encoder", False))
    if frozen:  # a fixed function of the caption: rebuilt identically from the seed on --resume
        text.eval().requires_grad_(False)
    trained = {"latte": model} if frozen else {"latte": model, "text": text}
    loop = TrainLoop("latte", out, trained, lr=tc["lr"], warmup=tc["warmup"],
                     ema_decay=tc["ema_decay"], seed=seed, log=log)
    if resume:
        loop.resume()

    def step_fn(mods, g, step):
        idx = torch.randint(0, n, (bs,), generator=g)
        x0 = x_all[idx].transpose(1, 2)  # sampler layout (N, C, F, H, W)
        t = torch.randint(0, diffusion.num_timesteps, (bs,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        prompts = caption_dropout([texts[i] for i in idx.tolist()], tc["caption_dropout"], g)
        if frozen:
            with torch.no_grad():
                tokens, _, _ = text.encode(prompts)
        else:
            tokens, _, _ = mods["text"].encode(prompts)
        terms = diffusion.training_losses(latte_eps_model(mods["latte"]), x0, t,
                                          model_kwargs={"text_embedding": tokens}, noise=noise)
        return terms["loss"].mean()

    loss = loop.run(tc["steps"], step_fn)
    tensors = {f"model.{k}": v for k, v in loop.ema["latte"].state_dict().items()}
    text_state = text.state_dict() if frozen else loop.ema["text"].state_dict()
    tensors.update({f"text_encoder.{k}": v for k, v in text_state.items()})
    release = dict(cfg, model="latte", name=config, task=task.name)
    release.pop("train")
    card = {"model": "latte", "variant": f"{task.name}-{config}",
            "command": f"cgmbench train --model latte --task {task.name} --config {config} --seed {seed} --out OUT"
                       + (f" --steps {steps}" if steps is not None else ""),
            "train_config": tc, "steps": loop.step, "final_loss": loss, "seed": seed,
            "train_seconds": round(time.perf_counter() - t_start, 1), "torch": torch.__version__}
    path = save_shipped(out / f"latte-{task.name}-{config}.safetensors", tensors, release, card)
    log(f"[latte] wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return path
