"""``SD3Generator``: SD3-style rectified-flow text-to-image sampling (MM-DiT) and its tiny training recipe.

Stable Diffusion 3 (Esser et al. 2024) in three parts:

* the MM-DiT :class:`baselines.sd3.MMDiT` predicting the velocity ``v = noise - x0`` from
  ``(x_sigma, t = 1000 sigma, y = pooled text, context = text tokens)``;
* rectified flow ``x_sigma = (1 - sigma) x0 + sigma noise`` with SD3's time ``shift``
  (:class:`cgmbench.diffusion.ModelSamplingDiscreteFlow`), sampled with Euler or DPM-Solver++(2M) over
  :func:`cgmbench.diffusion.get_sigmas`; classifier-free guidance on the denoised prediction
  (:class:`cgmbench.diffusion.CFGDenoiser`, ``cfg`` = the suite's ``guidance_scale``), the empty prompt
  being the unconditional input;
* a first stage: SD3's 16-channel VAE (latent ``(z - 0.0609) * 1.5305``) for the official checkpoint;
  the tiny shapes model works in **pixel space** (``x0`` = the image in [-1, 1], patch size 4), which
  needs no autoencoder and trains fastest on a CPU.

Knobs: ``guidance_scale`` (SD3 ``cfg``), ``steps``, ``shift`` (pinned per checkpoint and recorded in every
run), ``sampler`` (``euler`` or ``dpmpp_2m``). Both samplers are deterministic: sample ``i``'s only
randomness is its initial noise, drawn from ``torch_generator(seeds[i])``.

Variants
--------
``shapes-t2i-tiny`` (shipped, ``cgmbench/shipped/sd3-shapes-t2i-tiny.safetensors``): pixel-space MM-DiT
(width 96, depth 5, patch 4) and a word-level text encoder, trained jointly with rectified flow and
logit-normal timesteps by ``cgmbench train --model sd3 --task shapes-t2i --config tiny``.

``medium`` (official, gated ``sd3_medium.safetensors``, registry ``sd3:medium``): MM-DiT 2B + the
16-channel VAE decoder from ``first_stage_model.``; text encoders CLIP-L, OpenCLIP bigG and T5-XXL from
the local Hugging Face cache. Sampling protocol pinned to Stability-AI/sd3-ref: shift 3.0, Euler,
50 steps, cfg 5.0.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch
from torch import nn

from baselines.common.kl_vae import Decoder
from baselines.common.shipped import _is_cgmbench_file, read_shipped, save_shipped
from baselines.common.state_dict import load_state_dict_strict
from baselines.common.text_encoders import (
    SD3TextEncoders,
    ShapesWordEncoder,
    ShapesWordEncoderConfig,
    TextEncoder,
    check_prompts,
)
from baselines.common.training import TrainLoop, caption_dropout, shapes_t2i_training_set
from baselines.sd3.checkpoints import load_sd3_checkpoint
from baselines.sd3.models import MMDiT, check_state_dict, get_2d_sincos_pos_embed, sd3_latent_process_out
from cgmbench.diffusion import (
    CFGDenoiser,
    ModelSamplingDiscreteFlow,
    get_sigmas,
    per_sample_noise,
    rectified_flow_loss,
    sample_dpmpp_2m,
    sample_euler,
    sample_logit_normal_sigmas,
)
from cgmbench.errors import CgmbenchError
from cgmbench.generator import CheckpointInfo, Generator, Knob, to_uint8
from cgmbench.seeding import torch_generator
from cgmbench.weights import resolve, sha256_file, shipped

__all__ = ["SD3_VARIANTS", "SD3_TINY_CONFIGS", "SD3_VAE_DDCONFIG", "SD3Generator", "build_tiny_sd3",
           "initialize_mmdit_weights", "SAMPLERS"]

SAMPLERS = {"euler": sample_euler, "dpmpp_2m": sample_dpmpp_2m}

#: SD3's 16-channel VAE decoder (``first_stage_model.decoder.*``; the SD3 VAE has no quant convs).
SD3_VAE_DDCONFIG = dict(double_z=True, z_channels=16, resolution=256, in_channels=3, out_ch=3, ch=128,
                        ch_mult=(1, 2, 4, 4), num_res_blocks=2, attn_resolutions=(), dropout=0.0)

SD3_VARIANTS: dict[str, dict] = {
    "medium": dict(weights="sd3:medium", vae_ddconfig=SD3_VAE_DDCONFIG, resolution=1024, vae_factor=8,
                   defaults=dict(guidance_scale=5.0, steps=50, shift=3.0, sampler="euler"),
                   description="SD3-medium (2B MM-DiT, gated); sd3-ref protocol: Euler, 50 steps, shift 3, cfg 5"),
}

SD3_TINY_CONFIGS: dict[str, dict] = {
    "tiny": dict(
        resolution=32,
        mmdit=dict(patch_size=4, in_channels=3, hidden_size=96, depth=5, num_heads=4, mlp_ratio=4.0,
                   adm_in_channels=64, context_dim=64, pos_embed_max_size=8, qk_norm=None, qkv_bias=True),
        text_encoder=dict(context_length=16, width=64, layers=2, heads=4),
        train=dict(items=10000, batch_size=32, steps=4000, lr=5e-4, warmup=200, ema_decay=0.999,
                   caption_dropout=0.1, logit_normal_m=0.0, logit_normal_s=1.0),
        defaults=dict(guidance_scale=3.0, steps=20, shift=1.0, sampler="euler"),
    ),
}

SHIPPED_SD3 = {"shapes-t2i-tiny": ("sd3-shapes-t2i-tiny.safetensors", "tiny")}


def initialize_mmdit_weights(model: MMDiT) -> MMDiT:
    """DiT-style initialisation for training from scratch: Xavier-uniform linears, zero biases, normal(0.02)
    timestep/pooled MLPs, zeroed adaLN modulations and output layer, fixed 2-D sin-cos ``pos_embed``."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    w = model.x_embedder.proj.weight
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    for emb in (model.t_embedder, getattr(model, "y_embedder", None)):
        if emb is not None:
            nn.init.normal_(emb.mlp[0].weight, std=0.02)
            nn.init.normal_(emb.mlp[2].weight, std=0.02)
    for block in model.joint_blocks:
        for part in (block.context_block, block.x_block):
            nn.init.zeros_(part.adaLN_modulation[-1].weight)
            nn.init.zeros_(part.adaLN_modulation[-1].bias)
    nn.init.zeros_(model.final_layer.adaLN_modulation[-1].weight)
    nn.init.zeros_(model.final_layer.adaLN_modulation[-1].bias)
    nn.init.zeros_(model.final_layer.linear.weight)
    nn.init.zeros_(model.final_layer.linear.bias)
    table = get_2d_sincos_pos_embed(model.hidden_size, model.pos_embed_max_size)
    model.pos_embed.copy_(table[None])
    return model


def build_tiny_sd3(config: dict) -> tuple[MMDiT, ShapesWordEncoder]:
    mmdit = MMDiT(**config["mmdit"])
    text = ShapesWordEncoder(ShapesWordEncoderConfig(**config["text_encoder"]))
    return mmdit, text


def _knobs(defaults: dict) -> tuple[Knob, ...]:
    return (
        Knob("guidance_scale", float(defaults["guidance_scale"]),
             "classifier-free guidance w (SD3 cfg) on the denoised prediction: uncond + w (cond - uncond)",
             minimum=0.0, maximum=50.0),
        Knob("steps", int(defaults["steps"]), "sampler steps (number of model evaluations per sample, x2 with CFG)",
             kind="int", minimum=1, maximum=1000),
        Knob("shift", float(defaults["shift"]), "SD3 time shift: sigma = s t / (1 + (s - 1) t); 1 = none",
             minimum=0.05, maximum=20.0),
        Knob("sampler", defaults["sampler"], "ODE sampler", kind="choice", choices=tuple(SAMPLERS)),
    )


class SD3Generator(Generator):
    """SD3-style rectified-flow MM-DiT text-to-image (see the module docstring)."""

    condition_kinds = frozenset({"text"})
    knobs = _knobs(SD3_TINY_CONFIGS["tiny"]["defaults"])
    #: samples run through the networks this many at a time; 1 (default) makes each sample bit-identical
    #: whatever batch it arrives in; larger is faster on a GPU and may differ in the last bits.
    micro_batch: int = 1
    precisions = ("fp32", "bf16")
    description = "SD3-style rectified flow with an MM-DiT (joint text/image attention); Euler / DPM++(2M) sampling"

    def __init__(self, mmdit: MMDiT, text_encoder: TextEncoder, *, resolution: int, defaults: dict,
                 decoder: nn.Module | None = None, vae_factor: int = 1, checkpoint: CheckpointInfo | None = None,
                 device: str = "cpu"):
        super().__init__((resolution, resolution), checkpoint=checkpoint, device=device)
        self.mmdit = mmdit.to(device).eval()
        self.text_encoder = text_encoder
        if isinstance(text_encoder, nn.Module):
            text_encoder.to(device).eval()
        self.decoder = decoder.to(device).eval() if decoder is not None else None
        self.knobs = _knobs(defaults)
        side = resolution // vae_factor
        self.latent_shape = (mmdit.in_channels, side, side)
        self.run_info = {"prompts": 0, "truncated": 0}

    # -- construction -------------------------------------------------------------------

    @classmethod
    def variants(cls) -> dict[str, str]:
        out = {name: "shipped: tiny pixel-space MM-DiT trained on shapes-t2i (32x32) with rectified flow"
               for name in SHIPPED_SD3}
        out.update({name: v["description"] + f" (weights {v['weights']})" for name, v in SD3_VARIANTS.items()})
        return out

    @classmethod
    def required_files(cls, task, variant=None, checkpoint=None) -> list:
        """The single-file checkpoint and the three text encoders (CLIP-L, OpenCLIP bigG, T5-XXL) in the
        Hugging Face cache; a non-cgmbench file given as ``checkpoint`` needs the encoders too."""
        from cgmbench.requirements import weights_file

        if checkpoint is not None:
            path = Path(checkpoint)
            shipped_format = path.suffix == ".safetensors" and path.is_file() and _is_cgmbench_file(path)
            return [] if shipped_format else SD3TextEncoders.required_files(f"model sd3 ({path.name})")
        if variant is None or variant in SHIPPED_SD3:
            return []
        if variant not in SD3_VARIANTS:
            raise CgmbenchError(f"unknown sd3 checkpoint {variant!r}", f"known: {', '.join(cls.variants())}")
        return [weights_file(SD3_VARIANTS[variant]["weights"], f"model sd3:{variant} checkpoint"),
                *SD3TextEncoders.required_files(f"model sd3:{variant}")]

    @classmethod
    def load(cls, task, variant=None, checkpoint=None, device="cpu") -> "SD3Generator":
        if checkpoint is not None:
            path = Path(checkpoint)
            if not path.is_file():
                raise CgmbenchError(f"checkpoint {path} does not exist")
            info = CheckpointInfo(path.stem, sha256_file(path), str(path), "file")
            if path.suffix == ".safetensors" and _is_cgmbench_file(path):
                model = cls.from_shipped_file(path, info, device)
            else:
                model = cls.from_official(path, variant or "medium", info=info, device=device)
        elif variant is None:
            raise CgmbenchError(f"task {task.name!r} names no default sd3 checkpoint",
                                f"choose one: --model sd3:{{{','.join(cls.variants())}}}")
        elif variant in SHIPPED_SD3:
            path, digest = shipped(SHIPPED_SD3[variant][0])
            model = cls.from_shipped_file(path, CheckpointInfo(f"sd3:{variant}", digest, str(path), "shipped"), device)
        elif variant in SD3_VARIANTS:
            spec = SD3_VARIANTS[variant]
            path, digest = resolve(spec["weights"])
            model = cls.from_official(path, variant, device=device,
                                      info=CheckpointInfo(spec["weights"], digest, str(path), "official"))
        else:
            raise CgmbenchError(f"unknown sd3 checkpoint {variant!r}", f"known: {', '.join(cls.variants())}")
        return model  # cgmbench.models.registry.load_model checks the resolution against the task

    @classmethod
    def from_shipped_file(cls, path: Path, info: CheckpointInfo, device: str = "cpu") -> "SD3Generator":
        """A cgmbench-trained checkpoint: ``model.diffusion_model.`` MM-DiT + ``text_encoders.shapes.``."""
        tensors, config = read_shipped(path)
        if config.get("model") != "sd3":
            raise CgmbenchError(f"{path} is a {config.get('model')!r} checkpoint, not an sd3 one")
        mmdit, text = build_tiny_sd3(config)
        dm = {k[len("model.diffusion_model."):]: v for k, v in tensors.items() if k.startswith("model.diffusion_model.")}
        te = {k[len("text_encoders.shapes."):]: v for k, v in tensors.items() if k.startswith("text_encoders.shapes.")}
        try:
            mmdit.load_official_state_dict(dm)
            check_state_dict(text, te)
            text.load_state_dict(te)
        except ValueError as e:
            raise CgmbenchError(f"{path}: {e}") from None
        info = CheckpointInfo(info.name, info.sha256, info.path, info.source,
                              extra={"config": config.get("name", "tiny"), "text_encoder": "ShapesWordEncoder",
                                     "space": "pixel"})
        return cls(mmdit, text, resolution=config["resolution"], defaults=config["defaults"], checkpoint=info,
                   device=device)

    @classmethod
    def load_official_parts(cls, path, variant: str = "medium") -> tuple[MMDiT, Decoder]:
        """``(mmdit, vae_decoder)`` of a single-file SD3 checkpoint, both loaded strictly."""
        spec = SD3_VARIANTS[variant]
        path = Path(path)
        try:
            mmdit = load_sd3_checkpoint(path, dtype=torch.float32)
            decoder = Decoder(**spec["vae_ddconfig"])
            prefix = "first_stage_model.decoder."
            if path.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(path), framework="pt", device="cpu") as f:
                    sd = {k[len(prefix):]: f.get_tensor(k).float() for k in f.keys() if k.startswith(prefix)}
            else:
                obj = torch.load(str(path), map_location="cpu", weights_only=True)
                obj = obj.get("state_dict", obj)
                sd = {k[len(prefix):]: v.float() for k, v in obj.items() if k.startswith(prefix)}

            load_state_dict_strict(decoder, sd, "SD3 VAE Decoder (first_stage_model.decoder.)")
        except ValueError as e:
            raise CgmbenchError(f"{path} is not an SD3 {variant} checkpoint: {e}",
                                SD3_VARIANTS[variant].get("obtain", "see `cgmbench weights list`")) from None
        return mmdit.eval(), decoder.eval()

    @classmethod
    def from_official(cls, path, variant: str = "medium", *, info: CheckpointInfo | None = None, device="cpu",
                      text_encoder: TextEncoder | None = None) -> "SD3Generator":
        """The official MM-DiT + VAE decoder; text encoders from the local HF cache unless given."""
        spec = SD3_VARIANTS[variant]
        mmdit, decoder = cls.load_official_parts(path, variant)
        if text_encoder is None:
            text_encoder = SD3TextEncoders(device=device)
        return cls(mmdit, text_encoder, resolution=spec["resolution"], defaults=spec["defaults"], decoder=decoder,
                   vae_factor=spec["vae_factor"], checkpoint=info, device=device)

    # -- sampling -----------------------------------------------------------------------

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """Model-space sample -> image in [-1, 1] (SD3 latent format + VAE decoder, or identity in pixel space)."""
        if self.decoder is None:
            return x0
        return self.decoder(sd3_latent_process_out(x0))

    @torch.no_grad()
    def generate(self, conditions, seeds, **knobs) -> torch.Tensor:
        texts = check_prompts(conditions.texts, "sd3")
        if len(seeds) != len(texts):
            raise CgmbenchError(f"got {len(seeds)} seeds for {len(texts)} prompts")
        k = self.resolve_knobs(knobs)
        tokens, pooled, info = self.text_encoder.encode(texts)
        self.run_info["prompts"] += len(texts)
        self.run_info["truncated"] += int(info.get("truncated", 0))
        cond = {"context": tokens.to(self.device).float(), "y": pooled.to(self.device).float()}
        uncond = None
        if k["guidance_scale"] != 1.0:
            u_tok, u_pool, _ = self.text_encoder.encode([""] * len(texts))
            uncond = {"context": u_tok.to(self.device).float(), "y": u_pool.to(self.device).float()}
        ms = ModelSamplingDiscreteFlow(shift=k["shift"])
        sigmas = get_sigmas(ms, k["steps"])
        denoiser = CFGDenoiser(self.mmdit, ms)
        out = []
        for lo in range(0, len(texts), self.micro_batch):
            hi = min(lo + self.micro_batch, len(texts))
            noise = per_sample_noise([torch_generator(s) for s in seeds[lo:hi]], self.latent_shape, device=self.device)
            x = ms.noise_scaling(sigmas[0], noise, torch.zeros_like(noise))
            extra = {"cond": {key: v[lo:hi] for key, v in cond.items()},
                     "uncond": None if uncond is None else {key: v[lo:hi] for key, v in uncond.items()},
                     "cond_scale": k["guidance_scale"]}
            with self.autocast():
                out.append(self.decode(SAMPLERS[k["sampler"]](denoiser, x, sigmas, extra_args=extra).float()))
        x0 = torch.cat(out)
        return to_uint8(x0).cpu()

    # -- training -----------------------------------------------------------------------

    @classmethod
    def train(cls, task, config: str = "tiny", out=None, resume: bool = False, steps: int | None = None,
              seed: int = 0, device: str = "cpu", log=print) -> Path:
        """Train the tiny pixel-space SD3 on ``shapes-t2i``: rectified flow (velocity target ``noise - x0``),
        logit-normal sigmas ``sigmoid(N(m, s))`` (SD3 paper, m=0, s=1), caption dropout for CFG, MM-DiT and
        text encoder jointly, EMA weights shipped. Writes ``OUT/sd3-shapes-t2i-tiny.safetensors`` (+ ``.json``),
        ``OUT/mmdit.state.pt`` and ``OUT/loss.csv``; returns the safetensors path."""
        if config not in SD3_TINY_CONFIGS:
            raise CgmbenchError(f"unknown sd3 training config {config!r}", f"known: {', '.join(SD3_TINY_CONFIGS)}")
        cfg = copy.deepcopy(SD3_TINY_CONFIGS[config])
        tc = cfg["train"]
        if steps is not None:
            tc["steps"] = int(steps)
        out = Path(out or f"runs/train/sd3-{task.name}-{config}")
        if out.exists() and any(out.glob("*.state.pt")) and not resume:
            raise CgmbenchError(f"{out} already holds a training run", "continue it with --resume or choose --out")
        torch.manual_seed(seed)
        t_start = time.perf_counter()
        mmdit, text = build_tiny_sd3(cfg)
        initialize_mmdit_weights(mmdit)
        images, texts = shapes_t2i_training_set(task, tc["items"])
        x_all = images.float() / 127.5 - 1.0
        n, bs = len(texts), tc["batch_size"]
        log(f"[sd3] {n} training items; mmdit {sum(p.numel() for p in mmdit.parameters()):,} params, text "
            f"{sum(p.numel() for p in text.parameters()):,}")
        loop = TrainLoop("mmdit", out, {"mmdit": mmdit, "text": text}, lr=tc["lr"], warmup=tc["warmup"],
                         ema_decay=tc["ema_decay"], seed=seed, log=log)
        if resume:
            loop.resume()

        def step_fn(mods, g, step):
            idx = torch.randint(0, n, (bs,), generator=g)
            x0 = x_all[idx]
            sigma = sample_logit_normal_sigmas(bs, m=tc["logit_normal_m"], s=tc["logit_normal_s"], generator=g)
            noise = torch.randn(x0.shape, generator=g)
            prompts = caption_dropout([texts[i] for i in idx.tolist()], tc["caption_dropout"], g)
            tokens, pooled, _ = mods["text"].encode(prompts)
            return rectified_flow_loss(mods["mmdit"], x0, sigma, noise, context=tokens, y=pooled).mean()

        loss = loop.run(tc["steps"], step_fn)
        tensors = {f"model.diffusion_model.{k}": v for k, v in loop.ema["mmdit"].state_dict().items()}
        tensors.update({f"text_encoders.shapes.{k}": v for k, v in loop.ema["text"].state_dict().items()})
        release = dict(cfg, model="sd3", name=config)
        release.pop("train")
        card = {"model": "sd3", "variant": f"{task.name}-{config}",
                "command": f"cgmbench train --model sd3 --task {task.name} --config {config} --seed {seed} --out OUT"
                           + (f" --steps {steps}" if steps is not None else ""),
                "train_config": tc, "steps": loop.step, "final_loss": loss, "seed": seed,
                "train_seconds": round(time.perf_counter() - t_start, 1), "torch": torch.__version__}
        path = save_shipped(out / f"sd3-{task.name}-{config}.safetensors", tensors, release, card)
        log(f"[sd3] wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
        return path
