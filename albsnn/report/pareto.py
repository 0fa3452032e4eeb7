"""The report's Pareto front and hypervolume records, and the paper's published points.

Rule of evidence: the front, the hypervolume and the "best" run are **selected on validation**
metrics (``val_accuracy``, carved from the training data); the test accuracy of each selected run
is **reported** beside it, never used to select. ``test_normalized`` is that report for the whole
front: the area the validation-selected points span at their test accuracies.

Front: the runs no other run dominates on the **objectives the sweep declared** (its pipeline's
``objectives``, read from the parent run's ``albsnn.objectives`` tag); runs without declared
objectives use validation accuracy (max) and storage bytes (min). Dominance, the front and the
hypervolume are computed by :mod:`albsnn.pareto`.

Hypervolume: the area of the validation accuracy x storage box that the runs dominate, whatever the
objectives, bounded by the **reference point** ``(accuracy = chance = 1 / classes, storage =
full-precision bytes)``. When widths differ between runs the full-precision size is the largest
``fp32_bytes`` among the runs compared, and the same reference is used for every sweep in one
report so their hypervolumes compare. ``normalized = hypervolume / ((1 - chance) * fp32_bytes)`` is
the fraction of the box, in [0, 1]: 1 would be a perfect classifier stored in zero bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from albsnn.pareto import ACCURACY_STORAGE

__all__ = [
    "PUBLISHED",
    "PublishedPoint",
    "ParetoPoint",
    "ParetoInfo",
    "SweepHypervolume",
    "HypervolumeInfo",
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
    objectives: dict[str, str] = field(default_factory=lambda: dict(ACCURACY_STORAGE))  # chose the front

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
