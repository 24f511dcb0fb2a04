"""LDM-BERT, the text conditioner of LDM txt2img-f8-large (CompVis ``BERTEmbedder``): official key layout,
the network against an independent reference written from the x-transformers equations, the
``bert-base-uncased`` tokenizer read from a Hugging Face cache, and a ``coco-t2i`` run of an official-format
checkpoint through the command line.

No official numeric fixture exists for LDM-BERT, so the reference below is written straight from
``ldm/modules/x_transformer.py`` (pre-norm residual attention and feed-forward, scale ``dim_head**-0.5``,
no padding mask, final LayerNorm) with plain tensor ops in float64, reading the weights by their official key
names.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from baselines.common.kl_vae import AutoencoderKL
from baselines.ldm.bert import BERTEmbedder, BERTTokenizer, LDMBertEncoder, bert_config_from_state_dict
from baselines.ldm.generator import LDM_VARIANTS, LDMGenerator
from cgmbench.cli.main import main
from cgmbench.errors import CgmbenchError
from cgmbench.paths import weights_dir
from cgmbench.sources.base import open_source
from cgmbench.spec.task import load_task

#: a tiny WordPiece vocabulary laid out like bert-base-uncased's vocab.txt ([PAD] = 0)
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "circle", "bi", "##cycle", "with", "the",
         "of", "on", "clock", "man", "table", "two", "dog", ".", ","]

# ----------------------------------------------------------------------------- helpers


def random_bert_state(n_embed=48, n_layer=3, vocab_size=40, max_seq_len=77, heads=8, dim_head=8, seed=0):
    """The ``cond_stage_model.`` part of a checkpoint: every tensor random (LayerNorms too), O(1) activations."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in BERTEmbedder(n_embed, n_layer, vocab_size, max_seq_len, heads,
                                                          dim_head).state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in shapes.items():
        if len(shape) == 2:
            std = 1.0 if k.endswith(("token_emb.weight", "pos_emb.emb.weight")) else shape[1] ** -0.5
            sd[k] = torch.randn(shape, generator=g) * std
        elif k.endswith(".0.weight") or k.endswith("norm.weight"):  # LayerNorm gains
            sd[k] = 1.0 + 0.2 * torch.randn(shape, generator=g)
        else:
            sd[k] = 0.2 * torch.randn(shape, generator=g)
    return sd


def reference_ldm_bert(sd, ids, heads=8, key_mask=None):
    """x-transformers ``TransformerWrapper(..., Encoder(dim, depth))(ids, return_embeddings=True)`` in float64."""
    p = {k[len("transformer."):]: v.double() for k, v in sd.items()}

    def layer_norm(x, w, b):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * w + b

    b, n = ids.shape
    x = p["token_emb.weight"][ids] + p["pos_emb.emb.weight"][:n][None]
    depth = len({k.split(".")[2] for k in p if k.startswith("attn_layers.layers.")}) // 2
    for layer in range(depth):
        a, f = f"attn_layers.layers.{2 * layer}.", f"attn_layers.layers.{2 * layer + 1}."
        h = layer_norm(x, p[a + "0.weight"], p[a + "0.bias"])
        q, k, v = (h @ p[a + f"1.to_{w}.weight"].T for w in "qkv")
        d = q.shape[-1] // heads
        q, k, v = (t.reshape(b, n, heads, d).permute(0, 2, 1, 3) for t in (q, k, v))
        dots = q @ k.transpose(-1, -2) * d ** -0.5
        if key_mask is not None:
            dots = dots.masked_fill(~key_mask[:, None, None, :], -math.inf)
        out = (dots.softmax(-1) @ v).permute(0, 2, 1, 3).reshape(b, n, heads * d)
        x = x + out @ p[a + "1.to_out.weight"].T + p[a + "1.to_out.bias"]
        h = layer_norm(x, p[f + "0.weight"], p[f + "0.bias"])
        h = h @ p[f + "1.net.0.0.weight"].T + p[f + "1.net.0.0.bias"]
        h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
        x = x + h @ p[f + "1.net.2.weight"].T + p[f + "1.net.2.bias"]
    return layer_norm(x, p["norm.weight"], p["norm.bias"])


def bert_hub_cache(hf_home, words=VOCAB, revision="0123456789abcdef0123456789abcdef01234567"):
    """``hf_home`` as a Hugging Face cache holding bert-base-uncased's vocab.txt, in the hub layout."""
    repo = hf_home / "hub" / "models--bert-base-uncased"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (snapshot / "vocab.txt").write_text("".join(w + "\n" for w in words))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return hf_home


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    home = bert_hub_cache(tmp_path / "hf")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return home


@pytest.fixture
def empty_hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-empty"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path / "hf-empty"


# ----------------------------------------------------------------------------- network


def test_official_key_layout_and_sizes_of_txt2img_f8_large():
    with torch.device("meta"):
        model = BERTEmbedder(n_embed=1280, n_layer=32)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    t = "transformer."
    expected = {t + "token_emb.weight": (30522, 1280), t + "pos_emb.emb.weight": (77, 1280),
                t + "norm.weight": (1280,), t + "norm.bias": (1280,),
                t + "to_logits.weight": (30522, 1280), t + "to_logits.bias": (30522,)}
    for i in range(64):
        pre = f"{t}attn_layers.layers.{i}."
        expected.update({pre + "0.weight": (1280,), pre + "0.bias": (1280,)})
        if i % 2 == 0:
            expected.update({pre + f"1.to_{w}.weight": (512, 1280) for w in "qkv"})
            expected.update({pre + "1.to_out.weight": (1280, 512), pre + "1.to_out.bias": (1280,)})
        else:
            expected.update({pre + "1.net.0.0.weight": (5120, 1280), pre + "1.net.0.0.bias": (5120,),
                             pre + "1.net.2.weight": (1280, 5120), pre + "1.net.2.bias": (1280,)})
    assert shapes == expected
    assert bert_config_from_state_dict(model.state_dict()) == dict(
        n_embed=1280, n_layer=32, vocab_size=30522, max_seq_len=77, heads=8, dim_head=64)


def test_network_matches_the_x_transformers_reference():
    sd = random_bert_state()
    model = BERTEmbedder.from_state_dict(sd)
    assert model.config() == dict(n_embed=48, n_layer=3, vocab_size=40, max_seq_len=77, heads=8, dim_head=8)
    g = torch.Generator().manual_seed(1)
    ids = torch.zeros(3, 77, dtype=torch.int64)  # [PAD] = 0 fills the tail, as the tokenizer pads
    for row, length in enumerate((5, 12, 77)):
        ids[row, :length] = torch.randint(1, 40, (length,), generator=g)
    with torch.no_grad():
        ours = model(ids)
    assert ours.shape == (3, 77, 48) and ours.dtype == torch.float32
    ref = reference_ldm_bert(sd, ids)
    torch.testing.assert_close(ours.double(), ref, atol=1e-5, rtol=1e-5)
    # the padding is not masked: masking it out (what BERT would do) gives other states for the real tokens
    masked = reference_ldm_bert(sd, ids, key_mask=ids != 0)
    assert (masked[0, :5] - ours[0, :5].double()).abs().max() > 1e-2
    # a shorter sequence (positions 0..L-1) matches too
    with torch.no_grad():
        torch.testing.assert_close(model(ids[:, :9]).double(), reference_ldm_bert(sd, ids[:, :9]), atol=1e-5,
                                   rtol=1e-5)


def test_heads_are_read_as_eight_and_the_scale_is_per_head():
    # inner width 64 = 8 heads x 8: a model that split it in 4 heads of 16 would compute something else
    sd = random_bert_state(seed=3)
    ids = torch.randint(0, 40, (2, 77), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = BERTEmbedder.from_state_dict(sd)(ids).double()
    torch.testing.assert_close(ours, reference_ldm_bert(sd, ids, heads=8), atol=1e-5, rtol=1e-5)
    assert (ours - reference_ldm_bert(sd, ids, heads=4)).abs().max() > 1e-3


def _drop(key):
    def edit(sd):
        del sd[key]
    return edit


def _add(key, value):
    def edit(sd):
        sd[key] = value
    return edit


@pytest.mark.parametrize("edit,named", [
    (_drop("transformer.attn_layers.layers.3.1.net.2.bias"), "transformer.attn_layers.layers.3.1.net.2.bias"),
    (_drop("transformer.to_logits.weight"), "transformer.to_logits.weight"),
    (_drop("transformer.pos_emb.emb.weight"), "cond_stage_model.transformer.pos_emb.emb.weight"),
    (_drop("transformer.token_emb.weight"), "cond_stage_model.transformer.token_emb.weight"),
    (_add("transformer.attn_layers.layers.0.1.to_q.bias", torch.zeros(64)),
     "transformer.attn_layers.layers.0.1.to_q.bias"),
    (_add("transformer.attn_layers.layers.0.2.g", torch.zeros(1)), "transformer.attn_layers.layers.0.2.g"),
    (_add("transformer.norm.weight", torch.ones(47)), "transformer.norm.weight"),
    (_add("transformer.attn_layers.layers.6.0.weight", torch.ones(48)), "transformer.attn_layers.layers.6"),
])
def test_a_state_dict_that_does_not_fit_names_the_key(edit, named):
    sd = random_bert_state()
    edit(sd)
    with pytest.raises(CgmbenchError) as e:
        BERTEmbedder.from_state_dict(sd)
    assert named in str(e.value)


def test_token_ids_outside_the_vocabulary_are_refused():
    model = BERTEmbedder.from_state_dict(random_bert_state())
    with pytest.raises(CgmbenchError, match="outside its vocabulary"):
        model(torch.full((1, 77), 40))
    with pytest.raises(CgmbenchError, match="max_seq_len 77"):
        model(torch.zeros(1, 78, dtype=torch.int64))


# ----------------------------------------------------------------------------- tokenizer and encoder


def test_tokenizer_layout_and_truncation(hf_home):
    tok = BERTTokenizer()
    ids, info = tok(["A Red circle", "", "bicycle with a clock", "red " * 100])
    v = {w: i for i, w in enumerate(VOCAB)}
    cls_, sep, pad = v["[CLS]"], v["[SEP]"], v["[PAD]"]
    assert ids.dtype == torch.int64 and ids.shape == (4, 77)
    assert ids[0].tolist() == [cls_, v["a"], v["red"], v["circle"], sep] + [pad] * 72  # lower-cased
    assert ids[1].tolist() == [cls_, sep] + [pad] * 75  # the unconditional prompt of guidance
    assert ids[2, :7].tolist() == [cls_, v["bi"], v["##cycle"], v["with"], v["a"], v["clock"], sep]  # WordPiece
    assert ids[3].tolist() == [cls_] + [v["red"]] * 75 + [sep]  # cut to 77 with [SEP] kept
    assert info == {"context_length": 77, "truncated": 1, "encoder": "bert-base-uncased"}
    # exactly 75 words fit: [CLS] + 75 + [SEP] = 77, not truncated
    assert tok(["red " * 75])[1]["truncated"] == 0 and tok(["red " * 76])[1]["truncated"] == 1


def test_encoder_from_state_dict_encodes_prompts(hf_home):
    sd = random_bert_state()
    enc = LDMBertEncoder.from_state_dict(sd)
    assert (enc.context_length, enc.width, enc.pooled_width) == (77, 48, 0)
    # its own state dict is the checkpoint's cond_stage_model part, key for key
    own = enc.state_dict()
    assert own.keys() == sd.keys() and all(torch.equal(own[k], sd[k]) for k in sd)
    texts = ["a red circle", "two dog on the table " * 20, ""]
    tokens, pooled, info = enc.encode(texts)
    assert tokens.shape == (3, 77, 48) and tokens.dtype == torch.float32 and pooled.shape == (3, 0)
    assert info["truncated"] == 1 and info["context_length"] == 77 and info["encoder"] == "bert-base-uncased"
    ids, _ = enc.tokenizer(texts)
    torch.testing.assert_close(tokens.double(), reference_ldm_bert(sd, ids), atol=1e-5, rtol=1e-5)
    one, _, _ = enc.encode(texts[:1])
    torch.testing.assert_close(one[0], tokens[0], atol=1e-6, rtol=1e-6)


def test_missing_tokenizer_names_the_hub_id_files_and_cache(empty_hf_home):
    with pytest.raises(CgmbenchError) as e:
        BERTTokenizer()
    text = str(e.value)
    assert "bert-base-uncased" in text and "vocab.txt" in text and str(empty_hf_home) in text
    assert "hf download bert-base-uncased" in text
    with pytest.raises(CgmbenchError, match="bert-base-uncased"):
        LDMBertEncoder.from_state_dict(random_bert_state())
    assert not empty_hf_home.exists() or not any(empty_hf_home.rglob("vocab.txt"))  # nothing was downloaded


def test_a_tokenizer_larger_than_the_checkpoint_vocabulary_is_refused(hf_home):
    with pytest.raises(CgmbenchError, match=f"has {len(VOCAB)} tokens, more than the checkpoint's vocabulary of 16"):
        LDMBertEncoder.from_state_dict(random_bert_state(vocab_size=16))


# ----------------------------------------------------------------------------- the official checkpoint, end to end

#: a small KL-f8 autoencoder (random weights, CompVis keys): 256x256 images <-> 4x32x32 latents
TINY_F8_VAE = dict(embed_dim=4, ddconfig=dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3,
                                               ch=32, ch_mult=[1, 1, 1, 1], num_res_blocks=1, attn_resolutions=[],
                                               dropout=0.0))


def tiny_txt2img_checkpoint(official_dir, path):
    """A Lightning ``.ckpt`` laid out like txt2img-f8-large: the official tiny U-Net fixture (context_dim 32),
    a tiny KL-f8 autoencoder, a 32-d 2-layer LDM-BERT and the schedule buffers. Returns the U-Net config."""
    from cgmbench.diffusion import ldm_alphas_cumprod

    unet_cfg = json.loads((official_dir / "ldm_sd1" / "fixture_sd1_unet_tiny.json").read_text())
    unet_cfg = unet_cfg["constructor"]["kwargs"]
    unet_w = load_file(str(official_dir / "ldm_sd1" / "fixture_sd1_unet_tiny.weights.safetensors"))
    torch.manual_seed(0)
    vae = AutoencoderKL(**TINY_F8_VAE)
    sd = {f"model.diffusion_model.{k}": v for k, v in unet_w.items()}
    sd.update({f"first_stage_model.{k}": v for k, v in vae.state_dict().items()})
    bert = random_bert_state(n_embed=unet_cfg["context_dim"], n_layer=2, vocab_size=30, dim_head=64)
    sd.update({f"cond_stage_model.{k}": v for k, v in bert.items()})
    sd["alphas_cumprod"] = ldm_alphas_cumprod()
    sd["scale_factor"] = torch.tensor(0.18215)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": sd, "epoch": 0, "global_step": 1}, path)
    return unet_cfg


@pytest.fixture
def tiny_variant(official_dir, monkeypatch):
    path = weights_dir() / "ldm-txt2img-f8-large.ckpt"
    unet_cfg = tiny_txt2img_checkpoint(official_dir, path)
    monkeypatch.setitem(LDM_VARIANTS, "txt2img-f8-large", dict(
        LDM_VARIANTS["txt2img-f8-large"], unet_config=unet_cfg, vae_config=TINY_F8_VAE, resolution=256))
    return path


def test_coco_t2i_run_of_an_official_format_checkpoint(tiny_variant, hf_home, tmp_path, monkeypatch, capsys):
    calls = []
    encode = LDMBertEncoder.encode

    def spy(self, texts):
        out = encode(self, texts)
        calls.append((list(texts), tuple(out[0].shape)))
        return out

    monkeypatch.setattr(LDMBertEncoder, "encode", spy)
    out = tmp_path / "run"
    rc = main(["run", "--task", "coco-t2i", "--model", "ldm", "--num-samples", "2", "--batch-size", "2",
               "--knob", "steps=2", "--guidance", "1.5", "--out", str(out), "--device", "cpu",
               "--allow-pending-metrics"])
    assert rc == 0, capsys.readouterr().err
    record = json.loads((out / "run.json").read_text())
    assert record["n"] == 2 and record["task"]["name"] == "coco-t2i"
    assert record["model"]["knobs"] == {"guidance_scale": 1.5, "steps": 2, "eta": 0.0}
    ck = record["model"]["checkpoint"]
    assert ck["name"] == "ldm:txt2img-f8-large" and ck["source"] == "official" and len(ck["sha256"]) == 64
    index = json.loads((out / "samples" / "index.json").read_text())
    shards = [np.load(out / "samples" / s["file"]) for s in index["shards"]]
    samples = np.concatenate(shards)
    assert samples.shape == (2, 3, 256, 256) and samples.dtype == np.uint8
    # LDM-BERT encoded the two COCO captions, then the empty prompts of classifier-free guidance
    prompts = open_source(load_task("coco-t2i")).conditions([0, 1]).texts
    assert calls == [(prompts, (2, 77, 32)), (["", ""], (2, 77, 32))]
    assert samples.std() > 1.0 and not np.array_equal(samples[0], samples[1])
    # the official extractor weights are not on this machine: the metrics say exactly what to fetch
    assert record["metrics"] == {}
    assert "cgmbench weights fetch inception-v3" in " ".join(record["metrics_pending"])


def test_coco_t2i_run_without_the_tokenizer_names_it(tiny_variant, empty_hf_home, tmp_path, capsys):
    rc = main(["run", "--task", "coco-t2i", "--model", "ldm", "--checkpoint", str(tiny_variant),
               "--num-samples", "2", "--knob", "steps=2", "--out", str(tmp_path / "run"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "bert-base-uncased" in err and "vocab.txt" in err and "hf download" in err
    assert not (tmp_path / "run" / "run.json").exists()


def test_from_compvis_checks_the_context_width(tiny_variant, hf_home):
    class Narrow:
        width = 16

        def encode(self, texts):  # pragma: no cover - never reached
            raise AssertionError

    with pytest.raises(CgmbenchError, match="32-d context, the text encoder gives 16-d"):
        LDMGenerator.from_compvis(tiny_variant, "txt2img-f8-large", text_encoder=Narrow())
    gen = LDMGenerator.from_compvis(tiny_variant, "txt2img-f8-large")
    assert isinstance(gen.text_encoder, LDMBertEncoder) and gen.text_encoder.width == 32
    assert gen.resolution == (256, 256) and gen.latent_shape == (4, 32, 32)

