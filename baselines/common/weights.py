"""The official weight files of this family, registered in cgmbench's weights registry (``cgmbench weights
list``); found through the ``cgmbench.weights`` entry-point group."""

from cgmbench.weights import KnownFile, register_file


register_file(KnownFile(
    name="sd-vae-ft-ema", filename="sd-vae-ft-ema.safetensors", hub_id="stabilityai/sd-vae-ft-ema",
    url="https://huggingface.co/stabilityai/sd-vae-ft-ema/resolve/main/diffusion_pytorch_model.safetensors",
    license="MIT",
    description=("Stable Diffusion KL-f8 VAE with the ft-EMA decoder (DiT's sample.py --vae ema); diffusers naming, "
                 "converted to CompVis names on load by baselines.common.latent"),
    digest_source=("published, not pinned: the Hugging Face file page https://huggingface.co/stabilityai/sd-vae-ft-ema/"
                   "blob/main/diffusion_pytorch_model.safetensors lists its Git LFS SHA-256")))
