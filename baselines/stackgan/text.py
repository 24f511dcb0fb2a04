"""The shapes-world text input of the tiny StackGAN: a fixed positional one-hot word encoding (stand-in for the
fixed, pre-trained char-CNN-RNN embedding of the release), and the vocabulary check of shipped files."""

from __future__ import annotations

import torch

from baselines.common.text_encoders import ShapesTokenizer, shapes_vocabulary
from cgmbench.errors import CgmbenchError

__all__ = ["ShapesOneHotText", "check_vocabulary"]


class ShapesOneHotText:
    """Fixed text embedding of shapes captions: the one-hot of each word position, flattened
    (``(B, context_length * len(vocabulary))``); ``<start>``/``<end>``/``<pad>`` as :class:`ShapesTokenizer`."""

    def __init__(self, context_length: int = 16, vocabulary=None):
        self.tokenizer = ShapesTokenizer(context_length, vocabulary)
        self.vocabulary = self.tokenizer.vocabulary
        self.dim = context_length * len(self.vocabulary)

    def __call__(self, texts) -> tuple[torch.Tensor, dict]:
        ids, info = self.tokenizer(texts)
        onehot = torch.nn.functional.one_hot(ids, len(self.vocabulary)).float()
        return onehot.flatten(1), info


def check_vocabulary(saved, path) -> None:
    current = list(shapes_vocabulary())
    if list(saved) != current:
        raise CgmbenchError(f"vocabulary mismatch: {path} was trained on a {len(saved)}-word shapes vocabulary, "
                            f"this cgmbench has {len(current)} words",
                            "retrain the checkpoint with this version (`cgmbench train`)")
