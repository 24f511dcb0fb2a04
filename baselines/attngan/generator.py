"""``AttnGANGenerator``: AttnGAN text-to-image sampling as a cgmbench model (entry point ``attngan``).

A caption is tokenized as the official code does (:func:`baselines.attngan.vocab.tokenize`), its words mapped to
the vocabulary (unknown words dropped, as ``gen_example``), padded with 0 (``<end>``) to ``words_num``; a longer
caption keeps an ordered random subset of ``words_num`` words drawn from the sample's own seed (``get_caption``).
The DAMSM ``RNN_ENCODER`` gives the word and sentence embeddings; ``G_NET`` the images, the last branch's being the
sample. Sample ``i`` draws, from ``torch_generator(seeds[i])`` alone: ``z`` ``(z_dim,)`` (truncated to ``[-t, t]``
when ``truncation = t > 0``) then the CA noise (zero with ``ca_noise=off``). No guidance. Samples run one at a time
in eval mode, so a sample never depends on its batch (and the official batch-mask quirk of
``GlobalAttentionGeneral`` cannot act).

Variants
--------
``shapes-t2i-tiny`` (shipped, ``cgmbench/shipped/attngan-shapes-t2i-tiny.safetensors``): ``G_NET`` with two
branches (64 and 128 px; scored after the task's clean resize to 32x32) and a small bidirectional-LSTM
``RNN_ENCODER`` over the shapes vocabulary (index 0 = ``<end>``), trained by
``cgmbench train --model attngan --task shapes-t2i``.

``bird`` / ``coco`` (official): ``bird_AttnGAN2.pth`` + ``text_encoder200.pth`` + the birds ``captions.pickle``
(words 18), ``coco_AttnGAN2.pth`` + ``text_encoder100.pth`` + the coco ``captions.pickle`` (words 20), all
strictly loaded (``cgmbench weights list`` names them).
"""

from __future__ import annotations

from pathlib import Path

import torch

import baselines.attngan.damsm_extractor  # noqa: F401  (registers the damsm-bird / damsm-coco extractors)
from baselines.attngan.checkpoints import load_g_net, load_text_encoder
from baselines.attngan.models import G_NET, RNN_ENCODER
from baselines.attngan.text import encode_captions, shapes_attngan_vocabulary
from baselines.attngan.vocab import load_captions_pickle
from baselines.common.gan_training import GAN_KNOBS, truncated_noise
from baselines.common.shipped import _is_cgmbench_file, read_shipped
from baselines.common.text_encoders import check_prompts
from cgmbench.errors import CgmbenchError
from cgmbench.generator import CheckpointInfo, Generator, to_uint8
from cgmbench.seeding import torch_generator
from cgmbench.weights import known_file, local_path, resolve, sha256_file, shipped

__all__ = ["AttnGANGenerator", "shapes_attngan_vocabulary", "encode_captions", "SHIPPED_ATTNGAN", "OFFICIAL_ATTNGAN"]

SHIPPED_ATTNGAN = {"shapes-t2i-tiny": "attngan-shapes-t2i-tiny.safetensors"}
#: variant -> (generator, DAMSM text encoder, captions.pickle, words_num), weights-registry names
OFFICIAL_ATTNGAN = {
    "bird": ("attngan:bird", "attngan:damsm-bird-text", "attngan:bird-captions", 18),
    "coco": ("attngan:coco", "attngan:damsm-coco-text", "attngan:coco-captions", 20),
}


class AttnGANGenerator(Generator):
    """AttnGAN sampling (DAMSM text encoder + attentional G_NET); see the module docstring."""

    condition_kinds = frozenset({"text"})
    knobs = GAN_KNOBS
    description = "AttnGAN (Xu et al. 2018): word-attention multi-stage GAN with a DAMSM text encoder; no guidance"

    def __init__(self, net: G_NET, text_encoder: RNN_ENCODER, wordtoix: dict[str, int], *, words_num: int,
                 checkpoint: CheckpointInfo | None = None, device: str = "cpu"):
        side = 64 * 2 ** (net.branch_num - 1)
        super().__init__((side, side), checkpoint=checkpoint, device=device)
        self.net = net.to(device).eval()
        self.text_encoder = text_encoder.to(device).eval()
        if text_encoder.ntoken != len(wordtoix):
            raise CgmbenchError(f"vocabulary mismatch: the text encoder embeds {text_encoder.ntoken} tokens, the "
                                f"vocabulary has {len(wordtoix)} words",
                                "use the captions.pickle released with this text encoder (birds 5450, coco 27297)")
        if text_encoder.nhidden * text_encoder.num_directions != net.ca_net.t_dim:
            raise CgmbenchError(f"the text encoder gives {text_encoder.nhidden * text_encoder.num_directions}-d "
                                f"sentences, the generator expects {net.ca_net.t_dim}")
        self.wordtoix = wordtoix
        self.words_num = int(words_num)
        self.run_info = {"prompts": 0, "truncated": 0}

    @classmethod
    def variants(cls) -> dict[str, str]:
        return {"shapes-t2i-tiny": "shipped: two-branch AttnGAN (64/128 px) + LSTM over the shapes vocabulary",
                "bird": "official bird_AttnGAN2.pth + DAMSM text_encoder200.pth + birds captions.pickle (256x256)",
                "coco": "official coco_AttnGAN2.pth + DAMSM text_encoder100.pth + coco captions.pickle (256x256)"}

    @classmethod
    def required_files(cls, task, variant=None, checkpoint=None) -> list:
        """The official generator, DAMSM text encoder and captions vocabulary of ``variant`` (a given generator
        file still needs the other two; shipped variants need nothing)."""
        from cgmbench.requirements import weights_file

        if variant is None or variant in SHIPPED_ATTNGAN:
            return []
        if variant not in OFFICIAL_ATTNGAN:
            raise CgmbenchError(f"unknown attngan checkpoint {variant!r}", f"known: {', '.join(cls.variants())}")
        g, te, caps, _ = OFFICIAL_ATTNGAN[variant]
        names = ((te, "DAMSM text encoder"), (caps, "captions vocabulary"))
        if checkpoint is None:
            names = ((g, "generator"),) + names
        return [weights_file(n, f"model attngan:{variant} {what}") for n, what in names]

    @classmethod
    def load(cls, task, variant=None, checkpoint=None, device="cpu") -> "AttnGANGenerator":
        if checkpoint is not None:
            path = Path(checkpoint)
            if not path.is_file():
                raise CgmbenchError(f"checkpoint {path} does not exist")
            info = CheckpointInfo(path.stem, sha256_file(path), str(path), "file")
            if path.suffix == ".safetensors" and _is_cgmbench_file(path):
                return cls.from_shipped_file(path, info, device)
            if variant not in OFFICIAL_ATTNGAN:
                raise CgmbenchError("an official AttnGAN generator file needs its DAMSM text encoder and vocabulary",
                                    "name the variant too: --model attngan:bird or attngan:coco with --checkpoint")
            _, te, caps, words = OFFICIAL_ATTNGAN[variant]
            return cls.from_official(path, resolve(te)[0], resolve(caps)[0], words_num=words, info=info, device=device)
        if variant is None:
            raise CgmbenchError(f"task {task.name!r} names no default attngan checkpoint",
                                f"choose one: --model attngan:{{{','.join(cls.variants())}}}")
        if variant in SHIPPED_ATTNGAN:
            path, digest = shipped(SHIPPED_ATTNGAN[variant])
            return cls.from_shipped_file(path, CheckpointInfo(f"attngan:{variant}", digest, str(path), "shipped"),
                                         device)
        if variant in OFFICIAL_ATTNGAN:
            g, te, caps, words = OFFICIAL_ATTNGAN[variant]
            missing = [known_file(n) for n in (g, te, caps) if not local_path(n).is_file()]
            if missing:
                raise CgmbenchError(
                    f"attngan:{variant} needs {len(missing)} official file(s) missing from {local_path(g).parent}: "
                    + ", ".join(kf.filename for kf in missing),
                    " | ".join(f"{kf.name}: {kf.obtain}" for kf in missing))
            g_path, g_digest = resolve(g)
            info = CheckpointInfo(g, g_digest, str(g_path), "official")
            return cls.from_official(g_path, resolve(te)[0], resolve(caps)[0], words_num=words, info=info,
                                     device=device)
        raise CgmbenchError(f"unknown attngan checkpoint {variant!r}", f"known: {', '.join(cls.variants())}")

    @classmethod
    def from_shipped_file(cls, path, info: CheckpointInfo, device: str = "cpu") -> "AttnGANGenerator":
        tensors, config = read_shipped(Path(path))
        if config.get("model") != "attngan":
            raise CgmbenchError(f"{path} is a {config.get('model')!r} checkpoint, not an attngan one",
                                f"load it with --model {config.get('model')}")
        wordtoix = shapes_attngan_vocabulary()
        if list(config["vocabulary"]) != list(wordtoix):
            raise CgmbenchError(f"vocabulary mismatch: {path} was trained on a {len(config['vocabulary'])}-word "
                                f"vocabulary, this cgmbench's shapes vocabulary has {len(wordtoix)} words",
                                "retrain the checkpoint with this version (`cgmbench train`)")
        net = G_NET(**config["g"], mask_alignment="per_sample")
        text = RNN_ENCODER(**config["text_encoder"])
        for prefix, module in (("netG.", net), ("text_encoder.", text)):
            sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                module.load_state_dict(sd, strict=True)
            except RuntimeError as e:
                raise CgmbenchError(f"{path}: the {prefix[:-1]} tensors do not match the recorded configuration: "
                                    f"{str(e).splitlines()[0]}") from None
        info = CheckpointInfo(info.name, info.sha256, info.path, info.source,
                              extra={"branch_num": net.branch_num, "text_encoder": "RNN_ENCODER (shapes vocabulary)"})
        return cls(net, text, wordtoix, words_num=config["words_num"], checkpoint=info, device=device)

    @classmethod
    def from_official(cls, g_path, text_encoder_path, captions_path, *, words_num: int,
                      info: CheckpointInfo | None = None, device: str = "cpu") -> "AttnGANGenerator":
        """The released files, each loaded strictly; the vocabulary size must match the text encoder's."""
        vocab = load_captions_pickle(captions_path)
        text = load_text_encoder(text_encoder_path, vocab_size=vocab.n_words, n_steps=words_num)
        net = load_g_net(g_path)
        return cls(net, text, vocab.wordtoix, words_num=words_num, checkpoint=info, device=device)

    # -- sampling -----------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, texts, seeds=None):
        caps, lens, cut = encode_captions(texts, self.wordtoix, self.words_num, seeds)
        words, sent = self.text_encoder(caps.to(self.device), lens)
        mask = caps[:, : words.shape[2]].to(self.device) == 0
        return words, sent, mask, cut

    @torch.no_grad()
    def generate(self, conditions, seeds, **knobs) -> torch.Tensor:
        texts = check_prompts(conditions.texts, "attngan")
        if len(seeds) != len(texts):
            raise CgmbenchError(f"got {len(seeds)} seeds for {len(texts)} prompts")
        k = self.resolve_knobs(knobs)
        out = []
        for text, seed in zip(texts, seeds):
            words, sent, mask, cut = self.encode([text], [seed])
            self.run_info["prompts"] += 1
            self.run_info["truncated"] += cut
            g = torch_generator(seed)
            z = truncated_noise((1, self.net.h_net1.in_dim - self.net.ca_net.c_dim), g, k["truncation"])
            eps = torch.randn((1, self.net.ca_net.c_dim), generator=g)
            if k["ca_noise"] == "off":
                eps = torch.zeros_like(eps)
            with self.autocast():
                imgs = self.net(z.to(self.device), sent, words, mask, ca_eps=eps.to(self.device))[0]
            out.append(imgs[-1].float())
        return to_uint8(torch.cat(out)).cpu()

    # -- training -----------------------------------------------------------------------

    @classmethod
    def train(cls, task, config: str = "tiny", out=None, resume: bool = False, steps: int | None = None,
              seed: int = 0, device: str = "cpu", log=print) -> Path:
        """DAMSM pre-training, then the two-branch AttnGAN (see :func:`baselines.attngan.train.train_attngan`)."""
        from baselines.attngan.train import train_attngan

        return train_attngan(task, config=config, out=out, resume=resume, steps=steps, seed=seed, log=log)
