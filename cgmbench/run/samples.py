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
import re
from pathlib import Path
from typing import Iterator

import numpy as np

from cgmbench.atomic import atomic_write_bytes, atomic_write_json
from cgmbench.errors import CgmbenchError, IntegrityError

FORMAT = "cgmbench.run.samples/1"


_SHARD_NAME = re.compile(r"^[0-9]{8,}-[0-9]{8,}\.npy$")


def check_shard_name(name, index_path: Path) -> str:
    """A shard file name from an index: a plain ``START-STOP.npy`` inside the run folder, never a path."""
    if not isinstance(name, str) or not _SHARD_NAME.match(name):
        raise IntegrityError(f"{index_path}: shard file name {str(name)[:80]!r} is not a shard name like "
                             "00000000-00000064.npy (names that leave the run folder are refused)",
                             "the index was edited or is not cgmbench's; run again into a new --out")
    return name


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
        from cgmbench.safe_paths import read_json

        path = Path(root) / "index.json"
        index = read_json(path, "record", "sample index", strict=False)  # regular file, bounded size
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise CgmbenchError(f"{path} is not a cgmbench sample index ({FORMAT})")
        check_index(index, path)
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

    def nonfinite_count(self) -> int:
        """Samples stored with NaN/inf replaced (runs with ``--allow-nonfinite``; see ``write_shard``)."""
        return sum(int(s.get("nonfinite", 0)) for s in self.index["shards"])

    def write_shard(self, start: int, samples: np.ndarray, nonfinite: int = 0) -> None:
        if samples.dtype != np.uint8 or tuple(samples.shape[1:]) != self.sample_shape:
            raise CgmbenchError(f"samples must be uint8 [B, {', '.join(map(str, self.sample_shape))}], "
                                f"got {samples.dtype} {tuple(samples.shape)}")
        stop = start + len(samples)
        name = f"{start:08d}-{stop:08d}.npy"
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(samples), allow_pickle=False)
        data = buf.getvalue()
        atomic_write_bytes(self.root / name, data)
        shard = {"file": name, "start": start, "stop": stop, "sha256": hashlib.sha256(data).hexdigest()}
        if nonfinite:
            shard["nonfinite"] = int(nonfinite)
        self.index["shards"].append(shard)
        self.index["shards"].sort(key=lambda s: s["start"])
        self._save()

    def _load_shard(self, shard: dict) -> np.ndarray:
        from cgmbench.safe_paths import is_regular_or_folder, read_bytes

        check_shard_name(shard.get("file"), self.root / "index.json")
        path = self.root / shard["file"]
        # only a regular file inside the run folder is read (a FIFO/device reads as missing: never blocks)
        data = read_bytes(path, "shard", "sample shard") if path.is_file() and is_regular_or_folder(path) else b""
        if hashlib.sha256(data).hexdigest() != shard["sha256"]:
            raise IntegrityError(f"sample shard {path} is missing or corrupt (checksum mismatch)",
                                 "run the same command with --resume: it regenerates damaged shards")
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:  # e.g. an object array (pickle), or not .npy at all
            raise IntegrityError(f"sample shard {path} is not a plain uint8 .npy array ({e})",
                                 "run the same command with --resume: it regenerates damaged shards") from None
        if arr.dtype != np.uint8 or tuple(arr.shape) != (shard["stop"] - shard["start"], *self.sample_shape):
            raise CgmbenchError(f"sample shard {path} has shape {arr.shape}, expected "
                                f"{(shard['stop'] - shard['start'], *self.sample_shape)}")
        return arr

    def verify(self) -> list[tuple[dict, str]]:
        """``(shard, what is wrong)`` for every listed shard that is missing, corrupt or mis-shaped."""
        bad = []
        for shard in self.index["shards"]:
            try:
                self._load_shard(shard)
            except CgmbenchError as e:
                bad.append((shard, str(e)))
        return bad

    def drop_damaged(self) -> list[tuple[dict, str]]:
        """Verify every shard; unlist (and delete) the damaged ones so that :meth:`missing` names their samples
        again. Samples are a pure function of their index, so regenerating them restores the run exactly.
        Returns what was dropped (empty: every shard verified)."""
        bad = self.verify()
        if bad:
            dropped = {id(s) for s, _ in bad}
            self.index["shards"] = [s for s in self.index["shards"] if id(s) not in dropped]
            self._save()
            for shard, _ in bad:
                path = self.root / shard["file"]
                if path.is_file() or path.is_symlink():
                    path.unlink()
        return bad

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


def check_index(index: dict, path) -> None:
    """Reject an ``index.json`` whose fields have the wrong types (hand-edited or foreign), with one line."""
    def bad(what: str) -> CgmbenchError:
        return IntegrityError(f"sample index {path}: {what}",
                              "the index is damaged; restore it, or delete the run folder and run again")

    if not isinstance(index.get("config"), dict):
        raise bad("config must be an object")
    shape = index.get("sample_shape")
    if not (isinstance(shape, list) and shape and all(type(d) is int and 0 < d <= 1 << 16 for d in shape)):
        raise bad("sample_shape must be a list of positive integers")
    shards = index.get("shards")
    if not isinstance(shards, list):
        raise bad("shards must be a list")
    for i, s in enumerate(shards):
        if not isinstance(s, dict):
            raise bad(f"shards[{i}] must be an object")
        start, stop, name, sha = s.get("start"), s.get("stop"), s.get("file"), s.get("sha256")
        if not (type(start) is int and type(stop) is int and 0 <= start < stop):
            raise bad(f"shards[{i}] needs integers 0 <= start < stop")
        try:  # never a path: names that leave the run folder are refused first
            check_shard_name(name, path)
        except IntegrityError as e:
            raise bad(f"shards[{i}].file: {e.message}") from None
        if not (isinstance(name, str) and name == f"{start:08d}-{stop:08d}.npy"):
            raise bad(f"shards[{i}].file must be {start:08d}-{stop:08d}.npy")
        if not (isinstance(sha, str) and len(sha) == 64):
            raise bad(f"shards[{i}].sha256 must be a hex digest")
        if type(s.get("nonfinite", 0)) is not int:
            raise bad(f"shards[{i}].nonfinite must be an integer")
