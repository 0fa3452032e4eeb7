"""Deferred imports of the platform's optional dependencies (Ray Tune, Optuna, MLflow).

The library part of ``albsnn`` never imports these. The platform imports them on use, and a missing
package becomes one :class:`~albsnn.errors.AlbsnnError` line that says what to install, in the
manner of Optuna's ``optuna._imports.try_import``::

    from albsnn.sweep._imports import require
    tune = require("ray.tune")
"""

from __future__ import annotations

import importlib
from types import ModuleType

from albsnn.errors import AlbsnnError

__all__ = ["MissingDependencyError", "require", "INSTALL_HINT"]

# module prefix -> the pip requirement that provides it
_PACKAGES = {
    "ray": "ray[tune]>=2.40",
    "optuna": "optuna>=4.0",
    "optuna_dashboard": "optuna-dashboard",
    "mlflow": "mlflow>=2.16",
}
INSTALL_HINT = "pip install -e '.[sweep]'"


class MissingDependencyError(AlbsnnError, ImportError):
    """An optional platform dependency is not installed."""


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        root = module.split(".")[0]
        package = _PACKAGES.get(root, root)
        raise MissingDependencyError(
            f"the sweep platform needs {package!r} ({module} failed to import: {e}); "
            f"install it with `pip install '{package}'` or `{INSTALL_HINT}`"
        ) from None
