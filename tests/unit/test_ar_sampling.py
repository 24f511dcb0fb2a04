"""baselines.parti.sampling.generate(): cache, guidance, seeding and filter-order properties on tiny models."""

from __future__ import annotations

import pytest
import torch

from baselines.parti.models import ModelArgs, Transformer
from baselines.parti.sampling import generate, logits_to_probs, top_k_top_p_filtering
from cgmbench.errors import CgmbenchError
from cgmbench.seeding import torch_generator

VOCAB = 24
SEEDS = (101, 202, 303)


def _model(model_type: str = "c2i", n_layer: int = 1) -> Transformer:
    torch.manual_seed(0)
    model = Transformer(ModelArgs(dim=32, n_layer=n_layer, n_head=2, multiple_of=32, vocab_size=VOCAB,
                                  block_size=16, num_classes=5, model_type=model_type, caption_dim=8,
                                  cls_token_num=120 if model_type == "t2i" else 1)).eval()
    with torch.no_grad():  # the official init zeroes the head, which would make every logit 0
        model.output.weight.normal_(0.0, 0.3)
    return model


def _gens(seeds=SEEDS):
    return [torch_generator(s) for s in seeds]


def _t2i_condition(batch: int = 3):
    g = torch.Generator().manual_seed(5)
    caption = torch.randn(batch, 120, 8, generator=g)
    emb_mask = torch.zeros(batch, 120, dtype=torch.long)
    for i, n in enumerate([7, 120, 3][:batch]):  # left padding: the real tokens come last
        emb_mask[i, 120 - n:] = 1
    return caption * emb_mask[..., None], emb_mask


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_cached_decode_equals_full_recomputation_c2i(guidance_scale):
    model = _model()
    cond = torch.tensor([0, 3, 4])
    knobs = dict(guidance_scale=guidance_scale, temperature=1.0, top_k=0, top_p=1.0, return_trace=True)
    cached, t_cached = generate(model, cond, 16, generators=_gens(), **knobs)
    full, t_full = generate(model, cond, 16, generators=_gens(), use_cache=False, **knobs)
    assert torch.equal(cached, full)
    torch.testing.assert_close(t_cached["model_logits_last"], t_full["model_logits_last"], atol=1e-5, rtol=1e-5)
    assert len(set(cached.flatten().tolist())) > 5  # the tiny model samples varied tokens


def test_cached_decode_equals_full_recomputation_t2i_with_padding_mask():
    model = _model("t2i")
    caption, emb_mask = _t2i_condition()
    knobs = dict(emb_mask=emb_mask, guidance_scale=2.5, top_k=10, top_p=0.9, return_trace=True)
    cached, t_cached = generate(model, caption, 16, generators=_gens(), **knobs)
    full, t_full = generate(model, caption, 16, generators=_gens(), use_cache=False, **knobs)
    assert torch.equal(cached, full)
    torch.testing.assert_close(t_cached["model_logits_last"], t_full["model_logits_last"], atol=1e-5, rtol=1e-5)


def test_guidance_scale_one_through_the_cfg_batch_equals_the_conditional_path():
    model = _model()
    cond = torch.tensor([1, 2, 4])
    plain, t_plain = generate(model, cond, 16, generators=_gens(), return_trace=True)
    doubled, t_doubled = generate(model, cond, 16, generators=_gens(), cfg_batch=True, return_trace=True)
    assert t_plain["model_logits_last"].shape[1] == 3 and t_doubled["model_logits_last"].shape[1] == 6
    assert torch.equal(plain, doubled)
    # within the doubled pass, w = 1 hands the conditional logits on bit for bit (no l_u + 1·(l_c − l_u) rounding)
    assert torch.equal(t_doubled["sample_logits"], t_doubled["model_logits_last"][:, :3])
    # across passes the conditional rows differ only by the BLAS kernel chosen for 3 vs 6 rows
    torch.testing.assert_close(t_doubled["model_logits_last"][:, :3], t_plain["model_logits_last"], atol=1e-5, rtol=0)


def test_guidance_combines_logits_in_the_suite_convention_and_respects_cfg_interval():
    model = _model()
    cond = torch.tensor([1, 2])
    w = 4.0
    _, trace = generate(model, cond, 8, generators=_gens(SEEDS[:2]), guidance_scale=w, cfg_interval=2,
                        return_trace=True)
    l_c, l_u = trace["model_logits_last"][:, :2], trace["model_logits_last"][:, 2:]
    guided = l_u + w * (l_c - l_u)
    assert torch.equal(trace["sample_logits"][:4], guided[:4])  # steps 0 .. cfg_interval + 1
    assert torch.equal(trace["sample_logits"][4:], l_c[4:])  # then the conditional logits only
    _, uncond = generate(model, cond, 4, generators=_gens(SEEDS[:2]), guidance_scale=0.0, return_trace=True)
    assert torch.equal(uncond["sample_logits"], uncond["model_logits_last"][:, 2:])  # w = 0: unconditional


@pytest.mark.parametrize("guidance_scale", [1.0, 2.0])
def test_per_sample_seeding_is_batch_invariant(guidance_scale):
    model = _model()
    cond = torch.tensor([0, 3, 4])
    knobs = dict(guidance_scale=guidance_scale, temperature=0.9, top_k=12, top_p=0.95)
    together = generate(model, cond, 16, generators=_gens(), **knobs)
    alone = torch.cat([generate(model, cond[i:i + 1], 16, generators=_gens(SEEDS[i:i + 1]), **knobs)
                       for i in range(3)])
    reordered = generate(model, cond.flip(0), 16, generators=_gens(SEEDS[::-1]), **knobs).flip(0)
    assert torch.equal(together, alone)
    assert torch.equal(together, reordered)
    other_seed = generate(model, cond, 16, generators=_gens((1, 2, 3)), **knobs)
    assert not torch.equal(together, other_seed)


def test_temperature_comes_before_the_filters():
    logits = torch.tensor([[2.0, 1.0, 0.0, -5.0]])
    # ours: l / T = [1, .5, 0, -2.5]; top-3 -> p = [.506, .307, .186]; the nucleus needs 2 tokens to pass 0.6
    probs = logits_to_probs(logits, temperature=2.0, top_k=3, top_p=0.6)
    torch.testing.assert_close(probs[0, :2], torch.softmax(torch.tensor([1.0, 0.5]), dim=0))
    assert probs[0, 2:].tolist() == [0.0, 0.0]
    # filtering first and dividing by the temperature afterwards (top-k -> top-p -> T, as taming orders
    # them) sees p = [.665, .245, .090] at T = 1, where the top token alone passes 0.6: one token survives
    filtered_first = torch.softmax(top_k_top_p_filtering(logits, top_k=3, top_p=0.6) / 2.0, dim=-1)
    assert filtered_first[0].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert not torch.allclose(probs, filtered_first)
    # top-k alone commutes with the temperature (a monotone rescaling): the order matters through top-p
    torch.testing.assert_close(logits_to_probs(logits, temperature=2.0, top_k=3),
                               torch.softmax(top_k_top_p_filtering(logits, top_k=3) / 2.0, dim=-1))


def test_top_k_larger_than_the_codebook_is_an_error():
    model = _model()
    with pytest.raises(CgmbenchError, match=f"top_k=25 is larger than the codebook \\({VOCAB} tokens\\)"):
        generate(model, torch.tensor([1]), 4, generators=_gens(SEEDS[:1]), top_k=VOCAB + 1)
    generate(model, torch.tensor([1]), 4, generators=_gens(SEEDS[:1]), top_k=VOCAB)  # the whole codebook is fine


def test_bad_randomness_and_inputs_are_clear_errors():
    model = _model()
    cond = torch.tensor([1, 2])
    with pytest.raises(CgmbenchError, match="exactly one randomness source"):
        generate(model, cond, 4)
    with pytest.raises(CgmbenchError, match="1 generators for a batch of 2 samples"):
        generate(model, cond, 4, generators=_gens(SEEDS[:1]))
    with pytest.raises(CgmbenchError, match="outside \\[1, 16\\]"):
        generate(model, cond, 17, generators=_gens(SEEDS[:2]))
    with pytest.raises(CgmbenchError, match="eval mode"):
        generate(model.train(), cond, 4, generators=_gens(SEEDS[:2]))
    model.eval()
    t2i = _model("t2i")
    caption, _ = _t2i_condition(2)
    with pytest.raises(CgmbenchError, match="do not match the null caption"):
        generate(t2i, caption[:, :100], 4, guidance_scale=2.0, generators=_gens(SEEDS[:2]))
    greedy = generate(model, cond, 6, sample=False)
    assert torch.equal(greedy, generate(model, cond, 6, sample=False))
