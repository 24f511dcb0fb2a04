"""A run's configuration, and the one function that builds it from command-line arguments.

``cgmbench run``, ``cgmbench sweep`` (one run per grid point) and torchrun (``torchrun … -m cgmbench run …``,
the same parser and the same function on every rank) all build their :class:`RunConfig` here, so an option
such as ``--precision`` cannot reach one path and miss another.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace

from cgmbench.errors import CgmbenchError

#: samples per generate() call when --batch-size is not given
DEFAULT_BATCH_SIZE = 64


@dataclass
class RunConfig:
    """Everything that selects and runs one configuration (see ``cgmbench run --help``)."""

    task: str
    model: str
    num_samples: int | None = None
    seed: int = 0
    batch_size: int = DEFAULT_BATCH_SIZE
    out: str | None = None
    resume: bool = False
    knobs: dict = field(default_factory=dict)
    checkpoint: str | None = None
    device: str = "cpu"
    precision: str = "fp32"
    progress: bool = True
    allow_nonfinite: bool = False  # store NaN/inf model output as 0/255 and count it (else: an error)
    #: samples per network pass of a model that chunks its batch (None: automatic, cgmbench.run.execution)
    micro_batch: int | None = None
    #: torch CPU threads (None: cgmbench.threads' default)
    threads: int | None = None
    #: sample even when files only the metrics need are missing (those metrics are recorded as pending)
    allow_pending_metrics: bool = False

    def with_point(self, knobs: dict, out: str, num_samples: int) -> "RunConfig":
        """This configuration at one sweep point: other knobs, its own folder, always resumable."""
        return replace(self, knobs={**self.knobs, **knobs}, out=out, num_samples=num_samples, resume=True)


def parse_knob(text: str) -> tuple[str, str]:
    """``"steps=50"`` -> ``("steps", "50")``; anything else is a clear error."""
    name, sep, value = text.partition("=")
    if not sep or not name or value == "":
        raise CgmbenchError(f"--knob {text!r} is not NAME=VALUE", "e.g. --knob steps=50")
    return name.strip(), value.strip()


def resolve_device(name: str | None) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda…`` without CUDA and unknown devices are errors."""
    import torch

    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CgmbenchError(f"--device {name}: CUDA is not available on this machine", "use --device cpu")
        return name
    if name == "cpu" or name == "mps" and torch.backends.mps.is_available():
        return name
    raise CgmbenchError(f"--device {name!r} is not a device cgmbench can use", "use cpu, cuda or cuda:N")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options shared by ``run`` and ``sweep`` (what to run, how many, where, on what device)."""
    parser.add_argument("--task", required=True, help="task name (cgmbench list tasks) or path to a task .toml")
    parser.add_argument("--model", required=True,
                        help="model name, optionally with a checkpoint variant: NAME or NAME:CHECKPOINT")
    parser.add_argument("--checkpoint", help="a checkpoint file to load instead of the task's default")
    parser.add_argument("--num-samples", type=int, help="number of samples N (default: the task's)")
    parser.add_argument("--seed", type=int, default=0,
                        help="run seed; sample i uses a seed derived from (seed, task, i)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"samples per generate() call (default {DEFAULT_BATCH_SIZE}); when given, models that "
                             "chunk a batch through their networks run this many samples per pass (faster; on a CPU "
                             "samples may then differ in their last bits from other batch sizes: without it a CPU "
                             "run passes one sample at a time and a GPU run the largest chunk that fits its memory)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: CGMBENCH_THREADS, OMP_NUM_THREADS, else the physical cores "
                             "left free by the load average, at most 8; recorded in run.json)")
    parser.add_argument("--allow-pending-metrics", action="store_true",
                        help="sample even when files that only the metrics need are missing; those metrics are "
                             "recorded in metrics_pending (default: stop before sampling and list every missing file)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, … (default: cuda if available)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                        help="fp32 (default) or bf16 autocast for the networks (recorded in run.json)")
    parser.add_argument("--allow-nonfinite", action="store_true",
                        help="store NaN/inf model outputs as 0/255 and record how many samples had them in "
                             "run.json (default: stop with an error naming the first bad sample)")


def run_config_from_args(args: argparse.Namespace, **overrides) -> RunConfig:
    """The :class:`RunConfig` of parsed ``run`` (or ``sweep``) arguments; ``overrides`` replace fields."""
    knobs = dict(parse_knob(k) for k in (getattr(args, "knob", None) or []))
    guidance = getattr(args, "guidance", None)
    if guidance is not None:
        if "guidance_scale" in knobs:
            raise CgmbenchError("give the guidance scale once: --guidance or --knob guidance_scale=…")
        knobs["guidance_scale"] = guidance
    given = getattr(args, "batch_size", None)
    cfg = RunConfig(task=args.task, model=args.model, num_samples=args.num_samples, seed=args.seed,
                    batch_size=DEFAULT_BATCH_SIZE if given is None else given, out=getattr(args, "out", None),
                    resume=bool(getattr(args, "resume", False)), knobs=knobs, checkpoint=args.checkpoint,
                    device=resolve_device(args.device), precision=args.precision,
                    allow_nonfinite=bool(getattr(args, "allow_nonfinite", False)), micro_batch=given,
                    threads=getattr(args, "threads", None),
                    allow_pending_metrics=bool(getattr(args, "allow_pending_metrics", False)))
    return replace(cfg, **overrides)
