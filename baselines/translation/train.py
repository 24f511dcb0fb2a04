"""Training recipes of pix2pix and CycleGAN (``cgmbench train --model pix2pix|cyclegan``)."""

import json
import json as _json
import random
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from baselines.translation.checkpoints import REVERSE_PREFIX
from baselines.translation.networks import (
    GANLoss,
    ImagePool,
    build_generator,
    cyclegan_discriminator_loss,
    cyclegan_forward,
    cyclegan_generator_loss,
    define_D,
    init_weights,
    linear_decay_lambda,
    pix2pix_discriminator_loss,
    pix2pix_generator_loss,
)
from baselines.common.monitor import LossLog, TrainingMonitor, import_jsonl_log
from cgmbench.errors import CgmbenchError
from cgmbench.seeding import derive_seed, numpy_rng

#: pix2pix recipes. ``tiny``: the official objective and optimiser (vanilla cGAN + 100·L1,
#: PatchGAN on cat(A, B), Adam 2e-4 β1 0.5, constant LR then linear decay over the last half)
#: with small networks on the 32×32 shapes world; 5,000 steps of batch 16 (40 epochs of 2,000 pairs,
#: about 8 CPU-minutes per 1,000 steps; judge 0.46 at N=256, against 0.18 after 1,000). The 5-level U-Net has
#: no dropout (upstream puts it only in the 8·ngf levels beyond the fifth), so for this model
#: ``official-default`` equals ``batchstats-no-dropout``; batch 16 instead of upstream's 1.
PIX2PIX_CONFIGS: dict[str, dict] = {
    "tiny": {
        "tasks": ("shapes-paired",),
        "generator": {"netG": "unet", "num_downs": 5, "ngf": 12, "norm": "batch", "use_dropout": False},
        "export_dtype": "float16",
        "netD": "n_layers", "n_layers_D": 2, "ndf": 16, "norm_D": "batch",
        "gan_mode": "vanilla", "lambda_L1": 100.0,
        "lr": 2e-4, "beta1": 0.5, "decay_fraction": 0.5,
        "batch_size": 16, "steps": 5000, "num_train": 2000,
        "save_every": 500, "log_every": 50,
        "init_type": "normal", "init_gain": 0.02,
    },
}


#: CycleGAN recipes. ``tiny``: the official objective and optimiser (LSGAN, cycle λ_A = λ_B = 10,
#: image pools of 50, Adam 2e-4 β1 0.5, constant LR then linear decay over the last half) with
#: small networks on the 32×32 shapes world, batch 4, 1,200 steps (4,800 images, ~2.4 epochs of
#: the 2,000 train scenes per domain; upstream trains 200 epochs). One deviation: the identity
#: weight is 2.0·λ instead of 0.5·λ. With 0.5 (and with batch 1 or 4, 1.5k-5k steps) the tiny
#: generator collapsed to an invertible "code": textured background right, every object
#: drawn as a blob of one hue, judge 0.0; a stronger identity term keeps the hues within this
#: CPU budget.
CYCLEGAN_CONFIGS: dict[str, dict] = {
    "tiny": {
        "tasks": ("shapes-unpaired",),
        "generator": {"netG": "resnet", "n_blocks": 4, "ngf": 16, "norm": "instance", "use_dropout": False},
        "export_dtype": "float32",
        "netD": "n_layers", "n_layers_D": 2, "ndf": 16, "norm_D": "instance",
        "gan_mode": "lsgan", "lambda_A": 10.0, "lambda_B": 10.0, "lambda_identity": 2.0, "pool_size": 50,
        "lr": 2e-4, "beta1": 0.5, "decay_fraction": 0.5,
        "batch_size": 4, "steps": 1200, "num_train": 2000,
        "save_every": 500, "log_every": 50,
        "init_type": "normal", "init_gain": 0.02,
    },
}



def set_requires_grad(nets: Sequence[nn.Module], requires_grad: bool) -> None:
    """Freeze or unfreeze networks (the official ``set_requires_grad``: D is frozen for the G step)."""
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(requires_grad)


class TranslationTrainer:
    """Shared training loop of the pix2pix and CycleGAN recipes.

    Files in ``out``:

    * ``checkpoints/step_NNNNNN.safetensors``: every network (``<name>.<key>``);
      ``checkpoints/step_NNNNNN.pt``: optimiser states (and image pools), saved from plain
      tensors and containers and read back with ``torch.load(weights_only=True)``;
      ``checkpoints/latest.json``: the step of the newest pair. The two newest pairs are kept.
    * ``loss.csv``: one row per ``log_every`` steps, losses averaged over the window (stage = the model name);
      progress with ETA on stderr and checkpoints on a clock and on Ctrl-C (:mod:`baselines.common.monitor`).
    * ``generator.safetensors``: the final generator (floats in the recipe's ``export_dtype``)
      with its architecture in the metadata (what :meth:`TranslationGenerator.load` reads);
      ``train_summary.json``.

    Determinism: everything random in step ``s`` (the global torch RNG for dropout, the data
    order, the pool's coin flips) is seeded from ``derive_seed(model, 'train', seed, s, ...)``,
    so ``--resume`` from any checkpoint continues exactly as an uninterrupted run would (on
    the same machine and thread count; CPU float sums are not bitwise stable across them).
    """

    model_name = "pix2pix"
    configs: dict[str, dict] = PIX2PIX_CONFIGS

    def __init__(self, task, config: str, out, resume: bool, steps: int | None, seed: int, device: str, log):
        if config not in self.configs:
            raise CgmbenchError(f"{self.model_name} has no training recipe {config!r}",
                                f"recipes: {', '.join(self.configs)}")
        self.cfg = dict(self.configs[config])
        if task.name not in self.cfg["tasks"]:
            raise CgmbenchError(f"the {self.model_name} recipe {config!r} is for task(s) {list(self.cfg['tasks'])}, "
                                f"not {task.name}")
        if steps is not None:
            if steps < 1:
                raise CgmbenchError(f"--steps must be >= 1, got {steps}")
            self.cfg["steps"] = int(steps)
        self.task, self.config_name, self.out = task, config, Path(out)
        self.resume, self.seed, self.device, self.log = resume, int(seed), device, log
        self.res = int(task.resolution)
        self._restored_window: dict = {}

    @staticmethod
    def make(model_name: str, *args) -> "TranslationTrainer":
        if model_name == "cyclegan":

            return CycleGANTrainer(*args)
        return Pix2PixTrainer(*args)

    # -- pieces a recipe defines ---------------------------------------------------------

    def build(self) -> None:
        """Create ``self.nets`` (name -> module) and ``self.optimizers`` (name -> Adam)."""
        raise NotImplementedError

    def load_data(self) -> None:
        raise NotImplementedError

    def train_step(self, step: int) -> dict[str, float]:
        raise NotImplementedError

    def export_name(self) -> str:
        return "G"

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    # -- shared helpers ------------------------------------------------------------------

    def rng_seed(self, *parts) -> int:
        return derive_seed(self.model_name, "train", self.seed, *parts)

    def to_net(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.device).float() / 127.5 - 1.0

    def epoch_indices(self, step: int, n: int) -> np.ndarray:
        """Rows of batch ``step``: a fresh permutation of the ``n`` items each epoch (``drop_last``)."""
        bs = self.cfg["batch_size"]
        per_epoch = max(1, n // bs)
        epoch, k = divmod(step, per_epoch)
        perm = numpy_rng(self.rng_seed("epoch", epoch)).permutation(n)
        return perm[k * bs:(k + 1) * bs]

    def adam(self, params) -> torch.optim.Adam:
        return torch.optim.Adam(params, lr=self.cfg["lr"], betas=(self.cfg["beta1"], 0.999))

    def lr_at(self, step: int) -> float:
        """Official ``linear`` policy with steps as epochs: constant, then linear decay to ~0."""
        total = self.cfg["steps"]
        n_decay = int(round(total * self.cfg["decay_fraction"]))
        return self.cfg["lr"] * linear_decay_lambda(total - n_decay, n_decay)(step)

    # -- checkpoints ---------------------------------------------------------------------

    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoints"

    def save_checkpoint(self, step: int) -> None:
        from safetensors.torch import save_file

        from cgmbench.atomic import atomic_write_json

        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        tensors = {f"{name}.{k}": v.detach().cpu().contiguous()
                   for name, net in self.nets.items() for k, v in net.state_dict().items()}
        stem = f"step_{step:06d}"
        save_file(tensors, str(self.ckpt_dir / f"{stem}.safetensors"))
        state = {"optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()}, **self.extra_state(),
                 "log_window": getattr(self, "_log_window", {"sums": {}, "count": 0})}
        torch.save(state, self.ckpt_dir / f"{stem}.pt")
        atomic_write_json(self.ckpt_dir / "latest.json", {
            "step": step, "weights": f"{stem}.safetensors", "state": f"{stem}.pt", "model": self.model_name,
            "config": self.config_name, "seed": self.seed, "steps": self.cfg["steps"]})
        for old in sorted(self.ckpt_dir.glob("step_*.safetensors"))[:-2]:
            old.unlink()
            old.with_suffix(".pt").unlink(missing_ok=True)

    def restore(self) -> int:
        """Load the newest checkpoint; returns the number of steps already done (0 if none)."""
        from safetensors.torch import load_file

        latest = self.ckpt_dir / "latest.json"
        if not latest.is_file():
            if self.resume:
                self.log(f"{self.out}: no checkpoint yet, starting from step 0")
            return 0
        meta = _json.loads(latest.read_text())
        if not self.resume:
            raise CgmbenchError(f"{self.out} already holds a training run (step {meta['step']})",
                                "continue it with --resume, or choose another --out")
        if (meta.get("model"), meta.get("config"), meta.get("seed")) != (self.model_name, self.config_name, self.seed):
            raise CgmbenchError(f"{self.out} holds a {meta.get('model')} run with config {meta.get('config')!r} "
                                f"and seed {meta.get('seed')}", "--resume continues only the same model, config "
                                "and seed")
        tensors = load_file(str(self.ckpt_dir / meta["weights"]), device="cpu")
        for name, net in self.nets.items():
            sd = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
            net.load_state_dict(sd, strict=True)
        state = torch.load(self.ckpt_dir / meta["state"], map_location=self.device, weights_only=True)
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.load_extra_state(state)
        self._restored_window = state.get("log_window") or {}
        self.log(f"[{self.model_name}] resumed at step {meta['step']} from {self.ckpt_dir / meta['weights']}")
        return int(meta["step"])

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> Path:
        import time

        from safetensors.torch import save_file

        from cgmbench.atomic import atomic_write_json
        from cgmbench.weights import sha256_file

        cfg = self.cfg
        t0, cpu0 = time.perf_counter(), time.process_time()
        torch.manual_seed(self.rng_seed("init"))
        self.build()
        for net in self.nets.values():
            net.to(self.device).train()
        start = self.restore()
        self.load_data()
        self.out.mkdir(parents=True, exist_ok=True)
        losses_csv = LossLog(self.out / "loss.csv")
        if start:  # a run started before loss.csv: its rows up to the checkpoint carry over
            import_jsonl_log(losses_csv, self.model_name, self.out / "loss_log.jsonl", start)
        # the loss.csv row of every log_every steps is the mean over its window; the open window travels in the
        # checkpoint, so a run stopped between two rows resumes to the rows of an uninterrupted one
        window: dict[str, float] = dict(self._restored_window.get("sums", {}))
        count = int(self._restored_window.get("count", 0))
        with TrainingMonitor(self.out, self.model_name, cfg["steps"], start, self.log, save_every=cfg["save_every"],
                             checkpoint_path=self.ckpt_dir / "latest.json") as mon:
            for step in range(start, cfg["steps"]):
                lr = self.lr_at(step)
                for opt in self.optimizers.values():
                    for group in opt.param_groups:
                        group["lr"] = lr
                torch.manual_seed(self.rng_seed("step", step))
                losses = self.train_step(step)
                for k, v in losses.items():
                    window[k] = window.get(k, 0.0) + v
                count += 1
                done = step + 1
                row = False
                if done % cfg["log_every"] == 0 or done == cfg["steps"]:
                    row = {k: round(v / count, 6) for k, v in window.items()}
                    window, count = {}, 0
                mon.update(done, losses, lr=lr, record=row)
                if mon.checkpoint_due(done):
                    self._log_window = {"sums": dict(window), "count": count}
                    self.save_checkpoint(done)
                    mon.saved(done, self.ckpt_dir / f"step_{done:06d}.safetensors")
        rows = losses_csv.rows(self.model_name)

        net = self.nets[self.export_name()]
        path = self.out / "generator.safetensors"
        meta = {"cgmbench.architecture": _json.dumps(cfg["generator"], sort_keys=True),
                "cgmbench.resolution": str(self.res), "cgmbench.model": self.model_name,
                "cgmbench.task": self.task.name, "cgmbench.config": self.config_name,
                "cgmbench.steps": str(cfg["steps"]), "cgmbench.seed": str(self.seed)}
        dtype = getattr(torch, cfg.get("export_dtype", "float32"))
        save_file({k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
                   for k, v in net.state_dict().items()}, str(path), metadata=meta)
        atomic_write_json(self.out / "train_summary.json", {
            "model": self.model_name, "task": self.task.name, "config": self.config_name, "seed": self.seed,
            "steps": cfg["steps"], "recipe": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
            "final_losses": ({k: v for k, v in rows[-1].items() if k not in ("stage", "elapsed_s")} if rows
                             else None),
            "generator": path.name, "sha256": sha256_file(path),
            "command": (f"cgmbench train --model {self.model_name} --task {self.task.name} --config "
                        f"{self.config_name} --seed {self.seed} --out OUT"),
            "seconds_this_session": round(time.perf_counter() - t0, 1),
            "cpu_seconds_this_session": round(time.process_time() - cpu0, 1), "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        })
        return path


class Pix2PixTrainer(TranslationTrainer):
    """pix2pix (paper §3.3): per step, ``fake_B = G(A)``; D step on ``cat(A, B)`` vs ``cat(A, fake_B)``;
    then G step on ``GAN(D(cat(A, fake_B)), real) + λ_L1·‖fake_B − B‖₁``."""

    model_name = "pix2pix"
    configs = PIX2PIX_CONFIGS

    def build(self) -> None:
        cfg = self.cfg
        G = init_weights(build_generator(cfg["generator"]), cfg["init_type"], cfg["init_gain"])
        D = define_D(6, cfg["ndf"], cfg["netD"], cfg["n_layers_D"], cfg["norm_D"], cfg["init_type"], cfg["init_gain"])
        self.nets = {"G": G, "D": D}
        self.optimizers = {"G": self.adam(G.parameters()), "D": self.adam(D.parameters())}
        self.criterionGAN = GANLoss(cfg["gan_mode"]).to(self.device)

    def load_data(self) -> None:
        self.A, self.B = paired_training_data(self.task, self.cfg["num_train"])

    def train_step(self, step: int) -> dict[str, float]:
        G, D = self.nets["G"], self.nets["D"]
        idx = torch.from_numpy(self.epoch_indices(step, len(self.A)))
        real_A, real_B = self.to_net(self.A[idx]), self.to_net(self.B[idx])
        fake_B = G(real_A)
        set_requires_grad([D], True)
        self.optimizers["D"].zero_grad()
        d = pix2pix_discriminator_loss(D, real_A, real_B, fake_B, self.criterionGAN)
        d["D"].backward()
        self.optimizers["D"].step()
        set_requires_grad([D], False)
        self.optimizers["G"].zero_grad()
        g = pix2pix_generator_loss(D, real_A, real_B, fake_B, self.criterionGAN, self.cfg["lambda_L1"])
        g["G"].backward()
        self.optimizers["G"].step()
        return {"G_GAN": g["G_GAN"].item(), "G_L1": g["G_L1"].item(), "D_real": d["D_real"].item(),
                "D_fake": d["D_fake"].item()}


def paired_training_data(task, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` uint8 ``[n, 3, H, W]`` of the task's train split: conditions and their true targets."""
    from cgmbench.sources.base import open_source

    src = open_source(task, "conditions", split="train")
    idx = list(range(min(n, len(src))))
    A = src.conditions(idx).images
    B = torch.from_numpy(np.ascontiguousarray(src.references(idx)))
    return A.contiguous(), B.contiguous()






class CycleGANTrainer(TranslationTrainer):
    """CycleGAN (paper §3–4): per step, both cycles (:func:`cyclegan_forward`); G step on
    :func:`cyclegan_generator_loss` with both Ds frozen; then D step on
    :func:`cyclegan_discriminator_loss` with pooled fakes."""

    model_name = "cyclegan"
    configs = CYCLEGAN_CONFIGS

    def build(self) -> None:
        import itertools

        cfg = self.cfg
        nets = {}
        for name in ("G_A", "G_B"):
            nets[name] = init_weights(build_generator(cfg["generator"]), cfg["init_type"], cfg["init_gain"])
        for name in ("D_A", "D_B"):
            nets[name] = define_D(3, cfg["ndf"], cfg["netD"], cfg["n_layers_D"], cfg["norm_D"], cfg["init_type"],
                                  cfg["init_gain"])
        self.nets = nets
        self.optimizers = {
            "G": self.adam(itertools.chain(nets["G_A"].parameters(), nets["G_B"].parameters())),
            "D": self.adam(itertools.chain(nets["D_A"].parameters(), nets["D_B"].parameters())),
        }
        self.criterionGAN = GANLoss(cfg["gan_mode"]).to(self.device)
        self.fake_A_pool, self.fake_B_pool = ImagePool(cfg["pool_size"]), ImagePool(cfg["pool_size"])

    def export_name(self) -> str:
        return "G_A"

    def run(self) -> Path:
        """Train (:meth:`TranslationTrainer.run`), then add G_B to the exported generator file:
        its keys under :data:`REVERSE_PREFIX`, in the recipe's ``export_dtype``, and the metadata
        ``cgmbench.reverse_prefix``; ``train_summary.json`` gets the new sha256."""
        from safetensors import safe_open
        from safetensors.torch import save_file

        from cgmbench.atomic import atomic_write_json
        from cgmbench.weights import sha256_file

        path = super().run()
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        dtype = getattr(torch, self.cfg.get("export_dtype", "float32"))
        for k, v in self.nets["G_B"].state_dict().items():
            v = v.detach().cpu()
            tensors[REVERSE_PREFIX + k] = (v.to(dtype) if v.is_floating_point() else v).contiguous()
        meta["cgmbench.reverse_prefix"] = REVERSE_PREFIX
        save_file(tensors, str(path), metadata=meta)
        summary_path = self.out / "train_summary.json"
        summary = _json.loads(summary_path.read_text())
        summary.update({"sha256": sha256_file(path),
                        "layout": f"G_A keys unprefixed, G_B keys under '{REVERSE_PREFIX}'"})
        atomic_write_json(summary_path, summary)
        return path

    def extra_state(self) -> dict:
        return {f"pool_{k}": {"num_imgs": p.num_imgs, "images": [t.cpu() for t in p.images]}
                for k, p in (("fake_A", self.fake_A_pool), ("fake_B", self.fake_B_pool))}

    def load_extra_state(self, state: dict) -> None:
        for k, p in (("fake_A", self.fake_A_pool), ("fake_B", self.fake_B_pool)):
            p.num_imgs = int(state[f"pool_{k}"]["num_imgs"])
            p.images = [t.to(self.device) for t in state[f"pool_{k}"]["images"]]

    def load_data(self) -> None:
        self.A, self.B = unpaired_training_data(self.task, self.cfg["num_train"])

    def train_step(self, step: int) -> dict[str, float]:
        cfg, n = self.cfg, self.nets
        real_A = self.to_net(self.A[torch.from_numpy(self.epoch_indices(step, len(self.A)))])
        # As upstream's unaligned dataset: domain B images are drawn at random, independently of A.
        idx_B = np.random.default_rng(self.rng_seed("B", step)).integers(0, len(self.B), len(real_A))
        real_B = self.to_net(self.B[torch.from_numpy(idx_B)])
        images = cyclegan_forward(n["G_A"], n["G_B"], real_A, real_B)
        set_requires_grad([n["D_A"], n["D_B"]], False)
        self.optimizers["G"].zero_grad()
        g = cyclegan_generator_loss(n["G_A"], n["G_B"], n["D_A"], n["D_B"], real_A, real_B, images,
                                    self.criterionGAN, cfg["lambda_A"], cfg["lambda_B"], cfg["lambda_identity"])
        g["G"].backward()
        self.optimizers["G"].step()
        set_requires_grad([n["D_A"], n["D_B"]], True)
        self.optimizers["D"].zero_grad()
        self.fake_A_pool.rng = random.Random(self.rng_seed("pool_A", step))
        self.fake_B_pool.rng = random.Random(self.rng_seed("pool_B", step))
        d = cyclegan_discriminator_loss(n["D_A"], n["D_B"], real_A, real_B, images, self.criterionGAN,
                                        self.fake_A_pool, self.fake_B_pool)
        (d["D_A"] + d["D_B"]).backward()
        self.optimizers["D"].step()
        return {k: v.item() for k, v in {**g, **d}.items() if k != "G"}






def unpaired_training_data(task, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` uint8 ``[n, 3, H, W]``: the two domains of the task's train split, unpaired.

    Shapes world: A = flat renders of train scenes ``0..n-1``; B = textured renders of train
    scenes ``n..2n-1`` (other scenes, so no image of B is the translation of one in A). Real
    datasets: ``trainA`` from the conditions source and ``trainB`` from the reference source.
    """
    from cgmbench.sources.base import open_source
    from cgmbench.worlds import shapes as W
    from cgmbench.worlds.sources import ShapesSource

    src = open_source(task, "conditions", split="train")
    if isinstance(src, ShapesSource):
        A = src.conditions(list(range(n))).images
        B = torch.from_numpy(np.stack([W.render(src.item(i, "train")["scene"], "textured") for i in range(n, 2 * n)]))
        return A.contiguous(), B
    ref = open_source(task, "reference", split="train")
    A = src.conditions(list(range(min(n, len(src))))).images
    B = torch.from_numpy(np.ascontiguousarray(ref.references(list(range(min(n, len(ref)))))))
    return A.contiguous(), B
