"""The official weight files of this family, registered in cgmbench's weights registry (``cgmbench weights
list``); found through the ``cgmbench.weights`` entry-point group."""

from cgmbench.weights import KnownFile, register_file


register_file(KnownFile(
    name="sd3:medium", filename="sd3_medium.safetensors", hub_id="stabilityai/stable-diffusion-3-medium",
    hub_filename="sd3_medium.safetensors",
    size=4_340_000_000, license="Stability AI Community License (gated)",
    obtain=("accept the license at https://huggingface.co/stabilityai/stable-diffusion-3-medium, log in "
            "(`hf auth login` or HF_TOKEN), then `cgmbench weights fetch sd3:medium`, which saves it at "
            "exactly the path cgmbench reads"),
    description="SD3-medium MM-DiT + VAE (fp16), keys under model.diffusion_model. / first_stage_model.",
    digest_source=("none published where looked (looked up 2026-12-02: the file digested is sd3_medium.safetensors, "
                   "the MM-DiT + VAE file without text encoders, not the *_incl_clips* variants; its gated file page "
                   "https://huggingface.co/stabilityai/stable-diffusion-3-medium/blob/main/sd3_medium.safetensors "
                   "shows a Git LFS SHA-256 only after accepting the license, and no stored copy of it was found; "
                   "searched stored Hugging Face pages and GitHub code); "
                   "cgmbench records the digest at first fetch")))
