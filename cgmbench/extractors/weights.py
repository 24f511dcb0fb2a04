"""Where metric-network weights live, how they are verified and loaded. cgmbench never downloads here.

There is **one** registry of official files: :mod:`cgmbench.weights` (entries in
:mod:`cgmbench.known_weights`). A :class:`WeightsSpec` only names a :class:`~cgmbench.weights.KnownFile`
(``WeightsSpec("inception-v3")``) and reads its file name, URL, size and full sha256 from there;
:func:`resolve_weights` finds the official file through :func:`cgmbench.weights.resolve`
(``$CGMBENCH_HOME/weights/<file name>``, sha256-verified) or takes the user's ``weights_path=``,
hashes it and says whether it is the official file. Numbers computed with other weights are
*non-standard* and the extractor records that (``is_official_weights=False``).

Errors are :class:`~cgmbench.errors.CgmbenchError` (the command line prints one line):
:class:`WeightsError` also derives from ``ValueError`` (wrong checkpoint, pickled objects, hash
mismatch), a missing file raises the registry's error naming the URL, the expected sha256, the exact
path and ``cgmbench weights fetch NAME``.

Files are read with ``torch.load(..., weights_only=True)`` (no pickled code is executed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cgmbench import paths
from cgmbench import weights as registry
from cgmbench.errors import CgmbenchError
from cgmbench.extractors.errors import ExtractorError


class WeightsError(ExtractorError):
    """A weights file that cannot be used: wrong checkpoint, unsafe pickle, sha256 mismatch."""


def cgmbench_home() -> Path:
    """``$CGMBENCH_HOME`` (default ``~/.cache/cgmbench``), user-expanded."""
    return paths.home()


def weights_dir() -> Path:
    """The folder where official metric weights are expected: ``$CGMBENCH_HOME/weights``."""
    return paths.weights_dir()


@dataclass(frozen=True)
class WeightsSpec:
    """An official weights file, by its name in the :mod:`cgmbench.weights` registry."""

    known_name: str

    @property
    def known_file(self) -> registry.KnownFile:
        return registry.known_file(self.known_name)

    @property
    def filename(self) -> str:
        return self.known_file.filename

    @property
    def url(self) -> str | None:
        return self.known_file.url

    @property
    def sha256(self) -> str | None:
        return registry.expected_sha256(self.known_file)

    @property
    def num_bytes(self) -> int | None:
        return self.known_file.size

    @property
    def fetch_command(self) -> str:
        return f"cgmbench weights fetch {self.known_name}"

    def destination(self) -> Path:
        """Where cgmbench looks for the file: ``$CGMBENCH_HOME/weights/<filename>``."""
        return weights_dir() / self.filename


@dataclass(frozen=True)
class ResolvedWeights:
    """A weights file found on disk, with its sha256 and whether it is the official file."""

    path: Path
    sha256: str
    is_official: bool


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (cached by path, size and mtime)."""
    return registry.sha256_file(path)


def resolve_weights(spec: WeightsSpec, weights_path: str | os.PathLike | None = None) -> ResolvedWeights:
    """Locate and hash the weights for ``spec``.

    * ``weights_path is None``: :func:`cgmbench.weights.resolve` -- the file must be at
      ``spec.destination()`` with the registry's sha256; otherwise a :class:`CgmbenchError` names the
      URL, the expected sha256, that path and the fetch command.
    * ``weights_path`` given: any readable file is accepted; ``is_official`` is true only when its
      sha256 equals the registry's.
    """
    if weights_path is None:
        path, digest = registry.resolve(spec.known_name)
        return ResolvedWeights(path=path, sha256=digest, is_official=True)
    from cgmbench.safe_paths import check_file

    path = Path(weights_path).expanduser()
    if not path.exists():
        raise CgmbenchError(f"weights file {path} does not exist or is not a file",
                            "pass the path of an existing file to --extractor-weights / weights_path=")
    check_file(path, "checkpoint", "weights file")  # a regular file of bounded size, never a FIFO or device
    digest = sha256_file(path)
    return ResolvedWeights(path=path, sha256=digest, is_official=digest == spec.sha256)


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """``torch.load(path, map_location="cpu", weights_only=True)``, checked to be a tensor mapping."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling refused or corrupt archive: say which file
        raise WeightsError(f"cannot read {path} as a weights-only PyTorch state_dict: {error}") from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state_dict (a mapping from parameter names to tensors)")
    return dict(state)


def load_state_dict_strict(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str,
    optional_suffixes: tuple[str, ...] = ("num_batches_tracked",),
) -> None:
    """Load ``state_dict`` into ``module`` requiring the exact key set and shapes.

    Keys ending in ``optional_suffixes`` may be absent (BatchNorm's counter does not affect
    inference). On a mismatch the :class:`WeightsError` names the first few missing, unexpected and
    wrongly shaped keys, and ``source`` (the file).
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.endswith(optional_suffixes)]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    if missing or unexpected or wrong_shape:
        parts = []
        found = (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong_shape))
        for label, items in found:
            if items:
                shown = ", ".join(items[:5]) + (f", ... ({len(items)} in all)" if len(items) > 5 else "")
                parts.append(f"{label}: {shown}")
        raise WeightsError(
            f"{source} does not match {type(module).__name__} ({'; '.join(parts)}); it is not a checkpoint of this "
            "architecture"
        )
    module.load_state_dict(state_dict, strict=False)
