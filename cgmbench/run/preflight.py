"""Preflight: every file a run needs, checked before anything is sampled, and listed at once when missing.

The files of a run come from four places, each declaring its own (:mod:`cgmbench.requirements`):

* the model: :meth:`cgmbench.generator.Generator.required_files` (checkpoint, VAE, text encoders, tokenizers;
  the oracle's real images);
* the task's condition source: :meth:`cgmbench.sources.base.Source.required_files` (dataset folders);
* the metrics the task computes: the feature extractors of their harness pass (a weights-registry entry of the
  extractor's name: ``inception-v3``, ``clip-vit-l-14``, ...), LPIPS' AlexNet, the reference source of the
  metrics that compare against real images (FID, KID, precision/recall, CMMD, PSNR/SSIM/LPIPS, FVD), FVD's clip
  network (the task's FVD protocol: I3D or VideoMAE-v2 weights), the CLIP extractor of the frame-consistency
  metrics, R-precision's image/text extractor (the DAMSM encoders and vocabulary on CUB/COCO), and whatever a
  :class:`cgmbench.catalog.MetricSpec` declares in ``requires``.

:func:`check` raises one :class:`MissingFiles` naming every missing file, each with the command that gets it, when

* a file needed to *sample* (the model's, the conditions') is missing: the metrics' missing files are listed too,
  so that one ``cgmbench fetch --task T --model M`` (:func:`fetch_command`) gets everything; or
* the missing files would leave *none* of the task's metrics computable (a run that would sample everything and
  score nothing), unless ``allow_pending_metrics`` (``--allow-pending-metrics``: sample now, score later with
  ``cgmbench score RUN_DIR``).

When only some metrics lack files (an offline shapes task without LPIPS' AlexNet), the run goes on: a warning at
the start names the files and their commands, and those metrics are recorded in ``metrics_pending``; samples are
stored, so ``cgmbench score`` computes them once the files are there.

Coverage: the model families in ``baselines/`` and the metrics above. An extractor registered by a plugin declares
its files with a ``required_files()`` attribute on its factory (the DAMSM extractors do).
"""

from __future__ import annotations

from typing import Callable

from cgmbench.errors import CgmbenchError
from cgmbench.requirements import Requirement, missing, unique, weights_file, with_get

#: task kinds whose metrics compare each sample with its true target (the reference source)
PAIRED_KINDS = ("paired-translation", "editing", "inpainting")


class MissingFiles(CgmbenchError):
    """Files a run needs are not on this machine; ``missing`` lists them (:class:`Requirement`)."""

    def __init__(self, message: str, hint: str, missing_files: list[Requirement]):
        super().__init__(message, hint)
        self.missing = missing_files


def fetch_command(task: str, model: str | None = None) -> str:
    return f"cgmbench fetch --task {task}" + (f" --model {model}" if model else "")


# ------------------------------------------------------------------------------------------ collecting


def model_requirements(task, model_spec: str, checkpoint: str | None = None) -> list[Requirement]:
    """What model ``model_spec`` (``NAME[:VARIANT]``) reads for ``task``; the variant defaults to the task's
    ``[checkpoints]`` entry, as :func:`cgmbench.models.registry.load_model` chooses it."""
    from cgmbench.models.registry import check_accepts, model_class, parse_model_spec

    name, variant = parse_model_spec(model_spec)
    cls = model_class(name)
    check_accepts(cls, name, task)
    if variant is None and checkpoint is None:
        variant = task.checkpoints.get(name)
    return [_fetch_hint(task, r) for r in cls.required_files(task, variant=variant, checkpoint=checkpoint)]


def source_requirements(task, section: str, purpose: str, oracle: bool = False) -> list[Requirement]:
    """What the task's ``section`` source reads; a dataset that ``cgmbench fetch`` can download says so."""
    from cgmbench.sources.base import source_class

    params = task.conditions if section == "conditions" else task.reference
    return [_fetch_hint(task, r) for r in source_class(params["source"]).required_files(task, params, purpose,
                                                                                         oracle=oracle)]


def _fetch_hint(task, r: Requirement) -> Requirement:
    if r.kind == "data" and r.fetchable:
        return with_get(r, f"{fetch_command(task.name)} downloads and unpacks it; by hand: {r.get}")
    return r


def extractor_requirements(name: str, why: str) -> list[Requirement]:
    """The weights of feature extractor ``name``: its weights-registry entry of the same name (the CLIP ones may
    also sit in the Hugging Face cache), or what its factory's ``required_files()`` returns; the shipped
    extractors need none."""
    from cgmbench import weights

    if name in weights.known_files():
        return [weights_file(name, f"extractor {name} ({why})", hub_cache=name.startswith("clip-"))]
    from cgmbench.extractors.registry import EXTRACTORS

    declared = getattr(EXTRACTORS.get(name), "required_files", None)
    return list(declared()) if callable(declared) else []


def lpips_requirements(why: str) -> list[Requirement]:
    """LPIPS v0.1 (AlexNet): the torchvision AlexNet file, and the linear layers unless torchmetrics ships them."""
    from cgmbench.extractors.lpips import ALEXNET_WEIGHTS, LIN_WEIGHTS, torchmetrics_lin_copy

    out = [weights_file(ALEXNET_WEIGHTS, f"LPIPS backbone ({why})")]
    if torchmetrics_lin_copy() is None:
        out.append(weights_file(LIN_WEIGHTS, f"LPIPS linear layers ({why})"))
    return out


def video_requirements(task, metric: str) -> list[Requirement]:
    """FVD: the weights of the task's FVD clip network; the frame-consistency metrics: the task's CLIP extractor;
    the others (flickering, dynamic degree, the shapes motion judge) read nothing."""
    from cgmbench.scoring.harness import default_clip_extractor
    from cgmbench.scoring.video import VIDEO_EXTRACTOR_WEIGHTS, fvd_extractor_name

    if metric == "fvd":
        net = fvd_extractor_name(task)
        if net in VIDEO_EXTRACTOR_WEIGHTS:
            return [weights_file(VIDEO_EXTRACTOR_WEIGHTS[net], f"FVD clip network {net} ({metric})")]
        return []
    if metric in ("clip_frame_consistency", "first_frame_consistency"):
        return extractor_requirements(default_clip_extractor(task), metric)
    return []


def metric_requirements(task) -> dict[str, list[Requirement]]:
    """What each metric of ``task`` reads (see the module docstring): metric -> requirements (``[]``: none)."""
    from cgmbench.catalog import metric_spec
    from cgmbench.scoring.harness import default_clip_extractor

    settings = task.metric_settings
    out: dict[str, list[Requirement]] = {}
    for m in settings.compute:
        spec = metric_spec(m)
        if spec.pending or (spec.kinds and task.kind not in spec.kinds):
            continue  # never computed for this task: nothing to read
        reqs: list[Requirement] = []
        reference = False
        if spec.group == "features":
            own_is = m == "is" and settings.is_extractor  # IS with its own classifier (the harness's extra pass)
            reqs += extractor_requirements(settings.is_extractor if own_is else settings.extractor, m)
            reference = m != "is"
        elif spec.group == "clip":
            reqs += extractor_requirements(default_clip_extractor(task), m)
            reference = m == "cmmd"
        elif spec.group == "pixel":
            reference = task.kind in PAIRED_KINDS
        elif spec.group == "lpips" and task.kind in PAIRED_KINDS:
            reqs += lpips_requirements(m)
            reference = True
        elif spec.group == "video":
            reqs += video_requirements(task, m)
            reference = m == "fvd"
        elif m == "r_precision":
            from cgmbench.scoring.r_precision_entry import r_precision_settings

            reqs += extractor_requirements(r_precision_settings(task)["extractor"], m)
        if reference:
            reqs += source_requirements(task, "reference", f"reference images ({m})")
        if spec.requires is not None:
            reqs += list(spec.requires(task))
        out[m] = reqs
    return out


def run_requirements(task, model_spec: str, checkpoint: str | None = None) -> tuple[list, list]:
    """``(needed to sample, needed to score)``: the model's and the conditions' files, and the metrics'."""
    sampling = model_requirements(task, model_spec, checkpoint) + source_requirements(task, "conditions",
                                                                                      "conditions")
    scoring = [r for reqs in metric_requirements(task).values() for r in reqs]
    return unique(sampling), unique(scoring)


# ------------------------------------------------------------------------------------------ checking


def describe_missing(items: list[Requirement]) -> str:
    return "; ".join(f"({i}) {r.describe()}" for i, r in enumerate(items, 1))


def check(task, model_spec: str, checkpoint: str | None = None, allow_pending_metrics: bool = False,
          log: Callable[[str], None] | None = None) -> list[Requirement]:
    """Raise :class:`MissingFiles` listing every missing file of the run when one is needed to sample, or when the
    missing files would leave none of the task's metrics computable (see the module docstring). Otherwise return the
    missing metric files (their metrics will be pending; a warning naming them is logged)."""
    sampling = unique(model_requirements(task, model_spec, checkpoint)
                      + source_requirements(task, "conditions", "conditions"))
    per_metric = metric_requirements(task)
    lacking_sampling = missing(sampling)
    seen = {r.key for r in lacking_sampling}
    lacking_scoring = [r for r in missing([r for reqs in per_metric.values() for r in reqs]) if r.key not in seen]
    lacking_keys = {r.key for r in lacking_scoring} | seen
    blocked = [m for m, reqs in per_metric.items() if any(r.key in lacking_keys for r in reqs)]
    nothing_to_score = bool(per_metric) and len(blocked) == len(per_metric)
    fetch_all = fetch_command(task.name, model_spec)
    if lacking_sampling or (nothing_to_score and not allow_pending_metrics):
        blocking = lacking_sampling + lacking_scoring
        how = f"get them all at once: {fetch_all}"
        if not all(r.fetchable for r in blocking):
            how += " (it lists the manual steps it cannot do)"
        if not lacking_sampling:
            how += ("; or pass --allow-pending-metrics to sample anyway and score later with `cgmbench score RUN_DIR`")
        raise MissingFiles(f"{model_spec} on {task.name} needs {len(blocking)} file(s) that are not on this "
                           f"machine: {describe_missing(blocking)}", how, blocking)
    if lacking_scoring and log is not None:
        log(f"cgmbench: warning: {', '.join(blocked)} will be recorded as pending: {len(lacking_scoring)} file(s) are "
            f"missing: {describe_missing(lacking_scoring)}; get them with {fetch_all}, then score the run again "
            "with `cgmbench score RUN_DIR`")
    return lacking_scoring
