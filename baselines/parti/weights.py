"""LlamaGen's released files (the Parti-like family's real-scale reference), registered in cgmbench's weights
registry (``cgmbench weights list``); found through the ``cgmbench.weights`` entry-point group.

The c2i files are on https://huggingface.co/FoundationVision/LlamaGen, the t2i files on
https://huggingface.co/peizesun/llamagen_t2i (both MIT, the code's license). No checksums are published: the
SHA-256 is recorded at first fetch and verified from then on. The t2i model also needs ``google/flan-t5-xl``
(Apache-2.0) in the local Hugging Face cache.
"""

from cgmbench.weights import KnownFile, register_file

_C2I = "https://huggingface.co/FoundationVision/LlamaGen/resolve/main/"
_T2I = "https://huggingface.co/peizesun/llamagen_t2i/resolve/main/"
_LICENSE = "MIT (FoundationVision/LlamaGen)"

#: registry name -> (file name on the hub, URL prefix, description)
LLAMAGEN_FILES = {
    "llamagen:vq_ds16_c2i": ("vq_ds16_c2i.pt", _C2I,
                             "LlamaGen VQ tokenizer, downsample 16, 16384 codes x 8-d L2-normalised (ImageNet); "
                             "weights under 'model'"),
    "llamagen:vq_ds16_t2i": ("vq_ds16_t2i.pt", _T2I,
                             "LlamaGen VQ tokenizer for the t2i models (same layout as vq_ds16_c2i); "
                             "weights under 'model'"),
    "llamagen:c2i_B_256": ("c2i_B_256.pt", _C2I,
                           "LlamaGen-B class-conditional GPT, 111M, 16x16 tokens (README FID 5.46)"),
    "llamagen:c2i_L_256": ("c2i_L_256.pt", _C2I,
                           "LlamaGen-L class-conditional GPT, 343M, 16x16 tokens (README FID 3.80)"),
    "llamagen:t2i_XL_stage1_256": ("t2i_XL_stage1_256.pt", _T2I,
                                   "LlamaGen t2i XL stage 1, 775M, 16x16 tokens, flan-t5-xl captions "
                                   "(LAION-COCO 50M); no published COCO FID"),
}

for _name, (_file, _prefix, _description) in LLAMAGEN_FILES.items():
    register_file(KnownFile(name=_name, filename=f"llamagen-{_file}", url=_prefix + _file, license=_LICENSE,
                            description=_description,
    digest_source="none published: the publisher gives only a download link (no checksum); cgmbench records the digest at first fetch"))
