"""Reference implementations of the baselines cgmbench evaluates.

One module per baseline, official parameter names, so that official checkpoints load
strictly. Models reach ``cgmbench`` through the ``cgmbench.models`` entry-point group.
"""
