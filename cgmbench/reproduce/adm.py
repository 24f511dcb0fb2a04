"""The ADM evaluator protocol (openai/guided-diffusion ``evaluations/evaluator.py``) on cgmbench's TF-exact
Inception: FID, sFID, Inception Score, precision and recall of a sample ``.npz`` against a reference ``.npz``.

Both files hold ``arr_0``: uint8 images ``[N, H, W, 3]`` (NHWC). A reference batch may also hold the
statistics of its whole dataset, ``mu``/``sigma`` (pool_3, 2048-d) and ``mu_s``/``sigma_s`` (spatial, 2023-d);
those are used when present, otherwise the statistics are computed from the batch's ``arr_0`` (as the
evaluator does). Conventions reproduced:

* features: ``pool_3`` (2048) and ``mixed_6/conv[..., :7]`` flattened in NHWC order (2023, sFID), from the
  uint8 images fed at the graph input, i.e. the TF1 bilinear resize to 299 and ``(x - 128) / 128``
  (cgmbench's ``tf-exact`` protocol);
* FID / sFID: the Fréchet distance of float64 means and unbiased covariances;
* IS: ``softmax(pool_3 @ W)`` (no bias) over consecutive splits of 5,000 samples, no shuffling, the mean of the
  split scores (the evaluator reports no std);
* precision / recall: k = 3 nearest-neighbour manifolds of pool_3 features, distances in float16 when all
  finite (else float32), precision = samples inside the reference manifold, recall = reference inside the
  samples' manifold.

Files are read with ``allow_pickle=False``; a file without ``arr_0`` or with the wrong dtype/shape is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cgmbench.errors import CgmbenchError, IntegrityError

IS_SPLIT_SIZE = 5000
SPATIAL_DIM = 17 * 17 * 7


def read_batch(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of an ADM ``.npz`` batch (``arr_0`` uint8 NHWC; ``mu``, ``sigma``, ``mu_s``, ``sigma_s`` if there)."""
    path = Path(path)
    if not path.is_file():
        raise CgmbenchError(f"ADM batch {path} does not exist",
                            "fetch it with the command `cgmbench reproduce --list` names for this recipe")
    try:
        with np.load(path, allow_pickle=False) as data:
            out = {k: data[k] for k in ("arr_0", "mu", "sigma", "mu_s", "sigma_s") if k in data.files}
    except (OSError, ValueError) as e:
        raise IntegrityError(f"cannot read ADM batch {path}: {e}",
                             "files holding pickled objects are refused; download the batch again") from None
    images = out.get("arr_0")
    if images is None:
        raise IntegrityError(f"{path} holds no arr_0 images (it is not an ADM sample or reference batch)")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise IntegrityError(f"{path}: arr_0 must be uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
    return out


def batch_features(images: np.ndarray, extractor, batch_size: int = 64,
                   progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """``{"pool3": [N, 2048], "spatial": [N, 2023], "logits": [N, 1008]}`` (float64) of NHWC uint8 images."""
    parts: dict[str, list[torch.Tensor]] = {"pool3": [], "spatial": [], "logits_unbiased": []}
    for lo in range(0, len(images), batch_size):
        chunk = torch.from_numpy(np.ascontiguousarray(images[lo:lo + batch_size].transpose(0, 3, 1, 2)))
        out = extractor.extract(chunk, outputs=tuple(parts), batch_size=batch_size)
        for k in parts:
            parts[k].append(out[k])
        if progress:
            progress(min(lo + batch_size, len(images)))
    return {"pool3": torch.cat(parts["pool3"]).numpy(), "spatial": torch.cat(parts["spatial"]).numpy(),
            "logits": torch.cat(parts["logits_unbiased"]).numpy()}


def inception_score_adm(logits: np.ndarray, split_size: int = IS_SPLIT_SIZE) -> float:
    """The evaluator's IS: consecutive splits of ``split_size`` rows (the last may be shorter), no shuffle, mean."""
    x = torch.from_numpy(np.asarray(logits, np.float64))
    scores = []
    for lo in range(0, len(x), split_size):
        p = torch.softmax(x[lo:lo + split_size], dim=1)
        marginal = p.mean(dim=0, keepdim=True)
        kl = (p * (torch.log(p) - torch.log(marginal))).sum(dim=1).mean()
        scores.append(float(torch.exp(kl)))
    return float(np.mean(scores))


def _stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def evaluate(ref_path: str | Path, sample_path: str | Path, extractor, batch_size: int = 64,
             log: Callable[[str], None] | None = None) -> dict:
    """FID, sFID, IS, precision and recall of ``sample_path`` against ``ref_path`` (see the module docstring)."""
    import warnings

    from cgmbench.metrics.frechet import frechet_distance
    from cgmbench.metrics.precision_recall import precision_recall

    ref, sample = read_batch(ref_path), read_batch(sample_path)
    if log:
        log(f"features of the reference batch ({len(ref['arr_0'])} images)")
    ref_f = batch_features(ref["arr_0"], extractor, batch_size)
    if log:
        log(f"features of the sample batch ({len(sample['arr_0'])} images)")
    smp_f = batch_features(sample["arr_0"], extractor, batch_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small test batches: singular covariances are expected there
        mu, sigma = (ref["mu"], ref["sigma"]) if "mu" in ref and "sigma" in ref else _stats(ref_f["pool3"])
        mu_s, sigma_s = ((ref["mu_s"], ref["sigma_s"]) if "mu_s" in ref and "sigma_s" in ref
                         else _stats(ref_f["spatial"]))
        fid = frechet_distance(*_stats(smp_f["pool3"]), mu, sigma)
        sfid = frechet_distance(*_stats(smp_f["spatial"]), mu_s, sigma_s)
    precision, recall = precision_recall(ref_f["pool3"], smp_f["pool3"], k=3, distance="float16")
    return {
        "fid": fid, "sfid": sfid, "is": inception_score_adm(smp_f["logits"]),
        "precision": precision, "recall": recall,
        "n_samples": int(len(sample["arr_0"])), "n_reference_images": int(len(ref["arr_0"])),
        "reference_statistics": "published mu/sigma" if "mu" in ref else "computed from arr_0",
    }
