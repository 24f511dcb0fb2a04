"""What the GAN-era families (StackGAN, AttnGAN) share: truncated noise, real images at a GAN's sizes, the
matching-aware discriminator loss, the conditioning-augmentation KL term, and a deterministic, resumable
two-optimizer training loop.

* :func:`truncated_noise`: ``N(0, 1)`` restricted to ``[-t, t]`` (DF-GAN's ``truncated_noise``, which draws from
  ``scipy.stats.truncnorm(-t, t)``), drawn here by the inverse CDF from a per-sample ``torch.Generator``;
  ``t <= 0`` is the plain normal the StackGAN/AttnGAN papers sample with.
* :func:`ca_kl_loss`: ``KL(N(mu, exp(logvar)) || N(0, I))`` averaged over batch and dimensions (StackGAN eq. 3's
  regulariser, ``TRAIN.COEFF.KL``).
* :func:`matching_aware_d_loss`: the discriminator sees (real, matching text) -> 1, (real, mismatching text) -> 0,
  (fake, text) -> 0 (Reed et al. 2016's GAN-CLS, used by StackGAN and AttnGAN), plus the unconditional
  real/fake terms when the discriminator has an unconditional head; the weighting is AttnGAN's
  ``(real + cond_real) / 2 + (fake + cond_fake + cond_wrong) / 3`` with an unconditional head and StackGAN's
  ``real + (wrong + fake) / 2`` without one.
* :class:`GANTrainLoop`: generator and discriminator optimizers (Adam, betas (0.5, 0.999) as both papers),
  ``<name>.state.pt`` checkpoints (plain tensors, read back with ``weights_only=True``; every ``save_every`` steps,
  every few minutes and on Ctrl-C), progress with ETA and ``OUT/loss.csv`` (:mod:`baselines.common.monitor`), exact
  resumption (step ``k``'s randomness comes only from ``derive_seed(seed, name, k)``).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from baselines.common.monitor import LossLog, TrainingMonitor, import_jsonl_log
from cgmbench.generator import Knob
from cgmbench.seeding import derive_seed, torch_generator

__all__ = ["GAN_KNOBS", "with_defaults", "truncated_noise", "ca_kl_loss", "matching_aware_d_loss", "generator_adv_loss", "upscale_nearest",
           "mismatched_indices", "GANTrainLoop"]


#: the knobs of the GAN-era families (StackGAN, AttnGAN)
GAN_KNOBS = (
    Knob("truncation", 0.0, "truncated noise: z ~ N(0, 1) restricted to [-t, t] (DF-GAN's FID protocol uses "
         "0.88); 0 = the untruncated normal of the papers", minimum=0.0, maximum=10.0),
    Knob("ca_noise", "on", "conditioning-augmentation noise: on = c ~ N(mu, sigma^2) as the papers sample; "
         "off = c = mu", kind="choice", choices=("on", "off")),
)


def with_defaults(knobs: tuple[Knob, ...], defaults: dict) -> tuple[Knob, ...]:
    """``knobs`` with the defaults a shipped file names (its recipe's chosen point); an unknown name or a value out
    of the knob's range is one clear error."""
    import dataclasses

    from cgmbench.errors import CgmbenchError

    by_name = {k.name: k for k in knobs}
    unknown = sorted(set(defaults) - set(by_name))
    if unknown:
        raise CgmbenchError(f"the checkpoint sets defaults for unknown knobs {unknown}", f"known: {', '.join(by_name)}")
    return tuple(dataclasses.replace(k, default=k.parse(defaults[k.name])) if k.name in defaults else k for k in knobs)


def truncated_noise(shape, generator: torch.Generator | None, truncation: float = 0.0) -> torch.Tensor:
    """``N(0, 1)`` samples of ``shape``; with ``truncation = t > 0`` restricted to ``[-t, t]`` (inverse CDF of
    ``u ~ U(Phi(-t), Phi(t))``: the distribution of DF-GAN's ``truncnorm.rvs(-t, t)``)."""
    if truncation is None or truncation <= 0:
        return torch.randn(shape, generator=generator)
    t = float(truncation)
    lo = 0.5 * (1.0 + math.erf(-t / math.sqrt(2.0)))
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    z = torch.special.ndtri(lo + (1.0 - 2.0 * lo) * u)
    return z.clamp_(-t, t).float()


def ca_kl_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean over batch and dimensions of ``KL(N(mu, exp(logvar)) || N(0, 1))``."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def _bce(p: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy(p.clamp(1e-7, 1 - 1e-7), torch.full_like(p, target))


def matching_aware_d_loss(d_cond: Callable, d_uncond: Callable | None, real_code, fake_code, cond,
                          wrong: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Discriminator loss on image codes: ``d_cond(code, cond)`` and ``d_uncond(code)`` return probabilities;
    ``wrong`` indexes the mismatching condition of each real image."""
    real = _bce(d_cond(real_code, cond), 1.0)
    wrong_l = _bce(d_cond(real_code, cond[wrong]), 0.0)
    fake = _bce(d_cond(fake_code, cond), 0.0)
    if d_uncond is None:
        loss = real + 0.5 * (wrong_l + fake)
        return loss, {"d_real": real.item(), "d_wrong": wrong_l.item(), "d_fake": fake.item()}
    u_real = _bce(d_uncond(real_code), 1.0)
    u_fake = _bce(d_uncond(fake_code), 0.0)
    loss = (u_real + real) / 2.0 + (u_fake + fake + wrong_l) / 3.0
    return loss, {"d_real": real.item(), "d_wrong": wrong_l.item(), "d_fake": fake.item()}


def generator_adv_loss(d_cond: Callable, d_uncond: Callable | None, fake_code, cond) -> torch.Tensor:
    loss = _bce(d_cond(fake_code, cond), 1.0)
    if d_uncond is not None:
        loss = loss + _bce(d_uncond(fake_code), 1.0)
    return loss


def mismatched_indices(texts: list[str], generator: torch.Generator) -> torch.Tensor:
    """For each item an index of another item with a different caption (a random one; the item itself only if
    every caption in the batch is the same)."""
    n = len(texts)
    out = []
    perm = torch.randperm(n, generator=generator).tolist()
    for i in range(n):
        j = next((k for k in perm[i:] + perm[:i] if texts[k] != texts[i]), i)
        out.append(j)
    return torch.tensor(out, dtype=torch.int64)


def upscale_nearest(images_uint8: torch.Tensor, side: int) -> torch.Tensor:
    """uint8 ``[N, 3, h, h]`` -> float ``[N, 3, side, side]`` in ``[-1, 1]`` by pixel replication."""
    x = images_uint8.float() / 127.5 - 1.0
    if x.shape[-1] != side:
        x = F.interpolate(x, size=(side, side), mode="nearest")
    return x


class GANTrainLoop:
    """Alternating D and G updates: ``d_step(g, step) -> (loss, logs)`` then ``g_step(g, step) -> (loss, logs)``,
    both with the same per-step ``torch.Generator`` ``g``. EMA weights of the generator modules are kept
    (``ema_decay``; 0 keeps a plain copy of the last weights)."""

    def __init__(self, name: str, out: Path, g_modules: dict[str, nn.Module], d_modules: dict[str, nn.Module], *,
                 lr_g: float, lr_d: float, seed: int, ema_decay: float = 0.0, save_every: int = 200,
                 log: Callable = print):
        self.name, self.out, self.seed, self.log = name, Path(out), seed, log
        self.g_modules, self.d_modules = g_modules, d_modules
        self.save_every, self.ema_decay = save_every, ema_decay
        g_params = [p for m in g_modules.values() for p in m.parameters() if p.requires_grad]
        d_params = [p for m in d_modules.values() for p in m.parameters() if p.requires_grad]
        self.opt_g = torch.optim.Adam(g_params, lr=lr_g, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(d_params, lr=lr_d, betas=(0.5, 0.999))
        self.ema = {k: copy.deepcopy(m).eval().requires_grad_(False) for k, m in g_modules.items()}
        self.step = 0
        self.out.mkdir(parents=True, exist_ok=True)
        self.state_path = self.out / f"{name}.state.pt"
        self.legacy_log_path = self.out / f"{name}.loss.jsonl"  # the log before loss.csv (imported on resume)

    def _all(self) -> dict[str, nn.Module]:
        return {**{f"g.{k}": m for k, m in self.g_modules.items()}, **{f"d.{k}": m for k, m in self.d_modules.items()}}

    def resume(self) -> bool:
        if not self.state_path.is_file():
            return False
        state = torch.load(self.state_path, map_location="cpu", weights_only=True)
        for k, m in self._all().items():
            m.load_state_dict(state["model"][k])
        for k, m in self.ema.items():
            m.load_state_dict(state["ema"][k])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step = int(state["step"])
        import_jsonl_log(LossLog(self.out / "loss.csv"), self.name, self.legacy_log_path, self.step)
        self.log(f"[{self.name}] resumed at step {self.step} from {self.state_path}")
        return True

    def save(self) -> None:
        state = {"model": {k: m.state_dict() for k, m in self._all().items()},
                 "ema": {k: m.state_dict() for k, m in self.ema.items()},
                 "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "step": self.step}
        tmp = self.state_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.state_path)

    def run(self, total_steps: int, d_step: Callable, g_step: Callable) -> dict:
        for m in self._all().values():
            m.train()
        with TrainingMonitor(self.out, self.name, total_steps, self.step, self.log, save_every=self.save_every,
                             show=("d_loss", "g_loss"), checkpoint_path=self.state_path) as mon:
            while self.step < total_steps:
                g = torch_generator(derive_seed("cgmbench-gan-train", self.name, self.seed, self.step))
                d_loss, d_logs = d_step(g, self.step)
                self.opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                self.opt_d.step()
                g_loss, g_logs = g_step(g, self.step)
                self.opt_g.zero_grad(set_to_none=True)
                self.opt_d.zero_grad(set_to_none=True)
                g_loss.backward()
                self.opt_g.step()
                self.step += 1
                if self.ema_decay > 0:
                    decay = min(self.ema_decay, (1 + self.step) / (10 + self.step))
                    with torch.no_grad():
                        for k, m in self.g_modules.items():
                            for pe, p in zip(self.ema[k].parameters(), m.parameters()):
                                pe.mul_(decay).add_(p.detach(), alpha=1 - decay)
                            for be, b in zip(self.ema[k].buffers(), m.buffers()):
                                be.copy_(b)
                else:
                    for k, m in self.g_modules.items():
                        self.ema[k].load_state_dict(m.state_dict())
                mon.update(self.step, {"d_loss": d_loss.item(), "g_loss": g_loss.item(), **d_logs, **g_logs})
                if mon.checkpoint_due(self.step):
                    self.save()
                    mon.saved(self.step, self.state_path)
        for m in self._all().values():
            m.eval()
        return self.final_losses()

    def final_losses(self, last: int = 100) -> dict:
        rows = LossLog(self.out / "loss.csv").rows(self.name)[-last:]
        return {k: float(np.mean([r[k] for r in rows])) for k in ("d_loss", "g_loss")} if rows else {}
