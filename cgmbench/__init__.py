"""cgmbench: benchmark and evaluation suite for conditional generative models.

Data flows one way: task spec -> conditions -> generator -> samples -> features ->
statistics -> run record -> leaderboard / plots.

The Python API (:mod:`cgmbench.api`) is loaded on first use (PEP 562), so ``import cgmbench`` stays fast
and imports neither torch nor numpy: ``cgmbench.fid``, ``cgmbench.evaluate``, ``cgmbench.run``,
``cgmbench.load_task``, ``cgmbench.load_model``, ``cgmbench.register_model``,
``cgmbench.register_extractor``, ``cgmbench.register_source``.
"""

from cgmbench.version import __version__

_API = ("fid", "evaluate", "load_task", "load_model", "register_model", "register_extractor", "register_source")

__all__ = ["__version__", "run", *_API]


def __getattr__(name: str):
    if name == "run":  # the subpackage cgmbench.run, whose module is callable as the API function
        import cgmbench.run

        return cgmbench.run
    if name in _API:
        from cgmbench import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cgmbench' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
