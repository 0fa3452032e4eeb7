"""Ablation statistics over seeds: ``mean ± std (n)`` per configuration, paired tests, Holm.

A row is one configuration of the grid (every swept parameter but ``seed``; any levels, e.g.
``binarize`` in adaptive / random / all / none). Its cell is the mean and sample standard deviation
(``ddof=1``) of the final **test** accuracy over the seeds that finished: the grid is fixed before
the runs, so nothing here selects, and the table reports on test; the mean final validation
accuracy of the row stands beside it. Each non-baseline row is compared with the baseline row by
a paired test over the seeds both finished (seed *s* of the row against seed *s* of the baseline:
same data order, same initialisation):

* ``"t"`` (default): paired t-test, ``scipy.stats.ttest_rel``, two-sided;
* ``"wilcoxon"``: Wilcoxon signed-rank, ``scipy.stats.wilcoxon``, two-sided (with 5 seeds or fewer
  its smallest possible p is 0.0625, so it can never reach 0.05).

The p-values of all comparisons in one table are then Holm-corrected (step-down, controls the
family-wise error rate). A row whose expected seeds (every seed seen anywhere in the grid) did not
all finish is **flagged**: its mean is over the seeds that finished, its flag names the missing
and failed seeds, and the paired test uses only seeds that both rows finished.

Example:
    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from albsnn.report.source import TEST_ACCURACY, VAL_ACCURACY

__all__ = ["TESTS", "AblationRow", "AblationInfo", "paired_test", "holm", "ablation_rows"]

TESTS = {
    "t": "paired t-test (scipy.stats.ttest_rel, two-sided)",
    "wilcoxon": "Wilcoxon signed-rank test (scipy.stats.wilcoxon, two-sided)",
}


@dataclass(frozen=True)
class AblationRow:
    """One configuration: its seeds, statistics, and comparison with the baseline."""

    label: str  # "bwo=off, binarize=all"
    levels: dict  # {factor: level}
    baseline: bool
    values: dict  # {seed: final test accuracy} of the finished seeds
    mean: float | None  # None when no seed finished
    std: float | None  # sample std (ddof=1); None when fewer than 2 seeds finished
    n: int
    expected: int  # number of seeds in the grid
    missing_seeds: tuple  # no run at all
    failed_seeds: tuple  # runs that ended FAILED or PRUNED
    delta: float | None  # mean - baseline mean
    n_pairs: int  # seeds both this row and the baseline finished
    p_value: float | None  # paired test; None for the baseline or fewer than 2 pairs
    p_holm: float | None
    storage_reduction: float | None  # mean over the finished seeds
    val_mean: float | None = None  # mean final validation accuracy over the finished seeds

    @property
    def flagged(self) -> bool:
        return bool(self.missing_seeds or self.failed_seeds)

    @property
    def flag(self) -> str:
        parts = []
        if self.missing_seeds:
            parts.append(f"missing seed(s) {', '.join(map(str, self.missing_seeds))}")
        if self.failed_seeds:
            parts.append(f"failed/pruned seed(s) {', '.join(map(str, self.failed_seeds))}")
        return "; ".join(parts)


@dataclass(frozen=True)
class AblationInfo:
    """The ablation table: rows in grid order, the baseline first."""

    metric: str  # the per-seed value compared: final test accuracy
    factors: tuple[str, ...]
    seeds: tuple  # every seed of the grid
    test: str  # key of TESTS
    rows: tuple[AblationRow, ...]
    val_metric: str = VAL_ACCURACY  # shown beside it as a mean per row

    @property
    def test_description(self) -> str:
        return TESTS[self.test]

    @property
    def baseline(self) -> AblationRow:
        return next(r for r in self.rows if r.baseline)


def _none_if_nan(x: float) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def paired_test(a: Sequence[float], b: Sequence[float], test: str = "t") -> float | None:
    """Two-sided p-value of a paired test of ``a`` against ``b`` (same seed at the same index).

    None when there are fewer than 2 pairs; 1.0 when every difference is 0 (the tests are
    undefined there, and no evidence of a difference is the honest reading).
    """
    from scipy import stats

    if test not in TESTS:
        raise ValueError(f"test must be one of {list(TESTS)}, but got {test=}")
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape=} vs {b.shape=}")
    if len(a) < 2:
        return None
    if np.all(a == b):
        return 1.0
    if test == "wilcoxon":
        return _none_if_nan(stats.wilcoxon(a, b).pvalue)
    return _none_if_nan(stats.ttest_rel(a, b).pvalue)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm step-down adjusted p-values; None entries stay None and are not counted in the family.

    With the m valid p-values sorted ascending, ``adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``.
    """
    valid = [(p, i) for i, p in enumerate(p_values) if p is not None]
    m = len(valid)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(valid)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def ablation_rows(
    configs: Sequence[tuple[str, Mapping]],
    runs: Sequence[tuple],
    *,
    baseline: str,
    test: str = "t",
    factors: Sequence[str] = (),
    metric: str = TEST_ACCURACY,
) -> AblationInfo:
    """Build the table.

    Args:
        configs: ``(label, {factor: level})`` in grid order.
        runs: ``(label, seed, state, test_accuracy, storage_reduction[, val_accuracy])`` per run;
            ``state`` is ``FINISHED``, ``PRUNED`` or ``FAILED`` (anything but FINISHED counts as
            failed). A repeated ``(label, seed)`` keeps its last finished value.
        baseline: the label of the baseline configuration.
        test: ``"t"`` or ``"wilcoxon"`` (see :data:`TESTS`).
    """
    if test not in TESTS:
        raise ValueError(f"test must be one of {list(TESTS)}, but got {test=}")
    labels = [label for label, _ in configs]
    if baseline not in labels:
        raise ValueError(f"baseline {baseline!r} is not one of the configurations {labels}")
    seeds = sorted({seed for _, seed, *_ in runs}, key=_seed_key)
    finished: dict[str, dict] = {label: {} for label in labels}
    reduction: dict[str, dict] = {label: {} for label in labels}
    val: dict[str, dict] = {label: {} for label in labels}
    tried: dict[str, set] = {label: set() for label in labels}
    for label, seed, state, acc, red, *rest in runs:
        tried[label].add(seed)
        if state == "FINISHED" and acc is not None and math.isfinite(acc):
            finished[label][seed] = float(acc)
            if red is not None:
                reduction[label][seed] = float(red)
            if rest and rest[0] is not None and math.isfinite(rest[0]):
                val[label][seed] = float(rest[0])
    base = finished[baseline]
    base_mean = float(np.mean(list(base.values()))) if base else None
    partial = []
    for label, levels in configs:
        values = dict(sorted(finished[label].items(), key=lambda kv: _seed_key(kv[0])))
        arr = np.array(list(values.values()))
        mean = float(arr.mean()) if len(arr) else None
        common = [s for s in values if s in base]
        is_base = label == baseline
        p = None if is_base else paired_test([values[s] for s in common], [base[s] for s in common], test)
        partial.append(
            dict(
                label=label,
                levels=dict(levels),
                baseline=is_base,
                values=values,
                mean=mean,
                std=float(arr.std(ddof=1)) if len(arr) >= 2 else None,
                n=len(arr),
                expected=len(seeds),
                missing_seeds=tuple(s for s in seeds if s not in tried[label]),
                failed_seeds=tuple(s for s in seeds if s in tried[label] and s not in values),
                delta=None if mean is None or base_mean is None else mean - base_mean,
                n_pairs=len(common),
                p_value=p,
                storage_reduction=_mean(reduction[label]),
                val_mean=_mean(val[label]),
            )
        )
    adjusted = holm([r["p_value"] for r in partial])
    rows = tuple(AblationRow(**r, p_holm=adj) for r, adj in zip(partial, adjusted, strict=True))
    rows = tuple(sorted(rows, key=lambda r: not r.baseline))  # stable: baseline first, then grid order
    return AblationInfo(metric=metric, factors=tuple(factors), seeds=tuple(seeds), test=test, rows=rows)


def _mean(by_seed: Mapping) -> float | None:
    return float(np.mean(list(by_seed.values()))) if by_seed else None


def _seed_key(seed: object) -> tuple:
    return (0, seed, "") if isinstance(seed, int | float) else (1, 0, str(seed))
