"""The official weight files of this family, registered in cgmbench's weights registry (``cgmbench weights
list``); found through the ``cgmbench.weights`` entry-point group."""

from cgmbench.weights import KnownFile, register_file

_DIT_LICENSE = "CC-BY-NC-4.0 (facebookresearch/DiT)"

register_file(KnownFile(
    name="dit:xl-2-256", filename="DiT-XL-2-256x256.pt",
    url="https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt", size=2_700_611_775,
    license=_DIT_LICENSE, description="DiT-XL/2, ImageNet 256x256, EMA weights, plain float32 state_dict"))
register_file(KnownFile(
    name="dit:xl-2-512", filename="DiT-XL-2-512x512.pt",
    url="https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-512x512.pt", license=_DIT_LICENSE,
    description="DiT-XL/2, ImageNet 512x512, EMA weights, plain float32 state_dict"))
