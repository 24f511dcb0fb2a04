"""Latte parity with the official code (tests/fixtures/official/latte, README section 10).

Numbers: the tiny fixture's two forward calls to atol=rtol=1e-5. Layout: both released manifests
(UCF-101 class-conditional, FaceForensics/Sky/Taichi unconditional) strict-load on the meta device,
key order included. Errors: a missing, unexpected or mis-shaped key is one CgmbenchError naming the key.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from baselines.latte import (
    Latte,
    get_1d_sincos_temp_embed,
    get_2d_sincos_pos_embed,
    latte_from_release,
    load_latte_checkpoint,
    read_state_dict,
)
from cgmbench.errors import CgmbenchError

MANIFESTS = {
    "ucf101": "manifest_Latte-XL-2_ucf101.json",
    "ffs": "manifest_Latte-XL-2_uncond_ffs_sky_taichi.json",
}


@pytest.fixture(scope="module")
def latte_dir(official_dir):
    return official_dir / "latte"


@pytest.fixture(scope="module")
def tiny(latte_dir):
    spec = json.loads((latte_dir / "fixture_latte_tiny.json").read_text())
    weights = load_file(str(latte_dir / "fixture_latte_tiny.weights.safetensors"))
    io = load_file(str(latte_dir / "fixture_latte_tiny.io.safetensors"))
    model = Latte(**spec["constructor"]["kwargs"])
    model.load_state_dict(weights, strict=True)
    return spec, weights, io, model.eval()


def _manifest_state(latte_dir, name):
    manifest = json.loads((latte_dir / MANIFESTS[name]).read_text())
    with torch.device("meta"):
        state = {k: torch.empty(shape, dtype=getattr(torch, dtype)) for k, shape, dtype in manifest["state_dict"]}
    return manifest, state


def test_forward_matches_official(tiny):
    _, _, io, model = tiny
    with torch.no_grad():
        out = model(io["input.x"], io["input.t"], io["input.y"])
    assert out.shape == (3, 4, 8, 8, 8)
    torch.testing.assert_close(out, io["output.out"], atol=1e-5, rtol=1e-5)


def test_forward_with_cfg_matches_official(tiny):
    # The official code reproduces the stored out_cfg here only to 1.0e-5 max abs (values up to ~7.7,
    # cfg 7 amplifies the 1.2e-6 of `out`); rtol=1e-5 covers it, as the README suggests.
    _, _, io, model = tiny
    with torch.no_grad():
        out = model.forward_with_cfg(io["input.x_cfg"], io["input.t_cfg"], io["input.y_cfg"], cfg_scale=7.0)
    torch.testing.assert_close(out, io["output.out_cfg"], atol=1e-5, rtol=1e-5)
    # All four latent channels are guided and identical across halves; sigma channels differ per half.
    assert torch.equal(out[:2, :, :4], out[2:, :, :4])
    assert not torch.allclose(out[:2, :, 4:], out[2:, :, 4:])


def test_sdpa_attention_matches_math(tiny):
    spec, weights, io, _ = tiny
    model = Latte(**{**spec["constructor"]["kwargs"], "attention_mode": "sdpa"})
    model.load_state_dict(weights, strict=True)
    with torch.no_grad():
        out = model.eval()(io["input.x"], io["input.t"], io["input.y"])
    torch.testing.assert_close(out, io["output.out"], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="flash"):
        Latte(**{**spec["constructor"]["kwargs"], "attention_mode": "flash"})


def test_sincos_tables_equal_official_values(tiny):
    # The fixture keeps the official fixed tables in its state dict.
    _, weights, _, _ = tiny
    torch.testing.assert_close(get_2d_sincos_pos_embed(32, 4).float()[None], weights["pos_embed"], atol=0, rtol=0)
    torch.testing.assert_close(get_1d_sincos_temp_embed(32, 4).float()[None], weights["temp_embed"], atol=0, rtol=0)


def test_wrong_frame_count_is_refused(tiny):
    _, _, io, model = tiny
    # The conditioning is repeated num_frames times, so any other frame count is refused up front.
    with pytest.raises(ValueError, match=r"\(N, 4, 4, H, W\) \(frames before channels\)"):
        model(io["input.x"][:, :3], io["input.t"], io["input.y"])


@pytest.mark.parametrize("release", ["ucf101", "ffs"])
def test_released_manifest_strict_loads_on_meta(latte_dir, release):
    manifest, state = _manifest_state(latte_dir, release)
    with torch.device("meta"):
        model = latte_from_release(release)
    assert list(model.state_dict()) == [row[0] for row in manifest["state_dict"]]  # registration order too
    assert sum(t.numel() for t in model.state_dict().values()) == manifest["num_elements"]
    loaded = load_latte_checkpoint({"ema": state, "model": {}}, model=model)  # 'ema' wins, as utils.find_model
    assert loaded.state_dict()["blocks.27.adaLN_modulation.1.weight"].shape == (6912, 1152)
    assert not loaded.training


def test_ucf101_checkpoint_into_unconditional_model_names_the_key(latte_dir):
    _, state = _manifest_state(latte_dir, "ucf101")
    with torch.device("meta"):
        model = latte_from_release("sky")
    with pytest.raises(CgmbenchError, match="unexpected key 'y_embedder.embedding_table.weight'"):
        load_latte_checkpoint({"ema": state}, model=model)


def test_missing_and_misshaped_keys_name_file_and_key(tiny, tmp_path):
    spec, weights, _, _ = tiny
    path = tmp_path / "bad.pt"
    torch.save({"model": {k: v for k, v in weights.items() if k != "final_layer.linear.bias"}}, path)
    with pytest.raises(CgmbenchError, match=r"bad\.pt is missing key 'final_layer\.linear\.bias'"):
        load_latte_checkpoint(path, model=Latte(**spec["constructor"]["kwargs"]))
    bad = dict(weights)
    bad["y_embedder.embedding_table.weight"] = torch.zeros(10, 32)  # no null row
    torch.save({"ema": bad}, path)
    with pytest.raises(CgmbenchError, match=r"'y_embedder\.embedding_table\.weight' has shape \(10, 32\)"):
        load_latte_checkpoint(path, model=Latte(**spec["constructor"]["kwargs"]))


def test_file_round_trip_weights_only(tiny, tmp_path):
    spec, weights, io, _ = tiny
    path = tmp_path / "ucf_tiny.pt"
    # train.py layout: both 'model' and 'ema'; 'ema' must be the one loaded.
    torch.save({"model": {k: torch.zeros_like(v) for k, v in weights.items()}, "ema": weights, "opt": {}}, path)
    model = load_latte_checkpoint(path, model=Latte(**spec["constructor"]["kwargs"]))
    with torch.no_grad():
        out = model(io["input.x"], io["input.t"], io["input.y"])
    torch.testing.assert_close(out, io["output.out"], atol=1e-5, rtol=1e-5)
    # DDP prefix on every key is removed.
    torch.save({"module." + k: v for k, v in weights.items()}, path)
    assert set(read_state_dict(path)) == set(weights)


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"ema": {"x": torch.zeros(1)}, "args": argparse_like()}, path)
    with pytest.raises(CgmbenchError, match="cannot read Latte checkpoint"):
        read_state_dict(path)
    with pytest.raises(CgmbenchError, match="does not exist"):
        read_state_dict(tmp_path / "absent.pt")


class _Namespace:
    pass


def argparse_like():
    ns = _Namespace()
    ns.model = "Latte-XL/2"
    return ns


def test_models_module_is_a_leaf():
    import ast
    import baselines.latte.models as models_module

    tree = ast.parse(open(models_module.__file__).read())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "math", "torch"}, imported
