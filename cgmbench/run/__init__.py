"""Running a configuration: config, steps, runner, sweep, record, samples.

This package module is also the API function :func:`cgmbench.api.run`: ``cgmbench.run(task, model, **options)``
runs and returns the record, while ``import cgmbench.run.runner`` (and ``cgmbench.run.runner.run(cfg)``) keep
working. Python binds a subpackage as its parent's attribute when it is first imported, so a plain function
named ``cgmbench.run`` would be replaced by this module; making the module callable (a documented use of
assigning a module's ``__class__``) gives one object that is both.
"""

import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self, task, model, **options):
        """``cgmbench.run(task, model, **options)``: see :func:`cgmbench.api.run`."""
        from cgmbench.api import run

        return run(task, model, **options)


sys.modules[__name__].__class__ = _CallablePackage
