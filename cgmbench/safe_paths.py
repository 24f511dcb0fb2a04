"""Reading paths a user gave: only regular files and folders, never more than a stated size.

Every path that comes from a user -- samples, result and run records, checkpoints, extractor
weights, task files, statistics, run folders -- is opened through this module:

* a FIFO, socket, character or block device (``/dev/zero``, ``/dev/stdin``) is refused at once,
  before anything is read, so nothing hangs and nothing is read without end;
* a regular file larger than the limit of its kind is refused before it is read, and a read never
  returns more than that limit (a file that grows while it is read is refused too);
* the file is opened with ``O_NONBLOCK`` and checked with ``fstat`` on the open descriptor, so a
  regular file swapped for a FIFO between the check and the open cannot block either.

Symbolic links to regular files and folders are followed (the target is what is checked).
Every refusal is one :class:`~cgmbench.errors.CgmbenchError` line naming the path and the limit.
"""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

from cgmbench.errors import CgmbenchError

MiB = 1 << 20
GiB = 1 << 30

#: Limits, by kind of input (bytes). Documented in docs/reliability.md.
LIMITS = {
    "task file": 1 * MiB,               # a TOML spec; the largest shipped one is a few kB
    "record": 64 * MiB,                 # run.json, RESULT.json, sweep.json, index.json
    "statistics": 4 * GiB,              # reference statistics .npz (features of up to 10k images)
    "shard": 8 * GiB,                   # one .npy sample shard
    "image": 256 * MiB,                 # one image file (the pixel cap is separate: cgmbench.images)
    "archive": 1 * GiB,                 # --samples archive (cgmbench.results.submit.MAX_ARCHIVE_BYTES)
    "checkpoint": 256 * GiB,            # model checkpoints and extractor weights
}


def _kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def _limit(kind: str, max_bytes: int | None) -> int:
    if max_bytes is not None:
        return int(max_bytes)
    if kind not in LIMITS:
        raise ValueError(f"unknown input kind {kind!r}")
    return LIMITS[kind]


def check_file(path: str | os.PathLike, kind: str, what: str | None = None, max_bytes: int | None = None) -> Path:
    """``path`` if it names a regular file (or a link to one) of at most the ``kind``'s limit; else one error line.

    ``what`` names the input in the message (default: ``kind``)."""
    path = Path(path)
    what = what or kind
    limit = _limit(kind, max_bytes)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CgmbenchError(f"{what} {path} does not exist") from None
    except OSError as e:
        raise CgmbenchError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CgmbenchError(f"{what} {path} is {_kind_of(st.st_mode)}; only regular files are read",
                            f"give the path of a regular {what} file")
    if st.st_size > limit:
        raise CgmbenchError(f"{what} {path} is {st.st_size} bytes, over the {limit}-byte {kind} limit")
    return path


def check_folder(path: str | os.PathLike, what: str = "folder") -> Path:
    """``path`` if it names a folder (or a link to one); else one error line."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CgmbenchError(f"{what} {path} does not exist") from None
    except OSError as e:
        raise CgmbenchError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if not stat.S_ISDIR(st.st_mode):
        kind = "a regular file" if stat.S_ISREG(st.st_mode) else _kind_of(st.st_mode)
        raise CgmbenchError(f"{what} {path} is {kind}, not a folder")
    return path


def is_regular_or_folder(path: str | os.PathLike) -> bool:
    """True for a regular file or a folder (links followed); False for anything else, including nothing."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) or stat.S_ISDIR(mode)


def open_file(path: str | os.PathLike, kind: str, what: str | None = None, max_bytes: int | None = None):
    """A binary file object of the regular file ``path`` (checked on the open descriptor, never blocking)."""
    path = check_file(path, kind, what, max_bytes)
    what = what or kind
    limit = _limit(kind, max_bytes)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise CgmbenchError(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped since check_file
            raise CgmbenchError(f"{what} {path} is {_kind_of(st.st_mode)}; only regular files are read")
        if st.st_size > limit:
            raise CgmbenchError(f"{what} {path} is {st.st_size} bytes, over the {limit}-byte {kind} limit")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | os.PathLike, kind: str, what: str | None = None, max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file ``path``: at most the ``kind``'s limit, or one error line."""
    limit = _limit(kind, max_bytes)
    with open_file(path, kind, what, max_bytes) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise CgmbenchError(f"{what or kind} {path} grew over the {limit}-byte {kind} limit while being read")
    return data


def read_text(path: str | os.PathLike, kind: str, what: str | None = None, max_bytes: int | None = None) -> str:
    data = read_bytes(path, kind, what, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CgmbenchError(f"{what or kind} {path} is not UTF-8 text (byte {e.start})") from None


def read_json(path: str | os.PathLike, kind: str = "record", what: str | None = None,
              max_bytes: int | None = None, strict: bool = True):
    """Parsed JSON of ``path`` (``strict``: NaN/Infinity refused); any failure is one error line."""
    text = read_text(path, kind, what, max_bytes)

    def no_constants(name):
        raise ValueError(f"{name} is not valid JSON")

    try:
        return json.loads(text, parse_constant=no_constants) if strict else json.loads(text)
    except RecursionError:
        raise CgmbenchError(f"{what or kind} {path} is nested too deeply") from None
    except ValueError as e:
        raise CgmbenchError(f"{what or kind} {path} is not valid JSON: {e}") from None


def bytes_io(path: str | os.PathLike, kind: str, what: str | None = None, max_bytes: int | None = None) -> io.BytesIO:
    """The file's bytes as a seekable in-memory file (for readers that need ``seek``, such as ``np.load``)."""
    return io.BytesIO(read_bytes(path, kind, what, max_bytes))
