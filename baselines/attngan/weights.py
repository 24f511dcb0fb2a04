"""The official AttnGAN files, registered in cgmbench's weights registry (``cgmbench weights list``); found
through the ``cgmbench.weights`` entry-point group. The release is on Google Drive (taoxugit/AttnGAN README)
without checksums: the digest is recorded at first fetch. ``bird_AttnGAN2.pth``, ``text_encoder200.pth`` and
``captions.pickle`` are also committed in the repository under ``eval/data/``."""

from cgmbench.weights import KnownFile, register_file

_README = "https://github.com/taoxugit/AttnGAN#pretrained-model"


def _drive(what: str, filename: str) -> str:
    return (f"download {what} from the Google Drive link in {_README} and place it at "
            f"$CGMBENCH_HOME/weights/{filename}")


for _name, _file, _what, _desc in (
    ("attngan:bird", "bird_AttnGAN2.pth", "'AttnGAN for bird' (bird_AttnGAN2.pth)",
     "AttnGAN G_NET for CUB-200 (GF_DIM 32, 3 branches, 256x256)"),
    ("attngan:coco", "coco_AttnGAN2.pth", "'AttnGAN for coco' (coco_AttnGAN2.pth)",
     "AttnGAN G_NET for COCO (GF_DIM 48, R_NUM 3, 3 branches, 256x256)"),
    ("attngan:damsm-bird-text", "text_encoder200.pth", "the DAMSM bird encoders (DAMSMencoders/bird/text_encoder200.pth)",
     "DAMSM RNN_ENCODER for birds (5450 tokens, 256-d)"),
    ("attngan:damsm-bird-image", "image_encoder200.pth", "the DAMSM bird encoders (DAMSMencoders/bird/image_encoder200.pth)",
     "DAMSM CNN_ENCODER for birds (R-precision image encoder)"),
    ("attngan:damsm-coco-text", "text_encoder100.pth", "the DAMSM coco encoders (DAMSMencoders/coco/text_encoder100.pth)",
     "DAMSM RNN_ENCODER for COCO (27297 tokens, 256-d)"),
    ("attngan:damsm-coco-image", "image_encoder100.pth", "the DAMSM coco encoders (DAMSMencoders/coco/image_encoder100.pth)",
     "DAMSM CNN_ENCODER for COCO (R-precision image encoder)"),
):
    register_file(KnownFile(name=_name, filename=_file, license="MIT", obtain=_drive(_what, _file), description=_desc,
    digest_source="none published: the publisher gives only a download link (no checksum); cgmbench records the digest at first fetch"))

# the CUB IS classifier (inception-v3-cub-finetuned) is a core extractor: cgmbench/known_weights.py

for _name, _file, _what in (
    ("attngan:bird-captions", "bird-captions.pickle", "the birds metadata (data/birds/captions.pickle)"),
    ("attngan:coco-captions", "coco-captions.pickle", "the coco metadata (data/coco/captions.pickle)"),
):
    register_file(KnownFile(
        name=_name, filename=_file, license="MIT",
        obtain=_drive(_what, _file) + " (renamed; read with a restricted unpickler: plain containers only)",
        description="AttnGAN vocabulary: [train_captions, test_captions, ixtoword, wordtoix]",
    digest_source="none published: the publisher gives only a download link (no checksum); cgmbench records the digest at first fetch"))
