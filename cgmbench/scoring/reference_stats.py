"""Reference statistics: the real side of FID / KID / precision-recall / CMMD, computed once and cached.

``cgmbench stats --task T`` (and the metric harness, on first use) pushes the task's reference
images -- ``open_source(task, "reference").references(indices)`` -- through an extractor and keeps

* the float64 moments (``mu``, ``sigma``; :class:`~cgmbench.metrics.StreamingMoments`, memory
  independent of N) and
* the first ``max_features`` feature rows (float32; default 10,000) for KID, precision/recall and CMMD.

**Content addressing.** The cache key is the SHA-256 of a JSON object holding the SHA-256 of
every reference image (shape header + raw uint8 bytes, in index order), the extractor name, the
extractor weights' SHA-256, the protocol, the resolution, ``max_features`` and the extractor's
description (its ``feature_version``, protocol details and compute dtype). Any change of the
images, the weights or the protocol gives another key, so statistics are never mixed. The key is
recorded as ``reference_stats_sha256`` with every number.

**Layout.** ``$CGMBENCH_HOME/stats/<key>.npz`` (arrays ``mu``, ``sigma``, ``features``; written
with ``allow_pickle=False``) and ``<key>.json`` (format, key, what went into it, and
``content_sha256``: the SHA-256 of the arrays' bytes). Loading recomputes ``content_sha256`` and
refuses a file that does not match (truncated copy, edited file) with a clear error.

**ADM reference batches.** A task whose ``[reference]`` names ``batch = "...npz"`` (the ADM
evaluator's ``VIRTUAL_imagenet256_labeled.npz``) uses that file's ``mu``/``sigma`` directly (TF
Inception pool3 under the ``tf-exact`` protocol) and its ``arr_0`` images for the feature rows;
:func:`load_adm_batch` reads it with ``np.load(allow_pickle=False)``.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from cgmbench.atomic import atomic_write_bytes, atomic_write_json
from cgmbench.errors import CgmbenchError, IntegrityError
from cgmbench.paths import expand, home

FORMAT = "cgmbench.scoring.reference_stats/1"
MAX_FEATURES = 10_000
ADM_PROTOCOL = "tf-exact"
ADM_EXTRACTOR = "inception-v3"


def stats_dir() -> Path:
    """``$CGMBENCH_HOME/stats``."""
    return home() / "stats"


@dataclass
class ReferenceStats:
    """Moments (and kept feature rows) of a reference set under one extractor and protocol."""

    key: str
    mu: np.ndarray
    sigma: np.ndarray
    n: int
    features: np.ndarray | None
    meta: dict = field(default_factory=dict)
    path: Path | None = None

    def content_sha256(self) -> str:
        return _content_sha256(self.mu, self.sigma, self.features)

    def describe(self) -> dict[str, Any]:
        return {"reference_stats_sha256": self.key, "n_reference": self.n,
                "n_reference_features": 0 if self.features is None else int(len(self.features)),
                "reference": self.meta.get("reference")}


def _content_sha256(mu: np.ndarray, sigma: np.ndarray, features: np.ndarray | None) -> str:
    h = hashlib.sha256(FORMAT.encode())
    for name, arr in (("mu", mu), ("sigma", sigma), ("features", features)):
        if arr is None:
            continue
        arr = np.ascontiguousarray(arr)
        h.update(f"{name}:{arr.dtype.str}:{list(arr.shape)}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def image_sha256(image: np.ndarray) -> str:
    """SHA-256 of one uint8 image (or video): shape header, then the raw bytes."""
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8:
        raise CgmbenchError(f"reference images must be uint8, got {image.dtype}")
    h = hashlib.sha256(f"cgmbench-image:{list(image.shape)}".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def stats_key(images_digest: str, extractor: str, weights_sha256: str | None, protocol: str, resolution: int,
              max_features: int, extractor_record: dict | None = None) -> str:
    """The content address of a statistics file (see the module docstring).

    ``extractor_record`` is the extractor's :meth:`describe` (feature version, protocol details,
    compute dtype, ...): anything that changes the features changes the key.
    """
    record = {"format": FORMAT, "images": images_digest, "extractor": extractor, "weights_sha256": weights_sha256,
              "protocol": protocol, "resolution": int(resolution), "max_features": int(max_features),
              "extractor_record": extractor_record or {}}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _extractor_record(extractor) -> dict:
    """The extractor's description without the file name (the weights' sha256 already identifies them)."""
    record = dict(extractor.describe()) if hasattr(extractor, "describe") else {}
    record.pop("weights_file", None)
    return json.loads(json.dumps(record, sort_keys=True, default=str))


# ------------------------------------------------------------------------------------ cache files


def save_stats(stats: ReferenceStats, folder: Path | None = None) -> Path:
    """Write ``<key>.npz`` then ``<key>.json`` (atomically); returns the ``.npz`` path."""
    folder = Path(folder) if folder is not None else stats_dir()
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    arrays = {"mu": stats.mu, "sigma": stats.sigma}
    if stats.features is not None:
        arrays["features"] = stats.features
    np.savez(buf, **arrays)
    path = folder / f"{stats.key}.npz"
    atomic_write_bytes(path, buf.getvalue())
    meta = {**stats.meta, "format": FORMAT, "key": stats.key, "n": stats.n, "content_sha256": stats.content_sha256()}
    atomic_write_json(path.with_suffix(".json"), meta)
    stats.path = path
    return path


def load_stats(key: str, folder: Path | None = None) -> ReferenceStats | None:
    """The cached statistics ``key``, verified; None when absent; :class:`CgmbenchError` when corrupt."""
    from cgmbench.safe_paths import bytes_io, read_json

    folder = Path(folder) if folder is not None else stats_dir()
    path, meta_path = folder / f"{key}.npz", folder / f"{key}.json"
    if not path.exists() and not meta_path.exists():
        return None
    redo = "delete both files and run `cgmbench stats --task TASK` again"
    if not path.is_file() or not meta_path.is_file():
        raise IntegrityError(f"reference statistics {key}: only one of {path.name} and {meta_path.name} is a "
                             f"regular file in {folder}", redo)
    try:  # every failure to read is an IntegrityError line: truncated zip, torn JSON, missing arrays
        meta = read_json(meta_path, "record", "reference statistics record")
        with np.load(bytes_io(path, "statistics", "reference statistics"), allow_pickle=False) as data:
            mu, sigma = data["mu"], data["sigma"]
            features = data["features"] if "features" in data.files else None
    except CgmbenchError as e:
        raise IntegrityError(e.message, redo) from None
    except Exception as e:  # noqa: BLE001 - zipfile.BadZipFile, EOFError, zlib.error, KeyError, ValueError ...
        raise IntegrityError(f"reference statistics {path} cannot be read ({type(e).__name__}: {e})", redo) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("key") != key:
        raise IntegrityError(f"reference statistics {meta_path} do not describe key {key}", redo)
    digest = _content_sha256(mu, sigma, features)
    if digest != meta.get("content_sha256"):
        raise IntegrityError(f"reference statistics {path} have content sha256 {digest}, but {meta_path.name} "
                             f"records {meta.get('content_sha256')} (corrupt or edited file)", redo)
    d = mu.shape[0] if mu.ndim == 1 else -1
    if d < 1 or sigma.shape != (d, d) or not isinstance(meta.get("n"), int) or meta["n"] < 2:
        raise IntegrityError(f"reference statistics {path}: mu {mu.shape}, sigma {sigma.shape} and n "
                             f"{meta.get('n')!r} do not fit together", redo)
    return ReferenceStats(key, mu, sigma, int(meta["n"]), features, meta, path)


def load_or_discard(key: str, log: Callable[[str], None] | None = None) -> ReferenceStats | None:
    """The cached statistics ``key`` if they verify; a cache entry that does not verify is deleted (it is
    derived data: recomputing it from the reference images gives the true content) and None returned."""
    try:
        return load_stats(key)
    except IntegrityError as error:
        (log or _warn)(f"cgmbench: warning: {error.message}; recomputing the reference statistics")
        for suffix in (".npz", ".json"):
            target = stats_dir() / f"{key}{suffix}"
            if target.is_file() or target.is_symlink():
                target.unlink()
            elif target.exists():
                raise IntegrityError(f"cache entry {target} is not a regular file and cannot be replaced",
                                     "remove it by hand") from None
        return None


def _warn(message: str) -> None:
    import sys

    print(message, file=sys.stderr)


# ------------------------------------------------------------------------------------ computing


def iter_feature_batches(extractor, batches: Iterator[np.ndarray], batch_size: int = 256, prefetch: bool = True
                         ) -> Iterator[torch.Tensor]:
    """Features of uint8 ``[B, 3, H, W]`` (or video ``[B, T, 3, H, W]``: every frame) arrays, batch by batch.

    With ``prefetch`` (default) reading/decoding the next batch and the extractor's CPU-side preparation
    (:meth:`FeatureExtractor.prepare`, e.g. the protocol's resize) run in a background thread while the network
    runs on the current batch; the features are the same either way (same batches, same order).
    """
    def prepared(arr: np.ndarray) -> list:
        if arr.ndim == 5:
            arr = arr.reshape(-1, *arr.shape[2:])
        return extractor.prepare(torch.from_numpy(np.ascontiguousarray(arr)), batch_size)

    stages = map(prepared, batches)
    for chunks in (background(stages) if prefetch else stages):
        yield extractor.features_of_prepared(chunks)


def background(items: Iterator, depth: int = 2) -> Iterator:
    """Iterate ``items`` in a daemon thread, up to ``depth`` ahead of the consumer; its exceptions re-raise here.

    PIL decoding/resizing and torch kernels release the GIL, so this overlaps image preparation with the
    network (clean-fid gets the same overlap from DataLoader workers; one thread needs no pickling)."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def put(entry) -> bool:
        """Hand ``entry`` over unless the consumer has gone (then False)."""
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((True, done))
        except BaseException as error:  # handed to the consumer
            put((False, error))

    thread = threading.Thread(target=work, name="cgmbench-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()


def stats_from_features(batches: Iterator[torch.Tensor], max_features: int = MAX_FEATURES
                        ) -> tuple[np.ndarray, np.ndarray, int, np.ndarray | None]:
    """``(mu, sigma, n, first max_features rows as float32 or None)`` from a stream of feature batches."""
    from cgmbench.metrics import StreamingMoments

    moments, kept, n_kept = StreamingMoments(), [], 0
    for feats in batches:
        _check_finite(feats, "reference features")
        moments.update(feats)
        if n_kept < max_features:
            part = feats[: max_features - n_kept].numpy().astype(np.float32)
            kept.append(part)
            n_kept += len(part)
    if moments.n < 2:
        raise CgmbenchError(f"need at least 2 reference images for statistics, got {moments.n}")
    mu, sigma = moments.compute()
    return mu, sigma, moments.n, (np.concatenate(kept) if kept else None)


def _check_finite(feats: torch.Tensor, what: str) -> None:
    if not torch.isfinite(feats).all():
        raise CgmbenchError(f"{what} contain NaN or infinite values", "the extractor weights may be corrupt")


@dataclass
class ReferenceImages:
    """The reference images of a task: their digest, and a way to stream them again."""

    digest: str
    count: int
    resolution: int
    batches: Callable[[], Iterator[np.ndarray]]
    description: dict


_reference_cache: dict[tuple, ReferenceImages] = {}


def reference_images(task, batch_size: int = 256, max_images: int | None = None,
                     keep_bytes: int = 512 << 20) -> ReferenceImages:
    """Hash the task's reference images in order (kept in memory up to ``keep_bytes``, else re-read)."""
    from cgmbench.sources.base import open_source

    ident = (task.name, task.sha256, task.kind, task.resolution, task.frames, json.dumps(task.reference, sort_keys=True),
             batch_size, max_images)
    if ident in _reference_cache:
        return _reference_cache[ident]
    source = open_source(task, "reference")
    count = len(source) if max_images is None else min(len(source), int(max_images))
    if count < 2:
        raise CgmbenchError(f"task {task.name}: the reference source holds {count} image(s); need at least 2")

    def stream() -> Iterator[np.ndarray]:
        for start in range(0, count, batch_size):
            yield source.references(list(range(start, min(start + batch_size, count))))

    h = hashlib.sha256(b"cgmbench-references")
    kept: list[np.ndarray] | None = []
    size = 0
    for arr in stream():
        if arr.dtype != np.uint8:
            raise CgmbenchError(f"task {task.name}: reference images are {arr.dtype}, expected uint8")
        for image in arr:
            h.update(image_sha256(image).encode())
        size += arr.nbytes
        if kept is not None:
            if size <= keep_bytes:
                kept.append(arr)
            else:
                kept = None
    batches = (lambda: iter(kept)) if kept is not None else stream
    desc = {"task": task.name, "source": task.reference.get("source"), "count": count}
    result = ReferenceImages(h.hexdigest(), count, task.resolution, batches, desc)
    _reference_cache[ident] = result
    return result


def reference_stats(task, extractor, protocol: str, max_features: int = MAX_FEATURES, batch_size: int = 256,
                    max_images: int | None = None, log: Callable[[str], None] | None = None,
                    use_cache: bool = True, augmentation: str = "none") -> ReferenceStats:
    """Reference statistics of ``task`` under ``extractor``/``protocol``: from the cache, or computed and cached.

    ``augmentation`` (a named FID protocol's reference set, :mod:`cgmbench.metrics.fid_protocols`): ``"hflip"``
    adds the horizontal mirror image of every reference image (n doubles); it is part of the cache key."""
    from cgmbench.metrics.fid_protocols import augment_references

    batch = task.reference.get("batch")
    if isinstance(batch, str) and batch.endswith(".npz"):
        if augmentation != "none":
            raise CgmbenchError(f"task {task.name}: an ADM reference batch holds fixed statistics; it cannot be "
                                f"augmented ({augmentation})")
        return adm_reference_stats(task, extractor, protocol, max_features=max_features, batch_size=batch_size)
    refs = reference_images(task, batch_size=batch_size, max_images=max_images)
    digest = refs.digest if augmentation == "none" else f"{refs.digest}+{augmentation}"  # old keys unchanged
    key = stats_key(digest, extractor.name, extractor.weights_sha256, protocol, refs.resolution, max_features,
                    _extractor_record(extractor))
    if use_cache:
        cached = load_or_discard(key, log)
        if cached is not None:
            return cached
    if log:
        log(f"computing reference statistics of {task.name} ({refs.count} images, {extractor.name}, {protocol})")
    batches = (augment_references(b, augmentation) for b in refs.batches())
    mu, sigma, n, feats = stats_from_features(iter_feature_batches(extractor, batches, batch_size), max_features)
    description = refs.description if augmentation == "none" else {**refs.description, "augmentation": augmentation}
    meta = {"reference": description, "images_sha256": refs.digest, "extractor": extractor.name,
            "weights_sha256": extractor.weights_sha256, "official_weights": bool(extractor.is_official_weights),
            "protocol": protocol, "resolution": refs.resolution, "max_features": max_features,
            "feature_dim": int(mu.shape[0])}
    stats = ReferenceStats(key, mu, sigma, n, feats, meta)
    if use_cache:
        save_stats(stats)
    return stats


# ------------------------------------------------------------------------------------ ADM batches


def load_adm_batch(path: str | Path, images: bool = False) -> dict[str, np.ndarray]:
    """``{"mu", "sigma"[, "arr_0"]}`` of an ADM reference batch, read with ``allow_pickle=False``."""
    path = Path(path)
    if not path.is_file():
        raise CgmbenchError(f"ADM reference batch {path} does not exist",
                            "download it from the URL in the task's [reference] section (`cgmbench info TASK`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("mu", "sigma") if k not in data.files]
            if missing:
                raise CgmbenchError(f"{path} is not an ADM reference batch: no {missing} array(s) "
                                    f"(it holds {data.files})")
            out = {"mu": np.asarray(data["mu"], np.float64), "sigma": np.asarray(data["sigma"], np.float64)}
            if images and "arr_0" in data.files:
                out["arr_0"] = data["arr_0"]
    except CgmbenchError:
        raise
    except (OSError, ValueError) as e:
        raise CgmbenchError(f"cannot read ADM reference batch {path}: {e}",
                            "files holding pickled objects are refused; download the batch again") from None
    d = out["mu"].shape
    if out["mu"].ndim != 1 or out["sigma"].shape != (d[0], d[0]):
        raise CgmbenchError(f"{path}: mu {out['mu'].shape} and sigma {out['sigma'].shape} do not fit together")
    return out


def adm_reference_stats(task, extractor, protocol: str, max_features: int = MAX_FEATURES,
                        batch_size: int = 256) -> ReferenceStats:
    """Statistics from an ADM reference batch: its own ``mu``/``sigma``, features of its ``arr_0`` images."""
    from cgmbench.weights import sha256_file

    if extractor.name != ADM_EXTRACTOR or protocol != ADM_PROTOCOL:
        raise CgmbenchError(f"task {task.name}: the ADM reference batch holds {ADM_EXTRACTOR} statistics under the "
                            f"{ADM_PROTOCOL} protocol, not {extractor.name} / {protocol}",
                            f"use protocol = \"{ADM_PROTOCOL}\" and extractor = \"{ADM_EXTRACTOR}\"")
    path = expand(task.reference["batch"])
    file_sha = sha256_file(path) if path.is_file() else None
    data = load_adm_batch(path)
    key = stats_key(f"adm:{file_sha}", extractor.name, extractor.weights_sha256, protocol, task.resolution,
                    max_features, _extractor_record(extractor))
    cached = load_or_discard(key)
    if cached is not None:
        return cached
    images = load_adm_batch(path, images=True).get("arr_0")
    feats = None
    if images is not None:  # NHWC uint8 -> features for precision/recall and KID
        rows = images[:max_features]
        feats = torch.cat([extractor(torch.from_numpy(np.ascontiguousarray(rows[i:i + batch_size].transpose(0, 3, 1, 2))),
                                     batch_size=batch_size) for i in range(0, len(rows), batch_size)])
        _check_finite(feats, "reference features")
        feats = feats.numpy().astype(np.float32)
    meta = {"reference": {"task": task.name, "adm_batch": str(path), "file_sha256": file_sha}, "extractor": extractor.name,
            "weights_sha256": extractor.weights_sha256, "protocol": protocol, "resolution": task.resolution,
            "max_features": max_features, "feature_dim": int(data["mu"].shape[0]),
            "note": "mu/sigma as published in the ADM batch (the whole training set); features from its arr_0"}
    n = int(images.shape[0]) if images is not None else 0
    stats = ReferenceStats(key, data["mu"], data["sigma"], n, feats, meta)
    save_stats(stats)
    return stats
