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

import contextvars

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
    #: where the digest comes from: with ``sha256`` set, the URL of the publisher's own listing it was copied from
    #: (model-card file page, release page, download script; never a third-party mirror); without it, a sentence
    #: starting with ``"none published"`` that says where cgmbench looked and when (the digest is then recorded at
    #: first fetch). For a hub entry it names the hub file digested. Every registry entry states one (tested).
    digest_source: str | None = None
    #: an MD5 the publisher lists (e.g. CIFAR-10's tarball); verified in addition to the SHA-256
    md5: str | None = None
    #: the folder the file belongs in, when it is data rather than weights (``"${CGMBENCH_DATA}/imagenet256"``:
    #: the path a task or recipe reads); default ``$CGMBENCH_HOME/weights``
    folder: str | None = None
    #: the file's name inside ``hub_id`` when it is fetched from the Hugging Face hub (no plain ``url``)
    hub_filename: str | None = None

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


def destination(kf: KnownFile) -> Path:
    """Where ``kf`` lives: ``$CGMBENCH_HOME/weights/<filename>``, or ``<folder>/<filename>`` for data files."""
    if kf.folder:
        from cgmbench.paths import expand

        return expand(kf.folder) / kf.filename
    return weights_dir() / kf.filename


def local_path(name: str) -> Path:
    return destination(known_file(name))


_hash_cache: dict[tuple, str] = {}


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks (cached by path, size and mtime)."""
    from cgmbench.safe_paths import check_file, open_file

    path = check_file(path, "checkpoint", "weights file")  # a regular file: a FIFO or device never blocks
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _hash_cache:
        h = hashlib.sha256()
        with open_file(path, "checkpoint", "weights file") as f:
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


def digest_provenance(kf: KnownFile) -> str:
    """One line: which digest a file is checked against and where that digest comes from."""
    if kf.sha256:
        return f"sha256 {kf.sha256} pinned from {kf.digest_source or 'an unstated source'}"
    recorded = _recorded().get(kf.filename)
    note = kf.digest_source or "none published"
    if recorded:
        return f"sha256 {recorded} recorded at first fetch ({note})"
    return f"no sha256 yet ({note}); recorded at first fetch"


def _md5_file(path: Path) -> str:
    h = hashlib.md5()  # noqa: S324 - a publisher's listed checksum, not a security boundary on its own
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _where(kf: KnownFile) -> str:
    if kf.url:
        return kf.url
    if kf.hub_id:
        return f"the Hugging Face hub ({kf.hub_id})"
    return kf.obtain or "its publisher"


def _missing_error(kf: KnownFile, path: Path) -> CgmbenchError:
    digest = expected_sha256(kf) or (f"{kf.sha256_prefix}…" if kf.sha256_prefix else "not published")
    how = (f"run `cgmbench weights fetch {kf.name}`" if kf.url or (kf.hub_id and kf.hub_filename)
           else (kf.obtain or "download it"))
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
    if kf.md5 and _md5_file(Path(path)) != kf.md5:
        raise IntegrityError(f"file {path} does not have the md5 {kf.md5} its publisher lists for {kf.name!r}",
                             f"delete it and fetch it again from {_where(kf)}")
    return digest


#: while a model loads (:func:`cgmbench.models.registry.load_model`): the known files it resolved, so that a file
#: that fails to parse can be named with the command that fetches it again
_RESOLVED: "contextvars.ContextVar[list | None]" = contextvars.ContextVar("cgmbench_resolved", default=None)


def resolve(name: str) -> tuple[Path, str]:
    """``(path, sha256)`` of a known file, verified; a clear error when it is missing or wrong."""
    kf = known_file(name)
    path = destination(kf)
    seen = _RESOLVED.get()
    if seen is not None:
        seen.append((kf, path))
    if not path.is_file():
        raise _missing_error(kf, path)
    return path, verify(kf, path)


def fetch(name: str, progress: bool = True) -> Path:
    """Download a known file into ``$CGMBENCH_HOME/weights`` (progress bar, checksum, atomic rename)."""
    import urllib.request

    from tqdm import tqdm

    kf = known_file(name)
    dest = destination(kf)
    if dest.is_file():
        verify(kf, dest)
        return dest
    if not kf.url and kf.hub_id and kf.hub_filename:
        return _fetch_from_hub(kf, dest)
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


def _fetch_from_hub(kf: KnownFile, dest: Path) -> Path:
    """A hub file (gated ones need ``HF_TOKEN`` or ``hf auth login``) downloaded next to ``dest``,
    verified, then renamed to exactly the path cgmbench reads (not left in the hub cache)."""
    import shutil

    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise CgmbenchError(f"fetching {kf.name!r} needs the huggingface_hub package",
                            "pip install huggingface_hub") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{kf.filename}."))
    try:
        try:
            got = Path(hf_hub_download(kf.hub_id, kf.hub_filename, local_dir=staging))
        except Exception as e:  # network, gating, missing token: one line with the way out
            raise CgmbenchError(f"could not download {kf.hub_filename} from the Hugging Face hub ({kf.hub_id}): "
                                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                                kf.obtain or f"download it by hand and place it at {dest}") from None
        verify(kf, got)
        os.replace(got, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _record_first_fetch(kf, dest)
    return dest


def _record_first_fetch(kf: KnownFile, dest: Path) -> None:
    if not kf.sha256 and kf.filename not in _recorded():
        rec = _recorded()
        rec[kf.filename] = sha256_file(dest)
        atomic_write_json(weights_dir() / "sha256.json", rec)


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


def refetch_hint(kf: "KnownFile") -> str:
    """How to get a known file again (what :func:`_missing_error` tells)."""
    how = f"`cgmbench weights fetch {kf.name}`" if kf.url else (kf.obtain or f"download it from {_where(kf)}")
    return f"delete it and get it again: {how}"


def shipped(filename: str) -> tuple[Path, str]:
    """``(path, sha256)`` of a shipped safetensors file; a clear error if the installation lacks it."""
    path = shipped_dir() / filename
    seen = _RESOLVED.get()
    if seen is not None:
        seen.append((None, path))
    if not path.is_file():
        raise CgmbenchError(f"shipped weights {filename} are missing from this installation ({path})",
                            "reinstall cgmbench, or retrain them with the command in docs/weights.md")
    return path, sha256_file(path)


#: core modules whose import registers KnownFiles (extractors, metrics)
BUILTIN_REGISTRANTS: list[str] = ["cgmbench.known_weights", "cgmbench.extractors.clip",
                                   "cgmbench.reproduce.files"]
#: entry-point group naming the modules that register a model family's official files
WEIGHTS_ENTRY_POINT_GROUP = "cgmbench.weights"
# issue 16 (video): the FVD feature networks' files
BUILTIN_REGISTRANTS.append("cgmbench.extractors.video_weights")
