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
import math
import re
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


class RecordInvalid(CgmbenchError):
    """A run record that fails validation; the message names the field (``$.metrics.fid.ci95[1]: …``)."""


def validate_record(record: dict, where: str = "run record", submission: bool = False) -> None:
    """The one validator of run records.

    Every record: a JSON object of this schema with the required fields, a positive ``n`` and a metrics object.
    ``submission=True`` (``cgmbench submit``) checks a record from outside field by field as well: no unknown
    field, every type, known metric names, intervals that contain their value, and the provenance each metric's
    pass records (:func:`cgmbench.catalog.provenance_fields`: the full :data:`FEATURE_PROVENANCE` of a metric
    compared with reference statistics, less of masked, temporal and judge-based ones)."""
    if submission:
        _validate_submission(record)
        return
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


# ---------------------------------------------------------------- field-by-field checks of submissions

#: the provenance fields of a feature metric (the catalog says which metric needs which: provenance_fields)
from cgmbench.catalog import FEATURE_PROVENANCE  # noqa: E402


_HEX64 = re.compile(r"^[0-9a-f]{64}$")


_TASK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


_TOP = {"schema", "identity_sha256", "task", "model", "n", "seed", "samples", "samples_sha256", "metrics",
        "metrics_pending", "environment", "timings", "submission"}


def _tname(v) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "an integer", float: "a number"}.get(type(v), type(v).__name__)


def _get(obj: dict, key: str, path: str, kind: str, optional: bool = False):
    """``obj[key]`` checked to be of ``kind`` (object, array, string, integer, number, hex64, bool)."""
    where = f"{path}.{key}"
    if key not in obj:
        if optional:
            return None
        raise RecordInvalid(f"{where}: missing")
    return _check(obj[key], where, kind, optional)


def _check(v, where: str, kind: str, optional: bool = False):
    if v is None and optional:
        return None
    ok = {"object": isinstance(v, dict), "array": isinstance(v, list), "string": isinstance(v, str),
          "bool": isinstance(v, bool), "integer": isinstance(v, int) and not isinstance(v, bool),
          "number": isinstance(v, (int, float)) and not isinstance(v, bool),
          "hex64": isinstance(v, str) and bool(_HEX64.match(v))}[kind]
    if not ok:
        want = "a 64-digit lower-case hex SHA-256" if kind == "hex64" else f"{'an' if kind[0] in 'aeio' else 'a'} {kind}"
        raise RecordInvalid(f"{where}: expected {want}, got {_tname(v)}"
                                 + (f" {v!r}" if isinstance(v, (str, int, float)) and len(repr(v)) < 40 else ""))
    if kind == "number" and not math.isfinite(v):
        raise RecordInvalid(f"{where}: must be finite")
    if kind == "string" and len(v) > 2000:
        raise RecordInvalid(f"{where}: longer than 2000 characters")
    return v


def _check_interval(entry: dict, path: str, value: float) -> None:
    ci = entry.get("ci95")
    if ci is None:
        return
    if not isinstance(ci, list) or len(ci) != 2:
        raise RecordInvalid(f"{path}.ci95: expected [low, high], got {_tname(ci)}")
    lo = _check(ci[0], f"{path}.ci95[0]", "number")
    hi = _check(ci[1], f"{path}.ci95[1]", "number")
    if not lo <= value <= hi:
        raise RecordInvalid(f"{path}.ci95: [{lo}, {hi}] does not contain the value {value}")


def _validate_submission(rec: dict) -> None:
    """Field-by-field check of a submitted run record (raises :class:`RecordInvalid`)."""
    from cgmbench.catalog import known_metrics, provenance_fields

    KNOWN_METRICS = known_metrics()

    unknown = sorted(set(rec) - _TOP)
    if unknown:
        raise RecordInvalid(f"$.{unknown[0]}: unknown field", f"fields of {SCHEMA}: {', '.join(sorted(_TOP))}")
    if _get(rec, "schema", "$", "string") != SCHEMA:
        raise RecordInvalid(f"$.schema: {rec['schema']!r} is not {SCHEMA!r}")
    task = _get(rec, "task", "$", "object")
    name = _get(task, "name", "$.task", "string")
    if not _TASK_NAME.match(name):
        raise RecordInvalid(f"$.task.name: {name[:80]!r} is not a task name")
    _get(task, "kind", "$.task", "string")
    _get(task, "spec_sha256", "$.task", "hex64")
    model = _get(rec, "model", "$", "object")
    _get(model, "name", "$.model", "string")
    _get(model, "spec", "$.model", "string")
    ckpt = _get(model, "checkpoint", "$.model", "object", optional=True)
    if ckpt is not None:
        _get(ckpt, "sha256", "$.model.checkpoint", "hex64", optional=True)
    knobs = _get(model, "knobs", "$.model", "object")
    for k, v in knobs.items():
        if not isinstance(v, (int, float, str, bool)) or (isinstance(v, float) and not math.isfinite(v)):
            raise RecordInvalid(f"$.model.knobs.{k}: expected a number, string or boolean, got {_tname(v)}")
    n = _get(rec, "n", "$", "integer")
    if not 1 <= n <= 10_000_000:
        raise RecordInvalid(f"$.n: {n} is outside 1..10000000")
    _get(rec, "seed", "$", "integer")
    _get(rec, "samples", "$", "object", optional=True)
    _get(rec, "samples_sha256", "$", "hex64")
    _get(rec, "identity_sha256", "$", "hex64")
    metrics = _get(rec, "metrics", "$", "object")
    if not metrics:
        raise RecordInvalid("$.metrics: no metric given")
    for mname, entry in metrics.items():
        path = f"$.metrics.{mname}"
        if mname not in KNOWN_METRICS:
            raise RecordInvalid(f"{path}: unknown metric", f"known: {', '.join(KNOWN_METRICS)}")
        _check(entry, path, "object")
        if mname == "judge":
            overall = _get(entry, "overall", path, "object")
            v = _get(overall, "value", f"{path}.overall", "number")
            if not 0.0 <= v <= 1.0:
                raise RecordInvalid(f"{path}.overall.value: {v} is outside [0, 1]")
            _check_interval(overall, f"{path}.overall", v)
            _get(overall, "n", f"{path}.overall", "integer")
            _get(entry, "version", path, "string")
            attrs = _get(entry, "attributes", path, "object", optional=True) or {}
            for a, av in attrs.items():
                _check(av, f"{path}.attributes.{a}", "object")
                _get(av, "value", f"{path}.attributes.{a}", "number")
        else:
            v = _get(entry, "value", path, "number")
            _check_interval(entry, path, v)
            # what the metric's pass records (catalog.provenance_fields): only metrics compared with reference
            # statistics carry reference_stats_sha256; an entry naming a network carries its weights' hash
            required = set(provenance_fields(mname))
            if entry.get("extractor") is not None:
                required |= {"extractor", "weights_sha256"}
            for f in dict.fromkeys((*FEATURE_PROVENANCE, *sorted(required))):
                kind = "integer" if f == "n" else "hex64" if f.endswith("sha256") else "string"
                _get(entry, f, path, kind, optional=f not in required)
    pending = _get(rec, "metrics_pending", "$", "array", optional=True) or []
    for i, p in enumerate(pending):
        _check(p, f"$.metrics_pending[{i}]", "string")
    env = _get(rec, "environment", "$", "object")
    _get(env, "cgmbench", "$.environment", "string")
    _get(rec, "timings", "$", "object")
    sub = _get(rec, "submission", "$", "object", optional=True)
    if sub is not None:
        for k in sub:
            if k not in ("submitter", "url", "notes"):
                raise RecordInvalid(f"$.submission.{k}: unknown field", "allowed: submitter, url, notes")
            _get(sub, k, "$.submission", "string")

