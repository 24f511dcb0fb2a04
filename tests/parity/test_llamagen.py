"""baselines.parti against the official LlamaGen fixtures (tests/fixtures/official/llamagen, README section 9).

* the tokenizer and both GPTs reproduce every stored output of the official code (atol = rtol = 1e-5;
  indices, tokens and positions exactly);
* generate() replays the recorded randomness to the same tokens, and reproduces the per-step logits,
  guided logits, probabilities and the layer-0 KV cache; seeding a generator with the recorded CPU state
  (or the gen_seed) reproduces LlamaGen's own draws;
* the manifests of the released files load strictly (meta tensors, nothing allocated), the inferred
  configs equal the official constructors, and broken files give one clear CgmbenchError.
"""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from safetensors.torch import load_file

from baselines.parti import checkpoints as ckpt
from baselines.parti.models import ModelArgs, Transformer, causal_mask_with_prefix
from baselines.parti.sampling import generate
from baselines.parti.tokenizer import ModelArgs as VQModelArgs
from baselines.parti.tokenizer import VQModel
from cgmbench.errors import CgmbenchError

TOL = dict(atol=1e-5, rtol=1e-5)
MANIFESTS = ["manifest_vq_ds16_c2i.json", "manifest_c2i_B_256.json", "manifest_c2i_L_256.json",
             "manifest_t2i_XL_stage1_256.json"]


def _fixture(official_dir, name):
    folder = official_dir / "llamagen"
    meta = json.loads((folder / f"{name}.json").read_text())
    weights = load_file(str(folder / f"{name}.weights.safetensors"))
    io = load_file(str(folder / f"{name}.io.safetensors"))
    return meta, weights, io


@pytest.fixture(scope="module")
def vq(official_dir):
    meta, weights, io = _fixture(official_dir, "fixture_llamagen_vq_tiny")
    cons = meta["constructor"]
    model = VQModel(VQModelArgs(**cons["kwargs"], **cons["encoder_decoder_kwargs_override"])).eval()
    model.load_state_dict(weights, strict=True)
    return model, io


def _gpt(official_dir, kind):
    meta, weights, io = _fixture(official_dir, f"fixture_llamagen_gpt_{kind}_tiny")
    model = Transformer(ModelArgs(**meta["constructor"]["kwargs"])).eval()
    model.load_state_dict(weights, strict=True)
    return model, meta, io, weights


# ----------------------------------------------------------------------------- tokenizer
def test_vq_tokenizer_matches_official(vq):
    model, io = vq
    x = io["input.x"]
    with torch.no_grad():
        h = model.quant_conv(model.encoder(x))
        quant, losses, (_, _, indices) = model.encode(x)
        decoded = model.decode(quant)
        reconstruction, _ = model(x)
        b, c, hh, ww = quant.shape
        from_indices = model.quantize.get_codebook_entry(indices, shape=(b, c, hh, ww), channel_first=True)
        from_codes = model.decode_code(io["input.codes"], io["input.qzshape"].tolist())
    torch.testing.assert_close(h, io["output.h"], **TOL)
    torch.testing.assert_close(quant, io["output.quant"], **TOL)
    assert torch.equal(indices, io["output.indices"])
    assert losses == (None, None, None, 0)  # eval mode computes no losses
    torch.testing.assert_close(decoded, io["output.decoded"], **TOL)
    torch.testing.assert_close(reconstruction, io["output.reconstruction"], **TOL)
    torch.testing.assert_close(from_indices, io["output.quant_from_indices"], **TOL)
    torch.testing.assert_close(from_codes, io["output.decoded_from_codes"], **TOL)
    # the codes are the L2-normalised rows, not the stored ones
    rows = model.quantize.embedding.weight[indices]
    torch.testing.assert_close(from_indices.permute(0, 2, 3, 1).reshape(-1, c),
                               rows / rows.norm(dim=-1, keepdim=True), atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- GPT forward
def test_gpt_c2i_logits_match_official(official_dir):
    model, _, io, _ = _gpt(official_dir, "c2i")
    idx, cond = io["input.idx"], io["input.cond"]
    with torch.no_grad():
        logits, loss = model(idx, cond, input_pos=torch.arange(1 + idx.shape[1]))
    assert loss is None
    torch.testing.assert_close(logits, io["output.logits"], **TOL)


def test_gpt_t2i_logits_match_official(official_dir):
    model, _, io, _ = _gpt(official_dir, "t2i")
    idx, caption = io["input.idx"], io["input.caption"]
    pos = torch.arange(120 + idx.shape[1])
    # the training mask of dataset/t2i.py, sliced [:-1, :-1] as train_t2i.py does
    mask = causal_mask_with_prefix(121 + idx.shape[1], io["input.emb_mask"])[:, None, :-1, :-1]
    assert torch.equal(mask, io["input.attn_mask"])
    with torch.no_grad():
        logits, _ = model(idx, caption, input_pos=pos)
        logits_masked, _ = model(idx, caption, input_pos=pos, mask=mask)
    torch.testing.assert_close(logits, io["output.logits"], **TOL)
    torch.testing.assert_close(logits_masked, io["output.logits_masked"], **TOL)


# ----------------------------------------------------------------------------- generate()
def _run_kwargs(meta, io):
    run = meta["generate_runs"][0]
    name = run["name"]
    if meta["constructor"]["kwargs"]["model_type"] == "c2i":
        cond, extra = io[f"input.{name}.cond"], {}
    else:
        cond, extra = io["input.caption"], {"emb_mask": io["input.emb_mask"]}
    knobs = dict(guidance_scale=run["cfg_scale"], cfg_interval=run["cfg_interval"], temperature=run["temperature"],
                 top_k=run["top_k"], top_p=run["top_p"], **extra)
    return run, name, cond, knobs


@pytest.mark.parametrize("kind", ["c2i", "t2i"])
def test_generate_replays_recorded_run(official_dir, kind):
    model, meta, io, _ = _gpt(official_dir, kind)
    run, name, cond, knobs = _run_kwargs(meta, io)
    assert run["cfg_scale"] > 1  # guidance_scale = cfg_scale, identical conventions
    tokens, trace = generate(model, cond, run["max_new_tokens"], exp_noise=io[f"input.{name}.exp_noise"],
                             return_trace=True, **knobs)
    assert torch.equal(tokens, io[f"output.{name}.tokens"].long())
    assert torch.equal(trace["input_pos_last"], io[f"output.{name}.model_input_pos_last"])
    torch.testing.assert_close(trace["model_logits_last"], io[f"output.{name}.model_logits_last"], **TOL)
    torch.testing.assert_close(trace["sample_logits"], io[f"output.{name}.sample_logits"], **TOL)
    torch.testing.assert_close(trace["probs"], io[f"output.{name}.probs"], **TOL)
    if kind == "c2i":
        cache = model.layers[0].attention.kv_cache
        torch.testing.assert_close(cache.k_cache, io[f"output.{name}.k_cache_layer0"], **TOL)
        torch.testing.assert_close(cache.v_cache, io[f"output.{name}.v_cache_layer0"], **TOL)


@pytest.mark.parametrize("kind", ["c2i", "t2i"])
def test_generate_reproduces_llamagen_draws_from_its_generator_state(official_dir, kind):
    model, meta, io, _ = _gpt(official_dir, kind)
    run, name, cond, knobs = _run_kwargs(meta, io)
    from_state = torch.Generator()
    from_state.set_state(io[f"input.{name}.rng_state"])
    from_seed = torch.Generator().manual_seed(run["gen_seed"])
    for g in (from_state, from_seed):
        tokens = generate(model, cond, run["max_new_tokens"], shared_generator=g, **knobs)
        assert torch.equal(tokens, io[f"output.{name}.tokens"].long())
    # the recorded draws are exactly what that generator yields, step after step
    g = torch.Generator().manual_seed(run["gen_seed"])
    for step_noise in io[f"input.{name}.exp_noise"]:
        assert torch.equal(torch.empty_like(step_noise).exponential_(1, generator=g), step_noise)


# ----------------------------------------------------------------------------- checkpoints
def _manifest_state_dict(official_dir, name):
    manifest = json.loads((official_dir / "llamagen" / name).read_text())
    sd = {k: torch.empty(shape, dtype=getattr(torch, dtype), device="meta") for k, shape, dtype in manifest["state_dict"]}
    return manifest, sd


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_loads_strictly_with_inferred_config(official_dir, name):
    manifest, sd = _manifest_state_dict(official_dir, name)
    assert len(sd) == manifest["num_tensors"]
    released = manifest["checkpoint"]["name"]
    if ckpt.RELEASED[released][0] == "vq":
        model = ckpt.load_vq({"model": sd})
    else:
        model = ckpt.load_gpt({"model": sd}, block_size=manifest["constructor"]["ModelArgs"]["block_size"])
    for field, value in manifest["constructor"]["ModelArgs"].items():
        assert getattr(model.config, field) == value, field
    # the preset builds the same tree, in the official registration order
    preset = ckpt.build_released(released, device="meta")
    assert [(k, tuple(v.shape)) for k, v in preset.state_dict().items()] == \
        [(k, tuple(shape)) for k, shape, _ in manifest["state_dict"]]
    assert sum(v.numel() for v in model.state_dict().values()) == manifest["num_elements"]
    assert all(v.is_meta for v in model.state_dict().values())


def test_manifest_with_a_broken_key_is_one_clear_error(official_dir):
    _, sd = _manifest_state_dict(official_dir, "manifest_c2i_B_256.json")
    missing = dict(sd)
    del missing["layers.3.attention.wo.weight"]
    with pytest.raises(CgmbenchError, match=r"missing key: layers\.3\.attention\.wo\.weight"):
        ckpt.load_gpt({"model": missing}, block_size=256)
    extra = dict(sd, **{"layers.0.attention.bias": torch.empty(768, device="meta")})
    with pytest.raises(CgmbenchError, match=r"unexpected key: layers\.0\.attention\.bias"):
        ckpt.load_gpt({"model": extra}, block_size=256)
    reshaped = dict(sd, **{"norm.weight": torch.empty(769, device="meta")})
    with pytest.raises(CgmbenchError, match=r"mis-shaped key: norm\.weight \(file \(769,\), model \(768,\)\)"):
        ckpt.load_gpt({"model": reshaped}, config=ckpt.build_released("c2i_B_256.pt", "meta").config)
    # runtime entries a released file may carry are not weights: ignored
    with_extras = dict(sd, freqs_cis=torch.empty(257, 32, 2, device="meta"),
                       **{"layers.0.attention.kv_cache.k_cache": torch.empty(2, 12, 264, 64, device="meta")})
    ckpt.load_gpt({"model": with_extras}, block_size=256)


def test_gpt_file_round_trip_and_lookup_keys(official_dir, tmp_path):
    model, meta, io, weights = _gpt(official_dir, "c2i")
    for key in ("model", "module", "state_dict", None):
        path = tmp_path / f"gpt_{key}.pt"
        torch.save(weights if key is None else {key: weights, "steps": 7}, path)
        loaded = ckpt.load_gpt(path, block_size=16, n_head=3)
        with torch.no_grad():
            logits, _ = loaded(io["input.idx"], io["input.cond"], input_pos=torch.arange(16))
        torch.testing.assert_close(logits, io["output.logits"], **TOL)
    assert loaded.config.multiple_of == 128  # FFN width 128 taken from the file (the fixture's multiple_of 64 gives 128 too)
    ema = {k: v + 1 for k, v in weights.items()}
    torch.save({"model": weights, "ema": ema}, tmp_path / "both.pt")
    assert torch.equal(ckpt.load_gpt(tmp_path / "both.pt", block_size=16, n_head=3, use_ema=True).norm.weight,
                       ema["norm.weight"])
    with pytest.raises(CgmbenchError, match="no 'ema' weights"):
        ckpt.load_gpt(tmp_path / "gpt_model.pt", block_size=16, n_head=3, use_ema=True)


def test_t2i_config_inferred_from_file(official_dir):
    model, meta, io, weights = _gpt(official_dir, "t2i")
    loaded = ckpt.load_gpt({"model": weights}, block_size=16, n_head=2)
    assert (loaded.model_type, loaded.cls_token_num, loaded.config.caption_dim, loaded.config.ffn_hidden) == \
        ("t2i", 120, 16, 256)
    with torch.no_grad():
        logits, _ = loaded(io["input.idx"], io["input.caption"], input_pos=torch.arange(135))
    torch.testing.assert_close(logits, io["output.logits"], **TOL)


def test_vq_file_round_trip_and_unsafe_file_refused(official_dir, vq, tmp_path):
    model, io = vq
    weights = model.state_dict()
    torch.save({"model": weights}, tmp_path / "vq.pt")
    loaded = ckpt.load_vq(tmp_path / "vq.pt")
    assert (loaded.config.ch, loaded.config.num_res_blocks, loaded.config.encoder_ch_mult) == (32, 1, [1, 1])
    with torch.no_grad():
        torch.testing.assert_close(loaded(io["input.x"])[0], io["output.reconstruction"], **TOL)
    torch.save({"model": weights, "args": argparse.Namespace(lr=1)}, tmp_path / "pickled.pt")
    with pytest.raises(CgmbenchError, match=r"pickled\.pt cannot be read with torch\.load\(weights_only=True\)"):
        ckpt.load_vq(tmp_path / "pickled.pt")
    with pytest.raises(CgmbenchError, match="not found"):
        ckpt.load_vq(tmp_path / "absent.pt")


def test_tokenizer_and_gpt_codebook_mismatch_is_one_clear_error(official_dir, vq, tmp_path):
    tokenizer, _ = vq
    _, _, _, weights = _gpt(official_dir, "c2i")  # vocab 32 = the tiny tokenizer's 32 codes
    torch.save({"model": tokenizer.state_dict()}, tmp_path / "vq.pt")
    torch.save({"model": weights}, tmp_path / "gpt.pt")
    ckpt.load_llamagen(tmp_path / "vq.pt", tmp_path / "gpt.pt", block_size=16, n_head=3)
    _, sd = _manifest_state_dict(official_dir, "manifest_c2i_B_256.json")
    big = ckpt.load_gpt({"model": sd}, block_size=256)
    with pytest.raises(CgmbenchError, match="the tokenizer has 32 codes but the GPT predicts 16384 tokens"):
        ckpt.check_codebook_match(tokenizer, big)
