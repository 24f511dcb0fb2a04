"""Training plumbing shared by the text-to-image recipes (LDM, SD3, and the families that follow).

* :func:`shapes_t2i_training_set`: items 0..n-1 of the task's ``train`` split, rendered, with their captions;
* :func:`caption_dropout`: the empty caption with probability ``p`` (classifier-free guidance training);
* :class:`TrainLoop`: AdamW + EMA, checkpoint ``<name>.state.pt`` every ``save_every`` steps, every few minutes
  and on Ctrl-C (plain tensors and containers, read back with ``torch.load(weights_only=True)``), progress with
  ETA and the rows of ``OUT/loss.csv`` (:mod:`baselines.common.monitor`), exact resumption (step k's randomness
  comes only from ``derive_seed(seed, name, k)``; state a step function keeps between steps travels in the
  checkpoint through ``extra_state``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from baselines.common.monitor import LossLog, TrainingMonitor, import_jsonl_log
from cgmbench.errors import CgmbenchError
from cgmbench.seeding import derive_seed, torch_generator

__all__ = [
    "shapes_t2i_training_set", "caption_dropout", "TrainLoop",
]
def shapes_t2i_training_set(task, n: int) -> tuple[torch.Tensor, list[str]]:
    """Items ``0..n-1`` of the ``train`` split of a shapes text-to-image task: images and captions."""
    from cgmbench.sources.base import open_source

    if task.kind != "text-to-image" or task.conditions.get("source") != "shapes":
        raise CgmbenchError(f"the tiny text-to-image recipes train on the shapes world; task {task.name!r} "
                            f"is {task.kind} from {task.conditions.get('source')!r}", "use --task shapes-t2i")
    source = open_source(task, "conditions", split="train")
    n = min(int(n), len(source))
    indices = list(range(n))
    images = torch.from_numpy(np.ascontiguousarray(source.references(indices)))
    texts = [source.item(i)["text"] for i in indices]
    return images, texts


def caption_dropout(texts: list[str], p: float, generator: torch.Generator) -> list[str]:
    """Replace each caption by ``""`` with probability ``p`` (so the model also learns the unconditional
    prediction that classifier-free guidance needs)."""
    drop = torch.rand(len(texts), generator=generator) < p
    return ["" if d else t for t, d in zip(texts, drop.tolist())]



class TrainLoop:
    """Deterministic, resumable training of ``modules`` (a dict of name -> nn.Module) with AdamW + EMA.

    ``step_fn(modules, batch_generator, step) -> loss`` computes the loss of one step; the loop does
    warm-up, clipping, the optimizer and EMA updates, progress, ``loss.csv`` and checkpoints. ``extra_state`` is
    an optional pair ``(get, set)``: ``get() -> dict`` of tensors a step function carries from step to step
    (saved with every checkpoint), ``set(dict)`` restores it on resume.
    """

    def __init__(self, name: str, out: Path, modules: dict[str, nn.Module], *, lr: float, warmup: int,
                 ema_decay: float, seed: int, save_every: int = 100, log: Callable = print,
                 weight_decay: float = 0.0, grad_clip: float = 1.0,
                 extra_state: tuple[Callable[[], dict], Callable[[dict], None]] | None = None):
        self.name, self.out, self.modules, self.seed, self.log = name, Path(out), modules, seed, log
        self.lr, self.warmup, self.ema_decay, self.grad_clip = lr, warmup, ema_decay, grad_clip
        self.save_every, self.extra_state = save_every, extra_state
        params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        self.ema = {k: copy.deepcopy(m).eval().requires_grad_(False) for k, m in modules.items()}
        self.step = 0
        self.out.mkdir(parents=True, exist_ok=True)
        self.state_path = self.out / f"{name}.state.pt"
        self.legacy_log_path = self.out / f"{name}.loss.jsonl"  # the log before loss.csv (imported on resume)

    def resume(self) -> bool:
        if not self.state_path.is_file():
            return False
        state = torch.load(self.state_path, map_location="cpu", weights_only=True)
        for k, m in self.modules.items():
            m.load_state_dict(state["model"][k])
            self.ema[k].load_state_dict(state["ema"][k])
        self.opt.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        if self.extra_state is not None and "extra" in state:
            self.extra_state[1](state["extra"])
        self.log(f"[{self.name}] resumed at step {self.step} from {self.state_path}")
        import_jsonl_log(LossLog(self.out / "loss.csv"), self.name, self.legacy_log_path, self.step)
        return True

    def save(self) -> None:
        state = {"model": {k: m.state_dict() for k, m in self.modules.items()},
                 "ema": {k: m.state_dict() for k, m in self.ema.items()},
                 "optimizer": self.opt.state_dict(), "step": self.step}
        if self.extra_state is not None:
            state["extra"] = self.extra_state[0]()
        tmp = self.state_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.state_path)

    def run(self, total_steps: int, step_fn: Callable) -> float:
        for m in self.modules.values():
            m.train()
        with TrainingMonitor(self.out, self.name, total_steps, self.step, self.log, save_every=self.save_every,
                             show=("loss",), checkpoint_path=self.state_path) as mon:
            while self.step < total_steps:
                g = torch_generator(derive_seed("cgmbench-train", self.name, self.seed, self.step))
                lr = self.lr * min(1.0, (self.step + 1) / max(1, self.warmup))
                for group in self.opt.param_groups:
                    group["lr"] = lr
                loss = step_fn(self.modules, g, self.step)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                params = [p for group in self.opt.param_groups for p in group["params"]]
                torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
                self.opt.step()
                self.step += 1
                decay = min(self.ema_decay, (1 + self.step) / (10 + self.step))
                with torch.no_grad():
                    for k, m in self.modules.items():
                        for pe, p in zip(self.ema[k].parameters(), m.parameters()):
                            pe.mul_(decay).add_(p.detach(), alpha=1 - decay)
                        for be, b in zip(self.ema[k].buffers(), m.buffers()):
                            be.copy_(b)
                mon.update(self.step, {"loss": loss.item()}, lr=lr)
                if mon.checkpoint_due(self.step):
                    self.save()
                    mon.saved(self.step, self.state_path)
        for m in self.modules.values():
            m.eval()
        return self.final_loss()

    def final_loss(self, last: int = 100) -> float:
        vals = [r["loss"] for r in LossLog(self.out / "loss.csv").rows(self.name) if "loss" in r]
        return float(np.mean(vals[-last:])) if vals else float("nan")
