"""Deterministic seeding.

Sample ``i`` of a run is generated from ``sample_seed(run_seed, task, i)``: a seed that depends
only on the run seed, the task name and the sample index, never on batch position, worker,
rank or resume point. A generator draws all of sample ``i``'s randomness from
``torch.Generator().manual_seed(sample_seed(...))``, so the samples are the same for any batch
size, shard layout or number of processes.

The same derivation names the procedural worlds' scenes (``derive_seed("shapes", task, split, i)``).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

_MASK63 = (1 << 63) - 1


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from the SHA-256 of ``parts`` joined by ``/`` (stable across platforms)."""
    text = "/".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") & _MASK63


def sample_seed(run_seed: int, task: str, index: int) -> int:
    """The seed of sample ``index`` of a run of ``task`` with seed ``run_seed``."""
    return derive_seed("cgmbench-sample", task, int(run_seed), int(index))


def sample_seeds(run_seed: int, task: str, indices) -> list[int]:
    return [sample_seed(run_seed, task, int(i)) for i in indices]


def torch_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def numpy_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(int(seed))
