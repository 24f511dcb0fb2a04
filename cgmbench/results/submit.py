"""``cgmbench submit``: validate a result (and optionally its samples) and add it to a leaderboard.

Everything submitted is treated as hostile:

* ``RESULT.json``: at most :data:`MAX_JSON_BYTES`, strict JSON (no NaN/Infinity, no duplicate
  keys), a ``cgmbench.run/1`` record checked field by field; every message names the field
  (``$.metrics.judge.overall.ci95[1]: …``). ``identity_sha256`` must match the content.
* Provenance: the task must be a known task by name with the same spec hash; the record's
  cgmbench version must share this version's major.minor; the judge version must be this
  version's; every metric compared with reference statistics (FID, KID, CLIP score, …) must carry
  ``protocol``, ``extractor``, ``weights_sha256``, ``reference_stats_sha256`` and ``n``, with the
  task's protocol and extractor; masked, temporal and judge-based metrics (``psnr_bg``,
  ``motion_accuracy``, ``edit_success``, …) carry what their pass records
  (:func:`cgmbench.catalog.provenance_fields`); an entry naming an extractor carries its weights'
  hash, which must be the known one where cgmbench knows the file; each metric's N equals the
  run's (less the samples a metric leaves out by definition and counts, ``left_out_same_captions``).
* Samples (``--samples``): a folder or a ``.zip``/``.tar``/``.tar.gz`` holding a sample store
  (``index.json`` + ``.npy`` shards, as ``cgmbench run`` writes) or PNG files named by sample
  index (``0.png`` … ``N-1.png``, any zero padding). Archives are never extracted with
  ``extractall``: each member is checked (no absolute paths, no ``..``, no links or devices, at
  most :data:`MAX_MEMBERS` members and :data:`MAX_ARCHIVE_BYTES` bytes in all, counted while
  copying) and written below a private temporary folder. Pickles are refused (``.pkl``/``.pt``/
  ``.ckpt``/… files, files starting with a pickle opcode, ``.npy`` object arrays, which
  ``numpy.load(allow_pickle=False)`` never unpickles). Images go through
  :func:`cgmbench.images.read_image` with a pixel limit of exactly the sample size (the
  decompression-bomb guard): the task's, or the model's native size when the record's ``samples``
  block names it and the resize protocol that brings it to the task's (:func:`submitted_sample_shape`). The samples must hash to the record's ``samples_sha256``; they are
  then re-scored with :func:`cgmbench.scoring.harness.compute_metrics` and every re-computed metric must
  agree with the claim within the metric's tolerance in the catalog (:mod:`cgmbench.catalog`; ``|claimed - rescored| <= abs + rel * |rescored|``).
* An accepted submission is written with :func:`cgmbench.atomic.atomic_create_json` into
  ``leaderboards/<task>/<model>-<sha256 of the record>.json``: concurrent submissions of
  different results all land; the same result twice is refused as already present. A rejected
  submission writes nothing there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import numpy as np

from cgmbench.catalog import tolerance as catalog_tolerance
from cgmbench.version import __version__
from cgmbench.errors import CgmbenchError
from cgmbench.run.record import (
    RecordInvalid,
    _check,
    _get,
    _tname,
    identity_digest,
    validate_record,
)

MAX_JSON_BYTES = 1024 * 1024
MAX_ARCHIVE_BYTES = 1024 * 1024 * 1024
MAX_MEMBERS = 20000
MAX_DEPTH = 32
#: the largest native sample side a submission may claim (SD3-medium samples at 1024²)
MAX_NATIVE_SIDE = 4096
#: ``(absolute, relative)`` tolerance of a re-scored metric against its claim
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".bin", ".joblib", ".npz", ".sav")
_SHARD_NAME = re.compile(r"^\d{8}-\d{8}\.npy$")


class SubmissionRejected(RecordInvalid):
    """A submission that fails validation; the message names the field or file."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(f"submission rejected: {message}", hint)


# -- RESULT.json ----------------------------------------------------------------------------------


def _no_constants(name: str):
    raise SubmissionRejected(f"RESULT.json contains {name}, which is not valid JSON")


def _no_duplicates(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise SubmissionRejected(f"RESULT.json has the key {k!r} twice in one object")
        obj[k] = v
    return obj


def load_result(path: str | Path) -> dict:
    path = Path(path)
    try:
        st = path.stat()
    except OSError as e:
        raise SubmissionRejected(f"cannot read {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SubmissionRejected(f"{path} is not a regular file")
    if st.st_size > MAX_JSON_BYTES:
        raise SubmissionRejected(f"{path} is {st.st_size} bytes, over the {MAX_JSON_BYTES}-byte limit")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
        rec = json.loads(text, parse_constant=_no_constants, object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise SubmissionRejected(f"{path} is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise SubmissionRejected(f"{path} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise SubmissionRejected(f"{path} is nested too deeply") from None
    if not isinstance(rec, dict):
        raise SubmissionRejected(f"$: a result must be a JSON object, got {_tname(rec)}")
    if _depth(rec) > MAX_DEPTH:
        raise SubmissionRejected(f"$: nested more than {MAX_DEPTH} levels deep")
    return rec


def _depth(obj, d=0) -> int:
    if isinstance(obj, dict):
        return max([_depth(v, d + 1) for v in obj.values()], default=d + 1)
    if isinstance(obj, list):
        return max([_depth(v, d + 1) for v in obj], default=d + 1)
    return d














def expected_extractor_sha256(extractor: str) -> str | None:
    """SHA-256 of an extractor's weights when cgmbench knows the file (hook for the metric harness)."""
    try:
        from cgmbench.weights import expected_sha256, known_file

        return expected_sha256(known_file(extractor))
    except Exception:  # unknown name: nothing to compare against
        return None


def check_provenance(rec: dict):
    """The task (loaded by name) after checking the record's provenance against this cgmbench."""
    from cgmbench.spec.task import load_task
    from cgmbench.worlds.judge import JUDGE_VERSION

    if identity_digest(rec) != rec["identity_sha256"]:
        raise SubmissionRejected("$.identity_sha256 does not match the record's content (edited after the run?)")
    try:
        task = load_task(rec["task"]["name"])
    except CgmbenchError:
        raise SubmissionRejected(f"$.task.name: unknown task {rec['task']['name']!r}") from None
    if rec["task"]["spec_sha256"] != task.sha256:
        raise SubmissionRejected(f"$.task.spec_sha256: the result was made with another spec of task {task.name} "
                                 f"({rec['task']['spec_sha256'][:12]}… here {task.sha256[:12]}…)")
    if rec["task"]["kind"] != task.kind:
        raise SubmissionRejected(f"$.task.kind: {rec['task']['kind']!r} is not {task.kind!r}")
    theirs, ours = rec["environment"]["cgmbench"], __version__
    if theirs.split(".")[:2] != ours.split(".")[:2]:
        raise SubmissionRejected(f"$.environment.cgmbench: made with cgmbench version {theirs!r}; this leaderboard "
                                 f"accepts {'.'.join(ours.split('.')[:2])}.x", "re-score with this version")
    n = rec["n"]
    for mname, entry in rec["metrics"].items():
        path = f"$.metrics.{mname}"
        if mname == "judge":
            if entry["version"] != JUDGE_VERSION:
                raise SubmissionRejected(f"{path}.version: judge version {entry['version']!r} is not "
                                         f"{JUDGE_VERSION!r}", "re-score with this version")
            if entry["overall"]["n"] != n:
                raise SubmissionRejected(f"{path}.overall.n: {entry['overall']['n']} samples scored, the run has {n}")
            continue
        # a metric undefined on some samples by its definition says how many it left out (clip_direction: edits
        # whose source and target captions are equal)
        left_out = entry.get("left_out_same_captions", 0)
        if not isinstance(left_out, int) or isinstance(left_out, bool) or entry["n"] + left_out != n:
            scored = f"{entry['n']} samples scored" + (f" and {left_out} left out" if left_out else "")
            raise SubmissionRejected(f"{path}.n: {scored}, the run has {n}")
        if entry.get("extractor") is None:  # pixel, masked and judge metrics: no extractor, no protocol to match
            continue
        from cgmbench.catalog import metric_spec
        from cgmbench.scoring.harness import default_clip_extractor

        group = metric_spec(mname).group
        settings = task.metric_settings
        if mname == "lpips":  # its own network and preprocessing, whatever the task's FID protocol
            from cgmbench.extractors.lpips import LPIPS_VERSION

            wanted = {"extractor": "lpips-alex", "protocol": LPIPS_VERSION}
        elif group == "clip":  # clip_score / cmmd: the task's CLIP extractor, its own preprocessing
            wanted = {"extractor": default_clip_extractor(task)}
        elif group == "features":  # the task's extractor and protocol (IS: its own classifier when it names one)
            own_is = mname == "is" and settings.is_extractor
            wanted = {"protocol": settings.protocol,
                      "extractor": settings.is_extractor if own_is else settings.extractor}
        else:  # video and sample metrics name their own extractor (FVD's protocol, shapes-clip); re-scoring
            wanted = {}  # recomputes them with this version's definition, and the weights are checked below
        for f, want in wanted.items():
            if want is not None and entry[f] != want:
                raise SubmissionRejected(f"{path}.{f}: {entry[f]!r}, but task {task.name} uses {want!r}")
        want = expected_extractor_sha256(entry["extractor"])
        if want is not None and entry["weights_sha256"] != want:
            raise SubmissionRejected(f"{path}.weights_sha256: not the sha256 of extractor {entry['extractor']!r} "
                                     f"weights ({want[:12]}…)")
    return task


# -- samples --------------------------------------------------------------------------------------


def _safe_member(name: str) -> PurePosixPath:
    if "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name) or "\x00" in name:
        raise SubmissionRejected(f"archive member {name!r} has an absolute or non-POSIX path")
    p = PurePosixPath(name)
    if any(part == ".." for part in p.parts):
        raise SubmissionRejected(f"archive member {name!r} points outside the archive folder ('..')")
    return p


class _Budget:
    def __init__(self):
        self.members = 0
        self.bytes = 0

    def member(self, name: str) -> None:
        self.members += 1
        if self.members > MAX_MEMBERS:
            raise SubmissionRejected(f"the samples hold more than {MAX_MEMBERS} members (at {name!r})")

    def add(self, n: int, name: str) -> None:
        self.bytes += n
        if self.bytes > MAX_ARCHIVE_BYTES:
            raise SubmissionRejected(f"the samples are over the {MAX_ARCHIVE_BYTES}-byte limit (at {name!r})")


def _copy_limited(src, dst: Path, budget: _Budget, name: str) -> None:
    try:
        f = open(dst, "xb")
    except (FileExistsError, IsADirectoryError):
        raise SubmissionRejected(f"archive member {name!r} appears twice") from None
    with f:
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            budget.add(len(chunk), name)
            f.write(chunk)


def _target(dest: Path, rel: PurePosixPath, name: str) -> Path:
    out = (dest / Path(*rel.parts)).resolve() if rel.parts else dest
    if not out.is_relative_to(dest):
        raise SubmissionRejected(f"archive member {name!r} points outside the archive folder")
    return out


def extract_archive(archive: Path, dest: Path) -> Path:
    """Extract ``archive`` member by member into ``dest`` (see the module docstring); returns ``dest``."""
    from cgmbench.safe_paths import open_file

    dest = dest.resolve()
    budget = _Budget()
    with open_file(archive, "archive", "--samples", MAX_ARCHIVE_BYTES) as f:  # a regular file, opened once
        return _extract_from(f, archive, dest, budget)


def _extract_from(f, archive: Path, dest: Path, budget: "_Budget") -> Path:
    if zipfile.is_zipfile(f):
        f.seek(0)
        with zipfile.ZipFile(f) as zf:
            for info in zf.infolist():
                budget.member(info.filename)
                rel = _safe_member(info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise SubmissionRejected(f"archive member {info.filename!r} is a symlink; links are refused")
                if info.flag_bits & 0x1:
                    raise SubmissionRejected(f"archive member {info.filename!r} is encrypted")
                out = _target(dest, rel, info.filename)
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src:
                    _copy_limited(src, out, budget, info.filename)
        return dest
    try:
        f.seek(0)
        tf = tarfile.open(fileobj=f, mode="r:*")
    except (tarfile.TarError, OSError):
        raise SubmissionRejected(f"{archive} is neither a folder nor a readable .zip/.tar/.tar.gz archive") from None
    with tf:
        for m in tf:
            budget.member(m.name)
            rel = _safe_member(m.name)
            if m.issym() or m.islnk():
                raise SubmissionRejected(f"archive member {m.name!r} is a link; links are refused")
            if not (m.isfile() or m.isdir()):
                raise SubmissionRejected(f"archive member {m.name!r} is not a regular file or folder")
            out = _target(dest, rel, m.name)
            if m.isdir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            if m.size > MAX_ARCHIVE_BYTES:
                raise SubmissionRejected(f"archive member {m.name!r} is over the {MAX_ARCHIVE_BYTES}-byte limit")
            out.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(m)
            _copy_limited(src, out, budget, m.name)
    return dest


def _scan_folder(root: Path) -> list[Path]:
    """Every regular file under ``root``; links, devices, pickles and oversize trees are refused."""
    budget = _Budget()
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root)
            budget.member(str(rel))
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                raise SubmissionRejected(f"{rel} in the samples is a symlink; links are refused")
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                raise SubmissionRejected(f"{rel} in the samples is not a regular file")
            budget.add(st.st_size, str(rel))
            if p.suffix.lower() in PICKLE_SUFFIXES:
                raise SubmissionRejected(f"{rel} looks like a pickle or checkpoint file; pickles are never loaded",
                                         "submit samples as .npy shards or PNG images")
            with open(p, "rb") as f:
                head = f.read(2)
            if head[:1] == b"\x80" and len(head) == 2 and head[1] <= 5:
                raise SubmissionRejected(f"{rel} is a Python pickle; pickles are never loaded")
            files.append(p)
    return files


def _npy_header(path: Path):
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        except Exception as e:
            raise SubmissionRejected(f"{path.name} is not a valid .npy file ({e})") from None
    return shape, dtype


def _store_root(root: Path) -> tuple[str, Path]:
    """``("store", folder)`` or ``("images", folder)`` for the submitted samples under ``root``."""
    candidates = [root, root / "samples"]
    subdirs = [p for p in root.iterdir() if p.is_dir()]
    if len(subdirs) == 1:
        candidates += [subdirs[0], subdirs[0] / "samples"]
    for c in candidates:
        if (c / "index.json").is_file():
            return "store", c
    from cgmbench.images import IMAGE_SUFFIXES

    for c in candidates:
        if c.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in c.iterdir()):
            return "images", c
    raise SubmissionRejected("the samples hold neither a sample store (index.json + .npy shards) nor PNG images")


def submitted_sample_shape(rec: dict, task) -> tuple[tuple[int, ...], str | None]:
    """``(shape of each stored sample, resize protocol or None)`` the submitted samples must have.

    Samples are stored at the model's native resolution (:mod:`cgmbench.scoring.resize`). A record whose
    ``samples`` block says they were made at another resolution than the task's and names the resize protocol that
    brings them to it (``native_resolution``, ``eval_resolution``, ``resize``, as ``cgmbench run`` writes) is
    re-scored from native-size samples resized by that protocol, exactly as the run scored them; the same
    conditions as for a run hold (a square native size, a task that is not scored pixel by pixel, at most
    :data:`MAX_NATIVE_SIDE` pixels a side). Without such a block the samples are at the task's resolution."""
    from cgmbench.scoring.resize import PROTOCOLS, check_model_resolution

    shape = task.sample_shape()
    block = rec.get("samples")
    if not isinstance(block, dict) or block.get("resize") in (None, "none"):
        return shape, None
    where = "$.samples"
    protocol = _get(block, "resize", where, "string")
    if protocol not in PROTOCOLS:
        raise SubmissionRejected(f"{where}.resize: unknown resize protocol {protocol[:40]!r}",
                                 f"known: {', '.join(PROTOCOLS)}")
    native = _get(block, "native_resolution", where, "array")
    evaluated = _get(block, "eval_resolution", where, "array")
    for name, v in (("native_resolution", native), ("eval_resolution", evaluated)):
        if len(v) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= MAX_NATIVE_SIDE
                                  for x in v):
            raise SubmissionRejected(f"{where}.{name}: expected [height, width], each 1..{MAX_NATIVE_SIDE}")
    if list(evaluated) != [task.resolution, task.resolution]:
        raise SubmissionRejected(f"{where}.eval_resolution: {evaluated}, but task {task.name} is scored at "
                                 f"{[task.resolution, task.resolution]}")
    try:
        check_model_resolution(tuple(native), task, "the submitted model")
    except CgmbenchError as e:
        raise SubmissionRejected(f"{where}.native_resolution: {e.message}", e.hint) from None
    native_shape = (*shape[:-2], *native)
    if block.get("sample_shape") is not None and tuple(block["sample_shape"]) != native_shape:
        raise SubmissionRejected(f"{where}.sample_shape: {block['sample_shape']}, but native_resolution {native} "
                                 f"means {list(native_shape)}")
    return native_shape, protocol


def load_samples(root: Path, task, rec: dict, workdir: Path):
    """A fresh :class:`~cgmbench.run.samples.SampleStore` in ``workdir`` with the validated samples (at the shape
    :func:`submitted_sample_shape` says, with the record's resize protocol in the store's configuration)."""
    from cgmbench.images import IMAGE_SUFFIXES, read_image
    from cgmbench.run.samples import FORMAT, SampleStore

    _scan_folder(root)
    n = rec["n"]
    shape, protocol = submitted_sample_shape(rec, task)
    config = {"task": task.name, "submitted": True, **({"resize": protocol} if protocol else {})}
    store = SampleStore.create(workdir / "store", config, shape)
    kind, folder = _store_root(root)
    if kind == "store":
        index_path = folder / "index.json"
        if index_path.stat().st_size > MAX_JSON_BYTES:
            raise SubmissionRejected("samples index.json is over the size limit")
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"), parse_constant=_no_constants)
        except (ValueError, UnicodeDecodeError) as e:
            raise SubmissionRejected(f"samples index.json is not valid JSON: {e}") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise SubmissionRejected(f"samples index.json: format is not {FORMAT!r}")
        shards = index.get("shards")
        if not isinstance(shards, list):
            raise SubmissionRejected("samples index.json: shards must be an array")
        for i, s in enumerate(shards):
            where = f"samples index.json shards[{i}]"
            _check(s, where, "object")
            fname = _get(s, "file", where, "string")
            start = _get(s, "start", where, "integer")
            stop = _get(s, "stop", where, "integer")
            if not _SHARD_NAME.match(fname):
                raise SubmissionRejected(f"{where}.file: {fname[:80]!r} is not a shard name like 00000000-00000064.npy")
            path = folder / fname
            if not path.is_file():
                raise SubmissionRejected(f"{where}.file: {fname} is missing")
            hshape, dtype = _npy_header(path)
            if dtype.hasobject:
                raise SubmissionRejected(f"{fname} holds a pickled object array; pickles are never loaded")
            if dtype != np.uint8 or tuple(hshape) != (stop - start, *shape):
                raise SubmissionRejected(f"{fname} is {dtype} {tuple(hshape)}; expected uint8 {(stop - start, *shape)}")
            if start < 0 or stop > n:
                raise SubmissionRejected(f"{where}: samples {start}..{stop - 1} are outside 0..{n - 1}")
            try:
                arr = np.load(path, allow_pickle=False)
            except ValueError as e:
                raise SubmissionRejected(f"{fname} cannot be loaded without unpickling ({e})") from None
            store.write_shard(start, arr)
    else:
        if len(shape) != 3:
            raise SubmissionRejected(f"task {task.name} has video samples; submit a sample store (.npy shards)")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        by_index = {}
        for p in files:
            if not p.stem.isdigit():
                raise SubmissionRejected(f"image {p.name}: name it by its sample index (0.png … {n - 1}.png)")
            i = int(p.stem)
            if i >= n or i in by_index:
                raise SubmissionRejected(f"image {p.name}: index {i} is out of range 0..{n - 1} or given twice")
            by_index[i] = p
        _, h, w = shape
        for start in range(0, n, 256):
            batch = []
            for i in range(start, min(start + 256, n)):
                if i not in by_index:
                    raise SubmissionRejected(f"sample {i} is missing from the images")
                try:
                    img = read_image(by_index[i], max_pixels=h * w)
                except CgmbenchError as e:  # size limit, decompression bomb, corrupt file
                    raise SubmissionRejected(f"sample {i}: {e.message}") from None
                if img.shape != shape:
                    raise SubmissionRejected(f"image {by_index[i].name} is {img.shape[2]}x{img.shape[1]}; "
                                             f"{'the record says' if protocol else f'task {task.name} needs'} "
                                             f"{w}x{h}")
                batch.append(img)
            store.write_shard(start, np.stack(batch))
    missing = store.missing(n)
    if missing:
        raise SubmissionRejected(f"samples {missing[0]}… ({len(missing)} of {n}) are missing")
    return store


def _tolerance(metric: str, tolerance: float | None):
    if tolerance is not None:
        return tolerance, 0.0
    return catalog_tolerance(metric)


def rescore(rec: dict, task, store, tolerance: float | None = None) -> dict:
    """Check the samples against the claims; returns ``{metric: rescored value}``."""
    from cgmbench.scoring.harness import compute_metrics, summary_value
    from cgmbench.sources.base import open_source

    n = rec["n"]
    digest = store.digest(n)
    if digest != rec["samples_sha256"]:
        raise SubmissionRejected(f"$.samples_sha256 does not match the submitted samples (they hash to "
                                 f"{digest[:12]}…)")
    metrics, _ = compute_metrics(task, open_source(task, "conditions"), store, n)
    checked = {}
    for name, fresh in metrics.items():
        if name not in rec["metrics"]:
            continue
        claimed, got = summary_value(rec["metrics"][name]), summary_value(fresh)
        a, r = _tolerance(name, tolerance)
        if claimed is None or got is None or abs(claimed - got) > a + r * abs(got):
            field = "overall.value" if name == "judge" else "value"
            raise SubmissionRejected(f"$.metrics.{name}.{field}: claimed {claimed} but re-scoring the samples gives "
                                     f"{got} (tolerance {a:g} + {r:g}*|value|)")
        checked[name] = got
    return checked


# -- the command ----------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:48].strip("._") or "model"


def verify(result: str | Path, samples: str | Path | None = None, tolerance: float | None = None) -> dict:
    """Validate RESULT.json and, with ``samples``, re-score them (module docstring). Returns ``{"record", "task",
    "rescored", "notes"}``; raises :class:`SubmissionRejected` naming what is wrong."""
    rec = load_result(result)
    try:
        validate_record(rec, "$", submission=True)
    except RecordInvalid as e:
        if isinstance(e, SubmissionRejected):
            raise
        raise SubmissionRejected(e.message, e.hint) from None
    task = check_provenance(rec)
    rescored, notes = {}, []
    if samples is not None:
        src = Path(samples)
        if not src.exists() and not src.is_symlink():
            raise SubmissionRejected(f"--samples {src}: no such file or folder")
        if src.is_symlink():
            raise SubmissionRejected(f"--samples {src} is a symlink; give the folder or archive itself")
        from cgmbench.safe_paths import check_file, is_regular_or_folder

        if not src.is_dir():  # a FIFO or device (/dev/zero) is refused before a temp folder exists
            if not is_regular_or_folder(src):
                check_file(src, "archive", "--samples", MAX_ARCHIVE_BYTES)  # raises, naming what it is
            if src.stat().st_size > MAX_ARCHIVE_BYTES:
                raise SubmissionRejected(f"{src} is over the {MAX_ARCHIVE_BYTES}-byte limit")
        work = Path(tempfile.mkdtemp(prefix="cgmbench-submit-"))
        try:
            if src.is_dir():
                root = src
            else:
                root = extract_archive(src, work / "extracted")
            store = load_samples(root, task, rec, work)
            rescored = rescore(rec, task, store, tolerance)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        unchecked = sorted(set(rec["metrics"]) - set(rescored))
        if unchecked:
            notes.append(f"not re-scored by this version: {', '.join(unchecked)}")
    else:
        notes.append("no samples given: the claimed numbers are not re-scored")
    return {"record": rec, "task": task, "rescored": rescored, "notes": notes,
            "samples_verified": samples is not None}


def accepted_document(checked: dict) -> dict:
    """The record of a :func:`verify` result as a leaderboard holds it: with its ``submission`` block (when and by
    which version it was checked, what was re-scored, ``content_sha256`` of the record as submitted)."""
    rec = checked["record"]
    content_sha = hashlib.sha256(json.dumps(rec, sort_keys=True).encode("utf-8")).hexdigest()
    doc = dict(rec)
    doc["submission"] = {**(rec.get("submission") or {}),
                         "accepted_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "checked_by": f"cgmbench {__version__}", "rescored": checked["rescored"],
                         "samples_verified": bool(checked["samples_verified"]), "content_sha256": content_sha}
    return doc


def submit(result: str | Path, samples: str | Path | None = None, leaderboards: str | Path | None = None,
           dry_run: bool = False, tolerance: float | None = None, log=print) -> dict:
    """Validate and (unless ``dry_run``) add a result; returns ``{"path", "rescored", "message"}``."""
    from cgmbench.results.leaderboard import leaderboards_root

    checked = verify(result, samples, tolerance)
    rec, task, rescored = checked["record"], checked["task"], checked["rescored"]
    doc = accepted_document(checked)
    content_sha = doc["submission"]["content_sha256"]
    root_dir = Path(leaderboards) if leaderboards else leaderboards_root()
    path = root_dir / task.name / f"{_slug(rec['model']['spec'])}-{content_sha[:16]}.json"
    for note in checked["notes"]:
        log(note)
    if dry_run:
        return {"path": None, "rescored": rescored, "message": f"valid; would be written to {path}"}
    from cgmbench.atomic import atomic_create_json

    if not atomic_create_json(path, doc):
        raise CgmbenchError(f"this result is already on the leaderboard: {path}")
    return {"path": path, "rescored": rescored, "message": f"accepted: {path}"}
