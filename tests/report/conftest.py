"""Fixtures for the report tests: a small MLflow store of REAL training runs, and headless chromium.

``logged_sweeps`` trains tiny digits models with :func:`albsnn.train.fit` and records them through
the sweep's own code (``albsnn.sweep.tracking``: ``ensure_experiment``, ``start_parent_run``,
``SweepLog``, ``trial_params``, ``epoch_metrics``), so they are laid out as ``docs/tracking.md``
says a sweep does (parent run + nested child runs, tags, per-epoch metrics
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
    """A training callback that records every epoch through the sweep's own SweepLog, and stops when told."""

    def __init__(self, log, trial: str, stop_after: int | None = None):
        self.log, self.trial, self.stop_after = log, trial, stop_after
        self.history: list[dict] = []
        self.last: dict[str, float] = {}  # the last epoch's metrics, as MLflow got them
        self.step = 0  # the last epoch logged
        self.estimated: set[str] = set()  # layers with an estimate on some epoch (decision epochs only)

    def on_fit_start(self, trainer) -> None:
        from albsnn.sweep.trainable import dataset_record

        self.log.dataset(self.trial, dataset_record(trainer))

    def on_epoch_end(self, trainer, m: dict) -> bool:
        from albsnn.sweep.tracking.layout import epoch_metrics
        from albsnn.sweep.trainable import flat_metrics

        step = m["epoch"]
        values = epoch_metrics(flat_metrics(m))  # what the sweep's callback logs
        self.log.epoch(self.trial, step, values)
        self.last, self.step = values, step
        self.estimated |= {k[len("estimate.") :] for k in values if k.startswith("estimate.")}
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


def _train_child(log, name: str, params: dict, out: Path, *, stop_after=None, check=None, number=None):
    """Train one run and record it as a sweep's callback does (start, epochs, end, artifacts)."""
    from albsnn.sweep.tracking import layout
    from albsnn.sweep.tracking.callback import trial_params
    from albsnn.train import TrainConfig, fit

    tags = {layout.OPTUNA_TRIAL_NUMBER: str(number)} if number is not None else {}
    config = TrainConfig(**{**BASE, **params, "out": str(out / name)})
    log.start_trial(name, layout.trial_run_name(params, params), trial_params(config.to_dict()), tags)
    logger = _Logger(log, name, stop_after)
    result = fit(config, [logger])
    final = layout.final_metrics(result)
    if check is not None and not stop_after and not any(k.startswith("check_") for k in logger.last):
        layers = sorted(logger.estimated)
        final.update(check_metrics(layers, check))  # constructed, at the final step
    result = {**result, **logger.last, **final}  # what MLflow holds: val_accuracy, check_* as well
    art = out / name / "artifacts"
    art.mkdir(parents=True)
    (art / "config.json").write_text(json.dumps(config.to_dict()))
    lines = (out / name / "metrics.jsonl").read_text().splitlines()
    (art / "metrics.json").write_text(json.dumps([json.loads(line) for line in lines if line.strip()]))
    (art / "estimator_history.json").write_text(json.dumps(logger.history))
    (art / "binarized_layers.json").write_text(json.dumps(result["binarized_layers"]))
    log.artifacts(name, [*sorted(art.iterdir()), Path(result["model_path"])])
    state = layout.PRUNED if stop_after else layout.FINISHED
    log.end_trial(name, state, step=logger.step, metrics=final)
    return log.run_id(name), state, result


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
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from albsnn.sweep.tracking import layout, runs
    from albsnn.sweep.tracking.callback import trial_params
    from albsnn.sweep.tracking.spool import SweepLog
    from albsnn.train import TrainConfig

    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    exp_id = runs.ensure_experiment(uri, "report-e2e")
    journal = root / "optuna.journal"
    search_tags = {
        "albsnn.optuna_storage": str(journal),
        "albsnn.optuna_study": "search",
        "albsnn.sampler": "TPESampler",
        "albsnn.pruner": "MedianPruner",
    }
    sid = runs.start_parent_run(uri, exp_id, "search", _parent_tags("search", "search", root, **search_tags))
    log = SweepLog(root / "spool-search", uri, exp_id, sid)
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
            log, f"search-{i}", params, out, stop_after=1 if pruned else None, check=i, number=i
        )
        logged.children[rid] = dict(params=params, state=state, result=result)
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=dists,
                state=optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE,
                values=None if pruned else [result[VAL], result["storage_bytes"]],
            )
        )
    failed_config = TrainConfig(**{**BASE, **FAILED}).to_dict()
    log.start_trial("search-5", layout.trial_run_name(FAILED, FAILED), trial_params(failed_config))
    log.end_trial("search-5", layout.FAILED)
    logged.children[log.run_id("search-5")] = dict(params=FAILED, state="FAILED", result=None)
    log.end_sweep("FINISHED")
    assert log.close() == 0 and not log.problems

    aid = runs.start_parent_run(uri, exp_id, "ablation", _parent_tags("ablation", "ablation", root))
    log = SweepLog(root / "spool-ablation", uri, exp_id, aid)
    logged.ablation_parent = aid
    for i, (params, seed) in enumerate(ABLATION):
        p = {**params, "seed": seed}
        rid, state, result = _train_child(log, f"ablation-{i}", p, out)
        logged.children[rid] = dict(params=p, state=state, result=result)
    log.end_sweep("FINISHED")
    assert log.close() == 0 and not log.problems

    # a third experiment whose sweep never finished a trial (bad input for `albsnn report`)
    empty_id = runs.ensure_experiment(uri, NOTHING_FINISHED)
    parent = runs.start_parent_run(uri, empty_id, "broken", _parent_tags("broken", "search", root))
    log = SweepLog(root / "spool-broken", uri, empty_id, parent)
    for i, state in enumerate((layout.FAILED, layout.PRUNED)):
        log.start_trial(f"broken-{i}", f"broken-{i}", {})
        log.end_trial(f"broken-{i}", state)
    log.end_sweep("FAILED")
    assert log.close() == 0 and not log.problems
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
