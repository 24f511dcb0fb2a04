"""The official weight files cgmbench knows, with their sources and licenses.

Names are ``<model>:<checkpoint>`` for generators and the extractor name for feature
extractors. Publishers give no SHA-256 for most of these files: for those, ``sha256`` is None and
the digest is recorded at first fetch (see :mod:`cgmbench.weights`); every run records the digest
of the file it actually used.
"""

from __future__ import annotations

from .weights import KnownFile, register_file

_DIT_LICENSE = "CC-BY-NC-4.0 (facebookresearch/DiT)"
_JUNYANZ_LICENSE = "BSD (junyanz/pytorch-CycleGAN-and-pix2pix)"

register_file(KnownFile(
    name="dit:xl-2-256", filename="DiT-XL-2-256x256.pt",
    url="https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt", size=2_700_611_775,
    license=_DIT_LICENSE, description="DiT-XL/2, ImageNet 256x256, EMA weights, plain float32 state_dict"))
register_file(KnownFile(
    name="dit:xl-2-512", filename="DiT-XL-2-512x512.pt",
    url="https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-512x512.pt", license=_DIT_LICENSE,
    description="DiT-XL/2, ImageNet 512x512, EMA weights, plain float32 state_dict"))
register_file(KnownFile(
    name="ldm:txt2img-f8-large", filename="ldm-txt2img-f8-large.ckpt",
    url="https://ommer-lab.com/files/latent-diffusion/nitro/txt2img-f8-large/model.ckpt",
    license="MIT (CompVis/latent-diffusion)",
    description="LDM-KL-8-G text-to-image, 1.45B, LAION-400M; CompVis Lightning .ckpt (weights under 'state_dict')"))
register_file(KnownFile(
    name="ldm:cin256-v2", filename="ldm-cin256-v2.ckpt",
    url="https://ommer-lab.com/files/latent-diffusion/nitro/cin/model.ckpt", size=1_827_378_153,
    license="MIT (CompVis/latent-diffusion)",
    description=("LDM-VQ-4 class-conditional ImageNet 256 (cin256-v2, FID 3.60 with guidance 1.5); CompVis "
                 "Lightning .ckpt (weights under 'state_dict'); size from the official notebook's download log")))
register_file(KnownFile(
    name="sd3:medium", filename="sd3_medium.safetensors", hub_id="stabilityai/stable-diffusion-3-medium",
    size=4_340_000_000, license="Stability AI Community License (gated)",
    obtain=("accept the license at https://huggingface.co/stabilityai/stable-diffusion-3-medium, then "
            "`huggingface-cli download stabilityai/stable-diffusion-3-medium sd3_medium.safetensors`"),
    description="SD3-medium MM-DiT + VAE (fp16), keys under model.diffusion_model. / first_stage_model."))
for _name in ("facades_label2photo", "edges2shoes", "sat2map", "map2sat", "day2night"):
    register_file(KnownFile(
        name=f"pix2pix:{_name}", filename=f"pix2pix_{_name}.pth",
        url=f"http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/{_name}.pth", license=_JUNYANZ_LICENSE,
        description=f"official pix2pix generator (unet_256, batch norm) for {_name}"))
for _name in ("horse2zebra", "zebra2horse", "monet2photo", "style_monet", "cityscapes_label2photo",
              "facades_label2photo", "map2sat", "sat2map"):
    register_file(KnownFile(
        name=f"cyclegan:{_name}", filename=f"cyclegan_{_name}.pth",
        url=f"http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/{_name}.pth", license=_JUNYANZ_LICENSE,
        description=f"official CycleGAN generator (resnet_9blocks, instance norm) for {_name}"))
register_file(KnownFile(
    name="inception-v3", filename="weights-inception-2015-12-05-6726825d.pth",
    url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
    sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2", size=95_628_359,
    sha256_prefix="6726825d", license="Apache-2.0 (TF Inception 2015-12-05, ported by torch-fidelity)",
    description="FID Inception-v3 (TF 2015-12-05 graph) as torch-fidelity's state_dict"))
register_file(KnownFile(
    name="sd-vae-ft-ema", filename="sd-vae-ft-ema.safetensors", hub_id="stabilityai/sd-vae-ft-ema",
    url="https://huggingface.co/stabilityai/sd-vae-ft-ema/resolve/main/diffusion_pytorch_model.safetensors",
    license="MIT",
    description=("Stable Diffusion KL-f8 VAE with the ft-EMA decoder (DiT's sample.py --vae ema); diffusers naming, "
                 "converted to CompVis names on load by cgmbench.diffusion.latent")))
register_file(KnownFile(
    name="lpips:alexnet", filename="alexnet-owt-7be5be79.pth",
    url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02", sha256_prefix="7be5be79",
    size=244_408_911, license="BSD-3-Clause (torchvision)",
    description="torchvision AlexNet, ImageNet (IMAGENET1K_V1): the LPIPS v0.1 'alex' backbone"))
register_file(KnownFile(
    name="lpips:alex-v0.1", filename="lpips-v0.1-alex.pth",
    url="https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/master/lpips/weights/v0.1/alex.pth",
    sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0", size=6_009,
    license="BSD-2-Clause (richzhang/PerceptualSimilarity)",
    description=("LPIPS v0.1 linear calibration layers for AlexNet (lin0..lin4); torchmetrics ships the same file, "
                 "which cgmbench uses when this one is absent")))
