"""Text-to-image generators: LDM (CompVis DDIM) and SD3-style rectified flow, their text encoders,
official-checkpoint paths, training recipes and the shipped shapes-t2i models."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from baselines.common.kl_vae import SD1_VAE_CONFIG, AutoencoderKL
from baselines.common.text_encoders import (
    CLIPTextEncoder,
    OpenCLIPBigGEncoder,
    ShapesTokenizer,
    ShapesWordEncoder,
    T5XXLEncoder,
    shapes_vocabulary,
)
from baselines.ldm.generator import LDM_TINY_CONFIGS, LDM_VARIANTS, LDMGenerator, build_tiny_ldm
from baselines.ldm.unet import UNetModel
from baselines.sd3.generator import SD3_TINY_CONFIGS, SD3_VARIANTS, SD3Generator, build_tiny_sd3
from baselines.sd3.models import MMDiT
from cgmbench.conditions import Conditions
from cgmbench.diffusion import DDIMSampler
from cgmbench.errors import CgmbenchError
from cgmbench.paths import weights_dir
from cgmbench.seeding import torch_generator
from cgmbench.spec.task import load_task
from cgmbench.worlds import shapes as W

pytestmark = [pytest.mark.slow]

PROMPTS = ["a small red circle", "two blue squares", "a green triangle to the left of a cyan circle"]


def _cond(texts):
    return Conditions(kind="text", indices=list(range(len(texts))), texts=list(texts))


@pytest.fixture(scope="module")
def task():
    return load_task("shapes-t2i")


@pytest.fixture(scope="module")
def tiny_ldm():
    torch.manual_seed(0)
    cfg = LDM_TINY_CONFIGS["tiny"]
    unet, vae, text = build_tiny_ldm(cfg)
    # the official zero init would make eps == 0 and the text irrelevant: randomise the output conv and every
    # SpatialTransformer's proj_out (zero-initialised too), so the prompt reaches eps and guidance matters
    for name, p in unet.named_parameters():
        if name.startswith("out.") or ".proj_out." in name:
            torch.nn.init.normal_(p, std=0.05)
    from cgmbench.diffusion import ldm_alphas_cumprod

    return LDMGenerator(unet, vae, text, scale_factor=0.7, alphas_cumprod=ldm_alphas_cumprod(),
                        resolution=32, defaults=cfg["defaults"], checkpoint=None)


@pytest.fixture(scope="module")
def tiny_sd3():
    torch.manual_seed(0)
    cfg = SD3_TINY_CONFIGS["tiny"]
    mmdit, text = build_tiny_sd3(dict(cfg, mmdit=dict(cfg["mmdit"], hidden_size=32, depth=2, num_heads=2)))
    return SD3Generator(mmdit, text, resolution=32, defaults=cfg["defaults"], checkpoint=None)


# ----------------------------------------------------------------------------- text encoders


def test_shapes_vocabulary_covers_the_world():
    vocab = set(shapes_vocabulary())
    for words in (W.COLORS, W.SHAPES, W.SIZES, W.COUNT_WORDS.values(), W.DIRECTIONS):
        assert set(words) <= vocab
    assert {s + "s" for s in W.SHAPES} <= vocab
    assert {w for r in W.RELATIONS for w in r.split()} <= vocab


def test_tokenizer_truncation_and_unknown_words():
    tok = ShapesTokenizer(context_length=6)
    ids, info = tok(["a red circle", "a small red circle to the left of a blue square", "", "a purple blob"])
    assert ids.shape == (4, 6)
    assert info == {"context_length": 6, "truncated": 1, "unknown_words": 2}
    v = tok.index
    assert ids[0].tolist() == [tok.start, v["a"], v["red"], v["circle"], tok.end, tok.pad]
    assert ids[1].tolist()[-1] == tok.end  # truncated prompts still end with <end>
    assert ids[2].tolist() == [tok.start, tok.end] + [tok.pad] * 4


def test_shapes_word_encoder_shapes_and_prompt_sensitivity():
    torch.manual_seed(0)
    enc = ShapesWordEncoder().eval()
    tokens, pooled, info = enc.encode(PROMPTS + [""])
    assert tokens.shape == (4, 16, 64) and pooled.shape == (4, 64)
    assert info["truncated"] == 0
    assert not torch.allclose(pooled[0], pooled[1])
    one, _, _ = enc.encode(PROMPTS[:1])
    torch.testing.assert_close(one[0], tokens[0], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("cls,hub_id", [(CLIPTextEncoder, "openai/clip-vit-large-patch14"),
                                        (T5XXLEncoder, "google/t5-v1_1-xxl"),
                                        (OpenCLIPBigGEncoder, "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k")])
def test_hub_encoders_offline_error_names_hub_id_and_cache(cls, hub_id, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(CgmbenchError) as e:
        cls()
    text = str(e.value)
    assert hub_id in text and str(tmp_path / "hf") in text and "HF_HOME" in text
    assert not any((tmp_path / "hf").rglob("*.safetensors"))  # nothing was downloaded


# ----------------------------------------------------------------------------- generator contract


@pytest.mark.parametrize("which", ["ldm", "sd3"])
def test_batch_independence(which, tiny_ldm, tiny_sd3):
    gen = tiny_ldm if which == "ldm" else tiny_sd3
    knobs = dict(steps=4, guidance_scale=2.0)
    seeds = [11, 12, 13]
    batched = gen.generate(_cond(PROMPTS), seeds, **knobs)
    assert batched.dtype == torch.uint8 and batched.shape == (3, 3, 32, 32)
    single = torch.cat([gen.generate(_cond([p]), [s], **knobs) for p, s in zip(PROMPTS, seeds)])
    assert torch.equal(batched, single)
    other = gen.generate(_cond(PROMPTS), [14, 12, 13], **knobs)
    assert not torch.equal(other[0], batched[0]) and torch.equal(other[1:], batched[1:])


def test_ldm_eta_noise_is_per_sample(tiny_ldm):
    seeds = [5, 6, 7]
    batched = tiny_ldm.generate(_cond(PROMPTS), seeds, steps=4, eta=1.0)
    single = torch.cat([tiny_ldm.generate(_cond([p]), [s], steps=4, eta=1.0) for p, s in zip(PROMPTS, seeds)])
    assert torch.equal(batched, single)
    assert not torch.equal(batched, tiny_ldm.generate(_cond(PROMPTS), seeds, steps=4, eta=0.0))


def test_ldm_guidance_one_is_the_unguided_path(tiny_ldm):
    seeds = [3, 4]
    texts = PROMPTS[:2]
    out = tiny_ldm.generate(_cond(texts), seeds, steps=5, guidance_scale=1.0)
    # the plain conditional CompVis DDIM chain, built by hand
    c, _ = tiny_ldm.encode_prompts(texts)
    zs = []
    for i, s in enumerate(seeds):
        x_T = torch.randn(tiny_ldm.latent_shape, generator=torch_generator(s))[None]
        z, _ = DDIMSampler(tiny_ldm.apply_model, tiny_ldm.alphas_cumprod).sample(
            5, 1, tiny_ldm.latent_shape, conditioning=c[i:i + 1], x_T=x_T, eta=0.0)
        zs.append(z)
    ref = tiny_ldm.vae.decode(torch.cat(zs) / tiny_ldm.scale_factor)
    assert torch.equal(out, ((ref + 1) * 127.5).round().clamp(0, 255).to(torch.uint8))
    guided = tiny_ldm.generate(_cond(texts), seeds, steps=5, guidance_scale=4.0)
    assert not torch.equal(out, guided)


def test_sd3_guidance_one_is_the_unguided_path(tiny_sd3, monkeypatch):
    seeds = [3, 4]
    out = tiny_sd3.generate(_cond(PROMPTS[:2]), seeds, steps=3, guidance_scale=1.0)
    calls = []
    encode = tiny_sd3.text_encoder.encode

    def spy(texts):
        calls.append(list(texts))
        return encode(texts)

    monkeypatch.setattr(tiny_sd3.text_encoder, "encode", spy)
    again = tiny_sd3.generate(_cond(PROMPTS[:2]), seeds, steps=3, guidance_scale=1.0)
    assert torch.equal(out, again) and calls == [PROMPTS[:2]]  # no unconditional prompts encoded at w = 1
    guided = tiny_sd3.generate(_cond(PROMPTS[:2]), seeds, steps=3, guidance_scale=3.0)
    assert calls[-1] == ["", ""] and not torch.equal(out, guided)


@pytest.mark.parametrize("which", ["ldm", "sd3"])
@pytest.mark.parametrize("texts", [None, [""], ["   "], [3], ["a red circle", None]])
def test_empty_or_non_text_prompts_are_errors(which, texts, tiny_ldm, tiny_sd3):
    gen = tiny_ldm if which == "ldm" else tiny_sd3
    cond = Conditions(kind="text", indices=list(range(len(texts or [0]))), texts=texts)
    with pytest.raises(CgmbenchError, match="prompt"):
        gen.generate(cond, list(range(len(cond))), steps=1)


@pytest.mark.parametrize("which,knob,value", [
    ("ldm", "guidance_scale", -0.5), ("ldm", "steps", 0), ("ldm", "steps", 1001), ("ldm", "eta", 1.5),
    ("ldm", "shift", 3.0), ("sd3", "shift", 0.0), ("sd3", "sampler", "heun"), ("sd3", "guidance_scale", 51),
    ("sd3", "steps", 2.5), ("sd3", "eta", 0.0)])
def test_knob_ranges(which, knob, value, tiny_ldm, tiny_sd3):
    gen = tiny_ldm if which == "ldm" else tiny_sd3
    with pytest.raises(CgmbenchError, match=knob):
        gen.generate(_cond(PROMPTS[:1]), [0], **{knob: value})


def test_declared_knobs_and_defaults(tiny_ldm, tiny_sd3):
    assert [k.name for k in tiny_ldm.knobs] == ["guidance_scale", "steps", "eta"]
    assert [k.name for k in tiny_sd3.knobs] == ["guidance_scale", "steps", "shift", "sampler"]
    assert LDM_VARIANTS["txt2img-f8-large"]["defaults"] == dict(guidance_scale=1.5, steps=250, eta=0.0)
    assert SD3_VARIANTS["medium"]["defaults"] == dict(guidance_scale=5.0, steps=50, shift=3.0, sampler="euler")
    a = tiny_sd3.generate(_cond(PROMPTS[:1]), [1], steps=3, sampler="dpmpp_2m")
    b = tiny_sd3.generate(_cond(PROMPTS[:1]), [1], steps=3, sampler="euler")
    assert not torch.equal(a, b)


# ----------------------------------------------------------------------------- official checkpoints


def test_missing_official_weights_name_url_and_path():
    coco = load_task("coco-t2i")
    with pytest.raises(CgmbenchError) as e:
        LDMGenerator.load(coco, "txt2img-f8-large")
    text = str(e.value)
    assert "ommer-lab.com/files/latent-diffusion/nitro/txt2img-f8-large/model.ckpt" in text
    assert str(weights_dir() / "ldm-txt2img-f8-large.ckpt") in text
    with pytest.raises(CgmbenchError) as e:
        SD3Generator.load(coco, "medium")
    text = str(e.value)
    assert "stabilityai/stable-diffusion-3-medium" in text and str(weights_dir() / "sd3_medium.safetensors") in text


def _tiny_compvis_state(official_dir):
    unet_meta = json.loads((official_dir / "ldm_sd1" / "fixture_sd1_unet_tiny.json").read_text())
    vae_meta = json.loads((official_dir / "ldm_sd1" / "fixture_sd1_vae_tiny.json").read_text())
    unet_cfg, vae_cfg = unet_meta["constructor"]["kwargs"], vae_meta["constructor"]["kwargs"]
    unet_w = load_file(str(official_dir / "ldm_sd1" / "fixture_sd1_unet_tiny.weights.safetensors"))
    vae_w = load_file(str(official_dir / "ldm_sd1" / "fixture_sd1_vae_tiny.weights.safetensors"))
    sd = {f"model.diffusion_model.{k}": v for k, v in unet_w.items()}
    sd.update({f"first_stage_model.{k}": v for k, v in vae_w.items()})
    sd["cond_stage_model.transformer.token_emb.weight"] = torch.zeros(10, unet_cfg["context_dim"])
    from cgmbench.diffusion import ldm_alphas_cumprod

    sd["alphas_cumprod"] = ldm_alphas_cumprod()
    return sd, unet_cfg, vae_cfg, unet_w


def test_tiny_compvis_ckpt_loads_through_the_official_path(official_dir, monkeypatch):
    sd, unet_cfg, vae_cfg, unet_w = _tiny_compvis_state(official_dir)
    path = weights_dir() / "ldm-txt2img-f8-large.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": sd, "global_step": 1}, path)
    variant = dict(LDM_VARIANTS["txt2img-f8-large"], unet_config=unet_cfg, vae_config=vae_cfg, resolution=32)
    monkeypatch.setitem(LDM_VARIANTS, "txt2img-f8-large", variant)
    coco = load_task("coco-t2i")
    # U-Net and VAE load strictly, and so does the LDM-BERT conditioner: this file holds only its token
    # embedding, and the error names the first tensor it lacks (a complete one: tests/test_ldm_bert.py)
    with pytest.raises(CgmbenchError, match=r"LDM-BERT.*'cond_stage_model\.transformer\.pos_emb\.emb\.weight'"):
        LDMGenerator.load(coco, "txt2img-f8-large")
    unet, vae, parts = LDMGenerator.load_compvis_parts(path)
    torch.testing.assert_close(unet.state_dict()["input_blocks.0.0.weight"], unet_w["input_blocks.0.0.weight"])
    # with another text encoder the official parts sample
    enc = ShapesWordEncoder()
    enc.width = unet_cfg["context_dim"]

    class Projected:
        def encode(self, texts):
            tokens, pooled, info = enc.encode(texts)
            return tokens[..., : unet_cfg["context_dim"]], pooled, info

    gen = LDMGenerator.from_compvis(path, "txt2img-f8-large", text_encoder=Projected())
    img = gen.generate(_cond(PROMPTS[:1]), [0], steps=2, guidance_scale=1.5)
    assert img.shape == (1, 3, 32, 32) and img.dtype == torch.uint8


def test_ldm_checkpoint_of_another_model_names_the_key(official_dir, tmp_path):
    sd, *_ = _tiny_compvis_state(official_dir)
    sd["model.some_other_net.weight"] = torch.zeros(1)
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CgmbenchError, match="model.some_other_net.weight"):
        LDMGenerator.load(load_task("coco-t2i"), checkpoint=str(path))


def test_ldm_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "cfg": SD1_VAE_CONFIG, "obj": torch.nn.Identity()}, path)
    with pytest.raises(CgmbenchError, match="not a plain weights pickle"):
        LDMGenerator.load(load_task("coco-t2i"), checkpoint=str(path))


def test_tiny_sd3_single_file_loads_through_the_official_path(monkeypatch):
    torch.manual_seed(0)
    mmdit = MMDiT(patch_size=2, in_channels=16, hidden_size=32, depth=2, num_heads=2, adm_in_channels=8,
                  context_dim=16, pos_embed_max_size=8)
    ddconfig = dict(double_z=True, z_channels=16, resolution=16, in_channels=3, out_ch=3, ch=32, ch_mult=(1, 2),
                    num_res_blocks=1, attn_resolutions=(), dropout=0.0)
    vae = AutoencoderKL(ddconfig, embed_dim=16)
    sd = {f"model.diffusion_model.{k}": v for k, v in mmdit.state_dict().items()}
    sd.update({f"first_stage_model.decoder.{k}": v for k, v in vae.decoder.state_dict().items()})
    sd.update({f"first_stage_model.encoder.{k}": v for k, v in vae.encoder.state_dict().items()})
    path = weights_dir() / "sd3_medium.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    monkeypatch.setitem(SD3_VARIANTS, "medium", dict(SD3_VARIANTS["medium"], vae_ddconfig=ddconfig, resolution=16,
                                                     vae_factor=2))
    monkeypatch.setenv("HF_HOME", str(path.parent / "hf"))
    coco = load_task("coco-t2i")
    with pytest.raises(CgmbenchError, match="openai/clip-vit-large-patch14"):
        SD3Generator.load(coco, "medium")
    loaded, decoder = SD3Generator.load_official_parts(path)
    torch.testing.assert_close(loaded.state_dict()["x_embedder.proj.weight"], mmdit.state_dict()["x_embedder.proj.weight"])

    class Stub:
        def encode(self, texts):
            n = len(texts)
            g = torch.Generator().manual_seed(len(texts[0]))
            return torch.randn(n, 5, 16, generator=g), torch.randn(n, 8, generator=g), {"truncated": 0}

    gen = SD3Generator.from_official(path, text_encoder=Stub())
    img = gen.generate(_cond(PROMPTS[:2]), [0, 1], steps=2)
    assert img.shape == (2, 3, 16, 16)


def test_unknown_variant_and_missing_default(task):
    with pytest.raises(CgmbenchError, match="unknown ldm checkpoint"):
        LDMGenerator.load(task, "nope")
    with pytest.raises(CgmbenchError, match="names no default sd3 checkpoint"):
        SD3Generator.load(task, None)


# ----------------------------------------------------------------------------- training recipes


def _micro_configs(monkeypatch):
    ldm = LDM_TINY_CONFIGS["tiny"]
    monkeypatch.setitem(LDM_TINY_CONFIGS, "tiny", dict(
        ldm, unet=dict(ldm["unet"], attention_resolutions=[2]),
        train=dict(ldm["train"], items=48, batch_size=4, vae_steps=2, unet_steps=3, warmup=2)))
    sd3 = SD3_TINY_CONFIGS["tiny"]
    monkeypatch.setitem(SD3_TINY_CONFIGS, "tiny", dict(
        sd3, mmdit=dict(sd3["mmdit"], hidden_size=32, depth=2, num_heads=2),
        train=dict(sd3["train"], items=48, batch_size=4, steps=3, warmup=2)))


@pytest.mark.parametrize("cls,name", [(LDMGenerator, "ldm"), (SD3Generator, "sd3")])
def test_training_is_deterministic_and_resumable(cls, name, task, tmp_path, monkeypatch):
    _micro_configs(monkeypatch)
    full = cls.train(task, out=tmp_path / "full", steps=4, log=lambda m: None)
    cls.train(task, out=tmp_path / "part", steps=2, log=lambda m: None)
    with pytest.raises(CgmbenchError, match="already holds a training run"):
        cls.train(task, out=tmp_path / "part", steps=4, log=lambda m: None)
    resumed = cls.train(task, out=tmp_path / "part", steps=4, resume=True, log=lambda m: None)
    a, b = load_file(str(full)), load_file(str(resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    card = json.loads(full.with_suffix(".json").read_text())
    assert card["command"].startswith(f"cgmbench train --model {name} --task shapes-t2i --config tiny")
    assert len(card["sha256"]) == 64 and card["final_loss"]
    # loss.csv of the interrupted-and-resumed folder equals the straight run's (one row per step and stage)
    import csv

    def rows(folder):
        with open(folder / "loss.csv", newline="") as f:
            return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in csv.DictReader(f)]

    assert rows(tmp_path / "part") == rows(tmp_path / "full")
    stages = [r["stage"] for r in rows(tmp_path / "full")]
    assert stages == (["vae"] * 2 + ["unet"] * 4 if name == "ldm" else ["mmdit"] * 4)
    gen = cls.load(task, checkpoint=str(full))
    img = gen.generate(_cond(PROMPTS[:1]), [0], steps=2)
    assert img.shape == (1, 3, 32, 32)


# ----------------------------------------------------------------------------- shipped models, CLI


@pytest.mark.parametrize("model", ["ldm", "sd3"])
def test_cli_run_of_the_shipped_model(model, tmp_path, capsys):
    from cgmbench.cli.main import main

    out = tmp_path / model
    rc = main(["run", "--task", "shapes-t2i", "--model", f"{model}:shapes-t2i-tiny", "--num-samples", "16",
               "--batch-size", "8", "--knob", "steps=4", "--out", str(out), "--device", "cpu"])
    assert rc == 0
    record = json.loads((out / "run.json").read_text())
    assert record["n"] == 16 and record["model"]["knobs"]["steps"] == 4
    ck = record["model"]["checkpoint"]
    assert ck["name"] == f"{model}:shapes-t2i-tiny" and ck["source"] == "shipped" and len(ck["sha256"]) == 64
    assert 0.0 <= record["metrics"]["judge"]["overall"]["value"] <= 1.0


def test_ldm_step_counts_the_compvis_ddim_cannot_use_are_refused(tiny_ldm):
    # range(0, 1000, 1000 // 3) + 1 reaches t = 1000, outside the schedule (the official sampler fails too)
    with pytest.raises(CgmbenchError, match="steps=3 cannot be used with the CompVis DDIM"):
        tiny_ldm.generate(_cond(PROMPTS[:1]), [0], steps=3)
