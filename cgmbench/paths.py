"""Where cgmbench keeps things on disk.

* ``CGMBENCH_HOME`` (default ``~/.cache/cgmbench``): ``weights/`` (extractor and model weights),
  ``data/`` (datasets), ``stats/`` (reference statistics cache).
* ``CGMBENCH_RUNS`` (default ``./cgmbench-runs``): where ``cgmbench run`` writes a run when no
  ``--out`` is given: ``<runs>/<task>/<model>-<knobs>-n<N>-s<seed>/``.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    env = os.environ.get("CGMBENCH_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "cgmbench"


def weights_dir() -> Path:
    return home() / "weights"


def data_dir() -> Path:
    return home() / "data"


def runs_dir() -> Path:
    return Path(os.environ.get("CGMBENCH_RUNS", "cgmbench-runs"))


def expand(path: str) -> Path:
    """Expand ``${CGMBENCH_HOME}``, ``${CGMBENCH_DATA}``, other environment variables and ``~``."""
    env = dict(os.environ)
    env.setdefault("CGMBENCH_HOME", str(home()))
    env.setdefault("CGMBENCH_DATA", str(data_dir()))
    for key, value in env.items():
        path = path.replace("${" + key + "}", value)
    return Path(os.path.expandvars(path)).expanduser()


def hf_cache_dir() -> str:
    """Where the Hugging Face hub cache lives (``HF_HUB_CACHE``, else ``$HF_HOME/hub``), read at each call:
    pass it as ``cache_dir`` because ``huggingface_hub`` reads ``HF_HOME`` only once, at import."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home_ = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return os.path.join(home_, "hub")

