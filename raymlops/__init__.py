"""raymlops: Ray-native distributed hyperparameter tuning and DDP training.

From Python: `import raymlops as rm; rm.search("smoke", overrides=["tune.num_samples=2"]).best` (raymlops.api).
Every name is imported on first use, so `import raymlops` stays cheap.
"""

import sys
import types
from typing import Any

from raymlops._version import __version__

_API = ("search", "train", "evaluate", "predict", "champion", "SearchResult", "TrainResult", "Champion")
_ERRORS = ("UserError", "Incomplete")  # what the calls raise: raymlops.UserError is raymlops.core.errors.UserError
__all__ = ["__version__", *_API, *_ERRORS]


class _Package(types.ModuleType):
    """`rm.search`, `rm.train`, `rm.evaluate`, `rm.predict` are always raymlops.api's calls. Their names are
    also modules of this package (raymlops/search/, train.py, ...), which Python binds on the package once
    imported; code reaches those modules by their dotted path (`from raymlops.train import run`)."""

    def __getattribute__(self, name: str) -> Any:
        if name in _API:
            from raymlops import api

            return getattr(api, name)
        if name in _ERRORS:
            from raymlops.core import errors

            return getattr(errors, name)
        return super().__getattribute__(name)


sys.modules[__name__].__class__ = _Package
