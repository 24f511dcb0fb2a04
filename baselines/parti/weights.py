"""LlamaGen's released files (the Parti-like family's real-scale reference), registered in cgmbench's weights
registry (``cgmbench weights list``); found through the ``cgmbench.weights`` entry-point group.

The c2i files are on https://huggingface.co/FoundationVision/LlamaGen, the t2i files on
https://huggingface.co/peizesun/llamagen_t2i (both MIT, the code's license; both repositories are the LlamaGen
authors'). The SHA-256 of four files is pinned from the Git LFS pointers of the commits that added them (the
files are unchanged since); for ``c2i_B_256.pt`` no listing could be reached, so its SHA-256 is recorded at first
fetch and verified from then on. The t2i model also needs ``google/flan-t5-xl`` (Apache-2.0) in the local
Hugging Face cache.
"""

from cgmbench.weights import KnownFile, register_file

_C2I_REPO = "https://huggingface.co/FoundationVision/LlamaGen"
_T2I_REPO = "https://huggingface.co/peizesun/llamagen_t2i"
_LICENSE = "MIT (FoundationVision/LlamaGen)"


def _pointer(repo: str, commit: str, title: str, file: str, size: int) -> str:
    return (f"{repo}/commit/{commit} (the publisher's commit '{title}' adding {file}: Git LFS pointer oid sha256, "
            f"size {size}; no later commit in the stored history changes the file; looked up 2026-12-02)")


#: registry name -> (file name on the hub, repository, sha256 or None, digest source, description)
LLAMAGEN_FILES = {
    "llamagen:vq_ds16_c2i": (
        "vq_ds16_c2i.pt", _C2I_REPO, "109aa8afb2cf3761eec23cdc8644154cb498f5ab7eef2a35264d25e5e0499f7d",
        _pointer(_C2I_REPO, "e467ee88f6c935f53db1c537dab4403a53c7a368", "add vq_ds16_c2i", "vq_ds16_c2i.pt",
                 287_920_306),
        "LlamaGen VQ tokenizer, downsample 16, 16384 codes x 8-d L2-normalised (ImageNet); weights under 'model'"),
    "llamagen:vq_ds16_t2i": (
        "vq_ds16_t2i.pt", _T2I_REPO, "0e21fc1318e2e9ee641a07bdad0e20675e9ec35e6e3eb911d58b5d7a2cd8d4cb",
        _pointer(_T2I_REPO, "276f5c5a3d915b922899a03f1912605531574747", "t2i model backup", "vq_ds16_t2i.pt",
                 287_920_306),
        "LlamaGen VQ tokenizer for the t2i models (same layout as vq_ds16_c2i); weights under 'model'"),
    "llamagen:c2i_B_256": (
        "c2i_B_256.pt", _C2I_REPO, None,
        f"none published where looked (looked up 2026-12-02: the file page {_C2I_REPO}/blob/main/c2i_B_256.pt "
        "shows a Git LFS SHA-256, but no stored copy of it, nor of commit 472fe06 'add c2i_B_256' that added the "
        "file, was found; searched stored Hugging Face pages and GitHub code); cgmbench records the digest at "
        "first fetch",
        "LlamaGen-B class-conditional GPT, 111M, 16x16 tokens (README FID 5.46)"),
    "llamagen:c2i_L_256": (
        "c2i_L_256.pt", _C2I_REPO, "15fe788b9c0e8dfe36f3e3fd701b44d0c934e4fd94a0ab599b69669aa8f44a55",
        _pointer(_C2I_REPO, "dc1fec543f6ac82e0cb9bbed058d5eaa26a30e6e", "add c2i models", "c2i_L_256.pt",
                 1_371_712_314),
        "LlamaGen-L class-conditional GPT, 343M, 16x16 tokens (README FID 3.80)"),
    "llamagen:t2i_XL_stage1_256": (
        "t2i_XL_stage1_256.pt", _T2I_REPO, "87d94b9b11cd80f44bd69122a4d4ed28304956e0fba07edcafce08c7a2716600",
        _pointer(_T2I_REPO, "276f5c5a3d915b922899a03f1912605531574747", "t2i model backup", "t2i_XL_stage1_256.pt",
                 3_111_800_170),
        "LlamaGen t2i XL stage 1, 775M, 16x16 tokens, flan-t5-xl captions (LAION-COCO 50M); no published COCO FID"),
}

for _name, (_file, _repo, _sha, _source, _description) in LLAMAGEN_FILES.items():
    register_file(KnownFile(name=_name, filename=f"llamagen-{_file}", url=f"{_repo}/resolve/main/{_file}",
                            sha256=_sha, license=_LICENSE, description=_description, digest_source=_source))
