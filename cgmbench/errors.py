"""The error types users see.

Anything a user can get wrong (unknown task, malformed spec, knob out of range, missing
weights or data, corrupt image, an output folder holding another run) raises
:class:`CgmbenchError`. The command line prints it as one line and exits with status 2;
no traceback, no partial record.
"""

from __future__ import annotations


class CgmbenchError(Exception):
    """A user-facing error: ``message`` says what is wrong, ``hint`` how to fix it."""

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)

    def __str__(self) -> str:  # one line, always
        text = f"{self.message}; {self.hint}" if self.hint else self.message
        return " ".join(text.split())


class IntegrityError(CgmbenchError):
    """A stored file does not verify: a sample shard, reference statistics or a weights file is corrupt,
    truncated, or not the content its digest names. Never turned into a "not computed" metric: the run stops."""


class NotComputable(CgmbenchError):
    """A metric cannot be computed for this run (no weights, no true targets, an undefined case): recorded in
    ``metrics_pending`` with this message, never as a number."""
