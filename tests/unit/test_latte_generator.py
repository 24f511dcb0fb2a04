"""LatteGenerator: layout, guidance convention, per-sample seeding over all frames, checkpoint round trip, errors."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from baselines.common.latent import IdentityDecoder
from baselines.common.shipped import save_shipped
from baselines.latte.generator import LatteGenerator
from baselines.latte.sampling import build_latte, latte_eps_model, video_noise
from baselines.latte.models import Latte
from cgmbench.conditions import Conditions
from cgmbench.errors import CgmbenchError
from cgmbench.generator import CheckpointInfo
from cgmbench.seeding import torch_generator

torch.set_num_threads(1)

CONFIG = dict(
    resolution=16,
    latte=dict(input_size=16, patch_size=8, in_channels=3, hidden_size=32, depth=2, num_heads=2, num_frames=4,
               class_dropout_prob=0.0, num_classes=None, learn_sigma=True, extras=78, text_tokens=16, text_width=16),
    text_encoder=dict(context_length=16, width=16, layers=1, heads=2),
    defaults=dict(guidance_scale=3.0, steps=4, sampler="ddpm"),
    clip_denoised=True, model="latte", name="test",
)


def _cond(kind, **fields):
    n = len(fields.get("texts") if fields.get("texts") is not None else fields["labels"])
    return Conditions(kind=kind, indices=list(range(n)), **fields)


def _randomize(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.requires_grad:  # keep the fixed sin-cos tables
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def _text_generator(tmp_path):
    model, text = build_latte(CONFIG)
    _randomize(model, 1)
    _randomize(text, 2)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"text_encoder.{k}": v for k, v in text.state_dict().items()})
    path = save_shipped(tmp_path / "latte-test.safetensors", tensors, CONFIG, {"command": "test"})
    return LatteGenerator.from_cgmbench_file(path, CheckpointInfo("t", "0", str(path), "test")), path


def _class_generator():
    model = Latte(input_size=8, patch_size=4, in_channels=3, hidden_size=32, depth=2, num_heads=2, num_frames=3,
                  num_classes=5, learn_sigma=True, extras=2)
    _randomize(model, 3)
    return LatteGenerator(model, IdentityDecoder(), 8, CheckpointInfo("c", None, None, "test"),
                          knob_defaults={"steps": 3, "guidance_scale": 2.0})


def test_text_samples_shape_and_per_sample_seeding(tmp_path):
    gen, _ = _text_generator(tmp_path)
    prompts = ["a red circle moving left", "a blue square moving up", "a green triangle moving down"]
    out = gen.generate(_cond("text->video", texts=prompts), [11, 12, 13])
    assert out.dtype == torch.uint8 and tuple(out.shape) == (3, 4, 3, 16, 16)
    alone = gen.generate(_cond("text->video", texts=prompts[1:2]), [12])
    assert torch.equal(alone[0], out[1])  # a sample depends on its own seed only, not on its batch
    other = gen.generate(_cond("text->video", texts=prompts[1:2]), [99])
    assert not torch.equal(other[0], out[1])
    assert out[0].float().std(dim=0).mean() > 0  # frames differ: not one image repeated


def test_noise_covers_all_frames_in_official_order():
    gens = [torch_generator(5), torch_generator(6)]
    x = video_noise(gens, frames=4, channels=3, side=8)
    assert tuple(x.shape) == (2, 3, 4, 8, 8)  # the sampler layout (N, C, F, h, w)
    ref = torch.randn((4, 3, 8, 8), generator=torch_generator(6))  # official torch.randn(1, F, C, h, w) order
    assert torch.equal(x[1], ref.transpose(0, 1))


def test_guidance_matches_official_forward_with_cfg():
    gen = _class_generator()
    model = gen.model
    x = torch.randn(2, 3, 3, 8, 8, generator=torch.Generator().manual_seed(0))  # (N, F, C, h, w)
    t = torch.tensor([500, 20])
    y = torch.tensor([1, 4])
    null = torch.full_like(y, model.num_classes)
    official = model.forward_with_cfg(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]), cfg_scale=4.0,
                                      guided_channels=3)[:2]
    from cgmbench.diffusion import cfg_model

    ours = cfg_model(latte_eps_model(model), 4.0, {"y": null}, channels=3)(x.transpose(1, 2), t, y=y)
    torch.testing.assert_close(ours.transpose(1, 2), official, rtol=0, atol=1e-5)
    # w = 1 is the conditional prediction alone
    plain = cfg_model(latte_eps_model(model), 1.0, {"y": null}, channels=3)(x.transpose(1, 2), t, y=y)
    torch.testing.assert_close(plain.transpose(1, 2), model(x, t, y=y), rtol=0, atol=0)


def test_class_generation_and_label_errors():
    gen = _class_generator()
    out = gen.generate(_cond("class", labels=torch.tensor([0, 4])), [1, 2])
    assert tuple(out.shape) == (2, 3, 3, 8, 8)
    with pytest.raises(CgmbenchError, match="out of range"):
        gen.generate(_cond("class", labels=torch.tensor([5])), [1])
    with pytest.raises(CgmbenchError, match="no class labels"):
        gen.generate(_cond("text->video", texts=["a"]), [1])


def test_round_trip_and_frame_mismatch(tmp_path):
    gen, path = _text_generator(tmp_path)
    again = LatteGenerator.from_cgmbench_file(path, CheckpointInfo("t", "0", str(path), "test"))
    for (k, a), b in zip(gen.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(a, b), k
    task = types.SimpleNamespace(name="shapes-t2v", frames=8, resolution=16)
    with pytest.raises(CgmbenchError, match="4-frame videos; task shapes-t2v needs 8 frames"):
        LatteGenerator._check_task(gen, task)
    LatteGenerator._check_task(gen, types.SimpleNamespace(name="x", frames=4, resolution=16))
    with pytest.raises(CgmbenchError, match="empty or non-text prompt"):
        gen.generate(_cond("text->video", texts=[""]), [1])


def test_corrupt_and_foreign_checkpoints(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CgmbenchError, match="cannot read Latte checkpoint"):
        LatteGenerator._from_file(bad, "ucf101", "cpu")
    model, text = build_latte(CONFIG)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items() if not k.startswith("final_layer")}
    tensors.update({f"text_encoder.{k}": v for k, v in text.state_dict().items()})
    path = save_shipped(tmp_path / "latte-broken.safetensors", tensors, CONFIG, {"command": "test"})
    with pytest.raises(CgmbenchError, match="missing key 'final_layer"):
        LatteGenerator.from_cgmbench_file(path, CheckpointInfo("t", "0", str(path), "test"))


def test_noise_is_official_layout_per_step(tmp_path):
    """Two runs with the same seeds give identical videos (the step noise is drawn per sample too)."""
    gen, _ = _text_generator(tmp_path)
    c = _cond("text->video", texts=["a red circle moving left"] * 2)
    a = gen.generate(c, [3, 4], sampler="ddpm")
    b = gen.generate(c, [3, 4], sampler="ddpm")
    assert torch.equal(a, b)
    d = gen.generate(c, [3, 4], sampler="ddim")
    assert not np.array_equal(a.numpy(), d.numpy())


def test_text_reaches_the_samples_and_guidance_changes_them(tmp_path):
    """Same seed, other caption -> other video; the empty (unconditional) prompt is not the caption; w matters."""
    torch.manual_seed(0)
    model, text = build_latte(CONFIG)
    _randomize(model, 1)  # the word encoder keeps its initialisation, as the tiny recipe's frozen one
    gen = LatteGenerator(model, IdentityDecoder(), 16, CheckpointInfo("t", None, None, "test"), text_encoder=text,
                         knob_defaults=CONFIG["defaults"])
    seeds = [5, 5]
    out = gen.generate(_cond("text->video", texts=["a red circle moving left", "a blue square moving up"]), seeds)
    assert not torch.equal(out[0], out[1])  # the caption reaches the video (the noise is the same)
    cond, uncond = gen._condition_kwargs(_cond("text->video", texts=["a red circle moving left"]), 1)
    assert (cond["text_embedding"] - uncond["text_embedding"]).abs().mean() > 0.05
    prompt = _cond("text->video", texts=["a red circle moving left"])
    w1 = gen.generate(prompt, [5], guidance_scale=1.0)
    w4 = gen.generate(prompt, [5], guidance_scale=4.0)
    assert not torch.equal(w1, w4)  # guidance is applied: the unconditional pass is not the conditional one


class _OracleLatte(torch.nn.Module):
    """Stands in for the network: returns, for the true videos ``x0`` (N, F, C, h, w), exactly the training
    target of ``diffusion`` (the recipe's, 1000 steps) at the timestep the network receives, and 0 for the
    learned-variance channels."""

    def __init__(self, like: Latte, x0: torch.Tensor, diffusion):
        super().__init__()
        self.in_channels, self.num_frames, self.extras = like.in_channels, like.num_frames, like.extras
        self.x_embedder, self.learn_sigma, self.num_classes = like.x_embedder, like.learn_sigma, like.num_classes
        self.x0, self.diffusion = x0, diffusion

    def forward(self, x, t, **kwargs):  # x (N', F, C, h, w) noisy, t: the original timesteps
        x0 = self.x0.repeat(len(x) // len(self.x0), 1, 1, 1, 1).to(x)
        ab = torch.from_numpy(self.diffusion.alphas_cumprod).float()[t].view(-1, 1, 1, 1, 1)
        eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
        target = x0 if self.diffusion.model_mean_type == "start_x" else eps
        return torch.cat([target, torch.zeros_like(target)], dim=2) if self.learn_sigma else target


@pytest.mark.parametrize("prediction", ["eps", "x0"])
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_sampler_inverts_the_training_parametrisation(tmp_path, prediction, sampler):
    """Regression (issue 16): an oracle returning the exact training target -- checked to give zero training
    loss -- must make the generator's sampler reproduce the training videos, through the saved configuration,
    the (N, C, F, h, w) layout, respacing to 6 steps and guidance. A mismatch of target, timesteps, channel
    split or frame order between the recipe and the sampler breaks this."""
    from baselines.latte.sampling import latte_diffusion

    config = dict(CONFIG, prediction=prediction)
    model, text = build_latte(config)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"text_encoder.{k}": v for k, v in text.state_dict().items()})
    path = save_shipped(tmp_path / "latte-oracle.safetensors", tensors, config, {"command": "test"})
    gen = LatteGenerator.from_cgmbench_file(path, CheckpointInfo("t", "0", str(path), "test"))
    videos = torch.randint(0, 256, (2, 4, 3, 16, 16), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    x0 = videos.float() / 127.5 - 1.0  # the recipe's scaling, (N, F, C, h, w)
    train = latte_diffusion(prediction, config["latte"]["learn_sigma"])
    oracle = _OracleLatte(gen.model, x0, train)
    t = torch.tensor([0, 999])
    loss = train.training_losses(latte_eps_model(oracle), x0.transpose(1, 2), t)["mse"]
    assert loss.max() < 1e-8  # the oracle is the recipe's regression target
    gen.model = oracle
    prompts = ["a red circle moving left", "a blue square moving up"]
    out = gen.generate(_cond("text->video", texts=prompts), [1, 2], steps=6, sampler=sampler, guidance_scale=3.0)
    assert (out.int() - videos.int()).abs().max() <= 1  # the uint8 rounding of float32 arithmetic at most
    # the other parametrisation's sampler would not reproduce them
    gen.predict_xstart, gen._diffusions = prediction != "x0", {}
    wrong = gen.generate(_cond("text->video", texts=prompts), [1, 2], steps=6, sampler=sampler, guidance_scale=3.0)
    assert (wrong.int() - videos.int()).abs().float().mean() > 10
