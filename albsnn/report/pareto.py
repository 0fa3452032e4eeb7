"""Pareto front of validation accuracy (max) vs storage bytes (min), and its hypervolume.

Rule of evidence: the front, the hypervolume and the "best" run are **selected on validation
accuracy** (``val_accuracy``, carved from the training data); the test accuracy of each selected
run is **reported** beside it, never used to select. :func:`selected_test_hypervolume` is that
report for the whole front: the area the validation-selected points span at their test accuracies.

Dominance: run *a* dominates *b* when ``acc_a >= acc_b`` and ``bytes_a <= bytes_b`` with at least one
strict. The front is every run that no other run dominates, so exact duplicates of a front point
are all on the front (neither dominates the other) and a tie in one objective is settled by the
other.

Hypervolume: the area of the accuracy x storage box that the front dominates, bounded by the
**reference point** ``(accuracy = chance = 1 / classes, storage = full-precision bytes)``: a model
no better than guessing, or no smaller than the FP32 network, adds nothing. When widths differ
between runs the full-precision size is the largest ``fp32_bytes`` among the runs compared, and
the same reference is used for every sweep in one report so their hypervolumes compare.
``normalized = hypervolume / ((1 - chance) * fp32_bytes)`` is the fraction of the box, in [0, 1]:
1 would be a perfect classifier stored in zero bytes.

Example:
    >>> import numpy as np
    >>> acc = np.array([1.0, 0.75, 0.75, 0.5])
    >>> size = np.array([100.0, 50.0, 60.0, 50.0])
    >>> pareto_mask(acc, size).tolist()
    [True, True, False, False]
    >>> hypervolume_2d(acc, size, reference=(0.5, 200.0))  # 0.25 * 150 + 0.25 * 100
    62.5
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "PUBLISHED",
    "PublishedPoint",
    "ParetoPoint",
    "ParetoInfo",
    "SweepHypervolume",
    "HypervolumeInfo",
    "pareto_mask",
    "hypervolume_2d",
    "hypervolume_history",
    "selected_test_hypervolume",
]


@dataclass(frozen=True)
class PublishedPoint:
    """The ALBSNN paper's reported result for a dataset (drawn for comparison, not measured here)."""

    dataset: str
    accuracy: float
    time_steps: int
    min_storage_reduction: float  # the paper reports "> 20 %", a lower bound
    source: str = "ALBSNN paper"


PUBLISHED: dict[str, PublishedPoint] = {
    p.dataset: p
    for p in (
        PublishedPoint("fashion-mnist", 0.9339, 1, 0.20),
        PublishedPoint("cifar10", 0.9212, 1, 0.20),
        PublishedPoint("cifar100", 0.6955, 1, 0.20),
    )
}


@dataclass(frozen=True)
class ParetoPoint:
    """One finished run in objective space, with the settings that label it."""

    run_id: str
    sweep: str  # the parent run's name ("" for runs without a sweep)
    val_accuracy: float  # final-epoch validation accuracy: what selects
    test_accuracy: float | None  # final-epoch test accuracy of the same model: what is reported
    storage_bytes: float
    fp32_bytes: float
    storage_reduction: float
    on_front: bool
    rank: int | None  # 1.. along the front from the smallest model; None when dominated
    label: str  # key settings: T, estimator, threshold, BWO, binarized layers
    settings: dict  # the same settings as values
    binarized_layers: tuple[str, ...] | None  # None: not recorded


@dataclass(frozen=True)
class ParetoInfo:
    """Everything the Pareto figure and table show."""

    dataset: str
    points: tuple[ParetoPoint, ...]  # all finished runs, front first (by storage), then dominated
    published: PublishedPoint | None

    @property
    def front(self) -> tuple[ParetoPoint, ...]:
        return tuple(p for p in self.points if p.on_front)

    @property
    def dominated(self) -> tuple[ParetoPoint, ...]:
        return tuple(p for p in self.points if not p.on_front)

    @property
    def best(self) -> ParetoPoint:
        """The most accurate run on validation (the smaller model on a tie)."""
        return max(self.points, key=lambda p: (p.val_accuracy, -p.storage_bytes))


@dataclass(frozen=True)
class SweepHypervolume:
    """One sweep's hypervolume and how it grew, trial by trial in completion order."""

    sweep: str
    run_id: str  # the parent run
    sampler: str  # from the parent's tags, "" when not recorded
    pruner: str
    finished: int
    hypervolume: float  # validation accuracy x bytes
    normalized: float  # fraction of the reference box
    history: tuple[float, ...]  # normalized hypervolume after each finished trial
    compute_seconds: float
    test_normalized: float  # the sweep's validation-selected front at its test accuracies


@dataclass(frozen=True)
class HypervolumeInfo:
    """Hypervolume of all finished runs together and of each sweep, against one reference point."""

    reference_accuracy: float  # chance = 1 / number of classes
    reference_bytes: float  # full-precision size (largest fp32_bytes among the runs)
    hypervolume: float  # of validation accuracy: what selects
    normalized: float
    sweeps: tuple[SweepHypervolume, ...]
    test_normalized: float  # the validation-selected front at its test accuracies: what is reported


def _as_arrays(accuracy: Sequence[float], storage: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    acc = np.asarray(accuracy, dtype=float).reshape(-1)
    size = np.asarray(storage, dtype=float).reshape(-1)
    if acc.shape != size.shape:
        raise ValueError(f"accuracy and storage differ in length: {acc.shape=} vs {size.shape=}")
    if not (np.isfinite(acc).all() and np.isfinite(size).all()):
        raise ValueError("accuracy and storage must be finite (drop unfinished runs first)")
    return acc, size


def pareto_mask(accuracy: Sequence[float], storage: Sequence[float]) -> np.ndarray:
    """Boolean mask of the non-dominated points (accuracy maximised, storage minimised).

    Sort by storage ascending, accuracy descending, and walk: a point is on the front when it is
    more accurate than every smaller-or-equal model seen so far, or an exact duplicate of the
    last front point. O(n log n).
    """
    acc, size = _as_arrays(accuracy, storage)
    order = np.lexsort((-acc, size))
    mask = np.zeros(len(acc), dtype=bool)
    best_acc, best_size = -np.inf, np.nan
    for i in order:
        if acc[i] > best_acc:
            best_acc, best_size = acc[i], size[i]
            mask[i] = True
        elif acc[i] == best_acc and size[i] == best_size:
            mask[i] = True
    return mask


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
) -> float:
    """Hypervolume of the front selected on validation, measured at its test accuracies.

    The front is chosen from ``val_accuracy`` alone; the test accuracies of its points then span
    the area (points without a finite test accuracy add nothing). Test numbers never choose.

    Example:
        >>> selected_test_hypervolume([0.9, 0.5], [0.8, 0.99], [10.0, 20.0], (0.0, 100.0))
        72.0
    """
    val, size = _as_arrays(val_accuracy, storage)
    test = np.asarray(test_accuracy, dtype=float).reshape(-1)
    keep = pareto_mask(val, size) & np.isfinite(test)
    return hypervolume_2d(test[keep], size[keep], reference)
