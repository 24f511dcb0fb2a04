"""``cgmbench reproduce``: one recipe per published number, run end to end and judged against its target.

* ``recipes/*.toml`` -- the recipes (data): what to run, every knob, N, seed policy, protocol, extractor,
  reference statistics, the paper's value with its source, the tolerance and why, the expected GPU-hours;
* :mod:`~cgmbench.reproduce.recipes` -- loading, validating and listing them, and the verdict line;
* :mod:`~cgmbench.reproduce.adm` -- the ADM evaluator protocol (FID, sFID, IS, precision/recall of ``.npz``
  batches), :mod:`~cgmbench.reproduce.cifar` -- CIFAR-10 python batches read without unpickling objects;
* :mod:`~cgmbench.reproduce.files` -- the data files recipes need, in the weights registry (``cgmbench fetch``);
* :mod:`~cgmbench.reproduce.runner` -- running one recipe (resumable: generator recipes are ordinary runs).
"""
