"""Known weight files: where they come from, what they hash to, where they live.

Every official file cgmbench can use (model checkpoints, extractor weights) is a
:class:`KnownFile` in one registry, stored as ``$CGMBENCH_HOME/weights/<filename>``.

* :func:`resolve` returns the local path after checking the SHA-256; a missing file is a
  :class:`CgmbenchError` that names the URL (or hub id), the expected SHA-256 and the exact path,
  and the command that fetches it (``cgmbench weights fetch NAME``).
* :func:`fetch` downloads with a progress bar into a temporary file, verifies, then renames.
* Where the publisher gives no checksum, ``sha256`` is ``None`` and only ``sha256_prefix`` (the
  hash prefix in the file name, torch.hub style) is checked; the full SHA-256 is recorded at first
  fetch in ``$CGMBENCH_HOME/weights/sha256.json`` and verified from then on.

Shipped tiny checkpoints (trained by cgmbench) live in the package, with their SHA-256 in
``cgmbench/shipped/SHA256SUMS``; they need no registry entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cgmbench.atomic import atomic_write_json
from cgmbench.errors import CgmbenchError, IntegrityError
from cgmbench.paths import weights_dir


@dataclass(frozen=True)
class KnownFile:
    name: str
    filename: str
    url: str | None = None
    sha256: str | None = None
    sha256_prefix: str | None = None
    size: int | None = None
    license: str = "unknown"
    hub_id: str | None = None
    obtain: str | None = None  # for gated or manual downloads: how to get the file
    description: str = ""

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


_REGISTRY: dict[str, KnownFile] = {}


def register_file(kf: KnownFile) -> KnownFile:
    _REGISTRY[kf.name] = kf
    return kf


def known_files() -> dict[str, KnownFile]:
    _load_builtin()
    return dict(_REGISTRY)


def known_file(name: str) -> KnownFile:
    files = known_files()
    if name not in files:
        raise CgmbenchError(f"unknown weights {name!r}", f"known: {', '.join(sorted(files))}")
    return files[name]


def local_path(name: str) -> Path:
    return weights_dir() / known_file(name).filename


_hash_cache: dict[tuple, str] = {}


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks (cached by path, size and mtime)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _hash_cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _hash_cache[key] = h.hexdigest()
    return _hash_cache[key]


def _recorded() -> dict:
    path = weights_dir() / "sha256.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def expected_sha256(kf: KnownFile) -> str | None:
    return kf.sha256 or _recorded().get(kf.filename)


def _where(kf: KnownFile) -> str:
    if kf.url:
        return kf.url
    if kf.hub_id:
        return f"the Hugging Face hub ({kf.hub_id})"
    return kf.obtain or "its publisher"


def _missing_error(kf: KnownFile, path: Path) -> CgmbenchError:
    digest = expected_sha256(kf) or (f"{kf.sha256_prefix}…" if kf.sha256_prefix else "not published")
    how = f"run `cgmbench weights fetch {kf.name}`" if kf.url else (kf.obtain or "download it")
    return CgmbenchError(
        f"weights {kf.name!r} not found at {path}",
        f"{how}, or download {_where(kf)} (sha256 {digest}) and place it at exactly that path; "
        "CGMBENCH_HOME moves the folder")


def verify(kf: KnownFile, path: Path) -> str:
    digest = sha256_file(path)
    want = expected_sha256(kf)
    if want and digest != want:
        raise IntegrityError(f"weights file {path} has sha256 {digest}, expected {want} for {kf.name!r}",
                            f"delete it and fetch it again from {_where(kf)}")
    if not want and kf.sha256_prefix and not digest.startswith(kf.sha256_prefix):
        raise IntegrityError(f"weights file {path} has sha256 {digest}, which does not start with "
                            f"{kf.sha256_prefix} as {kf.name!r} requires", f"fetch it again from {_where(kf)}")
    return digest


def resolve(name: str) -> tuple[Path, str]:
    """``(path, sha256)`` of a known file, verified; a clear error when it is missing or wrong."""
    kf = known_file(name)
    path = weights_dir() / kf.filename
    if not path.is_file():
        raise _missing_error(kf, path)
    return path, verify(kf, path)


def fetch(name: str, progress: bool = True) -> Path:
    """Download a known file into ``$CGMBENCH_HOME/weights`` (progress bar, checksum, atomic rename)."""
    import urllib.request

    from tqdm import tqdm

    kf = known_file(name)
    dest = weights_dir() / kf.filename
    if dest.is_file():
        verify(kf, dest)
        return dest
    if not kf.url:
        raise _missing_error(kf, dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{kf.filename}.", suffix=".part")
    try:
        try:
            with urllib.request.urlopen(kf.url, timeout=60) as resp, os.fdopen(fd, "wb") as f:
                total = int(resp.headers.get("Content-Length") or 0) or kf.size
                with tqdm(total=total, unit="B", unit_scale=True, desc=kf.filename, disable=not progress,
                          file=sys.stderr) as bar:
                    for chunk in iter(lambda: resp.read(1 << 20), b""):
                        f.write(chunk)
                        bar.update(len(chunk))
        except OSError as e:
            raise CgmbenchError(f"could not download {kf.url}: {e}",
                                f"download it by hand and place it at {dest}") from None
        verify(kf, Path(tmp))
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if not kf.sha256 and kf.filename not in _recorded():
        rec = _recorded()
        rec[kf.filename] = sha256_file(dest)
        atomic_write_json(weights_dir() / "sha256.json", rec)
    return dest


_builtin_loaded = False


def _load_builtin() -> None:
    """Import the modules that register known files (kept lazy: torch-free until needed)."""
    global _builtin_loaded
    if _builtin_loaded:
        return
    _builtin_loaded = True
    from importlib import import_module

    for module in BUILTIN_REGISTRANTS:
        import_module(module)
    # model families (ours and third-party ones alike) register their official files from the module their
    # ``cgmbench.weights`` entry point names; a broken plugin must not break the core's registry
    from importlib.metadata import entry_points

    for ep in entry_points(group=WEIGHTS_ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as e:  # noqa: BLE001 - reported, never fatal
            import warnings

            warnings.warn(f"weights entry point {ep.name!r} ({ep.value}) failed to import: {type(e).__name__}: {e}")


def shipped_dir() -> Path:
    """Folder of the tiny checkpoints and extractors trained by cgmbench and shipped in the package."""
    return Path(__file__).resolve().parent / "shipped"


def shipped(filename: str) -> tuple[Path, str]:
    """``(path, sha256)`` of a shipped safetensors file; a clear error if the installation lacks it."""
    path = shipped_dir() / filename
    if not path.is_file():
        raise CgmbenchError(f"shipped weights {filename} are missing from this installation ({path})",
                            "reinstall cgmbench, or retrain them with the command in docs/weights.md")
    return path, sha256_file(path)


#: core modules whose import registers KnownFiles (extractors, metrics)
BUILTIN_REGISTRANTS: list[str] = ["cgmbench.known_weights", "cgmbench.extractors.clip"]
#: entry-point group naming the modules that register a model family's official files
WEIGHTS_ENTRY_POINT_GROUP = "cgmbench.weights"
# issue 16 (video): the FVD feature networks' files
BUILTIN_REGISTRANTS.append("cgmbench.extractors.video_weights")
