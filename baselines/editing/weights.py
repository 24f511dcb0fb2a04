"""The official weight files of the editing family, registered in cgmbench's weights registry (``cgmbench weights
list``); found through the ``cgmbench.weights`` entry-point group."""

from cgmbench.weights import KnownFile, register_file

register_file(KnownFile(
    name="sd:v1-5-inpainting", filename="sd-v1-5-inpainting.ckpt",
    url="https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-inpainting/resolve/main/sd-v1-5-inpainting.ckpt",
    license="CreativeML OpenRAIL-M",
    description=("Stable Diffusion 1.5 inpainting (runwayml; 9-channel U-Net: noisy latent 4 + mask 1 + masked-image "
                 "latent 4), CompVis .ckpt (weights under 'state_dict'), 4.27 GB; the runwayml repository is gone, "
                 "this is the stable-diffusion-v1-5 organisation's copy, whose listed digest equals the one a "
                 "mirror recorded for the runwayml original (https://huggingface.co/mirroring/horde_models/commit/"
                 "8c08f8d714d1b2cfaab8317d1ea994200ca4da86, 4265437280 bytes). "
                 "Also needs openai/clip-vit-large-patch14 in the Hugging Face cache"),
    sha256="c6bbc15e3224e6973459ba78de4998b80b50112b0ae5b5c67113d56b4e366b19", size=4_265_437_280,
    digest_source=("https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-inpainting/blob/main/"
                   "sd-v1-5-inpainting.ckpt (the file page of the repository the URL downloads from: Git LFS SHA-256 "
                   "of sd-v1-5-inpainting.ckpt, 4.27 GB, commit 8a4288a 'Initial commit'; looked up 2026-12-02)")))
