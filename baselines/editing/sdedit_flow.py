"""``sdedit:sd3-<checkpoint>``: SDEdit on an SD3-style rectified-flow model (training-free).

The source is mixed with noise at ``sigma = sigmas[t_start]`` (``x = (1 - sigma) x0 + sigma eps``, the diffusers
``StableDiffusion3Img2ImgPipeline`` strength convention, :func:`baselines.editing.sampling.edit_flow`) and denoised
by the shared flow sampler (:mod:`cgmbench.diffusion.flow`, Euler or DPM++(2M)) from there, with the target prompt
and classifier-free guidance on the denoised prediction (``cfg`` = ``guidance_scale``) against the instruction
rule's negative prompt (:func:`baselines.editing.prompts.edit_prompts`). ``eps`` is drawn from the sample's
``torch_generator(seed)`` exactly as :class:`baselines.sd3.generator.SD3Generator` draws its initial noise, so
``strength = 1`` with the same prompt and an empty negative prompt *is* text-to-image sampling, sample for sample.

The shipped ``sd3:shapes-t2i-tiny`` works in pixel space (``x0`` = the source in ``[-1, 1]``), so ``strength = 0``
returns the source exactly. The official SD3 file is loaded with its VAE decoder only; editing it would need the
encoder, and is refused with a clear error.
"""

from __future__ import annotations

from typing import Sequence

import torch

from baselines.editing.prompts import RULE, edit_prompts
from cgmbench.diffusion import CFGDenoiser, ModelSamplingDiscreteFlow, get_sigmas, per_sample_noise
from cgmbench.errors import CgmbenchError
from cgmbench.generator import CheckpointInfo, Generator, Knob, to_uint8
from cgmbench.seeding import torch_generator

PREFIX = "sd3-"
STRENGTH_CONVENTION = ("diffusers StableDiffusion3Img2ImgPipeline: t_start = int(max(N - N strength, 0)); the source "
                       "mixed at sigma = sigmas[t_start], x = (1 - sigma) x0 + sigma eps; the flow sampler runs "
                       "sigmas[t_start:] (N - t_start steps)")


def _knobs(defaults: dict, strength: float) -> tuple[Knob, ...]:
    from baselines.sd3.generator import SAMPLERS

    return (
        Knob("strength", float(strength), "edit strength s (diffusers SD3 img2img): the source mixed with noise at "
             "the schedule's sigma nearest below s, ceil(N s) steps run; 0 = the source, 1 = text-to-image",
             minimum=0.0, maximum=1.0),
        Knob("guidance_scale", float(defaults["guidance_scale"]), "classifier-free guidance w (SD3 cfg) on the "
             "denoised prediction: neg + w (pos - neg), the negative prompt from the instruction rule",
             minimum=0.0, maximum=50.0),
        Knob("steps", int(defaults["steps"]), "steps of the full schedule", kind="int", minimum=1, maximum=1000),
        Knob("shift", float(defaults["shift"]), "SD3 time shift of the schedule (pinned per checkpoint)",
             minimum=0.05, maximum=20.0),
        Knob("sampler", defaults["sampler"], "ODE sampler", kind="choice", choices=tuple(SAMPLERS)),
    )


class FlowSDEditGenerator(Generator):
    """SDEdit on a rectified-flow SD3 model (see the module docstring); served as ``sdedit:sd3-<checkpoint>``."""

    condition_kinds = frozenset({"image+text"})
    precisions = ("fp32", "bf16")
    description = "SDEdit on SD3 rectified flow: mix the source with noise at sigma(strength), denoise with the prompt"

    def __init__(self, base, device: str = "cpu", strength: float = 0.4):
        super().__init__(base.resolution, checkpoint=None, device=device)
        self.base = base
        info = base.checkpoint or CheckpointInfo("sd3", None)
        self.checkpoint = CheckpointInfo(info.name, info.sha256, info.path, info.source,
                                         extra={**info.extra, "base_model": "sd3", "prompt_rule": RULE,
                                                "strength_convention": STRENGTH_CONVENTION, "training_free": True})
        defaults = {k.name: k.default for k in base.knobs}
        self.knobs = _knobs(defaults, strength)

    @classmethod
    def variants(cls) -> dict[str, str]:
        from baselines.sd3.generator import SHIPPED_SD3

        return {PREFIX + name: f"training-free on the sd3:{name} checkpoint (rectified flow)" for name in SHIPPED_SD3}

    @classmethod
    def load(cls, task, variant=None, checkpoint=None, device="cpu") -> "FlowSDEditGenerator":
        from baselines.sd3.generator import SD3Generator

        name = variant[len(PREFIX):] if variant and variant.startswith(PREFIX) else variant
        base = SD3Generator.load(task, variant=name, checkpoint=checkpoint, device=device)
        if base.decoder is not None:
            raise CgmbenchError(f"sdedit on sd3:{name} needs the SD3 VAE encoder, which cgmbench does not load",
                                "use --model sdedit:sd3-shapes-t2i-tiny (pixel space)")
        return cls(base, device=device)

    def set_precision(self, precision: str) -> None:
        super().set_precision(precision)
        self.base.set_precision(precision)

    @torch.no_grad()
    def generate(self, conditions, seeds: Sequence[int], **knobs) -> torch.Tensor:
        from baselines.editing.sampling import edit_flow
        from baselines.sd3.generator import SAMPLERS

        images = conditions.images
        if images is None or conditions.texts is None:
            raise CgmbenchError(f"{self.name} needs a source image and an instruction per sample")
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or tuple(images.shape[1:]) != (3, *self.resolution):
            raise CgmbenchError(f"source images must be uint8 [B, 3, {self.resolution[0]}, {self.resolution[1]}], "
                                f"got {images.dtype} {tuple(images.shape)}",
                                "resize the sources with the task's protocol or choose a checkpoint of that size")
        if len(seeds) != len(images):
            raise CgmbenchError(f"got {len(seeds)} seeds for {len(images)} source images")
        k = self.resolve_knobs(knobs)
        base, dev = self.base, self.device
        ms = ModelSamplingDiscreteFlow(shift=k["shift"])
        sigmas = get_sigmas(ms, k["steps"])
        denoiser = CFGDenoiser(base.mmdit, ms)
        out = []
        for i, seed in enumerate(seeds):
            prompt, negative = edit_prompts(conditions.texts[i])
            tok, pool, _ = base.text_encoder.encode([prompt])
            cond = {"context": tok.to(dev).float(), "y": pool.to(dev).float()}
            uncond = None
            if k["guidance_scale"] != 1.0:
                u_tok, u_pool, _ = base.text_encoder.encode([negative])
                uncond = {"context": u_tok.to(dev).float(), "y": u_pool.to(dev).float()}
            eps = per_sample_noise([torch_generator(int(seed))], base.latent_shape, device=dev)
            x0 = images[i:i + 1].to(dev).float() / 127.5 - 1.0
            with self.autocast():
                x, _ = edit_flow(SAMPLERS[k["sampler"]], denoiser, x0, sigmas, eps, k["strength"],
                                 extra_args={"cond": cond, "uncond": uncond, "cond_scale": k["guidance_scale"]})
            out.append(to_uint8(base.decode(x.float()).float()).cpu())
        return torch.cat(out)
