"""How runs execute (issue 18): ``--batch-size`` reaches every chunking generator as its micro-batch, ``--threads``
sets torch's CPU threads; both are recorded in run.json."""

from __future__ import annotations

import json

import pytest
import torch

from cgmbench.cli.main import main
from cgmbench.errors import CgmbenchError
from cgmbench.run.execution import choose_micro_batch, generate_with_memory_fallback
from cgmbench.threads import default_threads, resolve_threads

#: family -> (model spec, task, the network class whose forward sees the micro-batch)
FAMILIES = {
    "ldm": ("ldm:shapes-t2i-tiny", "shapes-t2i", "baselines.ldm.unet:UNetModel"),
    "sd3": ("sd3:shapes-t2i-tiny", "shapes-t2i", "baselines.sd3.models:MMDiT"),
    "dit": ("dit:shapes-cc-tiny", "shapes-cc", "baselines.dit.models:DiT"),
    "parti": ("parti:shapes-t2i-tiny", "shapes-t2i", "baselines.parti.models:Transformer"),
}


def _network_rows(monkeypatch, target: str) -> list[int]:
    """Rows of every forward call of the network class ``target`` (``module:Class``)."""
    import importlib

    module, name = target.split(":")
    cls = getattr(importlib.import_module(module), name)
    rows: list[int] = []
    forward = cls.forward

    def spy(self, *args, **kwargs):
        first = next(a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor))
        rows.append(int(first.shape[0]))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(cls, "forward", spy)
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_batch_size_is_the_micro_batch_of_every_chunking_generator(family, tmp_path, monkeypatch):
    model, task, network = FAMILIES[family]
    rows = _network_rows(monkeypatch, network)
    common = ["run", "--task", task, "--model", model, "--num-samples", "4", "--device", "cpu",
              "--knob", "guidance_scale=1", "--threads", "1"]
    if family != "parti":
        common += ["--knob", "steps=2"]
    assert main([*common, "--batch-size", "4", "--out", str(tmp_path / "b4")]) == 0
    rec = json.loads((tmp_path / "b4" / "run.json").read_text())
    assert rec["environment"]["micro_batch"] == 4 and rec["timings"]["batch_size"] == 4
    assert rec["environment"]["threads"] == 1 and rec["environment"]["threads_from"] == "--threads"
    assert max(rows) == 4 and set(rows) <= {4}  # the network saw the 4 samples together (w = 1: no uncond rows)
    rows.clear()
    # without --batch-size a CPU run passes one sample at a time (bit-identical whatever the batch)
    assert main([*common, "--out", str(tmp_path / "auto")]) == 0
    rec = json.loads((tmp_path / "auto" / "run.json").read_text())
    assert rec["environment"]["micro_batch"] == 1 and rec["timings"]["batch_size"] == 64
    assert set(rows) == {1}


@pytest.mark.slow
def test_models_without_chunks_record_no_micro_batch(tmp_path):
    assert main(["run", "--task", "shapes-t2i", "--model", "noise", "--num-samples", "4", "--batch-size", "2",
                 "--out", str(tmp_path / "n")]) == 0
    rec = json.loads((tmp_path / "n" / "run.json").read_text())
    assert rec["environment"]["micro_batch"] is None and "threads" in rec["environment"]


class _Chunky:
    """Stands in for a generator on a GPU: runs out of memory above 3 samples per pass."""

    micro_batch = 1

    def __init__(self):
        self.seen = []

    def generate(self, conditions, seeds, **knobs):
        self.seen.append(self.micro_batch)
        if self.micro_batch > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return torch.zeros(len(seeds), 3, 2, 2, dtype=torch.uint8)


def test_gpu_micro_batch_starts_at_the_batch_and_halves_on_out_of_memory(monkeypatch):
    gen = _Chunky()
    assert choose_micro_batch(gen, 16, None, "cuda") == 16
    assert choose_micro_batch(gen, 16, None, "cpu") == 1
    assert choose_micro_batch(gen, 16, 5, "cpu") == 5
    assert choose_micro_batch(object(), 16, 5, "cpu") is None
    with pytest.raises(CgmbenchError, match="micro-batch must be >= 1"):
        choose_micro_batch(gen, 16, 0, "cpu")
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    gen.micro_batch = 16
    logs = []
    out = generate_with_memory_fallback(gen, None, list(range(16)), {}, log=logs.append)
    assert out.shape[0] == 16 and gen.seen == [16, 8, 4, 2] and gen.micro_batch == 2 and len(logs) == 3
    gen.micro_batch, gen.seen = 1, []

    def always_oom(conditions, seeds, **knobs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    gen.generate = always_oom
    with pytest.raises(torch.cuda.OutOfMemoryError):  # at micro-batch 1 the error stands
        generate_with_memory_fallback(gen, None, [0], {})


def test_thread_default_leaves_the_loaded_cores_alone(monkeypatch):
    assert default_threads(cores=2, load=2.7, ranks=1) == 1     # this busy 2-core machine
    assert default_threads(cores=2, load=0.1, ranks=1) == 2
    assert default_threads(cores=16, load=0.4, ranks=1) == 8    # capped
    assert default_threads(cores=16, load=3.6, ranks=1) == 8
    assert default_threads(cores=16, load=0.0, ranks=4) == 4    # torchrun: the node's cores shared by its ranks
    assert default_threads(cores=4, load=9.0, ranks=1) == 1
    monkeypatch.delenv("CGMBENCH_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert resolve_threads(None) == (3, "OMP_NUM_THREADS")
    monkeypatch.setenv("CGMBENCH_THREADS", "2")
    assert resolve_threads(None) == (2, "CGMBENCH_THREADS")
    assert resolve_threads(5) == (5, "--threads")
    monkeypatch.delenv("CGMBENCH_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    n, source = resolve_threads(None)
    assert 1 <= n <= 8 and source.startswith("default:")
    monkeypatch.setenv("CGMBENCH_THREADS", "many")
    with pytest.raises(CgmbenchError, match="CGMBENCH_THREADS='many' is not an integer"):
        resolve_threads(None)
    with pytest.raises(CgmbenchError, match="--threads must be >= 1"):
        resolve_threads(0)
