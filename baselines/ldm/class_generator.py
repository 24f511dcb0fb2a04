"""``LDMClassGenerator``: class-conditional latent diffusion on ImageNet (CompVis ``cin256-v2``, LDM-4-G).

The model (Rombach et al. 2022, ``configs/latent-diffusion/cin256-v2.yaml``) is three networks:

* the first stage, a VQ-f4 autoencoder (:class:`baselines.ldm.vq.VQModelInterface`, 8192 codes of dim 3):
  256×256 images ↔ 64×64×3 pre-quantisation latents, ``scale_factor`` 1.0;
* the conditioner :class:`ClassEmbedder` (``cond_stage_model.embedding.weight``, [1001, 512]): label ``y`` →
  one 512-d token ``[B, 1, 512]``, the U-Net's cross-attention context. Row 1000 is the "no class" token used
  as the unconditional input of classifier-free guidance (the official ImageNet notebook);
* the denoiser, the CompVis :class:`UNetModel` (``model_channels`` 192, ``channel_mult`` [1,2,3,5], spatial
  transformers at downsampling 2/4/8 with ``context_dim`` 512), predicting ``eps``.

Sampling is the CompVis ``DDIMSampler`` (:class:`cgmbench.diffusion.DDIMSampler`: timesteps
``range(0, 1000, 1000 // S) + 1``, last step to ``alphas_cumprod[0]``) on the ``linear`` schedule
``linspace(0.0015**0.5, 0.0195**0.5, 1000)**2``; then ``x = first_stage.decode(z / scale_factor)``, which
**re-quantises** ``z`` to the codebook before decoding (``LatentDiffusion.decode_first_stage``).

Knobs (suite conventions, :data:`cgmbench.generator.GUIDANCE_CONVENTION`):

* ``guidance_scale`` ``w``: CompVis ``unconditional_guidance_scale``, ``e = e_u + w (e_c - e_u)`` with class
  1000 as the unconditional input (w = 1 skips the unconditional pass). Default 1.5: the paper's FID-3.60
  setting (Table 3, LDM-4-G, 250 DDIM steps, 50k samples);
* ``steps``: DDIM steps ``S`` (default 250, the paper's);
* ``eta``: DDIM stochasticity. Default 0.0: the paper does not state η for Table 3 in what we could check;
  0.0 is the official notebook's value and the CompVis sampler's default.

Randomness: sample ``i``'s initial latent and (for ``eta > 0``) every step's noise come from
``torch_generator(seeds[i])`` alone, and samples run through the networks one at a time (``micro_batch``),
so a sample does not depend on its batch.

Variant ``cin256-v2``: weights ``ldm:cin256-v2`` (``cgmbench weights fetch ldm:cin256-v2``,
https://ommer-lab.com/files/latent-diffusion/nitro/cin/model.ckpt, 1.83 GB Lightning ``.ckpt``), loaded
**strictly** (:func:`baselines.ldm.split_compvis_checkpoint` allow-list, then ``strict=True`` per network).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from baselines.common.state_dict import load_state_dict_strict
from baselines.ldm.checkpoints import LDM_CIN256_V2_UNET_CONFIG, load_ldm_checkpoint, split_compvis_checkpoint
from baselines.ldm.sampling import check_ddim_steps, sample_compvis_ddim
from baselines.ldm.unet import UNetModel
from baselines.ldm.vq import LDM_VQ_F4_CONFIG, VQModelInterface
from cgmbench.diffusion import ldm_alphas_cumprod
from cgmbench.errors import CgmbenchError
from cgmbench.generator import CheckpointInfo, Generator, Knob

__all__ = ["ClassEmbedder", "LDM_CIN_VARIANTS", "LDMClassGenerator"]


class ClassEmbedder(nn.Module):
    """``ldm.modules.encoders.modules.ClassEmbedder``: class label → one cross-attention token.

    ``embedding`` is ``nn.Embedding(n_classes, embed_dim)``; ``forward(labels)`` maps int64 labels ``[B]``
    (or, as the official module, a batch dict holding them under ``key``) to ``[B, 1, embed_dim]``.
    """

    def __init__(self, embed_dim: int, n_classes: int = 1000, key: str = "class"):
        super().__init__()
        self.key = key
        self.embedding = nn.Embedding(n_classes, embed_dim)

    def forward(self, batch, key: str | None = None) -> torch.Tensor:
        labels = batch[key or self.key] if isinstance(batch, Mapping) else batch
        labels = torch.as_tensor(labels)
        if labels.dim() != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"class labels must be a 1-D integer tensor, got {labels.dtype} {tuple(labels.shape)}")
        n = self.embedding.num_embeddings
        if labels.numel() and not labels.is_meta and (int(labels.min()) < 0 or int(labels.max()) >= n):
            raise ValueError(f"class labels must lie in [0, {n - 1}], got [{int(labels.min())}, {int(labels.max())}]")
        return self.embedding(labels.to(self.embedding.weight.device).long()[:, None])


#: Official class-conditional LDM checkpoints: registry name, network configs, latent geometry, the
#: unconditional label and the paper's sampling protocol.
LDM_CIN_VARIANTS: dict[str, dict] = {
    "cin256-v2": dict(
        weights="ldm:cin256-v2",
        unet_config=LDM_CIN256_V2_UNET_CONFIG,
        first_stage_config=LDM_VQ_F4_CONFIG,
        cond_stage_config=dict(embed_dim=512, n_classes=1001),
        num_classes=1000,
        uncond_label=1000,
        scale_factor=1.0,
        linear_start=0.0015,
        linear_end=0.0195,
        resolution=256,
        defaults=dict(guidance_scale=1.5, steps=250, eta=0.0),
        description=("LDM-4-G class-conditional ImageNet 256 (VQ-f4 latents 64x64x3, 400M U-Net); "
                     "paper FID-50K 3.60 at w=1.5, 250 DDIM steps"),
    ),
}


def _knobs(defaults: dict) -> tuple[Knob, ...]:
    return (
        Knob("guidance_scale", float(defaults["guidance_scale"]),
             "classifier-free guidance w (CompVis unconditional_guidance_scale): e_u + w (e_c - e_u), "
             "unconditional = the 'no class' label; 1 = none", minimum=0.0, maximum=50.0),
        Knob("steps", int(defaults["steps"]), "DDIM steps (CompVis uniform discretisation, +1 offset)", kind="int",
             minimum=1, maximum=1000),
        Knob("eta", float(defaults["eta"]), "DDIM eta: 0 deterministic, 1 DDPM-like ancestral noise",
             minimum=0.0, maximum=1.0),
    )


class LDMClassGenerator(Generator):
    """Class-conditional latent diffusion (see the module docstring)."""

    condition_kinds = frozenset({"class"})
    knobs = _knobs(LDM_CIN_VARIANTS["cin256-v2"]["defaults"])
    #: samples run through the networks this many at a time. 1 (default) makes every sample bit-identical
    #: whatever batch it arrives in; larger is faster on a GPU and may differ in the last bits.
    micro_batch: int = 1
    precisions = ("fp32", "bf16")
    description = "Latent Diffusion (CompVis) class-conditional: VQ-f4 autoencoder + class-token cross-attention U-Net"

    def __init__(self, unet: UNetModel, first_stage: VQModelInterface, cond_stage: ClassEmbedder, *,
                 scale_factor: float, alphas_cumprod: torch.Tensor, resolution: int, num_classes: int,
                 uncond_label: int, defaults: dict, checkpoint: CheckpointInfo | None, device: str = "cpu"):
        super().__init__((resolution, resolution), checkpoint=checkpoint, device=device)
        rows = cond_stage.embedding.num_embeddings
        if not 0 < num_classes <= rows or not 0 <= uncond_label < rows:
            raise CgmbenchError(f"the class embedder has {rows} rows: it cannot hold {num_classes} classes and the "
                                f"unconditional label {uncond_label}")
        self.unet = unet.to(device).eval().requires_grad_(False)
        self.first_stage = first_stage.to(device).eval().requires_grad_(False)
        self.cond_stage = cond_stage.to(device).eval().requires_grad_(False)
        self.scale_factor = float(scale_factor)
        self.alphas_cumprod = torch.as_tensor(alphas_cumprod, dtype=torch.float32)
        self.num_classes = int(num_classes)
        self.uncond_label = int(uncond_label)
        self.knobs = _knobs(defaults)
        factor = first_stage.downsample_factor
        if resolution % factor:
            raise CgmbenchError(f"resolution {resolution} is not a multiple of the first stage's factor {factor}")
        self.latent_shape = (first_stage.embed_dim, resolution // factor, resolution // factor)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def variants(cls) -> dict[str, str]:
        return {name: v["description"] + f" (weights {v['weights']})" for name, v in LDM_CIN_VARIANTS.items()}

    @classmethod
    def required_files(cls, task, variant=None, checkpoint=None) -> list:
        """The official checkpoint (VQ first stage and class embedder are inside it); nothing for a given file."""
        from cgmbench.requirements import weights_file

        variant = variant or "cin256-v2"
        if variant not in LDM_CIN_VARIANTS:
            raise CgmbenchError(f"unknown class-conditional ldm checkpoint {variant!r}",
                                f"known: {', '.join(LDM_CIN_VARIANTS)}")
        if checkpoint is not None:
            return []
        return [weights_file(LDM_CIN_VARIANTS[variant]["weights"], f"model ldm:{variant} checkpoint")]

    @classmethod
    def load(cls, task, variant: str | None = None, checkpoint: str | None = None,
             device: str = "cpu") -> "LDMClassGenerator":
        """``variant`` (default ``cin256-v2``) from the official weights (``cgmbench.weights.resolve``), or
        ``checkpoint``: a CompVis LatentDiffusion file of that variant's architecture."""
        from cgmbench.weights import known_file, resolve, sha256_file

        variant = variant or "cin256-v2"
        if variant not in LDM_CIN_VARIANTS:
            raise CgmbenchError(f"unknown class-conditional ldm checkpoint {variant!r}",
                                f"known: {', '.join(LDM_CIN_VARIANTS)}")
        spec = LDM_CIN_VARIANTS[variant]
        task_classes = (getattr(task, "conditions", None) or {}).get("num_classes")
        if task_classes is not None and int(task_classes) > spec["num_classes"]:
            raise CgmbenchError(f"task {task.name!r} has {task_classes} classes, the ldm {variant} checkpoint knows "
                                f"{spec['num_classes']}", "choose a checkpoint trained on this task's classes")
        if checkpoint is not None:
            path = Path(checkpoint)
            if not path.is_file():
                raise CgmbenchError(f"checkpoint {path} does not exist")
            info = CheckpointInfo(path.stem, sha256_file(path), str(path), "file", extra={"architecture": variant})
        else:
            path, digest = resolve(spec["weights"])
            info = CheckpointInfo(spec["weights"], digest, str(path), known_file(spec["weights"]).url,
                                  extra={"architecture": variant})
        return cls.from_compvis(path, variant, device=device, info=info)
        # (cgmbench.models.registry.load_model checks the resolution against the task)

    @classmethod
    def load_compvis_parts(cls, checkpoint: str | Path | Mapping[str, torch.Tensor], variant: str = "cin256-v2"):
        """``(unet, first_stage, cond_stage, buffers)`` of a CompVis LatentDiffusion checkpoint (path or state
        dict), each network loaded strictly; a :class:`CgmbenchError` naming the offending key otherwise."""
        spec = LDM_CIN_VARIANTS[variant]
        where = checkpoint if not isinstance(checkpoint, Mapping) else "the state_dict"
        try:
            sd = checkpoint if isinstance(checkpoint, Mapping) else load_ldm_checkpoint(checkpoint)
            parts = split_compvis_checkpoint(sd)
            with torch.device("meta"):
                unet = UNetModel(**spec["unet_config"])
                first_stage = VQModelInterface(**spec["first_stage_config"])
                cond_stage = ClassEmbedder(**spec["cond_stage_config"])
            load_state_dict_strict(unet, parts["diffusion_model"], "UNetModel (model.diffusion_model.)", assign=True)
            load_state_dict_strict(first_stage, parts["first_stage_model"], "VQModelInterface (first_stage_model.)",
                                   assign=True)
            load_state_dict_strict(cond_stage, parts["cond_stage_model"], "ClassEmbedder (cond_stage_model.)",
                                   assign=True)
        except (ValueError, FileNotFoundError) as e:
            raise CgmbenchError(f"{where} is not an ldm {variant} LatentDiffusion checkpoint: {e}",
                                f"fetch the official one with `cgmbench weights fetch {spec['weights']}`") from None
        return unet.eval(), first_stage.eval(), cond_stage.eval(), parts["buffers"]

    @classmethod
    def from_compvis(cls, checkpoint, variant: str = "cin256-v2", *, device: str = "cpu",
                     info: CheckpointInfo | None = None) -> "LDMClassGenerator":
        """A generator from a CompVis checkpoint (path or state_dict) of ``variant``'s architecture. The
        schedule is the checkpoint's ``alphas_cumprod`` buffer when present (else computed from the variant's
        ``linear_start``/``linear_end``), ``scale_factor`` likewise."""
        spec = LDM_CIN_VARIANTS[variant]
        unet, first_stage, cond_stage, buffers = cls.load_compvis_parts(checkpoint, variant)
        acp = buffers.get("alphas_cumprod")
        if acp is not None:
            acp = acp.float()
            if acp.dim() != 1 or len(acp) < 2:
                raise CgmbenchError(f"the checkpoint's alphas_cumprod has shape {tuple(acp.shape)}, expected (T,)")
        else:
            acp = ldm_alphas_cumprod(1000, spec["linear_start"], spec["linear_end"])
        scale = float(buffers["scale_factor"]) if "scale_factor" in buffers else float(spec["scale_factor"])
        return cls(unet, first_stage, cond_stage, scale_factor=scale, alphas_cumprod=acp,
                   resolution=spec["resolution"], num_classes=spec["num_classes"], uncond_label=spec["uncond_label"],
                   defaults=spec["defaults"], checkpoint=info, device=device)

    # -- sampling -----------------------------------------------------------------------

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``LatentDiffusion.apply_model`` (``conditioning_key: crossattn``): eps of the U-Net with context ``c``."""
        return self.unet(x, timesteps=t, context=c)

    @torch.no_grad()
    def get_learned_conditioning(self, labels: torch.Tensor) -> torch.Tensor:
        """Class tokens ``[B, 1, embed_dim]`` of int64 ``labels`` (the uncond label included)."""
        return self.cond_stage(torch.as_tensor(labels, device=self.device).long())

    @torch.no_grad()
    def decode_first_stage(self, z: torch.Tensor) -> torch.Tensor:
        """``LatentDiffusion.decode_first_stage``: images in about [-1, 1] from latents, re-quantised."""
        return self.first_stage.decode(z / self.scale_factor)

    def _labels(self, conditions, n_seeds: int) -> torch.Tensor:
        if conditions.labels is None:
            raise CgmbenchError("ldm class-conditional sampling needs class labels (conditions.labels is empty)",
                                "use a class-conditional task")
        labels = torch.as_tensor(conditions.labels)
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise CgmbenchError(f"class labels must be integers, got {labels.dtype}")
        labels = labels.long().reshape(-1)
        if len(labels) != n_seeds:
            raise CgmbenchError(f"got {n_seeds} seeds for {len(labels)} class labels")
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        if len(bad):
            raise CgmbenchError(f"class label {int(bad[0])} is out of range for this ldm checkpoint",
                                f"labels must lie in [0, {self.num_classes - 1}]")
        return labels

    @torch.no_grad()
    def generate(self, conditions, seeds: Sequence[int], **knobs) -> torch.Tensor:
        """uint8 ``[B, 3, H, W]``: sample ``i`` of class ``conditions.labels[i]`` from ``seeds[i]`` alone."""
        labels = self._labels(conditions, len(seeds))
        k = self.resolve_knobs(knobs)
        w, steps, eta = k["guidance_scale"], k["steps"], k["eta"]
        check_ddim_steps(self.alphas_cumprod, steps, eta)
        c = self.get_learned_conditioning(labels)
        uc = self.get_learned_conditioning(torch.full_like(labels, self.uncond_label)) if w != 1.0 else None
        return sample_compvis_ddim(self, c, uc, seeds, steps=steps, eta=eta, guidance_scale=w,
                                   decode=self.decode_first_stage)

