"""Class-conditional LDM (cin256-v2 layout): ClassEmbedder, strict loading of a CompVis checkpoint, and
``LDMClassGenerator`` sampling end to end on a tiny official-format ``.ckpt``."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from baselines.ldm.checkpoints import LDM_CIN256_V2_UNET_CONFIG
from baselines.ldm.class_generator import LDM_CIN_VARIANTS, ClassEmbedder, LDMClassGenerator
from baselines.ldm.generator import LDMGenerator
from baselines.ldm.unet import UNetModel
from baselines.ldm.vq import LDM_VQ_F4_CONFIG, VQModelInterface
from cgmbench.conditions import Conditions
from cgmbench.diffusion import ldm_alphas_cumprod
from cgmbench.errors import CgmbenchError
from cgmbench.generator import to_uint8
from cgmbench.paths import weights_dir
from cgmbench.spec.task import load_task
from cgmbench.weights import sha256_file

N_CLASSES = 18  # shapes-cc; row 18 of the tiny embedder is the unconditional token
CONTEXT = 16
TINY_UNET = dict(image_size=4, in_channels=3, out_channels=3, model_channels=32, attention_resolutions=(2,),
                 num_res_blocks=1, channel_mult=(1, 2), num_heads=1, use_spatial_transformer=True,
                 transformer_depth=1, context_dim=CONTEXT)


def _randomize(module: torch.nn.Module, seed: int) -> None:
    """Overwrite every parameter (the official init zeroes the output layers, which would make eps = 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
            elif name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


@pytest.fixture(scope="module")
def tiny_parts(official_dir):
    folder = official_dir / "vq"
    vq_kwargs = json.loads((folder / "fixture_vq_f4_tiny.json").read_text())["constructor"]["kwargs"]
    vq_w = load_file(str(folder / "fixture_vq_f4_tiny.weights.safetensors"))
    unet = UNetModel(**TINY_UNET)
    _randomize(unet, 5)
    emb = ClassEmbedder(CONTEXT, n_classes=N_CLASSES + 1)
    _randomize(emb, 6)
    sd = {f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()}
    sd.update({f"first_stage_model.{k}": v for k, v in vq_w.items()})
    sd.update({f"cond_stage_model.{k}": v for k, v in emb.state_dict().items()})
    acp = ldm_alphas_cumprod(1000, 0.0015, 0.0195)
    betas = torch.linspace(0.0015**0.5, 0.0195**0.5, 1000, dtype=torch.float64) ** 2
    sd.update(betas=betas.float(), alphas_cumprod=acp, alphas_cumprod_prev=torch.cat([torch.ones(1), acp[:-1]]))
    return sd, vq_kwargs


@pytest.fixture
def tiny_variant(tiny_parts, monkeypatch):
    """``cin256-v2`` with its configuration made tiny, and its official weights file in place."""
    sd, vq_kwargs = tiny_parts
    spec = dict(LDM_CIN_VARIANTS["cin256-v2"], unet_config=TINY_UNET, first_stage_config=vq_kwargs,
                cond_stage_config=dict(embed_dim=CONTEXT, n_classes=N_CLASSES + 1), num_classes=N_CLASSES,
                uncond_label=N_CLASSES, resolution=16)
    monkeypatch.setitem(LDM_CIN_VARIANTS, "cin256-v2", spec)
    path = weights_dir() / "ldm-cin256-v2.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": sd, "epoch": 3, "global_step": 1000}, path)
    return path


def _cond(labels) -> Conditions:
    return Conditions("class", list(range(len(labels))), labels=torch.tensor(labels, dtype=torch.int64))


# ----------------------------------------------------------------------------- networks and configuration


def test_class_embedder_official_name_shape_and_errors():
    with torch.device("meta"):
        emb = ClassEmbedder(**LDM_CIN_VARIANTS["cin256-v2"]["cond_stage_config"])
    assert [(k, tuple(v.shape)) for k, v in emb.state_dict().items()] == [("embedding.weight", (1001, 512))]
    small = ClassEmbedder(4, n_classes=3, key="class_label")
    y = torch.tensor([2, 0])
    out = small(y)
    assert out.shape == (2, 1, 4)
    assert torch.equal(out[:, 0], small.embedding.weight[y])
    assert torch.equal(small({"class_label": y}), out)  # the official batch-dict call
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        small(torch.tensor([3]))
    with pytest.raises(ValueError, match="integer"):
        small(torch.tensor([0.5]))


def test_cin256_v2_configuration_on_meta(official_dir):
    """The three official networks of cin256-v2 build; the VQ part is the manifest's; the U-Net cross-attends
    to one 512-d class token."""
    spec = LDM_CIN_VARIANTS["cin256-v2"]
    assert spec["unet_config"] is LDM_CIN256_V2_UNET_CONFIG and spec["first_stage_config"] is LDM_VQ_F4_CONFIG
    assert (spec["linear_start"], spec["linear_end"], spec["scale_factor"]) == (0.0015, 0.0195, 1.0)
    assert (spec["num_classes"], spec["uncond_label"], spec["resolution"]) == (1000, 1000, 256)
    assert spec["defaults"] == dict(guidance_scale=1.5, steps=250, eta=0.0)
    man = json.loads((official_dir / "vq" / "manifest_ldm_vq-f4_cin256-v2.json").read_text())
    labels = torch.tensor([1, 1000])
    with torch.device("meta"):
        unet = UNetModel(**spec["unet_config"])
        vq = VQModelInterface(**spec["first_stage_config"])
        emb = ClassEmbedder(**spec["cond_stage_config"])
        x = torch.empty(2, 3, 64, 64)
        out = unet(x, timesteps=torch.zeros(2, dtype=torch.long), context=emb(labels))
    assert out.shape == (2, 3, 64, 64)
    assert ["first_stage_model." + k for k in vq.state_dict()] == [k for k, _, _ in man["state_dict"]]
    assert vq.downsample_factor == 4 and vq.embed_dim == 3  # 256 -> 64x64x3 latents
    attn2 = unet.middle_block[1].transformer_blocks[0].attn2
    assert tuple(attn2.to_k.weight.shape) == (960, 512)
    # The official file (1,827,378,153 bytes, notebook download log) is these float32 tensors plus 12 schedule
    # buffers of 1000 floats and pickle overhead: a check of the U-Net configuration, which has no manifest.
    from cgmbench.weights import known_file

    numel = sum(v.numel() for m in (unet, vq, emb) for v in m.state_dict().values())
    assert sum(v.numel() for v in unet.state_dict().values()) == 400_920_579  # the paper's "400M"
    tensor_bytes = 4 * (numel + 12 * 1000)
    size = known_file("ldm:cin256-v2").size
    assert 0 < size - tensor_bytes < 1_000_000


# ----------------------------------------------------------------------------- loading


def test_missing_official_weights_name_url_and_path():
    with pytest.raises(CgmbenchError) as e:
        LDMClassGenerator.load(load_task("imagenet256-cc"), "cin256-v2")
    text = str(e.value)
    assert "https://ommer-lab.com/files/latent-diffusion/nitro/cin/model.ckpt" in text
    assert str(weights_dir() / "ldm-cin256-v2.ckpt") in text
    assert "cgmbench weights fetch ldm:cin256-v2" in text


def test_tiny_ckpt_loads_strictly_through_the_official_path(tiny_variant, tiny_parts):
    sd, _ = tiny_parts
    gen = LDMClassGenerator.load(load_task("shapes-cc"), "cin256-v2")
    assert gen.checkpoint.name == "ldm:cin256-v2"
    assert gen.checkpoint.sha256 == sha256_file(tiny_variant)
    assert gen.checkpoint.source == "https://ommer-lab.com/files/latent-diffusion/nitro/cin/model.ckpt"
    assert gen.resolution == (16, 16) and gen.latent_shape == (3, 4, 4)
    assert (gen.num_classes, gen.uncond_label, gen.scale_factor) == (N_CLASSES, N_CLASSES, 1.0)
    assert torch.equal(gen.alphas_cumprod, sd["alphas_cumprod"])
    for prefix, net in (("model.diffusion_model.", gen.unet), ("first_stage_model.", gen.first_stage),
                        ("cond_stage_model.", gen.cond_stage)):
        own = net.state_dict()
        assert own.keys() == {k[len(prefix):] for k in sd if k.startswith(prefix)}
        assert all(torch.equal(own[k[len(prefix):]], v) for k, v in sd.items() if k.startswith(prefix))
    # the default variant is cin256-v2; an explicit file gives the same networks
    assert LDMClassGenerator.load(load_task("shapes-cc")).checkpoint.name == "ldm:cin256-v2"
    other = LDMClassGenerator.load(load_task("shapes-cc"), checkpoint=str(tiny_variant))
    assert other.checkpoint.source == "file" and other.checkpoint.sha256 == gen.checkpoint.sha256
    assert torch.equal(other.unet.out[2].weight, gen.unet.out[2].weight)


def test_checkpoint_errors_are_clear(tiny_variant, tiny_parts, tmp_path):
    sd, _ = tiny_parts
    shapes = load_task("shapes-cc")
    bad = dict(sd)
    bad["first_stage_model.quantize.embedding.weights"] = bad.pop("first_stage_model.quantize.embedding.weight")
    path = tmp_path / "renamed.ckpt"
    torch.save({"state_dict": bad}, path)
    with pytest.raises(CgmbenchError, match=r"VQModelInterface \(first_stage_model\.\).*'quantize.embedding.weight'"):
        LDMClassGenerator.load(shapes, checkpoint=str(path))
    extra = dict(sd, **{"model.some_other_net.weight": torch.zeros(1)})
    torch.save({"state_dict": extra}, path)
    with pytest.raises(CgmbenchError, match="model.some_other_net.weight"):
        LDMClassGenerator.load(shapes, checkpoint=str(path))
    with pytest.raises(CgmbenchError, match="does not exist"):
        LDMClassGenerator.load(shapes, checkpoint=str(tmp_path / "missing.ckpt"))
    with pytest.raises(CgmbenchError, match="unknown class-conditional ldm checkpoint 'nope'"):
        LDMClassGenerator.load(shapes, "nope")
    # a task with more classes than the checkpoint knows
    with pytest.raises(CgmbenchError, match="1000 classes.*knows 18"):
        LDMClassGenerator.load(load_task("imagenet256-cc"), "cin256-v2")


# ----------------------------------------------------------------------------- sampling


def test_generate_shape_determinism_and_batch_independence(tiny_variant):
    gen = LDMClassGenerator.load(load_task("shapes-cc"), "cin256-v2")
    labels, seeds = [0, 5, 17], [11, 12, 13]
    a = gen.generate(_cond(labels), seeds, steps=2, guidance_scale=1.5)
    assert a.dtype == torch.uint8 and a.shape == (3, 3, 16, 16)
    assert a.float().std() > 1.0  # not a constant image
    assert torch.equal(a, gen.generate(_cond(labels), seeds, steps=2, guidance_scale=1.5))
    single = gen.generate(_cond([5]), [12], steps=2, guidance_scale=1.5)
    assert torch.equal(single[0], a[1])
    reordered = gen.generate(_cond([17, 0]), [13, 11], steps=2, guidance_scale=1.5)
    assert torch.equal(reordered[0], a[2]) and torch.equal(reordered[1], a[0])
    assert not torch.equal(gen.generate(_cond([5]), [99], steps=2, guidance_scale=1.5)[0], a[1])
    assert not torch.equal(gen.generate(_cond([6]), [12], steps=2, guidance_scale=1.5)[0], a[1])
    # (re-quantisation to the tiny 16-code book absorbs small latent changes, hence a strong scale here)
    assert not torch.equal(gen.generate(_cond([5]), [12], steps=2, guidance_scale=8.0)[0], a[1])
    # eta > 0 draws per-step noise from the same per-sample generator: still batch independent
    b = gen.generate(_cond(labels), seeds, steps=4, eta=1.0)
    assert torch.equal(gen.generate(_cond([17]), [13], steps=4, eta=1.0)[0], b[2])
    assert not torch.equal(b, gen.generate(_cond(labels), seeds, steps=4, eta=0.0))


def test_guidance_uses_the_uncond_class_token_and_decode_requantises(tiny_variant):
    gen = LDMClassGenerator.load(load_task("shapes-cc"), "cin256-v2")
    calls, decoded = [], []
    apply_model, decode = gen.apply_model, gen.first_stage.decode

    def spy_apply(x, t, c):
        calls.append((x.shape[0], t.clone(), c.clone()))
        return apply_model(x, t, c)

    def spy_decode(h, force_not_quantize=False):
        decoded.append((h.clone(), force_not_quantize))
        return decode(h, force_not_quantize)

    gen.apply_model, gen.first_stage.decode = spy_apply, spy_decode
    img = gen.generate(_cond([3]), [7], steps=4, guidance_scale=2.0)
    table = gen.cond_stage.embedding.weight
    # one doubled [uncond, cond] batch per step, at the CompVis +1 timesteps 751, 501, 251, 1
    assert [int(t[0]) for _, t, _ in calls] == [751, 501, 251, 1]
    for n, t, c in calls:
        assert n == 2 and c.shape == (2, 1, CONTEXT)
        assert torch.equal(c[0, 0], table[N_CLASSES]) and torch.equal(c[1, 0], table[3])
    # w = 1: no unconditional pass
    calls.clear()
    gen.generate(_cond([3]), [7], steps=4, guidance_scale=1.0)
    assert [n for n, _, _ in calls] == [1, 1, 1, 1]
    # the sampled latent is snapped to the nearest codebook rows before decoding
    z, force = decoded[0]
    assert not force and z.shape == (1, 3, 4, 4)
    codebook = gen.first_stage.quantize.embedding.weight
    nearest = torch.cdist(z.permute(0, 2, 3, 1).reshape(-1, 3).double(), codebook.double()).argmin(dim=1)
    with torch.no_grad():
        rows = gen.first_stage.quantize.get_codebook_entry(nearest, shape=(1, 4, 4, 3))
        ref = to_uint8(decode(rows, force_not_quantize=True))
        unquantised = to_uint8(decode(z, force_not_quantize=True))
    assert (img.int() - ref.int()).abs().max() <= 1
    assert (img.int() - unquantised.int()).abs().max() > 1


def test_generate_refuses_bad_conditions(tiny_variant):
    gen = LDMClassGenerator.load(load_task("shapes-cc"), "cin256-v2")
    with pytest.raises(CgmbenchError, match=r"class label 18 is out of range.*\[0, 17\]"):
        gen.generate(_cond([0, N_CLASSES]), [1, 2], steps=1)
    with pytest.raises(CgmbenchError, match="needs class labels"):
        gen.generate(Conditions("text", [0], texts=["a cat"]), [1], steps=1)
    with pytest.raises(CgmbenchError, match="2 seeds for 1 class labels"):
        gen.generate(_cond([0]), [1, 2], steps=1)
    with pytest.raises(CgmbenchError, match="no knob 'temperature'"):
        gen.generate(_cond([0]), [1], temperature=0.5)
    with pytest.raises(CgmbenchError, match="steps=0 is out of range"):
        gen.generate(_cond([0]), [1], steps=0)
    # range(0, 1000, 333) + 1 ends at t = 1000, outside the schedule (the official sampler fails too)
    with pytest.raises(CgmbenchError, match="steps=3 cannot be used.*DDIM timestep 1000"):
        gen.generate(_cond([0]), [1], steps=3)
    assert {k.name: k.default for k in gen.knobs} == {"guidance_scale": 1.5, "steps": 250, "eta": 0.0}


# ----------------------------------------------------------------------------- through the `ldm` model name


def test_the_ldm_model_name_serves_cin256_v2_for_class_tasks():
    from cgmbench.models.registry import load_model

    # imagenet256-cc names ldm:cin256-v2 as its default: the class-conditional loader answers (weights missing)
    with pytest.raises(CgmbenchError, match="ommer-lab.com/files/latent-diffusion/nitro/cin/model.ckpt"):
        load_model("ldm", load_task("imagenet256-cc"))
    # a class-conditional checkpoint on a text task, and a text checkpoint on a class task, are refused up front
    with pytest.raises(CgmbenchError, match="class-conditional"):
        load_model("ldm:cin256-v2", load_task("coco-t2i"))
    with pytest.raises(CgmbenchError, match="does not accept 'class'"):
        load_model("ldm:shapes-t2i-tiny", load_task("shapes-cc"))
    assert "cin256-v2" in LDMGenerator.variants()
