"""Run a pipeline on Ray Tune: validate, connect, record in MLflow, search or enumerate, resume.

:func:`run_sweep` is what ``albsnn sweep`` calls. Order matters: the pipeline, the search space,
the tracking server, the storage URI, the Ray address and the cluster (pre-flight: resources and data,
:mod:`albsnn.sweep.preflight`) are all checked before anything is written to MLflow, so bad input
leaves no trace. One driver per sweep (:mod:`albsnn.sweep.lock`).

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
import json
import logging
import os
import shlex
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from albsnn.errors import ConfigError
from albsnn.sweep import local_ray
from albsnn.sweep._imports import require
from albsnn.sweep._yaml import read_yaml_mapping
from albsnn.sweep.dashboard import RAY_TRIAL_ID
from albsnn.sweep.pipeline import Pipeline, load_pipeline, parse_pipeline

__all__ = ["SweepResult", "run_sweep", "find_sweep", "SWEEP_FILE", "JOURNAL_FILE"]

SWEEP_FILE = "sweep.json"
JOURNAL_FILE = "optuna.journal"
_log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    """What a finished (or interrupted) sweep reports."""

    sweep_id: str
    sweep_dir: Path
    experiment: str
    experiment_id: str
    parent_run_id: str
    tracking_uri: str
    counts: dict[str, int] = field(default_factory=dict)  # FINISHED / PRUNED / FAILED (MLflow tags)
    ray_trials: int = 0
    interrupted: bool = False
    optuna_storage: Path | None = None
    optuna_study: str | None = None
    report_path: Path | None = None
    report_error: str | None = None
    wall_seconds: float = 0.0
    tracking_problems: list[str] = field(default_factory=list)  # each reported once while it ran
    # the confirmation of the Pareto front (pipeline `confirm`); counts are of confirmation runs only
    confirm_seeds: list[int] = field(default_factory=list)
    confirm_counts: dict[str, int] = field(default_factory=dict)
    confirm_points: list = field(default_factory=list)  # albsnn.sweep.confirm.ConfirmedPoint

    def summary(self) -> str:
        from albsnn.sweep.tracking.layout import ui_url

        c = self.counts
        lines = [
            f"experiment:    {self.experiment} (id {self.experiment_id}) at {self.tracking_uri}",
            f"parent run:    {self.parent_run_id}",
            f"trials:        {c.get('FINISHED', 0)} finished, {c.get('PRUNED', 0)} pruned, "
            f"{c.get('FAILED', 0)} failed ({self.ray_trials} Ray trials, {self.wall_seconds:.0f} s)",
            f"sweep folder:  {self.sweep_dir}",
        ]
        if self.confirm_seeds:
            lines.append(f"confirmation:  {self._confirm_line()}")
        if self.optuna_storage:
            lines.append(f"optuna study:  {self.optuna_study} in {self.optuna_storage}")
        if self.report_path:
            lines.append(f"report:        {self.report_path}")
        else:
            why = f" ({self.report_error})" if self.report_error else ""
            lines.append(
                f"report:        not generated{why}; run: albsnn report --parent-run {self.parent_run_id} "
                f"--tracking-uri {shlex.quote(self.tracking_uri)}"
            )
        if self.tracking_uri.startswith(("http://", "https://")):
            lines.append(f"MLflow UI:     {ui_url(self.tracking_uri, self.experiment_id)}")
        else:
            lines.append(
                f"MLflow UI:     `albsnn ui`, then {ui_url('http://127.0.0.1:5000', self.experiment_id)}"
            )
        lines += [f"MLflow:        {problem}" for problem in self.tracking_problems]
        if self.interrupted:
            lines.append("interrupted:   continue with the same command plus --resume")
        return "\n".join(lines)

    def _confirm_line(self) -> str:
        c, points = self.confirm_counts, self.confirm_points
        if not c and not points:
            return f"seeds {self.confirm_seeds}: not run (the search did not finish)"
        survive = sum(p.survives for p in points)
        verdict = (
            "survival is decided when every run has ended"
            if self.interrupted
            else f"{survive} of {len(points)} survive on validation seed means"
        )
        return (
            f"{len(points)} Pareto point(s) x seeds {self.confirm_seeds}: {c.get('FINISHED', 0)} finished, "
            f"{c.get('FAILED', 0)} failed; {verdict}"
        )


# ---------------------------------------------------------------- finding / describing sweeps


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
    return max(sweeps, key=lambda p: (_created(p), p.parent.name)).parent


def _created(sweep_file: Path) -> str:
    try:
        return str(json.loads(sweep_file.read_text()).get("created", ""))
    except (OSError, ValueError):
        return ""


def _read_sweep_file(sweep_dir: Path) -> dict:
    try:
        return json.loads((sweep_dir / SWEEP_FILE).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"--resume: {sweep_dir / SWEEP_FILE} is unreadable ({e})") from None


def _resumed_pipeline(info: dict, sweep_dir: Path) -> Pipeline:
    """The pipeline as it was when the sweep started (its copies, not today's files)."""
    data = read_yaml_mapping(sweep_dir / "pipeline.yaml", "pipeline")
    data.update(info["overrides"])
    return parse_pipeline(
        data, Path(info["pipeline"]), num_samples=info["num_samples"], experiment=info["experiment"]
    )


# ---------------------------------------------------------------- Ray


def _check_address(address: str) -> None:
    """Fail fast, naming the address, when a ``ray://host:port`` or ``host:port`` does not answer."""
    if address == "auto":
        return
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    host, port = parsed.hostname, parsed.port
    if not host or not port:
        raise ConfigError(f"Ray address {address!r} is not auto, ray://HOST:PORT or HOST:PORT")
    try:
        with socket.create_connection((host, port), timeout=5):
            pass
    except OSError as e:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address} ({e.strerror or e}); "
            "start it with `ray start --head` "
            "or check the address"
        ) from None


def _connect_ray(address: str | None, num_cpus: int | None, runtime_env: dict | None = None) -> bool:
    """Join ``address`` or start a local Ray; returns True when this call started/joined Ray."""
    ray = require("ray")
    require("ray.tune")
    if address:
        _check_address(address)
    if ray.is_initialized():  # e.g. a test session's cluster, or a notebook's
        if runtime_env:
            _log.warning(
                "Ray was already initialised in this process: the pipeline's runtime_env is not applied"
            )
        return False
    kwargs = {"include_dashboard": False, "logging_level": logging.WARNING, "runtime_env": runtime_env}
    if address:
        try:  # worker output stays on (with ray:// the sweep's own progress lines come through it)
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError, ImportError) as e:  # ray:// needs ray[client]
            raise ConfigError(f"cannot join the Ray cluster at {address}: {str(e).splitlines()[0]}") from None
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=num_cpus, log_to_driver=False, **kwargs)
    return True


# ---------------------------------------------------------------- the sweep


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

    Returns:
        a :class:`SweepResult`; a :class:`ConfigError` for bad input, before anything is recorded.
    """
    from albsnn.sweep.lock import sweep_lock
    from albsnn.sweep.tracking import layout, runs

    started = time.monotonic()
    pipeline_path = Path(pipeline).resolve()
    current = load_pipeline(pipeline_path, num_samples=None if resume else num_samples, experiment=experiment)
    if resume:
        sweep_dir = find_sweep(current, None if resume is True else str(resume))
        info = _read_sweep_file(sweep_dir)
        pipe = _resumed_pipeline(info, sweep_dir)
        uri = tracking_uri or info["tracking_uri"]
    else:
        pipe, info = current, None
        uri = tracking_uri or current.tracking_uri or layout.default_tracking_uri(create=True)
    layout.check_tracking_uri(uri)
    require("mlflow")
    require("optuna")
    if pipe.ray_storage:
        from albsnn.sweep.storage_uri import check_storage_uri

        check_storage_uri(pipe.ray_storage, f"{pipe.path}: storage")
    if not resume:
        runs.check_experiment(uri, pipe.experiment)
    with contextlib.ExitStack() as held:
        if resume:
            held.enter_context(sweep_lock(sweep_dir))
            _check_parent(uri, info)
        ray_record = None
        if not address:
            for line in local_ray.end_stale(pipe.storage):
                print(line, file=sys.stderr, flush=True)
        owns_ray = _connect_ray(address, num_cpus, pipe.runtime_env)
        if owns_ray and not address:
            ray_record = local_ray.record(pipe.storage)
        try:
            _preflight(pipe)
            if resume:
                if num_samples is not None:
                    info = _extend(sweep_dir, info, pipe, num_samples, uri)
                    pipe = _resumed_pipeline(info, sweep_dir)
                result = _resume(pipe, sweep_dir, info, uri, progress, fail_once_at_epoch)
            else:
                cmd = command or " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]])
                sweep_dir = _new_sweep_dir(pipe)
                held.enter_context(sweep_lock(sweep_dir))
                result = _start(pipe, sweep_dir, uri, cmd, progress, fail_once_at_epoch)
        finally:
            if owns_ray:
                require("ray").shutdown()
                local_ray.release(ray_record)
    result.wall_seconds = time.monotonic() - started
    return result


def _preflight(pipe: Pipeline) -> None:
    """Before any trial or MLflow run: the cluster can hold a trial and every node has the data."""
    from albsnn.sweep.preflight import check_dataset, check_resources

    check_resources(pipe.resources, require("ray").nodes(), f"{pipe.path}: resources")
    if not pipe.train.get("data_options", {}).get("download"):
        check_dataset(pipe.dataset, pipe.train.get("data_dir"), pipe.resources)


def _extend(sweep_dir: Path, info: dict, pipe: Pipeline, num_samples: int, uri: str) -> dict:
    """Raise a search sweep's trial budget to ``num_samples`` (``--resume --num-samples``)."""

    if pipe.mode != "search":
        raise ConfigError(
            f"--num-samples: sweep {info['sweep_id']} is an ablation (its grid once per seed); "
            "it cannot be extended, start a new sweep with more seeds"
        )
    if info.get("confirm"):
        raise ConfigError(
            f"--num-samples: sweep {info['sweep_id']} has already chosen the Pareto points it confirms; "
            "more search trials would not be confirmed: start a new sweep with the larger num_samples"
        )
    if num_samples < info["num_samples"]:
        raise ConfigError(
            f"--num-samples {num_samples}: sweep {info['sweep_id']} already has a budget of "
            f"{info['num_samples']} trials; pass a larger number to extend it, or leave it out"
        )
    info = {**info, "num_samples": num_samples}
    staging = sweep_dir / f".{SWEEP_FILE}.tmp"
    staging.write_text(json.dumps(info, indent=1))
    os.replace(staging, sweep_dir / SWEEP_FILE)
    require("mlflow").MlflowClient(uri).set_tag(info["parent_run_id"], "albsnn.num_samples", str(num_samples))
    return info


def _new_sweep_dir(pipe: Pipeline) -> Path:
    sweep_id = f"{pipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    sweep_dir = pipe.storage / pipe.name / sweep_id
    while sweep_dir.exists():  # two sweeps started within a second
        sweep_id += "x"
        sweep_dir = pipe.storage / pipe.name / sweep_id
    sweep_dir.mkdir(parents=True)
    return sweep_dir


def _check_parent(uri: str, info: dict) -> None:
    mlflow = require("mlflow")
    try:
        mlflow.MlflowClient(uri).get_run(info["parent_run_id"])
    except Exception as e:  # MlflowException: the run is gone (another database?)
        raise ConfigError(
            f"--resume: the sweep's parent run {info['parent_run_id']} is not in {uri} "
            f"({str(e).splitlines()[0]})"
        ) from None


def _start(
    pipe: Pipeline,
    sweep_dir: Path,
    uri: str,
    command: str,
    progress: bool,
    fail_once_at_epoch: int | None,
) -> SweepResult:
    from albsnn.sweep.tracking import runs

    sweep_id = sweep_dir.name
    shutil.copy2(pipe.path, sweep_dir / "pipeline.yaml")
    shutil.copy2(pipe.search_space.path, sweep_dir / "search_space.yaml")
    journal = sweep_dir / JOURNAL_FILE

    experiment_id = runs.ensure_experiment(uri, pipe.experiment)
    tags = {
        "albsnn.pipeline": str(pipe.path),
        "albsnn.pipeline_name": pipe.name,
        "albsnn.dataset": pipe.dataset,
        "albsnn.mode": pipe.mode,
        "albsnn.objectives": json.dumps(pipe.objectives),
        "albsnn.search_space": str(pipe.search_space.path),
        "albsnn.search_space_types": json.dumps({**pipe.search_space.types(), "seed": "int"}),
        "albsnn.sweep_dir": str(sweep_dir),
        "albsnn.pruner": json.dumps(pipe.pruner),
        "albsnn.prune_metric": pipe.prune_on[0],
        "albsnn.num_samples": str(pipe.num_samples),
        "albsnn.base_config": json.dumps(pipe.base_config(), sort_keys=True),
        **runs.provenance_tags(command=command),
    }
    if pipe.confirm:
        from albsnn.sweep.tracking.layout import CONFIRM_SEEDS

        tags[CONFIRM_SEEDS] = json.dumps(pipe.confirm["seeds"])
    if pipe.mode == "search":
        tags.update({"albsnn.optuna_storage": str(journal), "albsnn.optuna_study": sweep_id})
        tags["albsnn.sampler"] = json.dumps(pipe.sampler)
    parent = runs.start_parent_run(
        uri,
        experiment_id,
        sweep_id,
        tags,
        artifacts=[sweep_dir / "pipeline.yaml", sweep_dir / "search_space.yaml"],
    )
    log = _open_log(sweep_dir, uri, experiment_id, parent)
    with _ended_on_error(log):
        return _start_tuner(
            pipe, sweep_dir, sweep_id, experiment_id, parent, uri, command, progress, fail_once_at_epoch, log
        )


def _start_tuner(
    pipe: Pipeline,
    sweep_dir: Path,
    sweep_id: str,
    experiment_id: str,
    parent: str,
    uri: str,
    command: str,
    progress: bool,
    fail_once_at_epoch: int | None,
    log,
) -> SweepResult:
    from albsnn.sweep.tracking import runs
    from albsnn.sweep.tracking.callback import MlflowTrialCallback

    journal = sweep_dir / JOURNAL_FILE
    overrides = {"search_space": str(sweep_dir / "search_space.yaml"), "storage": str(pipe.storage)}
    if pipe.ray_storage:
        overrides.update(storage=pipe.ray_storage, local_storage=str(pipe.storage))
    if pipe.train.get("data_dir"):
        overrides["data_dir"] = pipe.train["data_dir"]
    info = {
        "sweep_id": sweep_id,
        "pipeline": str(pipe.path),
        "overrides": overrides,
        "num_samples": pipe.num_samples,
        "experiment": pipe.experiment,
        "experiment_id": experiment_id,
        "parent_run_id": parent,
        "tracking_uri": uri,
        "optuna_storage": str(journal),
        "optuna_study": sweep_id if pipe.mode == "search" else None,
        "pruning_study": f"{sweep_id}.pruning",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (sweep_dir / SWEEP_FILE).write_text(json.dumps(info, indent=1))
    if progress:
        print(
            f"sweep {sweep_id}: {_describe(pipe)}\n  folder {sweep_dir}\n  MLflow {uri}, parent run {parent}"
        )

    tune = require("ray.tune")
    _quiet_tune()
    scheduler, searcher = _scheduler_and_searcher(pipe, info, journal)
    names = [*pipe.search_space.names, "seed"]
    trial_state = scheduler.trial_state if scheduler is not None else None
    callbacks = [
        MlflowTrialCallback(
            log,
            param_names=names,
            trial_state=trial_state,
            trial_number=searcher.trial_number if searcher is not None else None,
            source=runs.source_tags(command),
        ),
    ]
    if progress:
        from albsnn.sweep.plan import trial_count
        from albsnn.sweep.progress import ProgressPrinter

        total = trial_count(pipe)
        callbacks.append(ProgressPrinter(total, pipe.search_space.names + ["seed"], trial_state))
    trainable = _trainable(pipe, fail_once_at_epoch)
    tuner = tune.Tuner(
        trainable,
        param_space=pipe.param_space(),
        tune_config=tune.TuneConfig(
            search_alg=_budgeted(searcher, pipe, sweep_dir),
            scheduler=scheduler,
            num_samples=pipe.num_samples,
            max_concurrent_trials=pipe.max_concurrent if searcher is None else None,
            # One worker process runs trial after trial: torch/sklearn imports and data loading
            # (several seconds on a small CPU) are paid once per worker, not once per trial.
            reuse_actors=True,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=sweep_id,
            storage_path=pipe.ray_storage_path(),
            failure_config=tune.FailureConfig(max_failures=pipe.max_failures),
            # Trials rotate their own checkpoints (trainable.py): Ray's num_to_keep would force an
            # experiment snapshot, whose cost grows with the trials, every num_to_keep checkpoints.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            callbacks=callbacks,
            verbose=0,
        ),
    )
    return _fit(tuner, pipe, sweep_dir, info, uri, log, trainable, progress)


def _resume(
    pipe: Pipeline, sweep_dir: Path, info: dict, uri: str, progress: bool, fail_once_at_epoch: int | None
) -> SweepResult:
    from albsnn.sweep.tracking.runs import driver_tag

    tune = require("ray.tune")
    _quiet_tune()
    experiment = pipe.experiment_path(sweep_dir.name)
    if not tune.Tuner.can_restore(experiment):
        raise ConfigError(f"--resume: {experiment} holds no Ray Tune experiment state to restore")
    # The spool's unsent records go first; the trials' runs reopen as Tune restarts them.
    log = _open_log(sweep_dir, uri, info["experiment_id"], info["parent_run_id"])
    log.reopen_sweep(driver_tag())
    with _ended_on_error(log):
        if progress:
            print(f"resuming sweep {info['sweep_id']} in {sweep_dir}")
        trainable = _trainable(pipe, fail_once_at_epoch)
        tuner = tune.Tuner.restore(
            experiment,
            trainable,
            resume_unfinished=True,
            resume_errored=False,
            param_space=pipe.param_space(),
        )
        return _fit(tuner, pipe, sweep_dir, info, uri, log, trainable, progress)


_FLUSH_S = 300  # how long the end of a sweep waits for MLflow before leaving records in the spool


def _open_log(sweep_dir: Path, uri: str, experiment_id: str, parent: str):
    from albsnn.sweep.tracking.spool import SweepLog

    return SweepLog.open(sweep_dir, uri, experiment_id, parent)


@contextlib.contextmanager
def _ended_on_error(log):
    """Nothing left RUNNING: on any error or interrupt, the trials' runs and the parent end KILLED/FAILED."""
    try:
        yield
    except BaseException as e:
        if log.closed:  # the sweep was recorded whole; the error came after
            raise
        interrupted = isinstance(e, KeyboardInterrupt)
        reason = "interrupted" if interrupted else f"driver error: {_last_line(e)}"
        log.kill_unfinished(reason)
        log.end_sweep("KILLED" if interrupted else "FAILED", reason=reason)
        log.close(timeout=30)
        raise


def _last_line(error: BaseException) -> str:
    """``Type: message`` of an error; for a TuneError that wraps a traceback, its last line (the cause)."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    text = lines[-1].strip() if lines else ""
    return (text if ": " in text and len(lines) > 1 else f"{type(error).__name__}: {text}")[:250]


def _fit(
    tuner, pipe: Pipeline, sweep_dir: Path, info: dict, uri: str, log, trainable, progress: bool
) -> SweepResult:
    from albsnn.sweep.tracking.runs import summary_metrics

    grid = tuner.fit()
    trials = _ray_trials(pipe.experiment_path(sweep_dir.name))
    interrupted = any(status not in ("TERMINATED", "ERROR") for status in trials.values())
    lost = _lost_trials(info, set(trials)) if trials else {}
    if trials and not interrupted:  # an interrupted sweep's RUNNING trials are still wanted
        _close_orphans(info, set(trials))
    if trials:
        _keep_lost(log, lost)
        log.forget_orphans(set(trials) | set(lost))
    if interrupted:  # reopened by --resume
        log.kill_unfinished("interrupted")
    known = (set(trials) | set(lost)) or set(log.states) - log.confirming  # the search's trials only
    result = SweepResult(
        sweep_id=info["sweep_id"],
        sweep_dir=sweep_dir,
        experiment=info["experiment"],
        experiment_id=info["experiment_id"],
        parent_run_id=info["parent_run_id"],
        tracking_uri=uri,
        counts=log.counts(known),
        ray_trials=len(trials) or len(grid),
        interrupted=interrupted,
        optuna_storage=Path(info["optuna_storage"]) if info.get("optuna_study") else None,
        optuna_study=info.get("optuna_study"),
    )
    states = {t: s for t, s in log.states.items() if t in known}  # the search's trials only
    metrics = summary_metrics({t: log.last.get(t, {}) for t in states}, states)
    if pipe.confirm:
        result.confirm_seeds = list(pipe.confirm["seeds"])
        if not interrupted:
            metrics.update(_confirm_front(result, pipe, sweep_dir, info, log, known, trainable, progress))
            interrupted = result.interrupted
    unsent = log.flush(_FLUSH_S)
    if not interrupted and pipe.report.get("enabled", True):
        if unsent:
            result.report_error = f"{unsent} MLflow record(s) still unsent"
        else:
            _report(result, pipe)
    reason = "interrupted" if interrupted else None
    log.end_sweep("KILLED" if interrupted else "FINISHED", metrics, reason=reason)
    log.close(_FLUSH_S)
    result.tracking_problems = list(log.problems)
    return result


# ---------------------------------------------------------------- confirming the Pareto front


def _confirm_path(pipe: Pipeline, sweep_id: str) -> str:
    """The confirmation's Ray Tune experiment: ``confirm/`` inside the sweep's experiment folder."""
    from albsnn.sweep.confirm import CONFIRM_DIR
    from albsnn.sweep.storage_uri import join_uri

    base = pipe.experiment_path(sweep_id)
    return join_uri(base, CONFIRM_DIR) if pipe.ray_storage else str(Path(base) / CONFIRM_DIR)


def _confirm_front(
    result: SweepResult, pipe: Pipeline, sweep_dir: Path, info: dict, log, known: set, trainable, progress
) -> dict[str, float]:
    """Re-run the search's Pareto candidates on ``confirm.seeds`` (a second Tune experiment).

    The candidates and their configs are chosen once and kept in ``sweep.json`` (``confirm``), so
    ``--resume`` continues the same confirmation (``Tuner.restore`` of its experiment) instead of
    choosing again. Returns the parent run's confirmation metrics.
    """
    from albsnn.metrics import SWEEP_CONFIRM_COUNT_PREFIX, SWEEP_CONFIRM_SURVIVORS
    from albsnn.sweep.tracking import layout as L

    tune = require("ray.tune")
    plan = info.get("confirm") or _plan_confirmation(pipe, sweep_dir, info, log, known)
    path = _confirm_path(pipe, sweep_dir.name)
    if plan["runs"]:
        if tune.Tuner.can_restore(path):
            if progress:
                print(f"resuming the confirmation of {len(plan['points'])} Pareto point(s)")
            tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False)
        else:
            tuner = _confirm_tuner(pipe, sweep_dir.name, plan, trainable, log, progress)
        tuner.fit()
    trials = _ray_trial_configs(path)
    result.interrupted = len(trials) < len(plan["runs"]) or any(
        status not in ("TERMINATED", "ERROR") for status, _ in trials.values()
    )
    if result.interrupted:
        log.kill_unfinished("interrupted")
    result.confirm_counts = log.counts(trials)
    result.confirm_points = _judge(pipe, plan, log, trials)
    counts = {L.FINISHED: 0, L.PRUNED: 0, L.FAILED: 0, L.RUNNING: 0, **result.confirm_counts}
    # every state, zeros included: a resumed sweep's final values replace the interrupted ones
    metrics = {f"{SWEEP_CONFIRM_COUNT_PREFIX}{s.lower()}": float(n) for s, n in counts.items()}
    metrics[SWEEP_CONFIRM_SURVIVORS] = float(sum(p.survives for p in result.confirm_points))
    return metrics


def _plan_confirmation(pipe: Pipeline, sweep_dir: Path, info: dict, log, known: set) -> dict:
    """Choose the candidates (on the validation objectives) and write them into ``sweep.json``."""
    from albsnn.sweep.confirm import one_per_config, select_candidates
    from albsnn.sweep.tracking.layout import FINISHED

    finished = {t: log.last.get(t, {}) for t in known if log.states.get(t) == FINISHED}
    search = _ray_trial_configs(pipe.experiment_path(sweep_dir.name))
    configs = {t: config for t, (_, config) in search.items()}
    configs.update(_lost_configs(pipe, info, set(finished) - set(configs)))
    unique = one_per_config({t: configs[t] for t in finished if t in configs})
    points = select_candidates({t: finished[t] for t in unique}, pipe.objectives, pipe.confirm["max_points"])
    runs = [
        {"trial": trial, "point": number, "seed": seed, "config": {**configs[trial], "seed": seed}}
        for number, trial in enumerate(points, 1)
        for seed in pipe.confirm["seeds"]
    ]
    plan = {"seeds": list(pipe.confirm["seeds"]), "points": points, "runs": runs}
    info["confirm"] = plan
    staging = sweep_dir / f".{SWEEP_FILE}.tmp"
    staging.write_text(json.dumps(info, indent=1))
    os.replace(staging, sweep_dir / SWEEP_FILE)
    return plan


def _confirm_tuner(pipe: Pipeline, sweep_id: str, plan: dict, trainable, log, progress: bool):
    """A Tuner that runs exactly the planned configs, once each, unpruned, like the search's trials."""
    from ray.tune.search import BasicVariantGenerator

    from albsnn.sweep.confirm import CONFIRM_DIR, config_key
    from albsnn.sweep.tracking import runs
    from albsnn.sweep.tracking.callback import MlflowTrialCallback

    tune = require("ray.tune")
    configs = [r["config"] for r in plan["runs"]]
    names = [*pipe.search_space.names, "seed"]
    lookup = {config_key(r["config"]): (r["trial"], r["point"]) for r in plan["runs"]}
    callbacks = [MlflowTrialCallback(log, param_names=names, source=runs.source_tags(), confirm=lookup)]
    if progress:
        from albsnn.sweep.progress import ProgressPrinter

        points, seeds = len(plan["points"]), plan["seeds"]
        print(f"confirming {points} Pareto point(s) on seeds {seeds}: {len(configs)} runs")
        callbacks.append(ProgressPrinter(len(configs), names))
    return tune.Tuner(
        trainable,
        param_space=_points_space(configs),
        tune_config=tune.TuneConfig(
            search_alg=BasicVariantGenerator(
                points_to_evaluate=configs, max_concurrent=pipe.max_concurrent or 0
            ),
            num_samples=len(configs),
            reuse_actors=True,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=CONFIRM_DIR,
            storage_path=pipe.experiment_path(sweep_id),
            failure_config=tune.FailureConfig(max_failures=pipe.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            callbacks=callbacks,
            verbose=0,
        ),
    )


def _points_space(configs: list[dict]) -> dict:
    """A ``param_space`` that holds every key of ``configs``: shared values fixed, the rest a choice.

    Tune's ``points_to_evaluate`` may only set keys its space has; the points then set every value.
    """
    tune = require("ray.tune")
    space = {}
    for key in dict.fromkeys(k for c in configs for k in c):
        values = list({json.dumps(c.get(key), sort_keys=True): c.get(key) for c in configs}.values())
        space[key] = values[0] if len(values) == 1 else tune.choice(values)
    return space


def _judge(pipe: Pipeline, plan: dict, log, trials: dict) -> list:
    """Each candidate's finished seeds and whether it survives (:func:`albsnn.sweep.confirm.judge`)."""
    from albsnn.metrics import TEST_ACCURACY
    from albsnn.sweep.confirm import config_key, judge
    from albsnn.sweep.tracking.layout import FINISHED

    run_of = {config_key(config): t for t, (_, config) in trials.items()}
    groups = []
    for number, trial in enumerate(plan["points"], 1):
        ids = {pipe.seeds[0]: trial}
        ids.update(
            {r["seed"]: run_of.get(config_key(r["config"])) for r in plan["runs"] if r["trial"] == trial}
        )
        seeds = {s: log.last.get(t, {}) for s, t in ids.items() if t and log.states.get(t) == FINISHED}
        groups.append((trial, number, seeds))
    return judge(groups, pipe.objectives, 1 + len(plan["seeds"]), reported=(TEST_ACCURACY,))


def _ray_trial_configs(experiment: str) -> dict[str, tuple[str, dict]]:
    """``{trial id: (status, config)}`` from the newest Tune experiment state of ``experiment``."""
    tune = require("ray.tune")
    try:
        analysis = tune.ExperimentAnalysis(experiment)
    except Exception:  # no or unreadable state
        return {}
    return {t.trial_id: (t.status, dict(t.config)) for t in analysis.trials}


def _ray_trials(experiment: str) -> dict[str, str]:
    """``{trial id: status}`` from the newest Tune experiment state of ``experiment`` (folder or URI)."""
    tune = require("ray.tune")
    try:
        analysis = tune.ExperimentAnalysis(experiment)
    except Exception:  # no or unreadable state: counts from MLflow still stand
        return {}
    return {t.trial_id: t.status for t in analysis.trials}


def _studies(info: dict, *keys: str):
    """The sweep's Optuna studies named by ``info[key]`` that exist in its journal."""
    optuna = require("optuna")
    from albsnn.sweep.scheduler import open_journal

    journal = Path(info["optuna_storage"])
    if not journal.exists():
        return
    storage = open_journal(journal)
    names = {s.study_name for s in storage.get_all_studies()}
    for key in keys:
        if info.get(key) in names:
            yield optuna.load_study(study_name=info[key], storage=storage)


def _close_orphans(info: dict, ray_trial_ids: set[str]) -> None:
    """Optuna trials still RUNNING with no Ray trial behind them (a driver killed mid-suggest): FAIL."""
    state = require("optuna.trial").TrialState
    for study in _studies(info, "optuna_study", "pruning_study"):
        for t in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
            if t.user_attrs.get(RAY_TRIAL_ID) not in ray_trial_ids:
                study.tell(t.number, state=state.FAIL, skip_if_finished=True)


def _lost_trials(info: dict, ray_trial_ids: set[str]) -> dict[str, str]:
    """``{Ray trial id: PRUNED | FINISHED}`` of search trials a killed driver ended after Ray's last
    snapshot: Ray lost them (and ran others in their place, see ``StudySearch.lost_trials``), but
    their results are in the study and in MLflow, so they stay."""
    from albsnn.sweep.search import ended_unknown_to_ray
    from albsnn.sweep.tracking import layout as L

    pruned = require("optuna.trial").TrialState.PRUNED
    lost = {}
    for study in _studies(info, "optuna_study"):
        for trial_id, t in ended_unknown_to_ray(study, ray_trial_ids).items():
            lost[trial_id] = L.PRUNED if t.state == pruned else L.FINISHED
    return lost


def _lost_configs(pipe: Pipeline, info: dict, trial_ids: set[str]) -> dict[str, dict]:
    """Ray configs of search trials Ray lost (:func:`_lost_trials`), rebuilt as Ray built them:
    the pipeline's fixed values plus the study trial's sampled ones."""
    from albsnn.sweep.search import trials_by_ray_id

    if not trial_ids:
        return {}
    configs = {}
    for study in _studies(info, "optuna_study"):
        for trial_id, t in trials_by_ray_id(study).items():
            if trial_id in trial_ids:
                configs[trial_id] = {**pipe.param_space(), **t.params}
    return configs


def _keep_lost(log, lost: dict[str, str]) -> None:
    """End the MLflow runs of lost trials that the killed driver told Optuna about but not MLflow."""
    from albsnn.sweep.tracking import layout as L

    for trial_id, state in lost.items():
        if log.states.get(trial_id) == L.RUNNING:
            log.end_trial(trial_id, state, step=log.last_step.get(trial_id, 0))


def _report(result: SweepResult, pipe: Pipeline) -> None:
    try:
        from albsnn.report import generate_report
    except ImportError as e:
        result.report_error = f"albsnn.report is not available: {e}"
        return
    try:
        result.report_path = Path(
            generate_report(
                result.tracking_uri,
                parent_run_id=result.parent_run_id,
                out_dir=pipe.report.get("out_dir"),
            )
        )
    except Exception as e:  # the sweep is recorded either way; say why and how to retry
        _log.exception("report generation failed")
        result.report_error = f"{type(e).__name__}: {e}"


def _scheduler_and_searcher(pipe: Pipeline, info: dict, journal: Path):
    from albsnn.sweep.pruners import make_pruner
    from albsnn.sweep.samplers import make_sampler
    from albsnn.sweep.scheduler import OptunaPrunerScheduler, open_journal
    from albsnn.sweep.search import StudySearch

    scheduler = None
    if pipe.pruner["kind"] != "none":
        metric, mode = pipe.prune_on
        scheduler = OptunaPrunerScheduler(
            make_pruner(pipe.pruner, pipe.epochs, objectives=pipe.prune_objectives),
            journal,
            info["pruning_study"],
            metric=metric,
            mode=mode,
            max_step=pipe.epochs,
        )
    searcher = None
    if pipe.mode == "search":
        single = len(pipe.objectives) == 1
        searcher = StudySearch(
            space=pipe.search_space.suggest,  # define-by-run: conditional parameters
            metric=pipe.metrics[0] if single else pipe.metrics,
            mode=pipe.modes[0] if single else pipe.modes,
            sampler=make_sampler(pipe.sampler, pipe.seeds[0]),
            study_name=info["optuna_study"],
            storage=open_journal(journal),
            is_pruned=scheduler.is_pruned if scheduler is not None else None,
        )
    return scheduler, searcher


def _budgeted(searcher, pipe: Pipeline, sweep_dir: Path):
    """The searcher, concurrency-limited, under a budget that ``--resume --num-samples`` can raise."""
    if searcher is None:
        return None
    from ray.tune.search import ConcurrencyLimiter

    from albsnn.sweep.budget import TrialBudget

    if pipe.max_concurrent:
        searcher = ConcurrencyLimiter(searcher, max_concurrent=pipe.max_concurrent)
    return TrialBudget(searcher, sweep_dir / SWEEP_FILE)


def _trainable(pipe: Pipeline, fail_once_at_epoch: int | None):
    tune = require("ray.tune")
    from albsnn.sweep.trainable import TrialOptions, run_trial

    options = TrialOptions(
        cpus=pipe.resources["cpus"],
        checkpoint_every=pipe.checkpoint_every,
        keep_checkpoints=pipe.keep_checkpoints,
        fail_once_at_epoch=fail_once_at_epoch,
    )
    resources = {"cpu": pipe.resources["cpus"], "gpu": pipe.resources["gpus"]}
    return tune.with_resources(tune.with_parameters(run_trial, options=options), resources)


def _quiet_tune() -> None:
    # Experiment snapshots pickle every trial's state and the searcher, so their cost grows with the
    # sweep. Nothing forces them (no num_to_keep), so Ray's throttle holds: one every
    # max(10 s, 19 x its cost), or TUNE_GLOBAL_CHECKPOINT_S seconds when set. Ray's warnings stay on.
    # Our ProgressPrinter replaces Tune's tables; MLflow replaces Tune's JSON/CSV/TensorBoard result
    # files (which the driver would re-copy with every snapshot).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    logging.getLogger("ray.tune.analysis.experiment_analysis").addFilter(_no_result_files_warning)
    require("optuna").logging.set_verbosity(logging.WARNING)


def _no_result_files_warning(record: logging.LogRecord) -> bool:
    # Without Tune's result files, every ExperimentAnalysis (Tuner.fit, Tuner.restore) warns that it
    # found no metrics for each trial; MLflow holds them.
    return not record.getMessage().startswith("Failed to fetch metrics")


def _trial_name(trial) -> str:
    return f"trial_{trial.trial_id}"


def _describe(pipe: Pipeline) -> str:
    from albsnn.sweep.plan import trial_count

    objectives = ", ".join(f"{k} {v}" for k, v in pipe.objectives.items())
    if pipe.mode == "search":
        how = f"search, {pipe.num_samples} trials, sampler {pipe.sampler['kind']}"
    else:
        how = f"ablation, {trial_count(pipe)} trials"
    return (
        f"{pipe.dataset}, {pipe.epochs} epochs, {how}, pruner {pipe.pruner['kind']}, objectives {objectives}"
    )
