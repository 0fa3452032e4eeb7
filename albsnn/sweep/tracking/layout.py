"""The MLflow layout of a sweep, written once: names, statuses, run names, the URI check, paged search.

``docs/tracking.md`` describes this layout for readers; every writer (the sweep's callback and
runner, the report test fixture) and every reader (``albsnn report``) imports its names from here.
Importing this module needs neither Ray nor MLflow.
"""

from __future__ import annotations

import json
import math
import os
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlparse

from albsnn.errors import ConfigError
from albsnn.metrics import (
    BEST_VAL_ACCURACY,
    CHECK_ESTIMATE_PREFIX,
    CHECK_MEASURED_PREFIX,
    ESTIMATE_PREFIX,
    FIRING_RATE_PREFIX,
    LEARNING_RATE,
    STORAGE_BYTES,
    TEST_ACCURACY,
    TEST_LOSS,
    VAL_ACCURACY,
    VAL_LOSS,
)
from albsnn.sweep.tracking.sqlite_store import use_wal

# ---------------------------------------------------------------- tags
ROLE = "albsnn.role"  # SWEEP on the parent run, TRIAL on a search child run, CONFIRM on a re-run
SWEEP, TRIAL, CONFIRM = "sweep", "trial", "confirm"
# A confirmation run (role CONFIRM) re-runs one search trial with another seed (albsnn.sweep.confirm):
CONFIRMS = "albsnn.confirms"  # the Ray trial id of the search trial it confirms: the seed-group key
CONFIRM_POINT = "albsnn.confirm_point"  # the candidate's number, 1.. (the "#3" in its run name)
CONFIRM_SEEDS = "albsnn.confirm_seeds"  # on the parent run: JSON list of the confirmation seeds
TRIAL_ID = "albsnn.trial_id"  # the Ray trial id: the key of a child run
TRIAL_STATE = "albsnn.trial_state"  # one of STATES (ORPHANED for deleted runs of lost trials)
END_REASON = "albsnn.end_reason"  # why a run was ended KILLED without finishing (interrupted, abandoned, ...)
OPTUNA_TRIAL_NUMBER = "albsnn.optuna_trial_number"
NODE_ID = "albsnn.node_id"
# Where a trial ran: {key a trial reports with every epoch: the child run tag the callback sets}.
TRIAL_WHERE = {
    "host": "albsnn.trial_host",
    "node_id": NODE_ID,
    "gpu_ids": "albsnn.gpu_ids",
    "code_version": "albsnn.code_version",  # git commit + a hash of the albsnn sources
}
RETRIES = "albsnn.retries"
PRUNED_AT_EPOCH = "albsnn.pruned_at_epoch"
ARTIFACTS_ERROR = "albsnn.artifacts_error"
DRIVER = "albsnn.driver"  # "<host>:<pid>" of the process running the sweep (for --abandon)
# On the parent run (role SWEEP), what the sweep is (albsnn.sweep.start writes them, the report reads them):
PIPELINE = "albsnn.pipeline"  # the pipeline file the sweep started from
PIPELINE_NAME = "albsnn.pipeline_name"
DATASET = "albsnn.dataset"
MODE = "albsnn.mode"  # search | ablation
OBJECTIVES = "albsnn.objectives"  # JSON {metric: max | min}
SEARCH_SPACE = "albsnn.search_space"  # the search space file the sweep started from
SEARCH_SPACE_TYPES = "albsnn.search_space_types"  # JSON {parameter: int | float | str | bool}
SWEEP_DIR = "albsnn.sweep_dir"
PRUNER = "albsnn.pruner"  # JSON {"kind": ..., options}
PRUNE_METRIC = "albsnn.prune_metric"
NUM_SAMPLES = "albsnn.num_samples"  # the trial budget; raised by --resume --num-samples
BASE_CONFIG = "albsnn.base_config"  # JSON: every trial's fixed values
OPTUNA_STORAGE = "albsnn.optuna_storage"  # search mode: the Optuna journal ...
OPTUNA_STUDY = "albsnn.optuna_study"  # ... and the search study in it
SAMPLER = "albsnn.sampler"  # search mode: JSON {"kind": ..., options}
ABLATION_BASELINE = "albsnn.ablation_baseline"  # set by hand: JSON {param: value}, the ablation's baseline
# ... and where and how it ran (albsnn.sweep.tracking.runs.provenance_tags):
CODE_COMMIT = "albsnn.git_commit"  # of the checkout albsnn runs from ("unknown" outside git)
CODE_DIRTY = "albsnn.git_dirty"  # true | false | unknown
HOST = "albsnn.host"
HARDWARE = "albsnn.hardware"
VERSIONS = "albsnn.versions"  # JSON {package: version}
COMMAND = "albsnn.command"
PARENT_RUN_ID = "mlflow.parentRunId"
RUN_NAME = "mlflow.runName"
GIT_COMMIT = "mlflow.source.git.commit"
SOURCE_NAME = "mlflow.source.name"
SOURCE_TYPE = "mlflow.source.type"
USER = "mlflow.user"
# MLflow 3 opens an experiment on its GenAI pages unless it is told the experiment trains models.
EXPERIMENT_KIND = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
SUPPRESS_RUN_URLS = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"  # environment variable MLflow reads

# ---------------------------------------------------------------- states and statuses
FINISHED, PRUNED, FAILED, RUNNING, ORPHANED = "FINISHED", "PRUNED", "FAILED", "RUNNING", "ORPHANED"
STATES = (FINISHED, PRUNED, FAILED, RUNNING)
STATE_TO_STATUS = {FINISHED: "FINISHED", PRUNED: "KILLED", FAILED: "FAILED", RUNNING: "RUNNING"}
STATUS_TO_STATE = {status: state for state, status in STATE_TO_STATUS.items()}
ENDED_STATUSES = ("FINISHED", "FAILED", "KILLED")

# ---------------------------------------------------------------- metrics
# Logged every epoch with step = epoch, plus every metric named by one of EPOCH_PREFIXES.
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
    LEARNING_RATE,
)
EPOCH_PREFIXES = (FIRING_RATE_PREFIX, ESTIMATE_PREFIX, CHECK_MEASURED_PREFIX, CHECK_ESTIMATE_PREFIX)
FINAL_METRICS = ("bwo_epoch",)  # logged once, at the last epoch run

# ---------------------------------------------------------------- artifacts
PIPELINE_FILE, SEARCH_SPACE_FILE = "pipeline.yaml", "search_space.yaml"  # on the parent run
ESTIMATOR_CHECK_FILE = "estimator_check.json"  # only when the run measured its layers
MODEL_FILE, MODEL_DIR = "model.albsnn", "model"  # logged as model/model.albsnn
TRIAL_ARTIFACTS = (
    "config.json",
    "metrics.json",
    "estimator_history.json",
    "binarized_layers.json",
    ESTIMATOR_CHECK_FILE,
)

# ---------------------------------------------------------------- run names
# Short labels for the parameters sweeps vary most; any other parameter is shown by its own name.
SHORT_NAMES = {
    "time_steps": "T",
    "threshold": "thr",
    "width": "w",
    "estimator": "est",
    "binarize": "bin",
    "weight_decay": "wd",
    "batch_size": "bs",
}


def trial_run_name(config: Mapping, names: Iterable[str]) -> str:
    """A child run's name from its swept values, e.g. ``T=2 thr=0.31 bwo=project s0``; seed last."""
    parts = [f"{SHORT_NAMES.get(n, n)}={_short(config[n])}" for n in names if n != "seed" and n in config]
    if "seed" in config:
        parts.append(f"s{config['seed']}")
    return " ".join(parts) or "trial"


def confirm_run_name(config: Mapping, names: Iterable[str], point: int) -> str:
    """A confirmation run's name, e.g. ``T=2 thr=0.31 s1 (confirm #3)``."""
    return f"{trial_run_name(config, names)} (confirm #{point})"


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2g}"
    if isinstance(value, (list, tuple)):
        return ",".join(_short(v) for v in value)
    return str(value)


def param_text(value: object) -> str:
    """A parameter value as MLflow stores it (floats exactly, lists and dicts as JSON)."""
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else str(value)


def epoch_metrics(result: Mapping) -> dict[str, float]:
    """The finite numbers of a reported epoch that MLflow gets (EPOCH_METRICS and EPOCH_PREFIXES)."""
    out = {}
    for key, value in result.items():
        wanted = key in EPOCH_METRICS or key.startswith(EPOCH_PREFIXES)
        if wanted and _number(value):
            out[key] = float(value)
    return out


def final_metrics(result: Mapping) -> dict[str, float]:
    return {k: float(result[k]) for k in FINAL_METRICS if _number(result.get(k))}


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------- tracking URI


RUNS = "runs"  # generated files of user runs: ignored by git (.gitignore), relative to the working folder


def default_tracking_uri(folder: str | Path | None = None, create: bool = False) -> str:
    """``sqlite:///<absolute folder>/runs/mlflow.db`` (the working folder by default).

    Under ``runs/``, so sweeps leave a repository's ``git status`` clean; ``create`` makes the folder
    (a sweep writes there; the UI and reports only read).
    """
    path = Path(folder or Path.cwd()).resolve() / RUNS / "mlflow.db"
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def check_tracking_uri(uri: str, *, must_exist: bool = False, timeout: float = 5.0) -> None:
    """Fail fast with one line naming ``uri`` when it cannot serve as an MLflow store.

    ``must_exist`` (readers): the database or folder must already be there, since MLflow would
    silently create an empty one for a mistyped path. Servers must answer MLflow's REST API.
    """
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        _check_server(uri, timeout)
    elif scheme == "sqlite":
        _check_sqlite(uri, must_exist)
    elif scheme in ("", "file"):
        path = Path(uri[len("file://") :] if scheme == "file" else uri)
        if not path.is_absolute():
            raise ConfigError(f"tracking URI {uri} must be an absolute path (trials change folder)")
        if must_exist and not path.is_dir():
            raise ConfigError(f"no MLflow store at {path} (tracking URI {uri})")
    else:
        raise ConfigError(
            f"unsupported tracking URI {uri!r}: use sqlite:////ABS/PATH/mlflow.db, http(s)://HOST:PORT "
            "or an absolute folder"
        )


def _check_sqlite(uri: str, must_exist: bool) -> None:
    path = sqlite_path(uri)
    if path is None or not path.is_absolute():
        raise ConfigError(f"tracking URI {uri} must name an absolute path: sqlite:////abs/path/mlflow.db")
    if must_exist and not path.is_file():
        raise ConfigError(
            f"no MLflow database at {path} (tracking URI {uri}); run a sweep first or pass --tracking-uri"
        )
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise ConfigError(f"tracking URI {uri}: folder {path.parent} does not exist or is not writable")


def _check_server(uri: str, timeout: float) -> None:
    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - the user's server
            body = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        raise ConfigError(
            f"{uri} is not an MLflow tracking server (HTTP {e.code} for its REST API); "
            "check the host and port of --tracking-uri"
        ) from None
    except (OSError, urllib.error.URLError) as e:
        reason = getattr(e, "reason", None) or e
        raise ConfigError(
            f"the MLflow tracking server {uri} does not answer ({reason}); start it "
            f"(`mlflow server --host 127.0.0.1 --port 5000`) or pass another --tracking-uri"
        ) from None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ConfigError(
            f"{uri} is not an MLflow tracking server (its REST API did not answer JSON); "
            "check the host and port of --tracking-uri"
        )


# ---------------------------------------------------------------- the MLflow UI


def ui_url(base: str, experiment_id: str) -> str:
    """The MLflow UI's page of an experiment's runs, every trial listed by name, best first.

    MLflow 3.17 picks its GenAI or model-training pages from a ``workflowType`` URL parameter (or
    the user's last choice), not from the experiment tag; sorting by a metric lists child runs
    flat instead of folded under their sweep.
    """
    order = f"metrics.%60{VAL_ACCURACY}%60"
    query = f"workflowType=machine_learning&orderByKey={order}&orderByAsc=false"
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


# ---------------------------------------------------------------- reading


def client(uri: str):
    from mlflow import MlflowClient

    # MLflow prints "View run ... / View experiment ..." for every run ended on a server (~40 lines a
    # demo sweep, from the sender thread, and a get_run each); the summary prints the UI's address
    # once. A user's own MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT wins.
    os.environ.setdefault(SUPPRESS_RUN_URLS, "true")
    use_wal(uri)  # before the store's engine opens its connections
    return MlflowClient(tracking_uri=uri)


def search_all(mlflow_client, experiment_ids: Iterable[str], filter_string: str = "") -> list:
    """Every active run matching ``filter_string``, all pages."""
    runs, token = [], None
    while True:
        page = mlflow_client.search_runs(
            list(experiment_ids), filter_string, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def children_filter(parent_run_id: str) -> str:
    return f"tags.`{PARENT_RUN_ID}` = '{parent_run_id}'"


def trial_filter(parent_run_id: str, trial_id: str) -> str:
    return f"{children_filter(parent_run_id)} and tags.`{TRIAL_ID}` = '{trial_id}'"


def run_state(status: str, trial_state: object) -> str:
    """A child run's state: its ``albsnn.trial_state`` tag, else read from the MLflow status."""
    if isinstance(trial_state, str) and trial_state in STATES:
        return trial_state
    return STATUS_TO_STATE.get(status, RUNNING)
