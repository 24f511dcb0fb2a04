"""The shapes-world text inputs of the tiny StackGAN (stand-ins for the fixed, pre-trained char-CNN-RNN embedding of
the release) and the vocabulary check of shipped files.

* :class:`ShapesOneHotText` (``text_input = "onehot"``): a fixed positional one-hot word encoding. Measured: the
  generator never learns colour through it (its CA means of "a large red/blue/... square" differ by 0.13 while
  other caption changes move them by 2.7; colour accuracy at chance), because the discriminator is conditioned on the
  generator's own CA mean, which starts and stays nearly colour-blind.
* :class:`ShapesJointText` (``text_input = "shapes-clip"``): the text tower of the shipped ``shapes-clip``
  image-text model, a fixed embedding trained jointly with images as char-CNN-RNN was (Reed et al. 2016): 128-d,
  not normalised. The same network gives the shapes-t2i CLIP score; the judge, the ranking metric, is independent
  of it (the SD family's CLIP-conditioned models scored by CLIP score share this caveat).
"""

from __future__ import annotations

import torch

from baselines.common.text_encoders import ShapesTokenizer, shapes_vocabulary
from cgmbench.errors import CgmbenchError

__all__ = ["ShapesOneHotText", "ShapesJointText", "shapes_text_input", "check_vocabulary"]


class ShapesOneHotText:
    """Fixed text embedding of shapes captions: the one-hot of each word position, flattened
    (``(B, context_length * len(vocabulary))``); ``<start>``/``<end>``/``<pad>`` as :class:`ShapesTokenizer`."""

    name = "onehot"

    def __init__(self, context_length: int = 16, vocabulary=None):
        self.tokenizer = ShapesTokenizer(context_length, vocabulary)
        self.vocabulary = self.tokenizer.vocabulary
        self.dim = context_length * len(self.vocabulary)

    def __call__(self, texts) -> tuple[torch.Tensor, dict]:
        ids, info = self.tokenizer(texts)
        onehot = torch.nn.functional.one_hot(ids, len(self.vocabulary)).float()
        return onehot.flatten(1), info


class ShapesJointText:
    """Fixed 128-d text embedding of shapes captions from the shipped ``shapes-clip`` text tower (module docstring)."""

    name = "shapes-clip"

    def __init__(self, context_length: int = 16, vocabulary=None):
        from cgmbench.extractors.registry import get_extractor

        self.tokenizer = ShapesTokenizer(context_length, vocabulary)  # only to report truncation
        self.vocabulary = self.tokenizer.vocabulary
        self.extractor = get_extractor("shapes-clip")
        self.dim = int(self.extractor.feature_dim)
        self.weights_sha256 = self.extractor.weights_sha256

    def __call__(self, texts) -> tuple[torch.Tensor, dict]:
        _, info = self.tokenizer(texts)
        return self.extractor.encode_text(list(texts)).float(), info


def shapes_text_input(kind: str, context_length: int):
    """The text input a shipped file's ``text_input`` names (``onehot`` when absent: files before it)."""
    if kind == "onehot":
        return ShapesOneHotText(context_length)
    if kind == "shapes-clip":
        return ShapesJointText(context_length)
    raise CgmbenchError(f"unknown stackgan text input {kind!r}", "known: onehot, shapes-clip")


def check_vocabulary(saved, path) -> None:
    current = list(shapes_vocabulary())
    if list(saved) != current:
        raise CgmbenchError(f"vocabulary mismatch: {path} was trained on a {len(saved)}-word shapes vocabulary, "
                            f"this cgmbench has {len(current)} words",
                            "retrain the checkpoint with this version (`cgmbench train`)")
