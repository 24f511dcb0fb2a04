"""The official StackGAN files, registered in cgmbench's weights registry (``cgmbench weights list``); found
through the ``cgmbench.weights`` entry-point group. Both live on Google Drive (hanzhanggit/StackGAN-Pytorch
README) without published checksums: the digest is recorded at first fetch."""

from cgmbench.weights import KnownFile, register_file

_README = "https://github.com/hanzhanggit/StackGAN-Pytorch#pretrained-model"

register_file(KnownFile(
    name="stackgan:coco-stage2", filename="netG_epoch_90.pth", license="MIT",
    obtain=(f"download 'StackGAN for coco' (netG_epoch_90.pth) from the Google Drive link in {_README} and place "
            "it at $CGMBENCH_HOME/weights/netG_epoch_90.pth"),
    description="StackGAN Stage-II generator (incl. Stage I under STAGE1_G.), COCO, coco_eval.yml: GF_DIM 192, R_NUM 2",
    digest_source="none published: the publisher gives only a download link (no checksum); cgmbench records the digest at first fetch"))

register_file(KnownFile(
    name="stackgan:coco-char-cnn-rnn", filename="char-CNN-RNN-embeddings.pickle", license="MIT",
    obtain=("download the preprocessed COCO char-CNN-RNN embeddings (coco/test/char-CNN-RNN-embeddings.pickle) "
            f"from the Google Drive link in {_README}; place it at $CGMBENCH_HOME/weights/char-CNN-RNN-embeddings.pickle"),
    description="1024-d char-CNN-RNN text embeddings (reedscot/icml2016) of the COCO test captions (Python-2 pickle)",
    digest_source="none published: the publisher gives only a download link (no checksum); cgmbench records the digest at first fetch"))
