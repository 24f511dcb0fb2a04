"""baselines.common.monitor: progress with ETA, loss.csv, checkpoint timing, Ctrl-C that saves and says what."""

from __future__ import annotations

import csv
import signal

import pytest

from baselines.common.monitor import LossLog, TrainingInterrupted, TrainingMonitor, format_duration, import_jsonl_log


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _loop(out, total, start=0, *, interrupt_at=(), save_every=None, log=None, stage="s", **kw):
    """A fake training loop: the loss of step k is 1/k; 'saves' are recorded."""
    lines, saves = [], []
    with TrainingMonitor(out, stage, total, start, log or lines.append, save_every=save_every, **kw) as mon:
        for step in range(start + 1, total + 1):
            if step in interrupt_at:
                signal.raise_signal(signal.SIGINT)  # Ctrl-C while the step runs
            mon.update(step, {"loss": 1.0 / step}, lr=0.5)
            if mon.checkpoint_due(step):
                saves.append(step)
                mon.saved(step, out / f"ckpt-{step}")
    return lines, saves


def test_progress_from_the_first_step_with_rate_and_eta(tmp_path):
    lines, saves = _loop(tmp_path, 120, save_every=50, print_every=50, print_seconds=1e9)
    progress = [ln for ln in lines if " step " in ln and "ETA" in ln]
    assert [ln.split()[2] for ln in progress] == ["1/120", "50/120", "100/120", "120/120"]
    assert "loss 1 " in progress[0] and "steps/s" in progress[0]
    # the mean over the steps since the previous line
    assert f"loss {sum(1 / k for k in range(2, 51)) / 49:.4g} " in progress[1]
    assert progress[-1].endswith("ETA 0:00:00")
    assert saves == [50, 100, 120]
    assert lines[0].startswith("[s] steps 1..120: checkpoints every 50 steps and every 0:05:00; Ctrl-C saves")


def test_loss_csv_rows_and_resume_truncation(tmp_path):
    _loop(tmp_path, 6, save_every=3)
    rows = _read(tmp_path / "loss.csv")
    assert list(rows[0]) == ["stage", "step", "loss", "lr", "elapsed_s"]
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert float(rows[2]["loss"]) == 1.0 / 3  # repr: exact
    # a second stage widens the header; rows of the first are kept
    with TrainingMonitor(tmp_path, "t", 2, 0, lambda m: None) as mon:
        mon.update(1, {"loss": 2.0, "extra": 1.5})
        mon.update(2, {"loss": 3.0, "extra": 2.5})
    rows = _read(tmp_path / "loss.csv")
    assert [r["stage"] for r in rows] == ["s"] * 6 + ["t"] * 2 and rows[-1]["extra"] == "2.5" and rows[0]["extra"] == ""
    # restarting stage s at step 3 drops its rows after 3 (they will be recomputed), not those of t
    _loop(tmp_path, 4, start=3)
    rows = _read(tmp_path / "loss.csv")
    assert [(r["stage"], int(r["step"])) for r in rows] == [("s", 1), ("s", 2), ("s", 3), ("t", 1), ("t", 2),
                                                           ("s", 4)]
    assert LossLog(tmp_path / "loss.csv").rows("t") == [
        {"stage": "t", "step": 1, "loss": 2.0, "extra": 1.5, "elapsed_s": float(rows[3]["elapsed_s"])},
        {"stage": "t", "step": 2, "loss": 3.0, "extra": 2.5, "elapsed_s": float(rows[4]["elapsed_s"])}]


def test_ctrl_c_saves_the_step_in_progress_and_says_which(tmp_path):
    with pytest.raises(TrainingInterrupted) as info:
        _loop(tmp_path, 100, save_every=50, interrupt_at=(7,))
    e = info.value
    assert isinstance(e, KeyboardInterrupt) and e.step == 7 and e.path == tmp_path / "ckpt-7"
    assert e.message == f"[s] interrupted: step 7/100 is saved to {tmp_path / 'ckpt-7'}"
    # the rows up to the saved step are on disk; the handler is the default one again
    assert [int(r["step"]) for r in _read(tmp_path / "loss.csv")] == list(range(1, 8))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_second_ctrl_c_stops_at_once_naming_the_last_checkpoint(tmp_path):
    class Stop(Exception):
        pass

    lines = []
    with pytest.raises(KeyboardInterrupt) as info:
        with TrainingMonitor(tmp_path, "s", 10, 4, lines.append, checkpoint_path=tmp_path / "s.state.pt") as mon:
            mon.update(5, {"loss": 1.0})
            signal.raise_signal(signal.SIGINT)
            assert mon.stop_requested and "saving a checkpoint at the end of the step in progress" in lines[-1]
            signal.raise_signal(signal.SIGINT)  # before the step finished
            raise Stop  # not reached
    assert not isinstance(info.value, TrainingInterrupted)
    assert info.value.message == ("[s] interrupted at step 5/10; the last checkpoint is step 4 "
                                  f"({tmp_path / 's.state.pt'})")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_timed_checkpoints(tmp_path):
    _, saves = _loop(tmp_path, 5, save_every=None, checkpoint_seconds=1e-9)
    assert saves == [1, 2, 3, 4, 5]
    _, saves = _loop(tmp_path / "b", 5, save_every=None, checkpoint_seconds=None)
    assert saves == [5]


def test_legacy_logs_are_adopted(tmp_path):
    path = tmp_path / "loss.csv"
    path.write_text("step,loss,mse,vb,lr,seconds\n25,0.5,0.4,0.1,0.001,3.0\n50,0.25,0.2,0.05,0.001,6.0\n")
    LossLog(path).adopt_legacy("dit", renamed={"seconds": "elapsed_s"})
    assert _read(path)[1] == {"stage": "dit", "step": "50", "loss": "0.25", "mse": "0.2", "vb": "0.05",
                              "lr": "0.001", "elapsed_s": "6.0"}
    jsonl = tmp_path / "unet.loss.jsonl"
    jsonl.write_text('{"step": 1, "loss": 0.5, "lr": 0.1}\n{"step": 2, "loss": 0.25, "lr": 0.1}\n'
                     '{"step": 3, "loss": 0.125, "lr": 0.1}\n')
    import_jsonl_log(LossLog(path), "unet", jsonl, upto=2)
    assert [r["loss"] for r in LossLog(path).rows("unet")] == [0.5, 0.25]
    import_jsonl_log(LossLog(path), "unet", jsonl, upto=3)  # only once
    assert len(LossLog(path).rows("unet")) == 2


def test_format_duration():
    assert format_duration(0) == "0:00:00" and format_duration(3725.4) == "1:02:05"
    assert format_duration(float("inf")) == "?" and format_duration(float("nan")) == "?"
