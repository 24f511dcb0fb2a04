"""The AttnGAN vocabulary: the released ``captions.pickle`` and the tokenizer of ``code/datasets.py``.

``captions.pickle`` (birds/coco metadata, also committed as ``eval/data/captions.pickle``) is a
protocol-2 pickle of ``[train_captions, test_captions, ixtoword, wordtoix]``: captions are lists
of word indices, ``ixtoword``/``wordtoix`` map index ↔ word, index 0 is ``'<end>'`` (padding).
The vocabulary size the DAMSM text encoder was trained with is ``len(ixtoword)``.

The file is read with :class:`RestrictedUnpickler`, whose ``find_class`` refuses every global:
only lists, dicts, tuples, strings and numbers can be built, so a pickle that would call a
function (``os.system`` via ``__reduce__``, a class, …) is refused before anything runs.

Tokenisation as the official code does it (``load_captions`` and ``gen_example``): replace
``"\\ufffd\\ufffd"`` by a space, lower-case, split with ``RegexpTokenizer(r'\\w+')`` (=
``re.findall(r'\\w+')``), drop non-ASCII characters from each token, drop empty tokens; words
not in the vocabulary are dropped. ``pad_caption`` is ``get_caption``: pad with 0 to
``words_num``; a longer caption keeps a random ordered subset of ``words_num`` words (seeded
here; the official code uses the global numpy generator).
"""

from __future__ import annotations

import io
import os
import pickle
import re
from dataclasses import dataclass

import numpy as np

from cgmbench.errors import CgmbenchError

__all__ = ["RestrictedUnpickler", "Vocabulary", "load_captions_pickle", "tokenize", "pad_caption"]

END_TOKEN = "<end>"
_WORD = re.compile(r"\w+")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain containers and scalars: every global is refused."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: only plain lists, dicts, "
                                     "tuples, strings and numbers are accepted")


def _restricted_load(data: bytes, source: str):
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as err:  # noqa: BLE001 - one user-facing error for any bad pickle
        raise CgmbenchError(f"cannot read {source}: {err}",
                            "it must be a pickle of plain lists, dicts, strings and numbers") from None


def tokenize(text: str) -> list[str]:
    """The official caption tokenizer: lower-cased ``\\w+`` runs, ASCII only, empties dropped."""
    text = text.replace("\ufffd\ufffd", " ").lower()
    tokens = (t.encode("ascii", "ignore").decode("ascii") for t in _WORD.findall(text))
    return [t for t in tokens if t]


@dataclass(frozen=True)
class Vocabulary:
    """``captions.pickle``: index captions of both splits and the word ↔ index maps."""

    train_captions: list
    test_captions: list
    ixtoword: dict
    wordtoix: dict

    @property
    def n_words(self) -> int:
        """The vocabulary size the text encoder embeds (``len(ixtoword)``, as the official code)."""
        return len(self.ixtoword)

    def encode(self, text: str) -> list[int]:
        """Token indices of ``text``; words outside the vocabulary are dropped (``gen_example``)."""
        return [self.wordtoix[t] for t in tokenize(text) if t in self.wordtoix]

    def decode(self, indices) -> str:
        """Words of the non-padding indices, joined by spaces."""
        return " ".join(self.ixtoword[int(i)] for i in indices if int(i) != 0)


def _as_text(x):
    return x.decode("latin1") if isinstance(x, bytes) else x


def load_captions_pickle(path: str | os.PathLike) -> Vocabulary:
    """Read the release's ``captions.pickle`` safely and check its structure."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CgmbenchError(f"vocabulary file {path} does not exist", "it is captions.pickle of the AttnGAN metadata")
    with open(path, "rb") as f:
        obj = _restricted_load(f.read(), path)
    if not isinstance(obj, (list, tuple)) or len(obj) < 4:
        raise CgmbenchError(f"{path} holds a {type(obj).__name__}, not [train_captions, test_captions, ixtoword, wordtoix]")
    train, test, ixtoword, wordtoix = obj[:4]
    if not (isinstance(train, list) and isinstance(test, list) and isinstance(ixtoword, dict) and isinstance(wordtoix, dict)):
        raise CgmbenchError(f"{path} does not have the layout [list, list, dict, dict] of captions.pickle")
    ixtoword = {int(k): _as_text(v) for k, v in ixtoword.items()}
    wordtoix = {_as_text(k): int(v) for k, v in wordtoix.items()}
    if ixtoword.get(0) != END_TOKEN or wordtoix.get(END_TOKEN) != 0:
        raise CgmbenchError(f"{path}: index 0 is not '{END_TOKEN}'", "this is not an AttnGAN captions.pickle")
    if len(wordtoix) != len(ixtoword) or any(ixtoword.get(i) != w for w, i in wordtoix.items()):
        raise CgmbenchError(f"{path}: ixtoword and wordtoix are not inverse maps")
    return Vocabulary(train, test, ixtoword, wordtoix)


def pad_caption(indices, words_num: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
    """``get_caption``: ``(x (words_num,) int64 zero-padded, length)``.

    A caption longer than ``words_num`` keeps ``words_num`` of its words, chosen at random and
    kept in order (needs ``rng``: the official code draws from the unseeded global generator).
    """
    caption = np.asarray(indices, dtype=np.int64)
    x = np.zeros(words_num, dtype=np.int64)
    if len(caption) <= words_num:
        x[: len(caption)] = caption
        return x, len(caption)
    if rng is None:
        raise ValueError(f"a caption of {len(caption)} words is longer than words_num={words_num}: pass rng")
    keep = np.sort(rng.permutation(len(caption))[:words_num])
    x[:] = caption[keep]
    return x, words_num
