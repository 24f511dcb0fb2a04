"""``r_precision``: DAMSM R-precision of a run's samples (the ``samples`` metric registered in the catalog).

For sample ``i`` (condition ``source.wrap([i])``), its true caption is ranked against ``num_negatives`` (99)
mismatched captions of the task's caption bank (every condition caption of the source) by the cosine of the image
code and the caption codes (:func:`cgmbench.metrics.r_precision.r_precision`); the value is the hit rate in
percent, as the papers report it, with a 95% bootstrap interval over samples.

The task's ``[metrics.r_precision]`` table names the protocol:

* ``protocol``: ``"dmgan"`` (negatives from captions of other classes, DM-GAN's code; the source must give
  ``class_ids``) or ``"uniform"`` (negatives uniformly from all other captions; the default for sources
  without classes);
* ``extractor``: an image/text extractor with ``encode_text`` (the DAMSM encoders for CUB/COCO). On the shapes
  world the shipped ``shapes-clip`` extractor is the **stand-in** for the DAMSM encoders (a contrastive
  image-text pair trained by cgmbench, not the generator's own DAMSM), and the entry says so;
* ``num_negatives`` (99), ``seed`` offset (the run seed is used).

When ``n >= 30000`` the entry also carries DM-GAN's own summary (10 shuffled groups of 3,000, mean ± std).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from cgmbench.errors import CgmbenchError

__all__ = ["r_precision_entry", "r_precision_settings"]


def r_precision_settings(task) -> dict:
    table = dict(task.metrics.get("r_precision", {}) or {})
    shapes = task.conditions.get("source") == "shapes"
    out = {"protocol": str(table.get("protocol", "uniform")),
           "extractor": table.get("extractor") or ("shapes-clip" if shapes else None),
           "num_negatives": int(table.get("num_negatives", 99))}
    if out["extractor"] is None:
        raise CgmbenchError(f"task {task.name!r} names no R-precision extractor",
                            "set [metrics.r_precision] extractor = the DAMSM image/text extractor of the dataset")
    return out


def r_precision_entry(inputs) -> dict:
    from cgmbench.extractors.registry import get_extractor
    from cgmbench.metrics import bootstrap_ci
    from cgmbench.metrics.r_precision import PROTOCOLS, dmgan_group_summary, r_precision

    opts = r_precision_settings(inputs.task)
    if opts["protocol"] not in PROTOCOLS:
        raise CgmbenchError(f"unknown R-precision protocol {opts['protocol']!r}", f"known: {', '.join(PROTOCOLS)}")
    source, n = inputs.source, int(inputs.n)
    extractor = get_extractor(opts["extractor"])
    if not hasattr(extractor, "encode_text"):
        raise CgmbenchError(f"extractor {opts['extractor']!r} has no text encoder; R-precision needs one")
    bank_idx = list(range(len(source)))
    bank = source.conditions(bank_idx).texts
    if not bank:
        raise CgmbenchError("r_precision needs text conditions; this task has none")
    class_ids = None
    if opts["protocol"] == "dmgan":
        if not hasattr(source, "class_ids"):
            raise CgmbenchError(f"the 'dmgan' R-precision protocol draws negatives from other classes, and the "
                                f"source of task {inputs.task.name!r} has no classes", "use protocol = 'uniform'")
        class_ids = np.asarray(source.class_ids(bank_idx))
    k = min(opts["num_negatives"], len(bank) - 1)
    if k < 1:
        raise CgmbenchError("R-precision needs at least two distinct captions in the task")
    feats = []
    for _, arr in inputs.store.iter_batches(n):
        feats.append(extractor(torch.from_numpy(np.ascontiguousarray(arr))).double())
    image = torch.cat(feats)[:n]
    text = extractor.encode_text(bank).double()
    query = np.asarray(source.wrap(range(n)), dtype=np.int64)
    res = r_precision(image, text, query, class_ids, protocol=opts["protocol"], num_negatives=k, seed=inputs.seed)
    hits = res.hits.astype(np.float64)
    ci = bootstrap_ci(hits, n_boot=1000, seed=inputs.seed)
    digest = hashlib.sha256(b"cgmbench-caption-bank")
    for t in bank:
        digest.update(hashlib.sha256(t.encode("utf-8")).digest())
    entry = {"value": 100.0 * float(hits.mean()), "ci95": [100.0 * float(ci.low), 100.0 * float(ci.high)], "n": n,
             "scale": 100.0, "protocol": opts["protocol"], "num_negatives": k, "bank_size": len(bank),
             "extractor": opts["extractor"], "seed": int(inputs.seed), "bank_sha256": digest.hexdigest(),
             "bootstrap": {"n_boot": 1000, "unit": "samples"}}
    if opts["extractor"] == "shapes-clip":
        entry["note"] = "shapes-clip stands in for the DAMSM encoders on the shapes world"
    if n >= 30000:
        mean, std, _ = dmgan_group_summary(hits, seed=inputs.seed)
        entry["dmgan_groups"] = {"mean": 100.0 * mean, "std": 100.0 * std, "groups": 10, "group_size": 3000}
    return entry
