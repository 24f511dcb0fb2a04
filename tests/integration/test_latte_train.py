"""The tiny Latte recipe: deterministic, resumable bit-exactly, exports a checkpoint the generator loads."""

from __future__ import annotations

import pytest
import torch

import baselines.latte.train as T
from baselines.common.shipped import read_shipped
from baselines.latte.generator import LatteGenerator
from cgmbench.conditions import Conditions
from cgmbench.errors import CgmbenchError
from cgmbench.generator import CheckpointInfo
from cgmbench.spec.task import load_task

torch.set_num_threads(1)


@pytest.fixture
def small(monkeypatch):
    cfg = T.LATTE_TINY_CONFIGS["tiny"]
    monkeypatch.setitem(cfg, "train", dict(cfg["train"], items=12, batch_size=2))
    monkeypatch.setitem(cfg, "defaults", dict(cfg["defaults"], steps=3))


def test_train_resume_is_bit_exact_and_exports_a_loadable_model(tmp_path, small):
    task = load_task("shapes-t2v")
    once = T.train_latte(task, out=tmp_path / "a", steps=4, log=lambda m: None)
    T.train_latte(task, out=tmp_path / "b", steps=2, log=lambda m: None)
    twice = T.train_latte(task, out=tmp_path / "b", steps=4, resume=True, log=lambda m: None)
    a, cfg = read_shipped(once)
    b, _ = read_shipped(twice)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert cfg["model"] == "latte" and cfg["latte"]["num_frames"] == 8 and cfg["latte"]["extras"] == 78
    gen = LatteGenerator.from_cgmbench_file(once, CheckpointInfo("t", None, str(once), "test"))
    LatteGenerator._check_task(gen, task)
    out = gen.generate(Conditions(kind="text->video", indices=[0], texts=["a red circle moving left"]), [7])
    assert out.dtype == torch.uint8 and tuple(out.shape) == (1, 8, 3, 32, 32)
    with pytest.raises(CgmbenchError, match="already holds a training run"):
        T.train_latte(task, out=tmp_path / "a", steps=4, log=lambda m: None)
    with pytest.raises(CgmbenchError, match="the tiny Latte recipe makes 8 frames of 32x32; task shapes-t2i has None frames"):
        T.train_latte(load_task("shapes-t2i"), out=tmp_path / "c", steps=1, log=lambda m: None)


def test_recipe_keeps_the_text_encoder_at_its_seeded_init(tmp_path, small):
    """Regression (shipped checkpoint of the first release): trained jointly, the word encoder collapsed to one
    output for every caption and the video ignored the text. The recipe now freezes it; its exported weights are
    the seeded initialisation and still tell captions apart."""
    from baselines.latte.sampling import build_latte

    task = load_task("shapes-t2v")
    path = T.train_latte(task, out=tmp_path / "a", steps=3, seed=4, log=lambda m: None)
    tensors, cfg = read_shipped(path)
    assert cfg["freeze_text_encoder"] is True
    torch.manual_seed(4)
    _, fresh = build_latte(cfg)
    exported = {k[len("text_encoder."):]: v for k, v in tensors.items() if k.startswith("text_encoder.")}
    assert exported.keys() == fresh.state_dict().keys()
    # shipped files hold float16 values (read back as float32)
    assert all(torch.equal(exported[k], v.half().to(exported[k].dtype)) for k, v in fresh.state_dict().items())
    gen = LatteGenerator.from_cgmbench_file(path, CheckpointInfo("t", None, str(path), "test"))
    tokens, _, _ = gen.text_encoder.encode(["a red circle moving left", "a blue square moving up", ""])
    assert (tokens[0] - tokens[1]).abs().mean() > 0.05 and (tokens[0] - tokens[2]).abs().mean() > 0.05
