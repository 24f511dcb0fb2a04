"""The official weight files of this family, registered in cgmbench's weights registry (``cgmbench weights
list``); found through the ``cgmbench.weights`` entry-point group."""

from cgmbench.weights import KnownFile, register_file

_JUNYANZ_LICENSE = "BSD (junyanz/pytorch-CycleGAN-and-pix2pix)"
_JUNYANZ_DIGEST = ("none published (junyanz/pytorch-CycleGAN-and-pix2pix scripts/download_pix2pix_model.sh and "
                   "download_cyclegan_model.sh fetch with wget and check nothing: https://github.com/junyanz/"
                   "pytorch-CycleGAN-and-pix2pix/tree/master/scripts)")

for _name in ("facades_label2photo", "edges2shoes", "sat2map", "map2sat", "day2night"):
    register_file(KnownFile(
        name=f"pix2pix:{_name}", filename=f"pix2pix_{_name}.pth",
        url=f"http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/{_name}.pth", license=_JUNYANZ_LICENSE,
        description=f"official pix2pix generator (unet_256, batch norm) for {_name}",
        digest_source=_JUNYANZ_DIGEST))
for _name in ("horse2zebra", "zebra2horse", "monet2photo", "style_monet", "cityscapes_label2photo",
              "facades_label2photo", "map2sat", "sat2map"):
    register_file(KnownFile(
        name=f"cyclegan:{_name}", filename=f"cyclegan_{_name}.pth",
        url=f"http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/{_name}.pth", license=_JUNYANZ_LICENSE,
        description=f"official CycleGAN generator (resnet_9blocks, instance norm) for {_name}",
        digest_source=_JUNYANZ_DIGEST))
