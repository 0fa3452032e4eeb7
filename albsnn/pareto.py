"""Pareto dominance, fronts and hypervolume, written once for the whole package.

Objectives are ``(metric, direction)`` pairs, given as a ``{metric: "max" | "min"}`` mapping or a
sequence of pairs (a sweep's ``objectives``, say). Users: the Pareto pruner (a trial against
finished trials at one epoch, with margins: :func:`dominates`), the confirmation of fronts
(candidates on their seed means: :func:`nondominated`), the sweep's parent-run summary and the
report (its front follows the sweep's declared objectives: :func:`pareto_mask`; its hypervolume is
the accuracy x storage area: :func:`hypervolume_2d`). NumPy only: ``albsnn.sweep`` and
``albsnn.report`` both import this module, and it imports neither (nor Ray, Optuna or MLflow).

Dominance: ``d`` dominates ``t`` when ``d`` is no worse than ``t`` on every objective and better on
one. The front is every point that no other point dominates, so exact duplicates of a front point
are all on it (neither dominates the other), and a tie on one objective is settled by the others.

Hypervolume: the area of the accuracy x storage box that the points dominate, bounded by a
**reference point** ``(accuracy, bytes)``; the report takes ``(chance = 1 / classes, full-precision
bytes)``, so a model no better than guessing, or no smaller than the FP32 network, adds nothing.

Example:
    >>> acc, size = [1.0, 0.75, 0.75, 0.5], [100.0, 50.0, 60.0, 50.0]
    >>> pareto_mask({"val_accuracy": acc, "storage_bytes": size}, ACCURACY_STORAGE).tolist()
    [True, True, False, False]
    >>> pareto_mask({"val_accuracy": acc}, {"val_accuracy": "max"}).tolist()
    [True, False, False, False]
    >>> hypervolume_2d(acc, size, reference=(0.5, 200.0))  # 0.25 * 150 + 0.25 * 100
    62.5
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

import numpy as np

from albsnn.metrics import STORAGE_BYTES, VAL_ACCURACY

__all__ = [
    "ACCURACY_STORAGE",
    "Objectives",
    "as_objectives",
    "dominates",
    "dominated_by",
    "nondominated",
    "pareto_mask",
    "nondominated_ranks",
    "hypervolume_2d",
    "hypervolume_history",
    "selected_test_hypervolume",
]

Objectives = Mapping[str, str] | Iterable[tuple[str, str]]
# The front when nothing else is declared: validation accuracy up, storage down.
ACCURACY_STORAGE: tuple[tuple[str, str], ...] = ((VAL_ACCURACY, "max"), (STORAGE_BYTES, "min"))
_DIRECTIONS = ("max", "min")

K = TypeVar("K", bound=Hashable)


def as_objectives(objectives: Objectives) -> dict[str, str]:
    """``objectives`` as ``{metric: direction}``; a ValueError unless there is one and each is max or min."""
    out = dict(objectives)
    if not out or any(d not in _DIRECTIONS for d in out.values()):
        raise ValueError(f"objectives must map metrics to max or min, but got {out}")
    return out


# ---- dominance between two vectors -------------------------------------------------------------------
def _at_least(a: float, b: float, mode: str, margin: float) -> bool:
    """``a`` is at least ``margin`` better than ``b`` (NaN is worse than any number)."""
    if math.isnan(a):
        return False
    if math.isnan(b):
        return True
    return a >= b + margin if mode == "max" else a <= b - margin


def dominates(
    d: Sequence[float], t: Sequence[float], modes: Sequence[str], margins: Sequence[float] | None = None
) -> bool:
    """``d`` is ``margins`` (default 0: no worse) better than ``t`` in every objective, strictly in one.

    ``modes[i]`` is ``"max"`` or ``"min"`` for objective ``i``. NaN (a diverged run) is worse than
    any number.
    """
    margins = margins if margins is not None else [0.0] * len(modes)
    if not all(_at_least(a, b, m, g) for a, b, m, g in zip(d, t, modes, margins, strict=True)):
        return False
    return any(_at_least(a, b, m, 0.0) and a != b for a, b, m in zip(d, t, modes, strict=True))


def dominated_by(
    others: np.ndarray, mine: Sequence[float], modes: Sequence[str], margins: Sequence[float]
) -> np.ndarray:
    """Which rows of ``others`` (``[n, objectives]``) dominate ``mine`` by ``margins``: the
    vectorised :func:`dominates` (NaN worse than any number), one judgement over a
    whole study at once."""
    signs = np.array([-1.0 if m == "max" else 1.0 for m in modes])
    costs, target = others * signs, np.asarray(mine, dtype=float) * signs  # smaller is better
    finite, worst = ~np.isnan(costs), np.isnan(target)
    with np.errstate(invalid="ignore"):
        at_least = finite & (worst | (costs <= target - np.asarray(margins, dtype=float)))
        better = finite & (worst | (costs <= target)) & (costs != target)
    return at_least.all(axis=1) & better.any(axis=1)


def nondominated(points: Mapping[K, Mapping[str, float]], objectives: Objectives) -> list[K]:
    """The keys of ``points`` (``{key: {metric: value}}``) that no other point dominates on ``objectives``.

    Exact duplicates all stay. Pairwise with :func:`dominates`, so NaN counts as worst: for the few
    points of a confirmation; :func:`pareto_mask` is the vectorised form for whole sweeps.
    """
    objectives = as_objectives(objectives)
    modes = list(objectives.values())
    vectors = {k: [float(p[m]) for m in objectives] for k, p in points.items()}
    return [k for k, v in vectors.items() if not any(dominates(q, v, modes) for q in vectors.values())]


# ---- the front of many points --------------------------------------------------------------------------
def _costs(columns: Mapping[str, Sequence[float]], objectives: dict[str, str]) -> np.ndarray:
    """``[n, objectives]`` to minimise: each objective's column, negated where it is maximised."""
    cols = [np.asarray(columns[m], dtype=float).reshape(-1) for m in objectives]
    if len({c.shape for c in cols}) > 1:
        raise ValueError(f"objective columns differ in length: {[len(c) for c in cols]}")
    signs = [-1.0 if d == "max" else 1.0 for d in objectives.values()]
    costs = np.stack([sign * c for sign, c in zip(signs, cols, strict=True)], axis=1)
    if not np.isfinite(costs).all():
        raise ValueError(f"objectives {list(objectives)} must be finite (drop unfinished runs first)")
    return costs


def pareto_mask(columns: Mapping[str, Sequence[float]], objectives: Objectives) -> np.ndarray:
    """Boolean mask of the non-dominated points; ``columns[metric]`` holds every point's value.

    Walk the points in lexicographic order of their costs: a point's dominators all come before it,
    and a dominated dominator is itself dominated by an earlier front point, so comparing each point
    with the front found so far is enough. O(n * front * objectives).
    """
    costs = _costs(columns, as_objectives(objectives))
    mask = np.zeros(len(costs), dtype=bool)
    front, k = np.empty_like(costs), 0  # the front so far: front[:k]
    for i in np.lexsort(costs.T[::-1]):
        c = costs[i]
        if not np.any(np.all(front[:k] <= c, axis=1) & np.any(front[:k] < c, axis=1)):
            mask[i] = True
            front[k], k = c, k + 1
    return mask


def nondominated_ranks(columns: Mapping[str, Sequence[float]], objectives: Objectives) -> np.ndarray:
    """Each point's front under non-dominated sorting: 0 on the Pareto front, 1 on the front of the rest, ...

    Points with a non-finite value (a diverged run) share one rank after every finite point. The
    fronts are peeled with :func:`pareto_mask`, so exact duplicates share a rank. Used by the
    MOASHA pruner to rank the trials that reached a rung.

    Example:
        >>> nondominated_ranks({"a": [1.0, 0.5, 0.2, float("nan")]}, {"a": "max"}).tolist()
        [0, 1, 2, 3]
    """
    objectives = as_objectives(objectives)
    cols = {m: np.asarray(columns[m], dtype=float).reshape(-1) for m in objectives}
    if len({c.shape for c in cols.values()}) > 1:
        raise ValueError(f"objective columns differ in length: {[len(c) for c in cols.values()]}")
    finite = np.logical_and.reduce([np.isfinite(c) for c in cols.values()])
    ranks = np.zeros(finite.shape, dtype=int)
    remaining, rank = np.flatnonzero(finite), 0
    if len(objectives) == 2 and remaining.size:
        ranks[remaining] = _ranks_2d(_costs({m: c[remaining] for m, c in cols.items()}, objectives))
        rank = int(ranks[remaining].max()) + 1
    else:
        while remaining.size:
            front = pareto_mask({m: c[remaining] for m, c in cols.items()}, objectives)
            ranks[remaining[front]] = rank
            remaining, rank = remaining[~front], rank + 1
    ranks[~finite] = rank
    return ranks


def _ranks_2d(costs: np.ndarray) -> np.ndarray:
    """Non-dominated ranks of ``[n, 2]`` finite costs in O(n log n), the same as peeling fronts.

    A point's front is the length of the longest dominance chain that ends at it. Walked in
    lexicographic order, every earlier point not equal to it has a first cost no larger, so it is a
    dominator exactly when its second cost is no larger too. ``lowest[r]``, the smallest second cost
    seen on front ``r``, grows with ``r``, so a bisection finds how many fronts lie before a point.
    Exact duplicates come together in that order and share their front.
    """
    order = np.lexsort(costs.T[::-1])
    points = costs[order].tolist()
    ranks = np.empty(len(points), dtype=int)
    lowest: list[float] = []
    start = 0
    while start < len(points):
        end = start + 1
        while end < len(points) and points[end] == points[start]:
            end += 1
        second = points[start][1]
        rank = bisect.bisect_right(lowest, second)
        ranks[order[start:end]] = rank
        if rank == len(lowest):
            lowest.append(second)
        else:
            lowest[rank] = second  # smaller: it was above ``second`` or bisect would have passed it
        start = end
    return ranks


# ---- hypervolume of accuracy (max) x storage (min) -----------------------------------------------------
def _as_arrays(accuracy: Sequence[float], storage: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    acc = np.asarray(accuracy, dtype=float).reshape(-1)
    size = np.asarray(storage, dtype=float).reshape(-1)
    if acc.shape != size.shape:
        raise ValueError(f"accuracy and storage differ in length: {acc.shape=} vs {size.shape=}")
    if not (np.isfinite(acc).all() and np.isfinite(size).all()):
        raise ValueError("accuracy and storage must be finite (drop unfinished runs first)")
    return acc, size


def hypervolume_2d(
    accuracy: Sequence[float], storage: Sequence[float], reference: tuple[float, float]
) -> float:
    """Area dominated by the points and bounded by ``reference = (accuracy, bytes)``.

    Points that do not beat the reference in both objectives add nothing. The dominated region is
    a staircase: walk the points by storage ascending and add the strip each new accuracy record
    adds, ``(ref_bytes - bytes) * (acc - previous record)``.
    """
    acc, size = _as_arrays(accuracy, storage)
    ref_acc, ref_size = float(reference[0]), float(reference[1])
    keep = (acc > ref_acc) & (size < ref_size)
    acc, size = acc[keep], size[keep]
    area, record = 0.0, ref_acc
    for i in np.lexsort((-acc, size)):
        if acc[i] > record:
            area += (ref_size - size[i]) * (acc[i] - record)
            record = acc[i]
    return float(area)


def hypervolume_history(
    accuracy: Sequence[float], storage: Sequence[float], reference: tuple[float, float]
) -> np.ndarray:
    """Hypervolume of the first k points for k = 1..n (points in the order they finished)."""
    acc, size = _as_arrays(accuracy, storage)
    return np.array([hypervolume_2d(acc[: k + 1], size[: k + 1], reference) for k in range(len(acc))])


def selected_test_hypervolume(
    val_accuracy: Sequence[float],
    test_accuracy: Sequence[float],
    storage: Sequence[float],
    reference: tuple[float, float],
    front: Sequence[bool] | None = None,
) -> float:
    """Hypervolume of the front selected on validation, measured at its test accuracies.

    ``front`` is the mask of the points selected on validation (default: the front of
    ``val_accuracy`` max and ``storage`` min); the test accuracies of its points then span the area
    (points without a finite test accuracy add nothing). Test numbers never choose.

    Example:
        >>> selected_test_hypervolume([0.9, 0.5], [0.8, 0.99], [10.0, 20.0], (0.0, 100.0))
        72.0
    """
    val, size = _as_arrays(val_accuracy, storage)
    test = np.asarray(test_accuracy, dtype=float).reshape(-1)
    if front is None:
        front = pareto_mask({VAL_ACCURACY: val, STORAGE_BYTES: size}, ACCURACY_STORAGE)
    keep = np.asarray(front, dtype=bool) & np.isfinite(test)
    return hypervolume_2d(test[keep], size[keep], reference)
