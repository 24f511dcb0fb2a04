"""The tiny StackGAN recipe: ``cgmbench train --model stackgan --task shapes-t2i [--config tiny]``.

Stage I of the paper (Zhang et al. 2017, §3.2) on the shapes world: ``STAGE1_G`` (64x64) against ``STAGE1_D``
with the matching-aware loss (real+matching -> 1, real+mismatching and fake -> 0, ``errD = real + (wrong +
fake) / 2``), the generator loss ``-log D(G(z, c), mu) + KL_coe * KL(N(mu, sigma) || N(0, I))``
(``TRAIN.COEFF.KL = 2``), Adam (lr 2e-4, betas 0.5/0.999) for both. The discriminator is conditioned on the
detached ``mu`` as the official trainer does. Real 32x32 renders are upscaled to 64x64 by pixel replication;
the text input is the fixed :class:`ShapesOneHotText` (stand-in for the fixed char-CNN-RNN embedding).
Deviation: no Stage II (a 256x256 stage would not train on a CPU in minutes); the task's clean resize brings the
64x64 samples to 32x32.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from baselines.common.gan_training import (
    GANTrainLoop,
    ca_kl_loss,
    generator_adv_loss,
    matching_aware_d_loss,
    mismatched_indices,
    upscale_nearest,
)
from baselines.common.shipped import save_shipped
from baselines.common.training import shapes_t2i_training_set
from baselines.stackgan.text import ShapesOneHotText
from baselines.stackgan.models import STAGE1_D, STAGE1_G
from cgmbench.errors import CgmbenchError

__all__ = ["STACKGAN_TINY_CONFIGS", "train_stackgan"]

STACKGAN_TINY_CONFIGS = {
    "tiny": dict(
        context_length=16,
        g=dict(z_dim=32, gf_dim=12, condition_dim=32),
        d=dict(df_dim=16),
        train=dict(items=10000, batch_size=32, steps=1500, lr_g=2e-4, lr_d=2e-4, kl_coeff=2.0),
    ),
}


def train_stackgan(task, config: str = "tiny", out=None, resume: bool = False, steps: int | None = None,
                   seed: int = 0, log=print) -> Path:
    if config not in STACKGAN_TINY_CONFIGS:
        raise CgmbenchError(f"unknown stackgan training config {config!r}", f"known: {', '.join(STACKGAN_TINY_CONFIGS)}")
    cfg = copy.deepcopy(STACKGAN_TINY_CONFIGS[config])
    tc = cfg["train"]
    if steps is not None:
        tc["steps"] = int(steps)
    out = Path(out or f"runs/train/stackgan-{task.name}-{config}")
    if out.exists() and any(out.glob("*.state.pt")) and not resume:
        raise CgmbenchError(f"{out} already holds a training run", "continue it with --resume or choose --out")
    t_start = time.perf_counter()
    torch.manual_seed(seed)
    text = ShapesOneHotText(cfg["context_length"])
    cfg["g"]["text_dim"] = text.dim
    net_g = STAGE1_G(**cfg["g"])
    net_d = STAGE1_D(df_dim=cfg["d"]["df_dim"], condition_dim=cfg["g"]["condition_dim"])
    images, texts = shapes_t2i_training_set(task, tc["items"])
    real_all = upscale_nearest(images, 64)
    emb_all, _ = text(texts)
    n, bs = len(texts), tc["batch_size"]
    log(f"[stackgan] {n} items; G {sum(p.numel() for p in net_g.parameters()):,} params, "
        f"D {sum(p.numel() for p in net_d.parameters()):,}")
    loop = GANTrainLoop("stackgan", out, {"netG": net_g}, {"netD": net_d}, lr_g=tc["lr_g"], lr_d=tc["lr_d"],
                        seed=seed, log=log)
    if resume:
        loop.resume()
    batch = {}

    def d_step(g, step):
        idx = torch.randint(0, n, (bs,), generator=g)
        btexts = [texts[i] for i in idx.tolist()]
        wrong = mismatched_indices(btexts, g)
        emb, real = emb_all[idx], real_all[idx]
        z = torch.randn(bs, cfg["g"]["z_dim"], generator=g)
        ca_eps = torch.randn(bs, cfg["g"]["condition_dim"], generator=g)
        _, fake, mu, logvar = net_g(emb, z, ca_eps=ca_eps)
        batch.update(fake=fake, mu=mu, logvar=logvar)
        mu_d = mu.detach()
        loss, logs = matching_aware_d_loss(net_d.get_cond_logits, None, net_d(real), net_d(fake.detach()), mu_d, wrong)
        return loss, logs

    def g_step(g, step):
        mu = batch["mu"]
        adv = generator_adv_loss(net_d.get_cond_logits, None, net_d(batch["fake"]), mu.detach())
        kl = ca_kl_loss(mu, batch["logvar"])
        return adv + tc["kl_coeff"] * kl, {"g_adv": adv.item(), "kl": kl.item()}

    losses = loop.run(tc["steps"], d_step, g_step)
    tensors = {f"netG.{k}": v for k, v in loop.ema["netG"].state_dict().items()}
    release = {"model": "stackgan", "name": config, "stage": 1, "context_length": cfg["context_length"],
               "vocabulary": list(text.vocabulary), "g": cfg["g"], "resolution": 64}
    card = {"model": "stackgan", "variant": f"{task.name}-{config}",
            "command": f"cgmbench train --model stackgan --task {task.name} --config {config} --seed {seed} --out OUT"
                       + (f" --steps {steps}" if steps is not None else ""),
            "train_config": tc, "d": cfg["d"], "steps": loop.step, "final_losses": losses, "seed": seed,
            "train_seconds": round(time.perf_counter() - t_start, 1), "torch": torch.__version__}
    path = save_shipped(out / f"stackgan-{task.name}-{config}.safetensors", tensors, release, card)
    log(f"[stackgan] wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return path
