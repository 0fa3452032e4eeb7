"""Pruners by name: the pipeline's ``pruner`` entry -> an Optuna pruner (pruning stays Optuna's).

``pruner: median`` or ``pruner: {kind: median, n_startup_trials: 4, n_warmup_steps: 2}``; the other
keys are the Optuna class's own arguments. A step is an epoch, so ``successive-halving`` and
``hyperband`` default to ``min_resource=1`` and ``max_resource=epochs``.

``pareto`` (:class:`~albsnn.sweep.pareto_pruner.ParetoPruner`, the default of multi-objective
search pipelines) judges all objectives at once: ``pruner: {kind: pareto, min_dominators: 2,
margin: {val_accuracy: 0.01}}``; so does ``moasha`` (:class:`~albsnn.sweep.moasha_pruner.MOASHAPruner`,
non-dominated sorting at rungs): ``pruner: {kind: moasha, reduction_factor: 2, min_resource: 1}``.
The others judge one metric, the pipeline's :attr:`~albsnn.sweep.pipeline.Pipeline.prune_on`.

The pruner is asked by :class:`~albsnn.sweep.scheduler.OptunaPrunerScheduler` after every epoch.
``deterministic`` is the test double (:class:`~albsnn.sweep.testing.DeterministicPruner`).

    >>> make_pruner({"kind": "percentile", "percentile": 40.0}, epochs=6)
    <optuna.pruners._percentile.PercentilePruner object at ...>
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from albsnn.errors import ConfigError
from albsnn.sweep._imports import require

__all__ = ["MOASHA", "PARETO", "PRUNERS", "make_pruner", "pruner_spec"]

PARETO = "pareto"  # kind of ParetoPruner
MOASHA = "moasha"  # kind of MOASHAPruner


def _median(epochs: int, **kw):
    return require("optuna.pruners").MedianPruner(**kw)


def _percentile(epochs: int, percentile: float = 25.0, **kw):
    return require("optuna.pruners").PercentilePruner(percentile, **kw)


def _successive_halving(epochs: int, min_resource: int | str = 1, **kw):
    return require("optuna.pruners").SuccessiveHalvingPruner(min_resource=min_resource, **kw)


def _hyperband(epochs: int, min_resource: int = 1, max_resource: int | str | None = None, **kw):
    pruners = require("optuna.pruners")
    return pruners.HyperbandPruner(min_resource=min_resource, max_resource=max_resource or epochs, **kw)


def _wilcoxon(epochs: int, **kw):
    return require("optuna.pruners").WilcoxonPruner(**kw)


def _pareto(epochs: int, objectives: dict, **kw):
    from albsnn.sweep.pareto_pruner import ParetoPruner

    return ParetoPruner(objectives, **kw)


def _moasha(epochs: int, objectives: dict, **kw):
    from albsnn.sweep.moasha_pruner import MOASHAPruner

    return MOASHAPruner(objectives, **kw)


def _none(epochs: int):
    return require("optuna.pruners").NopPruner()


def _deterministic(epochs: int, **kw):
    from albsnn.sweep.testing import DeterministicPruner

    return DeterministicPruner(**kw)


# name -> factory(epochs, **options); a factory that takes `objectives` gets the pipeline's
# {metric: mode} (the pruning metric first).
PRUNERS: dict[str, Callable] = {
    "median": _median,
    "percentile": _percentile,
    "successive-halving": _successive_halving,
    "hyperband": _hyperband,
    "wilcoxon": _wilcoxon,
    PARETO: _pareto,
    MOASHA: _moasha,
    "none": _none,
    "deterministic": _deterministic,
}


def pruner_spec(spec: object, where: str = "pipeline") -> dict:
    """Normalise ``"median"`` / ``{kind: median, ...}`` / ``None`` to ``{"kind": ..., **options}``."""
    if spec is None:
        return {"kind": "none"}
    if isinstance(spec, str):
        spec = {"kind": spec}
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ConfigError(f"{where}: pruner must be a name or {{kind: NAME, ...options}}, but got {spec!r}")
    if spec["kind"] not in PRUNERS:
        raise ConfigError(f"{where}: unknown pruner {spec['kind']!r}; use one of {list(PRUNERS)}")
    return dict(spec)


def make_pruner(spec: object, epochs: int, where: str = "pipeline", objectives: dict | None = None):
    """The Optuna pruner for ``spec``; a bad option is a :class:`ConfigError` listing the valid ones.

    ``objectives`` (``{metric: mode}``, the pruning metric first) is what ``pareto`` and ``moasha``
    compare.
    """
    spec = pruner_spec(spec, where)
    kind, options = spec["kind"], {k: v for k, v in spec.items() if k != "kind"}
    factory = PRUNERS[kind]
    if "objectives" in options:
        raise ConfigError(f"{where}: pruner {kind}: objectives come from the pipeline's objectives")
    if "objectives" in inspect.signature(factory).parameters:
        options["objectives"] = objectives or {}
    try:
        inspect.signature(factory).bind(epochs, **options)
        return factory(epochs, **options)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: pruner {kind}: {e}") from None
