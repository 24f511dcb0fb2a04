"""Shared pytest fixtures.

The official-architecture fixtures live in ``../shared/fixtures/official`` beside the
checkout (CI lays a copy of ``shared/`` there). ``CGMBENCH_SHARED_DIR`` overrides it.
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


def shared_dir() -> Path:
    env = os.environ.get("CGMBENCH_SHARED_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def official_dir() -> Path:
    """Folder with the official-architecture manifests and numeric fixtures."""
    path = shared_dir() / "fixtures" / "official"
    if not path.is_dir():
        raise FileNotFoundError(
            f"official fixtures not found at {path}; set CGMBENCH_SHARED_DIR to the shared/ folder"
        )
    return path


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
