"""The concatenated-input inpainter (``inpaint:sd15-inpainting`` layout) end to end on a tiny random file in the
official layout, made here (no official weights are downloaded)."""

import pytest
import torch
import torch.nn.functional as F

from baselines.common.kl_vae import AutoencoderKL
from baselines.common.text_encoders import ShapesWordEncoder, ShapesWordEncoderConfig
from baselines.editing.generator import LatentBlendInpaintGenerator
from baselines.editing.sd_inpaint import ConcatInpaintGenerator
from baselines.ldm.generator import LDM_TINY_CONFIGS
from baselines.ldm.unet import UNetModel
from cgmbench.conditions import Conditions
from cgmbench.errors import CgmbenchError
from cgmbench.models.registry import load_model, register_model
from cgmbench.spec.task import load_task
from cgmbench.worlds.sources import ShapesSource

torch.set_num_threads(1)
TINY_VAE = dict(embed_dim=4, ddconfig=dict(LDM_TINY_CONFIGS["tiny"]["vae"]["ddconfig"], z_channels=4))


def _tiny_unet(cin):
    return dict(image_size=8, in_channels=cin, out_channels=4, model_channels=32, attention_resolutions=[1],
                num_res_blocks=1, channel_mult=[1, 2], num_heads=4, use_spatial_transformer=True,
                transformer_depth=1, context_dim=32, legacy=False)


def _official_file(tmp_path, cin=9, seed=0):
    """A random checkpoint in the CompVis LatentInpaintDiffusion layout (``state_dict`` with the official prefixes)."""
    torch.manual_seed(seed)
    unet, vae = UNetModel(**_tiny_unet(cin)), AutoencoderKL(**TINY_VAE)
    for p in unet.parameters():  # the zero-initialised output convolutions would make every sample the same
        p.data.normal_(0, 0.05)
    sd = {f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()}
    sd.update({f"first_stage_model.{k}": v for k, v in vae.state_dict().items()})
    sd["scale_factor"] = torch.tensor(0.18215)
    path = tmp_path / f"tiny-{cin}ch.ckpt"
    torch.save({"state_dict": sd}, path)
    return path


def _text():
    torch.manual_seed(1)
    return ShapesWordEncoder(ShapesWordEncoderConfig(width=32, layers=1, heads=4))


@pytest.fixture(scope="module")
def task_and_conditions():
    task = load_task("shapes-edit")
    return task, ShapesSource(task, {"size": 1000}).conditions([0, 1, 2])


def _model(tmp_path, **kw):
    return ConcatInpaintGenerator.from_official(_official_file(tmp_path, **kw), text_encoder=_text(),
                                                unet_config=_tiny_unet(9), vae_config=TINY_VAE, resolution=32)


@pytest.mark.slow
def test_official_layout_end_to_end(tmp_path, task_and_conditions):
    _, cond = task_and_conditions
    model = _model(tmp_path)
    assert model.scale_factor == pytest.approx(0.18215) and "9 input channels" in model.checkpoint.extra["layout"]
    out = model.generate(cond, [1, 2, 3], steps=5, guidance_scale=2.0)
    assert out.dtype == torch.uint8 and out.shape == (3, 3, 32, 32)
    bg = (cond.masks == 0).expand_as(out)
    assert torch.equal(out[bg], cond.images[bg]) and not torch.equal(out, cond.images)
    one = model.generate(Conditions(kind="image+text", indices=[1], images=cond.images[1:2], masks=cond.masks[1:2],
                                    texts=cond.texts[1:2]), [2], steps=5, guidance_scale=2.0)
    assert torch.equal(out[1:2], one)  # each sample from its own seed, whatever the batch
    off = model.generate(cond, [1, 2, 3], steps=5, guidance_scale=2.0, paste_background="off")
    assert not torch.equal(off[bg], cond.images[bg])
    # inpainting tasks without text (photos-inpaint): the empty prompt
    plain = Conditions(kind="image+mask", indices=[0], images=cond.images[:1], masks=cond.masks[:1])
    assert model.generate(plain, [1], steps=5).shape == (1, 3, 32, 32)


def test_the_unet_sees_latent_mask_and_masked_image_latent_in_that_order(tmp_path, task_and_conditions):
    _, cond = task_and_conditions
    model = _model(tmp_path)
    seen = []
    model.unet.register_forward_pre_hook(lambda m, args, kwargs: seen.append(args[0].clone()), with_kwargs=True)
    model.generate(Conditions(kind="image+text", indices=[0], images=cond.images[:1], masks=cond.masks[:1],
                              texts=cond.texts[:1]), [4], steps=2, guidance_scale=1.0)
    x = seen[0]
    assert x.shape == (1, 9, 8, 8)
    fill = (cond.masks[:1] > 0).float()
    assert torch.equal(x[:, 4:5], F.interpolate(fill, size=(8, 8), mode="nearest"))
    src = cond.images[:1].float() / 127.5 - 1
    with torch.no_grad():
        want = model.vae.encode(src * (fill < 0.5)).mode() * 0.18215
    assert torch.allclose(x[:, 5:], want, atol=1e-6)
    assert all(torch.equal(s[:, 4:], x[:, 4:]) for s in seen)  # the same concatenation at every step


def test_layouts_and_bad_input(tmp_path, task_and_conditions):
    task, cond = task_and_conditions
    with pytest.raises(CgmbenchError, match="takes 8 input channels, instruct-pix2pix"):
        ConcatInpaintGenerator.from_official(_official_file(tmp_path, cin=8), text_encoder=_text(),
                                             unet_config=_tiny_unet(9), vae_config=TINY_VAE, resolution=32)
    model = _model(tmp_path)
    no_mask = Conditions(kind="image+text", indices=[0], images=cond.images[:1], texts=cond.texts[:1])
    with pytest.raises(CgmbenchError, match="no mask"):
        model.generate(no_mask, [0])
    small = Conditions(kind="image+text", indices=[0], images=cond.images[:1, :, :16, :16],
                       masks=cond.masks[:1, :, :16, :16], texts=cond.texts[:1])
    with pytest.raises(CgmbenchError, match="source images must be uint8"):
        model.generate(small, [0])
    register_model("inpaint", LatentBlendInpaintGenerator)
    with pytest.raises(CgmbenchError, match="sd:v1-5-inpainting"):  # offline: names the file to fetch
        load_model("inpaint:sd15-inpainting", task)
    assert {"sd15-inpainting", "shapes-t2i-tiny"} <= set(LatentBlendInpaintGenerator.variants())
