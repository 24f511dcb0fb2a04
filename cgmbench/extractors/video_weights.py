"""The weight files of the video feature networks (FVD), in the weights registry (``cgmbench weights list``).

The VideoMAE-v2 file's SHA-256 is pinned from its publisher's Git LFS listing; the two I3D files have no published
checksum, so their SHA-256 is recorded at first use and verified from then on (:mod:`cgmbench.weights`). Every FVD
entry records the digest of the file it used.
"""

from cgmbench.weights import KnownFile, register_file

register_file(KnownFile(
    name="i3d-styleganv", filename="i3d_torchscript.pt",
    url="https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1",
    license="none stated (TF-Hub deepmind/i3d-kinetics-400/1 weights, Apache-2.0, ported to TorchScript by StyleGAN-V)",
    description="StyleGAN-V's TorchScript I3D (Kinetics-400), forward(x, rescale, resize, return_features); "
                "extractor i3d_tfhub_ts of the styleganv_fvd2048_16f protocol",
    digest_source="none published: the publisher gives only a download link (no checksum); cgmbench records the digest at first fetch"))
register_file(KnownFile(
    name="i3d-pt400", filename="i3d_pretrained_400.pt",
    obtain="the VideoGPT/TATS I3D state dict (i3d_pretrained_400.pt, converted from TF-Hub); TATS and the cd-fvd "
           "package download it; place it at the path given",
    license="MIT (VideoGPT / TATS repositories)",
    description="InceptionI3d(400) state dict; extractor i3d_pt400 of the tats_fvd2048 protocol",
    digest_source="none published: the publisher gives only a download link (no checksum); cgmbench records the digest at first fetch"))
register_file(KnownFile(
    name="videomae-v2-g-ssv2", filename="vit_g_hybrid_pt_1200e_ssv2_ft.pth", hub_id="OpenGVLab/VideoMAE2",
    hub_filename="mae-g/vit_g_hybrid_pt_1200e_ssv2_ft.pth",
    sha256="5a210a92f035dff30c53b46157b612e7a1a5d3c99700e1b2d71da5c399ca7e70",
    obtain=("`cgmbench weights fetch videomae-v2-g-ssv2` (VideoMAE-v2 ViT-g/14 fine-tuned on SSv2, 2.02 GB fp16, "
            "as cd-fvd uses it; OpenGVLab moved it from Aliyun OSS, the URL cd-fvd names, to the Hugging Face hub)"),
    license="Apache-2.0 (OpenGVLab/VideoMAE2 model card)",
    description=("extractor videomae_v2_g_ssv2 of the cdfvd_videomae protocol (content-debiased FVD); "
                 "mae-g/vit_g_hybrid_pt_1200e_ssv2_ft.pth of huggingface.co/OpenGVLab/VideoMAE2"),
    digest_source=("https://huggingface.co/OpenGVLab/VideoMAE2/blob/main/mae-g/vit_g_hybrid_pt_1200e_ssv2_ft.pth "
                   "(the publisher's file page: Git LFS SHA-256 of mae-g/vit_g_hybrid_pt_1200e_ssv2_ft.pth, 2.02 GB, "
                   "commit 97d119d '[tranfer] from aliyun oss to hf'; looked up 2026-12-02)")))
