"""The official weight files of this family, registered in cgmbench's weights registry (``cgmbench weights
list``); found through the ``cgmbench.weights`` entry-point group."""

from cgmbench.weights import KnownFile, register_file

_DIT_LICENSE = "CC-BY-NC-4.0 (facebookresearch/DiT)"
_DIT_DIGEST = ("none published (facebookresearch/DiT README and download.py give only the URL: "
               "https://github.com/facebookresearch/DiT/blob/main/download.py)")

register_file(KnownFile(
    name="dit:xl-2-256", filename="DiT-XL-2-256x256.pt",
    url="https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt", size=2_700_611_775,
    license=_DIT_LICENSE, description="DiT-XL/2, ImageNet 256x256, EMA weights, plain float32 state_dict",
    digest_source=_DIT_DIGEST))
register_file(KnownFile(
    name="dit:xl-2-512", filename="DiT-XL-2-512x512.pt",
    url="https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-512x512.pt", license=_DIT_LICENSE,
    description="DiT-XL/2, ImageNet 512x512, EMA weights, plain float32 state_dict",
    digest_source=_DIT_DIGEST))
