"""A sweep's record: what ``--resume`` needs to continue it, kept in ``<sweep folder>/sweep.json``.

The record is written when the sweep's parent run exists, rewritten when ``--resume --num-samples``
raises the budget or when the confirmation's plan is chosen, and read by ``--resume``,
``--dry-run --resume`` and the trial budget (:mod:`albsnn.sweep.budget`). Every write is atomic
(:func:`albsnn.atomic.write_atomic`): a driver killed mid-write leaves the previous record. The JSON
keys are the field names, unchanged since the first sweeps, so any sweep folder can be resumed.

    record = SweepRecord.load(find_sweep(pipe))
    pipe = record.started_pipeline()         # the pipeline as the sweep started, from its copies
    record.num_samples = 40
    record.save()
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from albsnn.atomic import write_atomic
from albsnn.errors import ConfigError
from albsnn.sweep._yaml import read_yaml_mapping
from albsnn.sweep.pipeline import Pipeline, parse_pipeline
from albsnn.sweep.tracking.layout import PIPELINE_FILE

__all__ = [
    "SWEEP_FILE",
    "JOURNAL_FILE",
    "ConfirmRun",
    "ConfirmPlan",
    "SweepRecord",
    "find_sweep",
    "recorded_budget",
]

SWEEP_FILE = "sweep.json"
JOURNAL_FILE = "optuna.journal"  # Optuna's JournalStorage: the search study and the pruning study


@dataclass(frozen=True)
class ConfirmRun:
    """One confirmation run: a Pareto candidate of the search re-run with another seed."""

    trial: str  # the Ray trial id of the search trial it re-runs
    point: int  # the candidate's number, 1..
    seed: int
    config: dict[str, Any]  # that trial's whole config, only the seed changed


@dataclass(frozen=True)
class ConfirmPlan:
    """The candidates a sweep confirms, chosen once when its search ends (so a resume continues them)."""

    seeds: list[int]
    points: list[str]  # the candidates' search trial ids, point 1 first
    runs: list[ConfirmRun]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ConfirmPlan:
        runs = [ConfirmRun(**run) for run in data["runs"]]
        return cls(seeds=list(data["seeds"]), points=list(data["points"]), runs=runs)


@dataclass
class SweepRecord:
    """The state of one sweep that outlives its driver: where it records, its budget, its studies."""

    folder: Path  # the sweep folder (not stored: the record lives in it)
    sweep_id: str
    pipeline: str  # the pipeline file the sweep was started from
    overrides: dict[str, str]  # values that replace the pipeline copy's (its search space copy, storage, ...)
    num_samples: int  # the search's trial budget; ``--resume --num-samples`` raises it
    experiment: str
    experiment_id: str
    parent_run_id: str
    tracking_uri: str
    optuna_storage: str | None = None  # the journal; None in records that predate it
    optuna_study: str | None = None  # the search study (search mode only)
    pruning_study: str | None = None
    created: str = ""  # local time, ISO 8601 to the second: the newest sweep is the one --resume picks
    confirm: ConfirmPlan | None = None  # set once the search has ended, when the pipeline confirms

    @property
    def path(self) -> Path:
        return self.folder / SWEEP_FILE

    @property
    def journal(self) -> Path | None:
        return Path(self.optuna_storage) if self.optuna_storage else None

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "folder"}
        if self.confirm is None:  # the key appears only once a plan exists, as before
            del data["confirm"]
        else:
            data["confirm"] = self.confirm.to_dict()
        return data

    @classmethod
    def from_dict(cls, folder: Path, data: dict) -> SweepRecord:
        fields = [f for f in dataclasses.fields(cls) if f.name != "folder"]
        missing = [f.name for f in fields if f.default is dataclasses.MISSING and f.name not in data]
        if missing:
            raise ConfigError(f"{Path(folder) / SWEEP_FILE} is not a sweep record: it has no {missing}")
        values = {f.name: data[f.name] for f in fields if f.name in data}
        plan = values.pop("confirm", None)
        values["confirm"] = ConfirmPlan.from_dict(plan) if plan else None
        return cls(folder=Path(folder), **values)

    @classmethod
    def load(cls, folder: str | Path) -> SweepRecord:
        """The record in ``folder``; a ConfigError naming the file when it is missing or unreadable."""
        return cls.from_dict(Path(folder), _read(Path(folder) / SWEEP_FILE))

    def save(self) -> Path:
        """Write ``sweep.json`` atomically: a reader (or a resume after a kill) sees the old or the new."""
        return write_atomic(self.path, json.dumps(self.to_dict(), indent=1))

    def started_pipeline(self) -> Pipeline:
        """The pipeline as it was when the sweep started (its copies, not today's files)."""
        data = read_yaml_mapping(self.folder / PIPELINE_FILE, "pipeline")
        data.update(self.overrides)
        return parse_pipeline(
            data, Path(self.pipeline), num_samples=self.num_samples, experiment=self.experiment
        )


def recorded_budget(sweep_file: str | Path) -> int:
    """The ``num_samples`` in a ``sweep.json``: read on every restore of the search, nothing else needed."""
    return int(_read(Path(sweep_file))["num_samples"])


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"--resume: {path} is unreadable ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--resume: {path} is not a sweep record (a JSON object)")
    return data


def find_sweep(pipeline: Pipeline, sweep_id: str | None = None) -> Path:
    """The folder of sweep ``sweep_id`` of ``pipeline``, or its newest (for ``--resume``).

    Newest means the latest ``created`` time in ``sweep.json`` (sweep ids sort by time too), not the
    folder's modification time, which any write into it changes. A ConfigError when there is none.
    """
    root = pipeline.storage / pipeline.name
    sweeps = sorted(root.glob(f"*/{SWEEP_FILE}")) if root.is_dir() else []
    if not sweeps:
        raise ConfigError(
            f"--resume: no sweep of pipeline {pipeline.name!r} under {root}; start one without --resume"
        )
    if sweep_id is not None:
        if (root / sweep_id / SWEEP_FILE).is_file():
            return root / sweep_id
        known = ", ".join(p.parent.name for p in sweeps[-5:])
        raise ConfigError(
            f"--resume: no sweep {sweep_id!r} of pipeline {pipeline.name!r} in {root} (newest: {known})"
        )
    return max(sweeps, key=lambda p: (_created(p.parent), p.parent.name)).parent


def _created(folder: Path) -> str:
    try:
        return str(SweepRecord.load(folder).created)
    except ConfigError:  # an unreadable record sorts first; --resume SWEEP_ID still names it
        return ""
