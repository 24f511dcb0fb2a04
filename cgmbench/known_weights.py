"""The official weight files cgmbench knows, with their sources and licenses.

The files of the core's feature extractors and metrics; each baseline family registers its own official
files (``baselines/<family>/weights.py``, found through the ``cgmbench.weights`` entry-point group). Publishers give no SHA-256 for most of these files: for those, ``sha256`` is None and
the digest is recorded at first fetch (see :mod:`cgmbench.weights`); every run records the digest
of the file it actually used.
"""

from __future__ import annotations

from cgmbench.weights import KnownFile, register_file


register_file(KnownFile(
    name="inception-v3", filename="weights-inception-2015-12-05-6726825d.pth",
    url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
    sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2", size=95_628_359,
    sha256_prefix="6726825d", license="Apache-2.0 (TF Inception 2015-12-05, ported by torch-fidelity)",
    description="FID Inception-v3 (TF 2015-12-05 graph) as torch-fidelity's state_dict",
    digest_source=("https://github.com/toshas/torch-fidelity/releases/tag/v0.2.0 (the release asset; its file name "
                   "carries the published sha256 prefix 6726825d, torch.hub's convention; the full digest was pinned "
                   "by cgmbench from that asset)")))
register_file(KnownFile(
    name="lpips:alexnet", filename="alexnet-owt-7be5be79.pth",
    url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02", sha256_prefix="7be5be79",
    size=244_408_911, license="BSD-3-Clause (torchvision)",
    description="torchvision AlexNet, ImageNet (IMAGENET1K_V1): the LPIPS v0.1 'alex' backbone",
    digest_source=("https://github.com/pytorch/vision/blob/main/torchvision/models/alexnet.py (the published URL "
                   "carries the sha256 prefix 7be5be79, torch.hub's check_hash convention; full digest pinned by "
                   "cgmbench from that file)")))
register_file(KnownFile(
    name="lpips:alex-v0.1", filename="lpips-v0.1-alex.pth",
    url="https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/master/lpips/weights/v0.1/alex.pth",
    sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0", size=6_009,
    license="BSD-2-Clause (richzhang/PerceptualSimilarity)",
    description=("LPIPS v0.1 linear calibration layers for AlexNet (lin0..lin4); torchmetrics ships the same file, "
                 "which cgmbench uses when this one is absent"),
    digest_source=("none published (richzhang/PerceptualSimilarity lists no checksum; the digest is that of the file "
                   "in the repository at master, pinned by cgmbench)")))
register_file(KnownFile(
    name="inception-v3-cub-finetuned", filename="inception_v3_cub_finetuned.safetensors",
    obtain=("download inception_finetuned_models.zip (hanzhanggit/StackGAN-inception-model README, Google Drive id "
            "0B3y_msrWZaXLMzNMNWhWdW0zVWs; StackGAN-inception-model#11 gives a working resourcekey link), unzip it and "
            "convert the TF checkpoint once: `python -m cgmbench.extractors.inception_cub convert "
            "inception_finetuned_models/birds_valid299/model.ckpt-5000 "
            "$CGMBENCH_HOME/weights/inception_v3_cub_finetuned.safetensors` (no TensorFlow needed)"),
    license="none stated (hanzhanggit/StackGAN-inception-model has no licence file; Inception-v3 code Apache-2.0)",
    description=("StackGAN's Inception-v3 fine-tuned on the 50 CUB test classes (TF-Slim, 51 outputs, EMA weights), "
                 "converted to safetensors with the official TF variable names: the IS classifier of cub200-t2i"),
    digest_source=("none published: the publisher gives only a Google Drive link to a TF checkpoint (no checksum); "
                   "cgmbench records the converted file's digest at first use")))
