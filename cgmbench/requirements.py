"""What a run reads from disk, declared before it runs: :class:`Requirement`, one file or folder each.

A model (:meth:`cgmbench.generator.Generator.required_files`), a task's condition and reference sources
(:meth:`cgmbench.sources.base.Source.required_files`), the feature extractors and the metrics
(:mod:`cgmbench.run.preflight`) each declare their files; the run's preflight checks them all before anything is
sampled and lists every missing one at once, each with the command that gets it, and ``cgmbench fetch`` gets
them (:func:`fetch`) into exactly the paths cgmbench reads.

Three kinds:

* ``weights``: a :class:`cgmbench.weights.KnownFile` by its registry name, read at
  :func:`cgmbench.weights.destination` (``$CGMBENCH_HOME/weights/<file>`` or its data folder); fetched and
  verified by :func:`cgmbench.weights.fetch` (``cgmbench weights fetch NAME``). ``hub_cache=True``: the file may
  also sit in the local Hugging Face cache (the CLIP extractors look there too).
* ``hub``: files of a Hugging Face hub repository read from the local hub cache
  (:func:`cgmbench.paths.hf_cache_dir`: ``HF_HUB_CACHE``, else ``$HF_HOME/hub``), as the text encoders are.
  ``hf download REPO FILE...`` (``huggingface-cli download`` before huggingface_hub 1.0) saves into that same
  cache, so the command given is the place read. ``files`` are checked (``"a|b"``: either will do);
  ``fetch_files`` (default: ``files``, or the repository's weights, config and tokenizer files) are downloaded.
* ``data``: a dataset folder (present when it holds anything) or file at ``path``. With an archive ``url``
  (``.zip``, ``.tar``, ``.tar.gz``, ``.tgz``) whose top folder is the name of ``root`` (the dataset root that
  ``path`` lies in; default ``path`` itself), :func:`fetch` downloads it and unpacks it into ``root``'s parent
  (no member may leave it); otherwise ``get`` is the manual step.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from cgmbench.errors import CgmbenchError

KINDS = ("weights", "hub", "data")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
#: what counts as "the weights" of a transformers model in a hub repository (one of them is enough)
TRANSFORMERS_WEIGHTS = "model.safetensors|model.safetensors.index.json|pytorch_model.bin|pytorch_model.bin.index.json"


@dataclass(frozen=True)
class Requirement:
    """One file or folder a run reads (see the module docstring). ``what`` says who needs it and why
    ("model ldm:txt2img-f8-large", "extractor inception-v3 (fid)"); ``get`` is the command that gets it."""

    kind: str
    name: str
    what: str
    path: str
    get: str
    files: tuple[str, ...] = ()
    fetch_files: tuple[str, ...] = ()
    url: str | None = None
    hub_cache: bool = False
    folder: bool = False
    root: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"requirement kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def key(self) -> tuple:
        """Two requirements with the same key are the same thing on disk (listed once)."""
        return (self.kind, self.name, self.path, self.files)

    def present(self) -> bool:
        """Whether it is on this machine (existence only; digests are verified when the file is read)."""
        if self.kind == "weights":
            if Path(self.path).is_file():
                return True
            if self.hub_cache:
                from cgmbench import weights

                kf = weights.known_file(self.name)
                return bool(kf.hub_id and kf.hub_filename and _hub_cached(kf.hub_id, kf.hub_filename))
            return False
        if self.kind == "hub":
            return all(any(_hub_cached(self.name, f) for f in entry.split("|")) for entry in self.files)
        p = Path(self.path)
        if self.folder:
            return p.is_dir() and any(p.iterdir())
        return p.is_file()

    def describe(self) -> str:
        """One item of the preflight list: what, where, and the command that gets it."""
        where = (self.path if self.kind != "hub"
                 else f"{', '.join(self.files)} of {self.name} in the Hugging Face cache {self.path}")
        source = f" from {self.url}" if self.url and self.url not in self.get else ""
        return f"{self.what}: {where}{source} (get it: {self.get})"

    @property
    def fetchable(self) -> bool:
        """Whether :func:`fetch` can get it without a manual step."""
        if self.kind == "weights":
            from cgmbench import weights

            kf = weights.known_file(self.name)
            return bool(kf.url or (kf.hub_id and kf.hub_filename))
        if self.kind == "hub":
            return True
        return bool(self.url and self.folder and self.url.lower().split("?")[0].endswith(ARCHIVE_SUFFIXES))


# ----------------------------------------------------------------------------------------- constructors


def weights_file(name: str, what: str, hub_cache: bool = False) -> Requirement:
    """A registry file (:mod:`cgmbench.weights`) by name."""
    from cgmbench import weights

    kf = weights.known_file(name)
    if kf.hub_id and not kf.url and kf.obtain:  # hub files: the obtain text names the fetch (and any licence step)
        get = kf.obtain
    elif kf.url or (kf.hub_id and kf.hub_filename):
        get = f"cgmbench weights fetch {name}"
    else:
        get = kf.obtain or f"download it from {kf.hub_id or 'its publisher'}"
    url = kf.url or (f"https://huggingface.co/{kf.hub_id}" if kf.hub_id else None)
    return Requirement("weights", name, what, str(weights.destination(kf)), get, url=url, hub_cache=hub_cache)


def hub_files(repo: str, files: tuple[str, ...] | list[str], what: str,
              fetch_files: tuple[str, ...] | list[str] = ()) -> Requirement:
    """Files of hub repository ``repo`` in the local Hugging Face cache (``"a|b"``: either)."""
    from cgmbench.paths import hf_cache_dir

    exact = tuple(fetch_files) or (tuple(files) if not any("|" in f for f in files) else ())
    command = " ".join(("hf download", repo, *exact))  # without a file list: the whole repository
    return Requirement("hub", repo, what, hf_cache_dir(), command, files=tuple(files),
                       fetch_files=tuple(fetch_files))


def transformers_model(repo: str, what: str, tokenizer: tuple[str, ...] = ()) -> Requirement:
    """A transformers model (config, weights, ``tokenizer`` files) in the local Hugging Face cache."""
    return hub_files(repo, ("config.json", TRANSFORMERS_WEIGHTS, *tokenizer), what)


def data_path(path: str | os.PathLike, what: str, url: str | None = None, obtain: str | None = None,
              folder: bool = True, get: str | None = None, root: str | os.PathLike | None = None) -> Requirement:
    """A dataset folder (``folder=True``) or file; ``get`` overrides the step derived from ``url``/``obtain``;
    ``root``: the dataset folder an archive ``url`` unpacks to, when ``path`` lies inside it."""
    from cgmbench.paths import expand

    p = expand(str(path))
    root = str(expand(str(root))) if root is not None else None
    steps = [f"download {url}"] if url else []
    if obtain:
        steps.append(str(obtain))
    return Requirement("data", str(p), what, str(p), get or "; ".join(steps) or "put the files there", url=url,
                       folder=folder, root=root)


# ----------------------------------------------------------------------------------------- checking


def unique(requirements) -> list[Requirement]:
    """``requirements`` without repeats (the first ``what`` is kept), in order."""
    seen: dict[tuple, Requirement] = {}
    for r in requirements:
        seen.setdefault(r.key, r)
    return list(seen.values())


def missing(requirements) -> list[Requirement]:
    return [r for r in unique(requirements) if not r.present()]


def with_get(requirement: Requirement, get: str) -> Requirement:
    return replace(requirement, get=get)


# ----------------------------------------------------------------------------------------- fetching


def fetch(requirement: Requirement, progress: bool = True) -> str:
    """Get one requirement into the path cgmbench reads; returns a line saying what was done."""
    if requirement.present():
        if requirement.kind == "weights" and Path(requirement.path).is_file():
            from cgmbench import weights

            weights.verify(weights.known_file(requirement.name), Path(requirement.path))
        return f"present  {requirement.path}"
    if requirement.kind == "weights":
        from cgmbench import weights

        got = weights.fetch(requirement.name, progress=progress)
        return f"fetched  {got}  ({weights.digest_provenance(weights.known_file(requirement.name))})"
    if requirement.kind == "hub":
        return _fetch_hub(requirement)
    if not requirement.fetchable:
        raise CgmbenchError(f"{requirement.what} needs a manual step: {requirement.get}",
                            f"place it at {requirement.path}")
    return _fetch_archive(requirement, progress)


def _hub_cached(repo: str, filename: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        from cgmbench.paths import hf_cache_dir

        found = try_to_load_from_cache(repo, filename, cache_dir=hf_cache_dir())
    except Exception:  # library missing, malformed cache: not here
        return False
    return isinstance(found, str) and os.path.isfile(found)


def _fetch_hub(requirement: Requirement) -> str:
    """Download into the local hub cache (the place the text encoders are read from)."""
    try:
        from huggingface_hub import HfApi, snapshot_download
    except ImportError:
        raise CgmbenchError(f"fetching {requirement.name} needs the huggingface_hub package",
                            "pip install huggingface_hub") from None
    from cgmbench.paths import hf_cache_dir

    patterns = list(requirement.fetch_files)
    try:
        if not patterns:  # config, tokenizer and one weights format (safetensors when published)
            listed = HfApi().list_repo_files(requirement.name)
            wanted = [f for f in listed if "/" not in f and f.endswith((".json", ".txt", ".model"))]
            safetensors = [f for f in listed if "/" not in f and f.endswith(".safetensors")]
            wanted += safetensors or [f for f in listed if "/" not in f and f.endswith(".bin")]
            patterns = wanted
        snapshot_download(requirement.name, allow_patterns=patterns, cache_dir=hf_cache_dir())
    except Exception as e:  # network, gating, missing token: one line with the way out
        detail = str(e).splitlines()[0] if str(e) else ""
        raise CgmbenchError(f"could not download {requirement.name} from the Hugging Face hub: "
                            f"{type(e).__name__}: {detail}",
                            f"run `{requirement.get}` (gated repositories need `hf auth login` or HF_TOKEN)") from None
    if not requirement.present():
        raise CgmbenchError(f"{requirement.name} was downloaded but {', '.join(requirement.files)} are still not in "
                            f"the Hugging Face cache {hf_cache_dir()}", f"run `{requirement.get}`")
    return f"fetched  {len(patterns)} file(s) of {requirement.name} into {hf_cache_dir()}"


def _fetch_archive(requirement: Requirement, progress: bool) -> str:
    """Download an archive next to the dataset folder and unpack it there; its members must stay inside."""
    import shutil
    import urllib.request

    from tqdm import tqdm

    target = Path(requirement.root or requirement.path)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    url = requirement.url or ""
    suffix = next(s for s in ARCHIVE_SUFFIXES if url.lower().split("?")[0].endswith(s))
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=suffix)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{target.name}.unpack."))
    try:
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, os.fdopen(fd, "wb") as f:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=Path(url).name, disable=not progress,
                          file=sys.stderr) as bar:
                    for chunk in iter(lambda: resp.read(1 << 20), b""):
                        f.write(chunk)
                        bar.update(len(chunk))
        except OSError as e:
            raise CgmbenchError(f"could not download {url}: {e}",
                                f"download it by hand and unpack it so that {target} exists") from None
        _unpack(Path(tmp), staging)
        inner = staging / target.name
        if not inner.is_dir():
            tops = sorted(p.name for p in staging.iterdir())
            raise CgmbenchError(f"{url} unpacks to {tops}, not to a folder {target.name!r}",
                                f"unpack it by hand so that {target} holds the files")
        if target.exists():
            for item in inner.iterdir():  # an existing (empty, or partly filled) folder: add what it lacks
                if not (target / item.name).exists():
                    os.replace(item, target / item.name)
        else:
            os.replace(inner, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        shutil.rmtree(staging, ignore_errors=True)
    if not requirement.present():
        raise CgmbenchError(f"{url} was unpacked into {target}, but {requirement.path} is still missing or empty",
                            requirement.get)
    return f"fetched  {url} -> {target}"


def _unpack(archive: Path, into: Path) -> None:
    import tarfile
    import zipfile

    root = into.resolve()
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for member in z.namelist():
                dest = (into / member).resolve()
                if root not in dest.parents and dest != root:
                    raise CgmbenchError(f"archive {archive.name} holds {member!r}, which points outside its folder",
                                        "the archive is not the published one; delete it")
            z.extractall(into)
        return
    with tarfile.open(archive) as t:
        try:
            t.extractall(into, filter="data")  # refuses links and paths leaving the folder
        except tarfile.FilterError as e:
            raise CgmbenchError(f"archive {archive.name}: {e}", "the archive is not the published one") from None
