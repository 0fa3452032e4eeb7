"""The report as one typed record: :class:`ReportInfo`, computed from :class:`~albsnn.report.source.RunsData`.

Everything a renderer shows is here, already computed: the renderers (HTML, Markdown, CSV, figures)
only format it. Which accuracy: the **final** epoch's (the model a run exported), not its best
epoch. Rule of evidence: whatever *selects* (the Pareto front, hypervolume, the best run, the best
run per T) reads :data:`SELECTED_ON`, the validation accuracy; the test accuracy
(:data:`REPORTED`) of the selected runs is shown beside it and never selects. Which runs: the
Pareto front, hypervolume, curves and the estimator check use finished runs; counts, compute and
the ablation's flags use all of them.
"""

from __future__ import annotations

import dataclasses
import math
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from albsnn.metrics import FP32_BYTES, STORAGE_REDUCTION
from albsnn.pareto import (
    ACCURACY_STORAGE,
    as_objectives,
    hypervolume_2d,
    hypervolume_history,
    pareto_mask,
    selected_test_hypervolume,
)
from albsnn.report.ablation import REPLICATE_FACTOR, AblationInfo, ablation_rows, config_label
from albsnn.report.curves import (
    EstimatorHistoryInfo,
    LayerMapInfo,
    LearningCurve,
    LearningCurvesInfo,
    TimeStepInfo,
    band,
    band_by_step,
    compact_layers,
    layer_sort_key,
)
from albsnn.report.estimator_check import EstimatorCheckInfo, estimator_check
from albsnn.report.pareto import PUBLISHED, HypervolumeInfo, ParetoInfo, ParetoPoint, SweepHypervolume
from albsnn.report.paths import relative_paths
from albsnn.report.source import (
    BEST_VAL_ACCURACY,
    CHECK_ESTIMATE_PREFIX,
    CHECK_MEASURED_PREFIX,
    STORAGE_BYTES,
    TEST_ACCURACY,
    VAL_ACCURACY,
)
from albsnn.sweep.tracking import layout as L

__all__ = [
    "SweepHeader",
    "HeaderInfo",
    "StateCounts",
    "CountsInfo",
    "ImportanceInfo",
    "ConfirmRow",
    "ConfirmInfo",
    "ReportInfo",
    "build_info",
    "SELECTED_ON",
    "REPORTED",
]

SELECTED_ON = VAL_ACCURACY  # the one metric that selects: front, hypervolume, best run
REPORTED = TEST_ACCURACY  # reported for what was selected, never selecting
_WORDS = {VAL_ACCURACY: "validation accuracy", TEST_ACCURACY: "test accuracy"}

_MAX_CURVES = 6  # learning curves drawn (more is unreadable)
_LABEL_KEYS = ("time_steps", "estimator", "threshold", "bwo")


@dataclass(frozen=True)
class SweepHeader:
    """What one sweep ran, from its parent run's tags."""

    run_id: str
    name: str
    pipeline: str
    pipeline_path: str
    mode: str
    dataset: str
    objectives: dict
    sampler: str
    pruner: str
    git_commit: str
    git_dirty: str
    host: str
    hardware: str
    versions: dict
    command: str
    start: str
    end: str


@dataclass(frozen=True)
class HeaderInfo:
    title: str
    experiment: str
    tracking_uri: str
    dataset: str
    num_classes: int | None
    first_start: str
    last_end: str
    generated: str
    report_host: str
    sweeps: tuple[SweepHeader, ...]


@dataclass(frozen=True)
class StateCounts:
    sweep: str
    finished: int
    pruned: int
    failed: int
    running: int
    compute_seconds: float  # sum of the runs' wall-clock times

    @property
    def total(self) -> int:
        return self.finished + self.pruned + self.failed + self.running


@dataclass(frozen=True)
class CountsInfo:
    sweeps: tuple[StateCounts, ...]
    total: StateCounts


@dataclass(frozen=True)
class ImportanceInfo:
    """Optuna's parameter importances (fANOVA, seed 0) for each objective of one sweep's study."""

    sweep: str
    study: str
    evaluator: str
    objectives: tuple[str, ...]
    params: tuple[str, ...]  # most important first (by the first objective)
    values: tuple[tuple[float, ...], ...]  # [objective][param], each objective sums to 1
    n_trials: int


@dataclass(frozen=True)
class ConfirmRow:
    """One Pareto candidate of a sweep after its seed confirmation (:mod:`albsnn.sweep.confirm`)."""

    sweep: str
    point: int  # the candidate's number ("confirm #3")
    run_id: str  # the search trial's run
    label: str
    seeds: tuple[int, ...]  # seeds whose run finished (the search seed among them), ascending
    expected: int  # 1 + the confirmation seeds
    val_mean: float  # over the seeds: what decides (with the other objectives)
    val_std: float  # sample std (ddof 1); NaN with one seed
    test_mean: float  # reported, never decides
    test_std: float
    storage_mean: float
    storage_std: float  # 0 unless the binarized layers differ between seeds
    survives: bool
    complete: bool


@dataclass(frozen=True)
class ConfirmInfo:
    """The seed-confirmed Pareto front: every candidate, the rule, what survives."""

    objectives: dict  # {metric: max | min} the decision used (the sweep's objectives)
    rule: str
    rows: tuple[ConfirmRow, ...]

    @property
    def survivors(self) -> tuple[ConfirmRow, ...]:
        return tuple(r for r in self.rows if r.survives)


@dataclass(frozen=True)
class ReportInfo:
    title: str
    header: HeaderInfo
    counts: CountsInfo
    pareto: ParetoInfo
    hypervolume: HypervolumeInfo
    time_steps: TimeStepInfo | None
    layer_map: LayerMapInfo | None
    learning: LearningCurvesInfo | None
    estimator: EstimatorHistoryInfo | None
    importances: tuple[ImportanceInfo, ...]
    ablation: AblationInfo | None
    factors: tuple[str, ...]  # parameters that vary between runs (seed aside)
    trials: tuple[dict, ...]  # one row per run: run_id, sweep, state, metrics, factors
    estimator_check: EstimatorCheckInfo | None = None  # None: no run logged check metrics
    confirmation: ConfirmInfo | None = None  # None: no sweep confirmed its front
    selected_on: str = SELECTED_ON
    reported: str = REPORTED
    notes: tuple[str, ...] = field(default=())

    @property
    def selection(self) -> str:
        """The rule of evidence in words, for the report's header and captions."""
        chosen, shown = (_WORDS.get(m, m) for m in (self.selected_on, self.reported))
        return f"selected on {chosen} ({self.selected_on}, final epoch); {shown} ({self.reported}) reported"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---- helpers -----------------------------------------------------------------------------------------
def _iso(t: Any) -> str:
    if t is None or (isinstance(t, float) and math.isnan(t)):
        return ""
    try:
        return t.strftime("%Y-%m-%d %H:%M UTC")
    except (AttributeError, ValueError):  # NaT
        return ""


def _finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _level(value: Any, digits: int = 6) -> str:
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _chance(dataset: str) -> tuple[float, int | None, str | None]:
    from albsnn.errors import AlbsnnError

    try:
        from albsnn.data import dataset_info

        classes = dataset_info(dataset).num_classes
        return 1.0 / classes, classes, None
    except (AlbsnnError, ImportError) as e:
        return 0.0, None, f"the number of classes of {dataset!r} is unknown ({e}); reference accuracy 0"


def _defaults() -> dict:
    from albsnn.train import TrainConfig

    return {
        f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING
    }


class _Settings:
    """A run's effective settings: its params over the resolved config of a run of its sweep."""

    def __init__(self, data, runs):
        self.data, self.runs = data, runs
        self._base: dict[str, dict] = {}
        self._config: dict[str, dict | None] = {}
        self._layers: dict[str, tuple[str, ...] | None] = {}

    def config(self, run_id: str) -> dict | None:
        if run_id not in self._config:
            cfg = self.data.artifact_json(run_id, "config.json")
            self._config[run_id] = cfg if isinstance(cfg, dict) else None
        return self._config[run_id]

    def base(self, sweep_id: str) -> dict:
        # fixed (not swept) settings are not params: TrainConfig's defaults, under the sweep's
        # albsnn.base_config tag, under one finished run's config.json (the resolved config)
        if sweep_id not in self._base:
            rows = self.runs[(self.runs["sweep_id"] == sweep_id) & (self.runs["state"] == "FINISHED")]
            cfg = self.config(rows["run_id"].iloc[0]) if len(rows) else None
            # that run's own sampled values are not shared: a run without a (conditional) param
            # trained with the default, not with another run's value
            shared = {k: v for k, v in (cfg or {}).items() if k not in self.data.param_names}
            self._base[sweep_id] = {**_defaults(), **_base_config(self.data, sweep_id), **shared}
        return self._base[sweep_id]

    def of(self, row: Mapping) -> dict:
        cfg = self.config(row["run_id"]) if row["run_id"] in self._config else None
        out = dict(cfg) if cfg else dict(self.base(row["sweep_id"]))
        for name in self.data.param_names:
            value = row.get(f"params.{name}")
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                out[name] = value
        return out

    def binarized(self, run_id: str) -> tuple[str, ...] | None:
        if run_id not in self._layers:
            raw = self.data.artifact_json(run_id, "binarized_layers.json")
            if isinstance(raw, dict):
                raw = raw.get("binarized_layers", raw.get("layers"))
            self._layers[run_id] = (
                tuple(sorted(map(str, raw), key=layer_sort_key)) if isinstance(raw, list) else None
            )
        return self._layers[run_id]


def _base_config(data, sweep_id: str) -> dict:
    sweep = next((s for s in data.sweeps if s.run_id == sweep_id), None)
    base = sweep.json_tag(L.BASE_CONFIG, {}) if sweep else {}
    return base if isinstance(base, dict) else {}


def _strategy(sweep, key: str) -> str:
    """``albsnn.sampler`` / ``albsnn.pruner`` tags: JSON ``{"kind": "tpe", "n_startup_trials": 6}``
    -> ``"tpe (n_startup_trials=6)"``."""
    if sweep is None:
        return ""
    value = sweep.json_tag(key)
    if isinstance(value, dict) and "kind" in value:
        rest = ", ".join(f"{k}={v}" for k, v in value.items() if k != "kind")
        return f"{value['kind']} ({rest})" if rest else str(value["kind"])
    return sweep.tag(key)


def _label(
    settings: Mapping, layers: tuple[str, ...] | None, num_binarized: Any, factors: Sequence[str] = ()
) -> str:
    """Key settings of a point: T, estimator, threshold, BWO, binarized layers, then other swept factors."""
    parts = []
    if settings.get("time_steps") is not None:
        parts.append(f"T={settings['time_steps']}")
    if settings.get("binarize") not in (None, "adaptive"):  # random, all, none: no estimator decides
        parts.append(f"binarize={settings['binarize']}")
    else:
        for key in ("estimator", "threshold"):
            if settings.get(key) is not None:
                parts.append(f"{key}={_level(settings[key], 3)}")
    if settings.get("budget") is not None:  # adaptive and random both aim at it
        parts.append(f"budget={_level(settings['budget'], 3)}")
    if settings.get("bwo") is not None:
        parts.append(f"BWO={settings['bwo']}")
    shown = {"time_steps", "binarize", "estimator", "threshold", "budget", "bwo"}
    parts += [f"{f}={_level(settings.get(f), 3)}" for f in factors if f not in shown]
    if layers is not None:
        parts.append(f"binary: {compact_layers(layers)}")
    elif _finite(num_binarized):
        parts.append(f"binary: {int(num_binarized)} layers")
    return ", ".join(parts)


def _config_label(levels: Mapping, digits: int = 6) -> str:
    return config_label(levels, digits)  # the ablation's merged rows use the same names


# ---- the builder -------------------------------------------------------------------------------------
def build_info(data, *, test: str = "t") -> ReportInfo:
    """Compute the whole report from what :func:`~albsnn.report.source.load_runs` read."""
    df = data.runs
    notes: list[str] = []
    objectives = _objectives(data, notes)
    fin = _finished(df, objectives, notes)
    settings = _Settings(data, df)
    dataset = _dataset(data, fin, settings)
    chance, classes, note = _chance(dataset)
    if note:
        notes.append(note)
    factors = _varying(df, data.param_names)

    pareto = _pareto(fin, settings, dataset, objectives, factors)
    fp32 = fin[_m(FP32_BYTES)].max()
    ref_bytes = float(fp32) if _finite(fp32) else float(fin[_m(STORAGE_BYTES)].max())
    hv = _hypervolume(data, df, fin, (chance, ref_bytes), objectives)
    info = ReportInfo(
        title=data.title,
        header=_header(data, fin, dataset, classes),
        counts=_counts(data, df),
        pareto=pareto,
        hypervolume=hv,
        time_steps=_time_steps(fin, settings, factors),
        layer_map=_layer_map(pareto, fin),
        learning=None,
        estimator=_estimator(data, pareto, settings, notes),
        importances=_importances(data, notes),
        ablation=None,
        factors=factors,
        trials=_trials(df, factors),
        estimator_check=_estimator_check(fin, notes),
        confirmation=_confirmation(data, df, settings, factors),
        notes=(),
    )
    ablation, ablation_runs = _ablation(data, df, test, notes)
    learning = _learning(data, df, pareto, ablation, ablation_runs, factors)
    notes = [relative_paths(n) for n in notes]  # a journal path, say: the machine's folders stay out
    return dataclasses.replace(info, ablation=ablation, learning=learning, notes=tuple(notes))


def _objectives(data, notes: list[str]) -> dict[str, str]:
    """What chooses the front: the objectives the sweeps declared, else validation accuracy and storage.

    Sweeps that declare none (runs without a sweep, sweeps older than the tag) do not count; sweeps
    that declare different ones get the default, with a note.
    """
    declared: list[dict[str, str]] = []
    for s in data.sweeps:
        try:
            objectives = as_objectives(s.json_tag(L.OBJECTIVES) or {})
        except (TypeError, ValueError):  # not declared, or not {metric: max | min}
            continue
        if objectives not in declared:
            declared.append(objectives)
    if len(declared) == 1:
        return declared[0]
    if declared:
        listed = "; ".join(_objective_words(o) for o in declared)
        notes.append(
            f"the sweeps declare different objectives ({listed}); the front uses "
            f"{_objective_words(dict(ACCURACY_STORAGE))}"
        )
    return dict(ACCURACY_STORAGE)


def _objective_words(objectives: Mapping[str, str]) -> str:
    return ", ".join(f"{metric} {direction}" for metric, direction in objectives.items())


def _finished(df, objectives: Mapping[str, str], notes: list[str]):
    """The finished runs with a finite value of every metric that selects (and of storage)."""
    from albsnn.errors import AlbsnnError

    needed = list(dict.fromkeys((SELECTED_ON, STORAGE_BYTES, *objectives)))
    for name in (*needed, REPORTED, FP32_BYTES, STORAGE_REDUCTION):
        if _m(name) not in df:
            df[_m(name)] = np.nan
    ok = df["state"] == "FINISHED"
    for name in needed:
        ok &= df[_m(name)].map(_finite)
    fin = df[ok]
    if not len(fin):
        raise AlbsnnError(
            f"no finished run logged {' and '.join(needed)}: the report selects on validation "
            "accuracy, so runs from before the validation split cannot be reported (see docs/reports.md)"
        )
    skipped = int((df["state"] == "FINISHED").sum() - len(fin))
    if skipped:
        notes.append(f"{skipped} finished run(s) without {'/'.join(needed)} metrics were left out")
    return fin


def _front(frame, objectives: Mapping[str, str]) -> np.ndarray:
    """Mask of the runs of ``frame`` no other run of it dominates on ``objectives`` (validation only)."""
    return pareto_mask({name: _values(frame, name) for name in objectives}, objectives)


def _m(name: str) -> str:
    """The frame column of a metric's last value."""
    return f"metrics.{name}"


def _values(frame, name: str) -> np.ndarray:
    return frame[_m(name)].to_numpy(dtype=float)


def _dataset(data, fin, settings: _Settings) -> str:
    from albsnn.errors import AlbsnnError

    names = {s.tag(L.DATASET) for s in data.sweeps if s.tag(L.DATASET)}
    if "params.dataset" in fin:
        names |= {str(v) for v in fin["params.dataset"] if v is not None}
    if not names:
        first = fin.iloc[0]
        names = {str(settings.of(first).get("dataset"))}
    if len(names) > 1:
        raise AlbsnnError(
            f"the runs span several datasets {sorted(names)}; report one at a time (--parent-run ID)"
        )
    return names.pop()


def _pareto(
    fin, settings: _Settings, dataset: str, objectives: Mapping[str, str], factors: Sequence[str] = ()
) -> ParetoInfo:
    acc, test, size = _values(fin, SELECTED_ON), _values(fin, REPORTED), _values(fin, STORAGE_BYTES)
    mask = _front(fin, objectives)  # selected on validation; test is only carried along
    order = sorted(range(len(fin)), key=lambda i: (not mask[i], size[i], -acc[i]))
    points, rank = [], 0
    for i in order:
        row = fin.iloc[i].to_dict()
        on = bool(mask[i])
        if on:  # only the front is labelled: one config.json + binarized_layers.json download each
            settings.config(row["run_id"])
        layers = settings.binarized(row["run_id"]) if on else None
        s = settings.of(row)
        rank += on
        points.append(
            ParetoPoint(
                run_id=row["run_id"],
                sweep=row["sweep"],
                val_accuracy=float(acc[i]),
                test_accuracy=float(test[i]) if math.isfinite(test[i]) else None,
                storage_bytes=float(size[i]),
                fp32_bytes=float(row.get("metrics.fp32_bytes", float("nan"))),
                storage_reduction=float(row.get("metrics.storage_reduction", float("nan"))),
                on_front=on,
                rank=rank if on else None,
                label=_label(s, layers, row.get("metrics.num_binarized"), factors),
                settings={k: s.get(k) for k in (*_LABEL_KEYS, "binarize", "budget", "seed", "width")},
                binarized_layers=layers,
            )
        )
    return ParetoInfo(
        dataset=dataset, points=tuple(points), published=PUBLISHED.get(dataset), objectives=dict(objectives)
    )


def _confirmation(data, df, settings: _Settings, factors: Sequence[str]) -> ConfirmInfo | None:
    """Each sweep's confirmed candidates: seed means and stds, and survival (albsnn.sweep.confirm)."""
    from albsnn.sweep.confirm import RULE

    conf = data.confirm
    if conf is None or not len(conf):
        return None
    sweeps = {s.run_id: s for s in data.sweeps}
    rows, objectives = [], {}
    for sweep_id in dict.fromkeys(conf["sweep_id"]):
        sweep = sweeps.get(sweep_id)
        objectives = (sweep.json_tag(L.OBJECTIVES) if sweep else None) or dict(ACCURACY_STORAGE)
        part = conf[conf["sweep_id"] == sweep_id]
        rows += _confirm_rows(sweep, part, df[df["sweep_id"] == sweep_id], objectives, settings, factors)
    return ConfirmInfo(objectives=dict(objectives), rule=RULE, rows=tuple(rows))


def _confirm_rows(sweep, part, search, objectives: Mapping, settings: _Settings, factors) -> list[ConfirmRow]:
    from albsnn.sweep.confirm import judge
    from albsnn.sweep.tracking.layout import CONFIRM_SEEDS, TRIAL_ID

    extra = (sweep.json_tag(CONFIRM_SEEDS) if sweep else None) or []
    trial_ids = search.get(f"tags.{TRIAL_ID}")
    groups, originals = [], {}
    for trial in dict.fromkeys(part["confirms"].dropna()):
        runs = part[part["confirms"] == trial]
        found = search[trial_ids == trial] if trial_ids is not None else search.iloc[:0]
        members = [r for _, r in found.iterrows()] + [r for _, r in runs.iterrows()]
        originals[trial] = (found.iloc[0] if len(found) else None, runs.iloc[0])
        done = {
            int(r["seed"]): {k[len("metrics.") :]: r[k] for k in r.index if k.startswith("metrics.")}
            for r in members
            if r["state"] == "FINISHED" and r["seed"] is not None
        }
        groups.append((trial, int(runs["confirm_point"].dropna().min()), done))
    expected = 1 + (len(extra) if extra else int(part.groupby("confirms").size().max()))
    points = judge(groups, objectives, expected, (SELECTED_ON, REPORTED, STORAGE_BYTES))
    rows = []
    for p in sorted(points, key=_point):
        original, confirm_run = originals[p.trial_id]
        first = original if original is not None else confirm_run
        rows.append(
            ConfirmRow(
                sweep=str(first["sweep"]),
                point=p.number,
                run_id=str(original["run_id"]) if original is not None else "",
                label=_label(settings.of(first), None, None, factors),
                seeds=tuple(sorted(p.seeds)),
                expected=p.expected,
                val_mean=p.mean.get(SELECTED_ON, math.nan),
                val_std=p.std.get(SELECTED_ON, math.nan),
                test_mean=p.mean.get(REPORTED, math.nan),
                test_std=p.std.get(REPORTED, math.nan),
                storage_mean=p.mean.get(STORAGE_BYTES, math.nan),
                storage_std=p.std.get(STORAGE_BYTES, math.nan),
                survives=p.survives,
                complete=p.complete,
            )
        )
    return rows


def _point(p) -> int:
    return p.number


def _hypervolume(
    data, df, fin, reference: tuple[float, float], objectives: Mapping[str, str]
) -> HypervolumeInfo:
    box = (1 - reference[0]) * reference[1]
    by_id = {s.run_id: s for s in data.sweeps}
    sweeps = []
    for sweep_id in dict.fromkeys(df["sweep_id"]):
        part = fin[fin["sweep_id"] == sweep_id].sort_values("end_time", kind="stable")
        everything = df[df["sweep_id"] == sweep_id]
        s = by_id.get(sweep_id)
        a, b = _values(part, SELECTED_ON), _values(part, STORAGE_BYTES)
        value = hypervolume_2d(a, b, reference) if len(part) else 0.0
        history = hypervolume_history(a, b, reference) / box if len(part) and box > 0 else np.array([])
        sweeps.append(
            SweepHypervolume(
                sweep=s.name if s else "(no sweep)",
                run_id=sweep_id,
                sampler=_strategy(s, L.SAMPLER),
                pruner=_strategy(s, L.PRUNER),
                finished=len(part),
                hypervolume=value,
                normalized=_fraction(value, box),
                history=tuple(float(h) for h in history),
                compute_seconds=float(np.nansum(everything["seconds"].to_numpy(float))),
                test_normalized=_fraction(_test_hypervolume(part, reference, objectives), box),
            )
        )
    total = hypervolume_2d(_values(fin, SELECTED_ON), _values(fin, STORAGE_BYTES), reference)
    return HypervolumeInfo(
        reference_accuracy=reference[0],
        reference_bytes=reference[1],
        hypervolume=total,
        normalized=_fraction(total, box),
        sweeps=tuple(sweeps),
        test_normalized=_fraction(_test_hypervolume(fin, reference, objectives), box),
    )


def _test_hypervolume(part, reference: tuple[float, float], objectives: Mapping[str, str]) -> float:
    """The area ``part``'s front (chosen on validation, on ``objectives``) spans at its test accuracies."""
    if not len(part):
        return 0.0
    val, test, size = _values(part, SELECTED_ON), _values(part, REPORTED), _values(part, STORAGE_BYTES)
    return selected_test_hypervolume(val, test, size, reference, front=_front(part, objectives))


def _fraction(value: float, box: float) -> float:
    return value / box if box > 0 else float("nan")


def _header(data, fin, dataset: str, classes: int | None) -> HeaderInfo:
    import json

    sweeps = []
    for s in data.sweeps:
        versions = s.json_tag(L.VERSIONS, {})
        sweeps.append(
            SweepHeader(
                run_id=s.run_id,
                name=s.name,
                pipeline=s.tag(L.PIPELINE_NAME),
                pipeline_path=relative_paths(s.tag(L.PIPELINE)),
                mode=s.tag(L.MODE),
                dataset=s.tag(L.DATASET),
                objectives=s.json_tag(L.OBJECTIVES, {}) or {},
                sampler=_strategy(s, L.SAMPLER),
                pruner=_strategy(s, L.PRUNER),
                git_commit=s.tag(L.CODE_COMMIT),
                git_dirty=s.tag(L.CODE_DIRTY),
                host=s.tag(L.HOST),
                hardware=s.tag(L.HARDWARE),
                versions=versions if isinstance(versions, dict) else {"raw": json.dumps(versions)},
                command=relative_paths(s.tag(L.COMMAND)),
                start=_iso(s.start),
                end=_iso(s.end),
            )
        )
    df = data.runs
    return HeaderInfo(
        title=data.title,
        experiment=data.experiment_name,
        tracking_uri=relative_paths(data.tracking_uri),
        dataset=dataset,
        num_classes=classes,
        first_start=_iso(df["start_time"].min()),
        last_end=_iso(df["end_time"].max()),
        generated=_iso(datetime.now(timezone.utc)),
        report_host=platform.node(),
        sweeps=tuple(sweeps),
    )


def _state_counts(name: str, part) -> StateCounts:
    states = part["state"].value_counts().to_dict()
    return StateCounts(
        sweep=name,
        finished=int(states.get("FINISHED", 0)),
        pruned=int(states.get("PRUNED", 0)),
        failed=int(states.get("FAILED", 0)),
        running=int(states.get("RUNNING", 0)),
        compute_seconds=float(np.nansum(part["seconds"].to_numpy(float))),
    )


def _counts(data, df) -> CountsInfo:
    names = {s.run_id: s.name for s in data.sweeps}
    per = tuple(
        _state_counts(names.get(sid, "(no sweep)"), df[df["sweep_id"] == sid])
        for sid in dict.fromkeys(df["sweep_id"])
    )
    return CountsInfo(sweeps=per, total=_state_counts("all", df))


def _time_steps(fin, settings: _Settings, factors: Sequence[str]) -> TimeStepInfo | None:
    rows = [r for _, r in fin.iterrows()]
    effective = [settings.of(r) for r in rows]
    if all(s.get("time_steps") is None for s in effective):
        return None
    group_by = next((f for f in ("estimator", "binarize", "bwo", "head") if f in factors), None)
    groups: dict[str, dict[float, list[float]]] = {}
    select: dict[str, dict[float, list[float]]] = {}
    for r, s in zip(rows, effective, strict=True):
        t = s.get("time_steps")
        if t is None or not _finite(r[_m(REPORTED)]):
            continue
        key = f"{group_by}={_level(s.get(group_by))}" if group_by else "all finished runs"
        groups.setdefault(key, {}).setdefault(float(t), []).append(float(r[_m(REPORTED)]))
        select.setdefault(key, {}).setdefault(float(t), []).append(float(r[_m(SELECTED_ON)]))
    if not groups:
        return None
    bands = tuple(band(k, v, select[k]) for k, v in sorted(groups.items()))
    return TimeStepInfo(group_by=group_by, bands=bands)


def _layer_map(pareto: ParetoInfo, fin) -> LayerMapInfo | None:
    front = pareto.front
    layers = {c[len("metrics.estimate.") :] for c in fin.columns if c.startswith("metrics.estimate.")}
    for p in front:
        layers |= set(p.binarized_layers or ())
    if not layers:
        return None
    ordered = tuple(sorted(layers, key=layer_sort_key))
    binary = tuple(
        tuple(None if p.binarized_layers is None else (layer in p.binarized_layers) for p in front)
        for layer in ordered
    )
    return LayerMapInfo(
        layers=ordered,
        columns=tuple(f"#{p.rank}" for p in front),
        run_ids=tuple(p.run_id for p in front),
        binary=binary,
    )


def _estimator(
    data, pareto: ParetoInfo, settings: _Settings, notes: list[str]
) -> EstimatorHistoryInfo | None:
    best = pareto.best
    raw = data.artifact_json(best.run_id, "estimator_history.json")
    per: dict[str, list[tuple[int, float, bool]]] = {}
    if isinstance(raw, list):
        for rec in raw:
            if isinstance(rec, dict) and _finite(rec.get("estimate")) and rec.get("layer") is not None:
                per.setdefault(str(rec["layer"]), []).append(
                    (int(rec.get("epoch", 0)), float(rec["estimate"]), bool(rec.get("binary")))
                )
    else:  # fall back to the per-epoch estimate.<layer> metrics
        row = data.runs[data.runs["run_id"] == best.run_id].iloc[0]
        for col in row.index:
            if col.startswith("metrics.estimate."):
                layer = col[len("metrics.estimate.") :]
                hist = data.metric_history(best.run_id, f"estimate.{layer}")
                binary = set(best.binarized_layers or ())
                per[layer] = [(int(s), float(v), layer in binary) for s, v in hist if math.isfinite(v)]
    if not any(per.values()):
        notes.append(f"the best run on validation, {best.run_id}, recorded no estimator history")
        return None
    layers = tuple(sorted((k for k in per if per[k]), key=layer_sort_key))
    rows = [sorted(per[k]) for k in layers]
    bwo = data.runs.loc[data.runs["run_id"] == best.run_id].get("metrics.bwo_epoch")
    bwo_epoch = bwo.iloc[0] if bwo is not None and len(bwo) else None
    threshold = best.settings.get("threshold")
    return EstimatorHistoryInfo(
        run_id=best.run_id,
        label=best.label,
        threshold=float(threshold) if _finite(threshold) else None,
        bwo_epoch=int(bwo_epoch) if _finite(bwo_epoch) else None,
        layers=layers,
        epochs=tuple(tuple(e for e, _, _ in r) for r in rows),
        estimates=tuple(tuple(v for _, v, _ in r) for r in rows),
        binary=tuple(tuple(b for _, _, b in r) for r in rows),
    )


def _importances(data, notes: list[str]) -> tuple[ImportanceInfo, ...]:
    out = []
    for s in data.sweeps:
        path, study_name = s.tag(L.OPTUNA_STORAGE), s.tag(L.OPTUNA_STUDY)
        if not path or not study_name:
            continue
        if not Path(path).is_file():
            notes.append(f"sweep {s.name}: Optuna journal {path} not found here, so no parameter importances")
            continue
        try:
            info = _study_importances(s.name, path, study_name, s.json_tag(L.OBJECTIVES, {}) or {})
        except Exception as e:  # too few trials, one value per parameter, unreadable journal, no optuna
            notes.append(f"sweep {s.name}: no parameter importances ({type(e).__name__}: {e})")
            continue
        if info is not None:
            out.append(info)
    return tuple(out)


def _study_importances(sweep: str, path: str, study_name: str, objectives: Mapping) -> ImportanceInfo | None:
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=JournalStorage(JournalFileBackend(path)))
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        raise ValueError(f"{len(complete)} completed trial(s); importances need at least 2")
    n_obj = len(study.directions)
    names = (
        list(study.metric_names or []) or list(objectives)[:n_obj] or [f"objective {i}" for i in range(n_obj)]
    )
    per = []
    for i in range(n_obj):
        imp = get_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=0), target=lambda t, i=i: t.values[i]
        )
        per.append(imp)
    params = tuple(per[0])  # ordered by the first objective
    return ImportanceInfo(
        sweep=sweep,
        study=study_name,
        evaluator="fANOVA (optuna.importance.FanovaImportanceEvaluator, seed 0)",
        objectives=tuple(names),
        params=params,
        values=tuple(tuple(float(imp.get(p, 0.0)) for p in params) for imp in per),
        n_trials=len(complete),
    )


def _varying(part, names: Sequence[str]) -> tuple[str, ...]:
    return tuple(n for n in names if n != "seed" and part[f"params.{n}"].map(repr).nunique() > 1)


def _ablation(data, df, test: str, notes: list[str]):
    """The ablation table of the ablation sweeps (or of untagged runs repeated over seeds), and its runs."""
    ablation_sweeps = {s.run_id for s in data.sweeps if s.tag(L.MODE) == "ablation"}
    if ablation_sweeps:
        part = df[df["sweep_id"].isin(ablation_sweeps)]
    elif not any(s.tag(L.MODE) for s in data.sweeps) and "params.seed" in df:
        part = df  # untagged runs: an ablation when some configuration ran with several seeds
    else:
        return None, None
    if "params.seed" not in part or part["params.seed"].map(lambda x: x is None).all():
        if ablation_sweeps:
            notes.append("the ablation sweep logged no seed parameter, so no statistics over seeds")
        return None, None
    factors = _varying(part, data.param_names)
    keys = [tuple((f, part.at[i, f"params.{f}"]) for f in factors) for i in part.index]
    configs: dict[str, dict] = {}
    for key in keys:
        configs.setdefault(_config_label(dict(key)), dict(key))
    if not ablation_sweeps and all(v <= 1 for v in _seed_counts(part, keys).values()):
        return None, None
    labels = list(configs)
    baseline = _baseline(data, configs, ablation_sweeps, notes) or labels[0]
    runs = [  # report on test: the per-seed value is the final test accuracy; val rides along
        (
            _config_label(dict(key)),
            part.at[i, "params.seed"],
            part.at[i, "state"],
            _at(part, i, REPORTED),
            _at(part, i, "storage_reduction"),
            _at(part, i, SELECTED_ON),
        )
        for i, key in zip(part.index, keys, strict=True)
    ]
    runs = [run for run in runs if run[1] is not None]
    info = ablation_rows(
        list(configs.items()),
        runs,
        baseline=baseline,
        test=test,
        factors=factors,
        metric=REPORTED,
        replicate=REPLICATE_FACTOR if REPLICATE_FACTOR in factors else None,  # draws: averaged per seed
    )
    return info, part


def _at(frame, index, name: str) -> float | None:
    value = frame.at[index, _m(name)]
    return float(value) if _finite(value) else None


def _seed_counts(part, keys) -> dict:
    counts: dict = {}
    for key, seed in zip(keys, part["params.seed"], strict=True):
        counts.setdefault(key, set()).add(seed)
    return {k: len(v) for k, v in counts.items()}


def _baseline(data, configs: Mapping[str, dict], sweeps: set, notes: list[str]) -> str | None:
    # 1. the sweep names it (tag albsnn.ablation_baseline = JSON {param: value})
    for s in data.sweeps:
        wanted = s.json_tag(L.ABLATION_BASELINE) if s.run_id in sweeps else None
        if isinstance(wanted, dict) and wanted:
            for label, levels in configs.items():
                if all(_level(levels.get(k)) == _level(v) for k, v in wanted.items() if k in levels):
                    return label
            notes.append(f"ablation baseline {wanted} matches no configuration; using the first")
            return None
    # 2. the configuration that keeps the defaults (TrainConfig's, under the sweep's base config)
    defaults = _defaults()
    for sweep_id in sweeps:
        defaults.update(_base_config(data, sweep_id))
    for label, levels in configs.items():
        if levels and all(k in defaults and defaults[k] == v for k, v in levels.items()):
            return label
    return None  # 3. the first configuration in grid order


def _learning(
    data, df, pareto: ParetoInfo, ablation: AblationInfo | None, ablation_runs, factors: Sequence[str]
) -> LearningCurvesInfo | None:
    if ablation is not None:
        df, factors = ablation_runs, ablation.factors
    fin = df[df["state"] == "FINISHED"]
    keys = {
        run_id: tuple((f, fin.at[i, f"params.{f}"]) for f in factors)
        for i, run_id in zip(fin.index, fin["run_id"], strict=True)
    }
    if ablation is not None:
        by_label = {_config_label(dict(k)): k for k in keys.values()}
        wanted = [by_label[r.label] for r in ablation.rows if r.label in by_label][:_MAX_CURVES]
        what = "ablation configurations (bands: ± std over seeds)"
    else:
        wanted = list(dict.fromkeys(keys[p.run_id] for p in pareto.front if p.run_id in keys))[:_MAX_CURVES]
        what = "Pareto-front configurations, smallest model first (bands: ± std over seeds where repeated)"
    curves = []
    for key in wanted:  # group by the exact values; show them rounded
        ids = [rid for rid, k in keys.items() if k == key]
        label = _config_label(dict(key), 3)
        val = _history_band(data, label, ids, SELECTED_ON)
        curves.append(
            LearningCurve(
                label=label,
                test_accuracy=_history_band(data, label, ids, REPORTED),
                train_loss=_history_band(data, label, ids, "train_loss"),
                val_accuracy=val if val.x else None,
            )
        )
    return LearningCurvesInfo(what=what, curves=tuple(curves)) if curves else None


def _history_band(data, label: str, run_ids: Sequence[str], metric: str):
    return band_by_step(label, [data.metric_history(r, metric) for r in run_ids])


def _trials(df, factors: Sequence[str]) -> tuple[dict, ...]:
    cols = (SELECTED_ON, REPORTED, STORAGE_BYTES, "storage_reduction", BEST_VAL_ACCURACY, "num_binarized")
    rows = []
    for _, r in df.iterrows():
        row: dict[str, Any] = {
            "run_id": r["run_id"],
            "sweep": r["sweep"],
            "trial": r["name"],
            "state": r["state"],
            "seconds": float(r["seconds"]) if _finite(r["seconds"]) else None,
        }
        for f in (*factors, "seed"):
            key = f"params.{f}"
            row[f] = (
                r[key]
                if key in r and r[key] is not None and not (isinstance(r[key], float) and math.isnan(r[key]))
                else None
            )
        for c in cols:
            v = r.get(f"metrics.{c}")
            row[c] = float(v) if _finite(v) else None
        rows.append(row)
    return tuple(rows)


def _estimator_check(fin, notes: list[str]) -> EstimatorCheckInfo | None:
    """Each estimator's estimate vs the measured drop, from the finished runs' check metrics."""
    prefixes = (_m(CHECK_MEASURED_PREFIX), _m(CHECK_ESTIMATE_PREFIX))
    cols = [c for c in fin.columns if c.startswith(prefixes)]
    runs = {
        row["run_id"]: {c[len("metrics.") :]: row[c] for c in cols if _finite(row[c])}
        for _, row in fin.iterrows()
    }
    info = estimator_check(runs) if cols else None
    if info is None:
        notes.append(
            f"no finished run logged {CHECK_MEASURED_PREFIX}* metrics, so the section "
            '"Does the estimator estimate?" is left out (runs with estimator_check: true log them)'
        )
    return info
