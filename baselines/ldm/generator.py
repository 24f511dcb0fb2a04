"""``LDMGenerator``: Latent Diffusion text-to-image sampling (CompVis DDIM) and its tiny training recipe.

A latent diffusion model is three networks (Rombach et al. 2022):

* the first stage, a KL-regularised autoencoder (:class:`AutoencoderKL`): ``z = scale_factor * E(x)``;
* the conditioner (``cond_stage_model``), a text encoder giving the cross-attention context ``c``;
* the denoiser, the CompVis :class:`UNetModel` predicting ``eps`` from ``(z_t, t, c)``.

Sampling is the CompVis ``DDIMSampler`` (:class:`cgmbench.diffusion.DDIMSampler`: timesteps
``range(0, 1000, 1000 // S) + 1``, last step to ``alphas_cumprod[0]``), then ``x = D(z / scale_factor)``.

Knobs (suite conventions, :data:`cgmbench.generator.GUIDANCE_CONVENTION`):

* ``guidance_scale`` ``w``: CompVis ``unconditional_guidance_scale``, ``e = e_u + w (e_c - e_u)`` with
  the empty prompt ``""`` as the unconditional input (w = 1 skips the unconditional pass);
* ``steps``: DDIM steps ``S`` (the official COCO protocol uses 250);
* ``eta``: DDIM stochasticity (0 = deterministic).

Randomness: sample ``i``'s initial latent and (for ``eta > 0``) every step's noise are drawn from
``torch_generator(seeds[i])`` alone, so a sample does not depend on its batch.

Variants
--------
``shapes-t2i-tiny`` (shipped, ``cgmbench/shipped/ldm-shapes-t2i-tiny.safetensors``): a KL-f4 autoencoder
(32x32x3 -> 8x8x8), a 1M-parameter U-Net and a word-level text encoder
(:class:`baselines.common.text_encoders.ShapesWordEncoder`) trained jointly on ``shapes-t2i`` by
``cgmbench train --model ldm --task shapes-t2i --config tiny``. ``scale_factor`` is computed as in
LDM's ``scale_by_std`` (1 / std of the first-stage latents) and stored with the weights.

``txt2img-f8-large`` (official, ``cgmbench weights fetch ldm:txt2img-f8-large``): LDM-KL-8-G, SD's KL-f8
autoencoder (``scale_factor`` 0.18215), a 1280-d-context U-Net and its LDM-BERT conditioner
(:class:`baselines.ldm.bert.LDMBertEncoder`, :mod:`baselines.ldm.bert`), all three loaded strictly from
the checkpoint; LDM-BERT also needs the ``bert-base-uncased`` tokenizer files in the local Hugging Face cache
(``hf download bert-base-uncased vocab.txt tokenizer.json tokenizer_config.json``, which saves them there, or
``cgmbench fetch --task T --model ldm:txt2img-f8-large``).
:meth:`LDMGenerator.from_parts` accepts any other text encoder.

The first section of this module is the training plumbing shared with :mod:`baselines.sd3.generator`.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from baselines.common.kl_vae import SD1_VAE_CONFIG, SD_LATENT_SCALE, AutoencoderKL
from baselines.common.shipped import _is_cgmbench_file, read_shipped, save_shipped
from baselines.common.state_dict import load_state_dict_strict
from baselines.common.text_encoders import (
    ShapesWordEncoder,
    ShapesWordEncoderConfig,
    TextEncoder,
    check_prompts,
)
from baselines.common.training import TrainLoop, caption_dropout, shapes_t2i_training_set
from baselines.ldm.bert import LDMBertEncoder
from baselines.ldm.checkpoints import (
    LDM_TXT2IMG_F8_LARGE_UNET_CONFIG,
    load_compvis_unet_vae,
    load_ldm_checkpoint,
    split_compvis_checkpoint,
)
from baselines.ldm.sampling import check_ddim_steps, sample_compvis_ddim
from baselines.ldm.unet import UNetModel
from cgmbench.diffusion import ldm_alphas_cumprod
from cgmbench.errors import CgmbenchError
from cgmbench.generator import CheckpointInfo, Generator, Knob
from cgmbench.seeding import derive_seed, torch_generator
from cgmbench.weights import resolve, sha256_file, shipped

__all__ = [
    "shapes_t2i_training_set", "caption_dropout", "TrainLoop", "save_shipped", "read_shipped",
    "LDM_VARIANTS", "LDM_TINY_CONFIGS", "LDMGenerator", "build_tiny_ldm",
]

# ============================================================================ LDM variants

#: Official checkpoints: registry name, network configs, latent geometry and the paper's sampling protocol.
LDM_VARIANTS: dict[str, dict] = {
    "txt2img-f8-large": dict(
        weights="ldm:txt2img-f8-large", unet_config=LDM_TXT2IMG_F8_LARGE_UNET_CONFIG, vae_config=SD1_VAE_CONFIG,
        scale_factor=SD_LATENT_SCALE, linear_start=0.00085, linear_end=0.012, resolution=256,
        defaults=dict(guidance_scale=1.5, steps=250, eta=0.0),
        description="LDM-KL-8-G txt2img (1.45B, LAION-400M); COCO FID-30K 12.63 at w=1.5, 250 DDIM steps"),
}

#: The tiny shapes-t2i configuration (``--config tiny``).
LDM_TINY_CONFIGS: dict[str, dict] = {
    "tiny": dict(
        resolution=32,
        vae=dict(embed_dim=8, ddconfig=dict(double_z=True, z_channels=8, resolution=32, in_channels=3, out_ch=3,
                                            ch=32, ch_mult=[1, 1, 2], num_res_blocks=1, attn_resolutions=[],
                                            dropout=0.0)),
        unet=dict(image_size=8, in_channels=8, out_channels=8, model_channels=32, attention_resolutions=[1, 2],
                  num_res_blocks=1, channel_mult=[1, 2], num_heads=4, use_spatial_transformer=True,
                  transformer_depth=1, context_dim=64, legacy=False),
        text_encoder=dict(context_length=16, width=64, layers=2, heads=4),
        linear_start=0.00085, linear_end=0.012,
        train=dict(items=10000, batch_size=32, vae_steps=300, vae_lr=1e-3, kl_weight=1e-6, unet_steps=2400,
                   lr=5e-4, warmup=100, ema_decay=0.999, caption_dropout=0.1),
        defaults=dict(guidance_scale=3.0, steps=25, eta=0.0),
    ),
}

SHIPPED_LDM = {"shapes-t2i-tiny": ("ldm-shapes-t2i-tiny.safetensors", "tiny")}


def build_tiny_ldm(config: dict) -> tuple[UNetModel, AutoencoderKL, ShapesWordEncoder]:
    """The three networks of a tiny configuration (randomly initialised, official init of each)."""
    unet = UNetModel(**config["unet"])
    vae = AutoencoderKL(**config["vae"])
    text = ShapesWordEncoder(ShapesWordEncoderConfig(**config["text_encoder"]))
    return unet, vae, text


def _knobs(defaults: dict) -> tuple[Knob, ...]:
    return (
        Knob("guidance_scale", float(defaults["guidance_scale"]),
             "classifier-free guidance w (CompVis unconditional_guidance_scale): e_u + w (e_c - e_u); 1 = none",
             minimum=0.0, maximum=50.0),
        Knob("steps", int(defaults["steps"]), "DDIM steps (CompVis uniform discretisation, +1 offset)", kind="int",
             minimum=1, maximum=1000),
        Knob("eta", float(defaults["eta"]), "DDIM eta: 0 deterministic, 1 DDPM-like ancestral noise",
             minimum=0.0, maximum=1.0),
    )


# ============================================================================ the generator


class LDMGenerator(Generator):
    """Latent diffusion text-to-image (see the module docstring)."""

    #: text-to-image; the class-conditional checkpoints (``ldm:cin256-v2``) are served by
    #: :class:`baselines.ldm.class_generator.LDMClassGenerator` through :meth:`load`
    condition_kinds = frozenset({"text", "class"})
    knobs = _knobs(LDM_TINY_CONFIGS["tiny"]["defaults"])
    #: samples run through the networks this many at a time. 1 (default) makes every sample bit-identical
    #: whatever batch it arrives in (CPU conv/matmul kernels round differently for other batch sizes);
    #: larger is faster on a GPU and may differ in the last bits.
    micro_batch: int = 1
    precisions = ("fp32", "bf16")
    description = "Latent Diffusion (CompVis): KL autoencoder + cross-attention U-Net + text encoder, DDIM sampling"

    def __init__(self, unet: UNetModel, vae: AutoencoderKL, text_encoder: TextEncoder, *, scale_factor: float,
                 alphas_cumprod: torch.Tensor, resolution: int, defaults: dict, checkpoint: CheckpointInfo | None,
                 device: str = "cpu"):
        super().__init__((resolution, resolution), checkpoint=checkpoint, device=device)
        self.condition_kinds = frozenset({"text"})  # this instance: text-to-image
        self.unet = unet.to(device).eval()
        self.vae = vae.to(device).eval()
        self.text_encoder = text_encoder
        if isinstance(text_encoder, nn.Module):
            text_encoder.to(device).eval()
        self.scale_factor = float(scale_factor)
        self.alphas_cumprod = torch.as_tensor(alphas_cumprod, dtype=torch.float32)
        self.knobs = _knobs(defaults)
        factor = 2 ** (len(vae.encoder.down) - 1) if hasattr(vae, "encoder") else 8
        self.latent_shape = (vae.embed_dim, resolution // factor, resolution // factor)
        #: prompts seen and prompts cut to the text encoder's context length, summed over generate() calls
        self.run_info = {"prompts": 0, "truncated": 0}

    # -- construction -------------------------------------------------------------------

    @classmethod
    def variants(cls) -> dict[str, str]:
        out = {name: "shipped: tiny LDM trained on shapes-t2i (32x32), KL-f4 latents, word-level text encoder"
               for name in SHIPPED_LDM}
        out.update({name: v["description"] + f" (weights {v['weights']})" for name, v in LDM_VARIANTS.items()})
        from baselines.ldm.class_generator import LDMClassGenerator

        out.update(LDMClassGenerator.variants())
        return out

    @classmethod
    def required_files(cls, task, variant=None, checkpoint=None) -> list:
        """The official checkpoint and the LDM-BERT tokenizer (a CompVis file given as ``checkpoint`` needs the
        tokenizer too); the shipped tiny model needs nothing; class-conditional variants as
        :meth:`LDMClassGenerator.required_files`."""
        from baselines.ldm.bert import tokenizer_requirement
        from baselines.ldm.class_generator import LDM_CIN_VARIANTS, LDMClassGenerator
        from cgmbench.requirements import weights_file

        if variant in LDM_CIN_VARIANTS or (task.condition_kind == "class" and variant is None):
            return LDMClassGenerator.required_files(task, variant, checkpoint)
        if checkpoint is not None:
            path = Path(checkpoint)
            shipped_format = path.suffix == ".safetensors" and path.is_file() and _is_cgmbench_file(path)
            return [] if shipped_format else [tokenizer_requirement(f"model ldm ({path.name})")]
        if variant is None or variant in SHIPPED_LDM:
            return []  # load() names the choices when the task has no default
        if variant not in LDM_VARIANTS:
            raise CgmbenchError(f"unknown ldm checkpoint {variant!r}", f"known: {', '.join(cls.variants())}")
        weights = LDM_VARIANTS[variant]["weights"]
        return [weights_file(weights, f"model ldm:{variant} checkpoint"),
                tokenizer_requirement(f"model ldm:{variant}")]

    @classmethod
    def load(cls, task, variant=None, checkpoint=None, device="cpu") -> "Generator":
        from baselines.ldm.class_generator import LDM_CIN_VARIANTS, LDMClassGenerator

        if variant in LDM_CIN_VARIANTS and task.condition_kind != "class":
            raise CgmbenchError(f"ldm:{variant} is class-conditional; task {task.name!r} gives "
                                f"{task.condition_kind!r} conditions", "use a text-to-image ldm checkpoint")
        if variant in LDM_CIN_VARIANTS or (task.condition_kind == "class" and variant is None):
            return LDMClassGenerator.load(task, variant=variant, checkpoint=checkpoint, device=device)
        if checkpoint is not None:
            path = Path(checkpoint)
            if not path.is_file():
                raise CgmbenchError(f"checkpoint {path} does not exist")
            if path.suffix == ".safetensors" and _is_cgmbench_file(path):
                model = cls.from_shipped_file(path, CheckpointInfo(path.stem, sha256_file(path), str(path), "file"),
                                              device)
            else:
                model = cls.from_compvis(path, variant or "txt2img-f8-large", device=device,
                                         info=CheckpointInfo(path.stem, sha256_file(path), str(path), "file"))
        elif variant is None:
            raise CgmbenchError(f"task {task.name!r} names no default ldm checkpoint",
                                f"choose one: --model ldm:{{{','.join(cls.variants())}}}")
        elif variant in SHIPPED_LDM:
            filename = SHIPPED_LDM[variant][0]
            path, digest = shipped(filename)
            model = cls.from_shipped_file(path, CheckpointInfo(f"ldm:{variant}", digest, str(path), "shipped"),
                                          device)
        elif variant in LDM_VARIANTS:
            spec = LDM_VARIANTS[variant]
            path, digest = resolve(spec["weights"])
            model = cls.from_compvis(path, variant, device=device,
                                     info=CheckpointInfo(spec["weights"], digest, str(path), "official"))
        else:
            raise CgmbenchError(f"unknown ldm checkpoint {variant!r}", f"known: {', '.join(cls.variants())}")
        return model  # cgmbench.models.registry.load_model checks the resolution against the task

    @classmethod
    def from_shipped_file(cls, path: Path, info: CheckpointInfo, device: str = "cpu") -> "LDMGenerator":
        """A cgmbench-trained checkpoint: CompVis prefixes plus ``cond_stage_model.`` = the word encoder."""
        tensors, config = read_shipped(path)
        if config.get("model") != "ldm":
            raise CgmbenchError(f"{path} is a {config.get('model')!r} checkpoint, not an ldm one")
        unet, vae, text = build_tiny_ldm(config)
        parts = split_compvis_checkpoint(tensors)
        try:
            load_state_dict_strict(unet, parts["diffusion_model"], "UNetModel (model.diffusion_model.)")
            load_state_dict_strict(vae, parts["first_stage_model"], "AutoencoderKL (first_stage_model.)")
            load_state_dict_strict(text, parts["cond_stage_model"], "ShapesWordEncoder (cond_stage_model.)")
        except ValueError as e:
            raise CgmbenchError(f"{path}: {e}") from None
        scale = float(parts["buffers"]["scale_factor"]) if "scale_factor" in parts["buffers"] else 1.0
        acp = ldm_alphas_cumprod(1000, config["linear_start"], config["linear_end"])
        info = CheckpointInfo(info.name, info.sha256, info.path, info.source,
                              extra={"config": config.get("name", "tiny"), "text_encoder": "ShapesWordEncoder"})
        return cls(unet, vae, text, scale_factor=scale, alphas_cumprod=acp, resolution=config["resolution"],
                   defaults=config["defaults"], checkpoint=info, device=device)

    @classmethod
    def load_compvis_parts(cls, path: str | Path, variant: str = "txt2img-f8-large"):
        """``(unet, vae, parts)`` of an official CompVis checkpoint, loaded strictly (CgmbenchError on mismatch)."""
        spec = LDM_VARIANTS[variant]
        try:
            sd = load_ldm_checkpoint(path)
            return load_compvis_unet_vae(sd, spec["unet_config"], spec["vae_config"])
        except ValueError as e:
            raise CgmbenchError(f"{path} is not a {variant} LatentDiffusion checkpoint: {e}",
                                f"fetch it with `cgmbench weights fetch {spec['weights']}`") from None

    @classmethod
    def from_compvis(cls, path, variant: str, *, device="cpu", info: CheckpointInfo | None = None,
                     text_encoder: TextEncoder | None = None) -> "LDMGenerator":
        """An official checkpoint. Without ``text_encoder`` its own conditioner is built from its
        ``cond_stage_model.`` tensors: LDM-BERT for txt2img-f8-large (:class:`LDMBertEncoder`)."""
        unet, vae, parts = cls.load_compvis_parts(path, variant)
        if text_encoder is None:
            text_encoder = LDMBertEncoder.from_state_dict(parts["cond_stage_model"])
        context = next((v.shape[1] for k, v in parts["diffusion_model"].items() if k.endswith("attn2.to_k.weight")),
                       None)
        width = getattr(text_encoder, "width", context)
        if context is not None and width != context:
            raise CgmbenchError(f"{path}: the U-Net cross-attends to {context}-d context, the text encoder gives "
                                f"{width}-d tokens")
        return cls.from_parts(unet, vae, text_encoder, variant=variant, checkpoint=info, device=device,
                              buffers=parts["buffers"])

    @classmethod
    def from_parts(cls, unet, vae, text_encoder: TextEncoder, *, variant: str = "txt2img-f8-large",
                   checkpoint: CheckpointInfo | None = None, device="cpu", buffers: dict | None = None,
                   resolution: int | None = None) -> "LDMGenerator":
        """Assemble a generator from networks (e.g. an official U-Net/VAE with another text encoder)."""
        spec = LDM_VARIANTS[variant]
        buffers = buffers or {}
        acp = buffers.get("alphas_cumprod")
        acp = acp.float() if acp is not None else ldm_alphas_cumprod(1000, spec["linear_start"], spec["linear_end"])
        scale = float(buffers["scale_factor"]) if "scale_factor" in buffers else spec["scale_factor"]
        return cls(unet, vae, text_encoder, scale_factor=scale, alphas_cumprod=acp,
                   resolution=resolution or spec["resolution"], defaults=spec["defaults"], checkpoint=checkpoint,
                   device=device)

    # -- sampling -----------------------------------------------------------------------

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``LatentDiffusion.apply_model``: eps prediction of the U-Net with cross-attention context ``c``."""
        return self.unet(x, timesteps=t, context=c)

    @torch.no_grad()
    def encode_prompts(self, texts: Sequence[str]) -> tuple[torch.Tensor, dict]:
        tokens, _, info = self.text_encoder.encode(list(texts))
        return tokens.to(self.device, torch.float32), info

    @torch.no_grad()
    def generate(self, conditions, seeds, **knobs) -> torch.Tensor:
        texts = check_prompts(conditions.texts, "ldm")
        if len(seeds) != len(texts):
            raise CgmbenchError(f"got {len(seeds)} seeds for {len(texts)} prompts")
        k = self.resolve_knobs(knobs)
        w, steps, eta = k["guidance_scale"], k["steps"], k["eta"]
        check_ddim_steps(self.alphas_cumprod, steps, eta)
        c, info = self.encode_prompts(texts)
        self.run_info["prompts"] += len(texts)
        self.run_info["truncated"] += int(info.get("truncated", 0))
        uc = self.encode_prompts([""] * len(texts))[0] if w != 1.0 else None
        return sample_compvis_ddim(self, c, uc, seeds, steps=steps, eta=eta, guidance_scale=w,
                                   decode=lambda z: self.vae.decode(z / self.scale_factor))

    # -- training -----------------------------------------------------------------------

    @classmethod
    def train(cls, task, config: str = "tiny", out=None, resume: bool = False, steps: int | None = None,
              seed: int = 0, device: str = "cpu", log=print) -> Path:
        """Train the tiny LDM on ``shapes-t2i``: first the KL autoencoder (pixel L1 + MSE + a small KL term;
        the official LPIPS/GAN losses are left out), then ``scale_factor = 1 / std(z)`` (LDM ``scale_by_std``),
        then the U-Net and the text encoder jointly (eps loss, uniform t, caption dropout for CFG).

        ``steps`` overrides the U-Net steps. Writes ``OUT/ldm-shapes-t2i-tiny.safetensors`` (+ ``.json``),
        ``OUT/*.state.pt`` checkpoints and ``OUT/loss.csv`` (stages ``vae``, ``unet``); returns the safetensors path.
        """
        if config not in LDM_TINY_CONFIGS:
            raise CgmbenchError(f"unknown ldm training config {config!r}", f"known: {', '.join(LDM_TINY_CONFIGS)}")
        cfg = copy.deepcopy(LDM_TINY_CONFIGS[config])
        tc = cfg["train"]
        if steps is not None:
            tc["unet_steps"] = int(steps)
        out = Path(out or f"runs/train/ldm-{task.name}-{config}")
        if out.exists() and any(out.glob("*.state.pt")) and not resume:
            raise CgmbenchError(f"{out} already holds a training run", "continue it with --resume or choose --out")
        torch.manual_seed(seed)
        t_start = time.perf_counter()
        unet, vae, text = build_tiny_ldm(cfg)
        images, texts = shapes_t2i_training_set(task, tc["items"])
        x_all = images.float() / 127.5 - 1.0
        n, bs = len(texts), tc["batch_size"]
        log(f"[ldm] {n} training items; vae {sum(p.numel() for p in vae.parameters()):,} params, unet "
            f"{sum(p.numel() for p in unet.parameters()):,}, text {sum(p.numel() for p in text.parameters()):,}")

        # stage 1: the autoencoder
        loop_vae = TrainLoop("vae", out, {"vae": vae}, lr=tc["vae_lr"], warmup=50, ema_decay=0.0, seed=seed, log=log)
        if resume:
            loop_vae.resume()

        def vae_step(mods, g, step):
            x = x_all[torch.randint(0, n, (bs,), generator=g)]
            post = mods["vae"].encode(x)
            rec = mods["vae"].decode(post.sample(g))
            return (rec - x).abs().mean() + ((rec - x) ** 2).mean() + tc["kl_weight"] * post.kl().mean()

        vae_loss = loop_vae.run(tc["vae_steps"], vae_step)
        vae = loop_vae.modules["vae"].eval().requires_grad_(False)
        with torch.no_grad():
            moments = torch.cat([vae.encode(x_all[i:i + 256]).parameters for i in range(0, n, 256)])
        mean, logvar = moments.chunk(2, dim=1)
        std = torch.exp(0.5 * logvar.clamp(-30, 20))
        g0 = torch_generator(derive_seed("cgmbench-train", "ldm-scale", seed))
        z0 = mean[:1024] + std[:1024] * torch.randn(mean[:1024].shape, generator=g0)
        scale_factor = float(1.0 / z0.flatten().std())
        log(f"[ldm] vae loss {vae_loss:.4f}; scale_factor {scale_factor:.5f}")

        # stage 2: the U-Net and the text encoder
        acp = ldm_alphas_cumprod(1000, cfg["linear_start"], cfg["linear_end"])
        loop = TrainLoop("unet", out, {"unet": unet, "text": text}, lr=tc["lr"], warmup=tc["warmup"],
                         ema_decay=tc["ema_decay"], seed=seed, log=log)
        if resume:
            loop.resume()

        def unet_step(mods, g, step):
            idx = torch.randint(0, n, (bs,), generator=g)
            z = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=g)) * scale_factor
            t = torch.randint(0, 1000, (bs,), generator=g)
            eps = torch.randn(z.shape, generator=g)
            a = acp[t].view(-1, 1, 1, 1)
            z_t = a.sqrt() * z + (1 - a).sqrt() * eps
            prompts = caption_dropout([texts[i] for i in idx.tolist()], tc["caption_dropout"], g)
            c, _, _ = mods["text"].encode(prompts)
            return ((mods["unet"](z_t, timesteps=t, context=c) - eps) ** 2).mean()

        unet_loss = loop.run(tc["unet_steps"], unet_step)

        tensors = {f"model.diffusion_model.{k}": v for k, v in loop.ema["unet"].state_dict().items()}
        tensors.update({f"first_stage_model.{k}": v for k, v in vae.state_dict().items()})
        tensors.update({f"cond_stage_model.{k}": v for k, v in loop.ema["text"].state_dict().items()})
        tensors["scale_factor"] = torch.tensor(scale_factor)
        release = dict(cfg, model="ldm", name=config)
        release.pop("train")
        card = {"model": "ldm", "variant": f"{task.name}-{config}",
                "command": f"cgmbench train --model ldm --task {task.name} --config {config} --seed {seed} --out OUT"
                           + (f" --steps {steps}" if steps is not None else ""),
                "train_config": tc, "steps": {"vae": loop_vae.step, "unet": loop.step},
                "final_loss": {"vae": vae_loss, "unet": unet_loss}, "scale_factor": scale_factor, "seed": seed,
                "train_seconds": round(time.perf_counter() - t_start, 1), "torch": torch.__version__}
        path = save_shipped(out / f"ldm-{task.name}-{config}.safetensors", tensors, release, card)
        log(f"[ldm] wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
        return path


