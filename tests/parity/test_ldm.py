"""LDM / SD 1.x networks (CompVis naming): numeric fixtures, manifests, checkpoint splitting/loading."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from baselines.common.kl_vae import SD1_VAE_CONFIG, SD_LATENT_SCALE, AutoencoderKL, DiagonalGaussianDistribution
from baselines.common.state_dict import load_state_dict_strict
from baselines.ldm.checkpoints import (
    EMA_META_KEYS,
    LATENT_DIFFUSION_BUFFER_KEYS,
    LDM_CIN256_V2_UNET_CONFIG,
    LDM_TXT2IMG_F8_LARGE_UNET_CONFIG,
    SD1_UNET_CONFIG,
    ema_key,
    load_compvis_unet_vae,
    load_ldm_checkpoint,
    split_compvis_checkpoint,
)
from baselines.ldm.unet import AttentionBlock, UNetModel, timestep_embedding

TOL = dict(atol=1e-5, rtol=1e-5)


def _fixture(official_dir, name):
    folder = official_dir / "ldm_sd1"
    meta = json.loads((folder / f"{name}.json").read_text())
    weights = load_file(str(folder / f"{name}.weights.safetensors"))
    io = load_file(str(folder / f"{name}.io.safetensors"))
    return meta, weights, io


@pytest.fixture(scope="module")
def unet_fixture(official_dir):
    return _fixture(official_dir, "fixture_sd1_unet_tiny")


@pytest.fixture(scope="module")
def vae_fixture(official_dir):
    return _fixture(official_dir, "fixture_sd1_vae_tiny")


def _tiny_unet(unet_fixture):
    meta, weights, _ = unet_fixture
    model = UNetModel(**meta["constructor"]["kwargs"])
    return load_state_dict_strict(model, weights).eval()


def _tiny_vae(vae_fixture):
    meta, weights, _ = vae_fixture
    model = AutoencoderKL(**meta["constructor"]["kwargs"])
    return load_state_dict_strict(model, weights).eval()


def _run_unet(model, io):
    with torch.no_grad():
        return model(io["input.x"], timesteps=io["input.timesteps"], context=io["input.context"])


# ----------------------------------------------------------------------------------------------
# Numeric fixtures
# ----------------------------------------------------------------------------------------------


def test_unet_tiny_matches_official(unet_fixture):
    _, _, io = unet_fixture
    out = _run_unet(_tiny_unet(unet_fixture), io)
    assert out.shape == (2, 4, 8, 8)
    torch.testing.assert_close(out, io["output.out"], **TOL)


def test_vae_tiny_matches_official(vae_fixture):
    meta, _, io = vae_fixture
    vae = _tiny_vae(vae_fixture)
    x, z = io["input.x"], io["input.z"]
    with torch.no_grad():
        got = {
            "moments": vae.quant_conv(vae.encoder(x)),
            "posterior_mean": vae.encode(x).mean,
            "posterior_logvar": vae.encode(x).logvar,
            "decoded": vae.decode(z),
            "reconstruction": vae(x, sample_posterior=False)[0],
        }
    assert set(got) == {c["output"] for c in meta["forward_calls"]}
    for name, value in got.items():
        torch.testing.assert_close(value, io[f"output.{name}"], **TOL, msg=lambda m, n=name: f"{n}: {m}")


def test_timestep_embedding_is_cos_then_sin():
    emb = timestep_embedding(torch.tensor([0, 7]), 6)
    freqs = [math.exp(-math.log(10000) * i / 3) for i in range(3)]
    expected = [[1.0] * 3 + [0.0] * 3, [math.cos(7 * f) for f in freqs] + [math.sin(7 * f) for f in freqs]]
    torch.testing.assert_close(emb, torch.tensor(expected))


def test_legacy_attention_block_head_split():
    """AttentionBlock with legacy order splits qkv per head as (heads, 3·ch) (QKVAttentionLegacy)."""
    torch.manual_seed(0)
    blk = AttentionBlock(64, num_heads=2)
    torch.nn.init.normal_(blk.proj_out.weight, std=0.1)
    x = torch.randn(2, 64, 3, 3)
    with torch.no_grad():
        out = blk(x)
        qkv = blk.qkv(blk.norm(x.reshape(2, 64, 9))).reshape(4, 96, 9)
        q, k, v = qkv.split(32, dim=1)
        w = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / math.sqrt(32), dim=-1)
        a = torch.einsum("bts,bcs->bct", w, v).reshape(2, 64, 9)
        ref = x + blk.proj_out(a).reshape(2, 64, 3, 3)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_class_conditional_label_emb_adds_to_time_embedding(unet_fixture):
    """With num_classes, ``label_emb(y)`` is added to the time embedding: a zero row = unconditional."""
    meta, weights, io = unet_fixture
    model = UNetModel(**meta["constructor"]["kwargs"], num_classes=3).eval()
    assert model.label_emb.weight.shape == (3, 128)
    with torch.no_grad():
        model.label_emb.weight[0].zero_()
    load_state_dict_strict(model, {**weights, "label_emb.weight": model.label_emb.weight.detach().clone()})
    y = torch.tensor([0, 0])
    with torch.no_grad():
        out0 = model(io["input.x"], timesteps=io["input.timesteps"], context=io["input.context"], y=y)
        out1 = model(io["input.x"], timesteps=io["input.timesteps"], context=io["input.context"], y=y + 1)
    torch.testing.assert_close(out0, io["output.out"], **TOL)
    assert (out1 - out0).abs().max() > 1e-3
    with pytest.raises(ValueError, match="class-conditional"):
        model(io["input.x"], timesteps=io["input.timesteps"], context=io["input.context"])


def test_diagonal_gaussian_clamp_sample_mode():
    logvar = torch.tensor([50.0, -50.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    moments = torch.cat([torch.full((1, 2, 2, 2), 0.5), logvar], dim=1)
    post = DiagonalGaussianDistribution(moments)
    assert post.logvar[0, 0].eq(20.0).all() and post.logvar[0, 1].eq(-30.0).all()
    torch.testing.assert_close(post.std, torch.exp(0.5 * post.logvar))
    assert torch.equal(post.mode(), post.mean)
    s1 = post.sample(generator=torch.Generator().manual_seed(3))
    s2 = post.sample(generator=torch.Generator().manual_seed(3))
    eps = torch.randn(post.mean.shape, generator=torch.Generator().manual_seed(3))
    assert torch.equal(s1, s2)
    torch.testing.assert_close(s1, post.mean + post.std * eps)
    assert SD_LATENT_SCALE == 0.18215
    with pytest.raises(ValueError, match="even channel"):
        DiagonalGaussianDistribution(torch.zeros(1, 3, 2, 2))


# ----------------------------------------------------------------------------------------------
# Manifests of the released SD 1.x configuration (built on the meta device)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "manifest, cls, config",
    [
        ("manifest_sd1_unet_compvis.json", UNetModel, SD1_UNET_CONFIG),
        ("manifest_sd1_vae_kl-f8_compvis.json", AutoencoderKL, SD1_VAE_CONFIG),
    ],
)
def test_sd1_manifest_keys_and_shapes(official_dir, manifest, cls, config):
    man = json.loads((official_dir / "ldm_sd1" / manifest).read_text())
    prefix = man["key_prefix_in_checkpoint"]
    with torch.device("meta"):
        model = cls(**config)
    got = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]
    expected = [(k.removeprefix(prefix), shape, dtype) for k, shape, dtype in man["state_dict"]]
    assert got == expected
    assert len(got) == man["num_tensors"]
    assert sum(v.numel() for v in model.state_dict().values()) == man["num_elements"]


def test_ldm_configs_head_split_and_context():
    """txt2img-f8-large = SD 1.x U-Net with 1280-d context; cin256-v2 keeps the legacy split
    (num_heads=1 ⇒ one head of ``ch`` channels) and cross-attends to a 512-d class token."""
    with torch.device("meta"):
        txt = UNetModel(**LDM_TXT2IMG_F8_LARGE_UNET_CONFIG)
        cin = UNetModel(**LDM_CIN256_V2_UNET_CONFIG)
    attn = txt.input_blocks[1][1].transformer_blocks[0].attn2
    assert (attn.heads, attn.dim_head, tuple(attn.to_k.weight.shape)) == (8, 40, (320, 1280))
    # cin256-v2: attention at ds 2, 4, 8 -> levels 1..3 (192·[2, 3, 5] channels), none at level 0.
    assert len(cin.input_blocks[1]) == 1 and len(cin.input_blocks[4]) == 2
    attn = cin.input_blocks[4][1].transformer_blocks[0].attn2
    assert (attn.heads, attn.dim_head, tuple(attn.to_k.weight.shape)) == (1, 384, (384, 512))
    assert tuple(cin.middle_block[1].proj_in.weight.shape) == (960, 960, 1, 1)
    assert tuple(cin.out[2].weight.shape) == (3, 192, 3, 3)


# ----------------------------------------------------------------------------------------------
# CompVis checkpoint splitting and loading
# ----------------------------------------------------------------------------------------------


def _fake_compvis_checkpoint(unet_w, vae_w, ema=True):
    """A LatentDiffusion-style state_dict: networks, schedule buffers, EMA (= weights + 1)."""
    sd = {f"model.diffusion_model.{k}": v for k, v in unet_w.items()}
    sd.update({f"first_stage_model.{k}": v for k, v in vae_w.items()})
    sd["cond_stage_model.embedding.weight"] = torch.randn(5, 32)
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    for name in LATENT_DIFFUSION_BUFFER_KEYS - {"scale_factor", "logvar"}:
        sd[name] = torch.zeros(1000, dtype=torch.float32)
    sd["betas"], sd["alphas_cumprod"] = betas.float(), alphas_cumprod.float()
    sd["logvar"] = torch.zeros(1000)
    if ema:
        sd["model_ema.decay"] = torch.tensor(0.9999)
        sd["model_ema.num_updates"] = torch.tensor(1234, dtype=torch.int32)
        sd.update({ema_key(k): v + 1.0 for k, v in unet_w.items()})
    return sd


def test_ema_key_strips_dots():
    assert ema_key("input_blocks.0.0.weight") == "model_ema.diffusion_modelinput_blocks00weight"
    assert EMA_META_KEYS == {"model_ema.decay", "model_ema.num_updates"}


def test_split_and_load_fake_checkpoint(unet_fixture, vae_fixture):
    meta_u, unet_w, io_u = unet_fixture
    meta_v, vae_w, io_v = vae_fixture
    sd = _fake_compvis_checkpoint(unet_w, vae_w)
    parts = split_compvis_checkpoint(sd)
    assert set(parts) == {"diffusion_model", "first_stage_model", "cond_stage_model", "buffers"}
    assert parts["diffusion_model"].keys() == unet_w.keys()
    assert all(parts["diffusion_model"][k] is unet_w[k] for k in unet_w)
    assert parts["first_stage_model"].keys() == vae_w.keys()
    assert list(parts["cond_stage_model"]) == ["embedding.weight"]
    assert set(parts["buffers"]) == LATENT_DIFFUSION_BUFFER_KEYS - {"scale_factor"}

    unet, vae, _ = load_compvis_unet_vae(sd, meta_u["constructor"]["kwargs"], meta_v["constructor"]["kwargs"])
    torch.testing.assert_close(_run_unet(unet, io_u), io_u["output.out"], **TOL)
    with torch.no_grad():
        torch.testing.assert_close(vae.decode(io_v["input.z"]), io_v["output.decoded"], **TOL)

    ema_parts = split_compvis_checkpoint(sd, use_ema=True)
    assert ema_parts["diffusion_model"].keys() == unet_w.keys()
    for k, v in unet_w.items():
        assert torch.equal(ema_parts["diffusion_model"][k], v + 1.0), k
    unet_ema, _, _ = load_compvis_unet_vae(
        sd, meta_u["constructor"]["kwargs"], meta_v["constructor"]["kwargs"], use_ema=True
    )
    assert torch.equal(unet_ema.out[2].weight, unet_w["out.2.weight"] + 1.0)


@pytest.mark.parametrize(
    "extra",
    ["some_unknown_buffer", "model_ema.diffusion_modelnot_a_layerweight", "model.other_module.weight", "lvlb_weight"],
)
def test_split_refuses_unknown_key(unet_fixture, vae_fixture, extra):
    sd = _fake_compvis_checkpoint(unet_fixture[1], vae_fixture[1])
    sd[extra] = torch.zeros(1)
    with pytest.raises(ValueError, match=extra):
        split_compvis_checkpoint(sd)
    # Dropping it on purpose is explicit.
    parts = split_compvis_checkpoint(sd, ignore_prefixes=[extra])
    assert parts["diffusion_model"].keys() == unet_fixture[1].keys()


def test_split_use_ema_errors(unet_fixture, vae_fixture):
    unet_w, vae_w = unet_fixture[1], vae_fixture[1]
    with pytest.raises(ValueError, match="no model_ema"):
        split_compvis_checkpoint(_fake_compvis_checkpoint(unet_w, vae_w, ema=False), use_ema=True)
    sd = _fake_compvis_checkpoint(unet_w, vae_w)
    del sd[ema_key("out.2.bias")]
    with pytest.raises(ValueError, match="out.2.bias"):
        split_compvis_checkpoint(sd, use_ema=True)


def test_strict_load_names_missing_and_mismatched_keys(unet_fixture):
    meta, weights, _ = unet_fixture
    model = UNetModel(**meta["constructor"]["kwargs"])
    partial = dict(weights)
    del partial["out.2.bias"]
    with pytest.raises(ValueError, match=r"missing keys, first 'out.2.bias'"):
        load_state_dict_strict(model, partial)
    wrong = dict(weights, **{"time_embed.0.weight": torch.zeros(128, 16)})
    with pytest.raises(ValueError, match=r"'time_embed.0.weight': checkpoint \(128, 16\) vs model \(128, 32\)"):
        load_state_dict_strict(model, wrong)


def test_load_ldm_checkpoint_ckpt_and_safetensors(tmp_path, unet_fixture, vae_fixture):
    sd = _fake_compvis_checkpoint(unet_fixture[1], vae_fixture[1])
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": sd, "epoch": 3, "global_step": 470000}, ckpt)
    loaded = load_ldm_checkpoint(ckpt)
    assert loaded.keys() == sd.keys()
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)

    st = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(st))
    loaded = load_ldm_checkpoint(st)
    assert loaded.keys() == sd.keys()
    assert torch.equal(loaded["model.diffusion_model.out.2.weight"], sd["model.diffusion_model.out.2.weight"])

    with pytest.raises(FileNotFoundError, match="not found"):
        load_ldm_checkpoint(tmp_path / "missing.ckpt")
    (tmp_path / "model.yaml").write_text("a: 1")
    with pytest.raises(ValueError, match="unsupported checkpoint type"):
        load_ldm_checkpoint(tmp_path / "model.yaml")


class _NotAWeight:
    """An arbitrary class: unpickling it needs code execution, which weights_only forbids."""

    def __init__(self):
        self.payload = "x"


def test_load_ldm_checkpoint_refuses_unsafe_pickle(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"betas": torch.zeros(3)}, "callback": _NotAWeight()}, path)
    with pytest.raises(ValueError, match=r"refusing to load .*evil\.ckpt.*_NotAWeight"):
        load_ldm_checkpoint(path)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"garbage\.ckpt"):
        load_ldm_checkpoint(garbage)
