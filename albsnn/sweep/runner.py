"""Run a pipeline on Ray Tune: validate, connect, record in MLflow, search or enumerate, resume.

:func:`run_sweep` is what ``albsnn sweep`` calls. Order matters: the pipeline, the search space,
the tracking server, the storage URI, the Ray address and the cluster (pre-flight: resources and data,
:mod:`albsnn.sweep.preflight`) are all checked before anything is written to MLflow, so bad input
leaves no trace. One driver per sweep (:mod:`albsnn.sweep.lock`).

A sweep goes through these stages, one module each:

* **plan** (:mod:`~albsnn.sweep.plan`): what it would run; ``--dry-run`` stops there.
* **start** (:mod:`~albsnn.sweep.start`): folder, parent run, record (:mod:`~albsnn.sweep.record`),
  the search's Tuner, on the cluster :mod:`~albsnn.sweep.cluster` joins or starts. ``--resume``
  instead reads the record and restores the Tuner (here).
* **run** (:mod:`~albsnn.sweep.run`): fit the search, then settle Ray, Optuna and MLflow.
* **confirm** (:mod:`~albsnn.sweep.confirm_runs`, rules in :mod:`~albsnn.sweep.confirm`): re-run
  the Pareto candidates on more seeds, when the pipeline asks.
* **finish** (:mod:`~albsnn.sweep.finish`): records sent, parent run ended, the
  :class:`~albsnn.sweep.result.SweepResult`. The report is the caller's (``albsnn sweep`` makes it).

A sweep lives in ``<storage>/<pipeline name>/<sweep id>/`` (also the Ray Tune experiment folder):
``sweep.json`` (what ``--resume`` needs), ``driver.lock``, copies of the pipeline and search-space
files, the Optuna journal ``optuna.journal`` (search study ``<sweep id>``, pruning study
``<sweep id>.pruning``; ``optuna-dashboard`` opens it) and Ray's trial folders with their
checkpoints. With a URI ``storage`` (``s3://...``) Ray's part is in the bucket and the rest in
``local_storage`` on the driver.

    from albsnn.sweep import run_sweep
    result = run_sweep("pipelines/demo.yaml")
    print(result.counts)            # {"FINISHED": 10, "PRUNED": 6, "FAILED": 0}
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import time
from pathlib import Path

from albsnn.errors import ConfigError
from albsnn.sweep._imports import require
from albsnn.sweep.cluster import preflight, ray_session
from albsnn.sweep.confirm_runs import confirm_front
from albsnn.sweep.experiment import make_trainable, quiet_tune, trial_name
from albsnn.sweep.finish import ended_on_error, finish_sweep, open_log
from albsnn.sweep.pipeline import Pipeline, load_pipeline
from albsnn.sweep.record import JOURNAL_FILE, SWEEP_FILE, SweepRecord, find_sweep
from albsnn.sweep.result import SweepResult
from albsnn.sweep.run import fit_search
from albsnn.sweep.start import describe, new_record, new_sweep_dir, search_tuner, start_parent_run
from albsnn.sweep.tracking import layout as L
from albsnn.sweep.tracking.server_wait import WAIT_S, call_server

__all__ = ["SweepResult", "run_sweep", "find_sweep", "SWEEP_FILE", "JOURNAL_FILE"]

# Ray Tune pickles the TuneConfig into tuner.pkl, its trial_name_creator by reference: sweeps started
# before the stages had modules of their own name this one, and --resume unpickles it.
_trial_name = trial_name


def run_sweep(
    pipeline: str | Path,
    *,
    tracking_uri: str | None = None,
    address: str | None = None,
    resume: bool | str = False,
    num_samples: int | None = None,
    experiment: str | None = None,
    command: str | None = None,
    progress: bool = True,
    num_cpus: int | None = None,
    fail_once_at_epoch: int | None = None,
    mlflow_wait: float = WAIT_S,
) -> SweepResult:
    """Run (or with ``resume``, continue) the sweep that ``pipeline`` describes.

    Args:
        pipeline: path of the pipeline YAML.
        tracking_uri: MLflow URI; default: the pipeline's, else ``sqlite:///<cwd>/runs/mlflow.db``.
        address: ``auto`` or ``ray://host:port`` to join a cluster; None starts a local Ray (unless
            one is already initialised in this process, which is then used).
        resume: continue a sweep of this pipeline via ``Tuner.restore``: True for the newest, or
            its sweep id. One driver per sweep (:mod:`albsnn.sweep.lock`).
        num_samples: override the pipeline's ``num_samples``; on resume, raise the sweep's budget
            (search mode).
        experiment: override the MLflow experiment name (new sweeps only).
        command: the command line recorded as ``albsnn.command``.
        progress: print trial events while running.
        num_cpus: CPUs of a locally started Ray (default: all).
        fail_once_at_epoch: tests only: every trial raises once at this epoch on its first attempt.
        mlflow_wait: seconds a start-up call waits for an MLflow server that stops answering, said at
            once; past that, a ConfigError (``0``: at the first failed request). Once the parent run
            exists, records wait in the spool instead and the sweep goes on.

    Returns:
        a :class:`SweepResult` (its ``report_due`` says whether the pipeline wants a report made now:
        ``albsnn sweep`` makes it); a :class:`ConfigError` for bad input, before anything is recorded.
    """
    from albsnn.sweep.lock import sweep_lock

    started = time.monotonic()
    pipe, record, uri = _what_to_run(pipeline, tracking_uri, resume, num_samples, experiment)
    _check_stores(pipe, uri, new=record is None, wait_s=mlflow_wait)
    with contextlib.ExitStack() as held:
        if record is not None:
            held.enter_context(sweep_lock(record.folder))
            _check_parent(uri, record, mlflow_wait)
        with ray_session(pipe, address, num_cpus):
            preflight(pipe)
            if record is not None:
                result = _continue(pipe, record, uri, num_samples, progress, fail_once_at_epoch, mlflow_wait)
            else:
                command = command or _command_line()
                sweep_dir = new_sweep_dir(pipe)
                held.enter_context(sweep_lock(sweep_dir))
                parent = start_parent_run(pipe, sweep_dir, uri, command, mlflow_wait)
                result = _new(pipe, sweep_dir, uri, parent, command, progress, fail_once_at_epoch)
    result.wall_seconds = time.monotonic() - started
    return result


def _continue(
    pipe: Pipeline,
    record: SweepRecord,
    uri: str,
    num_samples: int | None,
    progress: bool,
    fail_once_at_epoch: int | None,
    mlflow_wait: float,
) -> SweepResult:
    """``--resume``: raise the budget first when ``num_samples`` asks, then restore and run to the end."""
    if num_samples is not None:
        pipe = _extend(record, pipe, num_samples, uri, mlflow_wait)
    return _resume(pipe, record, uri, progress, fail_once_at_epoch)


def _command_line() -> str:
    """This process's command line, as recorded in ``albsnn.command`` when the caller gave none."""
    return " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]])


def _what_to_run(
    pipeline: str | Path, tracking_uri: str | None, resume: bool | str, num_samples: int | None, experiment
) -> tuple[Pipeline, SweepRecord | None, str]:
    """The pipeline, the record of the sweep to resume (None for a new sweep) and the tracking URI."""
    current = load_pipeline(
        Path(pipeline).resolve(), num_samples=None if resume else num_samples, experiment=experiment
    )
    if not resume:
        return current, None, tracking_uri or current.tracking_uri or L.default_tracking_uri(create=True)
    record = SweepRecord.load(find_sweep(current, None if resume is True else str(resume)))
    return record.started_pipeline(), record, tracking_uri or record.tracking_uri


def _check_stores(pipe: Pipeline, uri: str, new: bool, wait_s: float) -> None:
    """Before anything is written: MLflow answers, the packages are there, Ray's storage is usable."""
    from albsnn.sweep.tracking import runs

    L.check_tracking_uri(uri)
    require("mlflow")
    require("optuna")
    if pipe.ray_storage:
        from albsnn.sweep.storage_uri import check_storage_uri

        check_storage_uri(pipe.ray_storage, f"{pipe.path}: storage")
    if new:
        call_server(
            uri, "checking the experiment", lambda: runs.check_experiment(uri, pipe.experiment), wait_s=wait_s
        )


def _check_parent(uri: str, record: SweepRecord, wait_s: float) -> None:
    try:
        call_server(
            uri,
            "finding the sweep's parent run",
            lambda: L.client(uri).get_run(record.parent_run_id),
            wait_s=wait_s,
        )
    except ConfigError:
        raise
    except Exception as e:  # MlflowException: the run is gone (another database?)
        raise ConfigError(
            f"--resume: the sweep's parent run {record.parent_run_id} is not in {uri} "
            f"({str(e).splitlines()[0]})"
        ) from None


def _extend(
    record: SweepRecord, pipe: Pipeline, num_samples: int, uri: str, wait_s: float = WAIT_S
) -> Pipeline:
    """Raise a search sweep's trial budget to ``num_samples`` (``--resume --num-samples``); the
    pipeline with it."""
    if pipe.mode != "search":
        raise ConfigError(
            f"--num-samples: sweep {record.sweep_id} is an ablation (its grid once per seed); "
            "it cannot be extended, start a new sweep with more seeds"
        )
    if record.confirm:
        raise ConfigError(
            f"--num-samples: sweep {record.sweep_id} has already chosen the Pareto points it confirms; "
            "more search trials would not be confirmed: start a new sweep with the larger num_samples"
        )
    if num_samples < record.num_samples:
        raise ConfigError(
            f"--num-samples {num_samples}: sweep {record.sweep_id} already has a budget of "
            f"{record.num_samples} trials; pass a larger number to extend it, or leave it out"
        )
    record.num_samples = num_samples
    record.save()
    set_budget = lambda: L.client(uri).set_tag(record.parent_run_id, L.NUM_SAMPLES, str(num_samples))  # noqa: E731
    call_server(uri, "raising the sweep's budget", set_budget, wait_s=wait_s)
    return record.started_pipeline()


def _new(
    pipe: Pipeline,
    sweep_dir: Path,
    uri: str,
    parent: tuple[str, str],
    command: str,
    progress: bool,
    fail_once_at_epoch: int | None,
) -> SweepResult:
    """Run the sweep just started in ``sweep_dir`` (``parent``: experiment id, parent run id) to its end."""
    experiment_id, parent = parent
    log = open_log(sweep_dir, uri, experiment_id, parent)
    with ended_on_error(log):
        record = new_record(pipe, sweep_dir, uri, experiment_id, parent)
        record.save()
        if progress:
            print(
                f"sweep {record.sweep_id}: {describe(pipe)}\n  folder {sweep_dir}\n"
                f"  MLflow {uri}, parent run {parent}"
            )
        quiet_tune()
        trainable = make_trainable(pipe, fail_once_at_epoch)
        tuner = search_tuner(pipe, record, log, trainable, command, progress)
        return _run_to_end(tuner, pipe, record, uri, log, trainable, progress)


def _resume(
    pipe: Pipeline, record: SweepRecord, uri: str, progress: bool, fail_once_at_epoch: int | None
) -> SweepResult:
    """Continue the sweep of ``record`` where Ray's last snapshot left it."""
    from albsnn.sweep.tracking.runs import driver_tag

    tune = require("ray.tune")
    quiet_tune()
    experiment = pipe.experiment_path(record.folder.name)
    if not tune.Tuner.can_restore(experiment):
        raise ConfigError(f"--resume: {experiment} holds no Ray Tune experiment state to restore")
    # The spool's unsent records go first; the trials' runs reopen as Tune restarts them.
    log = open_log(record.folder, uri, record.experiment_id, record.parent_run_id)
    log.reopen_sweep(driver_tag())
    with ended_on_error(log):
        if progress:
            print(f"resuming sweep {record.sweep_id} in {record.folder}")
        trainable = make_trainable(pipe, fail_once_at_epoch)
        tuner = tune.Tuner.restore(
            experiment,
            trainable,
            resume_unfinished=True,
            resume_errored=False,
            param_space=pipe.param_space(),
        )
        return _run_to_end(tuner, pipe, record, uri, log, trainable, progress)


def _run_to_end(tuner, pipe: Pipeline, record: SweepRecord, uri: str, log, trainable, progress: bool):
    """Run the search, confirm its front (when the pipeline asks and the search ended), finish."""
    from albsnn.sweep.tracking.runs import summary_metrics

    result, known = fit_search(tuner, pipe, record, uri, log)
    states = {t: s for t, s in log.states.items() if t in known}  # the search's trials only
    metrics = summary_metrics({t: log.last.get(t, {}) for t in states}, states)
    if pipe.confirm:
        result.confirm_seeds = list(pipe.confirm["seeds"])
        if not result.interrupted:
            metrics.update(confirm_front(result, pipe, record, log, known, trainable, progress))
    return finish_sweep(result, pipe, log, metrics)
