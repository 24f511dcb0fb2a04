"""Every failure of the command line as one line (``cgmbench --debug …`` shows the traceback instead).

:class:`~cgmbench.errors.CgmbenchError` already is one line. Other exceptions are mapped here: operating-system
errors by ``errno`` (a full disk, a file-size limit, a read-only or forbidden folder, a missing file), input nested
too deeply, memory exhaustion, and, last, anything else as ``internal error`` with the advice to rerun with
``--debug`` and report it. Every write of a run is atomic (:mod:`cgmbench.atomic`), so a failed write leaves the
previous state and the same command (with ``--resume`` for a run) continues once the cause is fixed.
"""

from __future__ import annotations

import errno
import os

from cgmbench.errors import CgmbenchError

_OS_ERRORS = {
    errno.ENOSPC: ("no space left on the device", "free some space, then rerun (with --resume for a run)"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or raise the quota, then rerun (with --resume for a run)"),
    errno.EFBIG: ("file too large for the file system or the process's file-size limit (ulimit -f)",
                  "raise the limit or write to another file system, then rerun (with --resume for a run)"),
    errno.EROFS: ("read-only file system", "choose a writable --out (or $CGMBENCH_HOME / $CGMBENCH_RUNS)"),
    errno.EACCES: ("permission denied", "check the permissions, or choose another --out"),
    errno.EPERM: ("operation not permitted", "check the permissions, or choose another --out"),
    errno.ENOENT: ("no such file or folder", "check the path"),
    errno.ENOTDIR: ("a path component is a file, not a folder", "check the path (e.g. --out)"),
    errno.EISDIR: ("is a folder, not a file", "give a file"),
    errno.EIO: ("input/output error from the device", "check the disk, then rerun (with --resume for a run)"),
    errno.ENAMETOOLONG: ("file name too long", "choose a shorter path"),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n), then rerun"),
}


def split_debug(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--debug`` (accepted anywhere before ``--``), and whether it (or CGMBENCH_DEBUG=1) was given."""
    debug = os.environ.get("CGMBENCH_DEBUG", "") not in ("", "0")
    out, passthrough = [], False
    for a in argv:
        if a == "--" and not passthrough:
            passthrough = True
        elif a == "--debug" and not passthrough:
            debug = True
            continue
        out.append(a)
    return out, debug


def describe_failure(e: BaseException) -> str:
    """One line saying what went wrong and what to do."""
    if isinstance(e, CgmbenchError):
        return str(e)
    if isinstance(e, OSError) and e.errno in _OS_ERRORS:
        what, todo = _OS_ERRORS[e.errno]
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        return " ".join(f"{what}{where}; {todo}".split())
    if isinstance(e, RecursionError):
        return ("an input is nested too deeply to read (a JSON or TOML file with thousands of nested tables or "
                "arrays?); check the files you passed")
    if isinstance(e, MemoryError):
        return ("out of memory; use fewer samples (--num-samples), a smaller --batch-size, or smaller inputs")
    text = " ".join(str(e).split())[:300]
    return (f"internal error: {type(e).__name__}: {text}; rerun with --debug for the traceback and report it "
            "(an interrupted run continues with --resume)")
