"""The experiment and the sweep's parent run: created, described, summarised and ended.

These calls are synchronous: they run before a sweep starts (so a bad store fails before anything
is trained) or after it ends. Trial runs are written only through :class:`~.spool.SweepLog`.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import platform
import socket
import subprocess
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path

from albsnn.errors import ConfigError
from albsnn.metrics import (
    BEST_VAL_ACCURACY,
    FP32_BYTES,
    STORAGE_BYTES,
    SWEEP_BEST_VAL_ACCURACY,
    SWEEP_COUNT_PREFIX,
    SWEEP_VAL_HYPERVOLUME,
    VAL_ACCURACY,
)
from albsnn.pareto import hypervolume_2d
from albsnn.sweep.tracking import layout as L

__all__ = [
    "check_experiment",
    "ensure_experiment",
    "start_parent_run",
    "create_parent_run",
    "parent_named",
    "log_artifacts",
    "provenance_tags",
    "source_tags",
    "summary_metrics",
    "find_parent",
    "driver_alive",
    "driver_tag",
]


def check_experiment(uri: str, name: str) -> None:
    """A ConfigError when experiment ``name`` exists but is deleted (MLflow cannot reuse the name)."""
    experiment = L.client(uri).get_experiment_by_name(name)
    if experiment is not None and experiment.lifecycle_stage == "deleted":
        raise ConfigError(
            f"MLflow experiment {name!r} at {uri} is deleted; restore it (`mlflow experiments restore "
            f"--experiment-id {experiment.experiment_id}`) or pass another --name"
        )


def ensure_experiment(uri: str, name: str) -> str:
    """The id of experiment ``name`` (created if missing), tagged to open on its training runs."""
    client = L.client(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = None
        if L.sqlite_path(uri) is not None:  # artifacts next to a local database
            location = (L.sqlite_path(uri).parent / "mlruns" / name).as_uri()
        experiment_id = client.create_experiment(name, artifact_location=location)
    else:
        experiment_id = experiment.experiment_id
    client.set_experiment_tag(experiment_id, L.EXPERIMENT_KIND, L.TRAINING_KIND)
    return experiment_id


def start_parent_run(
    uri: str, experiment_id: str, run_name: str, tags: Mapping, artifacts: Iterable[Path] = ()
) -> str:
    """Create the sweep's parent run (``albsnn.role=sweep``) and log its artifacts; returns its id."""
    run_id = create_parent_run(uri, experiment_id, run_name, tags)
    try:
        log_artifacts(uri, run_id, artifacts)
    except BaseException:
        L.client(uri).set_terminated(run_id, "FAILED")
        raise
    return run_id


def create_parent_run(uri: str, experiment_id: str, run_name: str, tags: Mapping) -> str:
    """Create the sweep's parent run (``albsnn.role=sweep``); returns its id."""
    tags = {L.ROLE: L.SWEEP, **driver_tag(), **tags}
    return L.client(uri).create_run(experiment_id, run_name=run_name, tags=tags).info.run_id


def parent_named(uri: str, experiment_id: str, run_name: str) -> str | None:
    """The id of the parent run named ``run_name`` in the experiment, None when there is none."""
    query = f"attributes.run_name = '{run_name}' and tags.`{L.ROLE}` = '{L.SWEEP}'"
    found = L.client(uri).search_runs([experiment_id], query, max_results=1)
    return found[0].info.run_id if found else None


def log_artifacts(uri: str, run_id: str, files: Iterable[Path]) -> None:
    client = L.client(uri)
    for path in files:
        client.log_artifact(run_id, str(path))


def driver_tag() -> dict[str, str]:
    """``albsnn.driver = <host>:<pid>``: which process runs the sweep now."""
    return {L.DRIVER: f"{socket.gethostname()}:{os.getpid()}"}


def _git(repo: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def source_tags(command: str | None = None, repo: Path | None = None) -> dict[str, str]:
    """MLflow's own source columns: git commit, source name (the command), user."""
    commit = _git(repo or Path(__file__).resolve().parent, "rev-parse", "HEAD")
    tags = {L.SOURCE_NAME: command or "albsnn sweep", L.SOURCE_TYPE: "LOCAL", L.USER: _user()}
    if commit:
        tags[L.GIT_COMMIT] = commit
    return tags


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return str(os.getuid())


def provenance_tags(repo: Path | None = None, command: str | None = None) -> dict[str, str]:
    """Git commit and dirty flag (of the checkout ``albsnn`` runs from), host, hardware, versions, command."""
    repo = repo or Path(__file__).resolve().parent
    versions = {"python": platform.python_version()}
    for package in ("albsnn", "torch", "numpy", "ray", "optuna", "mlflow"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    status = _git(repo, "status", "--porcelain")
    tags = {
        L.CODE_COMMIT: _git(repo, "rev-parse", "HEAD") or "unknown",
        L.CODE_DIRTY: "unknown" if status is None else str(bool(status)).lower(),
        L.HOST: socket.gethostname(),
        L.HARDWARE: _hardware(),
        L.VERSIONS: json.dumps(versions, sort_keys=True),
        **source_tags(command, repo),
    }
    if command:
        tags[L.COMMAND] = command
    return tags


def _hardware() -> str:
    text = f"{platform.machine()} {os.cpu_count()} cpus"
    try:
        import torch

        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            text += ", " + ", ".join(names)
    except Exception:  # hardware description is best effort
        pass
    return text


def summary_metrics(last: Mapping[str, Mapping[str, float]], states: Mapping[str, str]) -> dict[str, float]:
    """The parent run's comparison metrics from each trial's last values and state.

    Best validation accuracy of any trial; hypervolume of (val_accuracy, storage_bytes) of the
    finished trials against (0 accuracy, the fp32 size), as a fraction of that box; counts by state.
    """
    out = {f"{SWEEP_COUNT_PREFIX}{s.lower()}": 0.0 for s in (L.FINISHED, L.PRUNED, L.FAILED)}
    for state in states.values():
        key = f"{SWEEP_COUNT_PREFIX}{state.lower()}"
        out[key] = out.get(key, 0.0) + 1
    best = [m.get(BEST_VAL_ACCURACY, m.get(VAL_ACCURACY)) for m in last.values()]
    best = [b for b in best if b is not None]
    if best:
        out[SWEEP_BEST_VAL_ACCURACY] = max(best)
    done = [last.get(t, {}) for t, s in states.items() if s == L.FINISHED]
    points = [
        (m[VAL_ACCURACY], m[STORAGE_BYTES], m.get(FP32_BYTES))
        for m in done
        if VAL_ACCURACY in m and STORAGE_BYTES in m
    ]
    fp32 = max((p[2] for p in points if p[2]), default=None)
    if points and fp32:
        area = hypervolume_2d([p[0] for p in points], [p[1] for p in points], reference=(0.0, fp32))
        out[SWEEP_VAL_HYPERVOLUME] = area / fp32
    return out


def find_parent(uri: str, sweep_id: str):
    """The parent run named ``sweep_id`` in any experiment at ``uri``; a ConfigError when none."""
    client = L.client(uri)
    experiments = [e.experiment_id for e in client.search_experiments(max_results=1000)]
    query = f"attributes.run_name = '{sweep_id}' and tags.`{L.ROLE}` = '{L.SWEEP}'"
    found = L.search_all(client, experiments, query) if experiments else []
    if not found:
        raise ConfigError(
            f"--abandon: no sweep named {sweep_id!r} at {uri}; the sweep id is the parent run's name "
            "(printed when the sweep started)"
        )
    return found[0]


def driver_alive(parent) -> bool:
    """True when the sweep's driver process still runs on this host."""
    host, _, pid = parent.data.tags.get(L.DRIVER, "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return int(pid) != os.getpid()
