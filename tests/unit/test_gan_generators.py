"""StackGAN / AttnGAN as cgmbench models (issue 13): knobs, per-sample seeding, shipped round trips, bad input, and
the GAN training losses against independent computations."""

from __future__ import annotations

import math

import pytest
import torch

from baselines.attngan.damsm import ShapesImageEncoder, damsm_loss, matching_loss, words_similarity
from baselines.attngan.generator import AttnGANGenerator
from baselines.attngan.text import encode_captions, shapes_attngan_vocabulary
from baselines.attngan.models import G_NET, RNN_ENCODER
from baselines.common.gan_training import (
    ca_kl_loss,
    matching_aware_d_loss,
    mismatched_indices,
    truncated_noise,
)
from baselines.common.shipped import save_shipped
from baselines.stackgan.generator import StackGANGenerator
from baselines.stackgan.text import ShapesOneHotText
from baselines.stackgan.models import STAGE1_G, STAGE2_G
from cgmbench.conditions import Conditions
from cgmbench.errors import CgmbenchError
from cgmbench.generator import CheckpointInfo
from cgmbench.seeding import torch_generator

torch.set_num_threads(1)
TEXTS = ["a red circle", "two blue squares", "a small green triangle to the left of a large cyan circle"]


def _conds(texts):
    return Conditions(kind="text", indices=list(range(len(texts))), texts=list(texts))


def _randomize_bn(net):
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return net


# -- shared pieces ---------------------------------------------------------------------------


def test_truncated_noise_matches_the_truncated_normal():
    t = 0.7
    z = truncated_noise((200_000,), torch_generator(0), t)
    assert z.abs().max() <= t
    phi = math.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(t / math.sqrt(2))
    var = 1 - 2 * t * phi / mass  # variance of N(0,1) truncated to [-t, t]
    assert abs(z.var().item() - var) < 0.005 and abs(z.mean().item()) < 0.005
    # t <= 0 is the plain normal drawn from the same generator
    assert torch.equal(truncated_noise((5,), torch_generator(1), 0.0), torch.randn(5, generator=torch_generator(1)))


def test_ca_kl_matches_torch_distributions():
    mu, logvar = torch.randn(4, 6), torch.randn(4, 6)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu, (0.5 * logvar).exp()),
                                            torch.distributions.Normal(0.0, 1.0)).mean()
    assert torch.allclose(ca_kl_loss(mu, logvar), ref, atol=1e-6)


def test_matching_aware_loss_weights():
    p_cond = {"real": 0.9, "wrong": 0.3, "fake": 0.2}
    real, fake = torch.zeros(2, 1), torch.ones(2, 1)
    cond = torch.tensor([[0.0], [1.0]])
    wrong = torch.tensor([1, 0])

    def d_cond(code, c):  # real code with its own cond -> 0.9, with the other -> 0.3; fake -> 0.2
        if code[0, 0] == 1:
            return torch.full((2,), p_cond["fake"])
        return torch.where((c[:, 0] == cond[:, 0]), torch.tensor(p_cond["real"]), torch.tensor(p_cond["wrong"]))

    loss, _ = matching_aware_d_loss(d_cond, None, real, fake, cond, wrong)
    expect = -math.log(0.9) + 0.5 * (-math.log(0.7) - math.log(0.8))
    assert abs(loss.item() - expect) < 1e-5
    loss_u, _ = matching_aware_d_loss(d_cond, lambda code: torch.full((2,), 0.6), real, fake, cond, wrong)
    expect_u = (-math.log(0.6) - math.log(0.9)) / 2 + (-math.log(0.4) - math.log(0.8) - math.log(0.7)) / 3
    assert abs(loss_u.item() - expect_u) < 1e-5


def test_mismatched_indices_pick_other_captions():
    texts = ["a", "b", "a", "c"]
    idx = mismatched_indices(texts, torch_generator(0))
    assert all(texts[j] != texts[i] for i, j in enumerate(idx.tolist()))


def test_words_similarity_against_a_loop():
    torch.manual_seed(0)
    b, d, t = 3, 8, 5
    words, local = torch.randn(b, d, t), torch.randn(b, d, 2, 3)
    lens = [5, 3, 2]
    mask = torch.arange(t)[None] >= torch.tensor(lens)[:, None]
    got = words_similarity(words, mask, local)
    for i in range(b):
        w = words[i, :, : lens[i]]  # (d, n)
        for j in range(b):
            ctx = local[j].flatten(1)  # (d, R)
            s = (w.t() @ ctx).softmax(dim=0)  # over words
            a = (4.0 * s).softmax(dim=1)  # each word over regions
            c = ctx @ a.t()  # (d, n)
            cos = torch.nn.functional.cosine_similarity(w, c, dim=0)
            ref = torch.log(torch.exp(5.0 * cos).sum())
            assert abs(got[i, j].item() - ref.item()) < 1e-4


def test_matching_loss_excludes_same_caption_pairs():
    sim = torch.tensor([[1.0, 0.9], [0.9, 1.0]])
    same = torch.ones(2, 2, dtype=torch.bool)
    assert matching_loss(sim, same).item() == pytest.approx(0.0, abs=1e-6)
    assert matching_loss(sim).item() > 0.5
    enc = ShapesImageEncoder(nef=8, width=4)
    loss, logs = damsm_loss(torch.randn(2, 8, 4), torch.zeros(2, 4, dtype=torch.bool), torch.randn(2, 8),
                            *enc(torch.rand(2, 3, 32, 32) * 2 - 1), ["x", "y"])
    assert torch.isfinite(loss) and set(logs) == {"damsm_words", "damsm_sent"}


# -- StackGAN --------------------------------------------------------------------------------


@pytest.fixture
def stackgan_file(tmp_path):
    text = ShapesOneHotText(16)
    g = dict(z_dim=8, gf_dim=2, condition_dim=6, text_dim=text.dim)
    torch.manual_seed(0)
    net = _randomize_bn(STAGE1_G(**g))
    config = {"model": "stackgan", "name": "t", "stage": 1, "context_length": 16, "vocabulary": list(text.vocabulary),
              "g": g, "resolution": 64}
    path = save_shipped(tmp_path / "sg.safetensors", {f"netG.{k}": v for k, v in net.state_dict().items()}, config, {})
    return path, net.eval(), config


def test_stackgan_samples_are_per_seed_and_knobs_act(stackgan_file):
    path, net, _ = stackgan_file
    model = StackGANGenerator.from_shipped_file(path, CheckpointInfo("t"))
    a = model.generate(_conds(TEXTS), [5, 6, 7])
    assert a.shape == (3, 3, 64, 64) and a.dtype == torch.uint8
    assert torch.equal(model.generate(_conds(TEXTS[1:2]), [6]), a[1:2])  # batch-independent
    assert not torch.equal(model.generate(_conds(TEXTS), [5, 6, 8])[2], a[2])
    # the knobs against the network called by hand (float16 storage: compare with the loaded weights)
    emb, _ = ShapesOneHotText(16)(TEXTS[:1])
    g = torch_generator(5)
    z = truncated_noise((1, 8), g, 0.5)
    with torch.no_grad():
        ref = model.net(emb, z, ca_eps=torch.zeros(1, 6))[1]
    got = model.generate(_conds(TEXTS[:1]), [5], truncation=0.5, ca_noise="off")
    assert (got.float() - ((ref + 1) * 127.5).round().clamp(0, 255)).abs().max() <= 1
    with pytest.raises(CgmbenchError, match="ca_noise"):
        model.generate(_conds(TEXTS[:1]), [5], ca_noise="maybe")
    with pytest.raises(CgmbenchError, match="no knob 'guidance_scale'"):
        model.generate(_conds(TEXTS[:1]), [5], guidance_scale=2.0)


def test_stackgan_joint_text_input_round_trips_and_carries_colour(tmp_path):
    from baselines.stackgan.text import ShapesJointText, shapes_text_input
    from cgmbench.extractors.registry import get_extractor

    text = shapes_text_input("shapes-clip", 16)
    assert isinstance(text, ShapesJointText) and text.dim == 128
    caps = ["a large red square", "a large blue square"]
    emb, info = text(caps)
    # exactly the shipped shapes-clip text tower, and the two colours are far apart in it
    assert torch.equal(emb, get_extractor("shapes-clip").encode_text(caps).float())
    assert (emb[0] - emb[1]).norm() > 0.3 * emb[0].norm() and info["truncated"] == 0
    g = dict(z_dim=8, gf_dim=2, condition_dim=6, text_dim=text.dim)
    torch.manual_seed(0)
    net = _randomize_bn(STAGE1_G(**g))
    config = {"model": "stackgan", "name": "t", "stage": 1, "context_length": 16, "text_input": "shapes-clip",
              "vocabulary": list(text.vocabulary), "g": g, "resolution": 64}
    path = save_shipped(tmp_path / "sgj.safetensors", {f"netG.{k}": v for k, v in net.state_dict().items()}, config, {})
    model = StackGANGenerator.from_shipped_file(path, CheckpointInfo("t"))
    assert "shapes-clip" in model.checkpoint.extra["text_encoder"]
    got = model.generate(_conds(TEXTS[:1]), [5], truncation=0.5, ca_noise="off")
    z = truncated_noise((1, 8), torch_generator(5), 0.5)
    with torch.no_grad():
        ref = model.net(text(TEXTS[:1])[0], z, ca_eps=torch.zeros(1, 6))[1]
    assert (got.float() - ((ref + 1) * 127.5).round().clamp(0, 255)).abs().max() <= 1
    other = save_shipped(tmp_path / "other.safetensors", {f"netG.{k}": v for k, v in net.state_dict().items()},
                         dict(config, text_input_sha256="0" * 64), {})
    with pytest.raises(CgmbenchError, match="trained on the shapes-clip text encoder with sha256 000000000000"):
        StackGANGenerator.from_shipped_file(other, CheckpointInfo("t"))
    with pytest.raises(CgmbenchError, match="unknown stackgan text input"):
        StackGANGenerator.from_shipped_file(
            save_shipped(tmp_path / "bad.safetensors", {f"netG.{k}": v for k, v in net.state_dict().items()},
                         dict(config, text_input="char-cnn-rnn"), {}), CheckpointInfo("t"))


def test_stackgan_refuses_other_family_and_vocabulary_mismatch(stackgan_file, tmp_path):
    path, net, config = stackgan_file
    with pytest.raises(CgmbenchError, match="attngan"):
        AttnGANGenerator.from_shipped_file(path, CheckpointInfo("t"))
    bad = save_shipped(tmp_path / "v.safetensors", {f"netG.{k}": v for k, v in net.state_dict().items()},
                       dict(config, vocabulary=config["vocabulary"][:-1]), {})
    with pytest.raises(CgmbenchError, match="vocabulary mismatch"):
        StackGANGenerator.from_shipped_file(bad, CheckpointInfo("t"))


def test_stackgan_official_stage2_needs_embeddings(tmp_path):
    torch.manual_seed(0)
    s1 = STAGE1_G(z_dim=4, gf_dim=4, condition_dim=3, text_dim=10)
    net = _randomize_bn(STAGE2_G(s1, gf_dim=4, condition_dim=3, z_dim=4, r_num=1, text_dim=10))
    f = tmp_path / "netG_epoch_90.pth"
    torch.save(net.state_dict(), f)
    model = StackGANGenerator.load(None, checkpoint=str(f))
    assert model.resolution == (256, 256) and model.stage == 2
    with pytest.raises(CgmbenchError, match="char-CNN-RNN"):
        model.generate(_conds(TEXTS[:1]), [1])
    emb = torch.randn(2, 10)
    c = Conditions(kind="text", indices=[0, 1], texts=TEXTS[:2], extras={"text_embeddings": emb})
    out = model.generate(c, [1, 2])
    c1 = Conditions(kind="text", indices=[1], texts=TEXTS[1:2], extras={"text_embeddings": emb[1:]})
    assert out.shape == (2, 3, 256, 256) and torch.equal(model.generate(c1, [2]), out[1:])


# -- AttnGAN ---------------------------------------------------------------------------------


@pytest.fixture
def attngan_file(tmp_path):
    vocab = shapes_attngan_vocabulary()
    g = dict(branch_num=2, gf_dim=2, z_dim=8, condition_dim=4, r_num=1, embedding_dim=12)
    te = dict(ntoken=len(vocab), ninput=6, nhidden=12, drop_prob=0.0, n_steps=6)
    torch.manual_seed(0)
    net, text = _randomize_bn(G_NET(**g, mask_alignment="per_sample")), RNN_ENCODER(**te)
    with torch.no_grad():
        net.ca_net.fc.bias += 3.0  # a large CA sigma, so the ca_noise knob visibly acts
    tensors = {f"netG.{k}": v for k, v in net.state_dict().items()}
    tensors.update({f"text_encoder.{k}": v for k, v in text.state_dict().items()})
    config = {"model": "attngan", "name": "t", "g": g, "text_encoder": te, "words_num": 6, "vocabulary": list(vocab),
              "resolution": 128}
    return save_shipped(tmp_path / "ag.safetensors", tensors, config, {}), config, tensors


def test_attngan_samples_match_a_hand_call_and_are_per_seed(attngan_file):
    path, _, _ = attngan_file
    model = AttnGANGenerator.from_shipped_file(path, CheckpointInfo("t"))
    assert model.resolution == (128, 128)
    a = model.generate(_conds(TEXTS), [1, 2, 3])
    assert a.shape == (3, 3, 128, 128)
    assert torch.equal(model.generate(_conds(TEXTS[2:]), [3]), a[2:])
    vocab = shapes_attngan_vocabulary()
    caps, lens, cut = encode_captions(TEXTS[:1], vocab, 6)
    assert caps[0, :3].tolist() == [vocab["a"], vocab["red"], vocab["circle"]] and lens.tolist() == [3] and cut == 0
    with torch.no_grad():
        words, sent = model.text_encoder(caps, lens)
        g = torch_generator(1)
        z = truncated_noise((1, 8), g, 0.0)
        eps = torch.randn((1, 4), generator=g)
        ref = model.net(z, sent, words, caps[:, :3] == 0, ca_eps=eps)[0][-1]
    assert (a[0].float() - ((ref[0] + 1) * 127.5).round().clamp(0, 255)).abs().max() <= 1
    assert not torch.equal(model.generate(_conds(TEXTS[:1]), [1], ca_noise="off"), a[:1])


def test_attngan_long_captions_keep_a_seeded_subset_and_unknown_words_fail(attngan_file):
    vocab = shapes_attngan_vocabulary()
    long = "small green triangle to the left of large cyan circle"  # 10 distinct known words > 6
    c1, l1, cut = encode_captions([long], vocab, 6, seeds=[4])
    c2, _, _ = encode_captions([long], vocab, 6, seeds=[4])
    assert cut == 1 and l1.tolist() == [6] and torch.equal(c1, c2)
    ids = [vocab[w] for w in long.split()]
    pos = [ids.index(i) for i in c1[0].tolist()]  # an ordered subset
    assert pos == sorted(pos)
    with pytest.raises(CgmbenchError, match="no word in the model's vocabulary"):
        encode_captions(["zebra unicorn"], vocab, 6)


def test_attngan_refuses_other_family_vocabulary_and_branch_mismatch(attngan_file, stackgan_file, tmp_path):
    path, config, tensors = attngan_file
    with pytest.raises(CgmbenchError, match="stackgan"):
        StackGANGenerator.from_shipped_file(path, CheckpointInfo("t"))
    with pytest.raises(CgmbenchError, match="not a stackgan one"):
        StackGANGenerator.from_shipped_file(path, CheckpointInfo("t"))
    with pytest.raises(CgmbenchError, match="not an attngan one"):
        AttnGANGenerator.from_shipped_file(stackgan_file[0], CheckpointInfo("t"))
    bad = save_shipped(tmp_path / "b.safetensors", tensors, dict(config, g=dict(config["g"], branch_num=3)), {})
    with pytest.raises(CgmbenchError, match="netG tensors do not match"):
        AttnGANGenerator.from_shipped_file(bad, CheckpointInfo("t"))
    with pytest.raises(CgmbenchError, match="vocabulary mismatch"):
        AttnGANGenerator(G_NET(branch_num=1, gf_dim=2, z_dim=4, condition_dim=2, embedding_dim=12),
                         RNN_ENCODER(ntoken=5, ninput=4, nhidden=12), shapes_attngan_vocabulary(), words_num=6)



@pytest.mark.parametrize("cls,side", [(StackGANGenerator, 64), (AttnGANGenerator, 128)])
def test_shipped_checkpoints_load_offline_and_sample(cls, side):
    from pathlib import Path

    import cgmbench
    from cgmbench.spec.task import load_task

    model = cls.load(load_task("shapes-t2i"), "shapes-t2i-tiny")
    sums_file = Path(cgmbench.__file__).parent / "shipped" / "SHA256SUMS"
    sums = dict(reversed(line.split()) for line in sums_file.read_text().splitlines() if line.strip())
    assert model.checkpoint.source == "shipped" and model.checkpoint.sha256 == sums[Path(model.checkpoint.path).name]
    out = model.generate(_conds(TEXTS[:2]), [1, 2])
    assert out.shape == (2, 3, side, side) and torch.equal(model.generate(_conds(TEXTS[1:2]), [2]), out[1:])
