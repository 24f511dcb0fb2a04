"""``instruct-pix2pix``: InstructPix2Pix (Brooks et al. 2023) on the LDM family, with a tiny shapes-edit checkpoint.

Network: the CompVis U-Net whose input is the noisy latent concatenated with the source image's latent
(:func:`baselines.editing.checkpoints.ip2p_unet_input`; the official SD layout has 4 + 4 = 8 channels, loaded by
:func:`~baselines.editing.checkpoints.load_instruct_pix2pix`; the tiny one 8 + 8 = 16), cross-attending to the
instruction. The source latent is the first stage's posterior mode *without* the scale factor, as the reference.

Guidance (:func:`~baselines.editing.checkpoints.dual_cfg`, the reference ``CFGDenoiser``):
``e = e(0, "") + s_I (e(I, "") - e(0, "")) + s_T (e(I, T) - e(I, ""))``; knobs ``guidance_scale`` = ``s_T`` (the
suite's guidance scale: the text scale at fixed image conditioning) and ``image_guidance_scale`` = ``s_I``.
``s_T = s_I = 1`` is plain conditional sampling (one pass). Sampler: CompVis DDIM (the reference uses 100
Euler-ancestral k-diffusion steps; recorded as a difference).

``ip2p:shapes-edit-tiny`` (``cgmbench/shipped/ip2p-shapes-edit-tiny.safetensors``): trained by
``cgmbench train --model instruct-pix2pix --task shapes-edit --config tiny --out OUT`` on the shapes-edit *train*
split, starting as the reference does from the text-to-image model (here the shipped ``ldm:shapes-t2i-tiny``
U-Net and word encoder, the new input channels zero-initialised), its autoencoder frozen and not stored again (the
file records the sha256 of the ``ldm-shapes-t2i-tiny`` file it uses); conditioning dropout 5 % text, 5 % image,
5 % both, as the paper.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch

from baselines.common.shipped import _is_cgmbench_file, read_shipped, save_shipped
from baselines.common.state_dict import load_state_dict_strict
from baselines.common.text_encoders import ShapesWordEncoder, ShapesWordEncoderConfig
from baselines.common.training import TrainLoop
from baselines.editing.checkpoints import dual_cfg, ip2p_unet_input
from baselines.ldm.checkpoints import split_compvis_checkpoint
from baselines.ldm.sampling import check_ddim_steps
from baselines.ldm.unet import UNetModel
from cgmbench.diffusion import DDIMSampler, PerSampleNoise, per_sample_noise
from cgmbench.errors import CgmbenchError
from cgmbench.generator import CheckpointInfo, Generator, Knob, to_uint8
from cgmbench.seeding import torch_generator
from cgmbench.weights import sha256_file, shipped

SHIPPED = {"shapes-edit-tiny": "ip2p-shapes-edit-tiny.safetensors"}
BASE_FILE = "ldm-shapes-t2i-tiny.safetensors"
TINY = dict(
    train=dict(items=4000, batch_size=32, steps=800, lr=5e-4, warmup=100, ema_decay=0.999, drop=0.05),
    defaults=dict(guidance_scale=3.0, image_guidance_scale=1.5, steps=25, eta=0.0),
)


def _knobs(d: dict) -> tuple[Knob, ...]:
    return (
        Knob("guidance_scale", float(d["guidance_scale"]), "text guidance s_T (reference --cfg-text): "
             "e(I,'') + s_T (e(I,T) - e(I,'')) inside the dual CFG; 1 with s_I = 1: no guidance",
             minimum=0.0, maximum=50.0),
        Knob("image_guidance_scale", float(d["image_guidance_scale"]), "image guidance s_I (reference "
             "--cfg-image): e(0,'') + s_I (e(I,'') - e(0,'')); higher keeps more of the source", minimum=0.0,
             maximum=50.0),
        Knob("steps", int(d["steps"]), "DDIM steps (CompVis uniform discretisation)", kind="int", minimum=1,
             maximum=1000),
        Knob("eta", float(d["eta"]), "DDIM eta: 0 deterministic", minimum=0.0, maximum=1.0),
    )


def _base_ldm(device="cpu"):
    from baselines.ldm.generator import LDMGenerator

    path, digest = shipped(BASE_FILE)
    return LDMGenerator.from_shipped_file(path, CheckpointInfo("ldm:shapes-t2i-tiny", digest, str(path), "shipped"),
                                          device), digest


class InstructPix2PixGenerator(Generator):
    """InstructPix2Pix (see the module docstring)."""

    condition_kinds = frozenset({"image+text"})
    knobs = _knobs(TINY["defaults"])
    precisions = ("fp32", "bf16")
    description = ("InstructPix2Pix: U-Net on [noisy latent, source latent] + instruction, dual classifier-free "
                   "guidance (text s_T, image s_I)")

    def __init__(self, unet, text_encoder, base, *, checkpoint, defaults, device="cpu"):
        super().__init__(base.resolution, checkpoint=checkpoint, device=device)
        self.unet = unet.to(device).eval()
        self.text_encoder = text_encoder.to(device).eval()
        self.base = base  # the frozen autoencoder and the schedule
        self.knobs = _knobs(defaults)

    @classmethod
    def variants(cls) -> dict[str, str]:
        return {k: "shipped: tiny InstructPix2Pix trained on shapes-edit (32x32), from ldm:shapes-t2i-tiny"
                for k in SHIPPED}

    @classmethod
    def load(cls, task, variant=None, checkpoint=None, device="cpu") -> "Generator":
        if checkpoint is not None:
            path = Path(checkpoint)
            if not path.is_file() or path.suffix != ".safetensors" or not _is_cgmbench_file(path):
                raise CgmbenchError(f"{path} is not a cgmbench instruct-pix2pix checkpoint",
                                    "official SD-layout files load with baselines.editing.checkpoints."
                                    "load_instruct_pix2pix")
            info = CheckpointInfo(path.stem, sha256_file(path), str(path), "file")
        else:
            variant = variant or "shapes-edit-tiny"
            if variant not in SHIPPED:
                raise CgmbenchError(f"unknown instruct-pix2pix checkpoint {variant!r}", f"known: {', '.join(SHIPPED)}")
            path, digest = shipped(SHIPPED[variant])
            info = CheckpointInfo(f"instruct-pix2pix:{variant}", digest, str(path), "shipped")
        return cls.from_file(path, info, device)

    @classmethod
    def from_file(cls, path, info: CheckpointInfo, device="cpu") -> "InstructPix2PixGenerator":
        tensors, config = read_shipped(Path(path))
        if config.get("model") != "instruct-pix2pix":
            raise CgmbenchError(f"{path} is a {config.get('model')!r} checkpoint, not an instruct-pix2pix one")
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
                              extra={"base": "ldm:shapes-t2i-tiny", "base_sha256": base_sha,
                                     "guidance": "dual CFG (InstructPix2Pix CFGDenoiser): guidance_scale = s_T "
                                                 "(cfg-text), image_guidance_scale = s_I (cfg-image)",
                                     "sampler": "CompVis DDIM (reference: 100 Euler-ancestral steps)"})
        return cls(unet, text, base, checkpoint=info, defaults=config["defaults"], device=device)

    def set_precision(self, precision: str) -> None:
        super().set_precision(precision)
        self.base.set_precision(precision)

    @torch.no_grad()
    def _encode_text(self, texts):
        tokens, _, _ = self.text_encoder.encode(list(texts))
        return tokens.to(self.device, torch.float32)

    @torch.no_grad()
    def generate(self, conditions, seeds, **knobs) -> torch.Tensor:
        images = conditions.images
        if images is None or conditions.texts is None:
            raise CgmbenchError("instruct-pix2pix needs a source image and an instruction per sample")
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or tuple(images.shape[1:]) != (3, *self.resolution):
            raise CgmbenchError(f"source images must be uint8 [B, 3, {self.resolution[0]}, {self.resolution[1]}], "
                                f"got {images.dtype} {tuple(images.shape)}")
        if len(seeds) != len(images):
            raise CgmbenchError(f"got {len(seeds)} seeds for {len(images)} source images")
        k = self.resolve_knobs(knobs)
        s_t, s_i = k["guidance_scale"], k["image_guidance_scale"]
        check_ddim_steps(self.base.alphas_cumprod, k["steps"], k["eta"])
        base, dev, out = self.base, self.device, []
        plain = s_t == 1.0 and s_i == 1.0
        for i, seed in enumerate(seeds):
            x = images[i:i + 1].to(dev).float() / 127.5 - 1.0
            with self.autocast():
                img_lat = base.vae.encode(x).mode().float()  # no scale factor (reference encode_first_stage().mode())
            c, empty = self._encode_text([conditions.texts[i]]), self._encode_text([""])
            zero = torch.zeros_like(img_lat)

            def model(z, t, _c, img_lat=img_lat, c=c, empty=empty, zero=zero):
                with self.autocast():
                    if plain:
                        return self.unet(ip2p_unet_input(z, img_lat), timesteps=t, context=c).float()
                    zz = torch.cat([ip2p_unet_input(z, img_lat), ip2p_unet_input(z, img_lat), ip2p_unet_input(z, zero)])
                    e = self.unet(zz, timesteps=torch.cat([t, t, t]), context=torch.cat([c, empty, empty])).float()
                e_full, e_img, e_unc = e.chunk(3)
                return dual_cfg(e_full, e_img, e_unc, s_t, s_i)

            g = [torch_generator(int(seed))]
            x_T = per_sample_noise(g, tuple(img_lat.shape[1:]), device=dev)
            z, _ = DDIMSampler(model, base.alphas_cumprod).sample(
                k["steps"], 1, tuple(img_lat.shape[1:]), conditioning=None, eta=k["eta"], x_T=x_T,
                step_noise=PerSampleNoise(g, device=dev), log_every_t=10**9)
            with self.autocast():
                out.append(to_uint8(base.vae.decode(z.float() / base.scale_factor).float()).cpu())
        return torch.cat(out)

    # -- training ------------------------------------------------------------------------

    @classmethod
    def train(cls, task, config: str = "tiny", out=None, resume: bool = False, steps: int | None = None,
              seed: int = 0, device: str = "cpu", log=print) -> Path:
        """The tiny recipe (module docstring); writes ``OUT/ip2p-shapes-edit-tiny.safetensors`` (+ ``.json``)."""
        from cgmbench.worlds import shapes as W
        from cgmbench.worlds.sources import ShapesSource

        if config != "tiny":
            raise CgmbenchError(f"unknown instruct-pix2pix training config {config!r}", "known: tiny")
        if task.kind != "editing" or task.name != "shapes-edit":
            raise CgmbenchError("the tiny instruct-pix2pix recipe trains on shapes-edit")
        tc = dict(TINY["train"])
        if steps is not None:
            tc["steps"] = int(steps)
        out = Path(out or "runs/train/ip2p-shapes-edit-tiny")
        if out.exists() and any(out.glob("*.state.pt")) and not resume:
            raise CgmbenchError(f"{out} already holds a training run", "continue it with --resume or choose --out")
        torch.manual_seed(seed)
        t_start = time.perf_counter()
        base, base_sha = _base_ldm(device)
        vae = base.vae.eval().requires_grad_(False)
        ucfg = dict(base_config_unet(base), in_channels=2 * base.unet.in_channels)
        unet = UNetModel(**ucfg)
        sd = {k: v.clone() for k, v in base.unet.state_dict().items()}
        w = sd["input_blocks.0.0.weight"]
        sd["input_blocks.0.0.weight"] = torch.cat([w, torch.zeros_like(w)], dim=1)  # new channels start at zero
        unet.load_state_dict(sd)
        text = copy.deepcopy(base.text_encoder).train()

        source = ShapesSource(task, {"edit_types": W.LEGACY_EDIT_MIX}, split="train")  # the shipped file's data
        src_imgs, tgt_imgs, texts = [], [], []
        for i in range(tc["items"]):
            it = source.item(i)
            src_imgs.append(W.render(it["source"], "flat"))
            tgt_imgs.append(W.render(it["scene"], "flat"))
            texts.append(it["text"])
        with torch.no_grad():
            xs = torch.from_numpy(np.stack(src_imgs)).float() / 127.5 - 1
            xt = torch.from_numpy(np.stack(tgt_imgs)).float() / 127.5 - 1
            src_lat = torch.cat([vae.encode(xs[j:j + 256]).mode() for j in range(0, len(xs), 256)])
            tgt_lat = torch.cat([vae.encode(xt[j:j + 256]).mode() for j in range(0, len(xt), 256)]) * base.scale_factor
        acp = base.alphas_cumprod
        n, bs, p = len(texts), tc["batch_size"], tc["drop"]
        log(f"[ip2p] {n} shapes-edit train items; unet {sum(q.numel() for q in unet.parameters()):,} params")
        loop = TrainLoop("ip2p", out, {"unet": unet, "text": text}, lr=tc["lr"], warmup=tc["warmup"],
                         ema_decay=tc["ema_decay"], seed=seed, log=log)
        if resume:
            loop.resume()

        def step(mods, g, _step):
            idx = torch.randint(0, n, (bs,), generator=g)
            t = torch.randint(0, 1000, (bs,), generator=g)
            eps = torch.randn(tgt_lat[idx].shape, generator=g)
            a = acp[t].view(-1, 1, 1, 1)
            z_t = a.sqrt() * tgt_lat[idx] + (1 - a).sqrt() * eps
            r = torch.rand(bs, generator=g)
            drop_text = (r < p) | ((r >= 2 * p) & (r < 3 * p))
            drop_image = (r >= p) & (r < 3 * p)
            prompts = ["" if d else texts[j] for d, j in zip(drop_text.tolist(), idx.tolist())]
            img = src_lat[idx] * (~drop_image).float().view(-1, 1, 1, 1)
            c, _, _ = mods["text"].encode(prompts)
            return ((mods["unet"](ip2p_unet_input(z_t, img), timesteps=t, context=c) - eps) ** 2).mean()

        loss = loop.run(tc["steps"], step)
        tensors = {f"model.diffusion_model.{k}": v for k, v in loop.ema["unet"].state_dict().items()}
        tensors.update({f"cond_stage_model.{k}": v for k, v in loop.ema["text"].state_dict().items()})
        release = {"model": "instruct-pix2pix", "name": config, "unet": ucfg,
                   "text_encoder": base.text_encoder.config.to_dict(), "defaults": TINY["defaults"],
                   "base_sha256": base_sha, "resolution": list(base.resolution)}
        card = {"model": "instruct-pix2pix", "variant": "shapes-edit-tiny",
                "command": f"cgmbench train --model instruct-pix2pix --task shapes-edit --config tiny --seed {seed} "
                           "--out OUT" + (f" --steps {steps}" if steps is not None else ""),
                "train_config": tc, "steps": loop.step, "final_loss": loss, "seed": seed,
                "train_seconds": round(time.perf_counter() - t_start, 1), "torch": torch.__version__}
        path = save_shipped(out / SHIPPED["shapes-edit-tiny"], tensors, release, card)
        log(f"[ip2p] wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
        return path


def base_config_unet(base) -> dict:
    """The U-Net configuration of the shipped tiny LDM (from its file)."""
    return dict(read_shipped(Path(base.checkpoint.path))[1]["unet"])
