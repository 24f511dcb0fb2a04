"""Reference implementations of the baselines cgmbench evaluates: one package per family.

Each family (``dit``, ``ldm``, ``sd3``, ``translation`` = pix2pix + CycleGAN, ...) keeps its networks in the
official naming (a leaf module), checkpoint loading, sampling and the :class:`cgmbench.generator.Generator`
wrapper in separate modules; :mod:`baselines.common` holds what families share. Families reach ``cgmbench``
only through the ``cgmbench.models`` entry-point group, exactly as a third-party package would; ``cgmbench``
never imports ``baselines``.
"""
