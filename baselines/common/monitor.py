"""Training you can follow: progress with ETA, ``OUT/loss.csv``, checkpoints on a clock and on Ctrl-C.

Every training loop of the suite (:class:`baselines.common.training.TrainLoop`,
:class:`baselines.common.gan_training.GANTrainLoop`, the DiT and pix2pix/CycleGAN loops, AttnGAN's DAMSM
pre-training) reports through one :class:`TrainingMonitor` per stage:

* **Progress** after the first step of a session, then every ``print_every`` steps or ``print_seconds`` seconds
  (whichever comes first) and at the last step::

      [unet] step 120/4000 (3.0%)  loss 0.0812  |  5.31 steps/s  elapsed 0:00:23  ETA 0:12:11

  Values are means over the steps since the previous line; the rate counts this session's steps only.
* **``OUT/loss.csv``**: one row per recorded step, columns ``stage, step``, the stage's values, ``lr``,
  ``elapsed_s`` (wall seconds since the stage's step 0, summed over sessions). Stages of one recipe (an autoencoder,
  then a U-Net) share the file; a stage that brings new columns widens the header. Rows are buffered and written
  at every progress line and checkpoint; when a stage (re)starts at step ``k``, its rows after ``k`` are dropped,
  so after ``--resume`` the file holds the rows of an uninterrupted run (values written with ``repr``: exact).
* **Checkpoints**: a loop asks :meth:`TrainingMonitor.checkpoint_due` after each step. It is due at the recipe's
  own milestones (``save_every``, the last step), when ``checkpoint_seconds`` of wall time passed since the last
  one, and after Ctrl-C. Checkpoints do not touch any random state, so where they fall never changes the weights.
* **Ctrl-C** (SIGINT, in the main thread) is deferred to the end of the step in progress: the loop writes a
  checkpoint of that step and :meth:`TrainingMonitor.saved` raises :class:`TrainingInterrupted` (a
  ``KeyboardInterrupt``) whose message names the step saved and the file. A second Ctrl-C stops at once; the
  message then names the last checkpoint written. ``cgmbench train`` prints the message and the command that
  continues (``--resume``).
"""

from __future__ import annotations

import csv
import json
import math
import signal
import threading
import time
from pathlib import Path
from typing import Callable

__all__ = ["TrainingMonitor", "TrainingInterrupted", "LossLog", "format_duration", "CHECKPOINT_SECONDS"]

#: default wall-clock interval between checkpoints (a kill or a crash loses at most this much work)
CHECKPOINT_SECONDS = 300.0
#: default cadence of progress lines
PRINT_EVERY = 50
PRINT_SECONDS = 30.0


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, after the checkpoint of ``step`` was written to ``path`` (``path`` None: nothing of
    this stage was saved). ``message`` says so in one line."""

    def __init__(self, message: str, step: int | None = None, path: Path | None = None):
        super().__init__(message)
        self.message, self.step, self.path = message, step, path


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` (``?`` when unknown)."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class LossLog:
    """``loss.csv``: rows ``{"stage", "step", ...}`` of every stage of one training folder (see module docstring)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def read(self) -> tuple[list[str], list[dict]]:
        if not self.path.is_file():
            return [], []
        with open(self.path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            return list(reader.fieldnames or []), rows

    def rows(self, stage: str) -> list[dict]:
        """The rows of ``stage`` with numbers parsed (empty cells dropped)."""
        return [{k: (v if k == "stage" else _number(v)) for k, v in r.items() if v not in ("", None)}
                for r in self.read()[1] if r.get("stage") == stage]

    def truncate(self, stage: str, after: int) -> None:
        """Drop the rows of ``stage`` whose step is above ``after``."""
        fields, rows = self.read()
        kept = [r for r in rows if r.get("stage") != stage or int(r["step"]) <= after]
        if fields and len(kept) != len(rows):
            self._rewrite(fields, kept)

    def adopt_legacy(self, stage: str, renamed: dict[str, str] | None = None) -> None:
        """A ``loss.csv`` without a ``stage`` column (written by cgmbench before this module) becomes the rows of
        ``stage``, with columns ``renamed`` (old -> new)."""
        fields, rows = self.read()
        if not fields or "stage" in fields:
            return
        renamed = renamed or {}
        self._rewrite(["stage"] + [renamed.get(f, f) for f in fields],
                      [{"stage": stage, **{renamed.get(k, k): v for k, v in r.items()}} for r in rows])

    def import_rows(self, stage: str, rows: list[dict]) -> None:
        """Add rows of ``stage`` (e.g. from a JSONL log of an earlier cgmbench version) in front of nothing else."""
        self.append([{"stage": stage, **r} for r in rows])

    def append(self, rows: list[dict]) -> None:
        if not rows:
            return
        fields, old = self.read()
        new_fields = list(fields)
        for r in rows:
            new_fields += [k for k in r if k not in new_fields]
        if new_fields != fields and old:
            self._rewrite(new_fields, old + rows)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a" if fields else "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=new_fields)
            if not fields:
                w.writeheader()
            w.writerows([{k: _cell(v) for k, v in r.items()} for r in rows])

    def _rewrite(self, fields: list[str], rows: list[dict]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows([{k: _cell(v) for k, v in r.items()} for r in rows])
        tmp.replace(self.path)


def _cell(v):
    return repr(v) if isinstance(v, float) else v


def _number(v: str):
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


class TrainingMonitor:
    """Progress, ``loss.csv`` rows, checkpoint timing and Ctrl-C handling of one training stage.

    Use as a context manager around the loop of steps ``start+1 .. total`` (steps are counted as completed steps)::

        with TrainingMonitor(out, "unet", total, start, log, save_every=100) as mon:
            for step in range(start + 1, total + 1):
                ...                                   # one optimisation step
                mon.update(step, {"loss": loss}, lr=lr)
                if mon.checkpoint_due(step):
                    save(step)
                    mon.saved(step, path)             # raises TrainingInterrupted after Ctrl-C
    """

    def __init__(self, out: str | Path, stage: str, total: int, start: int = 0, log: Callable = print, *,
                 save_every: int | None = None, print_every: int = PRINT_EVERY, print_seconds: float = PRINT_SECONDS,
                 checkpoint_seconds: float | None = CHECKPOINT_SECONDS, show: tuple[str, ...] | None = None,
                 checkpoint_path: str | Path | None = None, csv_name: str = "loss.csv"):
        self.out, self.stage, self.total, self.start = Path(out), stage, int(total), int(start)
        self.log, self.save_every = log, save_every
        self.print_every, self.print_seconds, self.checkpoint_seconds = print_every, print_seconds, checkpoint_seconds
        self.show = show
        self.losses = LossLog(self.out / csv_name)
        self.last_saved: tuple[int, Path | None] | None = (
            (start, Path(checkpoint_path) if checkpoint_path else None) if start else None)
        self.stop_requested = False
        self._pending: list[dict] = []
        self._window: dict[str, list[float]] = {}
        self._prev_handler = None
        self._step = start

    # -- context ------------------------------------------------------------------------------

    def __enter__(self) -> "TrainingMonitor":
        self.losses.truncate(self.stage, self.start)
        prior = [r for r in self.losses.rows(self.stage) if r.get("step", 0) <= self.start]
        self._elapsed_before = float(prior[-1].get("elapsed_s", 0.0)) if prior and self.start else 0.0
        now = time.perf_counter()
        self._t0 = self._last_print = self._last_save = now
        # SIGINT ignored (a background job of a shell, nohup) stays ignored
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) != signal.SIG_IGN:
            try:
                self._prev_handler = signal.signal(signal.SIGINT, self._on_sigint)
            except ValueError:  # not the main interpreter
                self._prev_handler = None
        if self.start < self.total:
            every = []
            if self.save_every:
                every.append(f"every {self.save_every} steps")
            if self.checkpoint_seconds:
                every.append(f"every {format_duration(self.checkpoint_seconds)}")
            where = "" if not every else f"checkpoints {' and '.join(every)}; "
            self.log(f"[{self.stage}] steps {self.start + 1}..{self.total}: {where}Ctrl-C saves a checkpoint and "
                     "stops (continue with --resume)")
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._prev_handler is not None:
            try:
                signal.signal(signal.SIGINT, self._prev_handler)
            except ValueError:
                pass
            self._prev_handler = None
        if exc_type is None:
            self.flush()
        elif issubclass(exc_type, KeyboardInterrupt) and not isinstance(exc, TrainingInterrupted):
            # a second Ctrl-C (or one outside the main thread): nothing saved for the step in progress
            if getattr(exc, "message", None) is None:
                exc.message = self._lost_message()
        return False

    def _on_sigint(self, signum, frame) -> None:
        if self.stop_requested:  # the second Ctrl-C stops at once
            signal.signal(signal.SIGINT, self._prev_handler or signal.default_int_handler)
            raise KeyboardInterrupt
        self.stop_requested = True
        try:
            self.log(f"[{self.stage}] Ctrl-C: saving a checkpoint at the end of the step in progress "
                     "(Ctrl-C again stops without saving)")
        except Exception:  # noqa: BLE001 - printing from a signal handler is best effort
            pass

    def _lost_message(self) -> str:
        if self.last_saved is None:
            return (f"[{self.stage}] interrupted at step {self._step}/{self.total}; no checkpoint of this stage was "
                    "written")
        step, path = self.last_saved
        return (f"[{self.stage}] interrupted at step {self._step}/{self.total}; the last checkpoint is step "
                f"{step}" + (f" ({path})" if path else ""))

    # -- steps ---------------------------------------------------------------------------------

    def update(self, step: int, values: dict, *, lr: float | None = None, record: bool | dict = True) -> None:
        """Step ``step`` (1-based, completed) with its ``values`` (floats). ``record``: True writes ``values`` as the
        step's row of ``loss.csv``, a dict writes that row instead, False writes none."""
        self._step = step
        for k, v in values.items():
            if isinstance(v, (int, float)) and (self.show is None or k in self.show):
                self._window.setdefault(k, []).append(float(v))
        now = time.perf_counter()
        if record is not False:
            row = {"stage": self.stage, "step": step, **(values if record is True else record)}
            if lr is not None:
                row["lr"] = float(lr)
            row["elapsed_s"] = round(self._elapsed_before + now - self._t0, 3)
            self._pending.append(row)
        first = step == self.start + 1
        if first or step == self.total or step % self.print_every == 0 or now - self._last_print >= self.print_seconds:
            self._print(step, now)

    def _print(self, step: int, now: float) -> None:
        done = step - self.start
        rate = done / max(now - self._t0, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        vals = "  ".join(f"{k} {sum(v) / len(v):.4g}" for k, v in self._window.items() if v)
        self.log(f"[{self.stage}] step {step}/{self.total} ({100.0 * step / max(1, self.total):.1f}%)  {vals}  |  "
                 f"{rate:.3g} steps/s  elapsed {format_duration(self._elapsed_before + now - self._t0)}  "
                 f"ETA {format_duration(eta)}")
        self._window = {}
        self._last_print = now
        self.flush()

    def flush(self) -> None:
        """Write the buffered ``loss.csv`` rows."""
        rows, self._pending = self._pending, []
        self.losses.append(rows)

    # -- checkpoints -----------------------------------------------------------------------------

    def milestone(self, step: int) -> bool:
        """The recipe's own checkpoint steps: multiples of ``save_every`` and the last step."""
        return step == self.total or bool(self.save_every) and step % self.save_every == 0

    def checkpoint_due(self, step: int) -> bool:
        """A milestone, ``checkpoint_seconds`` since the last checkpoint, or Ctrl-C pressed."""
        timed = bool(self.checkpoint_seconds) and time.perf_counter() - self._last_save >= self.checkpoint_seconds
        return self.milestone(step) or timed or self.stop_requested

    def saved(self, step: int, path: str | Path | None = None) -> None:
        """The checkpoint of ``step`` is written (to ``path``); after Ctrl-C, stop with :class:`TrainingInterrupted`."""
        self.last_saved = (step, Path(path) if path else None)
        self._last_save = time.perf_counter()
        self.flush()
        if self.stop_requested and step < self.total:
            where = f" to {path}" if path else ""
            raise TrainingInterrupted(f"[{self.stage}] interrupted: step {step}/{self.total} is saved{where}",
                                      step, Path(path) if path else None)


def import_jsonl_log(losses: LossLog, stage: str, jsonl: Path, upto: int) -> None:
    """Carry the rows of a ``<stage>.loss.jsonl`` (the log of cgmbench before ``loss.csv``) into ``loss.csv`` when
    a run started by that version is resumed and ``loss.csv`` has no rows of the stage yet."""
    if not jsonl.is_file() or losses.rows(stage):
        return
    rows = []
    for line in jsonl.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            if int(r.get("step", 0)) <= upto:
                rows.append(r)
    losses.import_rows(stage, rows)
