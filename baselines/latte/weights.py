"""The released Latte checkpoints (huggingface.co/maxin-cn/Latte), registered in cgmbench's weights registry
(``cgmbench weights list``); found through the ``cgmbench.weights`` entry-point group.

The publisher gives no checksums: the SHA-256 of each file is recorded at first fetch and verified from then
on (:mod:`cgmbench.weights`). Each file is the ``torch.save`` dict of the official ``train.py`` (``"ema"`` and
``"model"``), read with ``torch.load(weights_only=True)`` by :mod:`baselines.latte.checkpoints`.
"""

from cgmbench.weights import KnownFile, register_file

_LATTE_LICENSE = "Apache-2.0 (Vchitect/Latte code and maxin-cn/Latte model card)"
_BASE = "https://huggingface.co/maxin-cn/Latte/resolve/main/"

#: release name -> (dataset, conditioning)
RELEASES = {
    "ucf101": ("UCF-101", "class-conditional, 101 classes (extras=2)"),
    "ffs": ("FaceForensics", "unconditional (extras=1)"),
    "sky": ("SkyTimelapse", "unconditional (extras=1)"),
    "taichi": ("Taichi-HD", "unconditional (extras=1)"),
}

for _name, (_data, _cond) in RELEASES.items():
    register_file(KnownFile(
        name=f"latte:{_name}", filename=f"latte-{_name}.pt", url=_BASE + f"{_name}.pt", hub_id="maxin-cn/Latte",
        license=_LATTE_LICENSE,
        description=f"Latte-XL/2 {_data} 256x256, 16 frames, {_cond}; torch.save dict with 'ema' (used) and "
                    "'model'; decoded frame by frame with sd-vae-ft-ema",
    digest_source="published, not pinned: the Hugging Face file page lists the LFS SHA-256; cgmbench records the digest at first fetch"))
