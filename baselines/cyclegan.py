"""CycleGAN (Zhu et al., 2017): ResNet generator and the cycle-consistent objective.

A clean-room implementation of ``ResnetGenerator`` / ``ResnetBlock`` from
junyanz/pytorch-CycleGAN-and-pix2pix (``models/networks.py``) with the official module names,
so the released single-direction generators (``latest_net_G.pth``, built as
``define_G(3, 3, 64, 'resnet_9blocks', norm='instance', use_dropout=False)``) load strictly
through :func:`load_official_state_dict`. The PatchGAN discriminator, norm layers, GAN loss,
image pool, LR schedule, loader and test modes are shared with pix2pix and re-exported here.

Conventions: images ``(B, C, H, W)`` in ``[-1, 1]``; ``H`` and ``W`` divisible by 4. Generator
``G_A: A → B``, ``G_B: B → A``; discriminator ``D_A`` judges domain B, ``D_B`` domain A.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from baselines.pix2pix import (
    GANLoss,
    ImagePool,
    NLayerDiscriminator,
    TEST_MODES,
    define_D,
    define_G,
    discriminator_loss,
    get_norm_layer,
    init_weights,
    linear_decay_lambda,
    load_official_state_dict,
    patch_instance_norm_state_dict,
    read_state_dict,
    set_test_mode,
    uses_bias,
)

__all__ = [
    "ResnetBlock",
    "ResnetGenerator",
    "cyclegan_forward",
    "cyclegan_generator_loss",
    "cyclegan_discriminator_loss",
    # re-exported from baselines.pix2pix
    "GANLoss",
    "ImagePool",
    "NLayerDiscriminator",
    "TEST_MODES",
    "define_D",
    "define_G",
    "discriminator_loss",
    "get_norm_layer",
    "init_weights",
    "linear_decay_lambda",
    "load_official_state_dict",
    "patch_instance_norm_state_dict",
    "read_state_dict",
    "set_test_mode",
    "uses_bias",
]


# --------------------------------------------------------------------------------------
# Generator (Johnson et al. 2016 style: down-sample, residual blocks, up-sample)
# --------------------------------------------------------------------------------------


def _padding(padding_type: str) -> tuple[list[nn.Module], int]:
    """Explicit pad layer(s) and the conv ``padding`` for a 3×3 convolution."""
    if padding_type == "reflect":
        return [nn.ReflectionPad2d(1)], 0
    if padding_type == "replicate":
        return [nn.ReplicationPad2d(1)], 0
    if padding_type == "zero":
        return [], 1
    raise ValueError(f"padding {padding_type!r} is not implemented; use 'reflect', 'replicate' or 'zero'")


class ResnetBlock(nn.Module):
    """``x + conv_block(x)`` with ``conv_block`` = pad · conv3×3 · norm · ReLU (· Dropout(0.5)) ·
    pad · conv3×3 · norm, at constant width ``dim``.

    State-dict indices with reflect/replicate padding: ``conv_block.1`` and ``conv_block.5``
    (``conv_block.6`` with dropout); with ``'zero'`` padding (no pad layers) ``conv_block.0`` and
    ``conv_block.3`` (``.4``).
    """

    def __init__(
        self, dim: int, padding_type: str, norm_layer: Callable[[int], nn.Module], use_dropout: bool, use_bias: bool
    ) -> None:
        super().__init__()
        self.conv_block = self.build_conv_block(dim, padding_type, norm_layer, use_dropout, use_bias)

    def build_conv_block(
        self, dim: int, padding_type: str, norm_layer: Callable[[int], nn.Module], use_dropout: bool, use_bias: bool
    ) -> nn.Sequential:
        pad, p = _padding(padding_type)
        layers: list[nn.Module] = [
            *pad, nn.Conv2d(dim, dim, kernel_size=3, padding=p, bias=use_bias), norm_layer(dim), nn.ReLU(True)
        ]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        pad, p = _padding(padding_type)
        layers += [*pad, nn.Conv2d(dim, dim, kernel_size=3, padding=p, bias=use_bias), norm_layer(dim)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """ResNet generator: ``(B, input_nc, H, W)`` → ``(B, output_nc, H, W)`` in ``[-1, 1]``.

    ``self.model`` = ReflectionPad(3) · conv7×7(ngf) · norm · ReLU · 2 × [conv3×3 stride 2 ·
    norm · ReLU] (ngf → 2ngf → 4ngf) · ``n_blocks`` × ResnetBlock(4ngf) · 2 × [ConvTranspose3×3
    stride 2 (output_padding 1) · norm · ReLU] (4ngf → 2ngf → ngf) · ReflectionPad(3) ·
    conv7×7(output_nc, always with bias) · Tanh. For ``resnet_9blocks``: ``model.1`` (first conv),
    ``model.4``/``model.7`` (down), ``model.10``…``model.18`` (blocks), ``model.19``/``model.22``
    (up), ``model.26`` (last conv).
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        ngf: int = 64,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        use_dropout: bool = False,
        n_blocks: int = 6,
        padding_type: str = "reflect",
    ) -> None:
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        use_bias = uses_bias(norm_layer)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=use_bias),
            norm_layer(ngf),
            nn.ReLU(True),
        ]
        n_downsampling = 2
        for i in range(n_downsampling):
            mult = 2**i
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=use_bias),
                norm_layer(ngf * mult * 2),
                nn.ReLU(True),
            ]
        mult = 2**n_downsampling
        for _ in range(n_blocks):
            layers.append(
                ResnetBlock(ngf * mult, padding_type, norm_layer=norm_layer, use_dropout=use_dropout, use_bias=use_bias)
            )
        for i in range(n_downsampling):
            mult = 2 ** (n_downsampling - i)
            layers += [
                nn.ConvTranspose2d(
                    ngf * mult, ngf * mult // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=use_bias
                ),
                norm_layer(ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.model(input)


# --------------------------------------------------------------------------------------
# Objective (paper §3): LSGAN adversarial losses + cycle consistency + identity
# --------------------------------------------------------------------------------------


def cyclegan_forward(
    netG_A: nn.Module, netG_B: nn.Module, real_A: torch.Tensor, real_B: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Both translation cycles: ``fake_B = G_A(A)``, ``rec_A = G_B(fake_B)``, ``fake_A = G_B(B)``,
    ``rec_B = G_A(fake_A)``."""
    fake_B = netG_A(real_A)
    fake_A = netG_B(real_B)
    return {"fake_B": fake_B, "rec_A": netG_B(fake_B), "fake_A": fake_A, "rec_B": netG_A(fake_A)}


def cyclegan_generator_loss(
    netG_A: nn.Module,
    netG_B: nn.Module,
    netD_A: nn.Module,
    netD_B: nn.Module,
    real_A: torch.Tensor,
    real_B: torch.Tensor,
    images: dict[str, torch.Tensor],
    criterionGAN: GANLoss,
    lambda_A: float = 10.0,
    lambda_B: float = 10.0,
    lambda_identity: float = 0.5,
) -> dict[str, torch.Tensor]:
    """Generator objective, with ``images`` from :func:`cyclegan_forward` (``criterionGAN`` is
    ``GANLoss('lsgan')`` for CycleGAN):

    ``G = GAN(D_A(fake_B), real) + GAN(D_B(fake_A), real)
          + λ_A‖rec_A − A‖₁ + λ_B‖rec_B − B‖₁
          + λ_idt·(λ_B‖G_A(B) − B‖₁ + λ_A‖G_B(A) − A‖₁)``

    with mean-L1, λ_A = λ_B = 10 and λ_idt = 0.5 (the identity term is skipped when 0).
    Returns ``{'G_A', 'G_B', 'cycle_A', 'cycle_B', 'idt_A', 'idt_B', 'G'}``.
    """
    l1 = nn.functional.l1_loss
    if lambda_identity > 0:
        loss_idt_A = l1(netG_A(real_B), real_B) * lambda_B * lambda_identity
        loss_idt_B = l1(netG_B(real_A), real_A) * lambda_A * lambda_identity
    else:
        loss_idt_A = loss_idt_B = real_A.new_zeros(())
    loss_G_A = criterionGAN(netD_A(images["fake_B"]), True)
    loss_G_B = criterionGAN(netD_B(images["fake_A"]), True)
    loss_cycle_A = l1(images["rec_A"], real_A) * lambda_A
    loss_cycle_B = l1(images["rec_B"], real_B) * lambda_B
    total = loss_G_A + loss_G_B + loss_cycle_A + loss_cycle_B + loss_idt_A + loss_idt_B
    return {
        "G_A": loss_G_A,
        "G_B": loss_G_B,
        "cycle_A": loss_cycle_A,
        "cycle_B": loss_cycle_B,
        "idt_A": loss_idt_A,
        "idt_B": loss_idt_B,
        "G": total,
    }


def cyclegan_discriminator_loss(
    netD_A: nn.Module,
    netD_B: nn.Module,
    real_A: torch.Tensor,
    real_B: torch.Tensor,
    images: dict[str, torch.Tensor],
    criterionGAN: GANLoss,
    fake_A_pool: ImagePool,
    fake_B_pool: ImagePool,
) -> dict[str, torch.Tensor]:
    """Discriminator objectives: ``D_A`` on real B vs a pooled ``fake_B``, ``D_B`` on real A vs a
    pooled ``fake_A``, each ``0.5·(GAN(real) + GAN(fake))`` (:func:`discriminator_loss`).
    The pools (``ImagePool(50)`` upstream) are queried here. Returns ``{'D_A', 'D_B'}``.
    """
    fake_B = fake_B_pool.query(images["fake_B"])
    fake_A = fake_A_pool.query(images["fake_A"])
    return {
        "D_A": discriminator_loss(netD_A, real_B, fake_B, criterionGAN)["D"],
        "D_B": discriminator_loss(netD_B, real_A, fake_A, criterionGAN)["D"],
    }


# --------------------------------------------------------------------------------------
# cgmbench generator (``--model cyclegan``) and the training recipe
# --------------------------------------------------------------------------------------
#
# A released CycleGAN model is one direction's generator (``G_A`` for ``horse2zebra``, its
# inverse ``zebra2horse`` is a separate file). CycleGAN has no guidance and, with InstanceNorm
# and no dropout, no noise: every ``test_mode`` gives the same, deterministic output.

import random

import numpy as np

import json as _json
from collections import OrderedDict
from pathlib import Path

from baselines.pix2pix import (
    TranslationGenerator,
    TranslationTrainer,
    _file_arch,
    build_generator,
    generator_stride,
    inference_behaviour,
    set_requires_grad,
)
from cgmbench.errors import CgmbenchError
from cgmbench.generator import CheckpointInfo, to_uint8

#: prefix of G_B's keys in a cgmbench CycleGAN file (G_A's keys are unprefixed, as the official
#: single-generator files): ``netG_B.model.1.weight`` is G_B's ``model.1.weight``. Official
#: training writes the two as separate files (``latest_net_G_A.pth`` / ``latest_net_G_B.pth``).
REVERSE_PREFIX = "netG_B."

__all__ += ["CycleGANGenerator", "CycleGANTrainer", "CYCLEGAN_CONFIGS", "unpaired_training_data", "REVERSE_PREFIX",
            "split_generators"]

#: how the released CycleGAN generators are built (``define_G`` arguments)
CYCLEGAN_OFFICIAL_ARCH = {"netG": "resnet_9blocks", "ngf": 64, "norm": "instance", "use_dropout": False}


class CycleGANGenerator(TranslationGenerator):
    """CycleGAN for cgmbench: one direction's ResNet generator (official ``latest_net_G.pth`` or shipped)."""

    description = ("CycleGAN (Zhu et al. 2017): ResNet generator trained with LSGAN + cycle consistency on unpaired "
                   "data. A GAN has no guidance, and with InstanceNorm and no dropout it has no sampling noise: "
                   "every test_mode gives the same deterministic translation.")
    family = "cyclegan"
    official_arch = CYCLEGAN_OFFICIAL_ARCH
    official_variants = ("horse2zebra", "zebra2horse", "monet2photo", "style_monet", "cityscapes_label2photo",
                         "facades_label2photo", "map2sat", "sat2map")
    shipped_variants = {
        "shapes-unpaired-tiny": ("cyclegan-shapes-unpaired-tiny.safetensors",
                                 "tiny ResNet generators (G_A: flat -> textured, and its reverse G_B) trained "
                                 "by cgmbench on shapes-unpaired, 32x32"),
    }

    @classmethod
    def train(cls, task, config: str = "tiny", out="cyclegan-train", resume: bool = False, steps: int | None = None,
              seed: int = 0, device: str = "cpu", log=print):
        """Train CycleGAN on ``task`` with recipe ``config`` (:class:`CycleGANTrainer`); returns the generator
        file (G_A, with G_B under :data:`REVERSE_PREFIX`)."""
        return CycleGANTrainer(task, config, out, resume, steps, seed, device, log).run()

    # -- the reverse generator and the cycle-reconstruction error ---------------------------

    #: G_B (``B → A``) or None: official pretrained files hold one direction only
    reverse_net: nn.Module | None = None

    @classmethod
    def load(cls, task, variant: str | None = None, checkpoint: str | None = None,
             device: str = "cpu") -> "CycleGANGenerator":
        """As :meth:`TranslationGenerator.load`; a cgmbench file that also holds G_B (keys under
        :data:`REVERSE_PREFIX`) loads both generators, so :meth:`cycle_reconstruct` works."""
        from cgmbench.weights import sha256_file, shipped

        if checkpoint is not None:
            path = Path(checkpoint)
        elif variant in cls.shipped_variants:
            path = shipped(cls.shipped_variants[variant][0])[0]
        else:
            path = None
        if path is None or not path.is_file() or path.suffix != ".safetensors" or not _holds_reverse(path):
            return super().load(task, variant, checkpoint, device)

        forward, reverse = split_generators(read_state_dict(path))
        arch, meta = _file_arch(path)
        if arch is None:
            raise CgmbenchError(f"{path} carries no cgmbench architecture metadata")
        res = int(task.resolution)
        trained = meta.get("cgmbench.resolution")
        name = path.name if checkpoint is not None else variant
        if trained is not None and int(trained) != res:
            raise CgmbenchError(f"{cls.family} checkpoint {name} was trained at {trained}x{trained}, "
                                f"task {task.name} is {res}x{res}", "use a checkpoint trained for this task")
        if res % generator_stride(arch):
            raise CgmbenchError(f"{cls.family} generator {arch['netG']} needs a resolution divisible by "
                                f"{generator_stride(arch)}; task {task.name} has {res}")
        nets = []
        for which, sd in (("G_A", forward), ("G_B", reverse)):
            net = build_generator(arch)
            try:
                load_official_state_dict(sd, net)
            except ValueError as e:
                raise CgmbenchError(f"{path}: {which} is not a {cls.family} generator ({arch['netG']}, "
                                    f"norm={arch.get('norm')}): {e}") from None
            nets.append(net)
        info = CheckpointInfo(name=name, sha256=sha256_file(path), path=str(path),
                              source="file" if checkpoint is not None else "shipped")
        info.extra.update({"architecture": dict(arch), "format": "safetensors",
                           "reverse_generator": f"G_B under '{REVERSE_PREFIX}'"})
        model = cls(nets[0], (res, res), checkpoint=info, device=device, arch=arch)
        model.reverse_net = nets[1].to(device).eval()
        return model

    @torch.no_grad()
    def cycle_reconstruct(self, samples: torch.Tensor, conditions=None) -> torch.Tensor:
        """``F(G(x))``: the reverse generator G_B applied to the forward samples ``G_A(x)``.

        ``samples`` uint8 ``[B, 3, H, W]`` (what :meth:`generate` returned); returns uint8
        ``[B, 3, H, W]``, batch-independent (InstanceNorm, no dropout). ``conditions`` is unused:
        the reconstruction depends on the samples only. Raises :class:`CgmbenchError` when the
        model has no G_B (the official pretrained downloads are one direction's ``G`` only).
        """
        if self.reverse_net is None:
            raise CgmbenchError(
                f"{self.name} checkpoint {self.checkpoint.name if self.checkpoint else '?'} holds G_A only "
                "(official pretrained files are one direction's generator; the cycle needs G_B too)")
        if not isinstance(samples, torch.Tensor) or samples.dtype != torch.uint8 or samples.ndim != 4:
            raise CgmbenchError("cycle_reconstruct needs uint8 samples [B, 3, H, W]")
        x = samples.to(self.device).float() / 127.5 - 1.0
        with inference_behaviour(self.reverse_net, "eval"):
            return to_uint8(self.reverse_net(x)).cpu()


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
    from cgmbench.sources import open_source
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


def split_generators(state_dict) -> tuple["OrderedDict[str, torch.Tensor]", "OrderedDict[str, torch.Tensor]"]:
    """``(G_A, G_B)`` state dicts of a cgmbench CycleGAN file (G_B's keys under :data:`REVERSE_PREFIX`)."""
    forward = OrderedDict((k, v) for k, v in state_dict.items() if not k.startswith(REVERSE_PREFIX))
    reverse = OrderedDict((k[len(REVERSE_PREFIX):], v) for k, v in state_dict.items() if k.startswith(REVERSE_PREFIX))
    return forward, reverse


def _holds_reverse(path: Path) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return any(k.startswith(REVERSE_PREFIX) for k in f.keys())
    except Exception:  # not a safetensors file: the base loader reports it
        return False
