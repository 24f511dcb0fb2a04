"""DiT as a cgmbench generator, and its training recipe.

Sampling follows the official ``sample.py`` / ``sample_ddp.py`` of facebookresearch/DiT:
``create_diffusion(str(steps))`` (1000 linear-beta steps respaced to ``steps``, learned-range
variance), DDPM ancestral sampling (or DDIM), classifier-free guidance with the null class
``num_classes`` and, for the latent models, the Stable Diffusion KL-f8 VAE with scale 0.18215.

Knobs (the suite's conventions, :data:`cgmbench.generator.GUIDANCE_CONVENTION`):

* ``guidance_scale`` ``w``: ``eps = uncond + w * (cond - uncond)``; DiT's ``cfg_scale`` is this same
  ``w`` (FID-50K 2.27 at 1.5). At ``w == 1`` the unconditional pass is skipped.
* ``steps``: respaced sampling steps (250 for the paper's FID; fewer for the tiny models).
* ``sampler``: ``ddpm`` (the paper) or ``ddim``; ``eta``: DDIM's noise scale (0 = deterministic).
* ``guided_channels``: ``"3"`` guides eps channels 0-2 only, as the official ``forward_with_cfg``
  does; ``"all"`` guides every eps channel (textbook CFG). The learned-variance channels always come
  from the conditional pass. For the 3-channel pixel-space tiny models both choices are the same.

Variants: ``xl-2-256`` and ``xl-2-512`` (official EMA weights, :func:`cgmbench.weights.resolve`,
plus the VAE ``sd-vae-ft-ema``), ``shapes-cc-tiny`` and ``digits-cc-tiny`` (pixel-space 32x32,
trained by :meth:`DiTGenerator.train` and shipped in ``cgmbench/shipped``). ``--checkpoint PATH``
loads a user file: its architecture comes from a companion ``PATH-without-suffix.json``
(``{"dit": {DiT kwargs}, "latent": "identity" | "sd-vae-ft-ema", "image_size": ...}``), or else
from the task (the official XL/2 preset for 256/512 tasks, the tiny recipe otherwise).

Sample ``i`` draws its initial noise and every step's noise from ``torch_generator(seeds[i])``
(on the CPU, then moved), so samples do not depend on batch size or device placement of the batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import torch

from baselines.common.latent import SD_VAE_SCALE_FACTOR, IdentityDecoder, LatentDecoder, SDKLDecoder
from baselines.dit.checkpoints import load_dit_checkpoint
from baselines.dit.models import DiT, DiT_models
from baselines.dit.train import TRAIN_CONFIGS, DiTTrainConfig, _task_num_classes, _tiny_arch, _train
from cgmbench.conditions import Conditions
from cgmbench.diffusion import PerSampleNoise, cfg_model, create_diffusion, per_sample_noise
from cgmbench.errors import CgmbenchError
from cgmbench.generator import CheckpointInfo, Generator, Knob, to_uint8
from cgmbench.seeding import torch_generator

__all__ = ["DiTGenerator", "DiTVariant", "DiTTrainConfig", "OFFICIAL_VARIANTS", "SHIPPED_VARIANTS",
           "TRAIN_CONFIGS", "VAE_WEIGHTS"]

#: KnownFile name of the VAE the official DiT samples are decoded with (``sample_ddp.py --vae ema``)
VAE_WEIGHTS = "sd-vae-ft-ema"

KNOBS = (
    Knob("guidance_scale", 1.5, "classifier-free guidance w: eps = uncond + w*(cond - uncond) "
         "(DiT cfg_scale; 1 = no guidance)", "float", 0.0, 20.0),
    Knob("steps", 250, "DDPM/DDIM sampling steps (respaced from 1000)", "int", 1, 1000),
    Knob("sampler", "ddpm", "ddpm (ancestral, the paper) or ddim", "choice", choices=("ddpm", "ddim")),
    Knob("eta", 0.0, "DDIM noise scale (0 = deterministic DDIM); ignored by ddpm", "float", 0.0, 1.0),
    Knob("guided_channels", "3", "eps channels guided: '3' (official forward_with_cfg) or 'all'",
         "choice", choices=("3", "all")),
)


@dataclass(frozen=True)
class DiTVariant:
    """A named checkpoint: network kwargs, where the weights are, how samples are decoded.

    ``arch``: :class:`~baselines.dit.DiT` kwargs (``model`` names a preset of ``DiT_models``);
    ``weights``: a KnownFile name (official) or a shipped file name; ``latent``: ``"identity"`` or
    ``"sd-vae-ft-ema"``; ``vae_config``: ``AutoencoderKL`` kwargs (None = SD 1.x KL-f8).
    """

    name: str
    description: str
    arch: dict
    weights: str
    image_size: int
    latent: str = "identity"
    shipped: bool = False
    task: str | None = None
    clip_denoised: bool = False
    knob_defaults: dict = field(default_factory=dict)
    vae_config: dict | None = None


OFFICIAL_VARIANTS: dict[str, DiTVariant] = {
    "xl-2-256": DiTVariant(
        "xl-2-256", "DiT-XL/2 ImageNet 256x256 (official EMA weights; FID-50K 2.27 at guidance 1.5, 250 DDPM steps)",
        dict(model="DiT-XL/2", input_size=32, num_classes=1000), "dit:xl-2-256", 256, latent=VAE_WEIGHTS),
    "xl-2-512": DiTVariant(
        "xl-2-512", "DiT-XL/2 ImageNet 512x512 (official EMA weights; FID-50K 3.04 at guidance 1.5, 250 DDPM steps)",
        dict(model="DiT-XL/2", input_size=64, num_classes=1000), "dit:xl-2-512", 512, latent=VAE_WEIGHTS),
}






def _tiny_variant(task: str) -> DiTVariant:
    return DiTVariant(
        f"{task}-tiny", f"tiny pixel-space DiT (32x32, patch 4) trained on {task} by cgmbench (shipped)",
        {}, f"dit-{task}-tiny.safetensors", 32, shipped=True, task=task, clip_denoised=True)


SHIPPED_VARIANTS: dict[str, DiTVariant] = {
    "shapes-cc-tiny": _tiny_variant("shapes-cc"),
    "digits-cc-tiny": _tiny_variant("digits-cc"),
}


def _all_variants() -> dict[str, DiTVariant]:
    return {**OFFICIAL_VARIANTS, **SHIPPED_VARIANTS}


def _build_dit(arch: dict) -> DiT:
    arch = dict(arch)
    preset = arch.pop("model", None)
    if preset is not None:
        if preset not in DiT_models:
            raise CgmbenchError(f"unknown DiT preset {preset!r}", f"presets: {', '.join(DiT_models)}")
        return DiT_models[preset](**arch)
    return DiT(**arch)


def _companion_json(path: Path) -> Path:
    return path.with_suffix(".json")


def _load_weights(path: Path, model: DiT) -> None:
    try:
        load_dit_checkpoint(path, model)
    except (ValueError, FileNotFoundError) as e:
        raise CgmbenchError(f"cannot load DiT checkpoint {path}: {e}",
                            "give the architecture in a companion JSON ({'dit': {...DiT kwargs}}) "
                            "or choose the matching --model dit:VARIANT") from None


class DiTGenerator(Generator):
    """Class-conditional DiT (Peebles & Xie 2023) with ADM diffusion sampling; see the module docstring."""

    condition_kinds = frozenset({"class"})
    knobs = KNOBS
    precisions = ("fp32", "bf16")
    #: samples run through the network this many at a time (None: the whole generate() batch). CPU matrix
    #: kernels round differently for different row counts, so 1 (the default) makes every sample bit-identical
    #: whatever batch it arrives in; on a GPU a larger value is faster and may differ in the last bits.
    micro_batch: int | None = 1
    description = "DiT (Peebles & Xie 2023): class-conditional diffusion transformer, DDPM/DDIM + CFG"

    def __init__(self, model: DiT, decoder: LatentDecoder, image_size: int, checkpoint: CheckpointInfo,
                 clip_denoised: bool = False, knob_defaults: dict | None = None, device: str = "cpu"):
        super().__init__((image_size, image_size), checkpoint=checkpoint, device=device)
        self.model = model.eval().requires_grad_(False).to(device)
        self.decoder = decoder.to(device)
        self.clip_denoised = clip_denoised
        self.num_classes = model.num_classes
        self.has_null_class = model.y_embedder.embedding_table.num_embeddings > model.num_classes
        defaults = knob_defaults or {}
        self.knobs = tuple(replace(k, default=k.parse(defaults[k.name])) if k.name in defaults else k
                           for k in KNOBS)
        side = model.x_embedder.img_size[0] * decoder.downsample_factor
        if side != image_size:
            raise CgmbenchError(f"DiT makes {side}x{side} images (input {model.x_embedder.img_size[0]}, "
                                f"decoder factor {decoder.downsample_factor}) but {image_size}x{image_size} "
                                "were asked for")
        self._diffusions: dict[int, object] = {}

    # -- construction -------------------------------------------------------------------

    @classmethod
    def variants(cls) -> dict[str, str]:
        return {name: v.description for name, v in _all_variants().items()}

    @classmethod
    def load(cls, task, variant: str | None = None, checkpoint: str | None = None,
             device: str = "cpu") -> "DiTGenerator":
        if checkpoint is not None:
            gen = cls._from_file(task, Path(checkpoint), device)
        else:
            gen = cls._from_variant(cls._pick_variant(task, variant), device)
        if gen.resolution != (task.resolution, task.resolution):
            raise CgmbenchError(
                f"this DiT makes {gen.resolution[0]}x{gen.resolution[1]} images; task {task.name} needs "
                f"{task.resolution}x{task.resolution}", "choose a checkpoint made for this task")
        return gen

    @classmethod
    def required_files(cls, task, variant=None, checkpoint=None) -> list:
        """The official checkpoint and the SD VAE its latents decode with (shipped variants: nothing; a file given
        as ``checkpoint``: the VAE when its companion JSON, or the official preset it is read as, is latent)."""
        from cgmbench.requirements import weights_file

        if checkpoint is not None:
            path = Path(checkpoint)
            meta_path = _companion_json(path)
            if meta_path.is_file() and meta_path != path:
                try:
                    latent = json.loads(meta_path.read_text()).get("latent", "identity")
                except (OSError, ValueError, AttributeError):
                    return []  # load() says what is wrong with the companion file
            else:
                official = [v for v in OFFICIAL_VARIANTS.values() if v.image_size == task.resolution]
                latent = official[0].latent if official else "identity"
            return [weights_file(VAE_WEIGHTS, f"model dit ({path.name}): VAE decoder")] if latent == VAE_WEIGHTS \
                else []
        v = cls._pick_variant(task, variant)
        if v.shipped:
            return []
        out = [weights_file(v.weights, f"model dit:{v.name} checkpoint")]
        if v.latent == VAE_WEIGHTS:
            out.append(weights_file(VAE_WEIGHTS, f"model dit:{v.name}: VAE decoder"))
        return out

    @staticmethod
    def _pick_variant(task, variant: str | None) -> DiTVariant:
        variants = _all_variants()
        if variant is None:  # the task names none: a checkpoint trained for it, else the official one
            found = [v for v in variants.values() if v.task == task.name]
            found = found or [v for v in OFFICIAL_VARIANTS.values() if v.image_size == task.resolution]
            if not found:
                raise CgmbenchError(f"task {task.name} names no DiT checkpoint",
                                    f"use --model dit:VARIANT ({', '.join(variants)}) or --checkpoint PATH")
            return found[0]
        if variant not in variants:
            raise CgmbenchError(f"unknown DiT checkpoint {variant!r}", f"known: {', '.join(variants)}")
        return variants[variant]

    @classmethod
    def _from_variant(cls, v: DiTVariant, device: str) -> "DiTGenerator":
        from cgmbench import weights

        if v.shipped:
            path, sha = weights.shipped(v.weights)
            meta = json.loads(_companion_json(path).read_text())
            arch, latent, image_size = meta["dit"], meta.get("latent", "identity"), int(meta["image_size"])
            clip, knob_defaults = bool(meta.get("clip_denoised", True)), meta.get("knob_defaults", {})
            source = "shipped"
        else:
            path, sha = weights.resolve(v.weights)
            arch, latent, image_size = v.arch, v.latent, v.image_size
            clip, knob_defaults = v.clip_denoised, v.knob_defaults
            source = weights.known_file(v.weights).url
        decoder, vae_info = cls._decoder(latent, v.vae_config, device)
        model = _build_dit(arch)
        _load_weights(path, model)
        info = CheckpointInfo(f"dit:{v.name}", sha, str(path), source,
                              extra={"latent": latent, **vae_info, "clip_denoised": clip})
        return cls(model, decoder, image_size, info, clip, knob_defaults, device)

    @classmethod
    def _from_file(cls, task, path: Path, device: str) -> "DiTGenerator":
        from cgmbench.weights import sha256_file

        if not path.is_file():
            raise CgmbenchError(f"checkpoint file {path} does not exist")
        meta_path = _companion_json(path)
        if meta_path.is_file() and meta_path != path:
            meta = json.loads(meta_path.read_text())
            if "dit" not in meta:
                raise CgmbenchError(f"{meta_path} has no 'dit' entry with the DiT kwargs")
            arch, latent = meta["dit"], meta.get("latent", "identity")
            image_size = int(meta.get("image_size", task.resolution))
            clip, knob_defaults, vae_config = bool(meta.get("clip_denoised", latent == "identity")), \
                meta.get("knob_defaults", {}), meta.get("vae_config")
            inferred = f"companion {meta_path.name}"
        else:  # from the task: the official preset at 256/512, the tiny recipe otherwise
            official = [v for v in OFFICIAL_VARIANTS.values() if v.image_size == task.resolution]
            if official:
                v = official[0]
                arch, latent, clip, vae_config, knob_defaults = v.arch, v.latent, v.clip_denoised, v.vae_config, {}
                inferred = f"task {task.name}: {v.arch.get('model')} preset"
            else:
                cfg = TRAIN_CONFIGS.get(("tiny", task.name), DiTTrainConfig())
                num_classes = _task_num_classes(task)
                arch = _tiny_arch(cfg, task.resolution, num_classes)
                latent, clip, vae_config = "identity", cfg.clip_denoised, None
                knob_defaults = {"steps": cfg.sample_steps, "guidance_scale": cfg.guidance_scale}
                inferred = f"task {task.name}: tiny recipe"
            image_size = task.resolution
        decoder, vae_info = cls._decoder(latent, vae_config, device)
        model = _build_dit(arch)
        _load_weights(path, model)
        info = CheckpointInfo(f"file:{path.name}", sha256_file(path), str(path.resolve()), "user file",
                              extra={"latent": latent, **vae_info, "clip_denoised": clip, "architecture": inferred})
        return cls(model, decoder, image_size, info, clip, knob_defaults, device)

    @staticmethod
    def _decoder(latent: str, vae_config: dict | None, device: str) -> tuple[LatentDecoder, dict]:
        if latent == "identity":
            return IdentityDecoder(), {}
        if latent != VAE_WEIGHTS:
            raise CgmbenchError(f"unknown DiT latent decoder {latent!r}", f"use 'identity' or '{VAE_WEIGHTS}'")
        from cgmbench import weights

        path, sha = weights.resolve(VAE_WEIGHTS)
        try:
            decoder = SDKLDecoder.from_file(path, vae_config, SD_VAE_SCALE_FACTOR, name=VAE_WEIGHTS, device=device)
        except ValueError as e:
            raise CgmbenchError(f"VAE weights {path} do not fit the SD KL-f8 autoencoder: {e}") from None
        return decoder, {"vae": {"name": VAE_WEIGHTS, "sha256": sha, "path": str(path),
                                 "scale_factor": SD_VAE_SCALE_FACTOR}}

    # -- sampling -----------------------------------------------------------------------

    def _diffusion(self, steps: int):
        if steps not in self._diffusions:
            self._diffusions[steps] = create_diffusion(str(steps))
        return self._diffusions[steps]

    def _labels(self, conditions: Conditions, n_seeds: int) -> torch.Tensor:
        if conditions.labels is None:
            raise CgmbenchError("DiT needs class labels (conditions.labels is empty)")
        labels = torch.as_tensor(conditions.labels).long().reshape(-1)
        if len(labels) != n_seeds:
            raise CgmbenchError(f"{len(labels)} labels but {n_seeds} seeds were given")
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        if len(bad):
            raise CgmbenchError(f"class label {int(bad[0])} is out of range for this DiT",
                                f"labels must lie in [0, {self.num_classes - 1}]")
        return labels.to(self.device)

    def generate(self, conditions: Conditions, seeds: Sequence[int], **knobs) -> torch.Tensor:
        k = self.resolve_knobs(knobs)
        labels = self._labels(conditions, len(seeds))
        w = float(k["guidance_scale"])
        if w != 1 and not self.has_null_class:
            raise CgmbenchError("this DiT was trained without label dropout and has no null class",
                                "only guidance_scale=1 is possible")
        step = self.micro_batch or len(seeds)
        chunks = [self._sample(labels[i:i + step], seeds[i:i + step], k) for i in range(0, len(seeds), step)]
        return torch.cat(chunks)

    def _sample(self, labels: torch.Tensor, seeds: Sequence[int], k: dict) -> torch.Tensor:
        w = float(k["guidance_scale"])
        channels = 3 if k["guided_channels"] == "3" else self.model.in_channels
        model_fn = cfg_model(self.model, w, {"y": torch.full_like(labels, self.num_classes)}, channels=channels)
        generators = [torch_generator(s) for s in seeds]  # CPU generators: device-independent draws
        side = self.model.x_embedder.img_size[0]
        shape = (len(seeds), self.model.in_channels, side, side)
        x_T = per_sample_noise(generators, shape[1:], device=self.device)
        step_noise = PerSampleNoise(generators, device=self.device)
        diffusion = self._diffusion(int(k["steps"]))
        kwargs = dict(noise=x_T, clip_denoised=self.clip_denoised, model_kwargs={"y": labels},
                      device=self.device, step_noise=step_noise)
        with torch.no_grad(), self.autocast():
            if k["sampler"] == "ddpm":
                latents = diffusion.p_sample_loop(model_fn, shape, **kwargs)
            else:
                latents = diffusion.ddim_sample_loop(model_fn, shape, eta=float(k["eta"]), **kwargs)
            images = self.decoder.decode(latents)
        return to_uint8(images).cpu()

    # -- training -----------------------------------------------------------------------

    @classmethod
    def train(cls, task, config: str = "tiny", out: str | Path = "dit-train", resume: bool = False,
              steps: int | None = None, seed: int = 0, device: str = "cpu", log=print) -> Path:
        """Train a DiT on ``task`` with recipe ``config``; returns the exported EMA ``.safetensors``.

        Writes to ``out``: ``checkpoints/step-NNNNNNN.pt`` (model, EMA, optimizer and RNG states; plain
        tensors only, ``torch.load(weights_only=True)`` reads them), ``loss.csv`` (stage ``dit``, step, loss, mse, vb,
        lr, elapsed_s; one row every ``log_every`` steps), and at the end ``dit-<task>-<config>.safetensors`` (EMA
        weights, ``export_dtype``) with
        ``dit-<task>-<config>.json`` (architecture, sampling defaults, command, steps, final loss, sha256),
        the pair that ``--checkpoint`` and the shipped variants read. ``resume`` continues from the last
        checkpoint; given the seed the run is deterministic (for a fixed number of threads).
        """
        return _train(task, config, Path(out), resume, steps, seed, device, log)

    def describe(self) -> dict:
        d = super().describe()
        d["clip_denoised"] = self.clip_denoised
        return d


# ----------------------------------------------------------------------------- training


