"""``inpaint:<checkpoint>`` with SD-inpainting's concatenated-input U-Net (the ``sd-v1-5-inpainting`` layout).

Input of the U-Net (:func:`baselines.editing.checkpoints.inpaint_unet_input`): ``cat([z_t (C), mask (1), masked-image
latent (C)])`` with the mask (1 = fill) resized to the latent size by nearest neighbour and the masked image
``source * (mask < 0.5)`` in ``[-1, 1]`` encoded by the first stage (posterior *mean* times ``scale_factor``; the
reference scripts sample the posterior, diffusers samples it with the pipeline's generator: recorded).
``C = 4``, 9 channels, for the official file; ``C = 8``, 17 channels, for the tiny shapes model (its first stage has
8 latent channels). Sampling: CompVis DDIM from pure noise (the reference pipelines' full-strength inpainting),
classifier-free guidance ``e(neg) + w (e(prompt) - e(neg))`` with the instruction rule's prompts
(:func:`baselines.editing.prompts.edit_prompts`; inpainting tasks without text: the empty prompt) and the same
concatenated image for both halves (diffusers); ``paste_background=on`` (default) puts the source pixels back
outside the mask after decoding.

Variants
--------
``sd15-inpainting`` (official, ``cgmbench weights fetch sd:v1-5-inpainting``; 512x512): the CompVis
LatentInpaintDiffusion checkpoint, U-Net and KL-f8 first stage loaded strictly
(:func:`baselines.editing.checkpoints.load_sd_inpainting`), the CLIP ViT-L/14 text encoder (final layer) from the
local Hugging Face cache (``huggingface-cli download openai/clip-vit-large-patch14``), the SD linear schedule
(0.00085 -> 0.012) and scale factor 0.18215 unless the file has its buffers.

``shapes-edit-tiny`` (shipped, ``cgmbench/shipped/inpaint-shapes-edit-tiny.safetensors``): trained by
``cgmbench train --model inpaint --task shapes-edit --config tiny --out OUT`` from the shipped ``ldm:shapes-t2i-tiny``
as runwayml trained sd-v1-5-inpainting from SD 1.5: the U-Net's first convolution widened by ``C + 1`` zero-initialised
input channels; the autoencoder is the base's, frozen and not stored again (the file records its sha256). Data: the
shapes-edit *train* split (all five edit types): the true target, its edit mask (a quarter of the items a random
square hole instead, photos-inpaint style) and the rule's target prompt, 10 % of prompts dropped for guidance.
On ``photos-inpaint`` (64x64) it samples at 64x64 (convolutional; recorded as ``trained_resolution`` /
``sampled_resolution``), as the latent-blending inpainter does.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

import baselines.editing.weights  # noqa: F401  (registers sd:v1-5-inpainting without an installed entry point)
from baselines.common.shipped import _is_cgmbench_file, read_shipped, save_shipped
from baselines.common.state_dict import load_state_dict_strict
from baselines.common.text_encoders import ShapesWordEncoder, ShapesWordEncoderConfig, TextEncoder
from baselines.common.training import TrainLoop
from baselines.editing.checkpoints import SD_INPAINTING_UNET_CONFIG, inpaint_unet_input, load_sd_inpainting, masked_image
from baselines.editing.prompts import RULE, edit_prompts
from baselines.editing.sampling import FULLY_CONVOLUTIONAL_MULTIPLE
from baselines.ldm.checkpoints import SD1_VAE_CONFIG, split_compvis_checkpoint
from baselines.ldm.sampling import check_ddim_steps
from baselines.ldm.unet import UNetModel
from cgmbench.diffusion import DDIMSampler, PerSampleNoise, ldm_alphas_cumprod, per_sample_noise
from cgmbench.errors import CgmbenchError
from cgmbench.generator import CheckpointInfo, Generator, Knob, to_uint8
from cgmbench.seeding import torch_generator
from cgmbench.weights import resolve, sha256_file, shipped

SHIPPED = {"shapes-edit-tiny": "inpaint-shapes-edit-tiny.safetensors"}
BASE_FILE = "ldm-shapes-t2i-tiny.safetensors"
OFFICIAL = {"sd15-inpainting": dict(weights="sd:v1-5-inpainting", resolution=512, scale_factor=0.18215,
                                    linear_start=0.00085, linear_end=0.012,
                                    defaults=dict(guidance_scale=7.5, steps=50, eta=0.0))}
TINY = dict(
    train=dict(items=4000, batch_size=32, steps=350, lr=5e-4, warmup=50, ema_decay=0.99, caption_dropout=0.1,
               square_holes=0.25),
    defaults=dict(guidance_scale=3.0, steps=25, eta=0.0),
)


def _knobs(d: dict) -> tuple[Knob, ...]:
    return (
        Knob("guidance_scale", float(d["guidance_scale"]), "classifier-free guidance w: e(neg) + w (e(prompt) - "
             "e(neg)), both with the masked image; 1 = none", minimum=0.0, maximum=50.0),
        Knob("steps", int(d["steps"]), "DDIM steps (CompVis uniform discretisation), from pure noise", kind="int",
             minimum=1, maximum=1000),
        Knob("eta", float(d["eta"]), "DDIM eta: 0 deterministic", minimum=0.0, maximum=1.0),
        Knob("paste_background", "on", "replace the decoded pixels outside the mask by the source's", kind="choice",
             choices=("on", "off")),
    )


def _base_ldm(device="cpu"):
    from baselines.ldm.generator import LDMGenerator

    path, digest = shipped(BASE_FILE)
    return LDMGenerator.from_shipped_file(path, CheckpointInfo("ldm:shapes-t2i-tiny", digest, str(path), "shipped"),
                                          device), digest


class ConcatInpaintGenerator(Generator):
    """Inpainting with a concatenated-input (9-channel layout) U-Net (see the module docstring)."""

    condition_kinds = frozenset({"image+text", "image+mask"})
    precisions = ("fp32", "bf16")
    description = "SD-inpainting: U-Net on [noisy latent, mask, masked-image latent] + prompt, DDIM from noise"
    knobs = _knobs(TINY["defaults"])

    def __init__(self, unet: UNetModel, vae, text_encoder: TextEncoder, *, scale_factor: float,
                 alphas_cumprod: torch.Tensor, resolution: int, defaults: dict, checkpoint: CheckpointInfo,
                 device: str = "cpu"):
        super().__init__((resolution, resolution), checkpoint=checkpoint, device=device)
        latent = vae.embed_dim
        if unet.in_channels != 2 * latent + 1:
            raise CgmbenchError(f"the inpainting U-Net takes {unet.in_channels} input channels; the first stage's "
                                f"{latent}-channel latents need 2 x {latent} + 1 = {2 * latent + 1}")
        self.unet = unet.to(device).eval()
        self.vae = vae.to(device).eval()
        self.text_encoder = text_encoder
        if isinstance(text_encoder, torch.nn.Module):
            text_encoder.to(device).eval()
        self.scale_factor = float(scale_factor)
        self.alphas_cumprod = torch.as_tensor(alphas_cumprod, dtype=torch.float32)
        self.knobs = _knobs(defaults)
        self.checkpoint.extra.update(layout=f"[z_t {latent}, mask 1, masked-image latent {latent}] "
                                            f"({unet.in_channels} input channels, sd-v1-5-inpainting order)",
                                     prompt_rule=RULE, masked_image_latent="posterior mean x scale_factor "
                                     "(the reference samples the posterior)")

    # -- construction -------------------------------------------------------------------

    @classmethod
    def variants(cls) -> dict[str, str]:
        out = {k: "shipped: tiny 17-channel (sd-v1-5-inpainting layout) inpainter trained on shapes-edit, from "
                  "ldm:shapes-t2i-tiny" for k in SHIPPED}
        out.update({k: f"official sd-v1-5-inpainting (weights {v['weights']}; CLIP ViT-L/14 from the HF cache)"
                    for k, v in OFFICIAL.items()})
        return out

    @classmethod
    def load(cls, task, variant=None, checkpoint=None, device="cpu") -> "ConcatInpaintGenerator":
        if checkpoint is not None:
            path = Path(checkpoint)
            if not path.is_file():
                raise CgmbenchError(f"checkpoint {path} does not exist")
            info = CheckpointInfo(path.stem, sha256_file(path), str(path), "file")
            if path.suffix == ".safetensors" and _is_cgmbench_file(path):
                return cls.from_shipped_file(path, info, device)._at_task_size(task)
            return cls.from_official(path, info=info, device=device)
        if variant in SHIPPED:
            path, digest = shipped(SHIPPED[variant])
            model = cls.from_shipped_file(path, CheckpointInfo(f"inpaint:{variant}", digest, str(path), "shipped"),
                                          device)
            return model._at_task_size(task)
        if variant in OFFICIAL:
            spec = OFFICIAL[variant]
            path, digest = resolve(spec["weights"])
            return cls.from_official(path, info=CheckpointInfo(spec["weights"], digest, str(path), "official"),
                                     device=device)
        raise CgmbenchError(f"unknown 9-channel inpainting checkpoint {variant!r}", f"known: {', '.join(cls.variants())}")

    @classmethod
    def from_shipped_file(cls, path, info: CheckpointInfo, device="cpu") -> "ConcatInpaintGenerator":
        tensors, config = read_shipped(Path(path))
        if config.get("model") != "inpaint":
            raise CgmbenchError(f"{path} is a {config.get('model')!r} checkpoint, not a 9-channel inpaint one")
        base, base_sha = _base_ldm(device)
        if config.get("base_sha256") != base_sha:
            raise CgmbenchError(f"{path} was trained on the autoencoder of {BASE_FILE} sha256 "
                                f"{config.get('base_sha256')}, the shipped one is {base_sha}")
        unet = UNetModel(**config["unet"])
        text = ShapesWordEncoder(ShapesWordEncoderConfig(**config["text_encoder"]))
        parts = split_compvis_checkpoint(tensors)
        try:
            load_state_dict_strict(unet, parts["diffusion_model"], "UNetModel (model.diffusion_model.)")
            load_state_dict_strict(text, parts["cond_stage_model"], "ShapesWordEncoder (cond_stage_model.)")
        except ValueError as e:
            raise CgmbenchError(f"{path}: {e}") from None
        if parts["first_stage_model"]:
            raise CgmbenchError(f"{path}: unexpected first_stage_model tensors (the autoencoder is the base's)")
        info = CheckpointInfo(info.name, info.sha256, info.path, info.source,
                              extra={"base": "ldm:shapes-t2i-tiny", "base_sha256": base_sha})
        return cls(unet, base.vae, text, scale_factor=base.scale_factor, alphas_cumprod=base.alphas_cumprod,
                   resolution=config["resolution"], defaults=config["defaults"], checkpoint=info, device=device)

    def _at_task_size(self, task) -> "ConcatInpaintGenerator":
        """Sample at the task's side when it differs from the trained one and is a multiple of 8 (photos-inpaint:
        64 for the 32x32 tiny model): the autoencoder and the U-Net are convolutional and attention is over
        positions, as for ``inpaint:shapes-t2i-tiny``; recorded as trained/sampled resolution."""
        side = int(task.resolution)
        if (side, side) != tuple(self.resolution) and side % FULLY_CONVOLUTIONAL_MULTIPLE == 0:
            self.checkpoint.extra.update(trained_resolution=list(self.resolution), sampled_resolution=[side, side])
            self.resolution = (side, side)
        return self

    @classmethod
    def from_official(cls, path, *, info: CheckpointInfo | None = None, device="cpu",
                      text_encoder: TextEncoder | None = None, unet_config: Mapping = SD_INPAINTING_UNET_CONFIG,
                      vae_config: Mapping = SD1_VAE_CONFIG, variant: str = "sd15-inpainting",
                      resolution: int | None = None) -> "ConcatInpaintGenerator":
        """An official (CompVis layout) file, loaded strictly; ``text_encoder`` defaults to CLIP ViT-L/14 from the
        HF cache. ``unet_config`` / ``vae_config`` / ``resolution`` default to the release (tests pass tiny ones)."""
        spec = OFFICIAL[variant]
        unet, vae, parts = load_sd_inpainting(path, unet_config, vae_config)
        if text_encoder is None:
            from baselines.common.text_encoders import CLIPTextEncoder

            text_encoder = CLIPTextEncoder(layer=-1, device=device)
        buffers = parts["buffers"]
        acp = buffers.get("alphas_cumprod")
        acp = acp.float() if acp is not None else ldm_alphas_cumprod(1000, spec["linear_start"], spec["linear_end"])
        scale = float(buffers["scale_factor"]) if "scale_factor" in buffers else spec["scale_factor"]
        info = info or CheckpointInfo(Path(path).stem, sha256_file(path), str(path), "file")
        return cls(unet, vae, text_encoder, scale_factor=scale, alphas_cumprod=acp,
                   resolution=resolution or spec["resolution"], defaults=spec["defaults"],
                   checkpoint=CheckpointInfo(info.name, info.sha256, info.path, info.source, extra=dict(info.extra)),
                   device=device)

    # -- sampling -----------------------------------------------------------------------

    @torch.no_grad()
    def _context(self, texts: Sequence[str]) -> torch.Tensor:
        tokens, _, _ = self.text_encoder.encode(list(texts))
        return tokens.to(self.device, torch.float32)

    @torch.no_grad()
    def generate(self, conditions, seeds: Sequence[int], **knobs) -> torch.Tensor:
        images, masks = conditions.images, conditions.masks
        if images is None or masks is None:
            raise CgmbenchError(f"{self.name} fills a masked region of a source image; the conditions carry "
                                f"{'no mask' if images is not None else 'no source image'}",
                                "use sdedit or instruct-pix2pix for mask-free edits")
        images, masks = torch.as_tensor(images), torch.as_tensor(masks)
        if masks.ndim == 3:
            masks = masks[:, None]
        if images.dtype != torch.uint8 or tuple(images.shape[1:]) != (3, *self.resolution):
            raise CgmbenchError(f"source images must be uint8 [B, 3, {self.resolution[0]}, {self.resolution[1]}], "
                                f"got {images.dtype} {tuple(images.shape)}",
                                "resize the sources with the task's protocol or choose a checkpoint of that size")
        if tuple(masks.shape) != (len(images), 1, *self.resolution):
            raise CgmbenchError(f"edit masks have shape {tuple(masks.shape)}; one [1, H, W] mask per source image "
                                f"{tuple(self.resolution)} expected (255 = region to change)")
        if len(seeds) != len(images):
            raise CgmbenchError(f"got {len(seeds)} seeds for {len(images)} source images")
        k = self.resolve_knobs(knobs)
        check_ddim_steps(self.alphas_cumprod, k["steps"], k["eta"])
        w, dev = k["guidance_scale"], self.device
        texts = conditions.texts if conditions.texts is not None else [""] * len(images)
        out = []
        for i, seed in enumerate(seeds):
            prompt, negative = edit_prompts(texts[i])
            fill = (masks[i:i + 1] > 0).to(dev).float()
            x = images[i:i + 1].to(dev).float() / 127.5 - 1.0
            with self.autocast():
                masked = self.vae.encode(masked_image(x, fill)).mode().float() * self.scale_factor
            c = self._context([prompt])
            uc = self._context([negative]) if w != 1.0 else None
            latent_shape = tuple(masked.shape[1:])

            def model(z, t, ctx, fill=fill, masked=masked):
                n = z.shape[0]
                with self.autocast():
                    return self.unet(inpaint_unet_input(z, fill.expand(n, -1, -1, -1), masked.expand(n, -1, -1, -1)),
                                     timesteps=t, context=ctx).float()

            g = [torch_generator(int(seed))]
            z, _ = DDIMSampler(model, self.alphas_cumprod).sample(
                k["steps"], 1, latent_shape, conditioning=c, eta=k["eta"],
                x_T=per_sample_noise(g, latent_shape, device=dev), unconditional_guidance_scale=w,
                unconditional_conditioning=uc, step_noise=PerSampleNoise(g, device=dev), log_every_t=10**9)
            with self.autocast():
                img = to_uint8(self.vae.decode(z.float() / self.scale_factor).float()).cpu()
            if k["paste_background"] == "on":
                img = torch.where(masks[i:i + 1] > 0, img, images[i:i + 1])
            out.append(img)
        return torch.cat(out)

    # -- training ------------------------------------------------------------------------

    @classmethod
    def train(cls, task, config: str = "tiny", out=None, resume: bool = False, steps: int | None = None,
              seed: int = 0, device: str = "cpu", log=print) -> Path:
        """The tiny recipe (module docstring); writes ``OUT/inpaint-shapes-edit-tiny.safetensors`` (+ ``.json``)."""
        from cgmbench.worlds import shapes as W
        from cgmbench.worlds.sources import ShapesSource

        if config != "tiny":
            raise CgmbenchError(f"unknown inpaint training config {config!r}", "known: tiny")
        if task.kind != "editing" or task.name != "shapes-edit":
            raise CgmbenchError("the tiny 9-channel inpainting recipe trains on shapes-edit",
                                "cgmbench train --model inpaint --task shapes-edit --config tiny")
        tc = dict(TINY["train"])
        if steps is not None:
            tc["steps"] = int(steps)
        out = Path(out or "runs/train/inpaint-shapes-edit-tiny")
        if out.exists() and any(out.glob("*.state.pt")) and not resume:
            raise CgmbenchError(f"{out} already holds a training run", "continue it with --resume or choose --out")
        torch.manual_seed(seed)
        t_start, cpu_start = time.perf_counter(), time.process_time()
        base, base_sha = _base_ldm(device)
        vae = base.vae.eval().requires_grad_(False)
        c = base.unet.in_channels
        ucfg = dict(read_shipped(Path(base.checkpoint.path))[1]["unet"], in_channels=2 * c + 1)
        unet = UNetModel(**ucfg)
        sd = {k: v.clone() for k, v in base.unet.state_dict().items()}
        w = sd["input_blocks.0.0.weight"]
        sd["input_blocks.0.0.weight"] = torch.cat([w, torch.zeros(w.shape[0], c + 1, *w.shape[2:])], dim=1)
        unet.load_state_dict(sd)
        text = base.text_encoder
        text.train()

        source = ShapesSource(task, {}, split="train")
        rng = np.random.default_rng(seed)
        targets, holes, prompts = [], [], []
        res = base.resolution[0]
        for i in range(tc["items"]):
            it = source.item(i)
            targets.append(W.render(it["scene"], "flat"))
            m = W.edit_mask(it["source"], it["spec"], it["scene"])[0] > 0
            if rng.random() < tc["square_holes"]:
                side = int(rng.integers(res // 4, res // 2 + 1))
                y, x = (int(v) for v in rng.integers(0, res - side + 1, 2))
                m = np.zeros_like(m)
                m[y:y + side, x:x + side] = True
            holes.append(m)
            prompts.append(edit_prompts(it["text"])[0])
        with torch.no_grad():
            xt = torch.from_numpy(np.stack(targets)).float() / 127.5 - 1
            fill = torch.from_numpy(np.stack(holes))[:, None].float()
            enc = [(vae.encode(xt[j:j + 256]).mode(), vae.encode(masked_image(xt[j:j + 256], fill[j:j + 256])).mode())
                   for j in range(0, len(xt), 256)]
            tgt_lat = torch.cat([a for a, _ in enc]) * base.scale_factor
            msk_lat = torch.cat([b for _, b in enc]) * base.scale_factor
        acp = base.alphas_cumprod
        n, bs = len(prompts), tc["batch_size"]
        log(f"[inpaint] {n} shapes-edit train items; unet {sum(q.numel() for q in unet.parameters()):,} params, "
            f"{ucfg['in_channels']} input channels")
        loop = TrainLoop("inpaint", out, {"unet": unet, "text": text}, lr=tc["lr"], warmup=tc["warmup"],
                         ema_decay=tc["ema_decay"], seed=seed, log=log)
        if resume:
            loop.resume()

        def step(mods, g, _step):
            idx = torch.randint(0, n, (bs,), generator=g)
            t = torch.randint(0, 1000, (bs,), generator=g)
            eps = torch.randn(tgt_lat[idx].shape, generator=g)
            a = acp[t].view(-1, 1, 1, 1)
            z_t = a.sqrt() * tgt_lat[idx] + (1 - a).sqrt() * eps
            drop = torch.rand(bs, generator=g) < tc["caption_dropout"]
            ctx, _, _ = mods["text"].encode(["" if d else prompts[j] for d, j in zip(drop.tolist(), idx.tolist())])
            x_in = inpaint_unet_input(z_t, fill[idx], msk_lat[idx])
            return ((mods["unet"](x_in, timesteps=t, context=ctx) - eps) ** 2).mean()

        loss = loop.run(tc["steps"], step)
        tensors = {f"model.diffusion_model.{k}": v for k, v in loop.ema["unet"].state_dict().items()}
        tensors.update({f"cond_stage_model.{k}": v for k, v in loop.ema["text"].state_dict().items()})
        release = {"model": "inpaint", "name": config, "unet": ucfg, "text_encoder": text.config.to_dict(),
                   "defaults": TINY["defaults"], "base_sha256": base_sha, "resolution": list(base.resolution)[0]}
        card = {"model": "inpaint", "variant": "shapes-edit-tiny",
                "command": f"cgmbench train --model inpaint --task shapes-edit --config tiny --seed {seed} --out OUT"
                           + (f" --steps {steps}" if steps is not None else ""),
                "train_config": tc, "steps": loop.step, "final_loss": loss, "seed": seed,
                "train_seconds": round(time.perf_counter() - t_start, 1),
                "train_cpu_seconds": round(time.process_time() - cpu_start, 1),
                "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
        path = save_shipped(out / SHIPPED["shapes-edit-tiny"], tensors, release, card)
        log(f"[inpaint] wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
        return path
