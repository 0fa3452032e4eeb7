"""MLflow tracking for sweeps: the parent run, and a driver-side Ray Tune callback for the trials.

``docs/tracking.md`` is the contract with ``albsnn report``: tag, param, metric and artifact names
are defined there and only there. In short: one experiment per pipeline, one parent run per sweep
(``albsnn.role=sweep``), one child run per Ray trial (``albsnn.role=trial``, keyed by
``albsnn.trial_id``), per-epoch metrics with ``step = epoch``, and pruned trials ended KILLED with
``albsnn.trial_state=PRUNED``. Metric names are constants here; validation metrics (``val_*``)
are what sweeps select on, test metrics (``test_*``) are logged and reported only.

The callback runs in the driver, so trial workers never talk to MLflow. It finds a trial's run by
its ``albsnn.trial_id`` tag before creating one, so a retried or resumed trial keeps its run, and it
logs each epoch once (a trial that resumes from an older checkpoint does not duplicate steps).

    uri = default_tracking_uri()                     # sqlite:///<cwd>/mlflow.db
    check_tracking_uri(uri)                          # unreachable server -> one clear error
    experiment_id = ensure_experiment(uri, "albsnn-demo")
    parent = start_parent_run(uri, experiment_id, "demo-20250101-120000", tags)
    callback = MlflowTrialCallback(uri, experiment_id, parent, param_names=["lr", "seed"])
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from urllib.parse import urlparse

from albsnn.errors import ConfigError
from albsnn.metrics import (
    BEST_VAL_ACCURACY,
    CHECK_ESTIMATE_PREFIX,
    CHECK_MEASURED_PREFIX,
    ESTIMATE_PREFIX,
    FIRING_RATE_PREFIX,
    STORAGE_BYTES,
    TEST_ACCURACY,
    TEST_LOSS,
    TEST_PREFIX,
    VAL_ACCURACY,
    VAL_LOSS,
)
from albsnn.sweep._imports import require

__all__ = [
    "BEST_VAL_ACCURACY",
    "CHECK_ESTIMATE_PREFIX",
    "CHECK_MEASURED_PREFIX",
    "EPOCH_METRICS",
    "ESTIMATE_PREFIX",
    "ESTIMATOR_CHECK_FILE",
    "FINAL_METRICS",
    "FIRING_RATE_PREFIX",
    "MlflowTrialCallback",
    "TEST_PREFIX",
    "VAL_ACCURACY",
    "check_tracking_uri",
    "child_runs",
    "default_tracking_uri",
    "ensure_experiment",
    "epoch_metrics",
    "provenance_tags",
    "start_parent_run",
    "end_run",
]

# Metric names live in albsnn.metrics (docs/tracking.md).
# Logged every epoch with step = epoch, plus every metric named by a prefix above.
EPOCH_METRICS = (
    VAL_ACCURACY,
    VAL_LOSS,
    BEST_VAL_ACCURACY,
    TEST_ACCURACY,
    TEST_LOSS,
    "train_loss",
    "train_accuracy",
    STORAGE_BYTES,
    "fp32_bytes",
    "storage_reduction",
    "num_binarized",
    "epoch_seconds",
    "lr",
)
_EPOCH_PREFIXES = (FIRING_RATE_PREFIX, ESTIMATE_PREFIX, CHECK_MEASURED_PREFIX, CHECK_ESTIMATE_PREFIX)
MlflowTrialCallback: type  # created on first use, see __getattr__ at the bottom
FINAL_METRICS = ("bwo_epoch",)  # logged once, at the last epoch run
ESTIMATOR_CHECK_FILE = "estimator_check.json"  # only when the run measured its layers (estimator_check)
TRIAL_ARTIFACTS = (
    "config.json",
    "metrics.json",
    "estimator_history.json",
    "binarized_layers.json",
    ESTIMATOR_CHECK_FILE,
)
MLFLOW_STATUS = {"FINISHED": "FINISHED", "PRUNED": "KILLED", "FAILED": "FAILED"}
_tune = None


def _tune_callback_base():
    global _tune
    if _tune is None:
        _tune = require("ray.tune")
    return _tune.Callback


def _client(uri: str):
    return require("mlflow").MlflowClient(tracking_uri=uri)


# ---------------------------------------------------------------- tracking URI


def default_tracking_uri(folder: str | Path | None = None) -> str:
    """``sqlite:///<absolute folder>/mlflow.db`` (the working folder by default)."""
    return f"sqlite:///{Path(folder or Path.cwd()).resolve() / 'mlflow.db'}"


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, naming ``uri``, when the tracking store cannot be reached or written."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - user's server
                if response.status >= 400:
                    raise OSError(f"HTTP {response.status}")
        except (OSError, urllib.error.URLError) as e:
            reason = getattr(e, "reason", None) or e
            raise ConfigError(
                f"cannot reach the MLflow tracking server at {uri} ({reason}); start it "
                f"(`mlflow server --host 0.0.0.0 --port 5000`) or pass another --tracking-uri"
            ) from None
    elif parsed.scheme == "sqlite":
        path = Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None
        if path is None or not path.is_absolute():
            raise ConfigError(f"tracking URI {uri} must name an absolute path: sqlite:////abs/path/mlflow.db")
        if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
            raise ConfigError(f"tracking URI {uri}: folder {path.parent} does not exist or is not writable")
    elif parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme else uri)
        if not path.is_absolute():
            raise ConfigError(f"tracking URI {uri} must be an absolute path (trials change folder)")


# ---------------------------------------------------------------- experiment and parent run


def ensure_experiment(uri: str, name: str) -> str:
    """The id of experiment ``name``, created if missing (artifacts next to a local database)."""
    client = _client(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///") :]).parent / "mlruns" / name).as_uri()
    return client.create_experiment(name, artifact_location=location)


def start_parent_run(
    uri: str, experiment_id: str, run_name: str, tags: dict, artifacts: Iterable[Path] = ()
) -> str:
    """Create the sweep's parent run (``albsnn.role=sweep``) and log its artifacts; returns its id."""
    client = _client(uri)
    run = client.create_run(experiment_id, run_name=run_name, tags={"albsnn.role": "sweep", **tags})
    for path in artifacts:
        client.log_artifact(run.info.run_id, str(path))
    return run.info.run_id


def end_run(uri: str, run_id: str, status: str) -> None:
    _client(uri).set_terminated(run_id, status)


def reopen_run(uri: str, run_id: str) -> None:
    _client(uri).update_run(run_id, status="RUNNING")


def child_runs(uri: str, experiment_id: str, parent_run_id: str) -> list:
    """Every active child run of ``parent_run_id``."""
    client = _client(uri)
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
            max_results=1000,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def provenance_tags(repo: Path | None = None, command: str | None = None) -> dict[str, str]:
    """Git commit and dirty flag (of the checkout ``albsnn`` runs from), host, hardware, versions, command."""
    repo = repo or Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    versions = {"python": platform.python_version()}
    for package in ("albsnn", "torch", "numpy", "ray", "optuna", "mlflow"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    status = git("status", "--porcelain")
    tags = {
        "albsnn.git_commit": git("rev-parse", "HEAD") or "unknown",
        "albsnn.git_dirty": "unknown" if status is None else str(bool(status)).lower(),
        "albsnn.host": socket.gethostname(),
        "albsnn.hardware": _hardware(),
        "albsnn.versions": json.dumps(versions, sort_keys=True),
    }
    if command:
        tags["albsnn.command"] = command
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


# ---------------------------------------------------------------- per-trial callback


def epoch_metrics(result: dict) -> dict[str, float]:
    """The finite numbers of a reported epoch that docs/tracking.md says MLflow gets."""
    out = {}
    for key, value in result.items():
        wanted = key in EPOCH_METRICS or key.startswith(_EPOCH_PREFIXES)
        if (
            wanted
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
        ):
            out[key] = float(value)
    return out


def _param_text(value: object) -> str:
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


class _MlflowTrialCallback:
    """Driver-side Ray Tune callback: one MLflow child run per trial, nested under the sweep's run.

    Args:
        tracking_uri: the MLflow tracking URI (absolute).
        experiment_id: the sweep's experiment.
        parent_run_id: the sweep's parent run.
        param_names: the trial config keys logged as params (sampled / grid parameters and ``seed``).
        trial_state: ``fn(ray_trial_id) -> "PRUNED" | None`` (the pruning scheduler's verdict).
        trial_number: ``fn(ray_trial_id) -> int | None`` (the Optuna trial number, search mode).
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        *,
        param_names: Iterable[str],
        trial_state: Callable[[str], str | None] | None = None,
        trial_number: Callable[[str], int | None] | None = None,
    ):
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.param_names = list(param_names)
        self.trial_state = trial_state
        self.trial_number = trial_number
        self._runs: dict[str, str] = {}  # ray trial id -> MLflow run id
        self._last_step: dict[str, int] = {}  # MLflow run id -> last epoch logged
        self._ended: set[str] = set()
        self._client_obj = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_client_obj"] = None
        return state

    @property
    def _client(self):
        if self._client_obj is None:
            self._client_obj = _client(self.tracking_uri)
        return self._client_obj

    # Ray checkpoints this with the experiment; MLflow's own tags stay the source of truth.
    def get_state(self) -> dict:
        return {"runs": dict(self._runs)}

    def set_state(self, state: dict) -> None:
        self._runs.update(state.get("runs", {}))

    def run_id(self, trial) -> str:
        """The MLflow run of ``trial``: cached, found by its ``albsnn.trial_id`` tag, or created."""
        trial_id = trial.trial_id
        run_id = self._runs.get(trial_id)
        if run_id is None:
            found = self._client.search_runs(
                [self.experiment_id],
                filter_string=(
                    f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' "
                    f"and tags.`albsnn.trial_id` = '{trial_id}'"
                ),
                max_results=5,
                order_by=["attributes.start_time ASC"],
            )
            run_id = found[0].info.run_id if found else self._create(trial)
            self._runs[trial_id] = run_id
        if run_id not in self._last_step:
            history = self._client.get_metric_history(run_id, VAL_ACCURACY)
            self._last_step[run_id] = max((m.step for m in history), default=0)
        return run_id

    def _create(self, trial) -> str:
        tags = {
            "mlflow.parentRunId": self.parent_run_id,
            "albsnn.role": "trial",
            "albsnn.trial_id": trial.trial_id,
            "albsnn.trial_state": "RUNNING",
        }
        number = self.trial_number(trial.trial_id) if self.trial_number else None
        if number is not None:
            tags["albsnn.optuna_trial_number"] = str(number)
        run = self._client.create_run(self.experiment_id, run_name=str(trial), tags=tags)
        params = {k: trial.config[k] for k in self.param_names if k in trial.config}
        if params:
            Param = require("mlflow.entities").Param
            self._client.log_batch(
                run.info.run_id, params=[Param(k, _param_text(v)) for k, v in params.items()]
            )
        return run.info.run_id

    # -- Tune hooks
    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        run_id = self.run_id(trial)
        if run_id in self._ended:  # a finished run restarted (never expected): reopen it
            self._ended.discard(run_id)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        run_id = self.run_id(trial)
        epoch = result.get("epoch")
        if not isinstance(epoch, int) or epoch <= self._last_step[run_id]:
            return
        entities = require("mlflow.entities")
        now = int(time.time() * 1000)
        metrics = [entities.Metric(k, v, now, epoch) for k, v in epoch_metrics(result).items()]
        tags = []
        if epoch == 1 or not self._last_step[run_id]:
            from albsnn.sweep.trainable import TRIAL_WHERE  # host, node, GPUs, code version

            tags += [entities.RunTag(tag, str(result[k])) for k, tag in TRIAL_WHERE.items() if result.get(k)]
            number = self.trial_number(trial.trial_id) if self.trial_number else None
            if number is not None:
                tags.append(entities.RunTag("albsnn.optuna_trial_number", str(number)))
        self._client.log_batch(run_id, metrics=metrics, tags=tags)
        self._last_step[run_id] = epoch

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        state = (self.trial_state(trial.trial_id) if self.trial_state else None) or "FINISHED"
        self._finish(trial, state)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._finish(trial, "FAILED")

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        run_id = self.run_id(trial)
        retries = getattr(trial.run_metadata, "num_failures", None)
        if retries is not None:
            self._client.set_tag(run_id, "albsnn.retries", str(retries))

    def on_experiment_end(self, trials: list, **info) -> None:
        """Delete child runs whose Ray trial no longer exists (created just before a driver was killed)."""
        known = {t.trial_id for t in trials}
        for run in child_runs(self.tracking_uri, self.experiment_id, self.parent_run_id):
            if run.data.tags.get("albsnn.trial_id") not in known:
                self._client.set_tag(run.info.run_id, "albsnn.trial_state", "ORPHANED")
                self._client.delete_run(run.info.run_id)

    def _finish(self, trial, state: str) -> None:
        run_id = self.run_id(trial)
        if run_id in self._ended:
            return
        entities = require("mlflow.entities")
        last = trial.last_result or {}
        epoch = last.get("epoch") if isinstance(last.get("epoch"), int) else self._last_step.get(run_id, 0)
        now = int(time.time() * 1000)
        metrics = [
            entities.Metric(k, float(last[k]), now, epoch or 0)
            for k in FINAL_METRICS
            if isinstance(last.get(k), (int, float)) and not isinstance(last.get(k), bool)
        ]
        tags = [entities.RunTag("albsnn.trial_state", state)]
        if state == "PRUNED" and epoch:
            tags.append(entities.RunTag("albsnn.pruned_at_epoch", str(epoch)))
        number = self.trial_number(trial.trial_id) if self.trial_number else None
        if number is not None:
            tags.append(entities.RunTag("albsnn.optuna_trial_number", str(number)))
        self._client.log_batch(run_id, metrics=metrics, tags=tags)
        self._log_artifacts(run_id, trial)
        self._client.set_terminated(run_id, MLFLOW_STATUS[state])
        self._ended.add(run_id)

    def _log_artifacts(self, run_id: str, trial) -> None:
        checkpoint = getattr(trial, "checkpoint", None)
        if checkpoint is None:
            return
        try:
            with checkpoint.as_directory() as folder:
                folder = Path(folder)
                for name in TRIAL_ARTIFACTS:
                    if (folder / name).is_file():
                        self._client.log_artifact(run_id, str(folder / name))
                if (folder / "model.albsnn").is_file():
                    self._client.log_artifact(run_id, str(folder / "model.albsnn"), artifact_path="model")
        except (OSError, FileNotFoundError) as e:  # a checkpoint rotated away: metrics are still there
            self._client.set_tag(run_id, "albsnn.artifacts_error", str(e)[:500])


def __getattr__(name: str):
    # `MlflowTrialCallback` subclasses ray.tune.Callback, created on first use so that importing
    # this module needs neither Ray nor MLflow.
    if name == "MlflowTrialCallback":
        cls = type("MlflowTrialCallback", (_MlflowTrialCallback, _tune_callback_base()), {})
        cls.__module__ = __name__
        cls.__doc__ = _MlflowTrialCallback.__doc__
        globals()["MlflowTrialCallback"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
