"""``PartiGenerator``: the Parti-like autoregressive baseline (VQ tokens + GPT) as a cgmbench generator.

A sample is made in three steps: the condition becomes the GPT's prefix (a class token for c2i; caption
features for t2i), :func:`baselines.parti.sampling.generate` draws the image tokens one by one with its KV
cache, and the VQ tokenizer decodes them (``VQModel.decode_code``). Pixels become uint8 as in LlamaGen's
``sample_c2i_ddp.py``: ``clamp(127.5·x + 128, 0, 255)`` truncated to uint8 (round-half-up of the usual map).

Knobs (all recorded in ``run.json``; applied in the order listed, on float32 logits):

* ``guidance_scale`` ``w``: the suite's convention on logits, ``l_u + w·(l_c − l_u)`` (LlamaGen's ``cfg_scale``
  is the same number; ``w = 1`` runs no unconditional half, ``w = 0`` samples unconditionally);
* ``temperature``: logits divided by ``max(temperature, 1e-5)``;
* ``top_k``: keep the k largest logits (0 = off; more than the codebook is an error);
* ``top_p``: nucleus filtering on the top-k-filtered distribution (1.0 = off);
* ``cfg_interval``: LlamaGen's, guide steps ``0 … cfg_interval + 1`` only (−1 = every step).

Randomness: sample ``i``'s draws come from ``torch_generator(seeds[i])`` alone, and the networks run
``micro_batch`` samples at a time (1 by default: CPU kernels may round differently for other batch sizes,
and one flipped logit changes every later token), so a sample does not depend on its batch.

Variants
--------
* ``shapes-t2i-tiny`` / ``shapes-cc-tiny`` (shipped, ``cgmbench/shipped/parti-*.safetensors``): trained by
  ``cgmbench train --model parti --task shapes-t2i|shapes-cc`` (:mod:`baselines.parti.train`). The t2i model
  reads the shapes word encoder's tokens (:class:`~baselines.common.text_encoders.ShapesWordEncoder`, stored
  in the file under ``text.``); the null caption is the GPT's ``cls_embedding.uncond_embedding``.
* ``llamagen-c2i-b-256``, ``llamagen-c2i-l-256``, ``llamagen-t2i-xl`` (official, :mod:`baselines.parti.weights`):
  LlamaGen's tokenizer and GPT, loaded strictly (:mod:`baselines.parti.checkpoints`); the t2i model also
  needs ``google/flan-t5-xl`` in the local Hugging Face cache (:mod:`baselines.parti.text`). Defaults are
  LlamaGen's evaluation settings: c2i ``cfg 2.0, top-k 0, T 1, top-p 1`` (``GETTING_STARTED.md``, B and L);
  t2i ``cfg 7.5, top-k 1000, T 1, top-p 1`` (``sample_t2i.py``).

``--checkpoint PATH`` takes a file in the shipped format (what ``cgmbench train --model parti`` writes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

import baselines.parti.weights  # noqa: F401  (registers the LlamaGen files)
from baselines.common.shipped import _is_cgmbench_file, read_shipped
from baselines.common.text_encoders import check_prompts
from baselines.parti import checkpoints as ckpt
from baselines.parti.models import Transformer
from baselines.parti.shipped_config import build_parti_networks
from baselines.parti.sampling import generate
from baselines.parti.text import LLAMAGEN_T5_HUB_ID, LLAMAGEN_T5_TOKENS, T5CaptionEncoder
from baselines.parti.tokenizer import VQModel
from cgmbench.errors import CgmbenchError
from cgmbench.generator import CheckpointInfo, Generator, Knob
from cgmbench.seeding import torch_generator

__all__ = ["PartiGenerator", "LLAMAGEN_VARIANTS", "SHIPPED_PARTI", "parti_knobs", "to_uint8_llamagen"]

#: official LlamaGen variants: weight names, geometry and LlamaGen's own sampling defaults
LLAMAGEN_VARIANTS: dict[str, dict] = {
    "llamagen-c2i-b-256": dict(
        vq="llamagen:vq_ds16_c2i", gpt="llamagen:c2i_B_256", kind="c2i", n_head=12, block_size=256, resolution=256,
        defaults=dict(guidance_scale=2.0, temperature=1.0, top_k=0, top_p=1.0, cfg_interval=-1),
        description="LlamaGen-B c2i 256 (111M; README FID 5.46 at cfg 2.0, top-k 0)"),
    "llamagen-c2i-l-256": dict(
        vq="llamagen:vq_ds16_c2i", gpt="llamagen:c2i_L_256", kind="c2i", n_head=16, block_size=256, resolution=256,
        defaults=dict(guidance_scale=2.0, temperature=1.0, top_k=0, top_p=1.0, cfg_interval=-1),
        description="LlamaGen-L c2i 256 (343M; README FID 3.80 at cfg 2.0, top-k 0)"),
    "llamagen-t2i-xl": dict(
        vq="llamagen:vq_ds16_t2i", gpt="llamagen:t2i_XL_stage1_256", kind="t2i", n_head=20, block_size=256,
        resolution=256, text=LLAMAGEN_T5_HUB_ID, cls_token_num=LLAMAGEN_T5_TOKENS,
        defaults=dict(guidance_scale=7.5, temperature=1.0, top_k=1000, top_p=1.0, cfg_interval=-1),
        description="LlamaGen t2i XL stage 1 (775M, flan-t5-xl captions, 256 px; sample_t2i.py cfg 7.5, top-k 1000)"),
}

#: shipped tiny checkpoints: variant -> file in cgmbench/shipped
SHIPPED_PARTI: dict[str, str] = {
    "shapes-t2i-tiny": "parti-shapes-t2i-tiny.safetensors",
    "shapes-cc-tiny": "parti-shapes-cc-tiny.safetensors",
}

_DEFAULTS = dict(guidance_scale=3.0, temperature=1.0, top_k=0, top_p=1.0, cfg_interval=-1)


def parti_knobs(defaults: dict) -> tuple[Knob, ...]:
    d = {**_DEFAULTS, **defaults}
    return (
        Knob("guidance_scale", float(d["guidance_scale"]),
             "classifier-free guidance w on logits: l_u + w (l_c - l_u) (LlamaGen cfg_scale); 1 = none, 0 = uncond",
             minimum=0.0, maximum=50.0),
        Knob("temperature", float(d["temperature"]), "logits / max(temperature, 1e-5), after guidance",
             minimum=0.0, maximum=10.0),
        Knob("top_k", int(d["top_k"]), "keep the k largest logits after temperature (0 = off)", kind="int",
             minimum=0),
        Knob("top_p", float(d["top_p"]), "nucleus filtering after top-k (1.0 = off)", minimum=0.0, maximum=1.0),
        Knob("cfg_interval", int(d["cfg_interval"]),
             "guide steps 0..cfg_interval+1 only, then sample from the conditional logits (-1 = every step)",
             kind="int", minimum=-1),
    )


def to_uint8_llamagen(x: torch.Tensor) -> torch.Tensor:
    """LlamaGen's pixel conversion: ``clamp(127.5·x + 128, 0, 255)`` cast (truncated) to uint8."""
    return torch.clamp(127.5 * x.detach().float() + 128.0, 0, 255).to(torch.uint8)


class PartiGenerator(Generator):
    """VQ tokenizer + autoregressive GPT with a KV cache (see the module docstring)."""

    condition_kinds = frozenset({"text", "class"})
    knobs = parti_knobs({})
    #: samples run through the networks this many at a time (1: bit-identical whatever the batch)
    micro_batch: int = 1
    description = ("Parti-like autoregressive baseline (LlamaGen layout): VQ tokens, GPT with KV cache, "
                   "CFG on logits -> temperature -> top-k -> top-p")

    def __init__(self, vq: VQModel, gpt: Transformer, text_encoder=None, *, resolution: int, defaults: dict,
                 checkpoint: CheckpointInfo | None, device: str = "cpu", sources: tuple[str, str] | None = None):
        super().__init__((resolution, resolution), checkpoint=checkpoint, device=device)
        vq_source, gpt_source = sources or ("the tokenizer", "the GPT")
        ckpt.check_codebook_match(vq, gpt, vq_source, gpt_source)
        self.vq = vq.to(device).eval().requires_grad_(False)
        self.gpt = gpt.to(device).eval().requires_grad_(False)
        self.text_encoder = text_encoder
        if isinstance(text_encoder, torch.nn.Module):
            text_encoder.to(device).eval().requires_grad_(False)
        self.kind = gpt.model_type
        self.condition_kinds = frozenset({"class"} if self.kind == "c2i" else {"text"})
        if self.kind == "t2i" and text_encoder is None:
            raise CgmbenchError("a text-to-image Parti model needs a text encoder")
        self.knobs = parti_knobs(defaults)
        self.grid = int(round(gpt.block_size ** 0.5))
        side = self.grid * vq.downsample_factor
        if side != resolution:
            raise CgmbenchError(f"{gpt_source} makes {self.grid}x{self.grid} tokens, which {vq_source} decodes to "
                                f"{side}x{side} pixels, not {resolution}x{resolution}")
        #: prompts seen and prompts cut to the text encoder's context length, summed over generate() calls
        self.run_info = {"prompts": 0, "truncated": 0}

    # -- construction -------------------------------------------------------------------

    @classmethod
    def variants(cls) -> dict[str, str]:
        out = {name: f"shipped: tiny Parti-like model trained on {name[:-5]} (32x32, 8x8 VQ tokens)"
               for name in SHIPPED_PARTI}
        out.update({name: v["description"] for name, v in LLAMAGEN_VARIANTS.items()})
        return out

    @classmethod
    def required_files(cls, task, variant=None, checkpoint=None) -> list:
        """An official LlamaGen pair (VQ tokenizer + GPT) and, for text-to-image, its T5 encoder in the Hugging
        Face cache; shipped tiny models and cgmbench files need nothing."""
        from cgmbench.requirements import transformers_model, weights_file

        if checkpoint is not None or variant is None or variant in SHIPPED_PARTI:
            return []
        if variant not in LLAMAGEN_VARIANTS:
            raise CgmbenchError(f"unknown parti checkpoint {variant!r}", f"known: {', '.join(cls.variants())}")
        spec = LLAMAGEN_VARIANTS[variant]
        out = [weights_file(spec["vq"], f"model parti:{variant} VQ tokenizer"),
               weights_file(spec["gpt"], f"model parti:{variant} GPT")]
        if spec["kind"] == "t2i":
            out.append(transformers_model(spec["text"], f"model parti:{variant}: T5 text encoder",
                                          tokenizer=("spiece.model|tokenizer.json",)))
        return out

    @classmethod
    def load(cls, task, variant=None, checkpoint=None, device="cpu") -> "PartiGenerator":
        from cgmbench.weights import sha256_file, shipped

        if checkpoint is not None:
            path = Path(checkpoint)
            if not path.is_file():
                raise CgmbenchError(f"checkpoint {path} does not exist")
            if path.suffix != ".safetensors" or not _is_cgmbench_file(path):
                raise CgmbenchError(f"{path} is not a cgmbench Parti checkpoint (shipped safetensors format)",
                                    "official LlamaGen files are used through --model parti:VARIANT "
                                    f"({', '.join(LLAMAGEN_VARIANTS)})")
            return cls.from_shipped_file(path, CheckpointInfo(f"file:{path.name}", sha256_file(path),
                                                              str(path.resolve()), "user file"), device)
        if variant is None:
            variant = f"{task.name}-tiny"
            if variant not in SHIPPED_PARTI:
                raise CgmbenchError(f"task {task.name!r} names no default parti checkpoint",
                                    f"choose one: --model parti:{{{','.join(cls.variants())}}}")
        if variant in SHIPPED_PARTI:
            path, digest = shipped(SHIPPED_PARTI[variant])
            return cls.from_shipped_file(path, CheckpointInfo(f"parti:{variant}", digest, str(path), "shipped"),
                                         device)
        if variant in LLAMAGEN_VARIANTS:
            return cls.from_llamagen(variant, device)
        raise CgmbenchError(f"unknown parti checkpoint {variant!r}", f"known: {', '.join(cls.variants())}")

    @classmethod
    def from_shipped_file(cls, path: Path, info: CheckpointInfo, device: str = "cpu") -> "PartiGenerator":
        tensors, config = read_shipped(path)
        if config.get("model") != "parti":
            raise CgmbenchError(f"{path} is a {config.get('model')!r} checkpoint, not a parti one")
        try:
            vq, gpt, text = build_parti_networks(config)
        except (TypeError, ValueError) as e:
            raise CgmbenchError(f"{path}: its configuration does not build a Parti model ({e})") from None
        parts: dict[str, dict] = {"vq": {}, "gpt": {}, "text": {}}
        for k, v in tensors.items():
            prefix, _, rest = k.partition(".")
            if prefix not in parts:
                raise CgmbenchError(f"{path}: unexpected tensor {k!r}", "keys start with vq., gpt. or text.")
            parts[prefix][rest] = v
        ckpt.load_state_dict_strict(vq, parts["vq"], f"{path} (vq.)")
        ckpt.load_state_dict_strict(gpt, parts["gpt"], f"{path} (gpt.)")
        if text is not None:
            ckpt.load_state_dict_strict(text, parts["text"], f"{path} (text.)")
        info = CheckpointInfo(info.name, info.sha256, info.path, info.source,
                              extra={"kind": gpt.model_type, "tokens": gpt.block_size,
                                     "codebook_size": vq.config.codebook_size,
                                     "text_encoder": "ShapesWordEncoder" if text is not None else None})
        return cls(vq, gpt, text, resolution=int(config["resolution"]), defaults=config.get("defaults", {}),
                   checkpoint=info, device=device, sources=(f"{path} (vq.)", f"{path} (gpt.)"))

    @classmethod
    def from_llamagen(cls, variant: str, device: str = "cpu") -> "PartiGenerator":
        """An official LlamaGen pair from ``$CGMBENCH_HOME/weights``; one error names every missing file."""
        from cgmbench.weights import known_file, resolve

        spec = LLAMAGEN_VARIANTS[variant]
        found, missing = {}, []
        for part in ("vq", "gpt"):
            try:
                found[part] = resolve(spec[part])
            except CgmbenchError as e:
                if "not found" not in e.message:
                    raise
                kf = known_file(spec[part])
                missing.append(f"{kf.name} ({kf.url} -> {e.message.split(' not found at ')[-1]})")
        if missing:
            raise CgmbenchError(f"parti:{variant} needs {len(missing)} LlamaGen file(s) not on this machine: "
                                + "; ".join(missing),
                                "fetch them with " + " and ".join(f"`cgmbench weights fetch {spec[p]}`"
                                                                  for p in ("vq", "gpt"))
                                + (f" (the t2i model also needs `hf download {spec['text']}`)"
                                   if spec["kind"] == "t2i" else ""))
        (vq_path, vq_sha), (gpt_path, gpt_sha) = found["vq"], found["gpt"]
        vq = ckpt.load_vq(vq_path)
        gpt = ckpt.load_gpt(gpt_path, block_size=spec["block_size"], n_head=spec["n_head"],
                            cls_token_num=spec.get("cls_token_num"))
        text = T5CaptionEncoder.from_hub(spec["text"], device=device) if spec["kind"] == "t2i" else None
        if gpt.model_type != spec["kind"]:
            raise CgmbenchError(f"{gpt_path} is a {gpt.model_type} GPT, but parti:{variant} is {spec['kind']}")
        info = CheckpointInfo(f"parti:{variant}", gpt_sha, str(gpt_path), known_file(spec["gpt"]).url,
                              extra={"kind": spec["kind"], "tokenizer": {"name": spec["vq"], "sha256": vq_sha,
                                                                         "path": str(vq_path)},
                                     "text_encoder": spec.get("text")})
        return cls(vq, gpt, text, resolution=spec["resolution"], defaults=spec["defaults"], checkpoint=info,
                   device=device, sources=(str(vq_path), str(gpt_path)))

    # -- sampling -----------------------------------------------------------------------

    def _conditions(self, conditions, n: int) -> tuple[torch.Tensor, torch.Tensor | None, int, int]:
        """``(cond, emb_mask, prompts, truncated)`` for the whole batch."""
        if self.kind == "c2i":
            if conditions.labels is None:
                raise CgmbenchError("this Parti model is class-conditional; the conditions carry no labels")
            labels = torch.as_tensor(conditions.labels).long().reshape(-1)
            if len(labels) != n:
                raise CgmbenchError(f"{len(labels)} labels but {n} seeds were given")
            bad = labels[(labels < 0) | (labels >= self.gpt.num_classes)]
            if len(bad):
                raise CgmbenchError(f"class label {int(bad[0])} is out of range for this Parti model",
                                    f"labels must lie in [0, {self.gpt.num_classes - 1}]")
            return labels.to(self.device), None, 0, 0
        texts = check_prompts(conditions.texts, "parti")
        if len(texts) != n:
            raise CgmbenchError(f"got {n} seeds for {len(texts)} prompts")
        feats, second, info = self.text_encoder.encode(texts)
        mask = second if isinstance(self.text_encoder, T5CaptionEncoder) else None
        want = self.gpt.cls_token_num
        if feats.shape[1] != want:
            raise CgmbenchError(f"the text encoder gives {feats.shape[1]} tokens; the GPT reads {want}")
        return feats.to(self.device, torch.float32), mask, len(texts), int(info.get("truncated", 0))

    @torch.no_grad()
    def sample_tokens(self, cond: torch.Tensor, emb_mask: torch.Tensor | None, seeds: Sequence[int],
                      knobs: dict) -> torch.Tensor:
        """Image tokens (B, block_size), sample ``i`` from ``seeds[i]`` alone."""
        w = float(knobs["guidance_scale"])
        if self.kind == "c2i" and w != 1.0 and self.gpt.cls_embedding.embedding_table.num_embeddings <= self.gpt.num_classes:
            raise CgmbenchError("this c2i GPT was trained without label dropout and has no null class",
                                "only guidance_scale=1 is possible")
        out = []
        for i in range(0, len(seeds), self.micro_batch):
            sl = slice(i, i + self.micro_batch)
            out.append(generate(
                self.gpt, cond[sl], self.gpt.block_size, emb_mask=None if emb_mask is None else emb_mask[sl],
                guidance_scale=w, cfg_interval=int(knobs["cfg_interval"]), temperature=float(knobs["temperature"]),
                top_k=int(knobs["top_k"]), top_p=float(knobs["top_p"]),
                generators=[torch_generator(s) for s in seeds[sl]]))
        self.gpt.remove_caches()
        return torch.cat(out)

    @torch.no_grad()
    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """uint8 images (B, 3, H, W) of image tokens (B, block_size)."""
        c = self.vq.config.codebook_embed_dim
        images = [self.vq.decode_code(tokens[i:i + self.micro_batch], (len(tokens[i:i + self.micro_batch]), c,
                                                                     self.grid, self.grid))
                  for i in range(0, len(tokens), self.micro_batch)]
        return to_uint8_llamagen(torch.cat(images)).cpu()

    @torch.no_grad()
    def generate(self, conditions, seeds, **knobs) -> torch.Tensor:
        k = self.resolve_knobs(knobs)
        seeds = list(seeds)
        cond, emb_mask, prompts, truncated = self._conditions(conditions, len(seeds))
        self.run_info["prompts"] += prompts
        self.run_info["truncated"] += truncated
        return self.decode_tokens(self.sample_tokens(cond, emb_mask, seeds, k))

    def describe(self) -> dict:
        d = super().describe()
        d.update(kind=self.kind, tokens=self.gpt.block_size, codebook_size=self.vq.config.codebook_size)
        return d

    # -- training -----------------------------------------------------------------------

    @classmethod
    def train(cls, task, config: str = "tiny", out=None, resume: bool = False, steps: int | None = None,
              seed: int = 0, device: str = "cpu", log=print) -> Path:
        """``cgmbench train --model parti --task shapes-t2i|shapes-cc`` (:func:`baselines.parti.train.train`)."""
        from baselines.parti.train import train

        return train(task, config=config, out=out, resume=resume, steps=steps, seed=seed, device=device, log=log)
