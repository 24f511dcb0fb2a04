"""Input validation shared by the metric functions.

Every public metric accepts NumPy arrays, PyTorch tensors (any device, any float dtype) or
nested sequences, and converts them here to C-contiguous ``float64`` NumPy arrays. Bad
input (wrong rank, mismatched widths, NaN/Inf) raises ``ValueError`` naming the argument
and saying how to fix it, instead of producing a silently wrong number.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def to_numpy(x: Any) -> np.ndarray:
    """``x`` as a NumPy array without changing its dtype (tensors are detached and moved to CPU)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def as_float64(x: Any, name: str, ndim: int) -> np.ndarray:
    """``x`` as a ``float64`` array of rank ``ndim``; raise ``ValueError`` on NaN/Inf or wrong rank."""
    arr = to_numpy(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real-valued, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if arr.ndim != ndim:
        what = {1: "a vector (d,)", 2: "a matrix (n, d)"}.get(ndim, f"rank {ndim}")
        raise ValueError(f"{name} must be {what}, got shape {tuple(arr.shape)}")
    check_finite(arr, name)
    return arr


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` naming the first non-finite entry of ``arr``."""
    finite = np.isfinite(arr)
    if not finite.all():
        bad = np.argwhere(~finite)
        first = tuple(int(i) for i in bad[0])
        raise ValueError(
            f"{name} contains {len(bad)} non-finite value(s) (NaN or Inf), first at index {first} "
            f"= {arr[first]}; drop or fix those samples (e.g. images that decoded to NaN) before computing the metric"
        )


def features(x: Any, name: str, min_rows: int = 1) -> np.ndarray:
    """A feature matrix ``(n, d)`` in ``float64`` with at least ``min_rows`` rows."""
    arr = as_float64(x, name, ndim=2)
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows (samples), got {arr.shape[0]}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} has zero feature columns, shape {tuple(arr.shape)}")
    return arr


def same_width(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` unless two feature matrices have the same number of columns."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{name_a} has {a.shape[1]} feature dims but {name_b} has {b.shape[1]}; both sides must come from "
            f"the same extractor and layer"
        )
