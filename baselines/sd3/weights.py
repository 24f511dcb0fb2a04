"""The official weight files of this family, registered in cgmbench's weights registry (``cgmbench weights
list``); found through the ``cgmbench.weights`` entry-point group."""

from cgmbench.weights import KnownFile, register_file


register_file(KnownFile(
    name="sd3:medium", filename="sd3_medium.safetensors", hub_id="stabilityai/stable-diffusion-3-medium",
    size=4_340_000_000, license="Stability AI Community License (gated)",
    obtain=("accept the license at https://huggingface.co/stabilityai/stable-diffusion-3-medium, then "
            "`huggingface-cli download stabilityai/stable-diffusion-3-medium sd3_medium.safetensors`"),
    description="SD3-medium MM-DiT + VAE (fp16), keys under model.diffusion_model. / first_stage_model."))
