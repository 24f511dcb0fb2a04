"""The DAMSM encoders as a cgmbench feature extractor (``damsm-bird``, ``damsm-coco``): what R-precision on
``cub200-t2i`` / ``coco-t2i-gan`` ranks with (DM-GAN's procedure uses the generator's own DAMSM encoders).

Images: the ``CNN_ENCODER`` global code (``cnn_code``, 256-d) of the uint8 image mapped to ``[-1, 1]`` (the
encoder resizes to 299x299 itself, as officially); text: the ``RNN_ENCODER`` sentence embedding of the caption
tokenized and encoded as :func:`baselines.attngan.text.encode_captions` (words 18 birds / 20 coco; longer
captions keep their first words here, deterministically). Registered in cgmbench's extractor registry when the
AttnGAN family is imported (``baselines.attngan.generator``): runs with the ``attngan`` model find it.
"""

from __future__ import annotations

import torch

from baselines.attngan.checkpoints import load_image_encoder, load_text_encoder
from baselines.attngan.vocab import load_captions_pickle, pad_caption, tokenize
from cgmbench.extractors.base import FeatureExtractor
from cgmbench.extractors.registry import EXTRACTORS, register_extractor
from cgmbench.weights import resolve

__all__ = ["DAMSMExtractor"]

#: extractor -> (image encoder, text encoder, captions.pickle, words_num) weights-registry names
DAMSM_FILES = {
    "damsm-bird": ("attngan:damsm-bird-image", "attngan:damsm-bird-text", "attngan:bird-captions", 18),
    "damsm-coco": ("attngan:damsm-coco-image", "attngan:damsm-coco-text", "attngan:coco-captions", 20),
}


class DAMSMExtractor(FeatureExtractor):
    feature_dim = 256

    def __init__(self, name: str, weights_path=None, **_):
        super().__init__()
        image, text, caps, words = DAMSM_FILES[name]
        self.name = name
        image_path, digest = resolve(image) if weights_path is None else (weights_path, None)
        self.image_encoder = load_image_encoder(image_path)
        self.vocab = load_captions_pickle(resolve(caps)[0])
        self.text_encoder = load_text_encoder(resolve(text)[0], vocab_size=self.vocab.n_words, n_steps=words)
        self.words_num = words
        self.feature_dim = self.image_encoder.emb_cnn_code.out_features
        self.weights_sha256, self.is_official_weights = digest, weights_path is None

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(images.float() / 127.5 - 1.0)[1]

    @torch.no_grad()
    def encode_text(self, texts) -> torch.Tensor:
        rows, lens = [], []
        for t in texts:
            ids = [self.vocab.wordtoix[w] for w in tokenize(t) if w in self.vocab.wordtoix][: self.words_num] or [0]
            x, n = pad_caption(ids, self.words_num)
            rows.append(torch.from_numpy(x))
            lens.append(max(n, 1))
        out = []
        for s in range(0, len(rows), 256):
            _, sent = self.text_encoder(torch.stack(rows[s:s + 256]), torch.tensor(lens[s:s + 256]))
            out.append(sent.double())
        return torch.cat(out)


def _factory(name: str):
    def build(weights_path=None, **kw) -> DAMSMExtractor:
        return DAMSMExtractor(name, weights_path, **kw)

    def required_files() -> list:
        """The image encoder, the text encoder and the vocabulary (``captions.pickle``): what the preflight checks."""
        from cgmbench.requirements import weights_file

        image, text, caps, _ = DAMSM_FILES[name]
        return [weights_file(image, f"{name} image encoder (r_precision)"),
                weights_file(text, f"{name} text encoder (r_precision)"),
                weights_file(caps, f"{name} vocabulary (r_precision)")]

    build.required_files = required_files
    return build


for _name in DAMSM_FILES:
    if _name not in EXTRACTORS:
        register_extractor(_name, _factory(_name))
