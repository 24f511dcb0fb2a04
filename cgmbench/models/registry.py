"""Finding models: the ``cgmbench.models`` entry-point group.

Our baselines register exactly as a third-party package would, in its ``pyproject.toml``::

    [project.entry-points."cgmbench.models"]
    mymodel = "mypackage.module:MyGenerator"     # a cgmbench.generator.Generator subclass

``--model NAME`` loads the task's default checkpoint for NAME (the task spec's
``[checkpoints]``), ``--model NAME:VARIANT`` a named checkpoint, ``--checkpoint PATH`` a file.
:func:`register_model` adds a model at run time (notebooks, tests).
"""

from __future__ import annotations

import os
from pathlib import Path

from importlib.metadata import entry_points

from cgmbench.errors import CgmbenchError
from cgmbench.generator import Generator
from cgmbench.scoring.resize import check_model_resolution

ENTRY_POINT_GROUP = "cgmbench.models"
_runtime: dict[str, type[Generator]] = {}


def register_model(name: str, cls: type[Generator]) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Generator)):
        raise TypeError(f"{cls!r} is not a cgmbench.generator.Generator subclass")
    _runtime[name] = cls


def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def list_models() -> list[str]:
    return sorted(set(_entry_points()) | set(_runtime))


def model_class(name: str) -> type[Generator]:
    if name in _runtime:
        return _runtime[name]
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(list_models()) or "none (is cgmbench installed? run: pip install -e .)"
        raise CgmbenchError(f"unknown model {name!r}", f"known models: {known}")
    try:
        cls = eps[name].load()
    except Exception as e:  # a broken plugin must not look like a cgmbench bug
        raise CgmbenchError(f"model {name!r} could not be imported from {eps[name].value}: "
                            f"{type(e).__name__}: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, Generator)):
        raise CgmbenchError(f"entry point {name!r} ({eps[name].value}) is not a cgmbench Generator subclass")
    return cls


def parse_model_spec(spec: str) -> tuple[str, str | None]:
    """``"dit"`` -> ("dit", None); ``"dit:xl-2-256"`` -> ("dit", "xl-2-256")."""
    name, _, variant = spec.partition(":")
    if not name:
        raise CgmbenchError(f"empty model name in {spec!r}", "use --model NAME or NAME:CHECKPOINT")
    return name, (variant or None)


def check_accepts(cls: type[Generator], name: str, task) -> None:
    """A clear error when model class ``cls`` takes no conditions of ``task``'s kind."""
    if task.condition_kind not in cls.condition_kinds:
        raise CgmbenchError(
            f"model {name!r} does not accept {task.condition_kind!r} conditions, which task {task.name!r} "
            f"({task.kind}) gives", f"{name} accepts: {', '.join(sorted(cls.condition_kinds)) or 'nothing'}")


def load_model(spec: str, task, checkpoint: str | None = None, device: str = "cpu") -> Generator:
    """Build model ``spec`` for ``task``, checking that it accepts the task's condition kind."""
    name, variant = parse_model_spec(spec)
    cls = model_class(name)
    check_accepts(cls, name, task)
    if checkpoint is not None:  # a regular file (bounded) or a folder; a FIFO or device is refused at once
        from cgmbench.safe_paths import check_file

        if os.path.lexists(checkpoint) and not os.path.isdir(checkpoint):  # missing: the model says what to fetch
            check_file(checkpoint, "checkpoint", "--checkpoint")
    if variant is None and checkpoint is None:
        variant = task.checkpoints.get(name)
    model = _load_checked(cls, name, task, variant, checkpoint, device)
    model.name = name
    if task.condition_kind not in model.condition_kinds:  # a model class may serve several kinds by checkpoint
        what = model.checkpoint.name if model.checkpoint else spec
        raise CgmbenchError(f"{name} checkpoint {what} does not accept {task.condition_kind!r} conditions, which "
                            f"task {task.name!r} gives", f"it accepts: {', '.join(sorted(model.condition_kinds))}")
    # another resolution is sampled natively and resized for scoring (cgmbench.scoring.resize), unless the
    # task needs the exact size or the aspect ratio differs
    check_model_resolution(tuple(model.resolution), task,
                           f"{name} checkpoint {model.checkpoint.name if model.checkpoint else name}")
    return model


def _load_checked(cls, name: str, task, variant, checkpoint, device) -> Generator:
    """``cls.load(...)``, with any failure to read a weights file (a partial download, junk, a malformed companion
    JSON) turned into one :class:`~cgmbench.errors.IntegrityError` naming the file, what is wrong and how to get it
    again. Errors a family already words for the user pass through unchanged."""

    from cgmbench import weights
    from cgmbench.errors import IntegrityError

    seen: list = []
    token = weights._RESOLVED.set(seen)
    try:
        return cls.load(task, variant=variant, checkpoint=checkpoint, device=device)
    except CgmbenchError:
        raise
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - a file the family could not parse
        what = " ".join(f"{type(e).__name__}: {e}".split())[:240]
        if "weights_only" in str(e):  # never pass on torch's advice to unpickle an untrusted file
            what = "not a plain tensor file: torch.load(weights_only=True) refused it"
        if checkpoint is not None:
            path = Path(checkpoint)
            files = [path] + ([path.with_suffix(".json")] if path.with_suffix(".json").is_file() else [])
            raise IntegrityError(
                f"model {name!r} cannot load the checkpoint {' / '.join(map(str, files))} ({what})",
                "the file is damaged, incomplete (a partial download?) or not this model's checkpoint: download "
                "it again and compare its sha256 with the publisher's (`cgmbench weights list` shows the "
                "official files)") from e
        if seen:
            kf, path = seen[-1]
            hint = weights.refetch_hint(kf) if kf is not None else "reinstall cgmbench (a shipped file is damaged)"
            raise IntegrityError(f"model {name!r} cannot load {path} ({what})",
                                 f"the file is damaged or incomplete (a partial download?); {hint}") from e
        raise
    finally:
        weights._RESOLVED.reset(token)
