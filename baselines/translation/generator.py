"""The cgmbench generators of pix2pix and CycleGAN (``--model pix2pix`` / ``--model cyclegan``).

A GAN has no guidance: its sampling setting is ``test_mode`` (how BatchNorm and Dropout behave at inference).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from baselines.translation.checkpoints import (
    REVERSE_PREFIX,
    _file_arch,
    _holds_reverse,
    load_official_state_dict,
    read_state_dict,
    split_generators,
)
from baselines.translation.networks import TEST_MODES, build_generator, generator_stride, set_test_mode
from baselines.translation.train import CycleGANTrainer, TranslationTrainer
from cgmbench.errors import CgmbenchError
from cgmbench.generator import CheckpointInfo, Generator, Knob, to_uint8
from cgmbench.seeding import torch_generator

# --------------------------------------------------------------------------------------
#
# A pix2pix/CycleGAN generator has no guidance: a GAN maps the source image to one output.
# The only sampling setting is ``test_mode`` (how BatchNorm and Dropout behave at inference,
# :func:`set_test_mode`). In ``official-default`` pix2pix's dropout is its only source of
# sample diversity (paper §3.3), so it is the knob that exists for guidance/diversity plots.





#: how the released pix2pix generators are built (``define_G`` arguments)
PIX2PIX_OFFICIAL_ARCH = {"netG": "unet_256", "ngf": 64, "norm": "batch", "use_dropout": True}






@contextmanager
def inference_behaviour(net: nn.Module, mode: str, generator: torch.Generator | None = None):
    """Run ``net`` in test mode ``mode`` (:func:`set_test_mode`) without side effects.

    Differences from a bare :func:`set_test_mode`:

    * BatchNorm layers that normalise with batch statistics do **not** update their running
      statistics (upstream's test.py does; here a run must not change the model it measures).
    * With ``generator`` given in ``'official-default'``, every Dropout draws its mask from
      ``generator`` (in forward order, ``bernoulli(1 - p)`` scaled by ``1 / (1 - p)``, as
      ``F.dropout``) instead of the global torch RNG, so a sample's noise comes from its seed.

    On exit ``net`` is back in eval mode.
    """
    set_test_mode(net, mode)
    bn = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    tracked = [m.track_running_stats for m in bn]
    hooks = []
    try:
        for m in bn:
            m.track_running_stats = False  # training-mode BN then uses batch stats and leaves buffers alone
        if mode == "official-default" and generator is not None:
            for m in net.modules():
                if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0:
                    m.eval()  # identity; the hook below applies the seeded mask

                    def apply_mask(module, inputs, output, g=generator):
                        keep = 1.0 - module.p
                        if keep <= 0:
                            return torch.zeros_like(output)
                        mask = torch.empty_like(output).bernoulli_(keep, generator=g)
                        return output * mask / keep

                    hooks.append(m.register_forward_hook(apply_mask))
        yield net
    finally:
        for h in hooks:
            h.remove()
        for m, t in zip(bn, tracked):
            m.track_running_stats = t
        net.eval()




class TranslationGenerator(Generator):
    """Base of the image-to-image GAN generators (pix2pix, CycleGAN).

    Input: ``conditions.images`` uint8 ``[B, 3, H, W]`` with ``(H, W)`` the model resolution.
    They are mapped to the networks' ``[-1, 1]`` convention (``x / 127.5 - 1``, as
    ``transforms.Normalize((0.5,) * 3, (0.5,) * 3)`` after ``ToTensor``) and the output back to
    uint8 with rounding (:func:`cgmbench.generator.to_uint8`).

    ``test_mode``:

    * ``eval``: running BatchNorm statistics, no dropout. Deterministic, batched, and
      independent of the batch (the default).
    * ``official-default``: what upstream ``test.py`` does without ``--eval`` (and what mmagic
      used for its FID of the official checkpoints): BatchNorm normalises with the statistics of
      the test batch and dropout is on. Batch statistics depend on the batch by definition, so
      this mode runs every sample alone (batch size 1, as ``test.py``); sample ``i``'s dropout
      masks come from ``torch_generator(seeds[i])``. Output ``i`` depends on source ``i`` and
      ``seeds[i]`` only.
    * ``batchstats-no-dropout``: batch statistics without dropout, one sample at a time:
      deterministic.

    For InstanceNorm networks without dropout (CycleGAN) the three modes agree.
    """

    condition_kinds = frozenset({"image"})
    knobs = (
        Knob("test_mode", "eval", "inference behaviour of BatchNorm/Dropout: eval (running stats, no dropout), "
             "official-default (test-batch stats + dropout, per-sample seeded, batch of 1, as upstream test.py "
             "without --eval), batchstats-no-dropout", kind="choice", choices=TEST_MODES),
    )
    #: prefix of the KnownFile names (``pix2pix:facades_label2photo``)
    family: str = "pix2pix"
    official_arch: dict = PIX2PIX_OFFICIAL_ARCH
    #: official checkpoints (KnownFile ``family:name``)
    official_variants: tuple[str, ...] = ()
    #: variant -> (shipped file, description)
    shipped_variants: dict[str, tuple[str, str]] = {}

    def __init__(self, net: nn.Module, resolution: tuple[int, int], checkpoint: CheckpointInfo | None = None,
                 device: str = "cpu", arch: Mapping | None = None):
        super().__init__(resolution, checkpoint=checkpoint, device=device)
        self.net = net.to(device).eval()
        self.arch = dict(arch) if arch else None

    # -- checkpoints --------------------------------------------------------------------

    @classmethod
    def variants(cls) -> dict[str, str]:
        from cgmbench.weights import known_files

        out = {name: desc for name, (_, desc) in cls.shipped_variants.items()}
        files = known_files()
        for name in cls.official_variants:
            kf = files.get(f"{cls.family}:{name}")
            out[name] = kf.description if kf else f"official {cls.family} checkpoint {name}"
        return out

    @classmethod
    def required_files(cls, task, variant=None, checkpoint=None) -> list:
        """The official generator file of ``variant`` (shipped variants and given files: nothing)."""
        from cgmbench.requirements import weights_file

        if checkpoint is not None or variant is None or variant in cls.shipped_variants:
            return []
        if variant not in cls.official_variants:
            raise CgmbenchError(f"unknown {cls.family} checkpoint {variant!r}", f"known: {', '.join(cls.variants())}")
        return [weights_file(f"{cls.family}:{variant}", f"model {cls.family}:{variant} generator")]

    @classmethod
    def load(cls, task, variant: str | None = None, checkpoint: str | None = None,
             device: str = "cpu") -> "TranslationGenerator":
        from cgmbench.weights import known_file, resolve, sha256_file, shipped

        if checkpoint is not None:
            path = Path(checkpoint)
            if not path.is_file():
                raise CgmbenchError(f"checkpoint file {path} does not exist")
            arch, meta = _file_arch(path)
            arch = arch or cls.official_arch
            info = CheckpointInfo(name=path.name, sha256=sha256_file(path), path=str(path), source="file")
        elif variant is None:
            raise CgmbenchError(f"task {task.name} names no default {cls.family} checkpoint",
                                f"choose one with --model {cls.family}:VARIANT ({', '.join(cls.variants())}) "
                                "or --checkpoint FILE")
        elif variant in cls.shipped_variants:
            path, digest = shipped(cls.shipped_variants[variant][0])
            arch, meta = _file_arch(path)
            info = CheckpointInfo(name=variant, sha256=digest, path=str(path), source="shipped")
        elif variant in cls.official_variants:
            path, digest = resolve(f"{cls.family}:{variant}")
            arch, meta = dict(cls.official_arch), {}
            info = CheckpointInfo(name=variant, sha256=digest, path=str(path), source=known_file(
                f"{cls.family}:{variant}").url)
        else:
            raise CgmbenchError(f"unknown {cls.family} checkpoint {variant!r}",
                                f"known: {', '.join(cls.variants())}")
        if arch is None:
            raise CgmbenchError(f"{path} carries no cgmbench architecture metadata")
        res = int(task.resolution)
        trained = meta.get("cgmbench.resolution")
        if trained is not None and int(trained) != res:
            raise CgmbenchError(f"{cls.family} checkpoint {info.name} was trained at {trained}x{trained}, "
                                f"task {task.name} is {res}x{res}", "use a checkpoint trained for this task")
        stride = generator_stride(arch)
        if res % stride:
            raise CgmbenchError(f"{cls.family} generator {arch['netG']} needs a resolution divisible by {stride}; "
                                f"task {task.name} has {res}")
        net = build_generator(arch)
        try:
            load_official_state_dict(path, net)
        except (ValueError, FileNotFoundError) as e:
            raise CgmbenchError(f"{path} is not a {cls.family} generator checkpoint ({arch['netG']}, "
                                f"norm={arch.get('norm')}): {e}",
                                f"{cls.family} expects the generator state dict (latest_net_G.pth)") from None
        info.extra.update({"architecture": dict(arch), "format": "official state dict" if
                           path.suffix != ".safetensors" else "safetensors"})
        return cls(net, (res, res), checkpoint=info, device=device, arch=arch)

    # -- sampling -----------------------------------------------------------------------

    def source_images(self, conditions) -> torch.Tensor:
        """``conditions.images`` checked and mapped to float ``[-1, 1]`` on the model's device."""
        images = conditions.images
        if images is None:
            raise CgmbenchError(f"{self.name} translates images: the conditions hold no source images")
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
            raise CgmbenchError(f"{self.name} needs RGB source images uint8 [B, 3, H, W], got {shape}",
                                "convert grey or RGBA sources to 3-channel RGB")
        if images.dtype != torch.uint8:
            raise CgmbenchError(f"{self.name} needs uint8 source images, got {images.dtype}")
        h, w = images.shape[-2:]
        if (h, w) != self.resolution:
            raise CgmbenchError(f"source images are {h}x{w}, but this {self.name} model works at "
                                f"{self.resolution[0]}x{self.resolution[1]}",
                                "resize the sources to the task resolution (the loaders do)")
        return images.to(self.device).float() / 127.5 - 1.0

    @torch.no_grad()
    def generate(self, conditions, seeds: Sequence[int], test_mode: str = "eval") -> torch.Tensor:
        x = self.source_images(conditions)
        if len(seeds) != len(x):
            raise CgmbenchError(f"{len(seeds)} seeds for {len(x)} source images")
        if test_mode not in TEST_MODES:
            raise CgmbenchError(f"knob test_mode={test_mode!r} is not one of {list(TEST_MODES)}")
        if test_mode == "eval":
            with inference_behaviour(self.net, "eval"):
                out = self.net(x)
        else:
            outs = []
            for i, seed in enumerate(seeds):
                g = torch_generator(seed, self.device) if test_mode == "official-default" else None
                with inference_behaviour(self.net, test_mode, g):
                    outs.append(self.net(x[i:i + 1]))
            out = torch.cat(outs)
        return to_uint8(out).cpu()


class Pix2PixGenerator(TranslationGenerator):
    """pix2pix for cgmbench: the U-Net generator of a released checkpoint or a shipped tiny one."""

    description = ("pix2pix (Isola et al. 2017): U-Net generator trained with cGAN + L1. A GAN has no guidance; "
                   "test_mode=official-default samples dropout noise (per-sample seeded), the only "
                   "diversity knob pix2pix has.")
    family = "pix2pix"
    official_arch = PIX2PIX_OFFICIAL_ARCH
    official_variants = ("facades_label2photo", "edges2shoes", "sat2map", "map2sat", "day2night")
    shipped_variants = {
        "shapes-paired-tiny": ("pix2pix-shapes-paired-tiny.safetensors",
                               "tiny U-Net (5 levels) trained by cgmbench on shapes-paired, 32x32"),
    }

    @classmethod
    def train(cls, task, config: str = "tiny", out: str | os.PathLike = "pix2pix-train", resume: bool = False,
              steps: int | None = None, seed: int = 0, device: str = "cpu", log=print) -> Path:
        """Train pix2pix on ``task`` with recipe ``config``; see :class:`_Trainer`. Returns the generator file."""
        return TranslationTrainer.make("pix2pix", task, config, out, resume, steps, seed, device, log).run()


# --------------------------------------------------------------------------------------
# Training recipes (``cgmbench train --model pix2pix --task shapes-paired --config tiny``)
# --------------------------------------------------------------------------------------




# cgmbench generator (``--model cyclegan``) and the training recipe
# --------------------------------------------------------------------------------------
#
# A released CycleGAN model is one direction's generator (``G_A`` for ``horse2zebra``, its
# inverse ``zebra2horse`` is a separate file). CycleGAN has no guidance and, with InstanceNorm
# and no dropout, no noise: every ``test_mode`` gives the same, deterministic output.







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










