"""Read a sweep back from MLflow, as ``docs/tracking.md`` lays it out, into one typed record.

``load_runs(uri, experiment=NAME)`` takes every trial run of the experiment (grouped by the sweep
parent each hangs under); ``load_runs(uri, parent_run_id=ID)`` takes one sweep's children. Runs come
as the pandas frame ``mlflow.search_runs`` returns (built from ``MlflowClient.search_runs``, so the
caller's global tracking URI is left alone); ``params.*`` come back as strings and are cast with the
parent's ``albsnn.search_space_types`` tag, else with the type of the
:class:`~albsnn.train.TrainConfig` field of that name. Every problem a user can fix (unknown
experiment or run, nothing finished, a tracking URI that does not answer) raises
:class:`~albsnn.errors.AlbsnnError` with one line that says what to do.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import typing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from albsnn.errors import AlbsnnError
from albsnn.metrics import (
    BEST_VAL_ACCURACY,
    CHECK_ESTIMATE_PREFIX,
    CHECK_MEASURED_PREFIX,
    STORAGE_BYTES,
    TEST_ACCURACY,
    VAL_ACCURACY,
)
from albsnn.sweep.tracking import layout as L
from albsnn.sweep.tracking.layout import STATES, check_tracking_uri

__all__ = [
    "Sweep",
    "RunsData",
    "load_runs",
    "cast_param",
    "STATES",
    "VAL_ACCURACY",
    "TEST_ACCURACY",
    "BEST_VAL_ACCURACY",
    "STORAGE_BYTES",
    "CHECK_MEASURED_PREFIX",
    "CHECK_ESTIMATE_PREFIX",
]

# Metric names the report reads are albsnn.metrics' (re-exported here). Rule of evidence: the report
# selects (Pareto front, hypervolume, "best") on VAL_ACCURACY and reports the TEST_ACCURACY of what
# it selected.


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise AlbsnnError(
            f"albsnn report needs {module}: pip install mlflow pandas matplotlib scipy "
            "(and optuna for parameter importances)"
        ) from None


@dataclass(frozen=True)
class Sweep:
    """A sweep's parent run and what its tags say about it."""

    run_id: str
    name: str
    tags: dict[str, str]
    start: datetime | None
    end: datetime | None

    def tag(self, name: str, default: str = "") -> str:
        """The parent run's tag ``name``: a name of :mod:`albsnn.sweep.tracking.layout` (``L.DATASET``)."""
        return self.tags.get(_tag_name(name), default)

    def json_tag(self, name: str, default: Any = None) -> Any:
        """The parent run's JSON tag ``name`` decoded, or ``default`` when absent or not JSON."""
        try:
            return json.loads(self.tags[_tag_name(name)])
        except (KeyError, ValueError):
            return default


def _tag_name(name: str) -> str:
    # A bare key ("dataset") would silently read nothing: the names are written once, in the layout.
    if "." not in name:
        raise ValueError(f"{name!r} is not a tag name; use albsnn.sweep.tracking.layout's (e.g. L.DATASET)")
    return name


@dataclass
class RunsData:
    """The trial runs of one report, as read from MLflow.

    ``runs`` has one row per trial: ``run_id``, ``name``, ``sweep_id``, ``sweep`` (parent name),
    ``state`` (FINISHED | PRUNED | FAILED | RUNNING), ``start``, ``end``, ``seconds`` (wall time),
    ``seed`` and ``trial_number``, then ``params.<name>`` (cast) and ``metrics.<name>`` (last value).
    Rows are in the order the runs started. ``confirm`` has the same columns for the sweeps'
    confirmation runs (role ``confirm``: the Pareto candidates re-run on more seeds, with
    ``confirms`` = the confirmed search trial's ``albsnn.trial_id`` and ``confirm_point`` = its
    number); they are never in ``runs``, so counts, fronts and hypervolumes are the search's.
    """

    tracking_uri: str
    experiment_id: str
    experiment_name: str
    title: str  # the NAME of runs/reports/NAME: experiment name, or the sweep's name for --parent-run
    sweeps: tuple[Sweep, ...]
    runs: Any  # pandas.DataFrame
    param_names: tuple[str, ...]
    param_types: dict[str, str]
    client: Any = field(repr=False, default=None)  # mlflow.tracking.MlflowClient
    confirm: Any = None  # pandas.DataFrame of the confirmation runs (empty when none)
    _artifact_dir: str | None = field(repr=False, default=None)

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """``[(step, value)]`` of one metric of one run, by step (the last value per step)."""
        by_step = {m.step: m.value for m in sorted(self.client.get_metric_history(run_id, key), key=_ts)}
        return sorted(by_step.items())

    def artifact_json(self, run_id: str, path: str) -> Any:
        """A JSON artifact of a run, or None when the run has none there (or it is unreadable)."""
        if self._artifact_dir is None:
            self._artifact_dir = tempfile.mkdtemp(prefix="albsnn-report-artifacts-")
        dst = Path(self._artifact_dir) / run_id
        dst.mkdir(exist_ok=True)
        from mlflow.exceptions import MlflowException

        try:
            with _quiet_downloads():
                local = self.client.download_artifacts(run_id, path, str(dst))
            return json.loads(Path(local).read_text())
        except (MlflowException, OSError, ValueError):  # missing, unreachable or not JSON: "not recorded"
            return None

    def close(self) -> None:
        if self._artifact_dir:
            import shutil

            shutil.rmtree(self._artifact_dir, ignore_errors=True)
            self._artifact_dir = None


@contextlib.contextmanager
def _quiet_downloads():
    # MLflow draws a progress bar per download by default: dozens of them in a report run
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _ts(metric) -> tuple:
    return (metric.timestamp, metric.step)


# ---- casting ---------------------------------------------------------------------------------------
def _train_config_types() -> dict[str, str]:
    import dataclasses

    from albsnn.train import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    out = {}
    for f in dataclasses.fields(TrainConfig):
        args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)] or [hints[f.name]]
        kind = args[0]
        if kind in (bool, int, float, str):
            out[f.name] = kind.__name__
    return out


def cast_param(text: str | None, kind: str | None) -> Any:
    """MLflow's string form of a parameter back to its value (``"None"`` is None).

    ``kind`` is ``float``, ``int``, ``str`` or ``bool``; None guesses int, then float, then bool,
    then keeps the string.
    """
    if text is None or text == "None":
        return None
    if kind == "str":
        return text
    if kind == "bool" or (kind is None and text in ("True", "False", "true", "false")):
        return text in ("True", "true", "1")
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            return int(float(text))
    if kind == "float":
        return float(text)
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


# ---- reading --------------------------------------------------------------------------------------
def _when(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def _frame(runs: list):
    """The frame ``mlflow.search_runs`` would return for these runs (plus ``name``)."""
    import pandas as pd

    rows = []
    for r in runs:
        row = {
            "run_id": r.info.run_id,
            "name": r.info.run_name or r.data.tags.get(L.RUN_NAME, ""),
            "status": r.info.status,
            "start_time": _when(r.info.start_time),
            "end_time": _when(r.info.end_time),
        }
        row.update({f"params.{k}": v for k, v in r.data.params.items()})
        row.update({f"metrics.{k}": v for k, v in r.data.metrics.items()})
        row.update({f"tags.{k}": v for k, v in r.data.tags.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def _sweep(run) -> Sweep:
    return Sweep(
        run_id=run.info.run_id,
        name=run.info.run_name or run.data.tags.get(L.RUN_NAME, run.info.run_id[:8]),
        tags=dict(run.data.tags),
        start=_when(run.info.start_time),
        end=_when(run.info.end_time),
    )


def _get_run(client, run_id: str, uri: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as e:
        if getattr(e, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise AlbsnnError(f"no MLflow run with id {run_id!r} at {uri}") from None
        raise


def load_runs(tracking_uri: str, experiment: str | None = None, parent_run_id: str | None = None) -> RunsData:
    """Every trial run of ``experiment`` (all its sweeps), or the children of ``parent_run_id``."""
    if (experiment is None) == (parent_run_id is None):
        raise AlbsnnError("give either an experiment name or a sweep's parent run id (exactly one)")
    check_tracking_uri(tracking_uri, must_exist=True)
    _require("mlflow")
    _require("pandas")
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    try:
        return _load(client, tracking_uri, experiment, parent_run_id)
    except MlflowException as e:
        raise AlbsnnError(f"MLflow at {tracking_uri} could not be read: {e.message}") from None


def _load(client, uri: str, experiment: str | None, parent_run_id: str | None) -> RunsData:
    if parent_run_id is not None:
        exp, found, confirm, sweeps, title = _one_sweep(client, uri, parent_run_id)
        where = f"sweep run {parent_run_id}"
    else:
        exp, found, confirm, sweeps, title = _whole_experiment(client, uri, experiment)
        where = f"experiment {exp.name!r}"
    if not found:
        raise AlbsnnError(f"{where} at {uri} has no trial runs")
    df = _runs_frame(found, confirm, sweeps, f"{where} at {uri}")
    names, types = _cast_params(df, sweeps)
    df["confirms"] = df[f"tags.{L.CONFIRMS}"]
    df["confirm_point"] = [_int_tag(x) for x in df[f"tags.{L.CONFIRM_POINT}"]]
    df = df.sort_values("start_time", kind="stable")
    is_confirm = df[f"tags.{L.ROLE}"] == L.CONFIRM
    return RunsData(
        tracking_uri=uri,
        experiment_id=exp.experiment_id,
        experiment_name=exp.name,
        title=title,
        sweeps=tuple(sorted(sweeps.values(), key=lambda s: (s.start is None, s.start))),
        runs=df[~is_confirm].reset_index(drop=True),
        param_names=names,
        param_types={k: v for k, v in types.items() if k in names},
        client=client,
        confirm=df[is_confirm].reset_index(drop=True),
    )


def _one_sweep(client, uri: str, parent_run_id: str) -> tuple:
    """``(experiment, trial runs, confirmation runs, {run id: Sweep}, title)`` of one parent run."""
    parent = _get_run(client, parent_run_id, uri)
    exp = client.get_experiment(parent.info.experiment_id)
    if parent.data.tags.get(L.ROLE) == L.TRIAL:
        up = parent.data.tags.get(L.PARENT_RUN_ID, "?")
        raise AlbsnnError(f"run {parent_run_id} is a trial, not a sweep; pass its parent run {up}")
    found = L.search_all(client, [exp.experiment_id], L.children_filter(parent_run_id))
    confirm = [r for r in found if r.data.tags.get(L.ROLE) == L.CONFIRM]
    found = [r for r in found if r.data.tags.get(L.ROLE) != L.CONFIRM]
    if not found:
        raise AlbsnnError(
            f"run {parent_run_id} ({parent.info.run_name}) has no child runs: pass a sweep's parent run"
        )
    return exp, found, confirm, {parent_run_id: _sweep(parent)}, parent.info.run_name or parent_run_id


def _whole_experiment(client, uri: str, experiment: str) -> tuple:
    """``(experiment, trial runs, confirmation runs, {run id: Sweep}, title)`` of every sweep of it.

    Runs without a role (logged by hand) count as trials unless other runs hang under them.
    """
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments(max_results=50))
        raise AlbsnnError(f"no MLflow experiment named {experiment!r} at {uri}; experiments there: {names}")
    found = L.search_all(client, [exp.experiment_id])
    sweeps = {r.info.run_id: _sweep(r) for r in found if r.data.tags.get(L.ROLE) == L.SWEEP}
    parents = {r.data.tags.get(L.PARENT_RUN_ID) for r in found}
    confirm = [r for r in found if r.data.tags.get(L.ROLE) == L.CONFIRM]
    found = [
        r
        for r in found
        if r.data.tags.get(L.ROLE) == L.TRIAL
        or (r.data.tags.get(L.ROLE) is None and r.info.run_id not in parents)
    ]
    for pid in sorted({r.data.tags.get(L.PARENT_RUN_ID) for r in found} - set(sweeps) - {None}):
        with contextlib.suppress(AlbsnnError):
            sweeps[pid] = _sweep(_get_run(client, pid, uri))
    return exp, found, confirm, sweeps, experiment


_TAG_COLUMNS = (L.TRIAL_STATE, L.PARENT_RUN_ID, L.OPTUNA_TRIAL_NUMBER, L.ROLE, L.CONFIRMS, L.CONFIRM_POINT)


def _runs_frame(found: list, confirm: list, sweeps: dict, where: str):
    """The frame of the trial and confirmation runs, with the columns :class:`RunsData` documents
    (parameters still MLflow's strings); an error when no trial run finished."""
    df = _frame([*found, *confirm])
    for col in (f"tags.{t}" for t in _TAG_COLUMNS):
        if col not in df:
            df[col] = None
    df["state"] = [L.run_state(s, t) for s, t in zip(df["status"], df[f"tags.{L.TRIAL_STATE}"], strict=True)]
    is_confirm = (df[f"tags.{L.ROLE}"] == L.CONFIRM).to_numpy()
    if not (df["state"][~is_confirm] == "FINISHED").any():
        counts = df["state"][~is_confirm].value_counts().to_dict()
        raise AlbsnnError(f"{where} has no finished runs ({len(found)} runs: {counts})")
    df["sweep_id"] = df[f"tags.{L.PARENT_RUN_ID}"].fillna("")
    df["sweep"] = [sweeps[s].name if s in sweeps else "" for s in df["sweep_id"]]
    df["seconds"] = [
        (e - s).total_seconds() if s is not None and e is not None else float("nan")
        for s, e in zip(df["start_time"], df["end_time"], strict=True)
    ]
    df["trial_number"] = [_int_tag(x) for x in df[f"tags.{L.OPTUNA_TRIAL_NUMBER}"]]
    return df


def _int_tag(x: object) -> int | None:
    return cast_param(x, "int") if isinstance(x, str) else None


def _cast_params(df, sweeps: dict) -> tuple[tuple[str, ...], dict[str, str]]:
    """Cast ``params.*`` in place: the sweeps' declared types, else TrainConfig's field types, else a
    guess; returns the compared parameter names and every parameter's type."""
    import pandas as pd

    types: dict[str, str] = {}
    for s in sweeps.values():
        declared = s.json_tag(L.SEARCH_SPACE_TYPES, {})
        if isinstance(declared, dict):
            types.update({str(k): str(v) for k, v in declared.items()})
    fallback = _train_config_types()
    logged = tuple(sorted(c[len("params.") :] for c in df.columns if c.startswith("params.")))
    # Runs log their whole config; the sweeps' declared (searched) names are the parameters compared.
    names = tuple(n for n in logged if n in types) if types else logged
    for name in logged:
        kind = types.get(name) or fallback.get(name)
        types.setdefault(name, kind or "")
        values = [cast_param(v, kind) if isinstance(v, str) else None for v in df[f"params.{name}"]]
        # object dtype: a list with None would otherwise become floats (1 -> 1.0) or NaN strings
        df[f"params.{name}"] = pd.Series(values, index=df.index, dtype=object)
    df["seed"] = df["params.seed"] if "params.seed" in df else [None] * len(df)
    return names, types
