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

from cgmbench.errors import CgmbenchError

DEFAULT_PROTOCOL = "clean"
DEFAULT_EXTRACTOR = "inception-v3"
METHOD = "Fréchet distance of float64 moments (symmetric eigen method)"


def folder_batches(folder: str | Path, batch_size: int) -> tuple[int, Iterator[np.ndarray]]:
    """``(count, batches)``: uint8 ``[B, 3, H, W]`` batches of one size each, files in name order."""
    from cgmbench.images import list_images, read_image

    path = Path(folder)
    if not path.is_dir():
        raise CgmbenchError(f"image folder {path} does not exist or is not a folder")
    files = list_images(path)
    if not files:
        raise CgmbenchError(f"image folder {path} holds no images",
                            "expected .png, .jpg, .jpeg, .bmp, .webp or .tif files directly in the folder")

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
    stats: Any = None  # ReferenceStats
    meta: dict | None = None


def _load_npz(path: Path):
    from cgmbench.scoring.reference_stats import ReferenceStats, load_stats

    if path.with_suffix(".json").is_file():
        stats = load_stats(path.stem, path.parent)
        if stats is None:  # pragma: no cover - both files were just seen
            raise CgmbenchError(f"reference statistics {path} cannot be read")
        return stats
    try:
        with np.load(path, allow_pickle=False) as data:
            mu, sigma = np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64)
    except (OSError, ValueError, KeyError) as e:
        raise CgmbenchError(f"{path} is not a statistics file with 'mu' and 'sigma' arrays: {e}",
                            "pass a .npz written by `cgmbench stats` (or one holding mu and sigma)") from None
    return ReferenceStats(key=None, mu=mu, sigma=sigma, n=None, features=None, meta={}, path=path)


def _side(value: Any, label: str, batch_size: int) -> _Side:
    from cgmbench.scoring.reference_stats import ReferenceStats

    if isinstance(value, ReferenceStats):
        return _Side(label, stats=value, meta=value.meta or {})
    if isinstance(value, (str, Path)):
        path = Path(value)
        if path.suffix == ".npz":
            if not path.is_file():
                raise CgmbenchError(f"statistics file {path} does not exist")
            stats = _load_npz(path)
            return _Side(label, stats=stats, meta=stats.meta or {})
        count, batches = folder_batches(path, batch_size)
        return _Side(label, count, batches)
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
            try:
                mu, sigma, n, _ = stats_from_features(iter_feature_batches(ext, s.batches, batch_size), max_features=0)
            except ValueError as error:
                raise CgmbenchError(f"{what}: {error}") from None
            s.stats, s.count = (mu, sigma), n
    moments = [(s.stats.mu, s.stats.sigma, s.stats.n) if hasattr(s.stats, "mu") else (*s.stats, s.count)
               for s in sides]
    (mu_a, sigma_a, n_a), (mu_b, sigma_b, n_b) = moments
    value = frechet_distance(mu_a, sigma_a, mu_b, sigma_b)
    return {"fid": value, **prov, "n_a": n_a, "n_b": n_b, "n": [n_a, n_b], "dir_a": _describe(a), "dir_b": _describe(b)}
