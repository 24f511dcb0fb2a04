"""bf16 autocast sampling: stays close to fp32, is recorded, and is refused by models that cannot do it."""

import json

import pytest
import torch

from cgmbench.cli.main import main
from cgmbench.errors import CgmbenchError
from cgmbench.models.registry import load_model
from cgmbench.sources.base import open_source
from cgmbench.spec.task import load_task


@pytest.mark.parametrize("model,task,knobs,mean_tol", [
    ("dit", "shapes-cc", dict(steps=10, sampler="ddim", eta=0.0), 6.0),  # pixel space, w=4 amplifies
    ("ldm", "shapes-t2i", dict(steps=10), 3.0),
    ("sd3", "shapes-t2i", dict(steps=10), 3.0),
])
@pytest.mark.slow
def test_bf16_samples_stay_close_to_fp32(model, task, knobs, mean_tol):
    spec = load_task(task)
    gen = load_model(model, spec)
    assert "bf16" in gen.precisions and gen.precision == "fp32"
    conds = open_source(spec, "conditions").conditions(range(4))
    seeds = [11, 12, 13, 14]
    fp32 = gen.generate(conds, seeds, **knobs)
    gen.set_precision("bf16")
    bf16 = gen.generate(conds, seeds, **knobs)
    diff = (fp32.float() - bf16.float()).abs()
    # bf16 keeps 8 mantissa bits: samples move by a few uint8 levels on average, but they do move
    assert 0 < diff.mean() < mean_tol, diff.mean()
    assert gen.describe()["precision"] == "bf16"
    gen.set_precision("fp32")
    assert torch.equal(gen.generate(conds, seeds, **knobs), fp32)  # back to exactly the fp32 samples


def test_precision_is_validated():
    gen = load_model("oracle", load_task("shapes-t2i"))
    with pytest.raises(CgmbenchError, match="cannot sample in bf16"):
        gen.set_precision("bf16")
    with pytest.raises(CgmbenchError, match="unknown precision 'fp8'"):
        gen.set_precision("fp8")


def test_run_records_the_precision(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--task", "shapes-t2i", "--model", "sd3", "--num-samples", "2", "--knob", "steps=2",
            "--out", str(out)]
    assert main(args + ["--precision", "bf16"]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["model"]["precision"] == "bf16"
    index = json.loads((out / "samples" / "index.json").read_text())
    assert "bf16" in json.dumps(index)
    # resuming the bf16 run as fp32 would mix precisions in one sample store: refused
    capsys.readouterr()
    assert main(args + ["--resume"]) == 2
    assert "differs in: precision" in capsys.readouterr().err
    assert main(["run", "--task", "shapes-t2i", "--model", "oracle", "--num-samples", "2", "--precision", "bf16",
                 "--out", str(tmp_path / "oracle")]) == 2
    assert "cannot sample in bf16" in capsys.readouterr().err
