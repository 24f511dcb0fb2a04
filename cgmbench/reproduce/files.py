"""The data files the reproduction recipes read, registered in the weights registry so that ``cgmbench weights
fetch NAME`` / ``cgmbench fetch --recipe R`` download them (with their checksum where one is published) into
exactly the folders the tasks and recipes read."""

from __future__ import annotations

from cgmbench.weights import KnownFile, register_file

_ADM_BASE = "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/imagenet"
_ADM_DIGEST = ("none published (openai/guided-diffusion evaluations/README.md gives only the URLs: "
               "https://github.com/openai/guided-diffusion/blob/main/evaluations/README.md)")
_ADM_LICENSE = "derived from ImageNet by OpenAI (guided-diffusion); ImageNet terms of access apply"

register_file(KnownFile(
    name="adm:ref-imagenet256", filename="VIRTUAL_imagenet256_labeled.npz", folder="${CGMBENCH_DATA}/imagenet256",
    url=f"{_ADM_BASE}/256/VIRTUAL_imagenet256_labeled.npz", license=_ADM_LICENSE, digest_source=_ADM_DIGEST,
    description="ADM reference batch, ImageNet 256: arr_0 (10k images), mu/sigma (pool_3) and mu_s/sigma_s (spatial)"))
register_file(KnownFile(
    name="adm:ref-imagenet512", filename="VIRTUAL_imagenet512.npz", folder="${CGMBENCH_DATA}/imagenet512",
    url=f"{_ADM_BASE}/512/VIRTUAL_imagenet512.npz", license=_ADM_LICENSE, digest_source=_ADM_DIGEST,
    description="ADM reference batch, ImageNet 512 (DiT-XL/2-512's FID 3.04 is measured against it)"))
register_file(KnownFile(
    name="adm:samples-admnet-guided-upsampled-256", filename="admnet_guided_upsampled_imagenet256.npz",
    folder="${CGMBENCH_DATA}/imagenet256", url=f"{_ADM_BASE}/256/admnet_guided_upsampled_imagenet256.npz",
    license=_ADM_LICENSE, digest_source=_ADM_DIGEST,
    description="ADM-G + ADM-U sample batch (50k images, arr_0): the evaluator README's worked example"))
register_file(KnownFile(
    name="cifar10:python", filename="cifar-10-python.tar.gz", folder="${CGMBENCH_DATA}/cifar10",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", size=170_498_071,
    md5="c58f30108f718f92721af3b95e74349a", license="no license stated (Krizhevsky 2009; research use)",
    digest_source=("none published as SHA-256; the md5 c58f30108f718f92721af3b95e74349a is listed at "
                   "https://www.cs.toronto.edu/~kriz/cifar.html and verified"),
    description="CIFAR-10 python version: data_batch_1..5 and test_batch (pickled dicts of uint8 rows)"))
