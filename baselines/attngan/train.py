"""The tiny AttnGAN recipe: ``cgmbench train --model attngan --task shapes-t2i [--config tiny]``.

As the paper (Xu et al. 2018), in two phases:

1. **DAMSM pre-training**: the bidirectional-LSTM ``RNN_ENCODER`` over the shapes vocabulary and
   :class:`ShapesImageEncoder` (stand-in for the Inception ``CNN_ENCODER``) trained jointly with the word- and
   sentence-level DAMSM losses (:mod:`baselines.attngan.damsm`; Adam lr 2e-3 as ``TRAIN.ENCODER_LR``).
2. **GAN training** with both encoders frozen: ``G_NET`` (two branches, 64 and 128 px) against ``D_NET64`` and
   ``D_NET128``; discriminator loss per branch = matching-aware conditional terms on the sentence embedding plus the
   unconditional terms (``(real + cond_real) / 2 + (fake + cond_fake + cond_wrong) / 3``); generator loss = the
   adversarial terms of every branch + ``lambda * DAMSM(last image, caption)`` (``TRAIN.SMOOTH.LAMBDA``) +
   the CA KL term; Adam lr 2e-4, betas (0.5, 0.999).

Real 32x32 renders are upscaled by pixel replication to 64 and 128. Deviations (CPU minutes): tiny widths, two
branches instead of three, the small image encoder.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from baselines.attngan.damsm import ShapesImageEncoder, damsm_loss
from baselines.attngan.text import encode_captions, shapes_attngan_vocabulary
from baselines.attngan.models import D_NET64, D_NET128, G_NET, RNN_ENCODER
from baselines.common.gan_training import (
    GANTrainLoop,
    ca_kl_loss,
    generator_adv_loss,
    matching_aware_d_loss,
    mismatched_indices,
    upscale_nearest,
)
from baselines.common.monitor import LossLog, TrainingMonitor
from baselines.common.shipped import save_shipped
from baselines.common.training import shapes_t2i_training_set
from cgmbench.errors import CgmbenchError
from cgmbench.seeding import derive_seed, torch_generator

__all__ = ["ATTNGAN_TINY_CONFIGS", "train_attngan", "pretrain_damsm"]

ATTNGAN_TINY_CONFIGS = {
    # Measured on shapes-t2i (judge overall; noise 0.000). The first recipe (GF_DIM 4, lr 2e-4 for D, KL 1, no EMA,
    # 1,000 steps) shipped at judge 0.000, FID 13605: the 128x128 discriminator wins outright (d_fake 0.001-0.005)
    # and the samples stay coloured textures, also at 6,000 steps with EMA. This recipe: GF_DIM 8, lr_D 5e-5,
    # KL 0.2, EMA 0.999, DAMSM 600 steps, 5,000 GAN steps -> 0.023 [0.008, 0.043], FID 1902 at N = 256.
    "tiny": dict(
        words_num=16,
        g=dict(branch_num=2, gf_dim=8, z_dim=32, condition_dim=32, r_num=1, embedding_dim=64),
        text_encoder=dict(ninput=32, nhidden=64, drop_prob=0.3),
        image_encoder=dict(nef=64, width=32),
        d=dict(df_dim=8),
        damsm=dict(steps=600, batch_size=48, lr=2e-3),
        train=dict(items=10000, batch_size=16, steps=5000, lr_g=2e-4, lr_d=5e-5, kl_coeff=0.2, damsm_lambda=5.0,
                   ema_decay=0.999),
    ),
}


def pretrain_damsm(text: RNN_ENCODER, image: ShapesImageEncoder, real32: torch.Tensor, texts: list[str],
                   wordtoix: dict, words_num: int, *, steps: int, batch_size: int, lr: float, seed: int, out: Path,
                   resume: bool = False, save_every: int = 100, log=print):
    """Phase 1: DAMSM loss on matching (caption, image) batches; returns the last 50 steps' mean loss.

    Checkpoints ``OUT/damsm.state.pt`` (encoders, optimizer, the global RNG that the encoder's dropout draws from,
    step) every ``save_every`` steps, every few minutes and on Ctrl-C; ``resume`` continues from it exactly."""
    params = list(text.parameters()) + list(image.parameters())
    opt = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))
    text.train(), image.train()
    caps, lens, _ = encode_captions(texts, wordtoix, words_num)
    state_path = Path(out) / "damsm.state.pt"
    start = 0
    if resume and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        text.load_state_dict(state["text"]), image.load_state_dict(state["image"])
        opt.load_state_dict(state["opt"])
        torch.set_rng_state(state["torch_rng"])
        start = int(state["step"])
        log(f"[damsm] resumed at step {start} from {state_path}")
    with TrainingMonitor(out, "damsm", steps, start, log, save_every=save_every, show=("loss",),
                         checkpoint_path=state_path) as mon:
        for step in range(start, steps):
            g = torch_generator(derive_seed("cgmbench-damsm", seed, step))
            idx = torch.randint(0, len(texts), (batch_size,), generator=g)
            words, sent = text(caps[idx], lens[idx])
            mask = caps[idx][:, : words.shape[2]] == 0
            local, glob = image(real32[idx])
            loss, _ = damsm_loss(words, mask, sent, local, glob, [texts[i] for i in idx.tolist()])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 0.25)  # the official DAMSM trainer clips at TRAIN.RNN_GRAD_CLIP
            opt.step()
            mon.update(step + 1, {"loss": loss.item()})
            if mon.checkpoint_due(step + 1):
                tmp = state_path.with_suffix(".tmp")
                torch.save({"text": text.state_dict(), "image": image.state_dict(), "opt": opt.state_dict(),
                            "torch_rng": torch.get_rng_state(), "step": step + 1}, tmp)
                tmp.replace(state_path)
                mon.saved(step + 1, state_path)
    text.eval(), image.eval()
    text.requires_grad_(False), image.requires_grad_(False)
    recent = [r["loss"] for r in LossLog(Path(out) / "loss.csv").rows("damsm")][-50:]
    return sum(recent) / max(1, len(recent))


def train_attngan(task, config: str = "tiny", out=None, resume: bool = False, steps: int | None = None,
                  seed: int = 0, log=print) -> Path:
    if config not in ATTNGAN_TINY_CONFIGS:
        raise CgmbenchError(f"unknown attngan training config {config!r}", f"known: {', '.join(ATTNGAN_TINY_CONFIGS)}")
    cfg = copy.deepcopy(ATTNGAN_TINY_CONFIGS[config])
    tc = cfg["train"]
    if steps is not None:
        tc["steps"] = int(steps)
    out = Path(out or f"runs/train/attngan-{task.name}-{config}")
    if out.exists() and any(out.glob("*.state.pt")) and not resume:
        raise CgmbenchError(f"{out} already holds a training run", "continue it with --resume or choose --out")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    torch.manual_seed(seed)
    wordtoix = shapes_attngan_vocabulary()
    words_num = cfg["words_num"]
    cfg["text_encoder"].update(ntoken=len(wordtoix), n_steps=words_num)
    text = RNN_ENCODER(**cfg["text_encoder"])
    image = ShapesImageEncoder(**cfg["image_encoder"])
    images, texts = shapes_t2i_training_set(task, tc["items"])
    real32 = upscale_nearest(images, 32)
    n = len(texts)

    damsm_path = out / "damsm.pt"
    if resume and damsm_path.is_file():
        state = torch.load(damsm_path, map_location="cpu", weights_only=True)
        text.load_state_dict(state["text"]), image.load_state_dict(state["image"])
        text.eval().requires_grad_(False), image.eval().requires_grad_(False)
        damsm_final = float(state["loss"])
        if "torch_rng" in state:  # the GAN networks below are initialised from the global RNG, as in a straight run
            torch.set_rng_state(state["torch_rng"])
    else:
        dc = cfg["damsm"]
        damsm_final = pretrain_damsm(text, image, real32, texts, wordtoix, words_num, steps=dc["steps"],
                                     batch_size=dc["batch_size"], lr=dc["lr"], seed=seed, out=out, resume=resume,
                                     log=log)
        torch.save({"text": text.state_dict(), "image": image.state_dict(), "loss": torch.tensor(damsm_final),
                    "torch_rng": torch.get_rng_state()}, damsm_path)

    net_g = G_NET(**cfg["g"], mask_alignment="per_sample")
    nef = cfg["g"]["embedding_dim"]
    d_nets = {"netD64": D_NET64(cfg["d"]["df_dim"], nef), "netD128": D_NET128(cfg["d"]["df_dim"], nef)}
    caps, lens, _ = encode_captions(texts, wordtoix, words_num)
    log(f"[attngan] {n} items; G {sum(p.numel() for p in net_g.parameters()):,} params, "
        f"D {sum(p.numel() for m in d_nets.values() for p in m.parameters()):,}")
    loop = GANTrainLoop("attngan", out, {"netG": net_g}, d_nets, lr_g=tc["lr_g"], lr_d=tc["lr_d"], seed=seed,
                        ema_decay=tc.get("ema_decay", 0.0), log=log)
    if resume:
        loop.resume()
    bs, batch = tc["batch_size"], {}

    def d_step(g, step):
        idx = torch.randint(0, n, (bs,), generator=g)
        btexts = [texts[i] for i in idx.tolist()]
        wrong = mismatched_indices(btexts, g)
        with torch.no_grad():
            words, sent = text(caps[idx], lens[idx])
        mask = caps[idx][:, : words.shape[2]] == 0
        z = torch.randn(bs, cfg["g"]["z_dim"], generator=g)
        eps = torch.randn(bs, cfg["g"]["condition_dim"], generator=g)
        fakes, _, mu, logvar = net_g(z, sent, words, mask, ca_eps=eps)
        batch.update(fakes=fakes, mu=mu, logvar=logvar, sent=sent, words=words, mask=mask, texts=btexts)
        loss, logs = 0.0, {}
        for (name, d), fake in zip(d_nets.items(), fakes):
            real = upscale_nearest(images[idx], fake.shape[-1])
            li, lg = matching_aware_d_loss(d.COND_DNET, d.UNCOND_DNET, d(real), d(fake.detach()), sent, wrong)
            loss = loss + li
            logs.update({f"{name}.{k}": v for k, v in lg.items()})
        return loss, logs

    def g_step(g, step):
        adv = 0.0
        for d, fake in zip(d_nets.values(), batch["fakes"]):
            adv = adv + generator_adv_loss(d.COND_DNET, d.UNCOND_DNET, d(fake), batch["sent"])
        local, glob = image(batch["fakes"][-1])
        damsm, dl = damsm_loss(batch["words"], batch["mask"], batch["sent"], local, glob, batch["texts"])
        kl = ca_kl_loss(batch["mu"], batch["logvar"])
        loss = adv + tc["damsm_lambda"] * damsm + tc["kl_coeff"] * kl
        return loss, {"g_adv": adv.item(), "kl": kl.item(), **dl}

    losses = loop.run(tc["steps"], d_step, g_step)
    tensors = {f"netG.{k}": v for k, v in loop.ema["netG"].state_dict().items()}
    tensors.update({f"text_encoder.{k}": v for k, v in text.state_dict().items()})
    release = {"model": "attngan", "name": config, "g": cfg["g"], "text_encoder": cfg["text_encoder"],
               "words_num": words_num, "vocabulary": list(wordtoix), "resolution": 64 * 2 ** (cfg["g"]["branch_num"] - 1)}
    card = {"model": "attngan", "variant": f"{task.name}-{config}",
            "command": f"cgmbench train --model attngan --task {task.name} --config {config} --seed {seed} --out OUT"
                       + (f" --steps {steps}" if steps is not None else ""),
            "train_config": tc, "damsm": cfg["damsm"], "image_encoder": cfg["image_encoder"], "d": cfg["d"],
            "damsm_final_loss": damsm_final, "steps": loop.step, "final_losses": losses, "seed": seed,
            "train_seconds": round(time.perf_counter() - t_start, 1), "torch": torch.__version__}
    path = save_shipped(out / f"attngan-{task.name}-{config}.safetensors", tensors, release, card)
    log(f"[attngan] wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return path
