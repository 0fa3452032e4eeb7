"""What optuna-dashboard shows of a sweep's studies: objective names and what each study is for.

A sweep's Optuna journal holds two studies: the search study ``<sweep id>`` (what the sampler
optimises) and the pruning study ``<sweep id>.pruning`` (the pruner's per-epoch bookkeeping). Without
names the dashboard labels objectives "0", "1" and cannot tell the two apart; :func:`label_study`
names the objectives (the metric names of :mod:`albsnn.metrics`, as the pipeline lists them) and
records the study's role and a one-line description as user attributes.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from albsnn.sweep._imports import require

__all__ = ["ROLE", "DESCRIPTION", "SEARCH", "PRUNING", "RAY_TRIAL_ID", "label_study"]

ROLE = "albsnn.role"  # user attribute: SEARCH or PRUNING
DESCRIPTION = "albsnn.description"  # user attribute: one line for the dashboard
SEARCH = "search"
PRUNING = "pruning"
RAY_TRIAL_ID = "ray_trial_id"  # trial user attribute, in both studies: joins Optuna, Ray and MLflow
_DESCRIPTIONS = {
    SEARCH: "albsnn sweep: the search study (one trial per Ray trial; objectives {metrics})",
    PRUNING: "albsnn sweep: the pruner's bookkeeping, not a search: {metrics} per epoch of each Ray trial; "
    "the objectives are in the study without '.pruning'",
}


def label_study(study, metric_names: Sequence[str], role: str) -> None:
    """Name ``study``'s objectives ``metric_names`` and mark it as a ``role`` study (idempotent)."""
    names = list(metric_names)
    if study.metric_names != names:
        with warnings.catch_warnings():  # set_metric_names is "experimental" since Optuna 3.2
            warnings.simplefilter("ignore", require("optuna.exceptions").ExperimentalWarning)
            study.set_metric_names(names)
    attrs = {ROLE: role, DESCRIPTION: _DESCRIPTIONS[role].format(metrics=", ".join(names))}
    for key, value in attrs.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
