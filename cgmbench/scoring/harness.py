"""Scoring a run's samples into its record's ``metrics`` section: the shared metric harness.

For each metric a task's ``[metrics] compute`` names, :func:`compute_metrics` writes one entry
into ``run.json``. The preset comes from the task spec::

    [metrics]
    compute = ["judge", "fid", "clip_score"]
    protocol = "clean"              # resize + normalisation of the feature extractor
    extractor = "shapes-cnn"        # fid, kid, is, precision_recall
    clip_extractor = "shapes-clip"  # optional; clip_score and cmmd (default: shapes-clip for shapes-*
                                    # extractors, clip-vit-l-14 otherwise)

Extraction is batched and streamed over the sample store (:meth:`SampleStore.iter_batches`):
**one pass per extractor**, shared by every metric that needs it (the generated-side moments
are float64 :class:`~cgmbench.metrics.StreamingMoments`; the feature rows are kept as float32
for the bootstrap, KID and precision/recall). The reference side comes from
:mod:`cgmbench.scoring.reference_stats` (cached, content-addressed). Extractors run with TF32 off on uint8 input.

Every feature-metric entry carries its provenance, so that leaderboards never mix protocols:
``value``, ``ci95`` (or null), ``n``, ``protocol``, ``extractor``, ``weights_sha256``,
``official_weights``, ``reference_stats_sha256``, ``n_reference``, ``method``.

=================  ====================================================================================
metric             value and uncertainty
=================  ====================================================================================
fid                Fréchet distance of the moments; ``ci95``: bootstrap over sample rows (reference
                   moments fixed), replicates re-centred on the estimate (FID's resampling bias
                   removed); ``fid_infinity`` (Chong & Forsyth) when N >= 10,000
kid                mean over subsets (``subset_size = min(1000, N, M)``, 100 subsets, torch-fidelity's
                   draw); ``std`` across subsets, ``stderr = std/sqrt(subsets)``, ``ci95 = mean ± 1.96 stderr``;
                   when the subset size equals N (every subset holds every sample) ``ci95`` is a re-centred
                   bootstrap over samples instead (``ci_method`` says so; :func:`cgmbench.metrics.kid.kid_bootstrap_ci`)
is                 Inception Score, 10 splits (torch-fidelity convention); ``ci95``: bootstrap over samples
precision_recall   ``value`` = precision, ``recall`` beside it (k = 3, Kynkäänniemi et al.); ``ci95`` (=
                   ``precision_ci95``) and ``recall_ci95``: bootstrap of the per-sample manifold indicators
                   (precision over samples, or prompts for text conditions; recall over reference rows),
                   the k-NN manifolds held fixed
clip_score         mean of per-sample ``100·max(cos, 0)``; ``ci95``: bootstrap over *prompts* (the samples of a
                   prompt move together)
cmmd               CMMD of L2-normalised image embeddings vs the references; ``ci95``: bootstrap over samples
psnr, ssim         against the true targets of the reference source (paired translation, editing,
                   inpainting): per-sample PSNR (dB, capped at 100 for identical images) and SSIM
                   (torchmetrics' Gaussian 11x11, sigma 1.5, data range 255), mean and bootstrap ``ci95``
lpips              against the same true targets: per-sample LPIPS v0.1, AlexNet (:mod:`cgmbench.extractors.lpips`,
                   version ``lpips-0.1-alex``), mean and bootstrap ``ci95``; ``weights_sha256`` digests the
                   pair (``alexnet_sha256``, ``lin_sha256`` beside it)
cycle_error        unpaired translation: mean absolute error in [0, 1] units between each source image x
                   and ``F(G(x))``, G the model's forward mapping (its stored samples) and F its reverse
                   generator (see :func:`cycle_error_entry`); mean and bootstrap ``ci95``
fcn_score          shapes world: the judge's per-pixel colour-class accuracy against the label map
judge              the exact judge of the offline worlds
=================  ====================================================================================

Metrics this version cannot compute (``lpips`` without its weights files, ``fvd``, ``cycle_error``
without the model's reverse generator, a CLIP score without CLIP weights offline, ...) are listed in
``metrics_pending`` as ``"name: reason"`` -- never silently dropped, never faked.
"""

from __future__ import annotations

import hashlib
import math
import sys
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch

from cgmbench.catalog import SampleInputs, in_group, metric_spec
from cgmbench.errors import CgmbenchError, IntegrityError
from cgmbench.run.samples import SampleStore
from cgmbench.sources.base import Source
from cgmbench.worlds.judge import aggregate

PAIRED_KINDS = ("paired-translation", "editing", "inpainting")
#: fixed batch of the cycle reconstruction and of LPIPS (results do not depend on the run's batch size)
CYCLE_BATCH = 64
LPIPS_BATCH = 64
PSNR_CAP_DB = 100.0
FID_INFINITY_MIN_N = 10_000
N_BOOT = 1000


@dataclass
class HarnessOptions:
    """Knobs of the harness (defaults are what ``cgmbench run`` uses)."""

    batch_size: int = 256
    device: str = "cpu"
    extractor_weights: str | None = None  # --extractor-weights for the main extractor
    seed: int = 0
    max_reference: int | None = None
    log: Callable[[str], None] = field(default=lambda m: print(m, file=sys.stderr))


def default_clip_extractor(task) -> str:
    settings = task.metric_settings
    main = settings.extractor if settings.extractor_given else ""
    if settings.clip_extractor:
        return settings.clip_extractor
    if main in ("shapes-clip",) or main.startswith("clip-"):
        return main
    return "shapes-clip" if main.startswith("shapes-") else "clip-vit-l-14"


def _as_user_error(error: Exception) -> CgmbenchError:
    if isinstance(error, CgmbenchError):
        return error
    return CgmbenchError(f"{type(error).__name__}: {error}")


def load_extractor(name: str, protocol: str, weights_path: str | None = None, device: str = "cpu"):
    """``get_extractor`` with every failure turned into a one-line :class:`CgmbenchError`."""
    from cgmbench.extractors import get_extractor

    try:
        options = {"protocol": protocol} if not name.startswith("clip-") else {}
        return get_extractor(name, weights_path=weights_path, **options).to(device)
    except (ValueError, FileNotFoundError, OSError) as error:
        raise _as_user_error(error) from None


def provenance(extractor, protocol: str, ref=None, method: str = "") -> dict:
    info = extractor.describe()
    recorded = info.get("protocol")
    out = {"protocol": recorded.get("name", protocol) if isinstance(recorded, dict) else protocol,
           "extractor": extractor.name, "weights_sha256": extractor.weights_sha256,
           "official_weights": bool(extractor.is_official_weights), "feature_dim": int(extractor.feature_dim)}
    if getattr(extractor, "model_name", None):
        out["model_name"] = extractor.model_name
    if ref is not None:
        out.update(ref.describe())
    if method:
        out["method"] = method
    return out


def fixed_batches(store: SampleStore, n: int, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, samples)`` in chunks of exactly ``batch_size`` (the last one shorter), whatever the shard layout.

    Network outputs in float32 can depend on the batch composition in their last bits; re-chunking
    makes every metric a function of the samples and ``batch_size`` only, so a resumed run (other
    shards) records exactly the numbers of an uninterrupted one.
    """
    buffer: list[np.ndarray] = []
    held, start = 0, 0
    for _, arr in store.iter_batches(n):
        buffer.append(arr)
        held += len(arr)
        while held >= batch_size:
            joined = np.concatenate(buffer) if len(buffer) > 1 else buffer[0]
            yield start, joined[:batch_size]
            start += batch_size
            rest = joined[batch_size:]
            buffer, held = ([rest] if len(rest) else []), len(rest)
    if held:
        yield start, np.concatenate(buffer) if len(buffer) > 1 else buffer[0]


# ------------------------------------------------------------------------------------ streaming


@dataclass
class SampleFeatures:
    """What one pass of an extractor over the samples produced."""

    moments: object
    features: np.ndarray  # float32 [N, d]
    logits: np.ndarray | None = None


def extract_samples(extractor, store: SampleStore, n: int, batch_size: int, want_logits: bool = False
                    ) -> SampleFeatures:
    """One streamed pass: moments (float64), feature rows (float32) and optionally logits."""
    from cgmbench.metrics import StreamingMoments

    moments, rows, logits = StreamingMoments(), [], []
    for _, arr in fixed_batches(store, n, batch_size):
        if arr.ndim == 5:  # videos: every frame is an image
            arr = arr.reshape(-1, *arr.shape[2:])
        images = torch.from_numpy(np.ascontiguousarray(arr))
        if want_logits and hasattr(extractor, "extract"):
            key = getattr(extractor, "is_logits_output", "logits_unbiased")  # the logits the IS softmax reads
            out = extractor.extract(images, outputs=("pool3", key), batch_size=batch_size)
            feats, lg = out["pool3"], out[key]
        else:
            feats = extractor(images, batch_size=batch_size)
            lg = extractor.logits(images, batch_size=batch_size) if want_logits else None
        if not torch.isfinite(feats).all():
            raise CgmbenchError(f"{extractor.name} features of the samples contain NaN or infinite values",
                                "the extractor weights may be corrupt")
        moments.update(feats)
        rows.append(feats.numpy().astype(np.float32))
        if lg is not None:
            logits.append(lg.numpy())
    return SampleFeatures(moments, np.concatenate(rows), np.concatenate(logits) if logits else None)


# ------------------------------------------------------------------------------------ metrics


def _ci(ci) -> list[float]:
    return [float(ci.low), float(ci.high)]


def fid_entry(sample: SampleFeatures, ref, seed: int = 0) -> dict:
    from cgmbench.metrics import SingularCovarianceWarning, bootstrap_fid, fid_infinity, frechet_distance

    with warnings.catch_warnings(record=True) as caught:  # N < d: recorded with the number, not printed
        warnings.simplefilter("always", SingularCovarianceWarning)
        mu, sigma = sample.moments.compute()
        value = frechet_distance(ref.mu, ref.sigma, mu, sigma)
    notes = sorted({str(w.message) for w in caught if issubclass(w.category, SingularCovarianceWarning)})
    d = mu.shape[0]
    n_boot = 100 if d <= 512 else 25
    with warnings.catch_warnings():  # the point estimate has already warned about N < d
        warnings.simplefilter("ignore", SingularCovarianceWarning)
        boot = bootstrap_fid(sample.features.astype(np.float64), (ref.mu, ref.sigma), n_boot=n_boot, seed=seed)
    shift = float(np.mean(boot.replicates)) - boot.estimate  # FID's resampling bias (duplicated rows)
    low, high = np.percentile(boot.replicates - shift, [2.5, 97.5])
    entry = {"value": value, "ci95": [min(float(low), value), max(float(high), value)], "n": len(sample.features),
             "bootstrap": {"n_boot": n_boot, "std": boot.std, "bias": shift, "unit": "sample rows",
                           "reference": "moments fixed"}}
    if notes:
        entry["warnings"] = notes
    if len(sample.features) >= FID_INFINITY_MIN_N:
        entry["fid_infinity"] = fid_infinity(sample.features.astype(np.float64), ref.mu, ref.sigma, seed=seed)
    return entry


def kid_entry(sample: SampleFeatures, ref, seed: int = 2020) -> dict:
    from cgmbench.metrics import kernel_inception_distance

    if ref.features is None:
        raise CgmbenchError("KID needs reference feature rows; the reference statistics hold only moments")
    m = min(1000, len(sample.features), len(ref.features))
    subsets = 100
    mean, std = kernel_inception_distance(ref.features.astype(np.float64), sample.features.astype(np.float64),
                                          num_subsets=subsets, subset_size=m, seed=seed)
    stderr = std / math.sqrt(subsets)
    entry = {"value": mean, "std": std, "stderr": stderr, "ci95": [mean - 1.96 * stderr, mean + 1.96 * stderr],
             "subsets": subsets, "subset_size": m, "n": len(sample.features)}
    if m == len(sample.features):  # every subset holds every sample: the spread over subsets misses the samples'
        from cgmbench.metrics.kid import kid_bootstrap_ci  # variation (zero width when N equals the reference size)

        lo, hi = kid_bootstrap_ci(ref.features, sample.features, m, n_boot=100, seed=seed)
        entry["ci95"] = [min(lo, mean), max(hi, mean)]
        entry["ci_method"] = ("bootstrap over samples (re-centred), reference subsets redrawn: the subset size "
                              "equals N, so the subsets alone cannot vary over the samples")
    return entry


def is_entry(sample: SampleFeatures, seed: int = 0) -> dict:
    from cgmbench.metrics import bootstrap_ci, inception_score

    if sample.logits is None:
        raise CgmbenchError("the Inception Score needs classifier logits")
    logits = sample.logits
    splits = min(10, len(logits))
    mean, std = inception_score(logits, splits=splits)
    boot = bootstrap_ci(lambda idx: inception_score(logits[idx], splits=splits, shuffle=False)[0],
                        n_boot=100, seed=seed, n_items=len(logits))
    return {"value": mean, "std": std, "splits": splits, "ci95": [min(boot.low, mean), max(boot.high, mean)],
            "n": len(logits)}


def precision_groups(task, source: Source, n: int, n_rows: int) -> tuple[np.ndarray | None, str]:
    """Bootstrap unit of each generated feature row for precision: ``(groups or None, unit name)``.

    The harness's convention (as ``clip_score``): samples whose conditions carry a text
    (text-to-image, editing, text-to-video) are resampled by *prompt* (``source.wrap``: the
    samples of one prompt move together); other tasks by sample. Video rows are frames: the
    frames of a sample move together.
    """
    per_sample = n_rows // n if n and n_rows % n == 0 else 1
    if "text" in str(task.condition_kind):
        units = np.asarray(source.wrap(range(n)), dtype=np.int64)
        return np.repeat(units, per_sample), "prompts"
    if per_sample > 1:
        return np.repeat(np.arange(n, dtype=np.int64), per_sample), "samples"
    return None, "samples"


def precision_recall_entry(sample: SampleFeatures, ref, seed: int = 0, groups: np.ndarray | None = None,
                           unit: str = "samples") -> dict:
    """Precision (``value``) and recall, k = 3, each with a 95% percentile bootstrap interval.

    ``ci95`` / ``precision_ci95``: the per-sample indicators "inside the real manifold" resampled
    over generated samples (or over ``groups``, e.g. prompts); ``recall_ci95``: "inside the
    generated manifold" resampled over the reference rows. The manifolds (k-NN radii) are held
    fixed, so radius-estimation variance is not included
    (:func:`cgmbench.metrics.bootstrap_precision_recall`). Intervals are widened to contain the value.
    """
    from cgmbench.metrics import bootstrap_precision_recall, precision_recall_indicators

    if ref.features is None:
        raise CgmbenchError("precision/recall needs reference feature rows; the reference statistics hold only moments")
    ind = precision_recall_indicators(ref.features.astype(np.float64), sample.features.astype(np.float64), k=3)
    p, r = ind.precision, ind.recall
    ci_p, ci_r = bootstrap_precision_recall(ind, n_boot=N_BOOT, seed=seed, groups_fake=groups)
    ci95_p = [min(ci_p.low, p), max(ci_p.high, p)]
    ci95_r = [min(ci_r.low, r), max(ci_r.high, r)]
    return {"value": p, "precision": p, "recall": r, "value_is": "precision", "k": 3, "ci95": ci95_p,
            "precision_ci95": ci95_p, "recall_ci95": ci95_r, "n": len(sample.features),
            "bootstrap": {"n_boot": N_BOOT, "unit": unit, "recall_unit": "reference rows",
                          "manifolds": "fixed (radius-estimation variance not included)",
                          "precision_std": ci_p.std, "recall_std": ci_r.std}}


def _bootstrap_mean(values: np.ndarray, groups: np.ndarray | None = None, seed: int = 0) -> list[float]:
    """95% percentile interval of the mean; with ``groups`` the groups (prompts) are resampled."""
    from cgmbench.metrics import bootstrap_ci

    if groups is None:
        return _ci(bootstrap_ci(values, n_boot=N_BOOT, seed=seed))
    uniq, inv = np.unique(groups, return_inverse=True)
    sums = np.bincount(inv, weights=values, minlength=len(uniq))
    counts = np.bincount(inv, minlength=len(uniq)).astype(np.float64)
    rng = np.random.default_rng(seed)
    reps = np.empty(N_BOOT)
    for b in range(N_BOOT):
        pick = rng.integers(0, len(uniq), len(uniq))
        reps[b] = sums[pick].sum() / counts[pick].sum()
    low, high = np.percentile(reps, [2.5, 97.5])
    return [float(low), float(high)]


def clip_score_entry(extractor, store: SampleStore, n: int, source: Source, batch_size: int, seed: int = 0
                     ) -> dict:
    from cgmbench.metrics import clip_score

    scores, digest = [], hashlib.sha256(b"cgmbench-prompts")
    for start, arr in fixed_batches(store, n, batch_size):
        idx = list(range(start, start + len(arr)))
        texts = source.conditions(idx).texts
        if not texts:
            raise CgmbenchError("clip_score needs text conditions; this task has none")
        if arr.ndim == 5:  # video: the mean embedding of the frames
            b, t = arr.shape[:2]
            emb = extractor(torch.from_numpy(np.ascontiguousarray(arr.reshape(b * t, *arr.shape[2:]))),
                            batch_size=batch_size).view(b, t, -1).mean(1)
        else:
            emb = extractor(torch.from_numpy(np.ascontiguousarray(arr)), batch_size=batch_size)
        for text in texts:
            digest.update(hashlib.sha256(text.encode("utf-8")).digest())
        scores.append(clip_score(emb.numpy(), extractor.encode_text(texts).numpy()))
    per_sample = np.concatenate(scores)
    prompts = np.asarray(source.wrap(range(n)))
    entry = {"value": float(per_sample.mean()), "ci95": _bootstrap_mean(per_sample, prompts, seed), "n": n,
             "n_prompts": int(len(np.unique(prompts))), "std": float(per_sample.std(ddof=1)) if n > 1 else 0.0,
             "bootstrap": {"n_boot": N_BOOT, "unit": "prompts"}, "scale": 100.0,
             "prompts_sha256": digest.hexdigest()}
    groups = source.categories(range(n)) if hasattr(source, "categories") else {}
    if groups:
        entry["by_category"] = {column: per_category(per_sample, prompts, labels, seed)
                                for column, labels in groups.items()}
    return entry


def per_category(per_sample: np.ndarray, prompts: np.ndarray, labels: list[str], seed: int = 0) -> dict:
    """``{label: {value, ci95, n, n_prompts}}``: the mean of ``per_sample`` within each category, with the
    same prompt-level bootstrap as the overall value (categories in order of first appearance)."""
    labels_arr = np.asarray(labels)
    out = {}
    for label in dict.fromkeys(labels):
        keep = labels_arr == label
        values, units = per_sample[keep], prompts[keep]
        out[label] = {"value": float(values.mean()), "ci95": _bootstrap_mean(values, units, seed),
                      "n": int(keep.sum()), "n_prompts": int(len(np.unique(units)))}
    return out


def cmmd_entry(sample: SampleFeatures, ref, seed: int = 0) -> dict:
    from cgmbench.metrics import bootstrap_ci, cmmd

    if ref.features is None:
        raise CgmbenchError("CMMD needs reference embeddings; the reference statistics hold only moments")

    def unit(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)

    a, b = unit(ref.features), unit(sample.features)
    value = cmmd(a, b)
    boot = bootstrap_ci(lambda idx: cmmd(a, b[idx]), n_boot=50, seed=seed, n_items=len(b))
    return {"value": value, "ci95": [min(boot.low, value), max(boot.high, value)], "n": len(b),
            "bootstrap": {"n_boot": 50, "unit": "samples", "reference": "fixed"}, "sigma": 10.0, "scale": 1000.0}


def pixel_entries(names: list[str], task, store: SampleStore, n: int, seed: int = 0) -> dict[str, dict]:
    """PSNR / SSIM of each sample against its true target (reference source item ``i``)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    from cgmbench.sources.base import open_source
    from cgmbench.scoring.reference_stats import image_sha256

    ref_source = open_source(task, "reference")
    psnr, ssim, digest = [], [], hashlib.sha256(b"cgmbench-targets")
    for start, arr in fixed_batches(store, n, 64):
        target = ref_source.references(list(range(start, start + len(arr))))
        if target.shape != arr.shape:
            raise CgmbenchError(f"targets have shape {target.shape[1:]}, samples {arr.shape[1:]}")
        for image in target:
            digest.update(image_sha256(image).encode())
        x, y = arr.astype(np.float64), target.astype(np.float64)
        mse = ((x - y) ** 2).reshape(len(x), -1).mean(1)
        with np.errstate(divide="ignore"):
            db = np.where(mse > 0, 10 * np.log10(255.0**2 / np.maximum(mse, 1e-300)), PSNR_CAP_DB)
        psnr.append(np.minimum(db, PSNR_CAP_DB))
        if "ssim" in names:
            xt = torch.from_numpy(x.reshape(-1, *x.shape[-3:]))
            yt = torch.from_numpy(y.reshape(-1, *y.shape[-3:]))
            s = structural_similarity_index_measure(xt, yt, data_range=255.0, reduction="none")
            ssim.append(s.reshape(len(x), -1).mean(1).numpy())
    out = {}
    common = {"n": n, "protocol": "pixels", "extractor": None, "weights_sha256": None,
              "reference_stats_sha256": digest.hexdigest(),
              "target": "true targets of the reference source (reference_stats_sha256: digest of the targets)"}
    if "psnr" in names:
        v = np.concatenate(psnr)
        out["psnr"] = {"value": float(v.mean()), "ci95": _bootstrap_mean(v, seed=seed), **common,
                       "method": f"mean per-sample PSNR in dB over all pixels and channels, data range 255, "
                                 f"capped at {PSNR_CAP_DB:g} dB; ci95: bootstrap over samples"}
    if "ssim" in names:
        v = np.concatenate(ssim)
        out["ssim"] = {"value": float(v.mean()), "ci95": _bootstrap_mean(v, seed=seed), **common,
                       "method": "torchmetrics structural_similarity_index_measure (Gaussian 11x11, sigma 1.5, "
                                 "k1 0.01, k2 0.03, data range 255) per sample; ci95: bootstrap over samples"}
    return out


def lpips_entry(task, store: SampleStore, n: int, device: str = "cpu", seed: int = 0) -> dict:
    """LPIPS (v0.1, AlexNet) of each sample against its true target (reference source item ``i``).

    Raises :class:`CgmbenchError` (naming ``cgmbench weights fetch ...``) when a weights file is missing.
    """
    from cgmbench.extractors.lpips import load_lpips
    from cgmbench.sources.base import open_source
    from cgmbench.scoring.reference_stats import image_sha256

    net, info = load_lpips(device)
    ref_source = open_source(task, "reference")
    values, digest = [], hashlib.sha256(b"cgmbench-targets")
    for start, arr in fixed_batches(store, n, LPIPS_BATCH):
        target = ref_source.references(list(range(start, start + len(arr))))
        if target.shape != arr.shape:
            raise CgmbenchError(f"targets have shape {target.shape[1:]}, samples {arr.shape[1:]}")
        for image in target:
            digest.update(image_sha256(image).encode())
        x, y = np.ascontiguousarray(arr), np.ascontiguousarray(target)
        if x.ndim == 5:  # videos: every frame against its target frame, averaged per sample
            b = x.shape[0]
            values.append(net.distance(x.reshape(-1, *x.shape[2:]), y.reshape(-1, *y.shape[2:]))
                          .view(b, -1).mean(1).double().numpy())
        else:
            values.append(net.distance(x, y).double().numpy())
    v = np.concatenate(values)
    return {"value": float(v.mean()), "ci95": _bootstrap_mean(v, seed=seed), "n": n,
            "protocol": info["version"], "extractor": "lpips-alex", "weights_sha256": info["weights_sha256"],
            "official_weights": True, "alexnet_sha256": info["alexnet_sha256"], "lin_sha256": info["lin_sha256"],
            "lin_origin": info["lin_origin"], "version": info["version"],
            "reference_stats_sha256": digest.hexdigest(),
            "target": "true targets of the reference source (reference_stats_sha256: digest of the targets)",
            "method": "LPIPS v0.1 (Zhang et al. 2018), AlexNet taps, inputs x/127.5-1, no resize, spatial mean; "
                      "per sample; ci95: bootstrap over samples; weights_sha256 = sha256(alexnet_sha256 + '\\n' + "
                      "lin_sha256)"}


def cycle_error_entry(model, source: Source, store: SampleStore, n: int, seed: int = 0) -> dict:
    """Cycle-reconstruction error of an unpaired translation model.

    ``value`` = mean over samples of ``mean |x - F(G(x))| / 255``: x the source image of sample ``i``
    (``source.conditions([i]).images``), ``G(x)`` the stored uint8 sample ``i`` and ``F`` the model's
    reverse generator. A model provides F through the optional generator method::

        cycle_reconstruct(samples: uint8 Tensor [B, 3, H, W], conditions) -> uint8 Tensor [B, 3, H, W]

    (``conditions`` are the batch's conditions; the result must depend on sample ``i`` alone).
    The harness calls it in fixed chunks of :data:`CYCLE_BATCH` samples, so resumed and
    uninterrupted runs record the same number whatever their batch size. A model without the
    method (the oracle, most generators), or whose method raises :class:`CgmbenchError` (a CycleGAN
    loaded from an official pretrained ``{name}.pth`` -- one direction's ``G`` only; official
    training writes the two directions as ``latest_net_G_A.pth`` / ``latest_net_G_B.pth`` and
    the cycle error needs both), leaves the metric in ``metrics_pending`` with the reason.
    The reconstruction starts from the uint8 samples, so it includes their quantisation.
    """
    from cgmbench.scoring.reference_stats import image_sha256

    if not hasattr(model, "cycle_reconstruct"):
        raise CgmbenchError(f"model has no reverse generator (model {getattr(model, 'name', '?')!r} defines no "
                            "cycle_reconstruct)")
    errors, digest = [], hashlib.sha256(b"cgmbench-sources")
    with torch.inference_mode():
        for start, arr in fixed_batches(store, n, CYCLE_BATCH):
            conditions = source.conditions(list(range(start, start + len(arr))))
            x = conditions.images
            if x is None:
                raise CgmbenchError("the cycle error needs source images; this task's conditions hold none")
            x = torch.as_tensor(x).cpu()
            samples = torch.from_numpy(np.ascontiguousarray(arr))
            if tuple(x.shape) != tuple(samples.shape):
                raise CgmbenchError(f"source images have shape {tuple(x.shape[1:])}, samples {tuple(samples.shape[1:])}")
            try:
                rec = model.cycle_reconstruct(samples, conditions)
            except CgmbenchError as error:
                raise CgmbenchError(f"model has no reverse generator: {error}") from None
            if not isinstance(rec, torch.Tensor) or rec.dtype != torch.uint8 or rec.shape != samples.shape:
                got = f"{rec.dtype} {tuple(rec.shape)}" if isinstance(rec, torch.Tensor) else type(rec).__name__
                raise CgmbenchError(f"cycle_reconstruct returned {got}; uint8 {tuple(samples.shape)} expected")
            for image in x.numpy():
                digest.update(image_sha256(image).encode())
            diff = (rec.cpu().double() - x.double()).abs() / 255.0
            errors.append(diff.reshape(len(diff), -1).mean(1).numpy())
    v = np.concatenate(errors)
    return {"value": float(v.mean()), "ci95": _bootstrap_mean(v, seed=seed), "n": n, "protocol": "pixels",
            "extractor": None, "weights_sha256": None, "reference_stats_sha256": digest.hexdigest(),
            "target": "the source images (reference_stats_sha256: digest of the sources)",
            "method": f"mean |x - F(G(x))| / 255 per sample over pixels and channels, F = the model's "
                      f"cycle_reconstruct of the uint8 samples in chunks of {CYCLE_BATCH}; ci95: bootstrap over "
                      "samples"}


# ------------------------------------------------------------------------------------ the harness


def compute_metrics(task, source: Source, store: SampleStore, n: int, options: HarnessOptions | None = None,
                    model=None) -> tuple[dict, list[str]]:
    """``(metrics, pending)`` for the metrics ``task`` asks for (see the module docstring).

    ``model``: the generator that made the samples, for metrics that need more than its samples
    (``cycle_error``); without it (``cgmbench score RUN_DIR``) those stay pending."""
    from cgmbench.scoring.reference_stats import reference_stats
    from cgmbench.scoring.resize import for_scoring

    opts = options or HarnessOptions()
    run_knobs = dict((getattr(store, "config", None) or {}).get("knobs") or {})  # what the samples were made with
    store = for_scoring(store, task)  # native-resolution samples resized by the run's protocol (scoring/resize.py)
    settings = task.metric_settings
    names = list(settings.compute)
    protocol = settings.protocol
    metrics: dict[str, dict] = {}
    pending: dict[str, str] = {}
    kind = task.kind

    # -- judge and its pixel accuracy (one pass) ----------------------------------------------
    judge_samples = None
    if ("judge" in names or "fcn_score" in names) and source.has_judge:
        judge_samples = []
        for start, arr in store.iter_batches(n):
            judge_samples.extend(source.judge(arr, list(range(start, start + len(arr)))))
    for name in names:
        if name == "judge" and judge_samples is not None:
            metrics["judge"] = aggregate(judge_samples)
        elif name == "fcn_score":
            if judge_samples is not None and kind == "paired-translation":
                acc = np.array([s["pixel_accuracy"] for s in judge_samples], np.float64)
                metrics["fcn_score"] = {
                    "value": float(acc.mean()), "ci95": _bootstrap_mean(acc, seed=opts.seed), "n": n,
                    "protocol": "pixels", "extractor": None, "weights_sha256": None,
                    "reference_stats_sha256": None,
                    "method": "per-pixel accuracy of the judge's colour classes against the true label map "
                              "(the FCN-score analogue of the shapes world); ci95: bootstrap over samples"}
            else:
                pending["fcn_score"] = "the FCN-score needs the FCN-8s Cityscapes segmenter, not in this version"

    # -- main extractor: fid, kid, is, precision_recall (one pass) -----------------------------
    wanted = in_group("features", names)
    is_name = settings.is_extractor
    if "is" in wanted and is_name and is_name != settings.extractor:  # IS with its own classifier (one more pass)
        wanted = [m for m in wanted if m != "is"]
        try:
            classifier = load_extractor(is_name, protocol, None, opts.device)
            logits = extract_samples(classifier, store, n, opts.batch_size, want_logits=True)
            metrics["is"] = {**is_entry(logits, opts.seed),
                             **provenance(classifier, protocol, None, "Inception Score, torch-fidelity splits"),
                             "reference_stats_sha256": None}
        except IntegrityError:
            raise
        except (ValueError, CgmbenchError) as error:
            pending["is"] = str(_as_user_error(error))
    if wanted:
        name = settings.extractor
        fid_protocol = None
        if "fid" in wanted and task.metrics.get("fid_protocol"):
            from cgmbench.metrics.fid_protocols import get_fid_protocol

            fid_protocol = get_fid_protocol(task.metrics["fid_protocol"])
        augmentation = fid_protocol.reference_augmentation if fid_protocol else "none"
        try:
            extractor = load_extractor(name, protocol, opts.extractor_weights, opts.device)
            sample = extract_samples(extractor, store, n, opts.batch_size, want_logits="is" in wanted)
            ref = fid_ref = None
            if any(m not in ("is", "fid") for m in wanted) or ("fid" in wanted and augmentation == "none"):
                ref = reference_stats(task, extractor, protocol, batch_size=opts.batch_size,
                                      max_images=opts.max_reference, log=opts.log)
            fid_ref = ref
            if "fid" in wanted and augmentation != "none":  # the FID protocol's own reference set
                fid_ref = reference_stats(task, extractor, protocol, batch_size=opts.batch_size,
                                          max_images=opts.max_reference, log=opts.log, augmentation=augmentation)
        except IntegrityError:
            raise
        except CgmbenchError as error:
            for m in wanted:
                pending[m] = str(error)
        else:
            for m in wanted:
                try:
                    if m == "fid":
                        entry = fid_entry(sample, fid_ref, opts.seed)
                        method = ("Fréchet distance of float64 moments (symmetric eigen method); ci95: bootstrap "
                                  "over sample rows, bias re-centred")
                        if fid_protocol is not None:
                            from cgmbench.metrics.fid_protocols import protocol_deviations

                            deviations = protocol_deviations(fid_protocol, run_knobs, protocol)
                            entry.update(fid_protocol=fid_protocol.to_dict(), deviations=deviations,
                                         comparable=not deviations)
                    elif m == "kid":
                        entry, method = kid_entry(sample, ref), "unbiased polynomial MMD^2, torch-fidelity subsets"
                    elif m == "is":
                        entry, method = is_entry(sample, opts.seed), "Inception Score, torch-fidelity splits"
                    else:
                        groups, unit = precision_groups(task, source, n, len(sample.features))
                        entry = precision_recall_entry(sample, ref, opts.seed, groups, unit)
                        method = (f"k-NN manifolds, k=3; ci95: bootstrap of the per-sample indicators, precision over "
                                  f"{unit}, recall over reference rows, manifolds fixed")
                except (ValueError, CgmbenchError) as error:
                    pending[m] = str(_as_user_error(error))
                    continue
                for note in entry.get("warnings", []):
                    opts.log(f"cgmbench: warning: {m}: {note}")
                used_ref = fid_ref if m == "fid" else ref if m != "is" else None
                metrics[m] = {**entry, **provenance(extractor, protocol, used_ref, method)}
                if m == "is":
                    metrics[m]["reference_stats_sha256"] = None

    # -- CLIP extractor: clip_score, cmmd (one pass each) --------------------------------------
    wanted = in_group("clip", names)
    if wanted:
        name = default_clip_extractor(task)
        try:
            clip = load_extractor(name, protocol, None, opts.device)
            if not hasattr(clip, "encode_text") and "clip_score" in wanted:
                raise CgmbenchError(f"extractor {name!r} embeds no text; clip_score needs a CLIP extractor")
        except CgmbenchError as error:
            for m in wanted:
                pending[m] = str(error)
        else:
            clip_protocol = clip.describe().get("protocol", {}).get("name", protocol)
            for m in wanted:
                try:
                    if m == "clip_score":
                        entry = clip_score_entry(clip, store, n, source, opts.batch_size, opts.seed)
                        ref, method = None, "per-sample 100*max(cos, 0); ci95: bootstrap over prompts"
                    else:
                        ref = reference_stats(task, clip, clip_protocol, batch_size=opts.batch_size,
                                              max_images=opts.max_reference, log=opts.log)
                        sample = extract_samples(clip, store, n, opts.batch_size)
                        entry, method = cmmd_entry(sample, ref, opts.seed), "RBF MMD, sigma 10, x1000, unit embeddings"
                except IntegrityError:
                    raise
                except (ValueError, CgmbenchError) as error:
                    pending[m] = str(_as_user_error(error))
                    continue
                metrics[m] = {**entry, **provenance(clip, clip_protocol, ref, method)}
                if ref is None:  # the reference side of the CLIP score is the prompt list
                    metrics[m]["reference_stats_sha256"] = entry["prompts_sha256"]

    # -- pixel metrics against true targets ------------------------------------------------------
    wanted = in_group("pixel", names)
    if wanted:
        if kind in PAIRED_KINDS:
            try:
                metrics.update(pixel_entries(wanted, task, store, n, opts.seed))
            except CgmbenchError as error:
                for m in wanted:
                    pending[m] = str(error)
        else:
            for m in wanted:
                pending[m] = f"{m} needs a true target per sample; a {kind} task has none"

    # -- LPIPS against true targets --------------------------------------------------------------
    if "lpips" in names:
        if kind in PAIRED_KINDS:
            try:
                metrics["lpips"] = lpips_entry(task, store, n, opts.device, opts.seed)
            except IntegrityError:  # a corrupt file is an error, not pending
                raise
            except CgmbenchError as error:
                pending["lpips"] = f"LPIPS weights unavailable: {error}"
        else:
            pending["lpips"] = f"lpips needs a true target per sample; a {kind} task has none"

    # -- cycle error: needs the model's reverse generator ---------------------------------------
    if "cycle_error" in names:
        if kind != "unpaired-translation":
            pending["cycle_error"] = f"cycle_error is defined for unpaired-translation tasks, not {kind}"
        elif model is None:
            pending["cycle_error"] = ("the cycle error needs the model's reverse generator; re-scoring samples "
                                      "without the model (cgmbench score) cannot compute it")
        else:
            try:
                metrics["cycle_error"] = cycle_error_entry(model, source, store, n, opts.seed)
            except CgmbenchError as error:
                pending["cycle_error"] = str(error)

    # -- video metrics (issue 16): FVD under a named protocol and the temporal metrics, one module ---------
    wanted = in_group("video", names)
    if wanted:
        from cgmbench.scoring.video import video_entries

        got, why = video_entries(wanted, task, source, store, n, seed=opts.seed, device=opts.device)
        metrics.update(got)
        pending.update(why)

    # -- metrics computed from the samples alone: the catalog holds their functions ---------------
    for m in in_group("samples", names):
        spec = metric_spec(m)
        if spec.kinds and kind not in spec.kinds:
            pending[m] = f"{m} is defined for {', '.join(sorted(spec.kinds))} tasks, not {kind}"
            continue
        try:
            metrics[m] = spec.compute(SampleInputs(task, source, store, n, seed=opts.seed, model=model))
        except IntegrityError:
            raise
        except CgmbenchError as error:
            pending[m] = str(error)

    for name in names:
        if name not in metrics and name not in pending:
            pending[name] = (metric_spec(name).pending
                             or f"{name} is not computed for a {kind} task by this version")
    ordered = {m: metrics[m] for m in names if m in metrics}
    return ordered, [f"{m}: {pending[m]}" for m in names if m in pending]


def summary_value(metric: dict) -> float | None:
    """The headline number of a metric entry: ``value`` or ``overall.value``."""
    if "value" in metric and isinstance(metric["value"], (int, float)):
        return float(metric["value"])
    overall = metric.get("overall")
    if isinstance(overall, dict) and isinstance(overall.get("value"), (int, float)):
        return float(overall["value"])
    return None
