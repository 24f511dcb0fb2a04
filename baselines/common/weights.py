"""The official weight files of this family, registered in cgmbench's weights registry (``cgmbench weights
list``); found through the ``cgmbench.weights`` entry-point group."""

from cgmbench.weights import KnownFile, register_file


register_file(KnownFile(
    name="sd-vae-ft-ema", filename="sd-vae-ft-ema.safetensors", hub_id="stabilityai/sd-vae-ft-ema",
    url="https://huggingface.co/stabilityai/sd-vae-ft-ema/resolve/main/diffusion_pytorch_model.safetensors",
    license="MIT",
    description=("Stable Diffusion KL-f8 VAE with the ft-EMA decoder (DiT's sample.py --vae ema); diffusers naming, "
                 "converted to CompVis names on load by baselines.common.latent"),
    sha256="32db726da04f06c1b6b14c0043ce115cc87a501482945c5add89a40d838fcb46",
    digest_source=("https://huggingface.co/stabilityai/sd-vae-ft-ema/blob/main/diffusion_pytorch_model.safetensors "
                   "(the publisher's file page: Git LFS SHA-256 of diffusion_pytorch_model.safetensors, 335 MB, "
                   "last changed in commit 8937891 'Adding safetensors variant of this model (#2)'; looked up "
                   "2026-12-02)")))
