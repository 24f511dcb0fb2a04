"""FID between two sets of images or statistics (what ``cgmbench fid`` and :func:`cgmbench.fid` compute).

Each side is one of

* a folder of image files (read in name order with :func:`cgmbench.images.read_image`),
* a uint8 array ``[N, 3, H, W]`` (numpy or torch; video ``[N, T, 3, H, W]``: every frame is an image),
* saved reference statistics: a ``.npz`` written by ``cgmbench stats`` (its ``.json`` beside it is then
  read and the file verified), any ``.npz`` holding ``mu`` and ``sigma``, or a
  :class:`~cgmbench.scoring.reference_stats.ReferenceStats`.

Images are pushed through the extractor in batches of ``batch_size`` (a folder's files in name order, an
array in index order), so a folder and the array of its images give the same number. Statistics that record
their extractor, weights or protocol must match the ones used for the other side: protocols are never mixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from cgmbench.errors import CgmbenchError, IntegrityError

DEFAULT_PROTOCOL = "clean"
DEFAULT_EXTRACTOR = "inception-v3"
METHOD = "Fréchet distance of float64 moments (symmetric eigen method)"


def folder_batches(folder: str | Path, batch_size: int) -> tuple[int, Iterator[np.ndarray]]:
    """``(count, batches)``: uint8 ``[B, 3, H, W]`` batches of one size each, files in name order."""
    from cgmbench.images import read_image

    files = folder_files(folder)

    def batches() -> Iterator[np.ndarray]:
        group: list[np.ndarray] = []
        for file in files:
            image = read_image(file)
            if group and (image.shape != group[0].shape or len(group) == batch_size):
                yield np.stack(group)
                group = []
            group.append(image)
        if group:
            yield np.stack(group)

    return len(files), batches()


#: Largest batch of not-yet-resized images assembled for the network, in bytes. Only extractors whose prepare
#: stage leaves the resize to the network stage (e.g. a resize on an accelerator) hand back full-size images;
#: such a batch then holds at most this many bytes, or one image when a single image is larger.
RAW_BATCH_BYTES = 16 << 20


def folder_files(folder: str | Path) -> list[Path]:
    """The image files of ``folder`` in name order (refusing a folder that is missing, not a folder or empty)."""
    from cgmbench.images import list_images
    from cgmbench.safe_paths import check_folder

    path = check_folder(folder, "image folder")
    files = list_images(path)
    if not files:
        raise CgmbenchError(f"image folder {path} holds no images",
                            "expected .png, .jpg, .jpeg, .bmp, .webp or .tif files directly in the folder")
    return files


def prepared_batches(extractor, files: list[Path], batch_size: int) -> Iterator[list]:
    """Network batches of the images in ``files``, each image decoded and passed through the extractor's
    prepare stage (the protocol's resize) as soon as it is read, so that at most one full-resolution image is
    alive at a time: peak memory does not grow with the image size beyond one image (issue 12, item 5).

    The batches are those of :func:`folder_batches` (``batch_size`` images, cut where the prepared shape
    changes), and preparing is per image, so the features are the same as preparing whole batches."""
    from cgmbench.images import read_image

    pending: list = []
    raw_bytes = 0
    for file in files:
        image = torch_from_numpy(read_image(file)[None])
        chunks = extractor.prepare(image, 1)
        del image
        for chunk in chunks:
            raw = _raw_bytes(chunk)
            if pending and (len(pending) >= batch_size or not _mergeable(pending[0], chunk)
                            or (raw and raw_bytes + raw > RAW_BATCH_BYTES)):
                yield _merge(pending)
                pending, raw_bytes = [], 0
            pending.append(chunk)
            raw_bytes += raw
    if pending:
        yield _merge(pending)


def _maybe_background(batches: Iterator[list]) -> Iterator[list]:
    """Prepare the next batch in a background thread while the network runs, unless the batches hold
    full-size images (an extractor that resizes in its network stage): prefetching would then keep several
    full-size images alive at once, so they are prepared in turn."""
    import itertools

    from cgmbench.scoring.reference_stats import background

    first = next(batches, None)
    if first is None:
        return iter(())
    stream = itertools.chain([first], batches)
    return stream if any(_raw_bytes(c) for c in first) else background(stream)


def torch_from_numpy(arr: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(arr))


def _tensor_of(chunk):
    import torch

    if isinstance(chunk, torch.Tensor):
        return chunk
    x = getattr(chunk, "x", None)
    return x if isinstance(x, torch.Tensor) else None


def _raw_bytes(chunk) -> int:
    """Bytes of a chunk that still holds uint8 full-size images (prepared chunks count 0)."""
    import torch

    if isinstance(chunk, torch.Tensor) and chunk.dtype == torch.uint8:
        return chunk.numel()
    return 0


def _mergeable(a, b) -> bool:
    ta, tb = _tensor_of(a), _tensor_of(b)
    return (type(a) is type(b) and ta is not None and tb is not None and ta.dtype == tb.dtype
            and tuple(ta.shape[1:]) == tuple(tb.shape[1:]))


def _merge(chunks: list) -> list:
    """One network chunk from per-image chunks (plain tensors or prepared batches with a tensor ``x``)."""
    import dataclasses

    import torch

    if len(chunks) == 1 or _tensor_of(chunks[0]) is None:
        return chunks
    x = torch.cat([_tensor_of(c) for c in chunks])
    if isinstance(chunks[0], torch.Tensor):
        return [x]
    if dataclasses.is_dataclass(chunks[0]):
        return [dataclasses.replace(chunks[0], x=x)]
    return chunks  # an unknown prepared type: one network call per image (same features)


def as_uint8_images(value: Any, what: str = "images") -> np.ndarray:
    """A numpy uint8 ``[N, 3, H, W]`` (or ``[N, T, 3, H, W]``) array from a numpy array or torch tensor."""
    if type(value).__module__.split(".")[0] == "torch":
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
        raise CgmbenchError(f"{what}: expected a folder, a .npz of statistics or a uint8 array, "
                            f"got {type(value).__name__}")
    if value.dtype != np.uint8:
        raise CgmbenchError(f"{what} must be uint8 in [0, 255], got {value.dtype}",
                            "convert with (x.clamp(0, 1) * 255).round().to(torch.uint8) or np.uint8")
    if value.ndim not in (4, 5) or value.shape[-3] != 3:
        raise CgmbenchError(f"{what} must be [N, 3, H, W] (video [N, T, 3, H, W]), got shape {list(value.shape)}")
    return value


@dataclass
class _Side:
    """One side of the comparison: images to extract, or statistics already made."""

    label: str
    count: int = 0
    batches: Iterator[np.ndarray] | None = None
    files: list[Path] | None = None  # a folder: decoded and prepared image by image
    stats: Any = None  # ReferenceStats
    meta: dict | None = None


def _load_npz(path: Path):
    from cgmbench.scoring.reference_stats import ReferenceStats, load_stats

    if path.with_suffix(".json").is_file():
        stats = load_stats(path.stem, path.parent)
        if stats is None:  # pragma: no cover - both files were just seen
            raise CgmbenchError(f"reference statistics {path} cannot be read")
        return stats
    from cgmbench.safe_paths import bytes_io

    data_file = bytes_io(path, "statistics", "statistics file")
    try:
        with np.load(data_file, allow_pickle=False) as data:
            mu, sigma = np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64)
    except Exception as e:  # noqa: BLE001 - BadZipFile, EOFError, zlib.error, KeyError, ValueError: one line
        raise IntegrityError(f"{path} is not a readable statistics file with 'mu' and 'sigma' arrays "
                             f"({type(e).__name__}: {e})",
                             "pass a .npz written by `cgmbench stats` (or one holding mu and sigma)") from None
    d = mu.shape[0] if mu.ndim == 1 else -1
    if d < 1 or sigma.shape != (d, d):
        raise IntegrityError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not fit together")
    return ReferenceStats(key=None, mu=mu, sigma=sigma, n=None, features=None, meta={}, path=path)


def _side(value: Any, label: str, batch_size: int) -> _Side:
    from cgmbench.scoring.reference_stats import ReferenceStats

    if isinstance(value, ReferenceStats):
        return _Side(label, stats=value, meta=value.meta or {})
    if isinstance(value, (str, Path)):
        path = Path(value)
        if path.suffix == ".npz":
            from cgmbench.safe_paths import check_file

            check_file(path, "statistics", "statistics file")  # a regular file of bounded size
            stats = _load_npz(path)
            return _Side(label, stats=stats, meta=stats.meta or {})
        files = folder_files(path)
        return _Side(label, len(files), files=files)
    images = as_uint8_images(value, f"images {label}")
    return _Side(label, len(images), (images[i:i + batch_size] for i in range(0, len(images), batch_size)))


def _describe(value: Any) -> str:
    if isinstance(value, (str, Path)):
        return str(value)
    if hasattr(value, "mu") and hasattr(value, "sigma"):
        return f"<reference statistics {getattr(value, 'key', None)}>"
    return f"<array {list(getattr(value, 'shape', []))}>"


def _check_stats(side: _Side, extractor: str, protocol: str, weights_sha256: str | None, feature_dim: int | None
                 ) -> None:
    meta = side.meta or {}
    for key, want in (("extractor", extractor), ("protocol", protocol), ("weights_sha256", weights_sha256)):
        have = meta.get(key)
        if have is not None and want is not None and have != want:
            raise CgmbenchError(f"the statistics of side {side.label} were made with {key} {have!r}, this FID uses "
                                f"{want!r}", f"pass {key.replace('_', '-')} {have!r}, or recompute the statistics "
                                "with the same extractor, weights and protocol")
    dim = int(side.stats.mu.shape[0])
    if feature_dim is not None and dim != feature_dim:
        raise CgmbenchError(f"the statistics of side {side.label} have {dim} features, the extractor gives "
                            f"{feature_dim}")


def fid(a, b, protocol: str | None = None, extractor: str | None = None, extractor_weights: str | None = None,
        batch_size: int = 64, device: str = "cpu") -> dict:
    """FID between ``a`` and ``b`` (folders, uint8 arrays or statistics), with its provenance.

    ``protocol`` and ``extractor`` default to what given statistics record, else ``clean`` and
    ``inception-v3``. Returns the object ``cgmbench fid --json`` prints: ``fid``, ``protocol``,
    ``extractor``, ``weights_sha256``, ``official_weights``, ``feature_dim``, ``method``, ``n_a``,
    ``n_b``, ``n``, ``dir_a``, ``dir_b`` (what each side was).
    """
    from cgmbench.metrics import frechet_distance

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise CgmbenchError(f"--batch-size must be an integer >= 1, got {batch_size!r}")
    sides = [_side(a, "a", batch_size), _side(b, "b", batch_size)]
    recorded = [s.meta for s in sides if s.stats is not None and s.meta]
    protocol = protocol or next((m["protocol"] for m in recorded if m.get("protocol")), DEFAULT_PROTOCOL)
    extractor = extractor or next((m["extractor"] for m in recorded if m.get("extractor")), DEFAULT_EXTRACTOR)

    if all(s.stats is not None for s in sides):  # nothing to extract: the statistics carry the provenance
        if extractor_weights is not None:
            raise CgmbenchError("--extractor-weights has no effect when both sides are statistics")
        meta = recorded[0] if recorded else {}
        for s in sides:
            _check_stats(s, extractor, protocol, meta.get("weights_sha256"), int(sides[0].stats.mu.shape[0]))
        prov = {"protocol": protocol, "extractor": extractor, "weights_sha256": meta.get("weights_sha256"),
                "official_weights": meta.get("official_weights"), "feature_dim": int(sides[0].stats.mu.shape[0]),
                "method": METHOD}
    else:
        from cgmbench.scoring.harness import load_extractor, provenance
        from cgmbench.scoring.reference_stats import iter_feature_batches, stats_from_features

        ext = load_extractor(extractor, protocol, extractor_weights, device)
        prov = provenance(ext, protocol, method=METHOD)
        for s in sides:
            if s.stats is not None:
                _check_stats(s, ext.name, prov["protocol"], ext.weights_sha256, int(ext.feature_dim))
                continue
            what = _describe(a if s.label == "a" else b)
            if s.count < 2:
                raise CgmbenchError(f"{what} holds {s.count} image; FID needs at least 2 per side")
            if s.files is not None:  # a folder: each image resized as it is decoded (peak memory: one image)
                feats = map(ext.features_of_prepared, _maybe_background(prepared_batches(ext, s.files, batch_size)))
            else:
                feats = iter_feature_batches(ext, s.batches, batch_size)
            try:
                mu, sigma, n, _ = stats_from_features(feats, max_features=0)
            except ValueError as error:
                raise CgmbenchError(f"{what}: {error}") from None
            s.stats, s.count = (mu, sigma), n
    moments = [(s.stats.mu, s.stats.sigma, s.stats.n) if hasattr(s.stats, "mu") else (*s.stats, s.count)
               for s in sides]
    (mu_a, sigma_a, n_a), (mu_b, sigma_b, n_b) = moments
    value = frechet_distance(mu_a, sigma_a, mu_b, sigma_b)
    return {"fid": value, **prov, "n_a": n_a, "n_b": n_b, "n": [n_a, n_b], "dir_a": _describe(a), "dir_b": _describe(b)}
