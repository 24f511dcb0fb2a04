"""pix2pix / CycleGAN networks against the official-architecture fixtures, loader quirks, objectives."""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from baselines.translation.checkpoints import load_official_state_dict, patch_instance_norm_state_dict, read_state_dict
from baselines.translation.networks import (
    GANLoss,
    ImagePool,
    NLayerDiscriminator,
    ResnetGenerator,
    UnetGenerator,
    cyclegan_discriminator_loss,
    cyclegan_forward,
    cyclegan_generator_loss,
    define_D,
    define_G,
    get_norm_layer,
    init_weights,
    linear_decay_lambda,
    pix2pix_discriminator_loss,
    pix2pix_generator_loss,
    set_test_mode,
)

ATOL = RTOL = 1e-5
CLASSES = {"UnetGenerator": UnetGenerator, "ResnetGenerator": ResnetGenerator, "NLayerDiscriminator": NLayerDiscriminator}


@pytest.fixture(scope="module")
def p2p_dir(official_dir) -> Path:
    return official_dir / "pix2pix_cyclegan"


def build_fixture_model(p2p_dir: Path, name: str) -> nn.Module:
    """Rebuild a numeric fixture's model from its JSON constructor and load its weights officially."""
    spec = json.loads((p2p_dir / f"{name}.json").read_text())["constructor"]
    cls = CLASSES[spec["class"].rsplit(".", 1)[-1]]
    net = cls(**spec["kwargs"], norm_layer=get_norm_layer(spec["norm"]))
    return load_official_state_dict(p2p_dir / f"{name}.weights.safetensors", net)


def fixture_io(p2p_dir: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(p2p_dir / f"{name}.io.safetensors")


# ------------------------------------------------------------------------------------------
# Numeric fixtures
# ------------------------------------------------------------------------------------------

CASES = [
    ("fixture_unet_tiny", "eval", "out_eval"),
    ("fixture_unet_tiny", "batchstats-no-dropout", "out_bn_batchstats_no_dropout"),
    ("fixture_resnet_tiny", "eval", "out_eval"),
    ("fixture_nlayerD_tiny", "eval", "out_eval"),
    ("fixture_nlayerD_tiny", "batchstats-no-dropout", "out_bn_batchstats_no_dropout"),
]


@pytest.mark.parametrize("name,mode,output", CASES)
def test_fixture_forward_matches_official(p2p_dir, name, mode, output):
    net = set_test_mode(build_fixture_model(p2p_dir, name), mode)
    io = fixture_io(p2p_dir, name)
    with torch.no_grad():
        out = net(io["input.x"].clone())
    expected = io[f"output.{output}"]
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=RTOL)


def test_fixture_modes_really_differ(p2p_dir):
    """Guards the mode knob: eval and batch-statistics outputs of the BatchNorm U-Net differ."""
    io = fixture_io(p2p_dir, "fixture_unet_tiny")
    assert (io["output.out_eval"] - io["output.out_bn_batchstats_no_dropout"]).abs().max() > 1e-2
    net = set_test_mode(build_fixture_model(p2p_dir, "fixture_unet_tiny"), "batchstats-no-dropout")
    with torch.no_grad():
        out = net(io["input.x"].clone())
    assert (out - io["output.out_eval"]).abs().max() > 1e-2


def test_official_default_mode_is_batchstats_plus_dropout(p2p_dir):
    io = fixture_io(p2p_dir, "fixture_unet_tiny")
    x = io["input.x"]
    net = set_test_mode(build_fixture_model(p2p_dir, "fixture_unet_tiny"), "official-default")
    assert all(m.training for m in net.modules())
    with torch.no_grad():
        torch.manual_seed(0)
        a = net(x.clone())
        torch.manual_seed(0)
        b = net(x.clone())
        torch.manual_seed(1)
        c = net(x.clone())
    torch.testing.assert_close(a, b, atol=0, rtol=0)  # reproducible under a torch seed
    assert (a - c).abs().max() > 1e-3  # dropout is active
    assert (a - io["output.out_bn_batchstats_no_dropout"]).abs().max() > 1e-3

    # Without dropout layers (the PatchGAN) the official default equals batch statistics.
    d = set_test_mode(build_fixture_model(p2p_dir, "fixture_nlayerD_tiny"), "official-default")
    dio = fixture_io(p2p_dir, "fixture_nlayerD_tiny")
    with torch.no_grad():
        out = d(dio["input.x"])
    torch.testing.assert_close(out, dio["output.out_bn_batchstats_no_dropout"], atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("mode", ["official-default", "batchstats-no-dropout"])
def test_instance_norm_generator_is_mode_independent(p2p_dir, mode):
    """CycleGAN (InstanceNorm, no dropout): every test mode reproduces the eval output."""
    net = set_test_mode(build_fixture_model(p2p_dir, "fixture_resnet_tiny"), mode)
    io = fixture_io(p2p_dir, "fixture_resnet_tiny")
    with torch.no_grad():
        torch.testing.assert_close(net(io["input.x"]), io["output.out_eval"], atol=ATOL, rtol=RTOL)


def test_set_test_mode_flags_and_errors():
    net = UnetGenerator(3, 3, 6, ngf=4, norm_layer=get_norm_layer("batch"), use_dropout=True)
    set_test_mode(net, "batchstats-no-dropout")
    dropouts = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    assert dropouts and not any(m.training for m in dropouts)
    assert all(m.training for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    set_test_mode(net, "eval")
    assert not any(m.training for m in net.modules())
    with pytest.raises(ValueError, match="unknown test mode"):
        set_test_mode(net, "test")


# ------------------------------------------------------------------------------------------
# Full-size manifests (built on the meta device)
# ------------------------------------------------------------------------------------------

MANIFESTS = {
    "manifest_pix2pix_G_unet_256": lambda: define_G(3, 3, 64, "unet_256", norm="batch", use_dropout=True),
    "manifest_cyclegan_G_resnet_9blocks": lambda: define_G(3, 3, 64, "resnet_9blocks", norm="instance", use_dropout=False),
    "manifest_pix2pix_D_basic": lambda: define_D(6, 64, "basic", norm="batch"),
    "manifest_cyclegan_D_basic": lambda: define_D(3, 64, "basic", norm="instance"),
}


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_manifest_keys_shapes_dtypes_in_order(p2p_dir, name):
    manifest = json.loads((p2p_dir / f"{name}.json").read_text())
    with torch.device("meta"):
        net = MANIFESTS[name]()
    rows = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in net.state_dict().items()]
    assert rows == manifest["state_dict"]
    assert len(rows) == manifest["num_tensors"]
    assert sum(v.numel() for v in net.state_dict().values()) == manifest["num_elements"]


def test_resnet_6blocks_and_unet_128_layouts():
    with torch.device("meta"):
        g6 = define_G(3, 3, 64, "resnet_6blocks", norm="instance")
        u128 = define_G(3, 3, 64, "unet_128", norm="batch", use_dropout=True)
    keys6 = list(g6.state_dict())
    assert keys6[-2:] == ["model.23.weight", "model.23.bias"]
    assert "model.16.weight" in keys6 and "model.19.weight" in keys6 and "model.15.conv_block.5.weight" in keys6
    innermost = "model.model.1" + ".model.3" * 5  # 7 levels
    assert f"{innermost}.model.1.weight" in u128.state_dict()
    assert f"{innermost}.model.4.running_var" in u128.state_dict()
    assert f"{innermost}.model.3.model.1.weight" not in u128.state_dict()


def test_dropout_resnet_block_index_shift():
    g = ResnetGenerator(3, 3, ngf=4, norm_layer=get_norm_layer("instance"), use_dropout=True, n_blocks=1)
    assert "model.10.conv_block.6.weight" in g.state_dict()
    z = ResnetGenerator(3, 3, ngf=4, norm_layer=get_norm_layer("instance"), n_blocks=1, padding_type="zero")
    assert {"model.10.conv_block.0.weight", "model.10.conv_block.3.weight"} <= set(z.state_dict())
    with pytest.raises(ValueError, match="padding"):
        ResnetGenerator(3, 3, ngf=4, n_blocks=1, padding_type="circular")


# ------------------------------------------------------------------------------------------
# Norm layers, factories, init
# ------------------------------------------------------------------------------------------


def test_get_norm_layer_and_bias_rule():
    bn = get_norm_layer("batch")(8)
    assert isinstance(bn, nn.BatchNorm2d) and bn.affine and bn.track_running_stats
    inorm = get_norm_layer("instance")(8)
    assert isinstance(inorm, nn.InstanceNorm2d) and not inorm.affine and not inorm.track_running_stats
    assert isinstance(get_norm_layer("none")(8), nn.Identity)
    with pytest.raises(ValueError, match="not supported"):
        get_norm_layer("group")
    # use_bias only with InstanceNorm; the first and last D convs always have a bias.
    for norm, has_bias in [("instance", True), ("batch", False), ("none", False)]:
        d = NLayerDiscriminator(3, ndf=4, n_layers=2, norm_layer=get_norm_layer(norm))
        assert (d.model[2].bias is not None) is has_bias
        assert d.model[0].bias is not None and d.model[-1].bias is not None


def test_factories_reject_unknown_names():
    with pytest.raises(ValueError, match="generator model name"):
        define_G(3, 3, 8, "unet_512")
    with pytest.raises(ValueError, match="discriminator model name"):
        define_D(3, 8, "pixel_gan")
    with pytest.raises(ValueError, match="initialization method"):
        define_D(3, 8, "basic", init_type="uniform")


def test_init_weights_normal():
    torch.manual_seed(0)
    d = define_D(3, 32, "n_layers", n_layers_D=2, norm="batch", init_type="normal", init_gain=0.02)
    w = d.model[2].weight
    assert abs(w.std().item() - 0.02) < 0.002
    assert torch.all(d.model[0].bias == 0)
    bn = d.model[3]
    assert abs(bn.weight.mean().item() - 1.0) < 0.01 and torch.all(bn.bias == 0)


def test_cyclegan_reexports_shared_pieces():
    assert NLayerDiscriminator is NLayerDiscriminator
    assert get_norm_layer is get_norm_layer
    assert load_official_state_dict is load_official_state_dict


# ------------------------------------------------------------------------------------------
# Loader quirks
# ------------------------------------------------------------------------------------------


def tiny_resnet(norm_layer=None, **kw) -> ResnetGenerator:
    norm_layer = norm_layer or get_norm_layer("instance")
    kw = {"ngf": 8, "n_blocks": 3, **kw}
    return ResnetGenerator(3, 3, norm_layer=norm_layer, **kw)


def test_old_instance_norm_checkpoint_needs_patch(p2p_dir, tmp_path):
    """A 2018-era CycleGAN file (InstanceNorm with running stats) loads only through the quirk rule."""
    weights = load_file(p2p_dir / "fixture_resnet_tiny.weights.safetensors")
    old_norm = functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=True)
    old = tiny_resnet(norm_layer=old_norm)
    old.load_state_dict(weights, strict=False)
    old_sd = old.state_dict()
    stale = [k for k in old_sd if k not in weights]
    assert stale and all(k.rsplit(".", 1)[1] in ("running_mean", "running_var", "num_batches_tracked") for k in stale)
    path = tmp_path / "latest_net_G.pth"
    torch.save(old_sd, path)

    with pytest.raises(RuntimeError, match="Unexpected key"):
        tiny_resnet().load_state_dict(torch.load(path, weights_only=True), strict=True)

    removed = patch_instance_norm_state_dict(read_state_dict(path), tiny_resnet())
    assert sorted(removed) == sorted(stale)

    net = load_official_state_dict(path, tiny_resnet()).eval()
    io = fixture_io(p2p_dir, "fixture_resnet_tiny")
    with torch.no_grad():
        torch.testing.assert_close(net(io["input.x"]), io["output.out_eval"], atol=ATOL, rtol=RTOL)


def test_metadata_dropped_so_old_batchnorm_files_load(p2p_dir, tmp_path):
    """Without num_batches_tracked (pre-0.4 BatchNorm) a strict load works only once _metadata is gone."""
    src = build_fixture_model(p2p_dir, "fixture_nlayerD_tiny")
    sd = src.state_dict()  # carries current _metadata (BatchNorm version 2)
    assert hasattr(sd, "_metadata")
    for k in [k for k in sd if k.endswith("num_batches_tracked")]:
        del sd[k]
    with pytest.raises(RuntimeError, match="num_batches_tracked"):
        NLayerDiscriminator(6, 8, 3, get_norm_layer("batch")).load_state_dict(sd, strict=True)

    path = tmp_path / "old_D.pth"
    torch.save(sd, path)
    assert hasattr(torch.load(path, weights_only=True), "_metadata")
    assert not hasattr(read_state_dict(path), "_metadata")
    assert not hasattr(read_state_dict(sd), "_metadata")

    for source in (sd, path):
        net = load_official_state_dict(source, NLayerDiscriminator(6, 8, 3, get_norm_layer("batch")))
        assert all(int(b) == 0 for k, b in net.state_dict().items() if k.endswith("num_batches_tracked"))
        io = fixture_io(p2p_dir, "fixture_nlayerD_tiny")
        with torch.no_grad():
            torch.testing.assert_close(net.eval()(io["input.x"]), io["output.out_eval"], atol=ATOL, rtol=RTOL)


def test_wrong_generator_error_names_keys_and_shapes(p2p_dir):
    weights = p2p_dir / "fixture_resnet_tiny.weights.safetensors"
    more_blocks = tiny_resnet(n_blocks=4)
    before = {k: v.clone() for k, v in more_blocks.state_dict().items()}
    with pytest.raises(ValueError, match=r"missing keys, first: \['model\.13\.conv_block\.1\.weight'"):
        load_official_state_dict(weights, more_blocks)
    assert all(torch.equal(before[k], v) for k, v in more_blocks.state_dict().items())  # untouched

    with pytest.raises(ValueError, match=r"model\.1\.weight: checkpoint \(8, 3, 7, 7\) vs model \(16, 3, 7, 7\)"):
        load_official_state_dict(weights, tiny_resnet(ngf=16))

    unet = UnetGenerator(3, 3, 6, ngf=8, norm_layer=get_norm_layer("batch"), use_dropout=True)
    with pytest.raises(ValueError, match=r"24 unexpected keys, first: \['model\.1\.bias', 'model\.1\.weight'") as err:
        load_official_state_dict(weights, unet)
    assert "missing keys, first: ['model.model.0.weight'" in str(err.value)


def test_module_prefix_is_refused_or_stripped(p2p_dir):
    weights = load_file(p2p_dir / "fixture_resnet_tiny.weights.safetensors")
    prefixed = {f"module.{k}": v for k, v in weights.items()}
    with pytest.raises(ValueError, match="strip_module_prefix=True"):
        load_official_state_dict(prefixed, tiny_resnet())
    net = load_official_state_dict(prefixed, tiny_resnet(), strip_module_prefix=True)
    torch.testing.assert_close(net.model[1].weight, weights["model.1.weight"], atol=0, rtol=0)


class _Payload:
    """Unpickling this with weights_only=False would create the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_with_arbitrary_object_is_refused(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    torch.save({"model.1.weight": torch.zeros(1), "x": _Payload(str(marker))}, path)
    with pytest.raises(ValueError, match="unsafe unpickling"):
        load_official_state_dict(path, tiny_resnet())
    assert not marker.exists()


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_official_state_dict(tmp_path / "missing.pth", tiny_resnet())
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {"a": torch.zeros(1)}, "epoch": 3}, path)
    with pytest.raises(ValueError, match="'state_dict' entry"):
        load_official_state_dict(path, tiny_resnet())
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match="expected a state dict"):
        load_official_state_dict(path, tiny_resnet())


# ------------------------------------------------------------------------------------------
# Objectives, image pool, LR schedule
# ------------------------------------------------------------------------------------------


def test_gan_loss_targets_and_values():
    pred = torch.tensor([[[[0.5, -1.0], [2.0, 0.0]]]])
    lsgan = GANLoss("lsgan")
    assert torch.equal(lsgan.get_target_tensor(pred, True), torch.ones_like(pred))
    assert torch.equal(lsgan.get_target_tensor(pred, False), torch.zeros_like(pred))
    assert lsgan.get_target_tensor(pred, True).shape == pred.shape
    torch.testing.assert_close(lsgan(pred, True), ((pred - 1) ** 2).mean())
    torch.testing.assert_close(lsgan(pred, False), (pred**2).mean())
    vanilla = GANLoss("vanilla")
    torch.testing.assert_close(vanilla(pred, True), F.softplus(-pred).mean())  # -log sigmoid(p)
    torch.testing.assert_close(vanilla(pred, False), F.softplus(pred).mean())  # -log(1 - sigmoid(p))
    smooth = GANLoss("lsgan", target_real_label=0.9)
    torch.testing.assert_close(smooth(pred, True), ((pred - 0.9) ** 2).mean())
    wgan = GANLoss("wgangp")
    torch.testing.assert_close(wgan(pred, True), -pred.mean())
    with pytest.raises(ValueError, match="gan mode"):
        GANLoss("hinge")


def test_image_pool_official_logic_under_seeded_rng():
    images = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).requires_grad_()
    pool = ImagePool(pool_size=3, rng=random.Random(1234))

    # Reference: walk the documented rule with a twin RNG.
    twin = random.Random(1234)
    stored, expected = [], []
    for v in range(8):
        if len(stored) < 3:
            stored.append(v)
            expected.append(v)
        elif twin.uniform(0, 1) > 0.5:
            i = twin.randint(0, 2)
            expected.append(stored[i])
            stored[i] = v
        else:
            expected.append(v)

    out = torch.cat([pool.query(images[:4]), pool.query(images[4:])])
    assert out.flatten().tolist() == expected
    assert not out.requires_grad
    assert sorted(t.item() for t in pool.images) == sorted(stored)
    assert expected[:3] == [0, 1, 2] and expected != list(range(8))  # this seed swaps something

    passthrough = ImagePool(0)
    assert passthrough.query(images) is images
    with pytest.raises(ValueError, match="pool_size"):
        ImagePool(-1)


def test_image_pool_swap_rate_is_one_half():
    pool = ImagePool(pool_size=10, rng=random.Random(0))
    pool.query(torch.full((10, 1), -1.0))
    out = pool.query(torch.arange(2000, dtype=torch.float32).view(2000, 1))
    from_pool = (out.flatten() != torch.arange(2000, dtype=torch.float32)).float().mean().item()
    assert 0.46 < from_pool < 0.54


def test_linear_decay_lambda():
    rule = linear_decay_lambda(n_epochs=100, n_epochs_decay=100)
    assert rule(0) == 1.0 and rule(99) == 1.0
    assert rule(100) == pytest.approx(1 - 1 / 101)
    assert rule(199) == pytest.approx(1 / 101)
    resumed = linear_decay_lambda(100, 100, epoch_count=51)
    assert resumed(49) == 1.0 and resumed(50) == pytest.approx(1 - 1 / 101)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_decay_lambda(2, 3))
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([2e-4, 2e-4, 1.5e-4, 1e-4, 0.5e-4])
    with pytest.raises(ValueError):
        linear_decay_lambda(10, -1)


class _MeanD(nn.Module):
    """A stand-in discriminator: per-pixel channel mean times a learnable scale."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.7))

    def forward(self, x):
        return self.scale * x.mean(1, keepdim=True)


def test_pix2pix_losses():
    g = torch.Generator().manual_seed(0)
    real_A, real_B = torch.rand(2, 3, 4, 4, generator=g), torch.rand(2, 3, 4, 4, generator=g)
    fake_B = torch.rand(2, 3, 4, 4, generator=g).requires_grad_()
    D, crit = _MeanD(), GANLoss("vanilla")
    gl = pix2pix_generator_loss(D, real_A, real_B, fake_B, crit)
    logits_fake = 0.7 * torch.cat([real_A, fake_B], 1).mean(1, keepdim=True)
    torch.testing.assert_close(gl["G_GAN"], F.softplus(-logits_fake).mean())
    torch.testing.assert_close(gl["G_L1"], 100 * (fake_B - real_B).abs().mean())
    torch.testing.assert_close(gl["G"], gl["G_GAN"] + gl["G_L1"])

    dl = pix2pix_discriminator_loss(D, real_A, real_B, fake_B, crit)
    logits_real = 0.7 * torch.cat([real_A, real_B], 1).mean(1, keepdim=True)
    expected = 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())
    torch.testing.assert_close(dl["D"], expected)
    dl["D"].backward()
    assert fake_B.grad is None and D.scale.grad is not None  # fake is detached for the D step


def test_cyclegan_losses():
    g = torch.Generator().manual_seed(1)
    real_A, real_B = torch.rand(2, 3, 4, 4, generator=g), torch.rand(2, 3, 4, 4, generator=g)
    G_A, G_B = (lambda x: 2 * x), (lambda x: 0.5 * x)  # exact inverses: zero cycle loss
    D_A, D_B = _MeanD(), _MeanD()
    crit = GANLoss("lsgan")
    images = cyclegan_forward(G_A, G_B, real_A, real_B)
    torch.testing.assert_close(images["rec_A"], real_A)
    out = cyclegan_generator_loss(G_A, G_B, D_A, D_B, real_A, real_B, images, crit)
    assert out["cycle_A"].item() == 0 and out["cycle_B"].item() == 0
    torch.testing.assert_close(out["idt_A"], 10 * 0.5 * real_B.abs().mean())  # |2B - B| = B
    torch.testing.assert_close(out["idt_B"], 10 * 0.5 * 0.5 * real_A.abs().mean())  # |A/2 - A|
    torch.testing.assert_close(out["G_A"], ((0.7 * (2 * real_A).mean(1) - 1) ** 2).mean())
    torch.testing.assert_close(out["G"], sum(v for k, v in out.items() if k != "G"))
    no_idt = cyclegan_generator_loss(G_A, G_B, D_A, D_B, real_A, real_B, images, crit, lambda_identity=0.0)
    assert no_idt["idt_A"].item() == 0

    pools = ImagePool(0), ImagePool(0)
    dl = cyclegan_discriminator_loss(D_A, D_B, real_A, real_B, images, crit, *pools)
    expected_D_A = 0.5 * (((0.7 * real_B.mean(1) - 1) ** 2).mean() + ((0.7 * (2 * real_A).mean(1)) ** 2).mean())
    torch.testing.assert_close(dl["D_A"], expected_D_A)


def test_tiny_training_step_reduces_loss():
    """The pieces compose into a working pix2pix step (G and D both get gradients)."""
    torch.manual_seed(0)
    G = define_G(3, 3, 4, "unet_128", norm="batch", use_dropout=True)
    D = define_D(6, 4, "basic", norm="batch")
    crit = GANLoss("vanilla")
    x, y = torch.rand(2, 3, 128, 128) * 2 - 1, torch.rand(2, 3, 128, 128) * 2 - 1
    opt = torch.optim.Adam(G.parameters(), lr=2e-3, betas=(0.5, 0.999))
    losses = []
    for _ in range(3):
        loss = pix2pix_generator_loss(D, x, y, G(x), crit)["G_L1"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    dl = pix2pix_discriminator_loss(D, x, y, G(x), crit)["D"]
    dl.backward()
    assert all(p.grad is not None for p in D.parameters())


def test_unet_needs_five_levels():
    with pytest.raises(ValueError, match="num_downs"):
        UnetGenerator(3, 3, 4)
