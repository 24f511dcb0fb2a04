"""Image editing on the LDM family, training-free on the shipped tiny LDM (issue 15).

* :mod:`baselines.editing.prompts`: the instruction -> (prompt, negative prompt) rule;
* :mod:`baselines.editing.sampling`: DDIM from a noised source latent (SDEdit, the diffusers ``strength``
  convention) with optional latent blending (training-free inpainting), on :class:`cgmbench.diffusion.DDIMSampler`;
* :mod:`baselines.editing.generator`: the ``sdedit`` and ``inpaint`` models.
"""
