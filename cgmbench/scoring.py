"""Scoring a run's samples into its record's ``metrics`` section.

The judge (exact adherence scores of the offline worlds) is computed here; every other metric a
task names goes through the shared metric harness. Metrics this version cannot compute are
listed in ``metrics_pending`` — never silently dropped, never faked.
"""

from __future__ import annotations

from .samples import SampleStore
from .sources import Source
from .worlds.judge import aggregate

#: metrics the harness in this version computes (besides the judge)
HARNESS_METRICS: tuple[str, ...] = ()


def score_judge(source: Source, store: SampleStore, n: int) -> dict:
    per_sample = []
    for start, arr in store.iter_batches(n):
        per_sample.extend(source.judge(arr, list(range(start, start + len(arr)))))
    return aggregate(per_sample)


def compute_metrics(task, source: Source, store: SampleStore, n: int) -> tuple[dict, list[str]]:
    """``(metrics, pending)`` for the metrics ``task`` asks for."""
    metrics, pending = {}, []
    for name in task.metrics.get("compute", []):
        if name == "judge" and source.has_judge:
            metrics["judge"] = score_judge(source, store, n)
        elif name in HARNESS_METRICS:  # pragma: no cover - filled by the metric harness
            raise NotImplementedError
        else:
            pending.append(name)
    return metrics, pending


def summary_value(metric: dict) -> float | None:
    """The headline number of a metric entry: ``value`` or ``overall.value``."""
    if "value" in metric and isinstance(metric["value"], (int, float)):
        return float(metric["value"])
    overall = metric.get("overall")
    if isinstance(overall, dict) and isinstance(overall.get("value"), (int, float)):
        return float(overall["value"])
    return None

