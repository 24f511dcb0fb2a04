"""The error type of the extractors: a :class:`~cgmbench.errors.CgmbenchError` that is also a ``ValueError``.

Being a ``CgmbenchError``, the command line prints it as one line (exit status 2); being a
``ValueError``, code that validates inputs the Python way (``except ValueError``) keeps working.
"""

from __future__ import annotations

from cgmbench.errors import CgmbenchError


class ExtractorError(CgmbenchError, ValueError):
    """Bad input to a feature extractor (dtype, shape, protocol, name) or unusable weights."""
