"""Task specifications: what to generate, from which conditions, scored against what.

A task is data: one TOML file in ``tasks/`` (shipped in the wheel as ``cgmbench/tasks``), or any
``.toml`` path given to ``--task``, or one in a folder listed in ``$CGMBENCH_TASKS``
(``os.pathsep``-separated). Schema (every key is checked; unknown keys are errors)::

    name = "shapes-t2i"                 # lower-case, digits and '-'; must equal the file stem
    kind = "text-to-image"              # see cgmbench.conditions.TASK_KINDS
    description = "..."
    resolution = 32                     # output side in pixels (square)
    frames = 8                          # video tasks only
    num_samples = 1000                  # default N

    [conditions]                        # where condition i comes from
    source = "shapes"                   # a registered source (cgmbench.sources.base.SOURCES)
    ...                                 # source parameters

    [reference]                         # the real images the metrics compare against
    source = "shapes"

    [metrics]
    compute = ["judge"]                 # metric names, computed into run.json
    protocol = "clean"                  # feature protocol preset (for FID & co.)
    extractor = "shapes-cnn"            # feature extractor name

    [sweep]                             # default knob sweep
    guidance_scale = [1.0, 1.5, 2.0]

    [checkpoints]                       # default checkpoint variant per baseline for this task
    dit = "shapes-cc-tiny"

    [data]                              # provenance of the data: required
    license = "..."
    attribution = "..."
    obtain = "how to obtain the data offline"

    [targets]                           # optional: published numbers to reproduce
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from cgmbench.conditions import TASK_KINDS
from cgmbench.catalog import known_metrics
from cgmbench.errors import CgmbenchError

_TOP_KEYS = {"name", "kind", "description", "resolution", "frames", "num_samples", "conditions", "reference",
             "metrics", "sweep", "checkpoints", "data", "targets"}
DATA_KEYS = ("license", "attribution", "obtain")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


#: the keys a task's ``[metrics]`` table may hold (anything else is a typo and an error)
METRIC_KEYS = ("compute", "protocol", "extractor", "clip_extractor")
METRIC_KEYS = METRIC_KEYS + ("r_precision",)  # issue 13: the [metrics.r_precision] protocol table (r_precision_entry)

METRIC_KEYS += ("fvd_protocol",)  # issue 16 (video): the FVD protocol preset (cgmbench.metrics.fvd)
# issue 13: the FID protocol of the GAN papers (cgmbench.metrics.fid_protocols) and IS's own classifier
METRIC_KEYS += ("fid_protocol", "is_extractor")


@dataclass(frozen=True)
class MetricSettings:
    """A task's ``[metrics]`` table, typed, with its defaults in this one place.

    ``compute``: metric names (from :mod:`cgmbench.catalog`); ``protocol``: the image-preparation protocol of
    the feature extractors (``clean`` default); ``extractor``: the main feature extractor (FID/KID/IS/PR;
    ``inception-v3`` default); ``clip_extractor``: the image-text extractor of CLIP score / CMMD (default:
    chosen from ``extractor``, see :func:`cgmbench.scoring.harness.default_clip_extractor`)."""

    compute: tuple[str, ...]
    protocol: str = "clean"
    extractor: str = "inception-v3"
    clip_extractor: str | None = None
    #: whether the task named its extractor (the CLIP default depends on it)
    extractor_given: bool = False
    #: the classifier of the Inception Score when it is not ``extractor`` (CUB: ``inception-v3-cub-finetuned``)
    is_extractor: str | None = None

    @classmethod
    def from_table(cls, table: dict) -> "MetricSettings":
        return cls(compute=tuple(table.get("compute", ())), protocol=str(table.get("protocol", "clean")),
                   extractor=str(table.get("extractor", "inception-v3")),
                   clip_extractor=str(table["clip_extractor"]) if table.get("clip_extractor") else None,
                   extractor_given="extractor" in table,
                   is_extractor=str(table["is_extractor"]) if table.get("is_extractor") else None)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str
    description: str
    resolution: int
    num_samples: int
    conditions: dict
    reference: dict
    metrics: dict
    data: dict
    frames: int | None = None
    sweep: dict = field(default_factory=dict)
    checkpoints: dict = field(default_factory=dict)
    targets: dict = field(default_factory=dict)
    path: str | None = None
    sha256: str = ""

    @property
    def metric_settings(self) -> MetricSettings:
        """The ``[metrics]`` table, typed (:class:`MetricSettings`)."""
        return MetricSettings.from_table(self.metrics)

    @property
    def condition_kind(self) -> str:
        return TASK_KINDS[self.kind]

    @property
    def is_video(self) -> bool:
        return self.kind == "text-to-video" or self.frames is not None

    def sample_shape(self) -> tuple[int, ...]:
        hw = (3, self.resolution, self.resolution)
        return (self.frames, *hw) if self.is_video else hw

    def describe(self) -> dict:
        return {
            "name": self.name, "kind": self.kind, "condition_kind": self.condition_kind,
            "description": self.description, "resolution": self.resolution, "frames": self.frames,
            "num_samples": self.num_samples, "conditions": self.conditions, "reference": self.reference,
            "metrics": self.metrics, "sweep": self.sweep, "checkpoints": self.checkpoints, "data": self.data,
            "targets": self.targets, "spec_file": self.path, "spec_sha256": self.sha256,
        }


def builtin_task_dir() -> Path:
    """The shipped task folder: ``cgmbench/tasks`` in a wheel, ``tasks/`` in a source checkout."""
    package = Path(__file__).resolve().parent.parent  # cgmbench/
    packaged = package / "tasks"
    if any(packaged.glob("*.toml")):
        return packaged
    return package.parent / "tasks"


def task_dirs() -> list[Path]:
    dirs = [builtin_task_dir()]
    for extra in os.environ.get("CGMBENCH_TASKS", "").split(os.pathsep):
        if extra:
            dirs.append(Path(extra))
    return dirs


def list_tasks() -> list[str]:
    names = set()
    for d in task_dirs():
        names.update(p.stem for p in d.glob("*.toml"))
    return sorted(names)


def load_task(name_or_path: str) -> TaskSpec:
    """Load and validate a task by name or by ``.toml`` path."""
    path = Path(name_or_path)
    if name_or_path.endswith(".toml"):
        return parse_task_file(path)
    if not _NAME_RE.match(name_or_path):  # "../x", "a/b": a name never leaves the task folders
        raise CgmbenchError(f"task {name_or_path!r} is neither a task name nor a path to a .toml spec",
                            "a task name is lower-case letters, digits and '-'; give a file as PATH.toml")
    for d in task_dirs():
        candidate = d / f"{name_or_path}.toml"
        if candidate.is_file():
            return parse_task_file(candidate)
    known = ", ".join(list_tasks())
    raise CgmbenchError(f"unknown task {name_or_path!r}", f"known tasks: {known} (or give a path to a .toml spec)")


#: largest task file read (the shipped specs are under 2 KiB; prompt lists live in data files, not in the spec)
MAX_TASK_FILE_BYTES = 1024 * 1024
#: largest task resolution (the shipped tasks use at most 256; scoring cost grows with its square)
MAX_RESOLUTION = 1024


def parse_task_file(path: Path) -> TaskSpec:
    from cgmbench.safe_paths import read_bytes

    raw = read_bytes(path, "task file")  # a regular file of at most 1 MiB (cgmbench/safe_paths.py)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise CgmbenchError(f"task spec {path} is not valid TOML: {e}") from None
    except RecursionError:
        raise CgmbenchError(f"task spec {path} is nested too deeply to be a task spec") from None
    spec = validate_task_dict(data, where=str(path))
    if spec.name != path.stem:
        raise CgmbenchError(f"task spec {path}: name {spec.name!r} differs from the file name {path.stem!r}",
                            "rename the file or the task")
    return TaskSpec(**{**spec.__dict__, "path": str(path), "sha256": hashlib.sha256(raw).hexdigest()})


def _need(data: dict, key: str, kind: type | tuple, where: str) -> Any:
    if key not in data:
        raise CgmbenchError(f"task spec {where}: missing required key {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise CgmbenchError(f"task spec {where}: {key!r} must be {names}, got {type(value).__name__} {value!r}")
    return value


def validate_task_dict(data: dict, where: str = "<dict>") -> TaskSpec:
    """Check a parsed spec against the schema (module docstring); one clear error per problem."""
    from cgmbench.sources.base import SOURCES  # late import: sources import this module

    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise CgmbenchError(f"task spec {where}: unknown key(s) {unknown}", f"allowed: {sorted(_TOP_KEYS)}")
    name = _need(data, "name", str, where)
    if not _NAME_RE.match(name):
        raise CgmbenchError(f"task spec {where}: name {name!r} must be lower-case letters, digits and '-'")
    kind = _need(data, "kind", str, where)
    if kind not in TASK_KINDS:
        raise CgmbenchError(f"task spec {where}: unknown kind {kind!r}", f"kinds: {sorted(TASK_KINDS)}")
    resolution = _need(data, "resolution", int, where)
    if not 8 <= resolution <= MAX_RESOLUTION:
        raise CgmbenchError(f"task spec {where}: resolution {resolution} outside 8..{MAX_RESOLUTION}")
    num_samples = _need(data, "num_samples", int, where)
    if num_samples < 1:
        raise CgmbenchError(f"task spec {where}: num_samples must be >= 1")
    frames = data.get("frames")
    if kind == "text-to-video":
        frames = _need(data, "frames", int, where)
        if not 2 <= frames <= 256:
            raise CgmbenchError(f"task spec {where}: frames {frames} outside 2..256")
    elif frames is not None and kind == "class-conditional":  # issue 16: class-conditional video (ucf101-cc)
        if not isinstance(frames, int) or not 2 <= frames <= 256:
            raise CgmbenchError(f"task spec {where}: frames {frames!r} must be an integer in 2..256")
    elif frames is not None:
        raise CgmbenchError(f"task spec {where}: 'frames' is only for text-to-video and class-conditional video tasks")
    for section in ("conditions", "reference"):
        sec = _need(data, section, dict, where)
        src = _need(sec, "source", str, f"{where} [{section}]")
        if src not in SOURCES:
            raise CgmbenchError(f"task spec {where} [{section}]: unknown source {src!r}",
                                f"sources: {sorted(SOURCES)}")
        size = sec.get("size")
        if size is not None and (type(size) is not int or not 1 <= size <= 10_000_000):
            raise CgmbenchError(f"task spec {where} [{section}]: size must be an integer in 1..10000000, "
                                f"got {size!r}")
    metrics = _need(data, "metrics", dict, where)
    compute = _need(metrics, "compute", list, f"{where} [metrics]")
    unknown_keys = sorted(set(metrics) - set(METRIC_KEYS))
    if unknown_keys:
        raise CgmbenchError(f"task spec {where} [metrics]: unknown key(s) {unknown_keys}",
                            f"[metrics] holds: {', '.join(METRIC_KEYS)}")
    for key in ("protocol", "extractor", "clip_extractor", "fvd_protocol", "fid_protocol", "is_extractor"):
        if key in metrics and not isinstance(metrics[key], str):
            raise CgmbenchError(f"task spec {where} [metrics]: {key} must be a string")
    if "fid_protocol" in metrics:
        from cgmbench.metrics.fid_protocols import FID_PROTOCOLS

        if metrics["fid_protocol"] not in FID_PROTOCOLS:
            raise CgmbenchError(f"task spec {where} [metrics]: unknown fid_protocol {metrics['fid_protocol']!r}",
                                f"known: {', '.join(sorted(FID_PROTOCOLS))}")
    known = known_metrics()
    bad = [m for m in compute if m not in known]
    if bad:
        raise CgmbenchError(f"task spec {where} [metrics]: unknown metric(s) {bad}", f"known: {list(known)}")
    sweep = data.get("sweep", {})
    if not isinstance(sweep, dict) or not all(isinstance(v, list) and v for v in sweep.values()):
        raise CgmbenchError(f"task spec {where} [sweep]: each knob must map to a non-empty list of values")
    checkpoints = data.get("checkpoints", {})
    if not isinstance(checkpoints, dict) or not all(isinstance(v, str) for v in checkpoints.values()):
        raise CgmbenchError(f"task spec {where} [checkpoints]: must map model names to checkpoint names")
    dat = _need(data, "data", dict, where)
    for key in ("license", "attribution", "obtain"):
        _need(dat, key, str, f"{where} [data]")
    unknown_keys = sorted(set(dat) - set(DATA_KEYS))  # a typo must not silently change nothing (issue 12)
    if unknown_keys:
        raise CgmbenchError(f"task spec {where} [data]: unknown key(s) {unknown_keys}",
                            f"[data] holds: {', '.join(DATA_KEYS)}")
    return TaskSpec(
        name=name, kind=kind, description=str(data.get("description", "")), resolution=resolution,
        num_samples=num_samples, conditions=dict(data["conditions"]), reference=dict(data["reference"]),
        metrics=dict(metrics), data=dict(dat), frames=frames, sweep=dict(sweep), checkpoints=dict(checkpoints),
        targets=dict(data.get("targets", {})),
    )
