"""Run records: ``DIR/run.json``, versioned schema ``cgmbench.run/1``, written atomically.

Top-level fields::

    schema            "cgmbench.run/1"
    identity_sha256   SHA-256 of the reproducible part (everything except environment and timings)
    task              {name, kind, spec_sha256}
    model             {name, spec, checkpoint {name, sha256, path, source}, knobs}
    n, seed           number of samples, run seed (sample i uses sample_seed(seed, task, i))
    samples           {dir, format, sample_shape (the model's native size), seeding, native_resolution,
                      eval_resolution (the task's), resize ("none" or a cgmbench.scoring.resize protocol),
                      resize_direction ("none", "down", "up")}
    samples_sha256    digest of the decoded samples in index order (any batch size / shard layout)
    metrics           {name: {... "value" or "overall": {"value", "ci95", "n"}, protocol/version ...}}
    metrics_pending   "name: reason" for each metric the task asks for that could not be computed
    environment       cgmbench version and git commit, python, torch, CUDA, numpy, platform, device
    timings           wall-clock seconds per phase and UTC timestamps (of the last session of the run)

Two runs of the same configuration have equal ``identity_sha256`` (a resumed run included); only
``environment`` and ``timings`` may differ.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from pathlib import Path

from cgmbench.version import __version__
from cgmbench.atomic import atomic_write_json
from cgmbench.errors import CgmbenchError

SCHEMA = "cgmbench.run/1"
VOLATILE_FIELDS = ("environment", "timings", "identity_sha256")
REQUIRED_FIELDS = ("schema", "task", "model", "n", "seed", "samples_sha256", "metrics", "environment", "timings")


def git_commit() -> str | None:
    """The commit of the cgmbench source checkout, when running from one."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: str = "cpu") -> dict:
    import numpy
    import torch

    env = {
        "cgmbench": __version__, "git_commit": git_commit(), "python": sys.version.split()[0],
        "torch": torch.__version__, "cuda": torch.version.cuda, "numpy": numpy.__version__,
        "platform": platform.platform(), "device": str(device),
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name(torch.device(device))
    return env


def identity_digest(record: dict) -> str:
    """SHA-256 of everything that identifies a run: the record without its volatile fields (environment,
    timings, the identity itself) and without a submission's ``submission`` block (who sent it)."""
    stable = {k: v for k, v in record.items() if k not in VOLATILE_FIELDS and k != "submission"}
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode("utf-8")).hexdigest()


def finalize(record: dict) -> dict:
    record["identity_sha256"] = identity_digest(record)
    return record


def write_record(path: str | Path, record: dict) -> None:
    validate_record(record)
    atomic_write_json(path, record)


def load_record(path: str | Path) -> dict:
    from cgmbench.safe_paths import read_json

    path = Path(path)
    record = read_json(path, "record", "run record", strict=False)  # a regular file of bounded size, or one line
    validate_record(record, where=str(path))
    return record


def validate_record(record: dict, where: str = "run record") -> None:
    if not isinstance(record, dict):
        raise CgmbenchError(f"{where}: a run record must be a JSON object")
    if record.get("schema") != SCHEMA:
        raise CgmbenchError(f"{where}: schema is {record.get('schema')!r}, expected {SCHEMA!r}")
    missing = [k for k in REQUIRED_FIELDS if k not in record]
    if missing:
        raise CgmbenchError(f"{where}: missing field(s) {missing}")
    if not isinstance(record["n"], int) or record["n"] < 1:
        raise CgmbenchError(f"{where}: n must be a positive integer")
    if not isinstance(record["metrics"], dict):
        raise CgmbenchError(f"{where}: metrics must be an object")
