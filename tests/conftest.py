"""Shared pytest fixtures.

The official-architecture fixtures (manifests of the released state dicts, numeric fixtures of the official
code) live in the repository, ``tests/fixtures/official/`` (provenance: its README.md), so a fresh clone
with nothing beside it passes its tests.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# Before any fixture (module-scoped ones included) runs: nothing in the test session may touch the user's
# cache, runs folder or the network. Each test then gets its own CGMBENCH_HOME (below).
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="cgmbench-tests-"))
os.environ["CGMBENCH_HOME"] = str(_SESSION_DIR / "home")
os.environ["CGMBENCH_RUNS"] = str(_SESSION_DIR / "runs")
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_var] = "1"
# One intra-op thread, in this process and every subprocess (torchrun ranks, CLI runs): CPU kernels then
# sum in one fixed order, so "equal to the reference library" and "1 rank == 2 ranks" compare like with like.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"


OFFICIAL_FIXTURES = REPO_ROOT / "tests" / "fixtures" / "official"


@pytest.fixture(scope="session")
def official_dir() -> Path:
    """Folder with the official-architecture manifests and numeric fixtures (inside the repository)."""
    return OFFICIAL_FIXTURES


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own CGMBENCH_HOME so nothing touches the user's cache or network."""
    home = tmp_path_factory.mktemp("cgmbench_home")
    monkeypatch.setenv("CGMBENCH_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    yield home
