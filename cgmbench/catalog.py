"""The metric catalog: one declaration per metric, from which everything else is derived.

A :class:`MetricSpec` states a metric's name, its direction (``"min"``: lower is better), the harness pass that
computes it (``group``), what it needs, the tolerance a re-scoring must meet (:mod:`cgmbench.results.submit`),
and, for metrics computed from the samples alone (``group = "samples"``), the function itself. The task
validator's known names, the leaderboard's and Pareto analysis' directions, the harness's groups and the
submission tolerances all read this table; nothing else lists metrics.

Adding a metric = one module with its function + one :func:`register_metric` call (+ its test)::

    register_metric(MetricSpec("mean_brightness", "max", "samples", "mean pixel value / 255",
                               compute=my_module.mean_brightness_entry))

``compute(inputs)`` receives :class:`SampleInputs` and returns the metric's record entry: at least ``value``
(a finite float), ``ci95`` (``[lo, hi]`` or None) and ``n``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from cgmbench.errors import CgmbenchError

#: the harness passes; metrics of one group share one pass over the samples (one extractor, one reference)
GROUPS = ("judge", "features", "clip", "pixel", "lpips", "model", "video", "samples")


@dataclass(frozen=True)
class MetricSpec:
    """One metric: see the module docstring."""

    name: str
    direction: str
    group: str
    description: str
    #: re-scoring tolerance ``(abs, rel)``: ``|claimed - rescored| <= abs + rel * |rescored|``
    tolerance: tuple[float, float] = (1e-6, 1e-3)
    #: task kinds it is defined for (empty: every kind)
    kinds: frozenset[str] = frozenset()
    #: names recorded inside the entry that have their own direction (``precision_recall`` -> precision, recall)
    parts: tuple[str, ...] = ()
    #: for ``group = "samples"``: ``compute(SampleInputs) -> entry``
    compute: Callable[["SampleInputs"], dict] | None = None
    #: why this version cannot compute it (recorded in ``metrics_pending``), or None
    pending: str | None = None
    #: ``requires(task) -> [Requirement]``: files it reads beyond what its group's pass declares (the run's
    #: preflight, :mod:`cgmbench.run.preflight`, checks them before sampling), or None
    requires: Callable[[Any], list] | None = None
    #: the fields beside ``value`` that a submitted entry must carry (:func:`provenance_fields`); None: its group's
    #: (:data:`GROUP_PROVENANCE`)
    provenance: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.direction not in ("min", "max"):
            raise ValueError(f"metric {self.name}: direction must be 'min' or 'max', got {self.direction!r}")
        if self.group not in GROUPS:
            raise ValueError(f"metric {self.name}: group must be one of {GROUPS}, got {self.group!r}")
        if self.group == "samples" and self.compute is None:
            raise ValueError(f"metric {self.name}: a 'samples' metric needs its compute function")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"metric name {self.name!r}: lower-case letters, digits and '_'")


@dataclass
class SampleInputs:
    """What a ``samples`` metric may read: the task, its condition source, the sample store and the run."""

    task: Any
    source: Any
    store: Any
    n: int
    seed: int = 0
    model: Any = None
    extra: dict = field(default_factory=dict)


_CATALOG: dict[str, MetricSpec] = {}
#: entry-point group of third-party metric modules; importing one registers its metrics
ENTRY_POINT_GROUP = "cgmbench.metrics"
_plugins_loaded = False


def _load_plugins() -> None:
    """Import the modules named by the ``cgmbench.metrics`` entry points (once; a broken one is an error)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as e:  # a broken plugin must not look like a cgmbench bug
            raise CgmbenchError(f"metric plugin {ep.name!r} ({ep.value}) could not be imported: "
                                f"{type(e).__name__}: {e}") from None


def register_metric(spec: MetricSpec, replace: bool = False) -> MetricSpec:
    """Add ``spec`` to the catalog (``replace=True`` to redefine a name, e.g. in a test)."""
    if not isinstance(spec, MetricSpec):
        raise TypeError(f"{spec!r} is not a MetricSpec")
    if spec.name in _CATALOG and not replace:
        raise ValueError(f"metric {spec.name!r} is already in the catalog")
    _CATALOG[spec.name] = spec
    return spec


def unregister_metric(name: str) -> None:
    _CATALOG.pop(name, None)


def known_metrics() -> tuple[str, ...]:
    _load_plugins()
    return tuple(_CATALOG)


def metric_spec(name: str) -> MetricSpec:
    _load_plugins()
    if name not in _CATALOG:
        raise CgmbenchError(f"unknown metric {name!r}", f"known: {', '.join(_CATALOG)}")
    return _CATALOG[name]


def in_group(group: str, names=None) -> list[str]:
    """The metrics of ``group`` among ``names`` (default: the whole catalog), in the order given."""
    _load_plugins()
    names = list(_CATALOG) if names is None else list(names)
    return [m for m in names if m in _CATALOG and _CATALOG[m].group == group]


def metric_base(metric: str) -> str:
    """The recorded metric a name refers to: ``judge`` of ``judge.color``, ``clip_score`` of
    ``clip_score[category=Colors]``."""
    return re.split(r"[.\[]", metric, maxsplit=1)[0]


def directions() -> dict[str, str]:
    """Every recorded name (metrics and their parts) -> ``"min"``/``"max"``."""
    _load_plugins()
    out = {}
    for spec in _CATALOG.values():
        out[spec.name] = spec.direction
        for part in spec.parts:
            out[part] = spec.direction
    return out


def direction(metric: str) -> str:
    """``"min"`` or ``"max"`` for a metric name (``"judge.color"`` and ``"clip_score[category=Colors]"`` use the
    direction of ``judge`` / ``clip_score``)."""
    table = directions()
    base = metric_base(metric)
    if base not in table:
        raise CgmbenchError(f"no known direction for metric {metric!r}", f"known metrics: {', '.join(sorted(table))}")
    return table[base]


#: what a submitted entry must say about how it was made, by harness pass. Only the passes that compare with
#: reference statistics (or with the true targets, or the prompt list) have a ``reference_stats_sha256``; masked,
#: temporal, judge-based and other sample-only metrics have none, and a submission is not asked for one.
FEATURE_PROVENANCE = ("protocol", "extractor", "weights_sha256", "reference_stats_sha256", "n")
GROUP_PROVENANCE = {
    "features": FEATURE_PROVENANCE, "clip": FEATURE_PROVENANCE, "lpips": FEATURE_PROVENANCE,
    "pixel": ("protocol", "reference_stats_sha256", "n"), "model": ("protocol", "reference_stats_sha256", "n"),
    "judge": ("n",), "video": ("n",), "samples": ("n",),
}


def provenance_fields(metric: str) -> tuple[str, ...]:
    """The fields beside ``value`` a submitted entry of ``metric`` must carry (an entry naming an ``extractor``
    must also carry its ``weights_sha256``; :func:`cgmbench.run.record.validate_record`)."""
    spec = metric_spec(metric)
    return spec.provenance if spec.provenance is not None else GROUP_PROVENANCE[spec.group]


def tolerance(metric: str) -> tuple[float, float]:
    return metric_spec(metric).tolerance


# ---------------------------------------------------------------------------------------------- the suite's

_PAIRED = frozenset({"paired-translation", "editing", "inpainting"})
for _spec in (
    MetricSpec("judge", "max", "judge", "exact shapes-world judge: fraction of conditions met (per attribute too)",
               tolerance=(1e-6, 0.0)),
    MetricSpec("fcn_score", "max", "judge", "per-pixel accuracy of the judge's colour classes against the true "
               "label map (the FCN-score analogue of the shapes world)", kinds=frozenset({"paired-translation"}),
               provenance=("protocol", "n")),
    MetricSpec("fid", "min", "features", "Fréchet distance of feature moments (float64, symmetric eigen method)"),
    MetricSpec("kid", "min", "features", "kernel inception distance: unbiased polynomial MMD^2 over subsets"),
    MetricSpec("is", "max", "features", "Inception Score (torch-fidelity splits)",
               provenance=("protocol", "extractor", "weights_sha256", "n")),  # no reference side
    MetricSpec("precision_recall", "max", "features", "k-NN manifold precision and recall (k = 3)",
               parts=("precision", "recall")),
    MetricSpec("clip_score", "max", "clip", "100 * max(cos(image, prompt), 0), averaged"),
    MetricSpec("cmmd", "min", "clip", "RBF MMD of CLIP image embeddings (sigma 10, x1000)"),
    MetricSpec("psnr", "max", "pixel", "PSNR against the true target per sample", kinds=_PAIRED),
    MetricSpec("ssim", "max", "pixel", "SSIM against the true target per sample", kinds=_PAIRED),
    MetricSpec("lpips", "min", "lpips", "LPIPS v0.1 (AlexNet) against the true target per sample", kinds=_PAIRED),
    MetricSpec("cycle_error", "min", "model", "L1 of x -> G_A -> G_B -> x' (CycleGAN's reverse generator)",
               kinds=frozenset({"unpaired-translation"})),
):
    register_metric(_spec)

# issue 18 (reproduction recipes): sFID, the ADM evaluator's spatial FID (Inception mixed_6/conv[..., :7], 2023-d)
for _spec in (
    MetricSpec("sfid", "min", "features", "spatial FID: Fréchet distance of Inception mixed_6/conv features "
               "(first 7 channels, 17x17x7 = 2023-d), as the ADM evaluator",
               pending="sFID is computed by `cgmbench reproduce` from ADM batches (cgmbench.reproduce.adm); the run "
                       "harness does not extract spatial features yet"),
):
    register_metric(_spec)

# ------------------------------------------------- editing (issue 15): cgmbench/metrics/editing.py


def _editing_compute(name: str):
    def compute(inputs):
        from cgmbench.metrics.editing import COMPUTE

        return COMPUTE[name](inputs)

    compute.__name__ = f"{name}_entry"
    return compute


_EDIT = frozenset({"editing", "inpainting"})
for _spec in (
    *(MetricSpec(f"{_m}_bg", _d, "samples", f"background {_m.upper()} vs the source image: true masked mean over "
                 "the unedited pixels", kinds=_EDIT, compute=_editing_compute(f"{_m}_bg"))
      for _m, _d in (("psnr", "max"), ("mse", "min"), ("ssim", "max"), ("lpips", "min"))),
    *(MetricSpec(f"{_m}_bg_pie_compat", _d, "samples", f"background {_m.upper()} by PIE-Bench's protocol: both "
                 "images times (1 - mask), whole frame (diluted by the mask area; not a masked mean)", kinds=_EDIT,
                 compute=_editing_compute(f"{_m}_bg_pie_compat"))
      for _m, _d in (("psnr", "max"), ("mse", "min"), ("ssim", "max"), ("lpips", "min"))),
    MetricSpec("edit_success", "max", "samples", "exact shapes-world judge per edit: the edit was made and every "
               "other object is unchanged", tolerance=(1e-6, 0.0), kinds=frozenset({"editing"}),
               compute=_editing_compute("edit_success")),
    MetricSpec("clip_direction_shapes_clip", "max", "samples", "CLIP directional similarity cos(I1 - I0, T1 - T0) "
               "with the shipped shapes-clip backbone", kinds=frozenset({"editing"}),
               compute=_editing_compute("clip_direction_shapes_clip"),
               provenance=("protocol", "extractor", "weights_sha256", "n")),
):
    register_metric(_spec)

# ---------------------------------------------------------------------------------------------- issue 13 (GAN-era t2i)


def _r_precision_entry(inputs: "SampleInputs") -> dict:
    from cgmbench.scoring.r_precision_entry import r_precision_entry

    return r_precision_entry(inputs)


for _spec in (
    MetricSpec("r_precision", "max", "samples", "DAMSM R-precision (%): the true caption ranked first among 1 + 99 "
               "mismatched ones by image-text cosine; protocol dmgan (other-class negatives) or uniform",
               tolerance=(1e-6, 0.0), kinds=frozenset({"text-to-image"}), compute=_r_precision_entry),
):
    register_metric(_spec)

# issue 16 (video): FVD and the temporal metrics, computed by the harness's video
# pass (cgmbench/scoring/video.py) on lossless uint8 [N, T, 3, H, W] samples
for _spec in (
    MetricSpec("fvd", "min", "video", "Fréchet video distance under the task's named FVD protocol "
               "(clip features of I3D, VideoMAE-v2 or the shapes-cnn-video stand-in)", tolerance=(1e-6, 1e-6),
               # its reference side is the real clips it drew (computed each time, no cached statistics)
               provenance=("protocol", "extractor", "weights_sha256", "real_clip_starts_sha256", "n")),
    MetricSpec("clip_frame_consistency", "max", "video", "mean cosine of consecutive frame embeddings (CLIP-Temp)",
               provenance=("extractor", "weights_sha256", "n")),
    MetricSpec("first_frame_consistency", "max", "video", "mean cosine of every later frame with the first",
               provenance=("extractor", "weights_sha256", "n")),
    MetricSpec("temporal_flickering", "max", "video", "VBench: (255 - mean abs consecutive-frame difference)/255"),
    MetricSpec("dynamic_degree", "max", "video", "fraction of videos that move (VBench rule, frame differences)"),
    MetricSpec("motion_accuracy", "max", "video", "shapes judge: objects tracked and moving the captioned way",
               kinds=frozenset({"text-to-video"})),
):
    register_metric(_spec)
