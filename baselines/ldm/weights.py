"""The official weight files of this family, registered in cgmbench's weights registry (``cgmbench weights
list``); found through the ``cgmbench.weights`` entry-point group."""

from cgmbench.weights import KnownFile, register_file

_LDM_DIGEST = ("none published (CompVis/latent-diffusion README and scripts/download_models.sh give only the URLs: "
               "https://github.com/CompVis/latent-diffusion/blob/main/scripts/download_models.sh)")


register_file(KnownFile(
    name="ldm:txt2img-f8-large", filename="ldm-txt2img-f8-large.ckpt",
    url="https://ommer-lab.com/files/latent-diffusion/nitro/txt2img-f8-large/model.ckpt",
    license="MIT (CompVis/latent-diffusion)",
    description="LDM-KL-8-G text-to-image, 1.45B, LAION-400M; CompVis Lightning .ckpt (weights under 'state_dict')",
    digest_source=_LDM_DIGEST))
register_file(KnownFile(
    name="ldm:cin256-v2", filename="ldm-cin256-v2.ckpt",
    url="https://ommer-lab.com/files/latent-diffusion/nitro/cin/model.ckpt", size=1_827_378_153,
    license="MIT (CompVis/latent-diffusion)",
    description=("LDM-VQ-4 class-conditional ImageNet 256 (cin256-v2, FID 3.60 with guidance 1.5); CompVis "
                 "Lightning .ckpt (weights under 'state_dict'); size from the official notebook's download log"),
    digest_source=_LDM_DIGEST))
