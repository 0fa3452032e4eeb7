"""The report's tables, computed once from :class:`~albsnn.report.info.ReportInfo`.

A :class:`Table` holds raw values (written to ``<name>.csv`` at full precision) and the formatted
cells the HTML and Markdown renderers both show, so the two cannot disagree. Formats: accuracy in
percent with 2 decimals, storage in bytes with thousands separators, reductions in percent with
1 decimal, p-values with 3 significant digits, Spearman rho with 2 decimals. Tables that list runs
show both the validation accuracy (what selects) and the test accuracy (what is reported).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from albsnn.report.info import ReportInfo, StateCounts

__all__ = ["Table", "build_tables", "pct", "pm", "num_bytes", "duration"]


@dataclass(frozen=True)
class Table:
    name: str  # CSV file stem
    title: str
    columns: tuple[str, ...]  # CSV header
    rows: tuple[tuple, ...]  # raw values, one tuple per row
    headers: tuple[str, ...]  # shown header
    cells: tuple[tuple[str, ...], ...]  # shown cells
    caption: str = ""


def pct(x: Any, digits: int = 2, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{100 * x:+.{digits}f}" if sign else f"{100 * x:.{digits}f}%"


def num_bytes(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{int(round(x)):,}"


def duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "–"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _p(x: float | None) -> str:
    if x is None:
        return "–"
    return "<0.001" if x < 0.001 else f"{x:.3g}"


def _interval(low: float | None, high: float | None) -> str:
    return "" if low is None else f" [{pct(low, sign=True)}, {pct(high, sign=True)}]"


def _rho(x: float | None) -> str:
    return "–" if x is None else f"{x:+.2f}"


def _plain(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:g}" if isinstance(x, float) else str(x)


def _table(name, title, columns, rows, headers, cells, caption="") -> Table:
    return Table(
        name,
        title,
        tuple(columns),
        tuple(map(tuple, rows)),
        tuple(headers),
        tuple(map(tuple, cells)),
        caption,
    )


def _counts(info: ReportInfo) -> Table:
    rows = [*info.counts.sweeps, info.counts.total] if len(info.counts.sweeps) > 1 else [info.counts.total]

    def raw(c: StateCounts):
        return (c.sweep, c.finished, c.pruned, c.failed, c.running, c.total, c.compute_seconds)

    return _table(
        "counts",
        "Trials and compute",
        ("sweep", "finished", "pruned", "failed", "running", "total", "compute_seconds"),
        [raw(c) for c in rows],
        ("sweep", "finished", "pruned", "failed", "running", "total", "compute (h:mm:ss)"),
        [
            (
                c.sweep,
                str(c.finished),
                str(c.pruned),
                str(c.failed),
                str(c.running),
                str(c.total),
                duration(c.compute_seconds),
            )
            for c in rows
        ],
        "Compute is the sum of the runs' wall-clock times (start to end of each MLflow run).",
    )


def _pareto(info: ReportInfo) -> Table:
    keys = ("time_steps", "estimator", "threshold", "bwo", "binarize", "budget", "seed", "width")
    front = info.pareto.front
    objectives = ", ".join(f"{k} ({v})" for k, v in info.pareto.objectives.items())
    return _table(
        "pareto",
        "Pareto front: validation accuracy vs storage, with test accuracy",
        (
            "rank",
            "run_id",
            "sweep",
            info.selected_on,
            info.reported,
            "storage_bytes",
            "fp32_bytes",
            "storage_reduction",
            *keys,
            "binarized_layers",
            "label",
        ),
        [
            (
                p.rank,
                p.run_id,
                p.sweep,
                p.val_accuracy,
                p.test_accuracy,
                p.storage_bytes,
                p.fp32_bytes,
                p.storage_reduction,
                *(p.settings.get(k) for k in keys),
                "" if p.binarized_layers is None else " ".join(p.binarized_layers),
                p.label,
            )
            for p in front
        ],
        ("#", "val accuracy", "test accuracy", "storage (bytes)", "storage reduction", "settings", "run_id"),
        [
            (
                f"#{p.rank}",
                pct(p.val_accuracy),
                pct(p.test_accuracy),
                num_bytes(p.storage_bytes),
                pct(p.storage_reduction, 1),
                p.label,
                p.run_id,
            )
            for p in front
        ],
        f"{len(front)} of {len(info.pareto.points)} finished runs are on the front of the objectives "
        f"{objectives} (no other run is at least as good on every one and better on one); smallest model "
        "first. Test accuracy is shown for the same runs and never chose a point.",
    )


def pm(mean: Any, std: Any, fmt) -> str:
    """``mean ± std`` in ``fmt``; the mean alone when there is no std (one seed)."""
    if mean is None or (isinstance(mean, float) and not math.isfinite(mean)):
        return "–"
    if std is None or (isinstance(std, float) and not math.isfinite(std)):
        return fmt(mean)
    return f"{fmt(mean)} ± {fmt(std)}"


def _pp(x: float) -> str:
    return f"{100 * x:.2f}"


_CONFIRMATION_COLUMNS = (
    "point",
    "front_rank",
    "sweep",
    "run_id",
    "seeds",
    "val_accuracy_mean",
    "val_accuracy_std",
    "test_accuracy_mean",
    "test_accuracy_std",
    "storage_bytes_mean",
    "storage_bytes_std",
    "survives",
    "complete",
    "label",
)
_CONFIRMATION_HEADERS = (
    "candidate",
    "front #",
    "settings",
    "seeds",
    "val accuracy (%)",
    "test accuracy (%, reported)",
    "storage (bytes)",
    "survives",
    "search run_id",
)


def _confirmation(info: ReportInfo) -> Table | None:
    c = info.confirmation
    if c is None:
        return None
    rank = {p.run_id: p.rank for p in info.pareto.front}
    return _table(
        "confirmation",
        "Seed-confirmed Pareto front: mean ± std over seeds",
        _CONFIRMATION_COLUMNS,
        [_confirmation_row(r, rank) for r in c.rows],
        _CONFIRMATION_HEADERS,
        [_confirmation_cells(r, rank) for r in c.rows],
        _confirmation_caption(c),
    )


def _confirmation_row(r, rank: dict) -> tuple:
    return (
        r.point,
        rank.get(r.run_id),
        r.sweep,
        r.run_id,
        " ".join(map(str, r.seeds)),
        r.val_mean,
        r.val_std,
        r.test_mean,
        r.test_std,
        r.storage_mean,
        r.storage_std,
        r.survives,
        r.complete,
        r.label,
    )


def _confirmation_cells(r, rank: dict) -> tuple:
    if not r.complete:
        verdict = f"incomplete ({len(r.seeds)} of {r.expected} seeds)"
    else:
        verdict = "yes" if r.survives else "no"
    return (
        f"c{r.point}",
        f"#{rank[r.run_id]}" if r.run_id in rank else "–",
        r.label,
        ", ".join(map(str, r.seeds)),
        pm(r.val_mean, r.val_std, _pp),
        pm(r.test_mean, r.test_std, _pp),
        pm(r.storage_mean, r.storage_std if r.storage_std else None, num_bytes),
        verdict,
        r.run_id,
    )


def _confirmation_caption(c) -> str:
    objectives = ", ".join(f"{k} ({v})" for k, v in c.objectives.items())
    return (
        f"{len(c.survivors)} of {len(c.rows)} candidates survive (c<n>: candidate n, whose runs are named "
        "'... (confirm #n)' and drawn as c<n> in the Pareto figure; front #: its rank in the Pareto "
        f"table). Rule, on the objectives {objectives}: {c.rule}. Mean ± sample standard deviation over "
        "the seeds listed (the search seed and the confirmation seeds)."
    )


def _hypervolume_rows(hv) -> list[tuple]:
    """One row per sweep and, with several, one for all of them together."""
    rows = [
        (
            s.sweep,
            s.run_id,
            s.sampler,
            s.pruner,
            s.finished,
            s.normalized,
            s.hypervolume,
            s.compute_seconds,
            s.test_normalized,
        )
        for s in hv.sweeps
    ]
    if len(hv.sweeps) > 1:
        rows.append(
            (
                "all sweeps together",
                "",
                "",
                "",
                sum(s.finished for s in hv.sweeps),
                hv.normalized,
                hv.hypervolume,
                sum(s.compute_seconds for s in hv.sweeps),
                hv.test_normalized,
            )
        )
    return rows


def _hypervolume(info: ReportInfo) -> Table:
    hv = info.hypervolume
    rows = _hypervolume_rows(hv)
    return _table(
        "hypervolume",
        "Hypervolume",
        (
            "sweep",
            "parent_run_id",
            "sampler",
            "pruner",
            "finished",
            "hypervolume_normalized",
            "hypervolume_acc_bytes",
            "compute_seconds",
            "test_hypervolume_normalized",
        ),
        rows,
        (
            "sweep",
            "sampler",
            "pruner",
            "finished",
            "hypervolume, validation (fraction of box)",
            "same front on test",
            "compute (h:mm:ss)",
        ),
        [
            (r[0], r[2] or "–", r[3] or "–", str(r[4]), f"{r[5]:.4f}", f"{r[8]:.4f}", duration(r[7]))
            for r in rows
        ],
        f"Reference point: accuracy = chance ({pct(hv.reference_accuracy)}), storage = full-precision size "
        f"({num_bytes(hv.reference_bytes)} bytes). The value is the area the runs dominate on validation "
        "accuracy divided by the box (1 − chance) × full-precision bytes: 1 would be a perfect classifier "
        "in zero bytes. 'Same front on test': the validation-selected front points at their test accuracies.",
    )


_ABLATION_COLUMNS = (
    "configuration",
    "baseline",
    "mean",
    "std",
    "n",
    "expected",
    "delta",
    "n_pairs",
    "p_value",
    "p_holm",
    "storage_reduction",
    "missing_seeds",
    "failed_seeds",
    "values",
    "val_mean",
    "paired_delta",
    "ci_low",
    "ci_high",
    "mde",
    "replicates",
    "partial_seeds",
)


def _ablation(info: ReportInfo) -> Table | None:
    a = info.ablation
    if a is None:
        return None
    conf, power = f"{100 * a.confidence:g}%", f"{100 * a.power:g}%"
    return _table(
        "ablation",
        "Ablation over seeds",
        _ABLATION_COLUMNS,
        [_ablation_row(r) for r in a.rows],
        (
            "configuration",
            "test accuracy % mean ± std (n/expected)",
            "val accuracy (mean)",
            "Δ vs baseline (pp)",
            f"paired Δ [{conf} CI] (pp)",
            "p",
            "p (Holm)",
            f"detectable Δ at {power} power (pp)",
            "storage reduction",
            "flag",
        ),
        [_ablation_cells(r) for r in a.rows],
        _ablation_caption(a, conf, power),
    )


def _ablation_row(r) -> tuple:
    return (
        r.label,
        r.baseline,
        r.mean,
        r.std,
        r.n,
        r.expected,
        r.delta,
        r.n_pairs,
        r.p_value,
        r.p_holm,
        r.storage_reduction,
        " ".join(map(str, r.missing_seeds)),
        " ".join(map(str, r.failed_seeds)),
        " ".join(f"{k}:{v}" for k, v in r.values.items()),
        r.val_mean,
        r.paired_delta,
        r.ci_low,
        r.ci_high,
        r.mde,
        r.replicates,
        " ".join(map(str, r.partial_seeds)),
    )


def _ablation_cells(r) -> tuple:
    std = "–" if r.std is None else f"{100 * r.std:.2f}"
    mean = "–" if r.mean is None else f"{100 * r.mean:.2f}"
    ci = pct(r.paired_delta, sign=True) + _interval(r.ci_low, r.ci_high)
    return (
        ("(baseline) " if r.baseline else "") + r.label + (" †" if r.flagged else ""),
        f"{mean} ± {std} ({r.n}/{r.expected})",
        pct(r.val_mean),
        "–" if r.baseline else pct(r.delta, sign=True),
        "–" if r.baseline else ci,
        "–" if r.baseline else _p(r.p_value),
        "–" if r.baseline else _p(r.p_holm),
        "–" if r.baseline or r.mde is None else f"±{100 * r.mde:.2f}",
        pct(r.storage_reduction, 1),
        r.flag or "",
    )


def _ablation_caption(a, conf: str, power: str) -> str:
    merged = (
        f"Rows average the levels of {a.replicate!r} (replicates within a seed) seed by seed before "
        "pairing; a row's n counts seeds, not replicates. "
        if a.replicate
        else ""
    )
    return (
        f"Rows: configurations of the grid (factors: {', '.join(a.factors) or 'none'}), "
        f"seeds {', '.join(map(str, a.seeds))}. Reported on test: each seed's final test accuracy; "
        "the mean final validation accuracy of the row stands beside it. "
        f"std: sample standard deviation. {merged}"
        "Δ vs baseline: difference of the row means. Paired Δ: mean over the seeds both rows "
        f"finished of (row − baseline), with its {conf} t interval "
        "(scipy.stats.ttest_rel(row, baseline).confidence_interval()). "
        f"p: {a.test_description} over those seeds, "
        "Holm-corrected over all comparisons with the baseline. "
        f"Detectable Δ: the smallest true paired difference that this many seeds, at the measured spread "
        f"of the differences, would detect with {power} power (two-sided paired t-test at "
        f"{a.alpha:g}); a non-significant row whose interval is wider than the effect you care "
        "about is not evidence of no effect (docs/statistics.md). † flagged: some seeds are missing or "
        "did not finish; the mean is over the finished seeds only."
    )


def _time_steps(info: ReportInfo) -> Table | None:
    t = info.time_steps
    if t is None:
        return None
    rows = [
        (b.label, x, m, s, n, best)
        for b in t.bands
        for x, m, s, n, best in zip(b.x, b.mean, b.std, b.n, b.best or [None] * len(b.x), strict=True)
    ]
    return _table(
        "time_steps",
        "Accuracy vs time steps T",
        ("group", "time_steps", "mean", "std", "n", "test_of_best_val"),
        rows,
        ("group", "T", "test accuracy % mean ± std (n)", "test acc. of the best-on-val run"),
        [(g, f"{x:g}", f"{100 * m:.2f} ± {100 * s:.2f} ({n})", pct(best)) for g, x, m, s, n, best in rows],
        "Finished runs grouped by T" + (f" and {t.group_by}" if t.group_by else "") + ". The last column is "
        "the test accuracy of the run with the highest validation accuracy in the group.",
    )


def _layer_map(info: ReportInfo) -> Table | None:
    m = info.layer_map
    if m is None:
        return None
    show = {True: "B", False: "FP", None: "?"}
    return _table(
        "layer_map",
        "Binarized layers of the front points",
        ("layer", *m.run_ids),
        [(layer, *row) for layer, row in zip(m.layers, m.binary, strict=True)],
        ("layer", *m.columns),
        [(layer, *(show[b] for b in row)) for layer, row in zip(m.layers, m.binary, strict=True)],
        "B: binary (1-bit weights), FP: full precision, ?: not recorded. "
        "Columns are the front points (#1 = smallest).",
    )


def _importances(info: ReportInfo) -> Table | None:
    if not info.importances:
        return None
    rows = [
        (imp.sweep, obj, p, v)
        for imp in info.importances
        for obj, values in zip(imp.objectives, imp.values, strict=True)
        for p, v in zip(imp.params, values, strict=True)
    ]
    return _table(
        "importances",
        "Parameter importances",
        ("sweep", "objective", "param", "importance"),
        rows,
        ("sweep", "objective", "parameter", "importance"),
        [(s, o, p, f"{v:.3f}") for s, o, p, v in rows],
        f"{info.importances[0].evaluator}; each objective's importances sum to 1.",
    )


def _trials(info: ReportInfo) -> Table:
    cols = (
        "run_id",
        "sweep",
        "trial",
        "state",
        *info.factors,
        "seed",
        info.selected_on,
        info.reported,
        "storage_bytes",
        "storage_reduction",
        "best_val_accuracy",
        "num_binarized",
        "seconds",
    )
    rows = [tuple(t.get(c) for c in cols) for t in info.trials]
    return _table(
        "trials",
        "All trials",
        cols,
        rows,
        (
            "run_id",
            "sweep",
            "state",
            *info.factors,
            "seed",
            "val accuracy",
            "test accuracy",
            "storage (bytes)",
            "reduction",
            "seconds",
        ),
        [
            (
                t["run_id"],
                t["sweep"],
                t["state"],
                *(_plain(t.get(f)) for f in info.factors),
                _plain(t.get("seed")),
                pct(t[info.selected_on]),
                pct(t[info.reported]),
                num_bytes(t["storage_bytes"]),
                pct(t["storage_reduction"], 1),
                "–" if t["seconds"] is None else f"{t['seconds']:.1f}",
            )
            for t in info.trials
        ],
        "Every run, in the order it started; accuracies and storage are the last logged values.",
    )


def _estimator_check(info: ReportInfo) -> Table | None:
    c = info.estimator_check
    if c is None:
        return None
    rows = [
        (e.estimator, e.scale, e.n, e.rho, e.p_value, e.median_per_run, e.runs_with_rho, len(e.per_run))
        for e in c.estimators
    ]
    return _table(
        "estimator_check",
        "Does the estimator estimate? Estimate vs measured drop",
        ("estimator", "scale", "n_pairs", "rho", "p_value", "median_run_rho", "runs_with_rho", "runs"),
        rows,
        ("estimator", "n pairs", "Spearman ρ (pooled)", "p", "median per-run ρ (runs)"),
        [
            (e, str(n), _rho(rho), _p(p), f"{_rho(med)} ({k}/{runs})")
            for e, _, n, rho, p, med, k, runs in rows
        ],
        "One pair per (run, candidate layer): the estimator's estimate on the final model against the "
        "measured validation accuracy drop of binarizing that layer alone (pp). Spearman ρ pooled over "
        "all pairs (scipy.stats.spearmanr, two-sided p); per-run ρ over a run's layers, for runs with at "
        "least 3 layers. –: fewer than 3 pairs or a constant side.",
    )


def build_tables(info: ReportInfo) -> dict[str, Table]:
    """Every table of the report, by name, in the order the report shows them."""
    tables = [
        _counts(info),
        _pareto(info),
        _confirmation(info),
        _hypervolume(info),
        _ablation(info),
        _time_steps(info),
        _layer_map(info),
        _estimator_check(info),
        _importances(info),
        _trials(info),
    ]
    return {t.name: t for t in tables if t is not None}
