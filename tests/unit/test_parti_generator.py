"""PartiGenerator: LlamaGen variants from tiny official-layout files, shipped-format files, knobs, bad input.

The LlamaGen files here are made by the tests in the released layout (``torch.save({"model": state_dict})``,
LlamaGen key names, the preset's head count) but tiny: a 32-code tokenizer with ch 32 and one res block, and
1-layer GPTs of width 4 x n_head. The t2i path's flan-t5-xl is replaced by a tiny ``transformers`` T5 encoder
and a word-level tokenizer built in memory (nothing is read from the hub).
"""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import replace

import pytest
import torch

import baselines.parti.weights  # noqa: F401
from baselines.common.shipped import save_shipped
from baselines.parti import generator as G
from baselines.parti.models import ModelArgs, Transformer
from baselines.parti.shipped_config import build_parti_networks, config_dict
from baselines.parti.sampling import generate
from baselines.parti.text import T5CaptionEncoder, left_pad
from baselines.parti.tokenizer import ModelArgs as VQModelArgs
from baselines.parti.tokenizer import VQModel
from cgmbench import weights
from cgmbench.conditions import Conditions
from cgmbench.errors import CgmbenchError
from cgmbench.models.registry import load_model, register_model
from cgmbench.seeding import torch_generator
from cgmbench.spec.task import load_task

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _registered(monkeypatch, tmp_path):
    register_model("parti", G.PartiGenerator)
    monkeypatch.setenv("CGMBENCH_HOME", str(tmp_path / "home"))
    # the tiny stand-ins written by _write_release take the released files' places: lift the pinned digests of
    # those entries for the test (monkeypatch restores them)
    for name, kf in weights.known_files().items():
        if name.startswith("llamagen:"):
            monkeypatch.setitem(weights._REGISTRY, name,
                                replace(kf, sha256=None, digest_source="none published: a test stand-in"))


def _cli(*argv) -> tuple[int, str]:
    from cgmbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            rc = main(list(argv))
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue() + err.getvalue()


def _tiny_vq(codebook_size=32, seed=0) -> VQModel:
    torch.manual_seed(seed)
    return VQModel(VQModelArgs(codebook_size=codebook_size, codebook_embed_dim=8, encoder_ch_mult=[1, 1, 1, 1, 1],
                               decoder_ch_mult=[1, 1, 1, 1, 1], z_channels=32, ch=32, num_res_blocks=1)).eval()


def _tiny_gpt(kind: str, n_head: int, vocab=32, seed=1) -> Transformer:
    torch.manual_seed(seed)
    kw = dict(dim=4 * n_head, n_layer=1, n_head=n_head, vocab_size=vocab, block_size=256)
    if kind == "c2i":
        kw.update(model_type="c2i", num_classes=1000, cls_token_num=1)
    else:
        kw.update(model_type="t2i", caption_dim=16, cls_token_num=120)
    gpt = Transformer(ModelArgs(**kw)).eval()
    with torch.no_grad():  # the official init zeroes the head: give the logits some structure
        gpt.output.weight.normal_(0, 1.0)
    return gpt


def _write_release(home, name: str, model: torch.nn.Module) -> None:
    path = home / "weights" / f"llamagen-{name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, path)


class _WordTokenizer:
    """Whitespace tokenizer with T5's conventions (``</s>`` appended, ``<pad>`` = 0, right padding)."""

    def __init__(self, words):
        self.index = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}

    def __call__(self, texts, max_length=None, padding=False, truncation=False, return_attention_mask=False,
                 add_special_tokens=True, return_tensors=None):
        ids = [[self.index.get(w, 2) for w in t.lower().split()] + [1] for t in texts]
        if truncation:
            ids = [x[:max_length - 1] + [1] if len(x) > max_length else x for x in ids]
        if padding == "max_length":
            mask = [[1] * len(x) + [0] * (max_length - len(x)) for x in ids]
            ids = [x + [0] * (max_length - len(x)) for x in ids]
            return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
        return {"input_ids": ids}


def _tiny_t5() -> T5CaptionEncoder:
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(5)
    config = T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4)
    return T5CaptionEncoder(_WordTokenizer("a red blue circle square cat dog on the".split()),
                            T5EncoderModel(config), name="tiny-t5")


# --------------------------------------------------------------------------- LlamaGen variants, offline
def test_llamagen_variants_name_their_files_offline():
    rc, text = _cli("run", "--task", "imagenet256-cc", "--model", "parti:llamagen-c2i-l-256", "--num-samples", "2")
    assert rc == 2 and len(text.strip().splitlines()) == 1
    for piece in ("llamagen-vq_ds16_c2i.pt", "llamagen-c2i_L_256.pt",
                  "https://huggingface.co/FoundationVision/LlamaGen/resolve/main/c2i_L_256.pt",
                  "cgmbench weights fetch llamagen:c2i_L_256"):
        assert piece in text
    rc, text = _cli("run", "--task", "coco-t2i", "--model", "parti:llamagen-t2i-xl", "--num-samples", "2")
    assert rc == 2 and len(text.strip().splitlines()) == 1
    for piece in ("llamagen-vq_ds16_t2i.pt", "llamagen-t2i_XL_stage1_256.pt",
                  "https://huggingface.co/peizesun/llamagen_t2i/resolve/main/t2i_XL_stage1_256.pt", "google/flan-t5-xl"):
        assert piece in text


def test_weights_registry_lists_llamagen_files_with_licenses():
    from cgmbench.weights import known_files

    files = known_files()
    for name in ("llamagen:vq_ds16_c2i", "llamagen:vq_ds16_t2i", "llamagen:c2i_B_256", "llamagen:c2i_L_256",
                 "llamagen:t2i_XL_stage1_256"):
        assert files[name].license.startswith("MIT")
        assert files[name].url.endswith(name.split(":")[1] + ".pt")
    rc, text = _cli("weights", "list")
    assert rc == 0 and "llamagen:c2i_L_256" in text and "MIT (FoundationVision/LlamaGen)" in text


@pytest.mark.slow
def test_llamagen_c2i_variant_loads_tiny_release_files_end_to_end(tmp_path):
    home = tmp_path / "home"
    vq, gpt = _tiny_vq(), _tiny_gpt("c2i", n_head=12)
    _write_release(home, "vq_ds16_c2i.pt", vq)
    _write_release(home, "c2i_B_256.pt", gpt)
    model = load_model("parti:llamagen-c2i-b-256", load_task("imagenet256-cc"))
    assert model.resolution == (256, 256) and model.condition_kinds == {"class"}
    assert model.resolve_knobs({}) == dict(guidance_scale=2.0, temperature=1.0, top_k=0, top_p=1.0, cfg_interval=-1)
    assert model.checkpoint.extra["tokenizer"]["name"] == "llamagen:vq_ds16_c2i"
    knobs = dict(guidance_scale=3.0, temperature=0.9, top_k=20, top_p=0.95, cfg_interval=-1)
    labels, seeds = torch.tensor([3, 999]), [11, 12]
    images = model.generate(Conditions("class", [0, 1], labels=labels), seeds, **knobs)
    assert images.shape == (2, 3, 256, 256) and images.dtype == torch.uint8
    # the same as the family's generate() with one generator per sample, decoded by the tokenizer itself
    for i in range(2):
        tokens = generate(gpt, labels[i:i + 1], 256, guidance_scale=3.0, temperature=0.9, top_k=20, top_p=0.95,
                          generators=[torch_generator(seeds[i])])
        with torch.no_grad():
            x = vq.decode_code(tokens, (1, 8, 16, 16))
        assert torch.equal(images[i:i + 1], torch.clamp(127.5 * x + 128.0, 0, 255).to(torch.uint8))


@pytest.mark.slow
def test_samples_do_not_depend_on_the_batch(tmp_path):
    home = tmp_path / "home"
    _write_release(home, "vq_ds16_c2i.pt", _tiny_vq())
    _write_release(home, "c2i_L_256.pt", _tiny_gpt("c2i", n_head=16))
    model = load_model("parti:llamagen-c2i-l-256", load_task("imagenet256-cc"))
    k = model.resolve_knobs({"guidance_scale": 1.5, "top_k": 8})
    labels = torch.tensor([1, 2, 3])
    together = model.sample_tokens(labels, None, [5, 6, 7], k)
    alone = torch.cat([model.sample_tokens(labels[i:i + 1], None, [s], k) for i, s in enumerate([5, 6, 7])])
    assert torch.equal(together, alone)
    assert not torch.equal(together[0], together[1])
    model.micro_batch = 3  # batched networks: still one generator per sample
    assert model.sample_tokens(labels, None, [5, 6, 7], k).shape == (3, 256)


def test_left_padding_matches_sample_t2i():
    emb = torch.arange(1, 11, dtype=torch.float32).view(1, 5, 2).repeat(2, 1, 1)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    out, new_mask = left_pad(emb, mask)
    assert new_mask.tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert out[0].tolist() == [[0, 0], [0, 0], [1, 2], [3, 4], [5, 6]]
    assert torch.equal(out[1], emb[1])


@pytest.mark.slow
def test_llamagen_t2i_variant_end_to_end_with_a_tiny_t5(tmp_path, monkeypatch):
    home = tmp_path / "home"
    vq, gpt = _tiny_vq(seed=2), _tiny_gpt("t2i", n_head=20, seed=3)
    _write_release(home, "vq_ds16_t2i.pt", vq)
    _write_release(home, "t2i_XL_stage1_256.pt", gpt)
    t5 = _tiny_t5()
    seen = []
    monkeypatch.setattr(T5CaptionEncoder, "from_hub",
                        classmethod(lambda cls, hub_id, device="cpu": seen.append(hub_id) or t5))
    model = load_model("parti:llamagen-t2i-xl", load_task("coco-t2i"))
    assert seen == ["google/flan-t5-xl"] and model.condition_kinds == {"text"}
    assert model.resolve_knobs({})["guidance_scale"] == 7.5 and model.resolve_knobs({})["top_k"] == 1000
    prompts = ["a red circle on the square", "dog " * 130]  # the second is cut to 120 tokens
    images = model.generate(Conditions("text", [0, 1], texts=prompts), [21, 22], top_k=16)
    assert images.shape == (2, 3, 256, 256)
    assert model.run_info == {"prompts": 2, "truncated": 1}
    feats, mask, info = t5.encode(prompts[:1])
    assert mask[0, :113].sum() == 0 and mask[0, 113:].sum() == 7 and info["truncated"] == 0
    assert float(feats[0, :113].abs().sum()) == 0.0
    tokens = generate(gpt, feats, 256, emb_mask=mask, guidance_scale=7.5, top_k=16,
                      generators=[torch_generator(21)])
    with torch.no_grad():
        x = vq.decode_code(tokens, (1, 8, 16, 16))
    assert torch.equal(images[:1], torch.clamp(127.5 * x + 128.0, 0, 255).to(torch.uint8))


# --------------------------------------------------------------------------- shipped format and bad input
def _shipped_file(tmp_path, vocab_gpt=None, name="tiny"):
    vq_args = dict(codebook_size=16, codebook_embed_dim=8, codebook_show_usage=False, encoder_ch_mult=[1, 1],
                   decoder_ch_mult=[1, 1], z_channels=32, ch=32, num_res_blocks=1)
    gpt_args = dict(dim=32, n_layer=1, n_head=2, multiple_of=32, vocab_size=vocab_gpt or 16, block_size=256,
                    model_type="t2i", cls_token_num=16, caption_token_num=16, caption_dim=32)
    config = {"model": "parti", "resolution": 32, "vq": vq_args, "gpt": gpt_args,
              "text_encoder": dict(context_length=16, width=32, layers=1, heads=2), "defaults": {}}
    torch.manual_seed(0)
    vq, gpt, text = build_parti_networks(config)
    release = config_dict(vq, gpt, text, 32, {"guidance_scale": 2.0})
    tensors = {f"vq.{k}": v for k, v in vq.state_dict().items()}
    tensors.update({f"gpt.{k}": v for k, v in gpt.state_dict().items()})
    tensors.update({f"text.{k}": v for k, v in text.state_dict().items()})
    return save_shipped(tmp_path / f"{name}.safetensors", tensors, release, {"command": "test"})


def test_shipped_format_round_trip_and_truncated_prompts(tmp_path):
    path = _shipped_file(tmp_path)
    model = load_model("parti", load_task("shapes-t2i"), checkpoint=str(path))
    assert model.resolution == (32, 32) and model.resolve_knobs({})["guidance_scale"] == 2.0
    long = "a red circle " * 10  # 30 words > 16 word-encoder tokens
    images = model.generate(Conditions("text", [0, 1], texts=["a red circle", long]), [1, 2])
    assert images.shape == (2, 3, 32, 32) and model.run_info == {"prompts": 2, "truncated": 1}
    again = model.generate(Conditions("text", [0], texts=["a red circle"]), [1])
    assert torch.equal(again, images[:1])


def test_top_k_larger_than_the_codebook_is_one_line(tmp_path):
    path = _shipped_file(tmp_path)
    rc, text = _cli("run", "--task", "shapes-t2i", "--model", "parti", "--checkpoint", str(path),
                    "--num-samples", "2", "--knob", "top_k=17", "--out", str(tmp_path / "run"))
    assert rc == 2 and len(text.strip().splitlines()) == 1
    assert "top_k=17 is larger than the codebook (16 tokens)" in text


def test_codebook_mismatch_is_one_line(tmp_path):
    home = tmp_path / "home"
    _write_release(home, "vq_ds16_c2i.pt", _tiny_vq(codebook_size=32))
    _write_release(home, "c2i_B_256.pt", _tiny_gpt("c2i", n_head=12, vocab=64))
    rc, text = _cli("run", "--task", "imagenet256-cc", "--model", "parti:llamagen-c2i-b-256", "--num-samples", "2",
                    "--allow-pending-metrics")  # no Inception / ADM batch offline: the model's own error is the point
    assert rc == 2 and len([line for line in text.splitlines() if line.startswith("cgmbench: error")]) == 1
    assert "codebook size mismatch" in text and "has 32 codes" in text and "predicts 64 tokens" in text
    rc, text = _cli("run", "--task", "shapes-t2i", "--model", "parti", "--checkpoint",
                    str(_shipped_file(tmp_path, vocab_gpt=24, name="bad")), "--num-samples", "2")
    assert rc == 2 and "codebook size mismatch" in text and len(text.strip().splitlines()) == 1


def test_unknown_variant_and_wrong_task_kind(tmp_path):
    rc, text = _cli("run", "--task", "shapes-t2i", "--model", "parti:nope", "--num-samples", "2")
    assert rc == 2 and "unknown parti checkpoint 'nope'" in text and "llamagen-c2i-l-256" in text
    home = tmp_path / "home"
    _write_release(home, "vq_ds16_c2i.pt", _tiny_vq())
    _write_release(home, "c2i_B_256.pt", _tiny_gpt("c2i", n_head=12))
    with pytest.raises(CgmbenchError, match="does not accept 'text' conditions"):
        load_model("parti:llamagen-c2i-b-256", load_task("coco-t2i"))
