"""DiT as a cgmbench generator (baselines/dit/generator.py) and the latent decoders (baselines/common/latent.py)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from baselines.dit.generator import OFFICIAL_VARIANTS, VAE_WEIGHTS, DiTGenerator
from baselines.dit.models import DiT
from baselines.dit.train import TRAIN_CONFIGS, DiTTrainConfig
from cgmbench import weights
from cgmbench.cli.main import main
from cgmbench.diffusion import create_diffusion, per_sample_noise
from baselines.common.latent import SD_VAE_SCALE_FACTOR, IdentityDecoder, SDKLDecoder, diffusers_vae_to_compvis
from cgmbench.errors import CgmbenchError
from cgmbench.generator import to_uint8
from cgmbench.seeding import torch_generator
from cgmbench.sources.base import open_source
from cgmbench.spec.task import load_task

pytestmark = [pytest.mark.slow]

TINY = dict(input_size=32, patch_size=8, in_channels=3, hidden_size=32, depth=1, num_heads=2, mlp_ratio=2.0,
            class_dropout_prob=0.1, num_classes=18, learn_sigma=True)


def _random_dit(seed: int = 0, **overrides) -> DiT:
    """A DiT whose every trainable weight is seeded noise (the paper init would output zeros)."""
    model = DiT(**{**TINY, **overrides})
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name != "pos_embed":
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


def _save(model: DiT, path: Path, arch: dict | None = None, **meta) -> Path:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    if arch is not None:
        path.with_suffix(".json").write_text(json.dumps({"dit": arch, "latent": "identity", "image_size": 32,
                                                         "clip_denoised": True, **meta}))
    return path


@pytest.fixture
def tiny_generator(tmp_path):
    model = _random_dit()
    path = _save(model, tmp_path / "tiny.safetensors", TINY)
    return DiTGenerator.load(load_task("shapes-cc"), checkpoint=str(path)), model


def _conditions(indices):
    return open_source(load_task("shapes-cc")).conditions(indices)


# ----------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("knobs", [dict(steps=6, guidance_scale=2.5),
                                   dict(steps=5, sampler="ddim", eta=0.7, guidance_scale=1.0)])
def test_samples_do_not_depend_on_batch_size(tiny_generator, knobs):
    gen, _ = tiny_generator
    seeds = [11, 12, 13]
    together = gen.generate(_conditions([0, 1, 2]), seeds, **knobs)
    alone = torch.cat([gen.generate(_conditions([i]), [s], **knobs) for i, s in zip([0, 1, 2], seeds)])
    assert together.dtype == torch.uint8 and together.shape == (3, 3, 32, 32)
    assert torch.equal(together, alone)
    assert not torch.equal(together[0], together[1])  # different seeds really differ
    again = gen.generate(_conditions([0, 1, 2]), seeds, **knobs)
    assert torch.equal(together, again)


def test_guidance_one_is_the_plain_conditional_sampler(tiny_generator):
    gen, model = tiny_generator
    labels = _conditions([0, 1]).labels
    seeds = [5, 6]
    calls = []
    handle = gen.model.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    try:
        out = gen.generate(_conditions([0, 1]), seeds, guidance_scale=1.0, steps=4)
        assert set(calls) == {1}  # one sample per network call (micro_batch 1), no doubled batch at w = 1
        calls.clear()
        guided = gen.generate(_conditions([0, 1]), seeds, guidance_scale=3.0, steps=4)
        assert set(calls) == {2}  # [cond, uncond] of one sample
    finally:
        handle.remove()
    # the reference: the diffusion's own DDPM loop on the bare model, same per-sample noise, one sample at a time
    refs = []
    for i, seed in enumerate(seeds):
        gens = [torch_generator(seed)]
        x_T = per_sample_noise(gens, (3, 32, 32))
        step_noise = lambda i, shape, gens=gens: per_sample_noise(gens, shape[1:])  # noqa: E731
        refs.append(create_diffusion("4").p_sample_loop(model, (1, 3, 32, 32), noise=x_T, clip_denoised=True,
                                                        model_kwargs={"y": labels[i:i + 1]}, step_noise=step_noise))
    ref = torch.cat(refs)
    assert torch.equal(out, to_uint8(ref))
    assert not torch.equal(out, guided)
    # for a 3-channel model, guiding "3" channels is guiding them all
    assert torch.equal(guided, gen.generate(_conditions([0, 1]), seeds, guidance_scale=3.0, steps=4,
                                            guided_channels="all"))


def test_knob_and_label_errors(tiny_generator):
    gen, _ = tiny_generator
    c = _conditions([0])
    for bad in (dict(guidance_scale=25.0), dict(guidance_scale=-0.5), dict(steps=0), dict(steps=1001),
                dict(sampler="euler"), dict(eta=1.5), dict(guided_channels="2"), dict(cfg_scale=1.5)):
        with pytest.raises(CgmbenchError):
            gen.generate(c, [0], **bad)
    for label in (18, -1):
        c.labels = torch.tensor([label])
        with pytest.raises(CgmbenchError, match="out of range"):
            gen.generate(c, [0], steps=2)


def test_knob_defaults_come_from_the_checkpoint(tmp_path):
    path = _save(_random_dit(), tmp_path / "m.safetensors", TINY, knob_defaults={"steps": 7, "guidance_scale": 3.0})
    gen = DiTGenerator.load(load_task("shapes-cc"), checkpoint=str(path))
    assert gen.resolve_knobs({}) == {"guidance_scale": 3.0, "steps": 7, "sampler": "ddpm", "eta": 0.0,
                                     "guided_channels": "3"}
    assert DiTGenerator.knobs[0].default == 1.5 and DiTGenerator.knobs[1].default == 250  # official defaults


def test_checkpoint_of_another_architecture_names_the_keys(tmp_path):
    path = _save(_random_dit(depth=2), tmp_path / "deeper.safetensors", TINY)  # JSON says depth 1
    with pytest.raises(CgmbenchError, match=r"blocks\.1\."):
        DiTGenerator.load(load_task("shapes-cc"), checkpoint=str(path))
    # without a companion JSON the task's tiny recipe is assumed: a patch-8 model does not fit it
    bare = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in _random_dit().state_dict().items()}, str(bare))
    with pytest.raises(CgmbenchError, match="x_embedder.proj.weight"):
        DiTGenerator.load(load_task("shapes-cc"), checkpoint=str(bare))


def test_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": _random_dit().state_dict(), "cfg": Path("x")}, path)
    path.with_suffix(".json").write_text(json.dumps({"dit": TINY}))
    with pytest.raises(CgmbenchError, match="unsafe"):
        DiTGenerator.load(load_task("shapes-cc"), checkpoint=str(path))


# ----------------------------------------------------------------------------- official variants


def test_missing_official_weights_name_url_and_path(tmp_path, capsys, _isolated_home):
    expected = _isolated_home / "weights" / "DiT-XL-2-256x256.pt"
    for task in ("imagenet256-cc", "shapes-cc"):
        rc = main(["run", "--task", task, "--model", "dit:xl-2-256", "--num-samples", "2",
                   "--out", str(tmp_path / task)])
        err = capsys.readouterr().err
        assert rc == 2
        assert "https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt" in err
        assert str(expected) in err
    with pytest.raises(CgmbenchError, match="unknown DiT checkpoint"):
        DiTGenerator.load(load_task("shapes-cc"), variant="xl-9-256")


def test_official_variant_path_loads_a_plain_state_dict(tmp_path, monkeypatch, _isolated_home, official_dir):
    """The xl-2-256 route (registry path, weights_only .pt, strict load, VAE decode) on tiny stand-ins."""
    arch = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=1, num_heads=2, mlp_ratio=2.0,
                num_classes=1000)
    vae_spec = json.loads((official_dir / "ldm_sd1" / "fixture_sd1_vae_tiny.json").read_text())
    vae_config = dict(vae_spec["constructor"]["kwargs"], lossconfig=None)
    variant = replace(OFFICIAL_VARIANTS["xl-2-256"], arch=arch, image_size=16, vae_config=vae_config)
    monkeypatch.setitem(OFFICIAL_VARIANTS, "xl-2-256", variant)
    weights.known_files()  # builtins first, then the VAE entry this test stands in for
    monkeypatch.setitem(weights._REGISTRY, VAE_WEIGHTS,
                        weights.KnownFile(name=VAE_WEIGHTS, filename="sd-vae-ft-ema.safetensors",
                                          hub_id="stabilityai/sd-vae-ft-ema"))
    folder = _isolated_home / "weights"
    folder.mkdir(parents=True, exist_ok=True)
    model = _random_dit(seed=3, **arch)
    torch.save(model.state_dict(), folder / "DiT-XL-2-256x256.pt")  # the released format: a plain state dict
    shutil.copy(official_dir / "ldm_sd1" / "fixture_sd1_vae_tiny.weights.safetensors",
                folder / "sd-vae-ft-ema.safetensors")

    task_file = tmp_path / "tiny-imagenet.toml"
    text = (Path(__file__).resolve().parents[2] / "tasks" / "imagenet256-cc.toml").read_text()
    task_file.write_text(text.replace('name = "imagenet256-cc"', 'name = "tiny-imagenet"')
                         .replace("resolution = 256", "resolution = 16"))
    task = load_task(str(task_file))
    gen = DiTGenerator.load(task, variant="xl-2-256")
    for k, v in model.state_dict().items():
        assert torch.equal(gen.model.state_dict()[k], v)
    info = gen.checkpoint.to_dict()
    assert info["name"] == "dit:xl-2-256"
    assert info["source"] == "https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt"
    assert info["sha256"] == weights.sha256_file(folder / "DiT-XL-2-256x256.pt")
    assert info["vae"]["name"] == "sd-vae-ft-ema" and info["vae"]["scale_factor"] == 0.18215
    assert gen.resolve_knobs({})["steps"] == 250 and gen.clip_denoised is False
    labels = open_source(task).conditions([0, 999])
    out = gen.generate(labels, [1, 2], steps=3)
    assert out.shape == (2, 3, 16, 16) and out.dtype == torch.uint8
    assert torch.equal(out[1:], gen.generate(open_source(task).conditions([999]), [2], steps=3))


# ----------------------------------------------------------------------------- latent decoders


def test_sd_kl_decoder_matches_the_compvis_fixture(official_dir):
    folder = official_dir / "ldm_sd1"
    spec = json.loads((folder / "fixture_sd1_vae_tiny.json").read_text())
    io = load_file(str(folder / spec["files"]["io"]))
    config = dict(spec["constructor"]["kwargs"], lossconfig=None)
    decoder = SDKLDecoder.from_file(folder / spec["files"]["weights"], config)
    assert decoder.scale_factor == SD_VAE_SCALE_FACTOR == 0.18215 and decoder.downsample_factor == 2
    with torch.no_grad():
        images = decoder.decode(io["input.z"] * SD_VAE_SCALE_FACTOR)  # DiT's latents are 0.18215 * z
    torch.testing.assert_close(images, io["output.decoded"], atol=1e-5, rtol=1e-5)
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    assert torch.equal(IdentityDecoder().decode(x), x)


def test_diffusers_vae_naming_converts_to_compvis(official_dir):
    from baselines.ldm import SD1_VAE_CONFIG, AutoencoderKL

    manifest = json.loads((official_dir / "ldm_sd1" / "manifest_sd1_vae_diffusers.json").read_text())
    diffusers = {k: torch.empty(shape, device="meta") for k, shape, _ in manifest["state_dict"]}
    converted = diffusers_vae_to_compvis(diffusers)
    with torch.device("meta"):
        own = AutoencoderKL(**SD1_VAE_CONFIG).state_dict()
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in own.items()}
    # the pre-0.14 diffusers attention names (query/key/value/proj_attn) map the same way
    old = {k.replace("to_q", "query").replace("to_k", "key").replace("to_v", "value")
            .replace("to_out.0", "proj_attn"): v for k, v in diffusers.items()}
    assert set(diffusers_vae_to_compvis(old)) == set(converted)
    with pytest.raises(ValueError, match="cannot map"):
        diffusers_vae_to_compvis({"encoder.mid_block.attentions.0.rope.weight": torch.zeros(1)})


# ----------------------------------------------------------------------------- training recipe


def test_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    small = DiTTrainConfig(hidden_size=32, depth=1, num_heads=2, patch_size=8, batch_size=4, steps=4,
                              ckpt_every=2, log_every=1, max_items=64, warmup_steps=2)
    monkeypatch.setitem(TRAIN_CONFIGS, ("tiny", "digits-cc"), small)
    task = load_task("digits-cc")
    straight = DiTGenerator.train(task, out=tmp_path / "a", log=lambda m: None)
    DiTGenerator.train(task, out=tmp_path / "b", steps=2, log=lambda m: None)
    with pytest.raises(CgmbenchError, match="--resume"):
        DiTGenerator.train(task, out=tmp_path / "b", log=lambda m: None)
    resumed = DiTGenerator.train(task, out=tmp_path / "b", resume=True, log=lambda m: None)
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows_a = (tmp_path / "a" / "loss.csv").read_text().splitlines()
    rows_b = (tmp_path / "b" / "loss.csv").read_text().splitlines()
    assert len(rows_a) == 5 and [r.split(",")[:4] for r in rows_a] == [r.split(",")[:4] for r in rows_b]
    meta = json.loads(straight.with_suffix(".json").read_text())
    assert meta["sha256"] == weights.sha256_file(straight) and meta["dit"]["num_classes"] == 10
    assert meta["training"]["command"].startswith("cgmbench train --model dit --task digits-cc --config tiny")
    ckpt = torch.load(tmp_path / "b" / "checkpoints" / "step-0000004.pt", weights_only=True)
    assert set(ckpt) == {"model", "ema", "opt", "torch_rng", "gen_rng", "step"} and ckpt["step"] == 4
    # the exported pair loads back as a --checkpoint
    gen = DiTGenerator.load(task, checkpoint=str(straight))
    assert gen.generate(open_source(task).conditions([0]), [0], steps=2).shape == (1, 3, 32, 32)


# ----------------------------------------------------------------------------- shipped checkpoints


@pytest.mark.parametrize("task_name", ["shapes-cc", "digits-cc"])
def test_shipped_checkpoint_matches_its_json(task_name):
    path, sha = weights.shipped(f"dit-{task_name}-tiny.safetensors")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert sha == meta["sha256"]
    assert path.stat().st_size <= 3_000_000
    assert meta["training"]["command"].startswith(f"cgmbench train --model dit --task {task_name} --config tiny")
    assert meta["training"]["steps"] == TRAIN_CONFIGS[("tiny", task_name)].steps
    gen = DiTGenerator.load(load_task(task_name), variant=f"{task_name}-tiny")
    assert gen.checkpoint.to_dict()["name"] == f"dit:{task_name}-tiny" and gen.clip_denoised


def test_shipped_shapes_checkpoint_beats_noise_end_to_end(tmp_path):
    """``cgmbench run --model dit`` picks the shipped shapes-cc checkpoint; the exact judge scores it above noise."""
    scores, colour = {}, {}
    for model in ("dit", "noise"):
        knobs = ["--knob", "steps=20"] if model == "dit" else []
        rc = main(["run", "--task", "shapes-cc", "--model", model, "--num-samples", "16", "--out",
                   str(tmp_path / model), *knobs])
        assert rc == 0
        record = json.loads((tmp_path / model / "run.json").read_text())
        scores[model] = record["metrics"]["judge"]["overall"]["value"]
        colour[model] = record["metrics"]["judge"]["attributes"]["color"]["value"]
    dit_model = json.loads((tmp_path / "dit" / "run.json").read_text())["model"]
    meta = json.loads((weights.shipped_dir() / "dit-shapes-cc-tiny.json").read_text())
    assert dit_model["checkpoint"]["name"] == "dit:shapes-cc-tiny"
    assert dit_model["checkpoint"]["sha256"] == meta["sha256"] and dit_model["knobs"]["steps"] == 20
    assert scores["noise"] == 0.0 and colour["noise"] == 0.0
    # measured with these 16 seeds and 20 steps: overall 0.25, colour 1.0 (256 samples at 50 steps: 0.35, 0.996)
    assert scores["dit"] >= 0.125, scores
    assert colour["dit"] >= 0.75, colour
