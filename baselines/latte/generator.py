"""Latte as a cgmbench generator: class- or text-conditional video sampling through the shared ADM sampler.

Sampling follows the official ``sample/sample.py`` of Vchitect/Latte: ``create_diffusion(str(steps))``
(1000 linear-beta steps respaced, learned-range variance), DDPM ancestral sampling (or DDIM), guidance on a
doubled batch with the null class ``num_classes``, and the Stable Diffusion KL-f8 VAE (``sd-vae-ft-ema``,
scale 0.18215) applied **frame by frame**. The samplers are :mod:`cgmbench.diffusion`'s; this module only
adapts the layout: Latte's network takes ``(N, F, C, h, w)`` (frames before channels) while the ADM sampler
splits the learned variance along dim 1, so the sampler's state is ``(N, C, F, h, w)`` and the network is
called through a transposing wrapper.

Knobs (the suite's conventions, :mod:`cgmbench.diffusion.guidance`):

* ``guidance_scale`` ``w``: ``eps = uncond + w * (cond - uncond)`` on every eps channel (the official
  ``forward_with_cfg`` guides all 4 latent channels; its ``cfg_scale`` is this same ``w``: 7.0 for UCF-101).
  For text models the unconditional input is the empty prompt. At ``w == 1`` the second pass is skipped.
* ``steps``: respaced sampling steps (250 in the official UCF-101 sampling); ``sampler``: ``ddpm`` or ``ddim``;
  ``eta``: DDIM's noise scale.

Per-sample seeding: sample ``i`` draws its whole initial noise video ``(F, C, h, w)`` (every frame, in the
official ``torch.randn(1, F, 4, h, w)`` order) and every step's noise from ``torch_generator(seeds[i])`` alone,
so a sample does not depend on its batch, device placement of the batch, or the frames of other samples.

Variants: ``ucf101`` (official Latte-XL/2 EMA weights ``latte:ucf101``, 16 frames at 256x256, class labels in
UCF-101's ``classInd.txt`` order starting at 0), ``shapes-t2v-tiny`` (pixel-space 8x32x32 Latte with the shapes
word encoder, trained by ``cgmbench train --model latte --task shapes-t2v`` and shipped). ``--checkpoint PATH``
loads a cgmbench-trained ``.safetensors`` (configuration in its metadata) or an official ``.pt`` with the
``ucf101`` configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from baselines.common.latent import SD_VAE_SCALE_FACTOR, IdentityDecoder, LatentDecoder, SDKLDecoder
from baselines.common.shipped import _is_cgmbench_file, read_shipped
from baselines.common.text_encoders import ShapesWordEncoder, check_prompts
from baselines.latte.checkpoints import check_state_dict, load_latte_checkpoint
from baselines.latte.models import Latte, latte_from_release
from baselines.latte.sampling import _VideoStepNoise, build_latte, latte_diffusion, latte_eps_model, video_noise
from cgmbench.diffusion import cfg_model
from cgmbench.errors import CgmbenchError
from cgmbench.generator import CheckpointInfo, Generator, Knob, to_uint8
from cgmbench.seeding import torch_generator

__all__ = ["LatteGenerator", "LatteVariant", "VARIANTS", "VAE_WEIGHTS"]

VAE_WEIGHTS = "sd-vae-ft-ema"


def _knobs(defaults: dict) -> tuple[Knob, ...]:
    return (
        Knob("guidance_scale", float(defaults.get("guidance_scale", 7.0)),
             "classifier-free guidance w: eps = uncond + w*(cond - uncond) on all eps channels (Latte cfg_scale)",
             "float", 0.0, 50.0),
        Knob("steps", int(defaults.get("steps", 250)), "DDPM/DDIM sampling steps (respaced from 1000)", "int", 1, 1000),
        Knob("sampler", defaults.get("sampler", "ddpm"), "ddpm (ancestral, the official sampling) or ddim",
             "choice", choices=("ddpm", "ddim")),
        Knob("eta", float(defaults.get("eta", 0.0)), "DDIM noise scale (0 = deterministic); ignored by ddpm",
             "float", 0.0, 1.0),
    )


@dataclass(frozen=True)
class LatteVariant:
    name: str
    description: str
    weights: str
    shipped: bool = False
    task: str | None = None
    release: str | None = None  # RELEASED_CONFIGS name for official files


VARIANTS: dict[str, LatteVariant] = {
    "ucf101": LatteVariant("ucf101", "Latte-XL/2 UCF-101 256x256, 16 frames, 101 classes (official EMA weights; "
                           "250 DDPM steps, cfg 7.0)", "latte:ucf101", task="ucf101-cc", release="ucf101"),
    "shapes-t2v-tiny": LatteVariant("shapes-t2v-tiny", "tiny pixel-space Latte (8 frames of 32x32, patch 8, x0 "
                                    "prediction) with the shapes word encoder, trained on shapes-t2v by cgmbench "
                                    "(shipped)",
                                    "latte-shapes-t2v-tiny.safetensors", shipped=True, task="shapes-t2v"),
}

OFFICIAL_DEFAULTS = {"guidance_scale": 7.0, "steps": 250, "sampler": "ddpm"}


class LatteGenerator(Generator):
    """Latte (Ma et al. 2024), latent video diffusion transformer; see the module docstring."""

    condition_kinds = frozenset({"class", "text->video"})
    knobs = _knobs(OFFICIAL_DEFAULTS)
    precisions = ("fp32", "bf16")
    description = "Latte (Ma et al. 2024): video diffusion transformer (spatial/temporal blocks), DDPM/DDIM + CFG"

    def __init__(self, model: Latte, decoder: LatentDecoder, resolution: int, checkpoint: CheckpointInfo,
                 text_encoder: ShapesWordEncoder | None = None, clip_denoised: bool = False,
                 knob_defaults: dict | None = None, device: str = "cpu", predict_xstart: bool = False):
        self.predict_xstart = bool(predict_xstart)  # cgmbench's tiny recipe predicts x0; official Latte eps
        super().__init__((resolution, resolution), frames=model.num_frames, checkpoint=checkpoint, device=device)
        self.model = model.eval().requires_grad_(False).to(device)
        self.decoder = decoder.to(device)
        self.text_encoder = text_encoder.eval().requires_grad_(False).to(device) if text_encoder is not None else None
        self.clip_denoised = clip_denoised
        self.knobs = _knobs({**OFFICIAL_DEFAULTS, **(knob_defaults or {})})
        side = model.x_embedder.img_size[0] * decoder.downsample_factor
        if side != resolution:
            raise CgmbenchError(f"Latte makes {side}x{side} frames but {resolution}x{resolution} were asked for")
        if model.extras == 2:
            self.condition_kinds = frozenset({"class"})
        elif model.extras == 78:
            if text_encoder is None:
                raise CgmbenchError("this text-conditional Latte has no text encoder",
                                    "load a cgmbench-trained checkpoint that stores one")
            self.condition_kinds = frozenset({"text->video"})
        else:
            self.condition_kinds = frozenset({"unconditional"})
        self._diffusions: dict[int, object] = {}

    # -- construction -------------------------------------------------------------------

    @classmethod
    def variants(cls) -> dict[str, str]:
        return {name: v.description for name, v in VARIANTS.items()}

    @classmethod
    def required_files(cls, task, variant=None, checkpoint=None) -> list:
        """The official checkpoint and the SD VAE it decodes with (shipped variants and cgmbench files: nothing;
        an official-format file given as ``checkpoint``: the VAE)."""
        from cgmbench.requirements import weights_file

        if checkpoint is not None:
            path = Path(checkpoint)
            if path.suffix == ".safetensors" and path.is_file() and _is_cgmbench_file(path):
                return []
            return [weights_file(VAE_WEIGHTS, f"model latte ({path.name}): VAE decoder")]
        if variant is None:
            found = [v for v in VARIANTS.values() if v.task == task.name]
            if not found:
                return []  # load() names the choices
            variant = found[0].name
        if variant not in VARIANTS:
            raise CgmbenchError(f"unknown Latte checkpoint {variant!r}", f"known: {', '.join(VARIANTS)}")
        v = VARIANTS[variant]
        if v.shipped:
            return []
        return [weights_file(v.weights, f"model latte:{v.name} checkpoint"),
                weights_file(VAE_WEIGHTS, f"model latte:{v.name}: VAE decoder")]

    @classmethod
    def load(cls, task, variant: str | None = None, checkpoint: str | None = None,
             device: str = "cpu") -> "LatteGenerator":
        if checkpoint is not None:
            gen = cls._from_file(Path(checkpoint), variant, device)
        else:
            if variant is None:
                found = [v for v in VARIANTS.values() if v.task == task.name]
                if not found:
                    raise CgmbenchError(f"task {task.name} names no Latte checkpoint",
                                        f"use --model latte:VARIANT ({', '.join(VARIANTS)}) or --checkpoint PATH")
                variant = found[0].name
            if variant not in VARIANTS:
                raise CgmbenchError(f"unknown Latte checkpoint {variant!r}", f"known: {', '.join(VARIANTS)}")
            gen = cls._from_variant(VARIANTS[variant], device)
        cls._check_task(gen, task)
        return gen

    @staticmethod
    def _check_task(gen: "LatteGenerator", task) -> None:
        task_frames = getattr(task, "frames", None)
        if task_frames and int(task_frames) != gen.frames:
            raise CgmbenchError(f"this Latte makes {gen.frames}-frame videos; task {task.name} needs {task_frames} "
                                "frames", "choose a checkpoint trained for this task's frame count")
        if gen.resolution != (task.resolution, task.resolution):
            raise CgmbenchError(f"this Latte makes {gen.resolution[0]}x{gen.resolution[1]} frames; task {task.name} "
                                f"needs {task.resolution}x{task.resolution}", "choose a checkpoint made for this task")

    @classmethod
    def _from_variant(cls, v: LatteVariant, device: str) -> "LatteGenerator":
        from cgmbench import weights

        if v.shipped:
            path, sha = weights.shipped(v.weights)
            return cls.from_cgmbench_file(path, CheckpointInfo(f"latte:{v.name}", sha, str(path), "shipped"), device)
        missing = []
        for name in (v.weights, VAE_WEIGHTS):  # name every missing file at once
            try:
                weights.resolve(name)
            except CgmbenchError as error:
                if type(error) is not CgmbenchError:  # a corrupt file stops here
                    raise
                missing.append(error)
        if missing:
            raise CgmbenchError(" -- and -- ".join(str(e) for e in missing),
                                "the Latte checkpoint and the SD VAE it decodes with are both needed")
        path, sha = weights.resolve(v.weights)
        info = CheckpointInfo(f"latte:{v.name}", sha, str(path), weights.known_file(v.weights).url)
        return cls.from_official(path, v.release, info, device)

    @classmethod
    def _from_file(cls, path: Path, variant: str | None, device: str) -> "LatteGenerator":
        from cgmbench.weights import sha256_file

        if not path.is_file():
            raise CgmbenchError(f"checkpoint file {path} does not exist")
        info = CheckpointInfo(f"file:{path.name}", sha256_file(path), str(path.resolve()), "user file")
        if path.suffix == ".safetensors" and _is_cgmbench_file(path):
            return cls.from_cgmbench_file(path, info, device)
        release = VARIANTS[variant].release if variant in VARIANTS and VARIANTS[variant].release else "ucf101"
        return cls.from_official(path, release, info, device)

    @classmethod
    def from_cgmbench_file(cls, path: Path, info: CheckpointInfo, device: str = "cpu") -> "LatteGenerator":
        """A cgmbench-trained checkpoint: ``model.`` Latte + ``text_encoder.`` (configuration in the metadata)."""
        tensors, config = read_shipped(path)
        if config.get("model") != "latte":
            raise CgmbenchError(f"{path} is a {config.get('model')!r} checkpoint, not a latte one")
        model, text = build_latte(config)
        state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        check_state_dict(model, state, str(path))
        model.load_state_dict(state, strict=True)
        if text is not None:
            te = {k[len("text_encoder."):]: v for k, v in tensors.items() if k.startswith("text_encoder.")}
            check_state_dict(text, te, f"{path} (text encoder)")
            text.load_state_dict(te, strict=True)
        info = CheckpointInfo(info.name, info.sha256, info.path, info.source,
                              extra={"latent": "identity", "space": "pixel", "clip_denoised": True,
                                     "prediction": config.get("prediction", "eps"),
                                     "text_encoder": "ShapesWordEncoder" if text is not None else None})
        return cls(model, IdentityDecoder(), int(config["resolution"]), info, text_encoder=text,
                   clip_denoised=bool(config.get("clip_denoised", True)),
                   knob_defaults=config.get("defaults", {}), device=device,
                   predict_xstart=config.get("prediction", "eps") == "x0")

    @classmethod
    def from_official(cls, path: Path, release: str, info: CheckpointInfo, device: str = "cpu") -> "LatteGenerator":
        """A released Latte ``.pt`` loaded strictly, with the SD VAE (``sd-vae-ft-ema``) frame by frame."""
        with torch.device("meta"):
            skeleton = latte_from_release(release)
        model = load_latte_checkpoint(path, skeleton).float()
        decoder, vae_info = _sd_vae(device)
        info = CheckpointInfo(info.name, info.sha256, info.path, info.source,
                              extra={"release": release, "latent": VAE_WEIGHTS, **vae_info, "clip_denoised": False})
        return cls(model, decoder, 8 * model.x_embedder.img_size[0], info, clip_denoised=False, device=device)

    # -- sampling -----------------------------------------------------------------------

    def _diffusion(self, steps: int):
        if steps not in self._diffusions:
            self._diffusions[steps] = latte_diffusion("x0" if self.predict_xstart else "eps", self.model.learn_sigma,
                                                      str(steps))
        return self._diffusions[steps]

    def _condition_kwargs(self, conditions, n: int) -> tuple[dict, dict]:
        """``(cond_kwargs, uncond_kwargs)`` of the network for ``n`` samples."""
        if self.model.extras == 2:
            if conditions.labels is None:
                raise CgmbenchError("this Latte is class-conditional but the conditions carry no class labels",
                                    "use a class-conditional task (e.g. ucf101-cc)")
            labels = torch.as_tensor(conditions.labels).long().reshape(-1)
            if len(labels) != n:
                raise CgmbenchError(f"{len(labels)} labels but {n} seeds were given")
            bad = labels[(labels < 0) | (labels >= self.model.num_classes)]
            if len(bad):
                raise CgmbenchError(f"class label {int(bad[0])} is out of range for this Latte",
                                    f"labels must lie in [0, {self.model.num_classes - 1}]")
            labels = labels.to(self.device)
            return {"y": labels}, {"y": torch.full_like(labels, self.model.num_classes)}
        if self.model.extras == 78:
            texts = check_prompts(conditions.texts, "latte")
            if len(texts) != n:
                raise CgmbenchError(f"{len(texts)} prompts but {n} seeds were given")
            with torch.no_grad():
                tokens, _, _ = self.text_encoder.encode(texts)
                empty, _, _ = self.text_encoder.encode([""] * n)
            return {"text_embedding": tokens.float()}, {"text_embedding": empty.float()}
        raise CgmbenchError("this Latte is unconditional; cgmbench tasks are conditional",
                            "use the ucf101 checkpoint or a text model")

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Sampler state ``(N, C, F, h, w)`` -> frames in [-1, 1] ``(N, F, 3, H, W)``, decoded frame by frame."""
        n, c, f, h, w = latents.shape
        frames = latents.transpose(1, 2).reshape(n * f, c, h, w)
        out = [self.decoder.decode(frames[i:i + 16]) for i in range(0, n * f, 16)]
        video = torch.cat(out)
        return video.reshape(n, f, *video.shape[1:])

    def generate(self, conditions, seeds: Sequence[int], **knobs) -> torch.Tensor:
        k = self.resolve_knobs(knobs)
        n = len(seeds)
        cond, uncond = self._condition_kwargs(conditions, n)
        w = float(k["guidance_scale"])
        model_fn = cfg_model(latte_eps_model(self.model), w, uncond, channels=self.model.in_channels)
        generators = [torch_generator(s) for s in seeds]  # CPU generators: device-independent draws
        side = self.model.x_embedder.img_size[0]
        c, f = self.model.in_channels, self.model.num_frames
        x_T = video_noise(generators, f, c, side, device=self.device)
        kwargs = dict(noise=x_T, clip_denoised=self.clip_denoised, model_kwargs=cond, device=self.device,
                      step_noise=_VideoStepNoise(generators, device=self.device))
        diffusion = self._diffusion(int(k["steps"]))
        shape = tuple(x_T.shape)
        with torch.no_grad(), self.autocast():
            if k["sampler"] == "ddpm":
                latents = diffusion.p_sample_loop(model_fn, shape, **kwargs)
            else:
                latents = diffusion.ddim_sample_loop(model_fn, shape, eta=float(k["eta"]), **kwargs)
            video = self.decode(latents.float())
        return to_uint8(video).cpu()

    # -- training -----------------------------------------------------------------------

    @classmethod
    def train(cls, task, config: str = "tiny", out=None, resume: bool = False, steps: int | None = None,
              seed: int = 0, device: str = "cpu", log=print) -> Path:
        """Train a tiny Latte on a shapes video task (:mod:`baselines.latte.train`); returns the ``.safetensors``."""
        from baselines.latte.train import train_latte

        return train_latte(task, config, out, resume, steps, seed, device, log)

    def describe(self) -> dict:
        d = super().describe()
        d["clip_denoised"] = self.clip_denoised
        return d


def _sd_vae(device: str) -> tuple[LatentDecoder, dict]:
    from cgmbench import weights

    path, sha = weights.resolve(VAE_WEIGHTS)
    try:
        decoder = SDKLDecoder.from_file(path, None, SD_VAE_SCALE_FACTOR, name=VAE_WEIGHTS, device=device)
    except ValueError as e:
        raise CgmbenchError(f"VAE weights {path} do not fit the SD KL-f8 autoencoder: {e}") from None
    return decoder, {"vae": {"name": VAE_WEIGHTS, "sha256": sha, "path": str(path), "scale_factor": SD_VAE_SCALE_FACTOR}}
