"""The samples of a run: uint8 arrays in shards, with an index.

Layout of ``DIR/samples/``::

    index.json                  {"format", "config", "sample_shape", "shards": [{file, start, stop, sha256}]}
    00000000-00000064.npy       uint8 [stop-start, *sample_shape], samples start..stop-1

A shard is written atomically and only then listed in the index (also written atomically), so a
run killed at any point leaves a consistent store; unlisted shard files are leftovers and get
overwritten. :meth:`SampleStore.digest` is the SHA-256 of the decoded samples in index order —
the same for any batch size or shard layout.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Iterator

import numpy as np

from cgmbench.atomic import atomic_write_bytes, atomic_write_json
from cgmbench.errors import CgmbenchError, IntegrityError

FORMAT = "cgmbench.run.samples/1"


class SampleStore:
    def __init__(self, root: str | Path, index: dict):
        self.root = Path(root)
        self.index = index

    @classmethod
    def create(cls, root: str | Path, config: dict, sample_shape: tuple[int, ...]) -> "SampleStore":
        store = cls(root, {"format": FORMAT, "config": config, "sample_shape": list(sample_shape), "shards": []})
        store._save()
        return store

    @classmethod
    def open(cls, root: str | Path) -> "SampleStore":
        path = Path(root) / "index.json"
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise CgmbenchError(f"cannot read the sample index {path}: {e}") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise CgmbenchError(f"{path} is not a cgmbench sample index ({FORMAT})")
        return cls(root, index)

    @staticmethod
    def exists(root: str | Path) -> bool:
        return (Path(root) / "index.json").is_file()

    @property
    def config(self) -> dict:
        return self.index["config"]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.index["sample_shape"])

    def _save(self) -> None:
        atomic_write_json(self.root / "index.json", self.index)

    def covered(self) -> np.ndarray:
        """Sorted indices that have samples."""
        parts = [np.arange(s["start"], s["stop"]) for s in self.index["shards"]]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    def missing(self, n: int) -> list[int]:
        have = np.zeros(n, bool)
        for s in self.index["shards"]:
            have[s["start"]:min(s["stop"], n)] = True
        return np.flatnonzero(~have).tolist()

    def write_shard(self, start: int, samples: np.ndarray) -> None:
        if samples.dtype != np.uint8 or tuple(samples.shape[1:]) != self.sample_shape:
            raise CgmbenchError(f"samples must be uint8 [B, {', '.join(map(str, self.sample_shape))}], "
                                f"got {samples.dtype} {tuple(samples.shape)}")
        stop = start + len(samples)
        name = f"{start:08d}-{stop:08d}.npy"
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(samples), allow_pickle=False)
        data = buf.getvalue()
        atomic_write_bytes(self.root / name, data)
        self.index["shards"].append({"file": name, "start": start, "stop": stop,
                                     "sha256": hashlib.sha256(data).hexdigest()})
        self.index["shards"].sort(key=lambda s: s["start"])
        self._save()

    def _load_shard(self, shard: dict) -> np.ndarray:
        path = self.root / shard["file"]
        data = path.read_bytes() if path.is_file() else b""
        if hashlib.sha256(data).hexdigest() != shard["sha256"]:
            raise IntegrityError(f"sample shard {path} is missing or corrupt (checksum mismatch)",
                                "delete the run folder and run again")
        arr = np.load(io.BytesIO(data), allow_pickle=False)
        if arr.dtype != np.uint8 or tuple(arr.shape) != (shard["stop"] - shard["start"], *self.sample_shape):
            raise CgmbenchError(f"sample shard {path} has shape {arr.shape}, expected "
                                f"{(shard['stop'] - shard['start'], *self.sample_shape)}")
        return arr

    def iter_batches(self, n: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, samples)`` in index order over 0..n-1 (which must all be present)."""
        expected = 0
        for shard in self.index["shards"]:
            if n is not None and shard["start"] >= n:
                break
            if shard["start"] != expected:
                raise CgmbenchError(f"samples {expected}..{shard['start'] - 1} are missing in {self.root}",
                                    "continue the run with --resume")
            arr = self._load_shard(shard)
            if n is not None:
                arr = arr[: n - shard["start"]]
            yield shard["start"], arr
            expected = shard["start"] + len(arr)
        if n is not None and expected < n:
            raise CgmbenchError(f"samples {expected}..{n - 1} are missing in {self.root}", "continue with --resume")

    def read(self, start: int, stop: int) -> np.ndarray:
        parts = [arr[max(0, start - s):max(0, stop - s)] for s, arr in self.iter_batches(stop)
                 if s + len(arr) > start]
        return np.concatenate(parts)

    def digest(self, n: int) -> str:
        """SHA-256 over samples 0..n-1 in index order: shape header, then raw uint8 bytes."""
        h = hashlib.sha256(f"cgmbench-samples:{list(self.sample_shape)}".encode())
        for _, arr in self.iter_batches(n):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()
