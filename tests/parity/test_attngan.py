"""AttnGAN parity with the official code (tests/fixtures/official/attngan, README §5 and §7), loading and vocabulary.

Numeric fixtures: outputs of the unmodified taoxugit/AttnGAN code with the CA noise injected. Manifests: every
[key, shape, dtype] of the released G_NET (birds, coco) and DAMSM text/image encoders.
"""

from __future__ import annotations

import ast
import json
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from baselines.attngan import (
    CNN_ENCODER,
    G_NET,
    RNN_ENCODER,
    birds_config,
    coco_config,
    load_captions_pickle,
    load_g_net,
    load_image_encoder,
    load_text_encoder,
    pad_caption,
    tokenize,
)
from cgmbench.errors import CgmbenchError

TOL = dict(atol=1e-5, rtol=1e-5)
TINY_G = dict(branch_num=3, gf_dim=4, z_dim=10, condition_dim=6, r_num=2, embedding_dim=16)


def _fixture(official_dir, name):
    d = official_dir / "attngan"
    meta = json.loads((d / f"{name}.json").read_text())
    return meta, load_file(d / f"{name}.weights.safetensors"), load_file(d / f"{name}.io.safetensors")


def _rows(official_dir, name):
    return json.loads((official_dir / "attngan" / name).read_text())["state_dict"]


def _meta_sd(official_dir, name, drop=()):
    return {k: torch.empty(s, dtype=getattr(torch, dt), device="meta") for k, s, dt in _rows(official_dir, name) if k not in drop}


def _run_g(net, io, **kw):
    with torch.no_grad():
        return net(io["input.z_code"], io["input.sent_emb"], io["input.word_embs"], io["input.mask"], ca_eps=io["input.ca_eps"], **kw)


# --------------------------------------------------------------------------------------
# Numeric parity
# --------------------------------------------------------------------------------------


def test_rnn_encoder_reproduces_official_outputs(official_dir):
    meta, weights, io = _fixture(official_dir, "fixture_attngan_rnn_encoder_tiny")
    net = RNN_ENCODER(**meta["constructor"]["kwargs"])
    net.load_state_dict(weights, strict=True)
    net.eval()
    captions, lens = io["input.captions"], io["input.cap_lens"]
    with torch.no_grad():
        words_emb, sent_emb = net(captions, lens, net.init_hidden(2))
        # unsorted input (the official code needs sorted): the same numbers, in the given order
        words_rev, sent_rev = net(captions.flip(0), lens.flip(0))
    torch.testing.assert_close(words_emb, io["output.words_emb"], **TOL)
    torch.testing.assert_close(sent_emb, io["output.sent_emb"], **TOL)
    torch.testing.assert_close(sent_rev, sent_emb.flip(0), **TOL)
    torch.testing.assert_close(words_rev, words_emb.flip(0), **TOL)
    assert (words_emb[1, :, 4:] == 0).all()  # padded positions are zero


def test_g_net_reproduces_official_outputs(official_dir):
    meta, weights, io = _fixture(official_dir, "fixture_attngan_G_NET_tiny")
    assert meta["constructor"]["cfg"]["GAN.GF_DIM"] == TINY_G["gf_dim"]
    net = G_NET(**TINY_G)
    net.load_state_dict(weights, strict=True)
    net.eval()
    fake_imgs, att_maps, mu, logvar = _run_g(net, io)
    c_code, _, _ = net.ca_net(io["input.sent_emb"], io["input.ca_eps"])
    assert [tuple(x.shape) for x in fake_imgs] == [(2, 3, 64, 64), (2, 3, 128, 128), (2, 3, 256, 256)]
    for i, img in enumerate(fake_imgs, 1):
        torch.testing.assert_close(img, io[f"output.fake_img{i}"], **TOL)
    for i, att in enumerate(att_maps, 1):
        torch.testing.assert_close(att, io[f"output.att{i}"], **TOL)
    for name, value in [("mu", mu), ("logvar", logvar), ("c_code", c_code)]:
        torch.testing.assert_close(value, io[f"output.{name}"], **TOL)


def test_per_sample_mask_alignment_differs_as_the_fixture_measured(official_dir):
    """The 'per_sample' fix of the official mask bug moves the outputs by exactly the amounts the
    fixture's verification block records for a per-sample aligned mask."""
    meta, weights, io = _fixture(official_dir, "fixture_attngan_G_NET_tiny")
    net = G_NET(**TINY_G, mask_alignment="per_sample")
    net.load_state_dict(weights, strict=True)
    fake_imgs, att_maps, _, _ = _run_g(net.eval(), io)
    expected = meta["verification"]["official_vs_per_sample_aligned_mask_max_abs_diff"]
    got = {
        "fake_img2": (fake_imgs[1] - io["output.fake_img2"]).abs().max().item(),
        "fake_img3": (fake_imgs[2] - io["output.fake_img3"]).abs().max().item(),
        "att1": (att_maps[0] - io["output.att1"]).abs().max().item(),
    }
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-5)
    torch.testing.assert_close(fake_imgs[0], io["output.fake_img1"], **TOL)  # stage 1 has no attention
    # each attention map is a distribution over the real (unmasked) words of its own caption
    att = att_maps[0]
    torch.testing.assert_close(att.sum(1), torch.ones_like(att.sum(1)), **TOL)
    assert (att[io["input.mask"][:, :, None, None].expand_as(att)] == 0).all()


def test_inception_trunk_matches_torchvision():
    """CNN_ENCODER's trunk is torchvision's inception_v3 (same names, same numbers)."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    tv = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=True)
    # BatchNorm statistics of one batch, so that activations stay O(1) as with trained weights
    for m in tv.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 1.0
    with torch.no_grad():
        tv.train()(torch.randn(2, 3, 299, 299))
    tv.eval()
    enc = CNN_ENCODER(256).eval()
    trunk = {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    own = {k: v for k, v in enc.state_dict().items() if not k.startswith("emb_")}
    assert list(trunk) == list(own)
    enc.load_state_dict(trunk, strict=False)
    got, want = {}, {}
    for name in ("Mixed_6e", "Mixed_7c"):
        getattr(enc, name).register_forward_hook(lambda m, i, o, n=name: got.__setitem__(n, o))
        getattr(tv, name).register_forward_hook(lambda m, i, o, n=name: want.__setitem__(n, o))
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        features, cnn_code = enc(x)
        tv(torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False))
    for name in got:
        torch.testing.assert_close(got[name], want[name], **TOL)
    assert features.shape == (1, 256, 17, 17) and cnn_code.shape == (1, 256)
    # random-init activations reach O(100); compare relative to the output's scale (float32 summation order)
    expected = enc.emb_cnn_code(want["Mixed_7c"].mean((2, 3)))
    scale = expected.abs().max()
    torch.testing.assert_close(cnn_code / scale, expected / scale, **TOL)


# --------------------------------------------------------------------------------------
# Loading the released files
# --------------------------------------------------------------------------------------


def test_released_layout_files_load_with_config_from_shapes(official_dir, tmp_path):
    _, weights, io = _fixture(official_dir, "fixture_attngan_G_NET_tiny")
    path = tmp_path / "bird_AttnGAN2.pth"
    torch.save({k: v for k, v in weights.items() if not k.endswith("num_batches_tracked")}, path)
    net = load_g_net(path, branch_num=3)
    fake_imgs, _, _, _ = _run_g(net, io)
    torch.testing.assert_close(fake_imgs[2], io["output.fake_img3"], **TOL)

    _, enc_weights, enc_io = _fixture(official_dir, "fixture_attngan_rnn_encoder_tiny")
    enc_path = tmp_path / "text_encoder200.pth"
    torch.save(enc_weights, enc_path)
    enc = load_text_encoder(enc_path, vocab_size=40)
    assert (enc.ntoken, enc.nhidden, enc.rnn_type) == (40, 8, "LSTM")
    with torch.no_grad():
        _, sent_emb = enc(enc_io["input.captions"], enc_io["input.cap_lens"])
    torch.testing.assert_close(sent_emb, enc_io["output.sent_emb"], **TOL)


@pytest.mark.parametrize("dataset, config, vocab", [("birds", birds_config(), 5450), ("coco", coco_config(), 27297)])
def test_manifests_strict_load_on_meta(official_dir, dataset, config, vocab):
    g_name = f"manifest_attngan_G_NET_{dataset}.json"
    net = load_g_net(_meta_sd(official_dir, g_name), branch_num=3)
    assert all(p.is_meta for p in net.parameters())
    with torch.device("meta"):
        ref = G_NET(**config)
    assert [(k, list(v.shape)) for k, v in ref.state_dict().items()] == [(k, s) for k, s, _ in _rows(official_dir, g_name)]
    assert (net.h_net1.gf_dim, net.h_net2.num_residual, net.ca_net.c_dim) == (16 * config["gf_dim"], config["r_num"], 100)
    # 2018 files without num_batches_tracked
    old = _meta_sd(official_dir, g_name, drop=[k for k, _, _ in _rows(official_dir, g_name) if k.endswith("num_batches_tracked")])
    load_g_net(old)

    text = load_text_encoder(_meta_sd(official_dir, f"manifest_attngan_RNN_ENCODER_{dataset}.json"), vocab_size=vocab)
    assert (text.ntoken, text.nhidden * 2, text.ninput) == (vocab, 256, 300)

    img_name = f"manifest_attngan_CNN_ENCODER_{dataset}.json"
    image = load_image_encoder(_meta_sd(official_dir, img_name))
    assert [k for k in image.state_dict()] == [k for k, _, _ in _rows(official_dir, img_name)]
    assert image.nef == 256


def test_bad_checkpoints_are_one_clear_error(official_dir):
    birds = _meta_sd(official_dir, "manifest_attngan_G_NET_birds.json")
    stackgan = {k: torch.empty(s, device="meta") for k, s, _ in json.loads(
        (official_dir / "stackgan" / "manifest_stackgan_STAGE2_G_coco.json").read_text())["state_dict"]}
    with pytest.raises(CgmbenchError, match="StackGAN Stage-II generator") as err:
        load_g_net(stackgan)
    assert "\n" not in str(err.value)

    with pytest.raises(CgmbenchError, match=r"has 3 branches \(64, 128, 256 px\), but branch_num = 2"):
        load_g_net(birds, branch_num=2)
    two = {k: v for k, v in birds.items() if not k.startswith(("h_net3.", "img_net3."))}
    assert load_g_net(two).branch_num == 2
    with pytest.raises(CgmbenchError, match="has 2 branches"):
        load_g_net(two, branch_num=3)
    with pytest.raises(CgmbenchError, match=r"branches \[1, 3\] are not 1..3"):
        load_g_net({k: v for k, v in birds.items() if not k.startswith(("h_net2.", "img_net2."))})

    text = _meta_sd(official_dir, "manifest_attngan_RNN_ENCODER_birds.json")
    with pytest.raises(CgmbenchError, match="vocabulary mismatch: .* embeds 5450 tokens, the vocabulary has 27297"):
        load_text_encoder(text, vocab_size=27297)
    with pytest.raises(CgmbenchError, match="DAMSM text encoder"):
        load_g_net(text)
    with pytest.raises(CgmbenchError, match="AttnGAN G_NET"):
        load_text_encoder(birds)

    shaped = dict(birds, **{"h_net2.att.conv_context.weight": torch.empty(32, 128, 1, 1, device="meta")})
    with pytest.raises(CgmbenchError, match=r"'h_net2\.att\.conv_context\.weight' has shape \(32, 128, 1, 1\)"):
        load_g_net(shaped)
    image = _meta_sd(official_dir, "manifest_attngan_CNN_ENCODER_birds.json", drop=["Mixed_7c.branch_pool.conv.weight"])
    with pytest.raises(CgmbenchError, match=r"'Mixed_7c\.branch_pool\.conv\.weight' is missing"):
        load_image_encoder(image)


def test_models_module_is_a_leaf():
    import baselines.attngan.models as models

    tree = ast.parse(open(models.__file__).read())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {n.split(".")[0] for n in names} <= {"__future__", "torch"}


# --------------------------------------------------------------------------------------
# Vocabulary: captions.pickle and the tokenizer
# --------------------------------------------------------------------------------------


def _write_captions_pickle(path, words=("a", "bird", "with", "red", "wings", "small")):
    ixtoword = {0: "<end>", **{i + 1: w for i, w in enumerate(words)}}
    wordtoix = {w: i for i, w in ixtoword.items()}
    train = [[1, 2, 3, 4, 5], [6, 2]]
    test = [[1, 6, 2]]
    with open(path, "wb") as f:
        pickle.dump([train, test, ixtoword, wordtoix], f, protocol=2)  # as datasets.py writes it
    return wordtoix


def test_captions_pickle_and_tokenizer(tmp_path):
    wordtoix = _write_captions_pickle(tmp_path / "captions.pickle")
    vocab = load_captions_pickle(tmp_path / "captions.pickle")
    assert vocab.n_words == 7 and vocab.wordtoix == wordtoix
    assert vocab.train_captions == [[1, 2, 3, 4, 5], [6, 2]] and vocab.test_captions == [[1, 6, 2]]
    assert tokenize("A small-bird, with RED\ufffd\ufffdwings!") == ["a", "small", "bird", "with", "red", "wings"]
    assert tokenize("caf\u00e9 \u00e9\u00e9 x_1") == ["caf", "x_1"]  # non-ASCII dropped, empty tokens dropped
    assert vocab.encode("A bird with BLUE wings") == [1, 2, 3, 5]  # 'blue' is not in the vocabulary
    assert vocab.decode([1, 2, 0, 0]) == "a bird"


def test_vocabulary_size_must_match_the_text_encoder(official_dir, tmp_path):
    _write_captions_pickle(tmp_path / "captions.pickle")
    vocab = load_captions_pickle(tmp_path / "captions.pickle")
    _, weights, _ = _fixture(official_dir, "fixture_attngan_rnn_encoder_tiny")
    with pytest.raises(CgmbenchError, match="vocabulary mismatch: .* embeds 40 tokens, the vocabulary has 7 words"):
        load_text_encoder(weights, vocab_size=vocab.n_words)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_captions_pickle_holding_objects_is_refused_unexecuted(tmp_path):
    from collections import OrderedDict

    marker = tmp_path / "executed"
    cases = {
        "system.pickle": [[], [], {0: "<end>"}, {"<end>": _Evil(marker)}],
        "ordereddict.pickle": [[], [], OrderedDict({0: "<end>"}), {"<end>": 0}],
        "array.pickle": [np.zeros(3), [], {0: "<end>"}, {"<end>": 0}],
    }
    for name, obj in cases.items():
        with open(tmp_path / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)
        with pytest.raises(CgmbenchError, match="refusing to load global") as err:
            load_captions_pickle(tmp_path / name)
        assert name in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()

    with open(tmp_path / "layout.pickle", "wb") as f:
        pickle.dump({"words": [1, 2]}, f, protocol=2)
    with pytest.raises(CgmbenchError, match="not \\[train_captions"):
        load_captions_pickle(tmp_path / "layout.pickle")


def test_pad_caption_as_get_caption():
    x, n = pad_caption([5, 6, 7], 5)
    assert x.tolist() == [5, 6, 7, 0, 0] and n == 3 and x.dtype == np.int64
    long = list(range(1, 31))
    a, n = pad_caption(long, 25, np.random.default_rng(1))
    b, _ = pad_caption(long, 25, np.random.default_rng(1))
    assert n == 25 and a.tolist() == b.tolist()
    assert sorted(a.tolist()) == a.tolist() and len(set(a.tolist())) == 25 and set(a.tolist()) <= set(long)
    with pytest.raises(ValueError, match="pass rng"):
        pad_caption(long, 25)
