"""The sweep platform: YAML search spaces and pipelines run on Ray Tune + Optuna, tracked in MLflow.

Reading search spaces (:mod:`~albsnn.sweep.space`) needs only PyYAML; pipelines
(:mod:`~albsnn.sweep.pipeline`) also build their Optuna sampler and pruner to check them; the rest
imports Ray Tune, Optuna and MLflow on use (``pip install -e '.[sweep]'``).

    from albsnn.sweep import load_pipeline, run_sweep
    pipeline = load_pipeline("pipelines/demo.yaml")      # validated, or one ConfigError line
    result = run_sweep("pipelines/demo.yaml")            # what `albsnn sweep` runs
    print(result.summary())

Modules: ``space`` (search spaces -> Ray / Optuna domains), ``pipeline`` (pipeline files),
``samplers`` / ``pruners`` (names -> Optuna objects), ``pareto_pruner`` (pruning on all objectives
at once, the multi-objective default), ``scheduler`` (an Optuna pruner as a Ray
trial scheduler), ``search`` (``OptunaSearch`` that records PRUNED), ``trainable`` (the Ray
trainable), ``runner`` (run and resume, stage by stage: ``plan``, ``start``, ``run``, ``confirm_runs``,
``finish``), ``record`` (a sweep's ``sweep.json``), ``result`` (``SweepResult``), ``abandon`` (end an
orphaned sweep), ``testing`` (``DeterministicPruner``), ``tracking`` (the MLflow layout, spool and
callback; ``docs/tracking.md``). The sweep never imports :mod:`albsnn.report`: ``albsnn sweep`` makes
the report after the sweep.
Guide: ``docs/sweeps.md``.
"""

from __future__ import annotations

import importlib

from albsnn.sweep.pipeline import Pipeline, load_pipeline
from albsnn.sweep.space import Param, SearchSpace, load_search_space

__all__ = [
    "DeterministicPruner",
    "OptunaPrunerScheduler",
    "MOASHAPruner",
    "ParetoPruner",
    "Param",
    "Pipeline",
    "SearchSpace",
    "StudySearch",
    "SweepResult",
    "load_pipeline",
    "load_search_space",
    "make_pruner",
    "make_sampler",
    "plan_sweep",
    "run_sweep",
]

_LAZY = {
    "run_sweep": "albsnn.sweep.runner",
    "plan_sweep": "albsnn.sweep.plan",
    "SweepResult": "albsnn.sweep.result",
    "OptunaPrunerScheduler": "albsnn.sweep.scheduler",
    "StudySearch": "albsnn.sweep.search",
    "ParetoPruner": "albsnn.sweep.pareto_pruner",
    "MOASHAPruner": "albsnn.sweep.moasha_pruner",
    "DeterministicPruner": "albsnn.sweep.testing",
    "make_pruner": "albsnn.sweep.pruners",
    "make_sampler": "albsnn.sweep.samplers",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
