"""Seed-confirmed Pareto fronts: which search trials to re-run on more seeds, and which survive.

A pipeline's ``confirm: {seeds: [1, 2], front: true, max_points: 8}`` makes the sweep, after its
search, re-run the Pareto candidates with only the seed changed (:mod:`albsnn.sweep.confirm_runs`); the
report draws each candidate's mean +- std over its seeds and says which survive. This module is the
decision, written once and used by both: it needs neither Ray nor MLflow.

Select on validation, report on test. Everything here reads the pipeline's objectives, which are
validation (and cost) metrics (:mod:`albsnn.sweep.pipeline` refuses test metrics):

* **Candidates** (:func:`select_candidates`): the finished search trials that no other finished
  trial dominates on the objectives (the search's Pareto front). With more than ``max_points`` of
  them, ``max_points`` spread evenly along the front ordered by the first objective, both ends kept.
  A configuration the sampler drew more than once is one candidate (:func:`one_per_config`).
* **Survival** (:func:`judge`): each candidate's objectives are averaged over its seeds (the search
  seed and the confirmation seeds). A candidate *survives* when every one of its runs finished and no
  other such candidate's means are at least as good on every objective and strictly better on one
  (Pareto dominance on the seed means, among the confirmed candidates only: the other search trials
  ran on one seed). A candidate with a missing or failed run is *incomplete*: it neither survives nor
  dominates. Standard deviations (sample, ddof = 1) are reported beside the means; they do not decide.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from albsnn.pareto import nondominated

__all__ = [
    "ConfirmedPoint",
    "CONFIRM_DIR",
    "RULE",
    "config_key",
    "judge",
    "one_per_config",
    "select_candidates",
]

CONFIRM_DIR = "confirm"  # the confirmation's Ray Tune experiment, inside the sweep's folder
RULE = (
    "a candidate (a Pareto point of the search, selected on the validation objectives) survives when "
    "all its seeds finished and no other confirmed candidate's seed means are at least as good on every "
    "objective and strictly better on one; test accuracy is reported, never decides"
)


def config_key(config: Mapping) -> str:
    """One text per trial config (seed included): how a confirmation run finds its candidate."""
    return json.dumps(dict(config), sort_keys=True, default=str)


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def one_per_config(configs: Mapping[str, Mapping]) -> list[str]:
    """The trial ids of ``{trial id: config}`` less those whose config an earlier id (sorted) has.

    A sampler can draw the same configuration twice; confirming it twice would run the same
    configs on the same seeds, whose runs nothing could tell apart.
    """
    first: dict[str, str] = {}
    for trial in sorted(configs):
        first.setdefault(config_key(configs[trial]), trial)
    return sorted(first.values())


def select_candidates(
    trials: Mapping[str, Mapping[str, float]], objectives: Mapping[str, str], max_points: int | None = None
) -> list[str]:
    """The finished search trials to confirm, ordered by the first objective (best first).

    ``trials``: ``{trial id: {metric: last value}}`` of the *finished* search trials; trials without a
    finite value for every objective are left out. See the module docstring for ``max_points``.
    """
    usable = {t: m for t, m in trials.items() if all(_finite(m.get(o)) for o in objectives)}
    front = nondominated(usable, objectives)
    first, mode = next(iter(objectives.items()))
    front.sort(key=lambda t: (-usable[t][first] if mode == "max" else usable[t][first], t))
    if max_points is None or len(front) <= max_points:
        return front
    if max_points == 1:
        return front[:1]
    step = (len(front) - 1) / (max_points - 1)
    return [front[round(i * step)] for i in range(max_points)]


@dataclass(frozen=True)
class ConfirmedPoint:
    """One candidate after confirmation: its seeds and the mean/std of each metric over them."""

    trial_id: str  # the search trial it confirms
    number: int  # 1.. in the order candidates were chosen
    seeds: tuple[int, ...]  # the seeds whose runs finished (the search seed first)
    expected: int  # the seeds it should have: 1 + confirmation seeds
    mean: dict[str, float]
    std: dict[str, float]  # sample std over the seeds (NaN with one seed)
    survives: bool

    @property
    def complete(self) -> bool:
        return len(self.seeds) == self.expected


def _stats(values: Sequence[float]) -> tuple[float, float]:
    # fsum: exactly rounded, so the order of the seeds cannot make equal results unequal (a
    # last-bit difference would let one of two tied candidates "dominate" the other).
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return mean, std


def judge(
    groups: Sequence[tuple[str, int, Mapping[int, Mapping[str, float]]]],
    objectives: Mapping[str, str],
    expected: int,
    reported: Sequence[str] = (),
) -> list[ConfirmedPoint]:
    """Decide survival (module docstring) for ``groups``: ``(trial id, number, {seed: metrics})``.

    ``{seed: metrics}`` holds the *finished* runs of one candidate (the search trial and its
    confirmation runs); ``expected`` is how many seeds each should have. ``reported`` metrics (test
    accuracy) get a mean and std too and take no part in the decision.
    """
    metrics = [*objectives, *(r for r in reported if r not in objectives)]
    points = []
    for trial_id, number, runs in groups:
        seeds = tuple(s for s, m in runs.items() if all(_finite(m.get(o)) for o in objectives))
        mean, std = {}, {}
        for name in metrics:
            values = [float(runs[s][name]) for s in seeds if _finite(runs[s].get(name))]
            if values:
                mean[name], std[name] = _stats(values)
        points.append((trial_id, number, seeds, mean, std))
    complete = {p[0]: p[3] for p in points if len(p[2]) == expected}
    survivors = set(nondominated(complete, objectives))
    return [
        ConfirmedPoint(t, n, seeds, expected, mean, std, survives=t in survivors)
        for t, n, seeds, mean, std in points
    ]
