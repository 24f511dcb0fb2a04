"""``sdedit`` and ``inpaint``: training-free editing with a latent-diffusion text-to-image model.

Both wrap an :class:`baselines.ldm.generator.LDMGenerator` (default checkpoint: the shipped
``ldm:shapes-t2i-tiny``, 32x32; ``--model sdedit:<ldm checkpoint>`` picks another ldm one; ``sdedit:sd3-<sd3
checkpoint>`` is SDEdit on SD3 rectified flow, :mod:`baselines.editing.sdedit_flow`) and never train:

* ``sdedit`` (Meng et al. 2022, SDEdit): encode the source image, noise it to ``strength`` and denoise with the
  target prompt (:func:`baselines.editing.sampling.edit_ddim`, the diffusers ``strength`` convention). The mask
  is not used: everything may change, less at lower strength.
* ``inpaint``: latent blending: the same, but outside the edit mask the latents follow the noised source at every
  step, and (``paste_background=on``, the default) the decoded image outside the mask is replaced by the source
  pixels, as inpainting pipelines composite their result.

Prompts: :func:`baselines.editing.prompts.edit_prompts` (instruction -> prompt and negative prompt);
inpainting tasks without text use the empty prompt. The source latent is the posterior *mean* of the first
stage, times ``scale_factor``. Each sample is computed alone from its own seed, so it does not depend on its batch.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from baselines.editing.prompts import RULE, edit_prompts
from baselines.editing.sampling import FULLY_CONVOLUTIONAL_MULTIPLE, edit_ddim
from cgmbench.errors import CgmbenchError
from cgmbench.generator import CheckpointInfo, Generator, Knob, to_uint8
from cgmbench.seeding import torch_generator

DEFAULT_BASE = "shapes-t2i-tiny"


def _common_knobs(strength: float) -> tuple[Knob, ...]:
    return (
        Knob("strength", float(strength), "edit strength s (diffusers img2img convention): int(steps * s) DDIM steps "
             "run from the source noised to that level; 0 = the source, 1 = from (nearly) pure noise",
             minimum=0.0, maximum=1.0),
        Knob("guidance_scale", 3.0, "classifier-free guidance w: e(neg) + w (e(prompt) - e(neg)), the negative "
             "prompt from the instruction rule; 1 = none", minimum=0.0, maximum=50.0),
        Knob("steps", 25, "DDIM steps of the full schedule (CompVis uniform discretisation)", kind="int",
             minimum=1, maximum=1000),
        Knob("eta", 0.0, "DDIM eta: 0 deterministic", minimum=0.0, maximum=1.0),
    )


class _LatentEditor(Generator):
    condition_kinds = frozenset({"image+text"})
    precisions = ("fp32", "bf16")
    blend = False

    def __init__(self, base, device: str = "cpu"):
        super().__init__(base.resolution, checkpoint=None, device=device)
        self.base = base
        info = base.checkpoint or CheckpointInfo("ldm", None)
        self.checkpoint = CheckpointInfo(info.name, info.sha256, info.path, info.source,
                                         extra={**info.extra, "base_model": "ldm", "prompt_rule": RULE,
                                                "strength_convention": "diffusers img2img: int(steps * strength) "
                                                                       "DDIM steps from the source noised to the "
                                                                       "first of them",
                                                "training_free": True})

    @classmethod
    def variants(cls) -> dict[str, str]:
        from baselines.ldm.generator import SHIPPED_LDM

        return {name: f"training-free on the ldm:{name} checkpoint" for name in SHIPPED_LDM}

    @classmethod
    def load(cls, task, variant=None, checkpoint=None, device="cpu") -> "Generator":
        from baselines.ldm.generator import LDMGenerator

        base = LDMGenerator.load(task, variant=variant or (None if checkpoint else DEFAULT_BASE),
                                 checkpoint=checkpoint, device=device)
        if not isinstance(base, LDMGenerator):
            raise CgmbenchError(f"{cls.__name__} edits with a text-to-image ldm checkpoint, not {variant!r}",
                                f"use --model {cls.default_name}:{DEFAULT_BASE}")
        model = cls(base, device=device)
        side = int(task.resolution)
        if (side, side) != tuple(base.resolution) and side % FULLY_CONVOLUTIONAL_MULTIPLE == 0:
            # the autoencoder and the U-Net are convolutional (attention is over positions): edit at the task's
            # size, recorded, rather than resizing the source and the result
            model.resolution = (side, side)
            model.checkpoint.extra.update(trained_resolution=list(base.resolution), sampled_resolution=[side, side])
        return model

    def set_precision(self, precision: str) -> None:
        super().set_precision(precision)
        self.base.set_precision(precision)

    # -- editing ----------------------------------------------------------------------

    def _prompts(self, conditions) -> tuple[list[str], list[str]]:
        n = len(conditions)
        if conditions.texts is None:
            return [""] * n, [""] * n
        pairs = [edit_prompts(t) for t in conditions.texts]
        return [p for p, _ in pairs], [q for _, q in pairs]

    def _check(self, conditions, seeds) -> tuple[torch.Tensor, torch.Tensor | None]:
        images = conditions.images
        if images is None:
            raise CgmbenchError(f"{self.name} edits a source image; the conditions carry none")
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise CgmbenchError(f"source images must be uint8 [B, 3, H, W], got {images.dtype} {tuple(images.shape)}")
        if tuple(images.shape[2:]) != tuple(self.resolution):
            raise CgmbenchError(f"source images are {images.shape[2]}x{images.shape[3]}, {self.name} edits at "
                                f"{self.resolution[0]}x{self.resolution[1]}",
                                "resize the sources with the task's protocol or choose a checkpoint of that size")
        if len(seeds) != len(images):
            raise CgmbenchError(f"got {len(seeds)} seeds for {len(images)} source images")
        masks = conditions.masks
        if masks is not None:
            masks = torch.as_tensor(masks)
            if masks.ndim == 3:
                masks = masks[:, None]
            if masks.ndim != 4 or masks.shape[1] != 1 or tuple(masks.shape[2:]) != tuple(images.shape[2:]) \
                    or len(masks) != len(images):
                raise CgmbenchError(f"edit masks have shape {tuple(masks.shape)}; one [1, H, W] mask per source "
                                    f"image {tuple(images.shape[2:])} expected (255 = region to change)")
            masks = masks > 0
        return images, masks

    @torch.no_grad()
    def generate(self, conditions, seeds: Sequence[int], **knobs) -> torch.Tensor:
        images, masks = self._check(conditions, seeds)
        if self.blend and masks is None:
            raise CgmbenchError(f"{self.name} fills a masked region; these conditions carry no mask",
                                "use sdedit for mask-free edits")
        k = self.resolve_knobs(knobs)
        prompts, negatives = self._prompts(conditions)
        base, dev = self.base, self.device
        out = []
        for i, seed in enumerate(seeds):
            x = images[i:i + 1].to(dev).float() / 127.5 - 1.0
            with base.autocast():
                z0 = base.vae.encode(x).mode().float() * base.scale_factor
            c, _ = base.encode_prompts([prompts[i]])
            uc = base.encode_prompts([negatives[i]])[0] if k["guidance_scale"] != 1.0 else None
            keep = None
            if self.blend:
                m = masks[i:i + 1].to(dev).float()
                keep = 1.0 - F.adaptive_max_pool2d(m, z0.shape[-2:])  # any edited pixel -> edited latent
            with base.autocast():
                z, _ = edit_ddim(base.apply_model, base.alphas_cumprod.to(dev), z0, c, uc,
                                 [torch_generator(int(seed))], steps=k["steps"], strength=k["strength"],
                                 eta=k["eta"], guidance_scale=k["guidance_scale"], keep=keep)
                img = to_uint8(base.vae.decode(z.float() / base.scale_factor).float()).cpu()
            if self.blend and k.get("paste_background") == "on":
                img = torch.where(masks[i:i + 1].cpu(), img, images[i:i + 1])
            out.append(img)
        return torch.cat(out)


class SDEditGenerator(_LatentEditor):
    """SDEdit on a latent-diffusion text-to-image model (see the module docstring); ``sdedit:sd3-<checkpoint>`` is
    SDEdit on an SD3 rectified-flow model (:class:`baselines.editing.sdedit_flow.FlowSDEditGenerator`)."""

    default_name = "sdedit"
    description = ("SDEdit (training-free): noise the source latent to `strength`, denoise with the target prompt "
                   "(ldm; sdedit:sd3-* on SD3 rectified flow)")
    knobs = _common_knobs(0.6)  # the best edit success of the shapes-edit strength sweep (docs/baselines.md)

    @classmethod
    def variants(cls) -> dict[str, str]:
        from baselines.editing.sdedit_flow import FlowSDEditGenerator

        return {**super().variants(), **FlowSDEditGenerator.variants()}

    @classmethod
    def load(cls, task, variant=None, checkpoint=None, device="cpu") -> "Generator":
        from baselines.editing.sdedit_flow import PREFIX, FlowSDEditGenerator

        if variant is not None and variant.startswith(PREFIX):
            return FlowSDEditGenerator.load(task, variant=variant, checkpoint=checkpoint, device=device)
        return super().load(task, variant=variant, checkpoint=checkpoint, device=device)


class LatentBlendInpaintGenerator(_LatentEditor):
    """Training-free inpainting by latent blending (see the module docstring)."""

    default_name = "inpaint"
    condition_kinds = frozenset({"image+text", "image+mask"})
    description = "latent-blending inpainting (training-free): only the masked region is denoised, in context"
    blend = True
    knobs = _common_knobs(1.0) + (
        Knob("paste_background", "on", "replace the decoded pixels outside the mask by the source's", kind="choice",
             choices=("on", "off")),
    )

    @classmethod
    def variants(cls) -> dict[str, str]:
        from baselines.editing.sd_inpaint import ConcatInpaintGenerator

        return {**super().variants(), **ConcatInpaintGenerator.variants()}

    @classmethod
    def load(cls, task, variant=None, checkpoint=None, device="cpu") -> "Generator":
        """Latent blending on an ldm checkpoint, or the concatenated-input (9-channel layout) inpainter
        (:mod:`baselines.editing.sd_inpaint`) for its variants and for files in its layout."""
        from baselines.editing.sd_inpaint import ConcatInpaintGenerator

        if variant in ConcatInpaintGenerator.variants() or (checkpoint is not None and _is_concat_file(checkpoint)):
            return ConcatInpaintGenerator.load(task, variant=variant, checkpoint=checkpoint, device=device)
        return super().load(task, variant=variant, checkpoint=checkpoint, device=device)

    @classmethod
    def train(cls, task, **kw):
        """``cgmbench train --model inpaint``: the tiny 9-channel-layout recipe
        (:meth:`baselines.editing.sd_inpaint.ConcatInpaintGenerator.train`)."""
        from baselines.editing.sd_inpaint import ConcatInpaintGenerator

        return ConcatInpaintGenerator.train(task, **kw)


def _is_concat_file(checkpoint) -> bool:
    """A cgmbench 9-channel-layout inpaint file (``model = "inpaint"`` in its metadata)."""
    from pathlib import Path

    from baselines.common.shipped import _is_cgmbench_file, read_shipped

    path = Path(checkpoint)
    return path.is_file() and path.suffix == ".safetensors" and _is_cgmbench_file(path) and \
        read_shipped(path)[1].get("model") == "inpaint"
