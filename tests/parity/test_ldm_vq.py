"""LDM VQ first stage (``VQModelInterface`` + taming ``VectorQuantizer2``): official numeric fixture, the
cin256-v2 manifest, strict loading and the quantizer's semantics."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from baselines.ldm.vq import LDM_VQ_F4_CONFIG, VectorQuantizer2, VQModelInterface, load_vq_model

TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def vq_fixture(official_dir):
    folder = official_dir / "vq"
    meta = json.loads((folder / "fixture_vq_f4_tiny.json").read_text())
    weights = load_file(str(folder / "fixture_vq_f4_tiny.weights.safetensors"))
    io = load_file(str(folder / "fixture_vq_f4_tiny.io.safetensors"))
    return meta, weights, io


def _tiny_vq(vq_fixture) -> VQModelInterface:
    meta, weights, _ = vq_fixture
    return load_vq_model(weights, meta["constructor"]["kwargs"])


def test_vq_tiny_matches_official_every_output(vq_fixture):
    meta, _, io = vq_fixture
    model = _tiny_vq(vq_fixture)
    x = io["input.x"]
    with torch.no_grad():
        h = model.encode(x)
        quant, emb_loss, (perplexity, min_encodings, indices) = model.quantize(h)
        b, c, hh, ww = h.shape
        got = {
            "h": h,
            "quant": quant,
            "emb_loss": emb_loss.reshape(1),
            "indices": indices,
            "decoded": model.decode(h),
            "decoded_no_quant": model.decode(h, force_not_quantize=True),
            "quant_from_indices": model.quantize.get_codebook_entry(indices, shape=(b, hh, ww, c)),
            "reconstruction": model(x)[0],
        }
    assert perplexity is None and min_encodings is None
    named = set()
    for call in meta["forward_calls"]:
        named.update(call["output"] if isinstance(call["output"], list) else [call["output"]])
    assert set(got) == named
    assert h.shape == (2, 3, 4, 4)
    assert indices.dtype == torch.int64 and indices.shape == (32,)
    assert torch.equal(indices, io["output.indices"])
    for name, value in got.items():
        assert value.shape == io[f"output.{name}"].shape, name
        torch.testing.assert_close(value, io[f"output.{name}"], **TOL, msg=lambda m, n=name: f"{n}: {m}")


def test_quantizer_semantics_against_brute_force(vq_fixture):
    """Nearest code by exact distance, row-major flat indices, straight-through quant, 1.25·mse legacy loss."""
    model = _tiny_vq(vq_fixture)
    q = model.quantize
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 3, 2, 5, generator=g)
    with torch.no_grad():
        quant, loss, (_, _, idx) = q(z)
    codebook = q.embedding.weight.detach()
    flat = z.permute(0, 2, 3, 1).reshape(-1, 3)
    brute = torch.cdist(flat.double(), codebook.double()).argmin(dim=1)
    assert torch.equal(idx, brute)
    # row-major over (b, i, j): position (b=1, i=0, j=3) is entry 1*10 + 0*5 + 3
    assert int(idx[13]) == int(torch.cdist(z[1, :, 0, 3][None].double(), codebook.double()).argmin())
    rows = codebook[idx].reshape(3, 2, 5, 3).permute(0, 3, 1, 2)
    torch.testing.assert_close(quant, rows, atol=1e-6, rtol=0)
    mse = ((rows - z) ** 2).mean()
    torch.testing.assert_close(loss, 1.25 * mse, atol=1e-6, rtol=1e-6)
    # non-legacy gives the same value in eval (beta moves to the other, numerically equal, term)
    q2 = VectorQuantizer2(q.n_e, q.e_dim, legacy=False)
    q2.load_state_dict(q.state_dict())
    torch.testing.assert_close(q2(z)[1], loss.detach())
    # straight-through: the gradient of quant w.r.t. z is the identity
    zg = z.clone().requires_grad_(True)
    q(zg)[0].sum().backward()
    assert torch.equal(zg.grad, torch.ones_like(z))
    # sane_index_shape returns (B, h, w)
    q3 = VectorQuantizer2(q.n_e, q.e_dim, sane_index_shape=True)
    q3.load_state_dict(q.state_dict())
    assert torch.equal(q3(z)[2][2], idx.reshape(3, 2, 5))


def test_decode_requantises_and_decode_of_codes_matches(vq_fixture):
    """decode(h) == decode(codebook rows, force_not_quantize) and is invariant to moving h within a code's cell."""
    model = _tiny_vq(vq_fixture)
    io = vq_fixture[2]
    with torch.no_grad():
        h = model.encode(io["input.x"])
        rows = model.quantize.get_codebook_entry(io["output.indices"], shape=(2, 4, 4, 3))
        torch.testing.assert_close(model.decode(h), model.decode(rows, force_not_quantize=True), atol=1e-5, rtol=0)
        nudged = h + 1e-4 * torch.randn(h.shape, generator=torch.Generator().manual_seed(1))
        assert torch.equal(model.quantize(nudged)[2][2], io["output.indices"])
        torch.testing.assert_close(model.decode(nudged), model.decode(h), atol=1e-5, rtol=0)
        raw = model.decode(nudged, force_not_quantize=True) - model.decode(h, force_not_quantize=True)
        assert raw.abs().max() > 0
        # forward with indices (VQModel.forward(return_pred_indices=True))
        _, _, ind = model(io["input.x"], return_pred_indices=True)
    assert torch.equal(ind, io["output.indices"])


def test_cin256_v2_vq_manifest_keys_and_shapes(official_dir):
    man = json.loads((official_dir / "vq" / "manifest_ldm_vq-f4_cin256-v2.json").read_text())
    assert man["constructor"]["kwargs"]["n_embed"] == LDM_VQ_F4_CONFIG["n_embed"]
    assert man["constructor"]["kwargs"]["embed_dim"] == LDM_VQ_F4_CONFIG["embed_dim"]
    expected_dd = man["constructor"]["kwargs"]["ddconfig"]
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in LDM_VQ_F4_CONFIG["ddconfig"].items()} == expected_dd
    prefix = man["key_prefix_in_checkpoint"]
    assert prefix == "first_stage_model."
    with torch.device("meta"):
        model = VQModelInterface(**LDM_VQ_F4_CONFIG)
    got = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]
    expected = [(k.removeprefix(prefix), shape, dtype) for k, shape, dtype in man["state_dict"]]
    assert got == expected
    assert len(got) == man["num_tensors"] == 205
    assert sum(v.numel() for v in model.state_dict().values()) == man["num_elements"]
    assert model.downsample_factor == 4


def _meta_state(man) -> dict[str, torch.Tensor]:
    return {k: torch.empty(shape, device="meta") for k, shape, _ in man["state_dict"]}


def test_cin256_v2_vq_manifest_loads_strictly_from_a_latent_diffusion_dict(official_dir):
    """The manifest's keys (prefixed, beside other LatentDiffusion parts) load; a wrong key is named."""
    man = json.loads((official_dir / "vq" / "manifest_ldm_vq-f4_cin256-v2.json").read_text())
    sd = _meta_state(man)
    sd["model.diffusion_model.out.2.bias"] = torch.empty(3, device="meta")  # another part: left alone
    sd["cond_stage_model.embedding.weight"] = torch.empty(1001, 512, device="meta")
    model = load_vq_model(sd)
    assert model.quantize.embedding.weight.shape == (8192, 3)
    assert model.quantize.embedding.weight.is_meta

    renamed = dict(sd)
    renamed["first_stage_model.quantize.embedding.weights"] = renamed.pop("first_stage_model.quantize.embedding.weight")
    with pytest.raises(ValueError, match=r"missing keys, first 'quantize.embedding.weight'.*unexpected keys, "
                                         r"first 'quantize.embedding.weights'"):
        load_vq_model(renamed)
    wrong = dict(sd, **{"first_stage_model.quant_conv.weight": torch.empty(4, 3, 1, 1, device="meta")})
    with pytest.raises(ValueError, match=r"'quant_conv.weight': checkpoint \(4, 3, 1, 1\) vs model \(3, 3, 1, 1\)"):
        load_vq_model(wrong)
    with pytest.raises(ValueError, match="no key of the checkpoint starts with 'first_stage_model.'"):
        load_vq_model({"betas": torch.zeros(3)}, prefix="first_stage_model.")


def test_standalone_vq_checkpoint_with_loss_keys(vq_fixture, tmp_path):
    """The standalone vq-f4 model.ckpt has no prefix and extra ``loss.*`` keys: dropped only on request."""
    meta, weights, io = vq_fixture
    sd = dict(weights, **{"loss.discriminator.main.0.weight": torch.zeros(2, 3, 4, 4)})
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": sd, "epoch": 1}, path)
    with pytest.raises(ValueError, match=r"unexpected keys, first 'loss.discriminator.main.0.weight'"):
        load_vq_model(path, meta["constructor"]["kwargs"])
    model = load_vq_model(path, meta["constructor"]["kwargs"], ignore_prefixes=["loss."])
    with torch.no_grad():
        torch.testing.assert_close(model.encode(io["input.x"]), io["output.h"], **TOL)
    st = tmp_path / "vq.safetensors"
    save_file(dict(weights), str(st))
    from_st = load_vq_model(st, meta["constructor"]["kwargs"])
    assert torch.equal(from_st.post_quant_conv.bias, weights["post_quant_conv.bias"])


def test_bad_configs_and_inputs_are_refused(vq_fixture):
    kwargs = vq_fixture[0]["constructor"]["kwargs"]
    with pytest.raises(ValueError, match="double_z"):
        VQModelInterface(**dict(kwargs, ddconfig=dict(kwargs["ddconfig"], double_z=True)))
    with pytest.raises(ValueError, match="lossconfig"):
        loss = {"target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator"}
        VQModelInterface(**dict(kwargs, lossconfig=loss))
    with pytest.raises(ValueError, match="remap"):
        VectorQuantizer2(16, 3, remap="used.npy")
    with pytest.raises(ValueError, match="unknown VQModelInterface arguments"):
        VQModelInterface(**kwargs, n_codes=3)
    model = _tiny_vq(vq_fixture)
    with pytest.raises(ValueError, match=r"expected latents \(B, 3, h, w\)"):
        model.quantize(torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match=r"codebook indices must lie in \[0, 15\]"):
        model.quantize.get_codebook_entry(torch.tensor([0, 16]), shape=(1, 1, 2, 3))
    with pytest.raises(ValueError, match="does not fit 4 indices"):
        model.quantize.get_codebook_entry(torch.tensor([0, 1, 2, 3]), shape=(1, 2, 3, 3))
    assert model.quantize.get_codebook_entry(torch.tensor([0, 5]), shape=None).shape == (2, 3)
