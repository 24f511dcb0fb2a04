"""Where metric-network weights live, how they are verified and loaded. cgmbench never downloads.

Layout: ``$CGMBENCH_HOME/weights/<file name>`` (``cgmbench.paths``: ``CGMBENCH_HOME`` defaults to
``~/.cache/cgmbench``), the folder ``cgmbench weights fetch`` fills. A :class:`WeightsSpec` pins the official file name, URL, size and full
sha256; :func:`resolve_weights` finds the file (or the user's ``weights_path=``), hashes it and says
whether it is the official file. Numbers computed with other weights are *non-standard* and the
extractor records that (``is_official_weights=False``).

Files are read with ``torch.load(..., weights_only=True)`` (no pickled code is executed).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from cgmbench import paths


def cgmbench_home() -> Path:
    """``$CGMBENCH_HOME`` (default ``~/.cache/cgmbench``), user-expanded."""
    return paths.home()


def weights_dir() -> Path:
    """The folder where official metric weights are expected: ``$CGMBENCH_HOME/weights``."""
    return paths.weights_dir()


@dataclass(frozen=True)
class WeightsSpec:
    """An official weights file: where it comes from and what its bytes hash to."""

    filename: str
    url: str
    sha256: str
    num_bytes: int | None = None
    mirrors: tuple[str, ...] = field(default_factory=tuple)
    fetch_command: str | None = None  # the cgmbench command that downloads and verifies it

    def destination(self) -> Path:
        """Where cgmbench looks for the file: ``$CGMBENCH_HOME/weights/<filename>``."""
        return weights_dir() / self.filename

    def fetch_instructions(self) -> str:
        dest = self.destination()
        size = f", {self.num_bytes:,} bytes" if self.num_bytes else ""
        mirrors = "".join(f"; identical file at {m}" for m in self.mirrors)
        command = f"run `{self.fetch_command}`, or " if self.fetch_command else ""
        return (
            f"{command}download {self.url} to {dest} (expected sha256 {self.sha256}{size}{mirrors}), e.g. "
            f"`mkdir -p {dest.parent} && curl -L -o {dest} {self.url}`; or set CGMBENCH_HOME, or pass "
            "weights_path= (results are then marked non-standard unless the file's sha256 matches)"
        )


@dataclass(frozen=True)
class ResolvedWeights:
    """A weights file found on disk, with its sha256 and whether it is the official file."""

    path: Path
    sha256: str
    is_official: bool


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_weights(spec: WeightsSpec, weights_path: str | os.PathLike | None = None) -> ResolvedWeights:
    """Locate and hash the weights for ``spec``.

    * ``weights_path is None``: the file must be at ``spec.destination()``; a missing file raises
      ``FileNotFoundError`` naming the URL, the expected sha256 and that path; a file with another
      sha256 raises ``ValueError`` (a truncated download or a different checkpoint).
    * ``weights_path`` given: any readable file is accepted; ``is_official`` is true only when its
      sha256 equals ``spec.sha256``.
    """
    if weights_path is None:
        path = spec.destination()
        if not path.is_file():
            raise FileNotFoundError(
                f"official weights {spec.filename} not found at {path}; {spec.fetch_instructions()}"
            )
        digest = sha256_file(path)
        if digest != spec.sha256:
            raise ValueError(
                f"{path} has sha256 {digest}, expected {spec.sha256} for {spec.filename} (truncated download or a "
                f"different file); re-download it from {spec.url}, or pass weights_path= to use it as non-standard "
                "weights"
            )
        return ResolvedWeights(path=path, sha256=digest, is_official=True)
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights_path {path} does not exist or is not a file")
    digest = sha256_file(path)
    return ResolvedWeights(path=path, sha256=digest, is_official=digest == spec.sha256)


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """``torch.load(path, map_location="cpu", weights_only=True)``, checked to be a tensor mapping."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling refused or corrupt archive: say which file
        raise ValueError(f"cannot read {path} as a weights-only PyTorch state_dict: {error}") from error
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state_dict (a mapping from parameter names to tensors)")
    return dict(state)


def load_state_dict_strict(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str,
    optional_suffixes: tuple[str, ...] = ("num_batches_tracked",),
) -> None:
    """Load ``state_dict`` into ``module`` requiring the exact key set and shapes.

    Keys ending in ``optional_suffixes`` may be absent (BatchNorm's counter does not affect
    inference). On a mismatch the ``ValueError`` names the first few missing, unexpected and
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
        raise ValueError(
            f"{source} does not match {type(module).__name__} ({'; '.join(parts)}); it is not a checkpoint of this "
            "architecture"
        )
    module.load_state_dict(state_dict, strict=False)
