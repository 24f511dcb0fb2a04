"""StackGAN parity with the official code (tests/fixtures/official/stackgan, README §5 and §7) and loading.

Numeric fixtures: outputs of the unmodified hanzhanggit/StackGAN-Pytorch code, the CA noise injected
(``input.ca_eps*``). Manifests: every [key, shape, dtype] of the released COCO generator.
"""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from baselines.stackgan import (
    STAGE1_G,
    STAGE2_G,
    coco_stage1_config,
    coco_stage2_config,
    load_char_cnn_rnn_embeddings,
    load_stage1_generator,
    load_stage2_generator,
)
from cgmbench.errors import CgmbenchError

TOL = dict(atol=1e-5, rtol=1e-5)
TINY = dict(z_dim=10, gf_dim=8, condition_dim=6, text_dim=24)


def _fixture(official_dir, name):
    d = official_dir / "stackgan"
    meta = json.loads((d / f"{name}.json").read_text())
    return meta, load_file(d / f"{name}.weights.safetensors"), load_file(d / f"{name}.io.safetensors")


def _manifest_state_dict(official_dir, name, drop=()):
    rows = json.loads((official_dir / "stackgan" / name).read_text())["state_dict"]
    return {k: torch.empty(shape, dtype=getattr(torch, dt), device="meta") for k, shape, dt in rows if k not in drop}


def test_stage1_reproduces_official_outputs(official_dir):
    meta, weights, io = _fixture(official_dir, "fixture_stackgan_stage1_tiny")
    assert meta["constructor"]["cfg"]["GAN.GF_DIM"] == TINY["gf_dim"]
    net = STAGE1_G(**TINY)
    net.load_state_dict(weights, strict=True)
    net.eval()
    with torch.no_grad():
        first, fake_img, mu, logvar = net(io["input.text_embedding"], io["input.noise"], ca_eps=io["input.ca_eps"])
        c_code, _, _ = net.ca_net(io["input.text_embedding"], ca_eps=io["input.ca_eps"])
    assert first is None
    assert fake_img.shape == (2, 3, 64, 64)
    for name, value in [("fake_img", fake_img), ("mu", mu), ("logvar", logvar), ("c_code", c_code)]:
        torch.testing.assert_close(value, io[f"output.{name}"], **TOL)


def test_stage2_reproduces_official_outputs(official_dir):
    _, weights, io = _fixture(official_dir, "fixture_stackgan_stage2_tiny")
    net = STAGE2_G(STAGE1_G(**TINY), gf_dim=8, condition_dim=6, z_dim=10, r_num=2, text_dim=24)
    net.load_state_dict(weights, strict=True)
    net.eval()
    with torch.no_grad():
        stage1_img, fake_img, mu, logvar = net(
            io["input.text_embedding"], io["input.noise"], io["input.ca_eps_stage1"], io["input.ca_eps_stage2"]
        )
        mu1, logvar1 = net.STAGE1_G.ca_net.encode(io["input.text_embedding"])
    assert fake_img.shape == (2, 3, 256, 256)
    outputs = dict(stage1_img=stage1_img, fake_img=fake_img, mu=mu, logvar=logvar, mu_stage1=mu1, logvar_stage1=logvar1)
    for name, value in outputs.items():
        torch.testing.assert_close(value, io[f"output.{name}"], **TOL)


def test_released_layout_file_loads_with_config_from_shapes(official_dir, tmp_path):
    """A .pth written as the official trainer does (torch.save of the state dict), without the
    num_batches_tracked entries a 2017 file lacks, loads strictly and reproduces the fixture."""
    _, weights, io = _fixture(official_dir, "fixture_stackgan_stage2_tiny")
    old = {k: v for k, v in weights.items() if not k.endswith("num_batches_tracked")}
    assert len(old) < len(weights)
    path = tmp_path / "netG_epoch_90.pth"
    torch.save(old, path)
    net = load_stage2_generator(path, r_num=2)
    assert (net.gf_dim, net.STAGE1_G.gf_dim, len(net.residual), net.ef_dim) == (8, 64, 2, 6)
    assert not net.training
    with torch.no_grad():
        _, fake_img, _, _ = net(io["input.text_embedding"], io["input.noise"], io["input.ca_eps_stage1"], io["input.ca_eps_stage2"])
    torch.testing.assert_close(fake_img, io["output.fake_img"], **TOL)

    stage1 = load_stage1_generator(path, from_stage2=True)
    with torch.no_grad():
        _, img1, _, _ = stage1(io["input.text_embedding"], io["input.noise"], io["input.ca_eps_stage1"])
    torch.testing.assert_close(img1, io["output.stage1_img"], **TOL)


def test_coco_manifests_strict_load_on_meta(official_dir):
    sd = _manifest_state_dict(official_dir, "manifest_stackgan_STAGE2_G_coco.json")
    assert len(sd) == 103
    net = load_stage2_generator(sd, r_num=2, gf_dim=192, text_dim=1024)
    cfg = coco_stage2_config()
    assert (net.gf_dim, net.ef_dim, net.z_dim, len(net.residual)) == (cfg["gf_dim"], cfg["condition_dim"], cfg["z_dim"], cfg["r_num"])
    assert net.STAGE1_G.gf_dim == 8 * coco_stage1_config()["gf_dim"]
    assert all(p.is_meta for p in net.parameters())
    assert load_stage1_generator(sd, from_stage2=True).gf_dim == 1536

    sd1 = _manifest_state_dict(official_dir, "manifest_stackgan_STAGE1_G_coco.json")
    assert load_stage1_generator(sd1).fc[0].in_features == 228
    # a 2017 file without num_batches_tracked
    old = _manifest_state_dict(official_dir, "manifest_stackgan_STAGE2_G_coco.json",
                               drop=[k for k in sd if k.endswith("num_batches_tracked")])
    load_stage2_generator(old)


def test_coco_manifest_names_match_the_model_in_order(official_dir):
    rows = json.loads((official_dir / "stackgan" / "manifest_stackgan_STAGE2_G_coco.json").read_text())["state_dict"]
    with torch.device("meta"):
        net = STAGE2_G(STAGE1_G(**coco_stage1_config()), **coco_stage2_config())
    assert [(k, list(v.shape)) for k, v in net.state_dict().items()] == [(k, s) for k, s, _ in rows]


def test_bad_checkpoints_are_one_clear_error(official_dir, tmp_path):
    sd = _manifest_state_dict(official_dir, "manifest_stackgan_STAGE2_G_coco.json")

    attngan = {k: torch.empty(s, device="meta") for k, s, _ in
               json.loads((official_dir / "attngan" / "manifest_attngan_G_NET_birds.json").read_text())["state_dict"]}
    with pytest.raises(CgmbenchError, match="AttnGAN G_NET"):
        load_stage2_generator(attngan)

    missing = dict(sd)
    del missing["residual.1.block.3.weight"]
    with pytest.raises(CgmbenchError, match=r"'residual\.1\.block\.3\.weight' is missing"):
        load_stage2_generator(missing)

    extra = dict(sd, **{"residual.0.block.9.weight": torch.empty(1, device="meta")})
    with pytest.raises(CgmbenchError, match=r"unexpected key 'residual\.0\.block\.9\.weight'"):
        load_stage2_generator(extra)

    shaped = dict(sd, **{"upsample3.1.weight": torch.empty(96, 192, 1, 1, device="meta")})
    with pytest.raises(CgmbenchError, match=r"'upsample3\.1\.weight' has shape \(96, 192, 1, 1\)"):
        load_stage2_generator(shaped)

    with pytest.raises(CgmbenchError, match="r_num = 2, but r_num = 4"):
        load_stage2_generator(sd, r_num=4)

    with pytest.raises(CgmbenchError, match="Stage-II generator"):
        load_stage1_generator(sd)

    # the file is named in the message
    path = tmp_path / "netG_epoch_90.pth"
    torch.save({k: torch.zeros(1) for k in ["ca_net.fc.weight"]}, path)
    with pytest.raises(CgmbenchError, match="netG_epoch_90.pth"):
        load_stage2_generator(path)
    with pytest.raises(CgmbenchError, match="does not exist"):
        load_stage2_generator(tmp_path / "absent.pth")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_that_needs_arbitrary_objects_is_refused_unexecuted(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "netG.pth"
    with open(path, "wb") as f:
        pickle.dump({"ca_net.fc.weight": _Evil(marker)}, f, protocol=2)
    with pytest.raises(CgmbenchError, match="weights_only"):
        load_stage2_generator(path)
    assert not marker.exists()


def test_ca_noise_is_explicit_and_reproducible():
    torch.manual_seed(0)
    net = STAGE2_G(STAGE1_G(**TINY), gf_dim=8, condition_dim=6, z_dim=10, r_num=1, text_dim=24).eval()
    text, noise = torch.randn(3, 24), torch.randn(3, 10)
    with torch.no_grad():
        a = net(text, noise, generator=torch.Generator().manual_seed(5))
        b = net(text, noise, generator=torch.Generator().manual_seed(5))
        c = net(text, noise, generator=torch.Generator().manual_seed(6))
        # the generator draws Stage I's noise first, then Stage II's
        g = torch.Generator().manual_seed(5)
        e1, e2 = torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)
        d = net(text, noise, e1, e2)
    torch.testing.assert_close(a[1], b[1], rtol=0, atol=0)
    torch.testing.assert_close(a[1], d[1], rtol=0, atol=0)
    assert (a[1] - c[1]).abs().max() > 1e-3
    # ReLU before the split: mu and logvar are never negative
    mu, logvar = net.ca_net.encode(torch.randn(64, 24) * 10)
    assert mu.min() >= 0 and logvar.min() >= 0 and (mu == 0).any()
    with pytest.raises(ValueError, match="ca_eps has shape"):
        net.STAGE1_G(text, noise, ca_eps=torch.zeros(3, 5))


# --------------------------------------------------------------------------------------
# char-CNN-RNN embedding pickles
# --------------------------------------------------------------------------------------


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` opcodes (SHORT_BINSTRING/BINSTRING), as the released files have."""

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + len(obj).to_bytes(4, "little") + obj)
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[bytes] = save_bytes


def _py2_dump(obj, path):
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)


def test_char_cnn_rnn_embeddings_read_from_py2_and_py3_pickles(tmp_path):
    rng = np.random.default_rng(0)
    per_image = [rng.standard_normal((5, 1024)).astype(np.float32) for _ in range(3)]
    _py2_dump(per_image, tmp_path / "py2.pickle")
    with open(tmp_path / "py3.pickle", "wb") as f:
        pickle.dump(np.stack(per_image), f, protocol=4)
    with open(tmp_path / "py3p2.pickle", "wb") as f:
        pickle.dump(per_image, f, protocol=2)  # Python 3 writes bytes as _codecs.encode(str, 'latin1')
    assert b"_codecs" not in (tmp_path / "py2.pickle").read_bytes()
    assert b"_codecs" in (tmp_path / "py3p2.pickle").read_bytes()
    for name in ("py2.pickle", "py3.pickle", "py3p2.pickle"):
        emb = load_char_cnn_rnn_embeddings(tmp_path / name)
        assert emb.dtype == np.float32 and emb.shape == (3, 5, 1024)
        np.testing.assert_array_equal(emb, np.stack(per_image))


def test_char_cnn_rnn_embeddings_refuse_objects_and_wrong_shapes(tmp_path):
    marker = tmp_path / "executed"
    with open(tmp_path / "evil.pickle", "wb") as f:
        pickle.dump([_Evil(marker)], f, protocol=2)
    with pytest.raises(CgmbenchError, match="refusing to load global"):
        load_char_cnn_rnn_embeddings(tmp_path / "evil.pickle")
    assert not marker.exists()

    with open(tmp_path / "matrix.pickle", "wb") as f:
        pickle.dump(np.zeros((2, 1024)).view(np.recarray), f, protocol=2)  # an ndarray subclass
    with pytest.raises(CgmbenchError, match="cannot read"):
        load_char_cnn_rnn_embeddings(tmp_path / "matrix.pickle")

    with open(tmp_path / "short.pickle", "wb") as f:
        pickle.dump(np.zeros((4, 10, 300), np.float32), f, protocol=2)
    with pytest.raises(CgmbenchError, match=r"shape \(4, 10, 300\)"):
        load_char_cnn_rnn_embeddings(tmp_path / "short.pickle")


def test_models_module_is_a_leaf():
    """models.py imports only torch and the standard library (no project module, so no cycles)."""
    import ast

    import baselines.stackgan.models as models

    tree = ast.parse(open(models.__file__).read())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {n.split(".")[0] for n in names} <= {"__future__", "torch"}
