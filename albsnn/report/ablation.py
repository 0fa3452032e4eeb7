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

Beside the p-value each row carries what a p-value alone does not say: the mean of the paired
differences (row minus baseline, seed by seed) with its t confidence interval
(``scipy.stats.ttest_rel(row, baseline).confidence_interval()``), and the design's power line
``mde``: the smallest true mean difference this many seeds, at the measured spread of the
differences, would detect with 80% power (two-sided paired t at 0.05). Replicates (e.g. several
random-layer draws per seed, factor :data:`REPLICATE_FACTOR`) are averaged per seed before pairing.
:func:`paired_contrasts` computes the same for any named (cell, control) pairs; docs/statistics.md
gives the formulas.

Example:
    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    >>> info = paired_contrasts(
    ...     {"adaptive": {0: 91.2, 1: 90.5, 2: 91.8}, "random": {0: 89.3, 1: 88.0, 2: 89.9}},
    ...     [("adaptive", "random")],
    ... )
    >>> round(info.contrasts[0].mean, 2), info.contrasts[0].verdict
    (2.1, 'significant (Holm)')
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from albsnn.report.source import TEST_ACCURACY, VAL_ACCURACY

__all__ = [
    "TESTS",
    "REPLICATE_FACTOR",
    "AblationRow",
    "AblationInfo",
    "Contrast",
    "ContrastInfo",
    "paired_test",
    "holm",
    "paired_contrasts",
    "ablation_rows",
    "config_label",
]

REPLICATE_FACTOR = "draw"  # config field: the random-layer draw (0..k-1), a replicate within a seed
CONFIDENCE = 0.95  # of the paired-difference interval in the report's ablation table
POWER = 0.8  # of the report's detectable-difference (mde) line
ALPHA = 0.05  # two-sided level of the test behind the mde
_MAX_SEEDS = 10_000  # seeds_needed searches no further: beyond it, None

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
    paired_delta: float | None = None  # mean over the common seeds of (row - baseline); None: no pairs
    ci_low: float | None = None  # t confidence interval of paired_delta; None below 2 pairs
    ci_high: float | None = None
    mde: float | None = None  # smallest |true paired difference| detected with AblationInfo.power
    replicates: int = 1  # configurations merged into this row (levels of the replicate factor)
    partial_seeds: tuple = ()  # seeds whose value averages only some of the replicates

    @property
    def flagged(self) -> bool:
        return bool(self.missing_seeds or self.failed_seeds or self.partial_seeds)

    @property
    def flag(self) -> str:
        parts = []
        if self.missing_seeds:
            parts.append(f"missing seed(s) {', '.join(map(str, self.missing_seeds))}")
        if self.failed_seeds:
            parts.append(f"failed/pruned seed(s) {', '.join(map(str, self.failed_seeds))}")
        if self.partial_seeds:
            parts.append(f"seed(s) {', '.join(map(str, self.partial_seeds))} missing some replicates")
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
    replicate: str | None = None  # factor averaged per seed within a row (e.g. "draw"); None: none
    confidence: float = CONFIDENCE  # of each row's ci_low, ci_high
    power: float = POWER  # of each row's mde
    alpha: float = ALPHA  # level of the test behind each row's mde

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


# ---- paired differences and the power line --------------------------------------------------------
@dataclass(frozen=True)
class _Paired:
    """Statistics of the paired differences ``d = a - b``; see :func:`_paired`."""

    n: int
    mean: float | None
    sd: float | None
    ci_low: float | None
    ci_high: float | None
    p: float | None
    mde: float | None


def _paired(a: Sequence[float], b: Sequence[float], confidence: float, power: float, alpha: float) -> _Paired:
    """Mean, sd (ddof=1), t interval, two-sided paired-t p and mde of ``a - b``.

    Below 2 pairs only the mean is defined. When every difference is equal (sd = 0, up to float
    rounding of the values) scipy's t is undefined or infinite: the interval is the point
    ``(mean, mean)``, p is 1.0 for a zero mean and 0.0 otherwise, and the mde is 0 (no noise was
    measured, so any difference shows).
    """
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = a - b
    n = len(d)
    if n == 0:
        return _Paired(0, None, None, None, None, None, None)
    mean = float(d.mean())
    if n < 2:
        return _Paired(n, mean, None, None, None, None, None)
    if np.ptp(d) <= 1e-12 * max(1.0, float(np.abs(a).max()), float(np.abs(b).max())):  # equal up to rounding
        return _Paired(n, mean, 0.0, mean, mean, 1.0 if abs(mean) <= 1e-12 else 0.0, 0.0)
    sd = float(d.std(ddof=1))
    res = stats.ttest_rel(a, b)
    ci = res.confidence_interval(confidence_level=confidence)
    return _Paired(n, mean, sd, float(ci.low), float(ci.high), float(res.pvalue), _mde(n, sd, power, alpha))


def _power(effect: float, n: int, sd: float, alpha: float) -> float:
    """Power of the two-sided paired t-test at level ``alpha``: ``P(|T| > t_crit)``,
    ``T ~ nct(df=n-1, nc=effect*sqrt(n)/sd)``, ``t_crit = t.ppf(1 - alpha/2, n-1)``."""
    from scipy import stats

    df = n - 1
    t_crit = stats.t.ppf(1 - alpha / 2, df)
    if sd == 0:
        return 1.0 if effect != 0 else alpha
    nc = effect * math.sqrt(n) / sd
    return float(stats.nct.sf(t_crit, df, nc) + stats.nct.cdf(-t_crit, df, nc))


def _mde(n: int, sd: float, power: float, alpha: float) -> float | None:
    """The |true mean difference| where :func:`_power` equals ``power`` (``brentq``); None below 2 pairs."""
    from scipy.optimize import brentq

    if n < 2:
        return None
    if sd == 0:
        return 0.0
    hi = sd
    while _power(hi, n, sd, alpha) < power:  # power rises with the effect: bracket the root
        hi *= 2
    return float(brentq(lambda e: _power(e, n, sd, alpha) - power, 0.0, hi, xtol=1e-12 * hi, rtol=1e-12))


def _seeds_needed(effect: float, sd: float, power: float, alpha: float) -> int | None:
    """Smallest n >= 2 with ``_power(effect, n, sd) >= power``; None beyond :data:`_MAX_SEEDS`."""
    if sd == 0 or _power(effect, 2, sd, alpha) >= power:
        return 2
    lo, hi = 2, 4  # power(lo) < power; double hi until power(hi) >= power (power rises with n)
    while _power(effect, hi, sd, alpha) < power:
        if hi >= _MAX_SEEDS:
            return None
        lo, hi = hi, min(2 * hi, _MAX_SEEDS)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _power(effect, mid, sd, alpha) >= power else (mid, hi)
    return hi


# ---- named contrasts --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Contrast:
    """``cell - control`` over the seeds both have: the paired difference, its test and its power line."""

    cell: str
    control: str
    n: int  # seeds both have
    seeds: tuple  # those seeds
    mean: float | None  # mean of the per-seed differences cell - control
    sd: float | None  # their sample standard deviation (ddof=1)
    ci_low: float | None  # two-sided t interval of the mean (ContrastInfo.confidence)
    ci_high: float | None
    p: float | None  # two-sided paired t-test (scipy.stats.ttest_rel)
    p_holm: float | None  # Holm-adjusted over the contrasts of one call
    mde: float | None  # smallest |true mean difference| detected with ContrastInfo.power at alpha
    seeds_needed: dict  # {effect: smallest n reaching the power at the measured sd, or None}
    verdict: str  # "significant (Holm)", "equivalent within ±E" or "no evidence"


@dataclass(frozen=True)
class ContrastInfo:
    """Paired contrasts of cells against their controls; render with :meth:`to_markdown`."""

    contrasts: tuple[Contrast, ...]
    confidence: float
    power: float
    alpha: float
    margin: float  # equivalence margin, in the unit of the values

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (effects of ``seeds_needed`` as string keys)."""
        out = dataclasses.asdict(self)
        for c, raw in zip(out["contrasts"], self.contrasts, strict=True):
            c["seeds"] = list(raw.seeds)
            c["seeds_needed"] = {str(e): k for e, k in raw.seeds_needed.items()}
        out["contrasts"] = list(out["contrasts"])
        return out

    def to_markdown(self, unit: str = "pp", digits: int = 2) -> str:
        """One table: a row per contrast, in the unit of the values (``unit`` only labels it)."""
        effects = list(dict.fromkeys(e for c in self.contrasts for e in c.seeds_needed))

        def num(x: float | None, sign: bool = False) -> str:
            return "–" if x is None else f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"

        def needed(k: int | None) -> str:
            return f">{_MAX_SEEDS:,}" if k is None else str(k)

        header = [
            "contrast",
            "n",
            f"mean diff ({unit})",
            f"{_percent(self.confidence)} CI",
            "p",
            "Holm p",
            f"detectable at {_percent(self.power)} power",
            f"seeds for {'/'.join(map(str, effects))} {unit}",
            "verdict",
        ]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for c in self.contrasts:
            ci = "–" if c.ci_low is None else f"[{num(c.ci_low, True)}, {num(c.ci_high, True)}]"
            seeds = "/".join(needed(c.seeds_needed[e]) if e in c.seeds_needed else "–" for e in effects)
            row = [
                f"{c.cell} − {c.control}",
                str(c.n),
                num(c.mean, True),
                ci,
                _p_text(c.p),
                _p_text(c.p_holm),
                "–" if c.mde is None else f"±{num(c.mde)}",
                seeds or "–",
                c.verdict,
            ]
            lines.append("| " + " | ".join(row) + " |")
        return "\n".join(lines) + "\n"


def paired_contrasts(
    values: Mapping[str, Mapping[Any, float]],
    pairs: Sequence[tuple[str, str]],
    *,
    confidence: float = CONFIDENCE,
    power: float = POWER,
    alpha: float = ALPHA,
    effects: Sequence[float] = (0.5, 1.0),
    margin: float = 0.5,
) -> ContrastInfo:
    """Is each cell better than its control? The paired difference, its interval, Holm p and power.

    For each ``(cell, control)`` the seeds both have are paired and ``d_s = cell_s - control_s``:
    mean and sd (ddof=1) of ``d``; the two-sided t interval, equal to
    ``scipy.stats.ttest_rel(cell, control).confidence_interval(confidence)``; the two-sided paired
    t p-value, Holm-adjusted over all pairs of this call (:func:`holm`); ``mde``, the smallest
    |true mean difference| that a two-sided paired t-test at ``alpha`` with this n and the measured
    sd detects with probability ``power`` (noncentral t, solved with ``scipy.optimize.brentq``);
    and, per effect in ``effects``, the smallest n >= 2 reaching ``power`` at the measured sd
    (None beyond 10,000). The verdict: ``"significant (Holm)"`` when the Holm p < ``alpha``, else
    ``"equivalent within ±margin"`` when the interval lies strictly inside ``(-margin, margin)``,
    else ``"no evidence"`` (also below 2 pairs, where nothing is tested).

    When all differences are equal (sd = 0) nothing is estimated from noise: the interval is
    ``(mean, mean)``, p is 1.0 for a zero mean (0.0 otherwise), ``mde`` is 0 and every effect needs
    2 seeds.

    Args:
        values: ``values[cell][seed]``, e.g. the final test accuracy in percent.
        pairs: ``(cell, control)`` contrasts, e.g. ``[("adaptive", "random"), ("adaptive", "deepest")]``.
        confidence: of the interval. power, alpha: of the power line. effects: true differences,
            in the unit of ``values``, for ``seeds_needed``. margin: of the equivalence verdict.

    Returns:
        :class:`ContrastInfo`, the contrasts in the order of ``pairs``.

    Raises:
        ValueError: a pair names a cell that ``values`` lacks (the message names the cells present),
            or a level is out of range.

    Example:
        >>> info = paired_contrasts({"a": {0: 91.0, 1: 92.0, 2: 90.0}, "b": {0: 90.0, 1: 91.5, 2: 89.0}},
        ...                         [("a", "b")])
        >>> print(info.to_markdown())  # doctest: +SKIP
    """
    _check_contrast_options(confidence, power, alpha, effects, margin)
    _check_pairs(values, pairs)
    measured = [_measure(values, cell, control, confidence, power, alpha) for cell, control in pairs]
    adjusted = holm([st.p for *_, st in measured])
    contrasts = tuple(
        _contrast(*m, p_holm, effects=effects, power=power, alpha=alpha, margin=margin)
        for m, p_holm in zip(measured, adjusted, strict=True)
    )
    return ContrastInfo(contrasts, confidence=confidence, power=power, alpha=alpha, margin=margin)


def _check_contrast_options(
    confidence: float, power: float, alpha: float, effects: Sequence[float], margin: float
) -> None:
    for name, x in (("confidence", confidence), ("power", power), ("alpha", alpha)):
        if not 0 < x < 1:
            raise ValueError(f"{name} must lie in (0, 1), but got {name}={x}")
    if power <= alpha:
        raise ValueError(f"power must exceed alpha, but got {power=}, {alpha=}")
    if margin < 0 or any(not e > 0 for e in effects):
        raise ValueError(f"margin must be >= 0 and effects > 0, but got {margin=}, {effects=}")


def _check_pairs(values: Mapping[str, Mapping], pairs: Sequence[tuple[str, str]]) -> None:
    for pair in pairs:
        absent = [c for c in pair if c not in values]
        if absent:
            raise ValueError(
                f"contrast {pair[0]} - {pair[1]}: no values for {', '.join(map(repr, absent))}; "
                f"cells present: {', '.join(map(repr, values)) or 'none'}"
            )


def _measure(
    values: Mapping[str, Mapping], cell: str, control: str, confidence: float, power: float, alpha: float
) -> tuple[str, str, tuple, _Paired]:
    """``(cell, control, the seeds both have, their paired statistics)``."""
    seeds = tuple(sorted((s for s in values[cell] if s in values[control]), key=_seed_key))
    a = [float(values[cell][s]) for s in seeds]
    b = [float(values[control][s]) for s in seeds]
    return cell, control, seeds, _paired(a, b, confidence, power, alpha)


def _contrast(
    cell: str,
    control: str,
    seeds: tuple,
    st: _Paired,
    p_holm: float | None,
    *,
    effects: Sequence[float],
    power: float,
    alpha: float,
    margin: float,
) -> Contrast:
    needed = {
        float(e): None if st.sd is None else _seeds_needed(float(e), st.sd, power, alpha) for e in effects
    }
    return Contrast(
        cell=cell,
        control=control,
        n=st.n,
        seeds=seeds,
        mean=st.mean,
        sd=st.sd,
        ci_low=st.ci_low,
        ci_high=st.ci_high,
        p=st.p,
        p_holm=p_holm,
        mde=st.mde,
        seeds_needed=needed,
        verdict=_verdict(p_holm, st.ci_low, st.ci_high, alpha, margin),
    )


def _verdict(p_holm: float | None, low: float | None, high: float | None, alpha: float, margin: float) -> str:
    if p_holm is not None and p_holm < alpha:
        return "significant (Holm)"
    if low is not None and high is not None and -margin < low and high < margin:
        return f"equivalent within ±{margin:g}"
    return "no evidence"


def _percent(x: float) -> str:
    return f"{100 * x:g}%"


def _p_text(x: float | None) -> str:
    if x is None:
        return "–"
    return "<0.001" if x < 0.001 else f"{x:.3g}"


# ---- the report's ablation table --------------------------------------------------------------------
def config_label(levels: Mapping, digits: int = 6) -> str:
    """A configuration's name: ``"k=v, k=v"`` (floats to ``digits`` significant digits), or ``"all runs"``."""
    return ", ".join(f"{k}={_level(v, digits)}" for k, v in levels.items()) or "all runs"


def _level(value: Any, digits: int = 6) -> str:
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def ablation_rows(
    configs: Sequence[tuple[str, Mapping]],
    runs: Sequence[tuple],
    *,
    baseline: str,
    test: str = "t",
    factors: Sequence[str] = (),
    metric: str = TEST_ACCURACY,
    replicate: str | None = None,
) -> AblationInfo:
    """Build the table.

    Args:
        configs: ``(label, {factor: level})`` in grid order.
        runs: ``(label, seed, state, test_accuracy, storage_reduction[, val_accuracy])`` per run;
            ``state`` is ``FINISHED``, ``PRUNED`` or ``FAILED`` (anything but FINISHED counts as
            failed). A repeated ``(label, seed)`` keeps its last finished value.
        baseline: the label of the baseline configuration.
        test: ``"t"`` or ``"wilcoxon"`` (see :data:`TESTS`).
        replicate: a factor whose levels are replicates within a seed (e.g. :data:`REPLICATE_FACTOR`,
            the random-layer draw). Configurations that differ only in it become one row, labelled
            by :func:`config_label` of the other levels, whose value for a seed is the mean over its
            finished replicates, so the paired difference is row minus baseline of that mean. A seed
            with only some replicates finished is flagged (``partial_seeds``). The factor leaves
            ``factors`` and the rows' ``levels``.

    Each row also gets the paired difference from the baseline over the common seeds
    (``paired_delta``), its t interval at :data:`CONFIDENCE` (``ci_low``, ``ci_high``, from
    ``scipy.stats.ttest_rel(row, baseline).confidence_interval()``) and the ``mde`` at
    :data:`POWER`, :data:`ALPHA` (see :func:`paired_contrasts`), whichever ``test`` gives p.
    """
    if test not in TESTS:
        raise ValueError(f"test must be one of {list(TESTS)}, but got {test=}")
    labels = [label for label, _ in configs]
    if baseline not in labels:
        raise ValueError(f"baseline {baseline!r} is not one of the configurations {labels}")
    seeds = sorted({seed for _, seed, *_ in runs}, key=_seed_key)
    outcomes = _outcomes(labels, runs)
    groups = _groups(configs, replicate)
    baseline = next(name for name, (_, members) in groups.items() if baseline in members)
    merged = {name: _merge(members, *outcomes) for name, (_, members) in groups.items()}
    base = merged[baseline]["values"]
    partial = [
        _row_fields(
            name, levels, len(members), merged[name], base, is_base=name == baseline, seeds=seeds, test=test
        )
        for name, (levels, members) in groups.items()
    ]
    adjusted = holm([r["p_value"] for r in partial])
    rows = tuple(AblationRow(**r, p_holm=adj) for r, adj in zip(partial, adjusted, strict=True))
    rows = tuple(sorted(rows, key=lambda r: not r.baseline))  # stable: baseline first, then grid order
    return AblationInfo(
        metric=metric,
        factors=tuple(f for f in factors if f != replicate),
        seeds=tuple(seeds),
        test=test,
        rows=rows,
        replicate=replicate,
    )


def _outcomes(labels: Sequence[str], runs: Sequence[tuple]) -> tuple[dict, dict, dict, dict]:
    """Per configuration: ``{seed: value}`` of the finished runs for the metric, the storage
    reduction and the validation accuracy, and the set of seeds it tried."""
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
    return finished, reduction, val, tried


def _row_fields(
    name: str,
    levels: dict,
    replicates: int,
    merged: dict,
    base: dict,
    *,
    is_base: bool,
    seeds: list,
    test: str,
) -> dict:
    """A row's fields but ``p_holm``: its statistics over the seeds, and its pairing with ``base``."""
    values = dict(sorted(merged["values"].items(), key=lambda kv: _seed_key(kv[0])))
    arr = np.array(list(values.values()))
    mean = float(arr.mean()) if len(arr) else None
    base_mean = _mean(base)
    common = [s for s in values if s in base]
    a, b = [values[s] for s in common], [base[s] for s in common]
    p = None if is_base else paired_test(a, b, test)
    pair = _paired([], [], CONFIDENCE, POWER, ALPHA) if is_base else _paired(a, b, CONFIDENCE, POWER, ALPHA)
    return dict(
        label=name,
        levels=levels,
        baseline=is_base,
        values=values,
        mean=mean,
        std=float(arr.std(ddof=1)) if len(arr) >= 2 else None,
        n=len(arr),
        expected=len(seeds),
        missing_seeds=tuple(s for s in seeds if s not in merged["tried"]),
        failed_seeds=tuple(s for s in seeds if s in merged["tried"] and s not in values),
        delta=None if mean is None or base_mean is None else mean - base_mean,
        n_pairs=len(common),
        p_value=p,
        storage_reduction=_mean(merged["reduction"]),
        val_mean=_mean(merged["val"]),
        paired_delta=pair.mean,
        ci_low=pair.ci_low,
        ci_high=pair.ci_high,
        mde=pair.mde,
        replicates=replicates,
        partial_seeds=tuple(s for s in seeds if s in merged["partial"]),
    )


def _groups(
    configs: Sequence[tuple[str, Mapping]], replicate: str | None
) -> dict[str, tuple[dict, list[str]]]:
    """Row name -> (levels without the replicate factor, the labels of the configurations merged)."""
    if replicate is None or not any(replicate in levels for _, levels in configs):
        return {label: (dict(levels), [label]) for label, levels in configs}
    out: dict[str, tuple[dict, list[str]]] = {}
    for label, levels in configs:
        rest = {k: v for k, v in levels.items() if k != replicate}
        out.setdefault(config_label(rest), (rest, []))[1].append(label)
    return out


def _merge(members: Sequence[str], finished, reduction, val, tried) -> dict:
    """Per seed, the mean over the member configurations that finished it (one member: its values)."""

    def per_seed(source: Mapping[str, dict]) -> dict:
        out: dict = {}
        for label in members:
            for seed, v in source[label].items():
                out.setdefault(seed, []).append(v)
        return {seed: float(np.mean(vs)) for seed, vs in out.items()}

    values = per_seed(finished)
    counts = {seed: sum(seed in finished[label] for label in members) for seed in values}
    return dict(
        values=values,
        reduction=per_seed(reduction),
        val=per_seed(val),
        tried=set().union(*(tried[label] for label in members)),
        partial={seed for seed, k in counts.items() if k < len(members)},
    )


def _mean(by_seed: Mapping) -> float | None:
    return float(np.mean(list(by_seed.values()))) if by_seed else None


def _seed_key(seed: object) -> tuple:
    return (0, seed, "") if isinstance(seed, int | float) else (1, 0, str(seed))
