"""SDEdit on SD3 rectified flow (``sdedit:sd3-shapes-t2i-tiny``): the strength convention and its two ends."""

import pytest
import torch

from baselines.editing.generator import SDEditGenerator
from baselines.editing.sampling import edit_flow, flow_start_index
from baselines.editing.sdedit_flow import FlowSDEditGenerator
from baselines.sd3.generator import SD3Generator
from cgmbench.conditions import Conditions
from cgmbench.diffusion import get_sigmas, sample_euler
from cgmbench.errors import CgmbenchError
from cgmbench.models.registry import load_model, register_model
from cgmbench.spec.task import load_task
from cgmbench.worlds.sources import ShapesSource

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    register_model("sdedit", SDEditGenerator)
    task = load_task("shapes-edit")
    return task, load_model("sdedit:sd3-shapes-t2i-tiny", task), ShapesSource(task, {"size": 1000})


def test_start_index_is_the_diffusers_sd3_convention():
    assert [flow_start_index(20, s) for s in (0.0, 0.05, 0.4, 1.0)] == [20, 19, 12, 0]
    assert flow_start_index(20, 0.33) == 13  # ceil(20 * 0.33) = 7 steps (SD 1.x img2img: int(6.6) = 6)
    assert flow_start_index(20, 1e-6) == 19  # any positive strength runs a step


def test_edit_flow_mixes_the_source_at_the_start_sigma():
    sigmas = get_sigmas(1.0, 10)
    x0, eps = torch.full((1, 3, 4, 4), 0.5), torch.full((1, 3, 4, 4), -1.0)
    seen = []

    def denoiser(x, sigma, **_):
        seen.append((x.clone(), float(sigma[0])))
        return torch.zeros_like(x)

    out, info = edit_flow(sample_euler, denoiser, x0, sigmas, eps, 0.4)
    s = float(sigmas[6])
    assert info == {"steps_run": 4, "start_sigma": pytest.approx(s)} and len(seen) == 4
    assert torch.allclose(seen[0][0], (1 - s) * x0 + s * eps) and seen[0][1] == pytest.approx(s)
    assert torch.allclose(out, torch.zeros_like(out))  # Euler with x0_hat = 0 ends at 0
    same, info = edit_flow(sample_euler, denoiser, x0, sigmas, eps, 0.0)
    assert torch.equal(same, x0) and info["steps_run"] == 0


def test_strength_zero_returns_the_source(setup):
    task, model, source = setup
    assert isinstance(model, FlowSDEditGenerator) and model.checkpoint.name == "sd3:shapes-t2i-tiny"
    assert "sigmas[t_start]" in model.checkpoint.extra["strength_convention"]
    cond = source.conditions([0, 1])
    assert torch.equal(model.generate(cond, [5, 6], strength=0.0, steps=5), cond.images)


def test_strength_one_is_text_to_image_sampling(setup):
    task, model, source = setup
    text = "a red circle to the left of a blue square"  # free text: prompt = text, negative prompt = ""
    cond = source.conditions([0])
    edit = Conditions(kind="image+text", indices=[0], images=cond.images, texts=[text])
    got = model.generate(edit, [7], strength=1.0, steps=5)
    t2i = SD3Generator.load(load_task("shapes-t2i"), variant="shapes-t2i-tiny")
    want = t2i.generate(Conditions(kind="text", indices=[0], texts=[text]), [7], steps=5)
    assert torch.equal(got, want)
    mid = model.generate(edit, [7], strength=0.4, steps=5)
    assert not torch.equal(mid, want) and not torch.equal(mid, cond.images)
    d_mid = (mid.float() - cond.images.float()).abs().mean()
    assert d_mid < (want.float() - cond.images.float()).abs().mean()


def test_bad_inputs(setup):
    task, model, source = setup
    cond = source.conditions([0])
    small = Conditions(kind="image+text", indices=[0], images=cond.images[:, :, :16, :16], texts=cond.texts)
    with pytest.raises(CgmbenchError, match="source images must be uint8"):
        model.generate(small, [0])
    with pytest.raises(CgmbenchError, match="unknown sd3 checkpoint"):
        load_model("sdedit:sd3-nope", task)
    assert "sd3-shapes-t2i-tiny" in SDEditGenerator.variants() and "shapes-t2i-tiny" in SDEditGenerator.variants()
