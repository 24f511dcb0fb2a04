"""SD3 MM-DiT in the original Stability naming (baselines/sd3.py) against the official fixtures.

Fixtures (``sd3_mmdit/`` in the official folder): ``fixture_sd3_tiny`` is diffusers'
``SD3Transformer2DModel`` output for weights drawn on the official ``MMDiTX`` (stored in both
namings); ``manifest_sd3_medium_*.json`` are the key/shape lists of the real SD3-medium.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from baselines.sd3.checkpoints import (
    diffusers_to_original,
    extract_diffusion_model_state_dict,
    load_sd3_checkpoint,
    original_to_diffusers,
)
from baselines.sd3.models import (
    CHECKPOINT_PREFIX,
    SD3_MEDIUM_CONFIG,
    SD3_VAE_SCALE_FACTOR,
    SD3_VAE_SHIFT_FACTOR,
    MMDiT,
    get_2d_sincos_pos_embed,
    sd3_latent_process_in,
    sd3_latent_process_out,
)

TINY_KWARGS = dict(
    patch_size=2,
    in_channels=4,
    out_channels=4,
    hidden_size=16,
    depth=2,
    num_heads=2,
    adm_in_channels=8,
    context_dim=16,
    pos_embed_max_size=16,
)


@pytest.fixture(scope="module")
def sd3_dir(official_dir):
    return official_dir / "sd3_mmdit"


@pytest.fixture(scope="module")
def tiny_original(sd3_dir):
    return load_file(str(sd3_dir / "fixture_sd3_tiny.weights_original_naming.safetensors"))


@pytest.fixture(scope="module")
def tiny_diffusers(sd3_dir):
    return load_file(str(sd3_dir / "fixture_sd3_tiny.weights.safetensors"))


@pytest.fixture(scope="module")
def tiny_io(sd3_dir):
    return load_file(str(sd3_dir / "fixture_sd3_tiny.io.safetensors"))


def _run(model, io):
    model.eval()
    with torch.no_grad():
        return model(
            io["input.hidden_states"],
            io["input.timestep"],
            y=io["input.pooled_projections"],
            context=io["input.encoder_hidden_states"],
        )


def _manifest(sd3_dir, name):
    data = json.loads((sd3_dir / name).read_text())
    return data, {k: tuple(shape) for k, shape, _ in data["state_dict"]}


def _meta_state_dict(shapes):
    return {k: torch.empty(s, device="meta") for k, s in shapes.items()}


# -- numerics against the fixture ---------------------------------------------------------


def test_tiny_fixture_from_state_dict(tiny_original, tiny_io):
    config = MMDiT.config_from_state_dict(tiny_original)
    assert config == dict(TINY_KWARGS, mlp_ratio=4.0, qk_norm=None, qkv_bias=True)
    model = MMDiT.from_state_dict(tiny_original)
    assert model.joint_blocks[-1].context_block.pre_only
    assert not model.joint_blocks[0].context_block.pre_only
    out = _run(model, tiny_io)
    assert out.shape == (2, 4, 8, 8)
    torch.testing.assert_close(out, tiny_io["output.sample"], atol=1e-5, rtol=1e-5)


def test_tiny_fixture_explicit_construction(tiny_original, tiny_io):
    torch.manual_seed(0)
    model = MMDiT(**TINY_KWARGS)
    model.load_official_state_dict(tiny_original)
    torch.testing.assert_close(model.pos_embed, tiny_original["pos_embed"])
    out = _run(model, tiny_io)
    torch.testing.assert_close(out, tiny_io["output.sample"], atol=1e-5, rtol=1e-5)
    # conditioning actually matters: another timestep / pooled vector / context changes the output
    io = dict(tiny_io)
    io["input.timestep"] = torch.tensor([500.0, 10.0])
    assert (_run(model, io) - out).abs().max() > 1e-3
    io = dict(tiny_io)
    io["input.pooled_projections"] = torch.zeros_like(io["input.pooled_projections"])
    assert (_run(model, io) - out).abs().max() > 1e-3
    io = dict(tiny_io)
    io["input.encoder_hidden_states"] = io["input.encoder_hidden_states"].flip(1) + 1.0
    assert (_run(model, io) - out).abs().max() > 1e-3


def test_scalar_timestep_broadcasts(tiny_original, tiny_io):
    model = MMDiT.from_state_dict(tiny_original).eval()
    x, ctx = tiny_io["input.hidden_states"], tiny_io["input.encoder_hidden_states"]
    y = tiny_io["input.pooled_projections"]
    with torch.no_grad():
        a = model(x, torch.tensor(312.5), y=y, context=ctx)
        b = model(x, torch.tensor([312.5, 312.5]), y=y, context=ctx)
    torch.testing.assert_close(a, b)


def test_cropped_pos_embed_and_rectangular_latent(tiny_original):
    model = MMDiT.from_state_dict(tiny_original).eval()
    table = tiny_original["pos_embed"].reshape(16, 16, 16)
    # a 6x10 latent -> 3x5 patch grid, centred in the 16x16 table: top 6, left 5
    crop = model.cropped_pos_embed((6, 10))
    torch.testing.assert_close(crop, table[6:9, 5:10].reshape(1, 15, 16))
    x = torch.randn(1, 4, 6, 10)
    with torch.no_grad():
        out = model(x, torch.tensor([100.0]), y=torch.randn(1, 8), context=torch.randn(1, 3, 16))
    assert out.shape == (1, 4, 6, 10)
    with pytest.raises(ValueError, match="pos_embed_max_size=16"):
        model.cropped_pos_embed((34, 8))


def test_forward_rejects_bad_inputs(tiny_original, tiny_io):
    model = MMDiT.from_state_dict(tiny_original).eval()
    x, t = tiny_io["input.hidden_states"], tiny_io["input.timestep"]
    y, ctx = tiny_io["input.pooled_projections"], tiny_io["input.encoder_hidden_states"]
    with pytest.raises(ValueError, match="multiple of patch_size"):
        model(torch.randn(2, 4, 7, 8), t, y=y, context=ctx)
    with pytest.raises(ValueError, match="context"):
        model(x, t, y=y, context=None)
    with pytest.raises(ValueError, match="pooled"):
        model(x, t, y=None, context=ctx)
    with pytest.raises(ValueError, match="x must be"):
        model(torch.randn(2, 3, 8, 8), t, y=y, context=ctx)


def test_sincos_table_matches_fixture_pos_embed(tiny_original):
    # the fixture table is diffusers' for sample_size 8 / patch 2: grid / (16 / 4)
    table = get_2d_sincos_pos_embed(16, 16, scaling_factor=4.0)
    torch.testing.assert_close(table, tiny_original["pos_embed"][0], atol=1e-6, rtol=0)


# -- SD3-medium manifest ------------------------------------------------------------------


def test_sd3_medium_manifest_matches_meta_model(sd3_dir):
    data, shapes = _manifest(sd3_dir, "manifest_sd3_medium_original.json")
    prefix = data["key_prefix_in_checkpoint"]
    assert prefix == CHECKPOINT_PREFIX
    expected = {k[len(prefix) :]: s for k, s in shapes.items()}
    with torch.device("meta"):
        model = MMDiT(**SD3_MEDIUM_CONFIG)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(got) == sorted(expected)
    assert got == expected
    assert len(got) == data["num_tensors"] == 491
    assert sum(v.numel() for v in model.state_dict().values()) == data["num_elements"]
    # the last context block is pre_only
    assert "joint_blocks.23.context_block.attn.proj.weight" not in got
    assert got["joint_blocks.23.context_block.adaLN_modulation.1.weight"] == (2 * 1536, 1536)


def test_sd3_medium_config_inferred_from_manifest_shapes(sd3_dir):
    _, shapes = _manifest(sd3_dir, "manifest_sd3_medium_original.json")
    meta = _meta_state_dict(shapes)
    sliced = extract_diffusion_model_state_dict(meta)
    config = MMDiT.config_from_state_dict(sliced)
    assert config == SD3_MEDIUM_CONFIG
    model = MMDiT.from_state_dict(sliced, device="meta")  # strict load of meta tensors
    assert model.hidden_size == 1536 and model.depth == 24 and model.num_heads == 24


# -- bad checkpoints ------------------------------------------------------------------------


def test_truncated_state_dict_names_missing_keys(tiny_original):
    broken = dict(tiny_original)
    del broken["joint_blocks.0.x_block.mlp.fc2.weight"]
    del broken["final_layer.adaLN_modulation.1.bias"]
    with pytest.raises(ValueError, match=r"2 missing key\(s\).*final_layer.adaLN_modulation.1.bias") as err:
        MMDiT.from_state_dict(broken)
    assert "joint_blocks.0.x_block.mlp.fc2.weight" in str(err.value)
    model = MMDiT(**TINY_KWARGS)
    with pytest.raises(ValueError, match="joint_blocks.0.x_block.mlp.fc2.weight"):
        model.load_official_state_dict(broken)


def test_wrong_shapes_and_extra_keys_are_named(tiny_original):
    model = MMDiT(**TINY_KWARGS)
    bad = dict(tiny_original)
    bad["context_embedder.weight"] = torch.zeros(16, 12)
    with pytest.raises(ValueError, match=r"context_embedder.weight: checkpoint \(16, 12\) vs model \(16, 16\)"):
        model.load_official_state_dict(bad)
    extra = dict(tiny_original)
    extra["joint_blocks.1.context_block.mlp.fc1.weight"] = torch.zeros(64, 16)
    with pytest.raises(ValueError, match=r"unexpected key\(s\): joint_blocks.1.context_block.mlp.fc1.weight"):
        model.load_official_state_dict(extra)
    # a model with other dimensions (64*depth rule) does not accept the tiny weights
    with pytest.raises(ValueError, match="shape mismatch"):
        MMDiT(**dict(TINY_KWARGS, hidden_size=128)).load_official_state_dict(tiny_original)


def test_diffusers_or_prefixed_dict_gives_hint(tiny_original, tiny_diffusers):
    with pytest.raises(ValueError, match="x_embedder.proj.weight"):
        MMDiT.from_state_dict(tiny_diffusers)
    with pytest.raises(ValueError, match="diffusers_to_original"):
        MMDiT(**TINY_KWARGS).load_official_state_dict(tiny_diffusers)
    prefixed = {CHECKPOINT_PREFIX + k: v for k, v in tiny_original.items()}
    with pytest.raises(ValueError, match="extract_diffusion_model_state_dict"):
        MMDiT.from_state_dict(prefixed)


# -- single-file checkpoints ------------------------------------------------------------------


def test_load_sd3_checkpoint_single_file(tmp_path, tiny_original, tiny_io):
    full = {CHECKPOINT_PREFIX + k: v for k, v in tiny_original.items()}
    full["first_stage_model.decoder.conv_in.weight"] = torch.randn(8, 16, 3, 3)
    full["text_encoders.clip_l.transformer.text_model.final_layer_norm.weight"] = torch.randn(8)
    path = tmp_path / "sd3_tiny.safetensors"
    save_file(full, str(path))
    model = load_sd3_checkpoint(path)
    torch.testing.assert_close(_run(model, tiny_io), tiny_io["output.sample"], atol=1e-5, rtol=1e-5)
    # fp16 file -> fp16 tensors unless a dtype is asked for
    half_path = tmp_path / "sd3_tiny_fp16.safetensors"
    save_file({k: v.half() for k, v in full.items()}, str(half_path))
    assert load_sd3_checkpoint(half_path).final_layer.linear.weight.dtype == torch.float16
    assert load_sd3_checkpoint(half_path, dtype=torch.float32).pos_embed.dtype == torch.float32
    # a bare (unprefixed) MM-DiT file loads as well
    bare = tmp_path / "bare.safetensors"
    save_file(dict(tiny_original), str(bare))
    torch.testing.assert_close(_run(load_sd3_checkpoint(bare), tiny_io), tiny_io["output.sample"], atol=1e-5, rtol=1e-5)


def test_load_sd3_checkpoint_errors(tmp_path, tiny_original):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_sd3_checkpoint(tmp_path / "missing.safetensors")
    stray = {CHECKPOINT_PREFIX + k: v for k, v in tiny_original.items()}
    stray["conditioner.embedders.0.weight"] = torch.zeros(2)
    path = tmp_path / "stray.safetensors"
    save_file(stray, str(path))
    with pytest.raises(ValueError, match="conditioner.embedders.0.weight"):
        load_sd3_checkpoint(path)
    truncated = {CHECKPOINT_PREFIX + k: v for k, v in tiny_original.items() if ".x_block.attn.qkv." not in k}
    path = tmp_path / "truncated.safetensors"
    save_file(truncated, str(path))
    with pytest.raises(ValueError, match=r"truncated.safetensors: .*missing key\(s\): joint_blocks.0.x_block.attn.qkv"):
        load_sd3_checkpoint(path)
    other = tmp_path / "weights.npz"
    other.write_bytes(b"")
    with pytest.raises(ValueError, match="unsupported checkpoint format"):
        load_sd3_checkpoint(other)


def test_load_sd3_checkpoint_torch_file(tmp_path, tiny_original, tiny_io):
    path = tmp_path / "sd3_tiny.ckpt"
    torch.save({"state_dict": {CHECKPOINT_PREFIX + k: v for k, v in tiny_original.items()}}, str(path))
    torch.testing.assert_close(_run(load_sd3_checkpoint(path), tiny_io), tiny_io["output.sample"], atol=1e-5, rtol=1e-5)


# -- naming conversion --------------------------------------------------------------------------


def test_original_to_diffusers_matches_fixture(tiny_original, tiny_diffusers):
    converted = original_to_diffusers(tiny_original)
    assert sorted(converted) == sorted(tiny_diffusers)
    for key, value in tiny_diffusers.items():
        torch.testing.assert_close(converted[key], value, atol=0, rtol=0, msg=key)
    back = diffusers_to_original(tiny_diffusers)
    assert sorted(back) == sorted(tiny_original)
    for key, value in tiny_original.items():
        torch.testing.assert_close(back[key], value, atol=0, rtol=0, msg=key)
    # the swap is real: final adaLN halves differ between the namings
    assert not torch.equal(
        tiny_original["final_layer.adaLN_modulation.1.weight"], tiny_diffusers["norm_out.linear.weight"]
    )


def test_naming_conversion_on_sd3_medium_manifests(sd3_dir):
    _, original = _manifest(sd3_dir, "manifest_sd3_medium_original.json")
    _, diffusers = _manifest(sd3_dir, "manifest_sd3_medium_diffusers.json")
    converted = original_to_diffusers(extract_diffusion_model_state_dict(_meta_state_dict(original)))
    assert {k: tuple(v.shape) for k, v in converted.items()} == diffusers
    back = diffusers_to_original(_meta_state_dict(diffusers))
    assert {CHECKPOINT_PREFIX + k: tuple(v.shape) for k, v in back.items()} == original


def test_naming_conversion_errors(tiny_diffusers):
    incomplete = dict(tiny_diffusers)
    del incomplete["transformer_blocks.0.attn.to_k.weight"]
    with pytest.raises(ValueError, match="joint_blocks.0.x_block.attn.qkv.weight"):
        diffusers_to_original(incomplete)
    with pytest.raises(ValueError, match="transformer_blocks.0.attn2.to_q.weight"):
        diffusers_to_original(dict(tiny_diffusers, **{"transformer_blocks.0.attn2.to_q.weight": torch.zeros(1)}))


def test_qk_norm_rms_roundtrip():
    torch.manual_seed(1)
    model = MMDiT(**dict(TINY_KWARGS, qk_norm="rms"))
    sd = model.state_dict()
    assert sd["joint_blocks.0.context_block.attn.ln_k.weight"].shape == (8,)
    assert MMDiT.config_from_state_dict(sd)["qk_norm"] == "rms"
    diff = original_to_diffusers(sd)
    assert "transformer_blocks.1.attn.norm_added_q.weight" in diff
    rebuilt = MMDiT.from_state_dict(diffusers_to_original(diff)).eval()
    x, t, y, ctx = torch.randn(1, 4, 4, 4), torch.tensor([250.0]), torch.randn(1, 8), torch.randn(1, 3, 16)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x, t, y=y, context=ctx), model.eval()(x, t, y=y, context=ctx))


# -- VAE latent constants ---------------------------------------------------------------------


def test_vae_latent_constants():
    assert SD3_VAE_SCALE_FACTOR == 1.5305 and SD3_VAE_SHIFT_FACTOR == 0.0609
    z = torch.tensor([0.0609, 1.0609])
    torch.testing.assert_close(sd3_latent_process_in(z), torch.tensor([0.0, 1.5305]))
    torch.testing.assert_close(sd3_latent_process_out(sd3_latent_process_in(z)), z)
