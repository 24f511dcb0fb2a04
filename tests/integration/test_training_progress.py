"""Training you can follow (issue 17): ``cgmbench train`` prints progress with ETA from the first step, writes
``loss.csv``, and Ctrl-C saves the step in progress, says which step is saved and how to continue; ``--resume``
then ends with exactly the weights and loss rows of an uninterrupted run. One family per loop kind: StackGAN
(``GANTrainLoop``, through the command line), DiT (its own loop), pix2pix (the translation loop, Ctrl-C inside a
loss-averaging window), LDM (``TrainLoop``, two stages, Ctrl-C in the first)."""

from __future__ import annotations

import csv
import signal

import pytest
import torch
from safetensors.torch import load_file

import baselines.attngan.train  # noqa: F401  (the families' modules, so monkeypatch finds their recipes)
import baselines.stackgan.train as stackgan_train
from baselines.common.monitor import TrainingInterrupted, TrainingMonitor
from cgmbench.cli.main import main
from cgmbench.spec.task import load_task

pytestmark = pytest.mark.slow  # 2-14 s each on 2 cores; the monitor itself: tests/unit/test_training_monitor.py


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def ctrl_c_at(monkeypatch, stage: str, step: int) -> None:
    """Press Ctrl-C while step ``step + 1`` of ``stage`` runs (right after step ``step`` is recorded)."""
    update = TrainingMonitor.update

    def patched(self, s, values, **kw):
        update(self, s, values, **kw)
        if self.stage == stage and s == step:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(TrainingMonitor, "update", patched)


def loss_rows(folder) -> list[dict]:
    """loss.csv without the wall-clock column."""
    with open(folder / "loss.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in csv.DictReader(f)]


def same_tensors(a, b) -> bool:
    ta, tb = load_file(str(a)), load_file(str(b))
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_cli_progress_loss_csv_and_ctrl_c_then_resume_stackgan(tmp_path, monkeypatch, capsys):
    cfg = stackgan_train.STACKGAN_TINY_CONFIGS["tiny"]
    monkeypatch.setitem(stackgan_train.STACKGAN_TINY_CONFIGS, "tiny", dict(
        cfg, g=dict(cfg["g"], gf_dim=4), d=dict(df_dim=4), train=dict(cfg["train"], items=32, batch_size=4)))
    args = ["train", "--model", "stackgan", "--task", "shapes-t2i", "--steps", "4", "--device", "cpu"]
    assert main(args + ["--out", str(tmp_path / "straight")]) == 0
    err = capsys.readouterr().err
    first = next(ln for ln in err.splitlines() if ln.startswith("[stackgan] step 1/4 "))
    assert "d_loss" in first and "g_loss" in first and "steps/s" in first and "ETA" in first
    rows = loss_rows(tmp_path / "straight")
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"] and {"d_loss", "g_loss", "kl"} <= set(rows[0])

    ctrl_c_at(monkeypatch, "stackgan", 2)
    out = tmp_path / "cut"
    assert main(args + ["--out", str(out)]) == 130
    err = capsys.readouterr().err.splitlines()
    assert err[-2] == f"cgmbench: [stackgan] interrupted: step 2/4 is saved to {out / 'stackgan.state.pt'}"
    assert err[-1] == (f"cgmbench: continue with: cgmbench train --model stackgan --task shapes-t2i --config tiny "
                       f"--out {out} --resume --steps 4")
    assert torch.load(out / "stackgan.state.pt", weights_only=True)["step"] == 2
    monkeypatch.undo()  # no Ctrl-C this time; the same micro recipe
    monkeypatch.setitem(stackgan_train.STACKGAN_TINY_CONFIGS, "tiny", dict(
        cfg, g=dict(cfg["g"], gf_dim=4), d=dict(df_dim=4), train=dict(cfg["train"], items=32, batch_size=4)))
    assert main(args + ["--out", str(out), "--resume"]) == 0
    assert "[stackgan] resumed at step 2" in capsys.readouterr().err
    name = "stackgan-shapes-t2i-tiny.safetensors"
    assert same_tensors(tmp_path / "straight" / name, out / name)
    assert loss_rows(out) == rows


def test_dit_ctrl_c_between_checkpoints_resumes_exactly(tmp_path, monkeypatch):
    from baselines.dit.generator import DiTGenerator
    from baselines.dit.train import TRAIN_CONFIGS, DiTTrainConfig

    small = DiTTrainConfig(hidden_size=32, depth=1, num_heads=2, patch_size=8, batch_size=4, steps=5,
                           ckpt_every=2, log_every=1, max_items=64, warmup_steps=2)
    monkeypatch.setitem(TRAIN_CONFIGS, ("tiny", "digits-cc"), small)
    task = load_task("digits-cc")
    lines = []
    straight = DiTGenerator.train(task, out=tmp_path / "a", log=lines.append)
    assert any(ln.startswith("[dit] step 1/5 (20.0%)  loss ") and "ETA" in ln for ln in lines)
    with monkeypatch.context() as m, pytest.raises(TrainingInterrupted) as info:
        ctrl_c_at(m, "dit", 3)  # step 3 is no milestone (ckpt_every 2)
        DiTGenerator.train(task, out=tmp_path / "b", log=lambda msg: None)
    assert info.value.step == 3 and info.value.path == tmp_path / "b" / "checkpoints" / "step-0000003.pt"
    assert info.value.path.is_file()
    resumed = DiTGenerator.train(task, out=tmp_path / "b", resume=True, log=lambda msg: None)
    assert same_tensors(straight, resumed)
    assert loss_rows(tmp_path / "a") == loss_rows(tmp_path / "b") and len(loss_rows(tmp_path / "a")) == 5
    # the Ctrl-C checkpoint lasted until the next one; the milestones stay
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").glob("*.pt")) == [
        "step-0000002.pt", "step-0000004.pt", "step-0000005.pt"]


def test_pix2pix_ctrl_c_inside_a_loss_window_resumes_exactly(tmp_path, monkeypatch):
    from baselines.translation.generator import Pix2PixGenerator
    from baselines.translation.train import PIX2PIX_CONFIGS

    tiny = PIX2PIX_CONFIGS["tiny"]
    micro = {**tiny, "num_train": 8, "batch_size": 2, "steps": 6, "save_every": 4, "log_every": 2,
             "generator": {**tiny["generator"], "ngf": 4}, "ndf": 4}
    monkeypatch.setitem(PIX2PIX_CONFIGS, "micro", micro)
    task = load_task("shapes-paired")
    full = Pix2PixGenerator.train(task, config="micro", out=tmp_path / "full", log=lambda m: None)
    with monkeypatch.context() as m, pytest.raises(TrainingInterrupted) as info:
        ctrl_c_at(m, "pix2pix", 3)  # half-way through the window of steps 3-4
        Pix2PixGenerator.train(task, config="micro", out=tmp_path / "cut", log=lambda m: None)
    assert info.value.step == 3
    resumed = Pix2PixGenerator.train(task, config="micro", out=tmp_path / "cut", resume=True, log=lambda m: None)
    assert same_tensors(full, resumed)
    rows = loss_rows(tmp_path / "full")
    assert rows == loss_rows(tmp_path / "cut") and [r["step"] for r in rows] == ["2", "4", "6"]


def test_ldm_ctrl_c_in_the_autoencoder_stage_resumes_exactly(tmp_path, monkeypatch):
    from baselines.ldm.generator import LDM_TINY_CONFIGS, LDMGenerator

    ldm = LDM_TINY_CONFIGS["tiny"]
    monkeypatch.setitem(LDM_TINY_CONFIGS, "tiny", dict(
        ldm, unet=dict(ldm["unet"], attention_resolutions=[2]),
        train=dict(ldm["train"], items=48, batch_size=4, vae_steps=3, unet_steps=3, warmup=2)))
    task = load_task("shapes-t2i")
    full = LDMGenerator.train(task, out=tmp_path / "full", log=lambda m: None)
    with monkeypatch.context() as m, pytest.raises(TrainingInterrupted) as info:
        ctrl_c_at(m, "vae", 1)
        LDMGenerator.train(task, out=tmp_path / "cut", log=lambda m: None)
    assert info.value.message == f"[vae] interrupted: step 1/3 is saved to {tmp_path / 'cut' / 'vae.state.pt'}"
    resumed = LDMGenerator.train(task, out=tmp_path / "cut", resume=True, log=lambda m: None)
    assert same_tensors(full, resumed)
    rows = loss_rows(tmp_path / "full")
    assert rows == loss_rows(tmp_path / "cut")
    assert [(r["stage"], r["step"]) for r in rows] == [("vae", "1"), ("vae", "2"), ("vae", "3"), ("unet", "1"),
                                                     ("unet", "2"), ("unet", "3")]


def _parti(monkeypatch):
    import baselines.parti.train as P

    key = ("tiny", "shapes-t2i")
    c = P.TINY_CONFIGS[key]
    monkeypatch.setitem(P.TINY_CONFIGS, key, dict(c, train=dict(
        c["train"], items=48, batch_size=4, vq_batch_size=4, vq_steps=12, restart_every=3, gpt_steps=2, warmup=2)))
    return lambda out, resume=False: P.train(load_task("shapes-t2i"), out=out, resume=resume, log=lambda m: None)


def _attngan(monkeypatch):
    import baselines.attngan.train as A

    c = A.ATTNGAN_TINY_CONFIGS["tiny"]
    monkeypatch.setitem(A.ATTNGAN_TINY_CONFIGS, "tiny", dict(
        c, damsm=dict(c["damsm"], steps=4, batch_size=8), train=dict(c["train"], items=32, batch_size=4, steps=2)))
    return lambda out, resume=False: A.train_attngan(load_task("shapes-t2i"), out=out, resume=resume,
                                                     log=lambda m: None)


@pytest.mark.parametrize("family,stage,step", [
    (_parti, "vq", 7),  # between two dead-code restarts: their statistics travel in the checkpoint
    (_attngan, "damsm", 2),  # DAMSM pre-training checkpoints too (with the RNG its dropout draws from)
])
def test_stages_with_state_between_steps_resume_exactly(tmp_path, monkeypatch, family, stage, step):
    from baselines.common.shipped import read_shipped

    train = family(monkeypatch)
    full = train(tmp_path / "full")
    with monkeypatch.context() as m, pytest.raises(TrainingInterrupted) as info:
        ctrl_c_at(m, stage, step)
        train(tmp_path / "cut")
    assert info.value.step == step and info.value.path.name == f"{stage}.state.pt"
    resumed = train(tmp_path / "cut", resume=True)
    a, b = read_shipped(full)[0], read_shipped(resumed)[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert loss_rows(tmp_path / "full") == loss_rows(tmp_path / "cut")
