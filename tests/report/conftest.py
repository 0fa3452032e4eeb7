"""Fixtures for the report tests: a small MLflow store of REAL training runs, and headless chromium.

``logged_sweeps`` trains tiny digits models with :func:`albsnn.train.fit` and logs them exactly as
``docs/tracking.md`` says a sweep does (parent run + nested child runs, tags, per-epoch metrics
including ``val_accuracy`` and ``best_val_accuracy``, artifacts, an Optuna journal for the search
sweep). It stands in for ``albsnn sweep`` so these tests do not depend on Ray;
``test_report_sweep.py`` runs the real sweep command.

The finished search runs also log, at their final step, **constructed** estimator-check metrics
(:func:`check_metrics`) for their real candidate layers, with known Spearman rho: ``measured``
orders the layers exactly as the measured drop (rho = +1), ``taylor`` exactly against it (-1),
``weight-error`` by a fixed shuffle.

Two sweeps, one experiment ("report-e2e"):

* ``search``: 4 finished trials (T x estimator x threshold), 1 pruned after one epoch, 1 failed;
* ``ablation``: factor ``bwo`` in {project, off} x seeds {0, 1}, with (off, seed 1) never run,
  so the ``bwo=off`` row must be flagged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from albsnn.report.source import VAL_ACCURACY as VAL

BASE = dict(
    dataset="digits",
    limit_train=400,
    limit_test=200,
    epochs=2,
    width=0.25,
    batch_size=16,
    lr=1e-2,
    warmup=1,
    bwo_epoch=2,
)
SEARCH_TYPES = {"time_steps": "int", "estimator": "str", "threshold": "float"}
SEARCH = [
    dict(time_steps=1, estimator="weight-error", threshold=0.3),
    dict(time_steps=2, estimator="weight-error", threshold=0.3),
    dict(time_steps=1, estimator="taylor", threshold=0.5),
    dict(time_steps=2, estimator="taylor", threshold=0.1),
]
PRUNED = dict(time_steps=1, estimator="weight-error", threshold=0.1)
FAILED = dict(time_steps=2, estimator="taylor", threshold=0.9)
ABLATION = [(dict(bwo="project"), 0), (dict(bwo="project"), 1), (dict(bwo="off"), 0)]  # (off, 1) missing
ABLATION_SEEDS = (0, 1)
NOTHING_FINISHED = "nothing-finished"
CHECK_RHO = {"measured": 1.0, "taylor": -1.0}  # pooled and per run, by construction (check_metrics)


@dataclass
class LoggedSweeps:
    tracking_uri: str
    experiment: str
    root: Path
    search_parent: str
    ablation_parent: str
    journal: Path
    children: dict[str, dict] = field(default_factory=dict)  # run_id -> {"params", "state", "result"}
    ablation_seeds: tuple = ABLATION_SEEDS
    nothing_finished: str = NOTHING_FINISHED  # an experiment whose runs all failed or were pruned
    check_rho: dict = field(default_factory=lambda: dict(CHECK_RHO))  # estimator -> constructed rho


def _versions() -> dict:
    import mlflow
    import torch

    return {"python": sys.version.split()[0], "torch": torch.__version__, "mlflow": mlflow.__version__}


class _Logger:
    """A training callback that logs every epoch as docs/tracking.md says, and stops when told."""

    def __init__(self, client, run_id: str, stop_after: int | None = None):
        self.client, self.run_id, self.stop_after = client, run_id, stop_after
        self.history: list[dict] = []
        self.last: dict[str, float] = {}  # the last epoch's metrics, as MLflow got them
        self.step = 0  # the last epoch logged

    def on_fit_start(self, trainer) -> None:
        pass

    def on_epoch_end(self, trainer, m: dict) -> bool:
        from mlflow.entities import Metric

        from albsnn.sweep.trainable import flat_metrics
        from albsnn.tracking import epoch_metrics

        step = m["epoch"]
        # The sweep's own flattening, so this fixture logs exactly what docs/tracking.md promises.
        values = epoch_metrics(flat_metrics(m))
        metrics = [Metric(k, float(v), 0, step) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)
        self.last, self.step = values, step
        return self.stop_after is not None and step >= self.stop_after

    def on_fit_end(self, trainer, result: dict) -> None:
        from albsnn.estimator import history_rows

        self.history = history_rows(trainer.policy.history)  # what the sweep's trainable writes


def check_metrics(layers: list[str], run: int) -> dict[str, float]:
    """Constructed ``check_*`` metrics of one run: measured drops distinct within the run, and
    estimates with known rank agreement (see the module docstring and :data:`CHECK_RHO`)."""
    out = {}
    shuffle = [2, 0, 1, 3, 4, 5, 6, 7]
    for j, layer in enumerate(layers):
        drop = 0.5 * (j + 1) * (run + 1)  # pp
        out[f"check_measured.{layer}"] = drop
        out[f"check_estimate.measured.{layer}"] = drop + 0.1
        out[f"check_estimate.taylor.{layer}"] = 10.0 - drop
        out[f"check_estimate.weight-error.{layer}"] = 3.0 * shuffle[j % len(shuffle)] + run
    return out


def _log_check(client, run_id: str, logger: _Logger, run: int) -> None:
    """Constructed check metrics at the final step, unless the trainer logged real ones."""
    from mlflow.entities import Metric

    if any(k.startswith("check_") for k in logger.last):
        return
    layers = sorted(k[len("estimate.") :] for k in logger.last if k.startswith("estimate."))
    values = check_metrics(layers, run)
    client.log_batch(run_id, metrics=[Metric(k, v, 0, logger.step) for k, v in values.items()])
    logger.last.update(values)


def _train_child(
    client, exp_id: str, parent: str, name: str, params: dict, out: Path, *, stop_after=None, check=None
):
    from albsnn.train import TrainConfig, fit

    run = client.create_run(
        exp_id,
        run_name=name,
        tags={"mlflow.parentRunId": parent, "albsnn.role": "trial", "albsnn.trial_id": name},
    )
    rid = run.info.run_id
    for k, v in params.items():
        client.log_param(rid, k, v)
    config = TrainConfig(**{**BASE, **params, "out": str(out / name)})
    logger = _Logger(client, rid, stop_after)
    result = fit(config, [logger])
    if check is not None and not stop_after:
        _log_check(client, rid, logger, check)
    result = {**result, **logger.last}  # what MLflow holds: val_accuracy, check_* as well
    if result["bwo_epoch"] is not None:
        client.log_metric(rid, "bwo_epoch", result["bwo_epoch"])
    art = out / name / "artifacts"
    art.mkdir(parents=True)
    (art / "config.json").write_text(json.dumps(config.to_dict()))
    lines = (out / name / "metrics.jsonl").read_text().splitlines()
    (art / "metrics.json").write_text(json.dumps([json.loads(line) for line in lines if line.strip()]))
    (art / "estimator_history.json").write_text(json.dumps(logger.history))
    (art / "binarized_layers.json").write_text(json.dumps(result["binarized_layers"]))
    client.log_artifacts(rid, str(art))
    client.log_artifact(rid, result["model_path"], "model")
    state = "PRUNED" if stop_after else "FINISHED"
    client.set_tag(rid, "albsnn.trial_state", state)
    client.set_terminated(rid, "KILLED" if stop_after else "FINISHED")
    return rid, state, result


def _parent_tags(name: str, mode: str, root: Path, **extra) -> dict:
    return {
        "albsnn.role": "sweep",
        "albsnn.pipeline": str(root / f"{name}.yaml"),
        "albsnn.pipeline_name": name,
        "albsnn.dataset": "digits",
        "albsnn.mode": mode,
        "albsnn.objectives": json.dumps({VAL: "max", "storage_bytes": "min"}),
        "albsnn.search_space": str(root / f"{name}-space.yaml"),
        "albsnn.search_space_types": json.dumps(
            SEARCH_TYPES if mode == "search" else {"bwo": "str", "seed": "int"}
        ),
        "albsnn.git_commit": "0123456789abcdef0123456789abcdef01234567",
        "albsnn.git_dirty": "false",
        "albsnn.host": "test-host",
        "albsnn.hardware": "2-core CPU (test fixture)",
        "albsnn.versions": json.dumps(_versions()),
        "albsnn.command": f"albsnn sweep pipelines/{name}.yaml",
        **extra,
    }


def build_logged_sweeps(root: Path) -> LoggedSweeps:
    """Train and log both sweeps under ``root`` (about 8 short digits runs)."""
    import optuna
    from mlflow.tracking import MlflowClient
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp_id = client.create_experiment("report-e2e", artifact_location=(root / "artifacts").as_uri())
    journal = root / "optuna.journal"
    search = client.create_run(
        exp_id,
        run_name="search",
        tags=_parent_tags(
            "search",
            "search",
            root,
            **{
                "albsnn.optuna_storage": str(journal),
                "albsnn.optuna_study": "search",
                "albsnn.sampler": "TPESampler",
                "albsnn.pruner": "MedianPruner",
            },
        ),
    )
    sid = search.info.run_id
    out = root / "runs"
    logged = LoggedSweeps(uri, "report-e2e", root, sid, "", journal)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="search",
        directions=["maximize", "minimize"],
        storage=JournalStorage(JournalFileBackend(str(journal))),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([VAL, "storage_bytes"])
    dists = {
        "time_steps": IntDistribution(1, 4),
        "estimator": CategoricalDistribution(["weight-error", "taylor"]),
        "threshold": FloatDistribution(0.05, 1.0),
    }
    for i, params in enumerate([*SEARCH, PRUNED]):
        pruned = params is PRUNED
        rid, state, result = _train_child(
            client, exp_id, sid, f"search-{i}", params, out, stop_after=1 if pruned else None, check=i
        )
        client.set_tag(rid, "albsnn.optuna_trial_number", str(i))
        logged.children[rid] = dict(params=params, state=state, result=result)
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=dists,
                state=optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE,
                values=None if pruned else [result[VAL], result["storage_bytes"]],
            )
        )
    failed = client.create_run(
        exp_id,
        run_name="search-5",
        tags={
            "mlflow.parentRunId": sid,
            "albsnn.role": "trial",
            "albsnn.trial_id": "search-5",
            "albsnn.trial_state": "FAILED",
        },
    )
    for k, v in FAILED.items():
        client.log_param(failed.info.run_id, k, v)
    client.set_terminated(failed.info.run_id, "FAILED")
    logged.children[failed.info.run_id] = dict(params=FAILED, state="FAILED", result=None)
    client.set_terminated(sid, "FINISHED")

    ablation = client.create_run(exp_id, run_name="ablation", tags=_parent_tags("ablation", "ablation", root))
    aid = ablation.info.run_id
    logged.ablation_parent = aid
    for i, (params, seed) in enumerate(ABLATION):
        p = {**params, "seed": seed}
        rid, state, result = _train_child(client, exp_id, aid, f"ablation-{i}", p, out)
        logged.children[rid] = dict(params=p, state=state, result=result)
    client.set_terminated(aid, "FINISHED")

    # a third experiment whose sweep never finished a trial (bad input for `albsnn report`)
    empty_id = client.create_experiment(
        NOTHING_FINISHED, artifact_location=(root / "artifacts-empty").as_uri()
    )
    parent = client.create_run(
        empty_id, run_name="broken", tags=_parent_tags("broken", "search", root)
    ).info.run_id
    for i, status in enumerate(("FAILED", "KILLED")):
        child = client.create_run(
            empty_id,
            run_name=f"broken-{i}",
            tags={"mlflow.parentRunId": parent, "albsnn.role": "trial", "albsnn.trial_id": f"broken-{i}"},
        )
        client.set_terminated(child.info.run_id, status)
    client.set_terminated(parent, "FAILED")
    return logged


@pytest.fixture(scope="session")
def logged_sweeps(tmp_path_factory) -> LoggedSweeps:
    import torch

    # One thread: these models are tiny, and on a busy 2-core machine two OpenMP threads per run
    # were measured 10-20x slower (6.1 s vs 0.6 s for one run) than one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return build_logged_sweeps(tmp_path_factory.mktemp("mlflow-store"))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def report(logged_sweeps, tmp_path_factory) -> Path:
    """``generate_report(--experiment report-e2e)`` of the logged store, once per session."""
    from albsnn.report import generate_report

    out = tmp_path_factory.mktemp("reports") / "e2e"
    assert (
        generate_report(logged_sweeps.tracking_uri, experiment=logged_sweeps.experiment, out_dir=out) == out
    )
    return out


# ---- reading a report back ---------------------------------------------------------------------------
def _md_table(md: str, first_header: str) -> list[dict]:
    """Rows (header -> cell) of the Markdown table whose header starts with ``| first_header |``."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, [c.strip() for c in line.strip("|").split("|")], strict=True)))
    return rows


@pytest.fixture
def md_table():
    """``md_table(markdown, first_header) -> [row dicts]``."""
    return _md_table


# ---- headless chromium --------------------------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium; installed with apt-get when missing and we are root, else the test skips."""
    if not os.path.exists(CHROMIUM):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.skip(f"{CHROMIUM} is missing and apt-get needs root: apt-get install -y chromium")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                pytest.skip(f"could not install chromium ({' '.join(cmd)}): {proc.stderr.strip()[-300:]}")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} still missing after apt-get install chromium")
    return CHROMIUM
