"""``shapes-cnn`` and ``shapes-clip``: metric networks trained by cgmbench on the shapes world.

Inception and CLIP know nothing about 32-pixel renders of coloured squares, so offline FID and
CLIP score use two small networks trained here and shipped in ``cgmbench/shipped/``:

* **shapes-cnn** (:class:`ShapesCNN`) -- a convolutional classifier of scene attributes. Its
  penultimate layer (256-d, taken before its ReLU so that no feature is constantly zero and the
  covariance stays full-rank) is the FID/KID/precision-recall feature, as Inception's pool3 is. Heads (multi-label BCE, one cross-entropy): which of the 18 (shape, colour) pairs is
  present, the object count (0..4), flat or textured style, whether a large object is present,
  and a 4x4 occupancy grid of object centres.
* **shapes-clip** (:class:`ShapesCLIP`) -- an image encoder (the same convolutional trunk) and a
  text encoder (a 2-layer transformer over the closed shapes vocabulary) trained with CLIP's
  symmetric InfoNCE loss on (image, caption) pairs of ``shapes-t2i`` (32 and 64 px). The CLIP
  score is ``100 * max(cos, 0)`` of the two 128-d embeddings, as for CLIP.

Training images cover every shapes task kind: single-class scenes, text-to-image scenes, random
multi-object scenes (translation), editing sources and targets, and single video frames, in the
flat and textured styles, at 32 and 64 px. Every image is drawn from
``derive_seed("shapes-extractor", seed, i)``.

Input convention (both extractors): uint8 ``[B, 3, H, W]`` (any H, W); the protocol's resize
brings it to 32x32 (identity for 32-px images: every protocol's resize is exact at scale 1),
then ``(x - 128) / 128`` (``pytorch-fid``: ``2x/255 - 1``). Outputs are float64 CPU tensors.

Retrain (deterministic given the seed and thread count; ~4-8 minutes each on one CPU core)::

    python -m cgmbench.extractors.shapes train --which all --out cgmbench/shipped
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cgmbench.extractors.base import FeatureExtractor, split_batches, tf32_disabled
from cgmbench.extractors.protocols import check_images, get_protocol

INPUT_SIZE = (32, 32)
CNN_FILE = "shapes-cnn.safetensors"
CLIP_FILE = "shapes-clip.safetensors"
GRID = 4  # occupancy grid side

# ----------------------------------------------------------------------------------------------
# Vocabulary and tokenizer of shapes captions
# ----------------------------------------------------------------------------------------------


def _vocabulary() -> list[str]:
    from cgmbench.worlds import shapes as W

    words = ["<pad>", "<unk>", "a", "an", "the", "and", "of", "to", "moving", "make", "remove", "small", "large"]
    words += list(W.COLORS) + list(W.SHAPES) + [s + "s" for s in W.SHAPES]
    words += list(W.COUNT_WORDS.values()) + ["left", "right", "above", "below", "up", "down"]
    return words


VOCAB = _vocabulary()
WORD_TO_ID = {w: i for i, w in enumerate(VOCAB)}
MAX_TOKENS = 16


def tokenize(texts: Sequence[str], max_tokens: int = MAX_TOKENS) -> torch.Tensor:
    """Captions -> int64 ``[B, max_tokens]`` word ids (lower-cased, split on spaces; 0 pads, 1 unknown)."""
    out = torch.zeros(len(texts), max_tokens, dtype=torch.int64)
    for row, text in enumerate(texts):
        ids = [WORD_TO_ID.get(w, 1) for w in str(text).lower().replace(",", " ").split()][:max_tokens]
        if ids:
            out[row, : len(ids)] = torch.tensor(ids)
    return out


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class ShapesTrunk(nn.Module):
    """``[B,3,32,32] -> [B,64*4*4]``: conv16, pool, conv32, conv32, pool, conv64, pool, conv64."""

    out_dim = 64 * 16

    def __init__(self):
        super().__init__()
        self.stem = _conv(3, 16)
        self.block1 = nn.Sequential(_conv(16, 32), _conv(32, 32))
        self.block2 = _conv(32, 64)
        self.block3 = _conv(64, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.stem(x), 2)  # 16x16
        x = F.max_pool2d(self.block1(x), 2)  # 8x8
        x = F.max_pool2d(self.block2(x), 2)  # 4x4
        return self.block3(x).flatten(1)


class ShapesCNN(nn.Module):
    """Attribute classifier; ``features`` (the 256-d penultimate layer, pre-ReLU) is the metric feature."""

    feature_dim = 256

    def __init__(self):
        super().__init__()
        from cgmbench.worlds import shapes as W

        self.num_pairs = len(W.SHAPES) * len(W.COLORS)
        self.trunk = ShapesTrunk()
        self.fc = nn.Linear(ShapesTrunk.out_dim, self.feature_dim)
        self.head_pairs = nn.Linear(self.feature_dim, self.num_pairs)
        self.head_count = nn.Linear(self.feature_dim, 5)
        self.head_binary = nn.Linear(self.feature_dim, 2)  # textured, has-large
        self.head_grid = nn.Linear(self.feature_dim, GRID * GRID)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The metric feature: the 256-d penultimate layer before its ReLU (no unit is constant)."""
        return self.fc(self.trunk(x))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = F.relu(self.features(x))
        return {"features": f, "pairs": self.head_pairs(f), "count": self.head_count(f),
                "binary": self.head_binary(f), "grid": self.head_grid(f)}


class ShapesTextEncoder(nn.Module):
    """Word embeddings + learned positions -> 2-layer transformer -> masked mean -> linear."""

    def __init__(self, width: int = 64, embed_dim: int = 128, layers: int = 2, heads: int = 4):
        super().__init__()
        self.token_embedding = nn.Embedding(len(VOCAB), width)
        self.positional_embedding = nn.Parameter(torch.randn(MAX_TOKENS, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.ln_final = nn.LayerNorm(width)
        self.proj = nn.Linear(width, embed_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pad = tokens == 0
        x = self.token_embedding(tokens) + self.positional_embedding[: tokens.shape[1]]
        x = self.ln_final(self.transformer(x, src_key_padding_mask=pad))
        keep = (~pad).unsqueeze(-1).to(x.dtype)
        return self.proj((x * keep).sum(1) / keep.sum(1).clamp_min(1.0))


class ShapesCLIP(nn.Module):
    """Image encoder (:class:`ShapesTrunk` + linear) and text encoder, 128-d joint embedding."""

    embed_dim = 128

    def __init__(self):
        super().__init__()
        self.visual = ShapesTrunk()
        self.visual_proj = nn.Linear(ShapesTrunk.out_dim, self.embed_dim)
        self.text = ShapesTextEncoder(embed_dim=self.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual_proj(self.visual(x))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text(tokens)


# ----------------------------------------------------------------------------------------------
# Extractors
# ----------------------------------------------------------------------------------------------


def _load_shipped(module: nn.Module, filename: str, weights_path) -> tuple[Path, str, bool]:
    """Load safetensors weights (shipped file, or the user's ``weights_path``) strictly into ``module``."""
    from safetensors.torch import load_file

    from cgmbench.errors import CgmbenchError
    from cgmbench.extractors.weights import load_state_dict_strict
    from cgmbench.weights import sha256_file, shipped

    official_path, official_sha = shipped(filename)
    path = Path(weights_path).expanduser() if weights_path is not None else official_path
    if not path.is_file():
        raise CgmbenchError(f"weights file {path} does not exist")
    digest = sha256_file(path)
    try:
        state = load_file(str(path))
    except Exception as error:
        raise CgmbenchError(f"cannot read {path} as safetensors: {error}") from None
    load_state_dict_strict(module, state, str(path))
    return path, digest, digest == official_sha


class _ShapesExtractorBase(FeatureExtractor):
    def __init__(self, protocol: str = "clean"):
        super().__init__()
        self.protocol = get_protocol(protocol)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return self.protocol(images, torch.float32, INPUT_SIZE)

    def describe(self) -> dict[str, Any]:
        record = super().describe()
        record.update(protocol=self.protocol.to_dict(), input_size=list(INPUT_SIZE), weights_file=self.weights_path.name)
        return record


class ShapesCNNExtractor(_ShapesExtractorBase):
    """``shapes-cnn``: 256-d penultimate features of :class:`ShapesCNN`; ``logits`` = pair logits (18)."""

    name = "shapes-cnn"
    feature_dim = ShapesCNN.feature_dim
    feature_version = "penultimate-pre-relu"

    def __init__(self, weights_path=None, protocol: str = "clean"):
        super().__init__(protocol)
        self.network = ShapesCNN().eval()
        self.weights_path, self.weights_sha256, self.is_official_weights = _load_shipped(
            self.network, CNN_FILE, weights_path)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.network.features(self.preprocess(images))

    @torch.no_grad()
    def logits(self, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        check_images(images)
        with tf32_disabled():
            return torch.cat([self.network(self.preprocess(c))["pairs"].double().cpu()
                              for c in split_batches(images, batch_size)])


class ShapesCLIPExtractor(_ShapesExtractorBase):
    """``shapes-clip``: 128-d image embeddings (``forward``) and text embeddings (:meth:`encode_text`)."""

    name = "shapes-clip"
    feature_dim = ShapesCLIP.embed_dim

    def __init__(self, weights_path=None, protocol: str = "clean"):
        super().__init__(protocol)
        self.network = ShapesCLIP().eval()
        self.weights_path, self.weights_sha256, self.is_official_weights = _load_shipped(
            self.network, CLIP_FILE, weights_path)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.network.encode_image(self.preprocess(images))

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], batch_size: int = 1024) -> torch.Tensor:
        """Text embeddings ``[len(texts), 128]`` as float64 on the CPU."""
        parts = [self.network.encode_text(tokenize(texts[i:i + batch_size])).double()
                 for i in range(0, len(texts), batch_size)]
        return torch.cat(parts) if parts else torch.zeros(0, self.feature_dim, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------
# Training data
# ----------------------------------------------------------------------------------------------


def scene_targets(scene, style: str, t: float = 0.0) -> dict[str, np.ndarray]:
    """Attribute targets of a rendered scene at frame ``t`` (see :class:`ShapesCNN`)."""
    from cgmbench.worlds import shapes as W

    pairs = np.zeros(len(W.SHAPES) * len(W.COLORS), np.float32)
    grid = np.zeros(GRID * GRID, np.float32)
    for o in scene.objects:
        pairs[W.class_index(o.shape, o.color)] = 1.0
        x, y = (o.x + o.vx * t) / scene.resolution, (o.y + o.vy * t) / scene.resolution
        gx, gy = min(GRID - 1, max(0, int(x * GRID))), min(GRID - 1, max(0, int(y * GRID)))
        grid[gy * GRID + gx] = 1.0
    binary = np.array([style == "textured", any(o.size == "large" for o in scene.objects)], np.float32)
    return {"pairs": pairs, "count": np.int64(min(len(scene.objects), 4)), "binary": binary, "grid": grid}


def _random_image(rng: np.random.Generator):
    """One training image of a random task kind: ``(uint8 [3,H,W], scene, style, t, caption or None)``."""
    from cgmbench.worlds import shapes as W

    res = int(rng.choice([32, 64]))
    style = "textured" if rng.random() < 0.35 else "flat"
    kind = int(rng.integers(6))
    t, caption = 0.0, None
    if kind == 0:
        scene = W.random_class_scene(rng, res)[1]
    elif kind == 1:
        spec = W.random_prompt_spec(rng)
        scene, caption = W.scene_for_prompt(spec, rng, res), spec["caption"]
    elif kind == 2:
        scene = W.random_scene(rng, res)
    elif kind in (3, 4):
        source, _, target = W.random_edit(rng, res, types=W.LEGACY_EDIT_MIX)  # the shipped extractors' data
        scene = source if kind == 3 else target
    else:
        frames = 8
        scene = W.scene_for_motion(W.random_motion_spec(rng, res, frames), rng, res)
        t = float(rng.integers(frames))
    return W.render(scene, style, t), scene, style, t, caption


def _preprocess_numpy(images: list[np.ndarray], protocol: str = "clean") -> torch.Tensor:
    """Group by size, run the protocol to 32x32, keep the order."""
    proto = get_protocol(protocol)
    out = torch.empty(len(images), 3, *INPUT_SIZE)
    by_size: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        by_size.setdefault(im.shape, []).append(i)
    for idx in by_size.values():
        batch = torch.from_numpy(np.stack([images[i] for i in idx]))
        out[idx] = proto(batch, torch.float32, INPUT_SIZE)
    return out


def cnn_dataset(n: int, seed: int) -> dict[str, torch.Tensor]:
    from cgmbench.seeding import derive_seed, numpy_rng

    images, targets = [], []
    for i in range(n):
        img, scene, style, t, _ = _random_image(numpy_rng(derive_seed("shapes-extractor", seed, i)))
        images.append(img)
        targets.append(scene_targets(scene, style, t))
    data = {"x": _preprocess_numpy(images)}
    for key in targets[0]:
        data[key] = torch.from_numpy(np.stack([tg[key] for tg in targets]))
    return data


def clip_dataset(n: int, seed: int, split: str = "train") -> tuple[torch.Tensor, list[str]]:
    """(image, caption) pairs of shapes-t2i: 32 and 64 px, mostly flat, some textured."""
    from cgmbench.seeding import derive_seed, numpy_rng
    from cgmbench.worlds import shapes as W

    images, captions = [], []
    for i in range(n):
        rng = numpy_rng(derive_seed("shapes-clip", seed, split, i))
        res = int(rng.choice([32, 64]))
        style = "textured" if rng.random() < 0.2 else "flat"
        spec = W.random_prompt_spec(rng)
        images.append(W.render(W.scene_for_prompt(spec, rng, res), style))
        captions.append(spec["caption"])
    return _preprocess_numpy(images), captions


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------

CNN_CONFIG = {"images": 20000, "batch_size": 128, "steps": 1500, "lr": 2e-3, "weight_decay": 1e-4, "seed": 0}
CLIP_CONFIG = {"images": 20000, "batch_size": 256, "steps": 1200, "lr": 2e-3, "weight_decay": 1e-4, "seed": 0}


def _schedule(step: int, total: int, lr: float) -> float:
    warm = max(1, total // 20)
    if step < warm:
        return lr * (step + 1) / warm
    return 0.5 * lr * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def train_cnn(out: Path, config: dict | None = None, log=print) -> dict:
    cfg = {**CNN_CONFIG, **(config or {})}
    torch.manual_seed(cfg["seed"])
    t0 = time.perf_counter()
    data = cnn_dataset(cfg["images"], cfg["seed"])
    log(f"shapes-cnn: {cfg['images']} training images rendered in {time.perf_counter() - t0:.1f}s")
    model = ShapesCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    g = torch.Generator().manual_seed(cfg["seed"] + 1)
    n, losses = len(data["x"]), []
    model.train()
    for step in range(cfg["steps"]):
        for group in opt.param_groups:
            group["lr"] = _schedule(step, cfg["steps"], cfg["lr"])
        idx = torch.randint(0, n, (cfg["batch_size"],), generator=g)
        out_ = model(data["x"][idx])
        loss = (F.binary_cross_entropy_with_logits(out_["pairs"], data["pairs"][idx])
                + F.cross_entropy(out_["count"], data["count"][idx])
                + F.binary_cross_entropy_with_logits(out_["binary"], data["binary"][idx])
                + F.binary_cross_entropy_with_logits(out_["grid"], data["grid"][idx]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss))
        if step % 100 == 0 or step == cfg["steps"] - 1:
            log(f"shapes-cnn step {step} loss {np.mean(losses[-100:]):.4f} ({time.perf_counter() - t0:.0f}s)")
    model.eval()
    # held-out accuracy of the pair presence head
    held = cnn_dataset(1000, cfg["seed"] + 1000)
    with torch.no_grad():
        pred = model(held["x"])
    pair_acc = float(((pred["pairs"] > 0).float() == held["pairs"]).all(1).float().mean())
    count_acc = float((pred["count"].argmax(1) == held["count"]).float().mean())
    result = {"final_loss": float(np.mean(losses[-100:])), "heldout_pairs_exact": pair_acc,
              "heldout_count_accuracy": count_acc, "train_seconds": round(time.perf_counter() - t0, 1)}
    _save(model, out / CNN_FILE, cfg, result, "cnn")
    log(f"shapes-cnn: {result}")
    return result


def clip_loss(model: ShapesCLIP, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    img = F.normalize(model.encode_image(x), dim=-1)
    txt = F.normalize(model.encode_text(tokens), dim=-1)
    logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T
    # captions that are identical in a batch are positives of each other
    same = (tokens[:, None, :] == tokens[None, :, :]).all(-1).float()
    target = same / same.sum(1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def retrieval_accuracy(model: ShapesCLIP, x: torch.Tensor, captions: list[str], pool: int = 100) -> float:
    """Share of images whose best caption among ``pool`` candidates (its own + the others) has its text."""
    with torch.no_grad():
        img = F.normalize(model.encode_image(x), dim=-1)
        txt = F.normalize(model.encode_text(tokenize(captions)), dim=-1)
    hits = 0
    for start in range(0, len(captions) - pool + 1, pool):
        sim = img[start:start + pool] @ txt[start:start + pool].T
        best = sim.argmax(1).tolist()
        hits += sum(captions[start + b] == captions[start + i] for i, b in enumerate(best))
    return hits / (len(captions) // pool * pool)


def train_clip(out: Path, config: dict | None = None, log=print) -> dict:
    cfg = {**CLIP_CONFIG, **(config or {})}
    torch.manual_seed(cfg["seed"])
    t0 = time.perf_counter()
    x, captions = clip_dataset(cfg["images"], cfg["seed"])
    tokens = tokenize(captions)
    log(f"shapes-clip: {cfg['images']} pairs rendered in {time.perf_counter() - t0:.1f}s")
    model = ShapesCLIP()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    g = torch.Generator().manual_seed(cfg["seed"] + 1)
    losses = []
    model.train()
    for step in range(cfg["steps"]):
        for group in opt.param_groups:
            group["lr"] = _schedule(step, cfg["steps"], cfg["lr"])
        idx = torch.randint(0, len(x), (cfg["batch_size"],), generator=g)
        loss = clip_loss(model, x[idx], tokens[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss))
        if step % 100 == 0 or step == cfg["steps"] - 1:
            log(f"shapes-clip step {step} loss {np.mean(losses[-100:]):.4f} ({time.perf_counter() - t0:.0f}s)")
    model.eval()
    hx, hcap = clip_dataset(1000, cfg["seed"], split="heldout")
    result = {"final_loss": float(np.mean(losses[-100:])), "heldout_retrieval_at_100": retrieval_accuracy(model, hx, hcap),
              "train_seconds": round(time.perf_counter() - t0, 1)}
    _save(model, out / CLIP_FILE, cfg, result, "clip")
    log(f"shapes-clip: {result}")
    return result


def _save(model: nn.Module, path: Path, cfg: dict, result: dict, which: str) -> None:
    from safetensors.torch import save_file

    from cgmbench.weights import sha256_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    path.chmod(0o644)
    info = {
        "file": path.name,
        "sha256": sha256_file(path),
        "command": f"python -m cgmbench.extractors.shapes train --which {which} --out {path.parent}",
        "config": cfg,
        "steps": cfg["steps"],
        **result,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    path.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cgmbench.extractors.shapes",
                                     description="Retrain the shipped shapes-cnn / shapes-clip extractors.")
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train")
    tr.add_argument("--which", choices=["cnn", "clip", "all"], default="all")
    tr.add_argument("--out", required=True, help="folder for the .safetensors and .json files")
    tr.add_argument("--steps", type=int, help="override the number of optimisation steps")
    tr.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is fastest on a shared 2-core machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    override = {"steps": args.steps} if args.steps else {}
    if args.which in ("cnn", "all"):
        train_cnn(out, override, log=lambda m: print(m, file=sys.stderr, flush=True))
    if args.which in ("clip", "all"):
        train_clip(out, override, log=lambda m: print(m, file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
