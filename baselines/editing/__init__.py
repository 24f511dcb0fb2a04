"""Image editing on the LDM family, training-free on the shipped tiny LDM (issue 15).

* :mod:`baselines.editing.prompts`: instruction -> (prompt, negative prompt) and the source/target prompt pairs;
* :mod:`baselines.editing.sampling`: DDIM from a noised source latent (SDEdit, the diffusers ``strength``
  convention) with optional latent blending (training-free inpainting), on :class:`cgmbench.diffusion.DDIMSampler`;
* :mod:`baselines.editing.generator`: the ``sdedit`` and ``inpaint`` models;
* :mod:`baselines.editing.attention_control`: prompt-to-prompt's attention controllers and the U-Net hook;
* :mod:`baselines.editing.p2p`: the ``p2p`` model (prompt-to-prompt on DDIM-inverted sources);
* :mod:`baselines.editing.ip2p`: ``instruct-pix2pix`` and its tiny training recipe;
* :mod:`baselines.editing.checkpoints`: strict loaders of the official 9- and 8-channel U-Net layouts.
"""
