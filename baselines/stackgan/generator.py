"""``StackGANGenerator``: StackGAN text-to-image sampling as a cgmbench model (entry point ``stackgan``).

Sample ``i`` draws, from ``torch_generator(seeds[i])`` alone and in this order: the noise ``z`` ``(z_dim,)``
(truncated to ``[-t, t]`` when the ``truncation`` knob is ``t > 0``, :func:`truncated_noise`), then the
conditioning-augmentation noise of Stage I and (Stage-II models) of Stage II. With ``ca_noise=off`` the CA
noise is zero, i.e. ``c_code = mu``. StackGAN has no guidance. The networks run in eval mode (BatchNorm with
its running statistics), one sample at a time, so a sample never depends on its batch.

Variants
--------
``shapes-t2i-tiny`` (shipped, ``cgmbench/shipped/stackgan-shapes-t2i-tiny.safetensors``): a Stage-I
``STAGE1_G`` (64x64, scored after the task's clean resize to 32x32) trained by
``cgmbench train --model stackgan --task shapes-t2i``. Its text input stands in for the fixed, pre-trained
char-CNN-RNN embedding of the release: :class:`ShapesOneHotText`, a fixed (parameter-free) positional one-hot
encoding of the caption's words over the shapes vocabulary (``context_length x vocabulary`` dims).

``coco`` (official, registry ``stackgan:coco-stage2``, ``netG_epoch_90.pth``): ``STAGE2_G(STAGE1_G)`` at
256x256, strictly loaded. Its text input is the 1024-d char-CNN-RNN embedding of each caption, which exists
only for the dataset's captions: the conditions must carry it as ``extras["text_embeddings"]`` ``(B, 1024)``
(from the release's ``char-CNN-RNN-embeddings.pickle``, :func:`load_char_cnn_rnn_embeddings`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from baselines.common.gan_training import GAN_KNOBS, truncated_noise, with_defaults
from baselines.common.shipped import _is_cgmbench_file, read_shipped
from baselines.common.text_encoders import check_prompts
from baselines.stackgan.checkpoints import load_stage2_generator
from baselines.stackgan.models import STAGE1_G, STAGE2_G
from baselines.stackgan.text import ShapesOneHotText, check_vocabulary, shapes_text_input
from cgmbench.errors import CgmbenchError
from cgmbench.generator import CheckpointInfo, Generator, to_uint8
from cgmbench.seeding import torch_generator
from cgmbench.weights import resolve, sha256_file, shipped

__all__ = ["StackGANGenerator", "ShapesOneHotText", "GAN_KNOBS", "SHIPPED_STACKGAN"]

SHIPPED_STACKGAN = {"shapes-t2i-tiny": "stackgan-shapes-t2i-tiny.safetensors"}
OFFICIAL_STACKGAN = {"coco": "stackgan:coco-stage2"}

class StackGANGenerator(Generator):
    """StackGAN Stage-I (shapes) or Stage-II (official COCO) sampling; see the module docstring."""

    condition_kinds = frozenset({"text"})
    knobs = GAN_KNOBS
    description = "StackGAN (Zhang et al. 2017): conditioning augmentation + stacked GAN generators; no guidance"

    def __init__(self, net: STAGE1_G | STAGE2_G, *, text: ShapesOneHotText | None, resolution: int,
                 checkpoint: CheckpointInfo | None = None, device: str = "cpu", defaults: dict | None = None):
        super().__init__((resolution, resolution), checkpoint=checkpoint, device=device)
        if defaults:  # a shipped file's own defaults (the point of its Pareto frontier), e.g. {"truncation": 1.0}
            self.knobs = with_defaults(GAN_KNOBS, defaults)
        self.net = net.to(device).eval()
        self.text = text
        self.stage = 2 if isinstance(net, STAGE2_G) else 1
        self.run_info = {"prompts": 0, "truncated": 0}

    @classmethod
    def variants(cls) -> dict[str, str]:
        return {"shapes-t2i-tiny": "shipped: Stage-I StackGAN (64x64) trained on shapes-t2i",
                "coco": "official netG_epoch_90.pth (Stage II, 256x256, COCO; needs char-CNN-RNN embeddings)"}

    @classmethod
    def required_files(cls, task, variant=None, checkpoint=None) -> list:
        """The official Stage-II generator of ``variant`` (shipped variants and given files: nothing)."""
        from cgmbench.requirements import weights_file

        if checkpoint is not None or variant is None or variant in SHIPPED_STACKGAN:
            return []
        if variant not in OFFICIAL_STACKGAN:
            raise CgmbenchError(f"unknown stackgan checkpoint {variant!r}", f"known: {', '.join(cls.variants())}")
        return [weights_file(OFFICIAL_STACKGAN[variant], f"model stackgan:{variant} generator")]

    @classmethod
    def load(cls, task, variant=None, checkpoint=None, device="cpu") -> "StackGANGenerator":
        if checkpoint is not None:
            path = Path(checkpoint)
            if not path.is_file():
                raise CgmbenchError(f"checkpoint {path} does not exist")
            info = CheckpointInfo(path.stem, sha256_file(path), str(path), "file")
            if path.suffix == ".safetensors" and _is_cgmbench_file(path):
                return cls.from_shipped_file(path, info, device)
            return cls.from_official(path, info, device)
        if variant is None:
            raise CgmbenchError(f"task {task.name!r} names no default stackgan checkpoint",
                                f"choose one: --model stackgan:{{{','.join(cls.variants())}}}")
        if variant in SHIPPED_STACKGAN:
            path, digest = shipped(SHIPPED_STACKGAN[variant])
            return cls.from_shipped_file(path, CheckpointInfo(f"stackgan:{variant}", digest, str(path), "shipped"),
                                         device)
        if variant in OFFICIAL_STACKGAN:
            path, digest = resolve(OFFICIAL_STACKGAN[variant])
            return cls.from_official(path, CheckpointInfo(OFFICIAL_STACKGAN[variant], digest, str(path), "official"),
                                     device)
        raise CgmbenchError(f"unknown stackgan checkpoint {variant!r}", f"known: {', '.join(cls.variants())}")

    @classmethod
    def from_shipped_file(cls, path, info: CheckpointInfo, device: str = "cpu") -> "StackGANGenerator":
        tensors, config = read_shipped(Path(path))
        if config.get("model") != "stackgan":
            raise CgmbenchError(f"{path} is a {config.get('model')!r} checkpoint, not a stackgan one",
                                f"load it with --model {config.get('model')}")
        check_vocabulary(config["vocabulary"], path)
        text = shapes_text_input(config.get("text_input", "onehot"), config["context_length"])
        trained_on = config.get("text_input_sha256")
        if trained_on and trained_on != getattr(text, "weights_sha256", None):
            raise CgmbenchError(f"{path} was trained on the {text.name} text encoder with sha256 {trained_on[:12]}..., "
                                f"this cgmbench has {str(text.weights_sha256)[:12]}...",
                                "retrain it with this version (`cgmbench train --model stackgan`)")
        net = STAGE1_G(**config["g"])
        sd = {k[len("netG."):]: v for k, v in tensors.items() if k.startswith("netG.")}
        try:
            net.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise CgmbenchError(f"{path}: the tensors do not match STAGE1_G{tuple(config['g'].values())}: "
                                f"{str(e).splitlines()[0]}") from None
        info = CheckpointInfo(info.name, info.sha256, info.path, info.source,
                              extra={"stage": 1, "text_encoder": ("shapes-clip text tower (fixed, sha256 "
                                                                  f"{text.weights_sha256})" if text.name == "shapes-clip"
                                                                  else "shapes one-hot (fixed)")})
        return cls(net, text=text, resolution=64, checkpoint=info, device=device, defaults=config.get("defaults"))

    @classmethod
    def from_official(cls, path, info: CheckpointInfo | None = None, device: str = "cpu") -> "StackGANGenerator":
        """The released Stage-II generator (``netG_epoch_90.pth`` layout), loaded strictly."""
        net = load_stage2_generator(path)
        return cls(net, text=None, resolution=256, checkpoint=info, device=device)

    # -- sampling -----------------------------------------------------------------------

    def embed(self, conditions) -> torch.Tensor:
        if self.text is None:
            emb = conditions.extras.get("text_embeddings")
            if emb is None:
                raise CgmbenchError("the official StackGAN generator needs the char-CNN-RNN embedding of each caption "
                                    "(conditions.extras['text_embeddings']), which this task's source does not give",
                                    "use a task whose source reads char-CNN-RNN-embeddings.pickle (cub200-t2i)")
            emb = torch.as_tensor(emb, dtype=torch.float32)
            if emb.ndim != 2 or emb.shape[1] != self.net.ca_net.t_dim:
                raise CgmbenchError(f"text embeddings of shape {tuple(emb.shape)}, expected (B, {self.net.ca_net.t_dim})")
            return emb
        texts = check_prompts(conditions.texts, "stackgan")
        emb, info = self.text(texts)
        self.run_info["prompts"] += len(texts)
        self.run_info["truncated"] += int(info["truncated"])
        return emb

    @torch.no_grad()
    def generate(self, conditions, seeds, **knobs) -> torch.Tensor:
        k = self.resolve_knobs(knobs)
        emb = self.embed(conditions).to(self.device)
        if len(seeds) != len(emb):
            raise CgmbenchError(f"got {len(seeds)} seeds for {len(emb)} conditions")
        stage1 = self.net.STAGE1_G if self.stage == 2 else self.net
        out = []
        for i, seed in enumerate(seeds):
            g = torch_generator(seed)
            z = truncated_noise((1, stage1.z_dim), g, k["truncation"]).to(self.device)
            eps = [torch.randn((1, stage1.ef_dim), generator=g).to(self.device) for _ in range(self.stage)]
            if k["ca_noise"] == "off":
                eps = [torch.zeros_like(e) for e in eps]
            with self.autocast():
                if self.stage == 1:
                    img = self.net(emb[i:i + 1], z, ca_eps=eps[0])[1]
                else:
                    img = self.net(emb[i:i + 1], z, ca_eps_stage1=eps[0], ca_eps_stage2=eps[1])[1]
            out.append(img.float())
        return to_uint8(torch.cat(out)).cpu()

    # -- training -----------------------------------------------------------------------

    @classmethod
    def train(cls, task, config: str = "tiny", out=None, resume: bool = False, steps: int | None = None,
              seed: int = 0, device: str = "cpu", log=print) -> Path:
        """Stage-I StackGAN on ``shapes-t2i`` (see :func:`baselines.stackgan.train.train_stackgan`)."""
        from baselines.stackgan.train import train_stackgan

        return train_stackgan(task, config=config, out=out, resume=resume, steps=steps, seed=seed, log=log)
