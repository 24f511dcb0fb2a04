"""Strict loaders of the SD-inpainting (9-channel) and InstructPix2Pix (8-channel) layouts on tiny state dicts in
the official key layout, their U-Net inputs, and the dual classifier-free guidance."""

import pytest
import torch

from baselines.common.kl_vae import AutoencoderKL
from baselines.editing.checkpoints import (
    dual_cfg,
    inpaint_unet_input,
    ip2p_unet_input,
    load_instruct_pix2pix,
    load_sd_inpainting,
    masked_image,
)
from baselines.ldm.generator import LDM_TINY_CONFIGS
from baselines.ldm.unet import UNetModel
from cgmbench.errors import CgmbenchError

torch.set_num_threads(1)
TINY_VAE = dict(embed_dim=4, ddconfig=dict(LDM_TINY_CONFIGS["tiny"]["vae"]["ddconfig"], z_channels=4))


def _tiny_unet(cin):
    return dict(image_size=8, in_channels=cin, out_channels=4, model_channels=32, attention_resolutions=[1],
                num_res_blocks=1, channel_mult=[1, 2], num_heads=4, use_spatial_transformer=True,
                transformer_depth=1, context_dim=32, legacy=False)


def _official_layout(cin, seed=0):
    torch.manual_seed(seed)
    unet, vae = UNetModel(**_tiny_unet(cin)), AutoencoderKL(**TINY_VAE)
    sd = {f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()}
    sd.update({f"first_stage_model.{k}": v for k, v in vae.state_dict().items()})
    sd["cond_stage_model.transformer.dummy.weight"] = torch.zeros(2)  # the conditioner is loaded separately
    sd["scale_factor"] = torch.tensor(0.18215)
    return sd, unet


@pytest.mark.parametrize("loader,cin", [(load_sd_inpainting, 9), (load_instruct_pix2pix, 8)])
def test_strict_load_of_the_official_layout(loader, cin):
    sd, ref = _official_layout(cin)
    unet, vae, parts = loader(sd, unet_config=_tiny_unet(4), vae_config=TINY_VAE)
    for k, v in ref.state_dict().items():
        assert torch.equal(unet.state_dict()[k], v)
    assert unet.input_blocks[0][0].weight.shape[1] == cin and float(parts["buffers"]["scale_factor"]) == pytest.approx(0.18215)
    z, c, t = torch.randn(1, cin, 8, 8), torch.randn(1, 3, 32), torch.tensor([10])
    assert unet(z, timesteps=t, context=c).shape == (1, 4, 8, 8)


def test_wrong_layouts_are_refused_in_one_line():
    sd9, _ = _official_layout(9)
    sd8, _ = _official_layout(8)
    sd4, _ = _official_layout(4)
    with pytest.raises(CgmbenchError, match="8 input channels, instruct-pix2pix.*sd-v1-5-inpainting .* expected"):
        load_sd_inpainting(sd8, unet_config=_tiny_unet(4), vae_config=TINY_VAE)
    with pytest.raises(CgmbenchError, match="4 input channels, a text-to-image"):
        load_instruct_pix2pix(sd4, unet_config=_tiny_unet(4), vae_config=TINY_VAE)
    extra = dict(sd9, **{"model.diffusion_model.extra.weight": torch.zeros(1)})
    with pytest.raises(CgmbenchError, match="unexpected"):
        load_sd_inpainting(extra, unet_config=_tiny_unet(4), vae_config=TINY_VAE)
    missing = {k: v for k, v in sd9.items() if not k.endswith("out.2.bias")}
    with pytest.raises(CgmbenchError, match="missing"):
        load_sd_inpainting(missing, unet_config=_tiny_unet(4), vae_config=TINY_VAE)
    with pytest.raises(CgmbenchError, match="not a LatentDiffusion"):
        load_sd_inpainting({"foo": torch.zeros(1)})


def test_unet_inputs_follow_the_reference_channel_order():
    z, lat = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, :16] = 1
    x = inpaint_unet_input(z, mask, lat)
    assert x.shape == (2, 9, 8, 8) and torch.equal(x[:, :4], z) and torch.equal(x[:, 5:], lat)
    assert x[:, 4, :4].eq(1).all() and x[:, 4, 4:].eq(0).all()
    img = torch.rand(2, 3, 32, 32) * 2 - 1
    mi = masked_image(img, mask)
    assert mi[:, :, :16].eq(0).all() and torch.equal(mi[:, :, 16:], img[:, :, 16:])
    assert torch.equal(ip2p_unet_input(z, lat), torch.cat([z, lat], 1))


def test_dual_cfg_is_the_reference_formula():
    g = torch.Generator().manual_seed(0)
    full, image, uncond = (torch.randn(3, 4, generator=g) for _ in range(3))
    # edit_cli.py CFGDenoiser: out_uncond + text_cfg * (out_cond - out_img_cond) + image_cfg * (out_img_cond - out_uncond)
    for s_t, s_i in ((7.5, 1.5), (1.0, 1.0), (0.0, 1.0), (3.0, 0.0)):
        want = uncond + s_t * (full - image) + s_i * (image - uncond)
        assert torch.allclose(dual_cfg(full, image, uncond, s_t, s_i), want, atol=1e-6)
    assert torch.allclose(dual_cfg(full, image, uncond, 1.0, 1.0), full, atol=1e-6)
    assert torch.allclose(dual_cfg(full, image, uncond, 0.0, 1.0), image, atol=1e-6)
    assert torch.allclose(dual_cfg(full, image, uncond, 0.0, 0.0), uncond, atol=1e-6)
