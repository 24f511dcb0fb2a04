"""One writer per output folder, and what a kill can leave behind.

:func:`folder_lock` takes an exclusive, non-blocking ``flock`` on the folder itself (its directory file
descriptor: no lock file is written, so nothing stale can be left). The kernel drops the lock when the
process ends in any way, SIGKILL included, so a lock never outlives its holder. A second ``run``,
``run --resume`` or ``sweep`` on a folder that a live process holds is refused with one line.

:func:`leftovers` names what an interrupted atomic write can leave (``.NAME.XXXX.tmp`` files, an empty
``samples/``): such files are never read and are removed by the next writer that holds the lock.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from cgmbench.errors import CgmbenchError

try:  # POSIX; on other systems runs are not locked (documented in docs/reliability.md)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


def _is_tmp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def leftovers(folder: Path) -> list[Path]:
    """The temporary files of interrupted atomic writes in ``folder`` and ``folder/samples``."""
    out = []
    for d in (folder, folder / "samples"):
        if d.is_dir() and not d.is_symlink():
            out += [d / name for name in sorted(os.listdir(d)) if _is_tmp(name) and (d / name).is_file()]
    return out


def is_pristine(folder: Path) -> bool:
    """True when ``folder`` holds nothing but what a kill before the first index write leaves: an empty
    ``samples/`` and temporary files of atomic writes (so a new run may start there)."""
    for name in os.listdir(folder):
        path = folder / name
        if _is_tmp(name) and path.is_file() and not path.is_symlink():
            continue
        if name == "samples" and path.is_dir() and not path.is_symlink():
            if all(_is_tmp(n) and (path / n).is_file() for n in os.listdir(path)):
                continue
        return False
    return True


def remove_leftovers(folder: Path) -> int:
    """Delete the leftovers of interrupted atomic writes (call only while holding the folder's lock)."""
    count = 0
    for path in leftovers(folder):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            count += 1
    return count


def check_out_folder(out: Path, what: str = "output folder") -> None:
    """Refuse an ``--out`` that is not a folder (a file, a broken link, a device) before anything is written."""
    if out.is_symlink() and not out.exists():
        raise CgmbenchError(f"{what} {out} is a broken symbolic link", "choose another --out")
    if out.exists() and not out.is_dir():
        raise CgmbenchError(f"{what} {out} exists and is not a folder", "choose a new or empty folder for --out")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise CgmbenchError(f"{what} {out}: {parent} is a file, not a folder", "choose another --out")
        if parent.exists():
            break


@contextlib.contextmanager
def folder_lock(folder: Path, what: str = "run"):
    """Hold an exclusive lock on ``folder`` (created if missing) for the ``with`` block, or refuse."""
    folder = Path(folder)
    check_out_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise CgmbenchError(
                    f"{folder} is in use by another cgmbench {what} (it holds the folder's lock)",
                    "wait for it to finish (then --resume, if needed), or choose another --out") from None
            raise
        yield
    finally:
        os.close(fd)  # releases the lock
