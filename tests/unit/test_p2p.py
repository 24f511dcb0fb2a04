"""Prompt-to-prompt (baselines/editing/attention_control.py, p2p.py) and DDIM inversion (cgmbench/diffusion)."""

import numpy as np
import pytest
import torch

from baselines.common.text_encoders import ShapesTokenizer
from baselines.editing.attention_control import (
    AttentionRefine,
    AttentionReplace,
    AttentionReweight,
    AttentionStore,
    EmptyControl,
    LocalBlend,
    attention_control,
    get_equalizer,
    get_refinement_mapper,
    get_replacement_mapper,
    get_time_words_attention_alpha,
    register_attention_control,
)
from baselines.editing.p2p import PromptToPromptGenerator, build_controller, edit_words
from baselines.editing.prompts import PromptPair, edit_prompt_pair
from baselines.ldm.unet import UNetModel
from cgmbench.conditions import Conditions
from cgmbench.diffusion import DDIMSampler, ldm_alphas_cumprod
from cgmbench.errors import CgmbenchError
from cgmbench.generator import to_uint8
from cgmbench.spec.task import load_task
from cgmbench.worlds.sources import ShapesSource

torch.set_num_threads(1)
ACP = ldm_alphas_cumprod(1000, 0.00085, 0.012)
TOK = ShapesTokenizer(16)


def _unet(seed=0):
    torch.manual_seed(seed)
    net = UNetModel(image_size=8, in_channels=4, out_channels=4, model_channels=32, attention_resolutions=[1, 2],
                    num_res_blocks=1, channel_mult=[1, 2], num_heads=4, use_spatial_transformer=True,
                    transformer_depth=1, context_dim=16, legacy=False).eval()
    for p in net.parameters():  # the zero-initialised output convs would hide any difference
        p.data.normal_(0, 0.2)
    return net


def _inputs(b=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 4, 8, 8, generator=g), torch.tensor([500] * b),
            torch.randn(b, 16, 16, generator=g))


@pytest.fixture(scope="module")
def base():
    task = load_task("shapes-edit")
    return PromptToPromptGenerator.load(task).base, task


# ----------------------------------------------------------------------------- the hook


def test_hook_matches_the_unets_own_attention():
    net, (x, t, c) = _unet(), _inputs()
    with torch.no_grad():
        want = net(x, timesteps=t, context=c)
        with attention_control(net, EmptyControl(num_prompts=2)) as ctl:
            got = net(x, timesteps=t, context=c)
        again = net(x, timesteps=t, context=c)
    assert ctl.num_att_layers == 14  # (input 2 + middle 1 + output 4 transformer blocks) x (attn1, attn2)
    assert torch.allclose(got, want, atol=1e-5) and not torch.equal(want, torch.zeros_like(want))
    assert torch.equal(again, want)  # processors removed after the block


def test_hook_matches_on_the_shipped_tiny_ldm(base):
    ldm, _ = base
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, *ldm.latent_shape, generator=g)
    c = ldm.encode_prompts(["a red circle", "a blue square to the left of a red circle"])[0]
    t = torch.tensor([300, 700])
    with torch.no_grad():
        want = ldm.apply_model(x, t, c)
        with attention_control(ldm.unet, EmptyControl(num_prompts=2)):
            got = ldm.apply_model(x, t, c)
    assert torch.allclose(got, want, atol=1e-5)


def test_replace_on_identical_prompts_is_a_no_op():
    net, (x, t, c) = _unet(), _inputs()
    x, c = torch.cat([x[:1], x[:1]]), torch.cat([c[:1], c[:1]])  # source and target rows identical
    prompts = ["a red circle", "a red circle"]
    alpha = get_time_words_attention_alpha(TOK, prompts, 10, 1.0)
    ctl = AttentionReplace(get_replacement_mapper(TOK, prompts), num_prompts=2, num_steps=10,
                           cross_replace_alpha=alpha, self_replace_steps=1.0)
    with torch.no_grad():
        want = net(x, timesteps=t, context=c)
        with attention_control(net, ctl):
            got = net(x, timesteps=t, context=c)
            guided = net(torch.cat([x, x]), timesteps=torch.cat([t, t]), context=torch.cat([c, c]))
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(guided, torch.cat([want, want]), atol=1e-5)


def test_replace_gives_the_target_the_sources_maps():
    """Different prompts: under replace the target's cross-attention probabilities equal the source's."""
    prompts = ["a red circle", "a blue circle"]
    seen = []

    class Spy(AttentionReplace):
        def forward(self, attn, is_cross, place_in_unet):
            out = super().forward(attn, is_cross, place_in_unet)
            if is_cross:
                seen.append(out)
            return out

    ctl = Spy(get_replacement_mapper(TOK, prompts), num_prompts=2, num_steps=10,
              cross_replace_alpha=get_time_words_attention_alpha(TOK, prompts, 10, 1.0), self_replace_steps=0.0)
    net, (x, t, c) = _unet(), _inputs()
    with torch.no_grad(), attention_control(net, ctl):
        net(x, timesteps=t, context=c)
    assert len(seen) == 7 and all(torch.allclose(a[1], a[0]) for a in seen)


def test_reweight_changes_only_that_tokens_attention():
    prompts = ["a red circle", "a red circle"]
    eq = get_equalizer(TOK, prompts[1], ["red"], [2.5])
    assert eq[0, 2] == 2.5 and (eq[0, [0, 1, 3, 4]] == 1).all()
    ctl = AttentionReweight(eq, num_prompts=2, num_steps=4,
                            cross_replace_alpha=get_time_words_attention_alpha(TOK, prompts, 4, 1.0),
                            self_replace_steps=0.0)
    attn = torch.rand(1, 4, 64, 16).softmax(-1).expand(2, -1, -1, -1).clone()
    out = ctl(attn, True, "down")
    assert torch.equal(out[0], attn[0])
    assert torch.allclose(out[1, ..., 2], 2.5 * attn[1, ..., 2])
    others = [i for i in range(16) if i != 2]
    assert torch.allclose(out[1][..., others], attn[1][..., others])
    assert torch.equal(ctl(attn, False, "down"), attn)  # self-attention window 0: untouched
    # on a guided (doubled) batch only the conditional rows change
    doubled = torch.cat([attn, attn])
    out2 = ctl(doubled, True, "up")
    assert torch.equal(out2[:2], attn) and torch.allclose(out2[3, ..., 2], 2.5 * attn[1, ..., 2])


def test_self_attention_replacement_follows_the_window_and_the_query_limit():
    prompts = ["a red circle", "a blue circle"]
    ctl = AttentionReplace(get_replacement_mapper(TOK, prompts), num_prompts=2, num_steps=10,
                           cross_replace_alpha=get_time_words_attention_alpha(TOK, prompts, 10, 0.0),
                           self_replace_steps=0.3, self_max_queries=16)
    small, large = torch.rand(2, 4, 16, 16), torch.rand(2, 4, 64, 64)
    ctl.cur_step = 2
    assert torch.equal(ctl(small, False, "mid")[1], small[0])
    assert torch.equal(ctl(large, False, "down"), large)  # too many queries
    ctl.cur_step = 3  # int(10 * 0.3) = 3: outside the window
    assert torch.equal(ctl(small, False, "mid"), small)
    cross = torch.rand(2, 4, 16, 16)
    assert torch.equal(ctl(cross, True, "mid"), cross)  # cross window 0


def test_time_words_alpha_windows():
    prompts = ["a red circle", "a blue circle"]
    a = get_time_words_attention_alpha(TOK, prompts, 9, 0.5)  # steps int(0.5 * 10) = 5: 0..4
    assert a.shape == (10, 1, 16) and (a[:5] == 1).all() and (a[5:] == 0).all()
    a = get_time_words_attention_alpha(TOK, prompts, 9, {"default_": 1.0, "blue": (0.2, 0.4)})
    assert (a[:, 0, 2] == torch.tensor([0, 0, 1, 1, 0, 0, 0, 0, 0, 0.])).all() and (a[:, 0, 3] == 1).all()


def test_alignment_mappers():
    with pytest.raises(ValueError, match="same token count"):
        get_replacement_mapper(TOK, ["a red circle", "a red circle to the left of a blue square"])
    src, tgt = "a red circle", "a blue square to the left of a red circle"
    mapper, alphas = get_refinement_mapper(TOK, [src, tgt])
    # target tokens: <start> a blue square to the left of a red circle <end>; the source's "a red circle" and the
    # sentence marks align, the added phrase is new
    assert alphas[0, :12].tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert mapper[0, 0] == 0 and mapper[0, 8:12].tolist() == [1, 2, 3, 4]
    assert (alphas[0, 12:] == 1).all() and mapper[0, 12:].tolist() == [5, 6, 7, 8]  # pads to the source's pads
    assert edit_words(TOK, PromptPair(src, tgt)) == [1, 2, 3, 4, 5, 6, 7]
    assert edit_words(TOK, PromptPair("a red circle", "a blue circle")) == [2]


def test_local_blend_keeps_the_source_outside_the_blend_words():
    store = {"down_cross": [torch.zeros(2, 64, 16)]}
    store["down_cross"][0][:, :, 1] = 0.01
    maps = store["down_cross"][0].reshape(2, 8, 8, 16)
    maps[1, 5:7, 5:7, 3] = 1.0  # the target's blend word attends to a 2x2 patch
    alpha_layers = torch.zeros(2, 16)
    alpha_layers[1, 3] = 1.0
    blend = LocalBlend(alpha_layers, num_steps=10, threshold=0.3, start_blend=0.2)
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(blend(x, store, 1), x)  # before start_blend
    out = blend(x, store, 2)
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[4:8, 4:8] = True  # the patch grown by the 3x3 max-pool
    assert torch.equal(out[1][:, inside], x[1][:, inside]) and torch.equal(out[1][:, ~inside], x[0][:, ~inside])
    assert torch.equal(out[0], x[0])


def test_attention_store_sums_over_steps():
    st = AttentionStore(num_prompts=1)
    a = torch.rand(1, 4, 16, 8)
    st(a, True, "mid")
    st(a, False, "mid")
    st.between_steps()
    st(a, True, "mid")
    st.between_steps()
    assert list(st.attention_store) == ["mid_cross"] and torch.allclose(st.attention_store["mid_cross"][0],
                                                                         2 * a.mean(1))


# ----------------------------------------------------------------------------- DDIM inversion


def test_ddim_inversion_inverts_the_sampler_exactly_for_a_constant_eps():
    """With eps independent of x and t, inversion is the exact inverse of DDIM sampling."""
    eps = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    sampler = DDIMSampler(lambda x, t, c: eps.expand_as(x), ACP)
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    inverted = sampler.invert(x0, 25)
    assert len(inverted) == 26
    back, inter = sampler.sample(25, 1, (4, 8, 8), x_T=inverted[-1], log_every_t=1)
    assert torch.allclose(back, x0, atol=1e-4)
    # the sampler's state after its step at index i is inverted[i]
    assert torch.allclose(inter["x_inter"][1], inverted[-2], atol=1e-4)


@pytest.mark.slow
def test_ddim_inversion_round_trip_on_the_tiny_ldm(base):
    """Invert a shapes-edit source with its prompt, regenerate with the same prompt at guidance 1: the decoded image
    is close to the autoencoder's reconstruction (measured 39-47 dB at 25 steps, 44-52 dB at 50)."""
    ldm, task = base
    cond = ShapesSource(task, {"size": 1000}).conditions([0, 1])
    for i in range(2):
        x = cond.images[i:i + 1].float() / 127.5 - 1
        with torch.no_grad():
            z0 = ldm.vae.encode(x).mode() * ldm.scale_factor
            c = ldm.encode_prompts([edit_prompt_pair(cond.texts[i]).source])[0]
            sampler = DDIMSampler(ldm.apply_model, ldm.alphas_cumprod)
            z, _ = sampler.sample(25, 1, tuple(z0.shape[1:]), conditioning=c, x_T=sampler.invert(z0, 25, c)[-1],
                                  log_every_t=10**9)
            rec, ref = (to_uint8(ldm.vae.decode(v / ldm.scale_factor)).float() for v in (z, z0))
        assert 10 * np.log10(255**2 / ((rec - ref) ** 2).mean().item()) > 35.0
        assert ((z - z0).norm() / z0.norm()).item() < 0.1


# ----------------------------------------------------------------------------- the model


def test_controller_choice_from_the_prompts():
    kw = dict(num_steps=10, edit="auto", cross_replace_steps=0.8, self_replace_steps=0.4, reweight=1.0,
              local_blend=True, latent_hw=(8, 8))
    assert isinstance(build_controller(TOK, edit_prompt_pair("make the red circle blue"), **kw), AttentionReplace)
    ctl = build_controller(TOK, edit_prompt_pair("remove the red circle"), **kw)
    assert isinstance(ctl, AttentionRefine) and ctl.self_max_queries == 16 and ctl.local_blend is not None
    ctl = build_controller(TOK, edit_prompt_pair("make the red circle blue"), **dict(kw, reweight=2.0))
    assert isinstance(ctl, AttentionReweight) and ctl.equalizer[0, 2] == 2.0
    with pytest.raises(CgmbenchError, match="same token count"):
        build_controller(TOK, edit_prompt_pair("remove the red circle"), **dict(kw, edit="replace"))


@pytest.mark.slow
def test_identity_edit_returns_the_source(base):
    """Source prompt = target prompt, guidance 1: p2p gives back the autoencoder's reconstruction of the source
    (the inversion round trip; measured 39 dB)."""
    ldm, task = base
    model = PromptToPromptGenerator.load(task)
    src = ShapesSource(task, {"size": 1000}).conditions([3])
    prompt = edit_prompt_pair(src.texts[0]).source
    cond = Conditions(kind="image+text", indices=[0], images=src.images, texts=[prompt],
                      extras={"source_prompts": [prompt]})
    out = model.generate(cond, [0], guidance_scale=1.0, steps=10)
    assert out.shape == (1, 3, 32, 32) and out.dtype == torch.uint8
    with torch.no_grad():
        ref = to_uint8(ldm.vae.decode(ldm.vae.encode(src.images.float() / 127.5 - 1).mode()))
    mse = ((out.float() - ref.float()) ** 2).mean().item()
    assert 10 * np.log10(255**2 / mse) > 30.0
    assert model.checkpoint.extra["training_free"] and "strength_convention" not in model.checkpoint.extra


def test_register_needs_transformer_layers():
    net = UNetModel(image_size=8, in_channels=4, out_channels=4, model_channels=32, attention_resolutions=[],
                    num_res_blocks=1, channel_mult=[1], num_heads=4)
    with pytest.raises(ValueError, match="no spatial-transformer"):
        register_attention_control(net, EmptyControl())
