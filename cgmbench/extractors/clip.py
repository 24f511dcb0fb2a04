"""CLIP extractors through open_clip: ``clip-vit-b-32``, ``clip-vit-l-14``, ``clip-vit-l-14-336`` (OpenAI weights).

CLIP score (Hessel et al. 2021; torchmetrics' ``CLIPScore`` uses ViT-L/14), CLIP-FID and CMMD
(Jayasumana et al. 2024, ViT-L/14-336) embed images and captions with OpenAI's CLIP. cgmbench builds
the open_clip architecture (``open_clip.create_model(arch, pretrained=None, force_quick_gelu=True)``:
OpenAI's models use QuickGELU) and loads the weights from a **safetensors** file -- the
``open_clip_model.safetensors`` that open_clip itself loads for ``pretrained="openai"`` from the
Hugging Face hub (``timm/vit_*_clip_*.openai``). No pickle or TorchScript is ever loaded.

Where the weights are looked for, in order:

1. ``weights_path=`` / ``--extractor-weights`` (recorded as non-standard unless its sha256 is
   the official one);
2. ``$CGMBENCH_HOME/weights/open_clip_<arch>_openai.safetensors`` (the :mod:`cgmbench.weights`
   entry of the extractor's name; its sha256 is recorded at first use);
3. the local Hugging Face cache (``hf_hub_download(..., local_files_only=True)``): nothing is downloaded.

Otherwise a :class:`~cgmbench.errors.CgmbenchError` names the hub repository, the file and the
exact path to place it at.

Image preprocessing (``protocol = "clip-openai"``) is open_clip's evaluation transform on
uint8 images: PIL bicubic resize of the shorter side to the model's input size, centre crop,
``/255``, CLIP mean/std. Embeddings are returned un-normalised, float64 on the CPU;
:func:`cgmbench.metrics.clip_score` normalises them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from cgmbench.errors import CgmbenchError
from cgmbench.extractors.base import FeatureExtractor
from cgmbench.extractors.errors import ExtractorError
from cgmbench.weights import KnownFile, register_file

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
HF_FILE = "open_clip_model.safetensors"

#: extractor name -> (open_clip architecture, pretrained tag, Hugging Face hub repository)
OPENCLIP_MODELS: dict[str, tuple[str, str, str]] = {
    "clip-vit-b-32": ("ViT-B-32", "openai", "timm/vit_base_patch32_clip_224.openai"),
    "clip-vit-l-14": ("ViT-L-14", "openai", "timm/vit_large_patch14_clip_224.openai"),
    "clip-vit-l-14-336": ("ViT-L-14-336", "openai", "timm/vit_large_patch14_clip_336.openai"),
}


def _weights_filename(arch: str, tag: str) -> str:
    return f"open_clip_{arch.lower()}_{tag}.safetensors"


for _name, (_arch, _tag, _hub) in OPENCLIP_MODELS.items():
    register_file(KnownFile(
        name=_name, filename=_weights_filename(_arch, _tag), hub_id=_hub, hub_filename=HF_FILE,
        license="MIT (openai/CLIP weights, converted by open_clip/timm)",
        obtain=(f"`cgmbench weights fetch {_name}` saves it at exactly the path named here; `hf download {_hub} "
                f"{HF_FILE}` saves it in the Hugging Face cache, where cgmbench also looks"),
        description=f"OpenAI CLIP {_arch} image/text encoders as open_clip safetensors (pretrained='{_tag}')",
        digest_source=(f"none published where looked (looked up 2026-12-02: the file digested is {HF_FILE} of "
                       f"https://huggingface.co/{_hub}, whose file page /blob/main/{HF_FILE} shows a Git LFS SHA-256, "
                       "but no stored copy of that page or of a commit adding the file was found; searched stored "
                       "Hugging Face pages and GitHub code; OpenAI's own sha256 in the clip package URLs is of the "
                       ".pt, not of this conversion); cgmbench records the digest at first fetch")))


def _hf_cached(hub_id: str) -> Path | None:
    """The file from the local Hugging Face cache, never downloading."""
    try:
        from huggingface_hub import hf_hub_download

        from cgmbench.paths import hf_cache_dir

        return Path(hf_hub_download(hub_id, HF_FILE, cache_dir=hf_cache_dir(), local_files_only=True))
    except Exception:  # not cached, hub library missing, offline: all mean "not here"
        return None


def resolve_clip_weights(name: str, weights_path: str | os.PathLike | None = None) -> tuple[Path, str, bool]:
    """``(path, sha256, is_official)`` of the weights of extractor ``name`` (see the module docstring)."""
    from cgmbench import weights as registry

    kf = registry.known_file(name)
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise CgmbenchError(f"weights file {path} does not exist or is not a file")
        digest = registry.sha256_file(path)
        return path, digest, digest == registry.expected_sha256(kf)
    local = registry.weights_dir() / kf.filename
    if local.is_file():
        _, digest = registry.resolve(name)
        return local, digest, True
    cached = _hf_cached(kf.hub_id)
    if cached is not None:
        digest = registry.sha256_file(cached)
        want = registry.expected_sha256(kf)
        return cached, digest, want is None or digest == want
    from cgmbench.paths import hf_cache_dir

    raise CgmbenchError(
        f"CLIP weights for {name!r} ({OPENCLIP_MODELS[name][0]}, pretrained='openai') not found at {local} "
        f"nor in the Hugging Face cache {hf_cache_dir()}",
        f"`cgmbench weights fetch {name}` saves {HF_FILE} of {kf.hub_id} at exactly {local} (CGMBENCH_HOME moves "
        f"the folder); `hf download {kf.hub_id} {HF_FILE}` saves it in the Hugging Face cache instead, where "
        "cgmbench looks too (HF_HOME moves it)")


def clip_preprocess(images: torch.Tensor, image_size: int, mean: Sequence[float] = OPENAI_MEAN,
                    std: Sequence[float] = OPENAI_STD) -> torch.Tensor:
    """open_clip's eval transform on uint8 ``[B,3,H,W]``: PIL bicubic shortest-side resize, centre crop, normalise.

    Matches ``open_clip.image_transform(image_size, is_train=False)`` applied to the PIL images
    (torchvision ``Resize(image_size, BICUBIC)`` + ``CenterCrop`` + ``ToTensor`` + ``Normalize``).
    """
    out = torch.empty(images.shape[0], 3, image_size, image_size, dtype=torch.float32)
    arrays = images.cpu().numpy()
    for i, array in enumerate(arrays):
        im = Image.fromarray(np.ascontiguousarray(array.transpose(1, 2, 0)))
        w, h = im.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = image_size, int(image_size * long / short)
        size = (new_short, new_long) if w <= h else (new_long, new_short)
        if size != (w, h):
            im = im.resize(size, Image.Resampling.BICUBIC)
        w, h = im.size
        top, left = int(round((h - image_size) / 2.0)), int(round((w - image_size) / 2.0))
        im = im.crop((left, top, left + image_size, top + image_size))
        out[i] = torch.from_numpy(np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (out - mean_t) / std_t


class OpenCLIPExtractor(FeatureExtractor):
    """An open_clip CLIP model as a cgmbench extractor: image embeddings via ``forward``, text via :meth:`encode_text`.

    Args:
        model: an ``open_clip.CLIP`` (weights already loaded).
        tokenizer: ``texts -> LongTensor`` (``open_clip.get_tokenizer(arch)``).
        name: extractor name recorded with every number.
        model_name: open_clip architecture (``ViT-L-14``); pretrained: tag (``openai``).
    """

    def __init__(self, model, tokenizer, name: str, model_name: str, pretrained: str | None, weights_path: Path,
                 weights_sha256: str, is_official_weights: bool, mean=OPENAI_MEAN, std=OPENAI_STD):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.model_name = model_name
        self.pretrained = pretrained
        self.weights_path = Path(weights_path)
        self.weights_sha256 = weights_sha256
        self.is_official_weights = is_official_weights
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.mean, self.std = tuple(mean), tuple(std)
        with torch.no_grad():
            self.feature_dim = int(model.encode_text(tokenizer(["a"])).shape[-1])

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = clip_preprocess(images, self.image_size, self.mean, self.std).to(self._device())
        return self.model.encode_image(x)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """Text embeddings ``[len(texts), feature_dim]``, float64 on the CPU."""
        parts = [self.model.encode_text(self.tokenizer(list(texts[i:i + batch_size])).to(self._device()))
                 .to("cpu", torch.float64) for i in range(0, len(texts), batch_size)]
        return torch.cat(parts) if parts else torch.zeros(0, self.feature_dim, dtype=torch.float64)

    def describe(self) -> dict[str, Any]:
        record = super().describe()
        record.update(model_name=self.model_name, pretrained=self.pretrained, weights_file=self.weights_path.name,
                      protocol={"name": "clip-openai", "description": "open_clip eval transform: PIL bicubic "
                                "shortest-side resize, centre crop, CLIP mean/std", "resize": "pil-bicubic-uint8",
                                "normalisation": "(x/255 - mean) / std"}, image_size=self.image_size)
        return record


def build_openclip(arch: str, weights_path: str | os.PathLike, name: str | None = None, pretrained: str | None = None,
                   weights_sha256: str | None = None, is_official: bool = False) -> OpenCLIPExtractor:
    """open_clip architecture ``arch`` with safetensors weights from ``weights_path`` (strict key check)."""
    try:
        import open_clip
    except ImportError:
        raise CgmbenchError("CLIP extractors need open_clip", "pip install open_clip_torch") from None
    from safetensors.torch import load_file

    from cgmbench import weights as registry
    from cgmbench.extractors.weights import load_state_dict_strict

    path = Path(weights_path)
    try:
        model = open_clip.create_model(arch, pretrained=None, force_quick_gelu=pretrained == "openai")
    except RuntimeError as error:
        raise ExtractorError(f"open_clip has no architecture {arch!r}: {error}") from None
    try:
        state = load_file(str(path))
    except Exception as error:
        raise ExtractorError(f"cannot read {path} as safetensors: {error}") from None
    load_state_dict_strict(model, state, str(path))
    return OpenCLIPExtractor(model, open_clip.get_tokenizer(arch), name or arch, arch, pretrained, path,
                             weights_sha256 or registry.sha256_file(path), is_official)


def load_openclip_extractor(name: str, weights_path: str | os.PathLike | None = None, **_: Any) -> OpenCLIPExtractor:
    """The registered CLIP extractor ``name`` (a key of :data:`OPENCLIP_MODELS`); never downloads."""
    if name not in OPENCLIP_MODELS:
        raise ExtractorError(f"unknown CLIP extractor {name!r}; available: {sorted(OPENCLIP_MODELS)}")
    arch, tag, _hub = OPENCLIP_MODELS[name]
    path, digest, official = resolve_clip_weights(name, weights_path)
    return build_openclip(arch, path, name=name, pretrained=tag, weights_sha256=digest, is_official=official)


def _factory(name: str):
    def make(weights_path=None, **options):
        return load_openclip_extractor(name, weights_path)

    make.__name__ = f"load_{name.replace('-', '_')}"
    return make


FACTORIES = {name: _factory(name) for name in OPENCLIP_MODELS}
