"""The released Latte checkpoints (huggingface.co/maxin-cn/Latte), registered in cgmbench's weights registry
(``cgmbench weights list``); found through the ``cgmbench.weights`` entry-point group.

The files on the hub are ``ucf101.pt``, ``ffs.pt``, ``skytimelapse.pt`` and ``taichi-hd.pt`` (all four added in
commit 8d3b33c, 31 Oct 2023, and unchanged since); cgmbench stores them as ``latte-<release>.pt``. The SHA-256 of
``ucf101.pt`` and ``ffs.pt`` is pinned from the publisher's own Git LFS listing; for the other two no listing
could be reached, so their digest is recorded at first fetch and verified from then on (:mod:`cgmbench.weights`).
Each file is the ``torch.save`` dict of the official ``train.py`` (``"ema"`` and ``"model"``), read with
``torch.load(weights_only=True)`` by :mod:`baselines.latte.checkpoints`.
"""

from cgmbench.weights import KnownFile, register_file

_LATTE_LICENSE = "Apache-2.0 (Vchitect/Latte code and maxin-cn/Latte model card)"
_REPO = "https://huggingface.co/maxin-cn/Latte"
_LOOKED = ("none published where looked (looked up 2026-12-02: the file page {repo}/blob/main/{file} shows a Git "
           "LFS SHA-256, but no stored copy of it, nor of commit 8d3b33c that added the file, showed this file's "
           "digest; searched stored Hugging Face pages and GitHub code); cgmbench records the digest at first fetch")

#: release name -> (file on the hub, dataset, conditioning, sha256 or None, digest source)
RELEASES = {
    "ucf101": ("ucf101.pt", "UCF-101", "class-conditional, 101 classes (extras=2)",
               "7ca9c7380b4ab962c8b6f1f5d6a7fa81d7ee7838786d097beeef75d98c87d224",
               f"{_REPO}/blob/97d8e38e77f59c30eec824031e6dc53cfe1d6855/ucf101.pt (the publisher's file page: Git LFS "
               "SHA-256 of ucf101.pt, 2.7 GB, added in commit 8d3b33c and unchanged since; looked up 2026-12-02)"),
    "ffs": ("ffs.pt", "FaceForensics", "unconditional (extras=1)",
            "49bfa97b9c21dbc480c2861c96c7bbc76bacfd00342395b06d9be655cc5e1e9c",
            f"{_REPO}/commit/8d3b33c6563176afa748deb566dd65eaa59ec81c (the publisher's commit 'Upload LAVITA "
            "pre-trained models' adding ffs.pt: Git LFS pointer oid sha256, size 2696092281; the file is unchanged "
            "since; looked up 2026-12-02)"),
    "sky": ("skytimelapse.pt", "SkyTimelapse", "unconditional (extras=1)", None,
            _LOOKED.format(repo=_REPO, file="skytimelapse.pt")),
    "taichi": ("taichi-hd.pt", "Taichi-HD", "unconditional (extras=1)", None,
               _LOOKED.format(repo=_REPO, file="taichi-hd.pt")),
}

for _name, (_file, _data, _cond, _sha, _source) in RELEASES.items():
    register_file(KnownFile(
        name=f"latte:{_name}", filename=f"latte-{_name}.pt", url=f"{_REPO}/resolve/main/{_file}",
        hub_id="maxin-cn/Latte", sha256=_sha, license=_LATTE_LICENSE,
        description=f"Latte-XL/2 {_data} 256x256, 16 frames, {_cond}; {_file} on the hub; torch.save dict with "
                    "'ema' (used) and 'model'; decoded frame by frame with sd-vae-ft-ema",
        digest_source=_source))
