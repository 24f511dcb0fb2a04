"""The Python API, re-exported from :mod:`cgmbench` (``cgmbench.fid``, ``cgmbench.evaluate``, ``cgmbench.run``, …).

In the style of clean-fid and torch-fidelity::

    import cgmbench
    cgmbench.fid("real/", "fake/", protocol="clean")["fid"]        # folders, uint8 arrays or saved statistics
    record = cgmbench.run("shapes-t2i", "oracle", num_samples=16)  # the run.json record
    cgmbench.evaluate(record_dir_or_array, task="shapes-t2i")      # the metrics dict of a run record

Every function is the library code the command line calls, so ``cgmbench.fid`` returns exactly the object
``cgmbench fid --json`` prints on the same inputs. User errors raise :class:`cgmbench.errors.CgmbenchError`.

``cgmbench.run`` is also the subpackage :mod:`cgmbench.run`: that package module is callable (its class
forwards ``__call__`` to :func:`run` here), so ``cgmbench.run(task, model)`` runs while
``import cgmbench.run.runner`` and ``cgmbench.run.runner.run(cfg)`` keep working.
"""

from __future__ import annotations

import sys
from dataclasses import fields

from cgmbench.errors import CgmbenchError
from cgmbench.extractors.registry import register_extractor
from cgmbench.models.registry import register_model
from cgmbench.scoring.evaluate import evaluate
from cgmbench.scoring.fid import fid
from cgmbench.sources.base import register_source
from cgmbench.spec.task import TaskSpec, load_task

__all__ = ["fid", "evaluate", "run", "load_task", "load_model", "register_model", "register_extractor",
           "register_source"]

#: keyword options of :func:`run` besides the RunConfig fields
_RUN_EXTRAS = ("guidance", "log")


def _task(task) -> TaskSpec:
    return task if isinstance(task, TaskSpec) else load_task(str(task))


def load_model(spec: str, task, checkpoint: str | None = None, device: str = "cpu"):
    """Build model ``spec`` (``NAME`` or ``NAME:CHECKPOINT``) for ``task`` (a name, a ``.toml`` path or a TaskSpec)."""
    from cgmbench.models.registry import load_model as _load_model

    return _load_model(spec, _task(task), checkpoint=checkpoint, device=device)


def run(task, model: str, **options) -> dict:
    """Sample ``task`` with ``model``, score the samples and write the run folder; returns the record.

    ``options`` are the fields of :class:`cgmbench.run.config.RunConfig` — ``num_samples``, ``seed``,
    ``batch_size``, ``out``, ``resume``, ``knobs`` (dict), ``checkpoint``, ``device`` (default ``"auto"``:
    CUDA when available), ``precision``, ``progress``, ``micro_batch`` (samples per network pass; default: 1 on a
    CPU, the batch size on a GPU), ``threads``, ``allow_pending_metrics`` — plus ``guidance=w`` (the knob
    ``guidance_scale``)
    and ``log`` (a ``str -> None`` callable for progress lines; default: standard error).
    ``task`` may be a name, a ``.toml`` path or a :class:`~cgmbench.spec.task.TaskSpec` loaded from a file.
    """
    from cgmbench.run.config import RunConfig, resolve_device
    from cgmbench.run.runner import run as run_config

    allowed = {f.name for f in fields(RunConfig)} - {"task", "model"}
    unknown = sorted(set(options) - allowed - set(_RUN_EXTRAS))
    if unknown:
        raise CgmbenchError(f"cgmbench.run() got unknown option(s) {', '.join(unknown)}",
                            f"options: {', '.join(sorted(allowed | set(_RUN_EXTRAS)))}; model knobs go in knobs={{…}}")
    if isinstance(task, TaskSpec):
        if not task.path:
            raise CgmbenchError(f"task {task.name} was not loaded from a file", "pass its name or .toml path")
        task = task.path
    knobs = dict(options.pop("knobs", None) or {})
    if not isinstance(model, str):
        raise CgmbenchError(f"model must be a name such as 'oracle' or 'dit:xl-2-256', got {type(model).__name__}")
    guidance = options.pop("guidance", None)
    if guidance is not None:
        if "guidance_scale" in knobs:
            raise CgmbenchError("give the guidance scale once: guidance=… or knobs={'guidance_scale': …}")
        knobs["guidance_scale"] = guidance
    log = options.pop("log", None) or (lambda message: print(message, file=sys.stderr))
    options["device"] = resolve_device(options.get("device", "auto"))
    return run_config(RunConfig(task=str(task), model=model, knobs=knobs, **options), log=log)

