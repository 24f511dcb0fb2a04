"""CIFAR-10 "python version" batches read without unpickling arbitrary objects.

Each batch (``data_batch_1`` .. ``data_batch_5``, ``test_batch``) is a Python-2 pickle of a dict
``{b"batch_label", b"labels", b"data", b"filenames"}`` whose ``data`` is a uint8 numpy array ``[10000, 3072]``
(rows: the 1024 red, then green, then blue values of a 32x32 image, row-major). The unpickler here resolves
exactly the globals numpy needs to rebuild a plain array (``_reconstruct``, ``ndarray``, ``dtype``; and
``_codecs.encode``, which Python-3 protocol-2 pickles use for bytes) and
refuses every other one, so a tampered file cannot run code; the result is then checked to be that dict of a
uint8 ``[n, 3072]`` array and int labels. Files come from a folder (``cifar-10-batches-py/``) or straight
from the official ``cifar-10-python.tar.gz`` (members read in memory, nothing extracted).
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from cgmbench.errors import CgmbenchError, IntegrityError

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes (a str -> bytes conversion)
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")


def parse_batch(raw: bytes, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [n, 3, 32, 32], labels int64 [n])`` of one pickled batch; IntegrityError if malformed."""
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - any failure means the file is not a CIFAR-10 batch
        raise IntegrityError(f"{what} is not a CIFAR-10 python batch: {type(e).__name__}: {e}",
                             "fetch it again: cgmbench weights fetch cifar10:python") from None
    if not isinstance(obj, dict):
        raise IntegrityError(f"{what} is not a CIFAR-10 python batch (a {type(obj).__name__}, not a dict)")
    obj = {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}
    data, labels = obj.get("data"), obj.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise IntegrityError(f"{what}: 'data' must be a uint8 [n, 3072] array, got "
                             f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}")
    if not isinstance(labels, list) or len(labels) != len(data) or not all(isinstance(v, int) for v in labels):
        raise IntegrityError(f"{what}: 'labels' must be a list of {len(data)} ints")
    return data.reshape(-1, 3, 32, 32).copy(), np.asarray(labels, np.int64)


def _read_member(source: Path, member: str) -> bytes:
    if source.is_dir():
        for path in (source / member, source / "cifar-10-batches-py" / member):
            if path.is_file():
                return path.read_bytes()
        raise CgmbenchError(f"CIFAR-10 batch {member} not found in {source}",
                            "cgmbench weights fetch cifar10:python (or point to the unpacked cifar-10-batches-py/)")
    try:
        with tarfile.open(source, "r:gz") as tar:
            f = tar.extractfile(f"cifar-10-batches-py/{member}")
            if f is None:
                raise KeyError(member)
            return f.read()
    except (OSError, tarfile.TarError, KeyError) as e:
        raise IntegrityError(f"cannot read {member} from {source}: {type(e).__name__}: {e}",
                             "fetch it again: cgmbench weights fetch cifar10:python") from None


def load_split(source: str | Path, split: str, limit: int | None = None) -> np.ndarray:
    """The first ``limit`` images of ``split`` (``"train"``: data_batch_1..5 in order, ``"test"``: test_batch)
    as uint8 ``[n, 3, 32, 32]``, from a folder or the official ``.tar.gz``."""
    source = Path(source)
    if not source.exists():
        raise CgmbenchError(f"CIFAR-10 not found at {source}", "cgmbench weights fetch cifar10:python")
    members = TRAIN_BATCHES if split == "train" else (TEST_BATCH,) if split == "test" else None
    if members is None:
        raise CgmbenchError(f"CIFAR-10 split must be 'train' or 'test', got {split!r}")
    parts, have = [], 0
    for member in members:
        if limit is not None and have >= limit:
            break
        try:
            raw = _read_member(source, member)
        except CgmbenchError:
            if parts and split == "train":  # fewer train batches than five (tiny local copies): use those there
                break
            raise
        images, _ = parse_batch(raw, f"{source}:{member}")
        parts.append(images)
        have += len(images)
    images = np.concatenate(parts)
    return images[:limit] if limit is not None else images
