"""The adapters without a cluster: pruner bridge, study search, MLflow callback, pruners, CLI errors."""

from __future__ import annotations

import contextlib
import json
import pickle
import random
import re
from dataclasses import dataclass, field
from types import SimpleNamespace

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState
from ray.tune.schedulers import FIFOScheduler

from albsnn.cli import main
from albsnn.errors import ConfigError
from albsnn.sweep.progress import _detail
from albsnn.sweep.pruners import PRUNERS, make_pruner
from albsnn.sweep.scheduler import FifoQueue, OptunaPrunerScheduler, open_journal
from albsnn.sweep.search import StudySearch
from albsnn.sweep.testing import DeterministicPruner
from albsnn.sweep.tracking import layout as L
from albsnn.sweep.tracking.callback import MlflowTrialCallback, trial_params
from albsnn.sweep.tracking.layout import check_tracking_uri
from albsnn.sweep.tracking.runs import ensure_experiment, start_parent_run
from albsnn.sweep.tracking.spool import OUTBOX_DIR, SENT_FILE, SweepLog
from albsnn.sweep.trainable import ROTATED_FILE, TrialOptions, _pick_checkpoint, _Reporter, flat_metrics

STOP, CONTINUE = OptunaPrunerScheduler.STOP, OptunaPrunerScheduler.CONTINUE


@dataclass
class FakeTrial:
    """What the scheduler and the callback read from a Ray ``Trial``."""

    trial_id: str
    config: dict = field(default_factory=dict)
    last_result: dict = field(default_factory=dict)
    checkpoint: object = None
    run_metadata: object = field(default_factory=lambda: SimpleNamespace(num_failures=0))

    def __str__(self) -> str:
        return f"trial_{self.trial_id}"


def _report(scheduler, trial, *accuracies):
    return [
        scheduler.on_trial_result(None, trial, {"val_accuracy": a, "epoch": e})
        for e, a in enumerate(accuracies, 1)
    ]


# ---------------------------------------------------------------- pruner bridge


def test_bridge_stops_the_trial_the_median_pruner_prunes_and_records_it_pruned(tmp_path):
    # Rule: every epoch goes to the pruner; when it says prune the scheduler says STOP and the
    # pruning study holds the trial as PRUNED (the finished one as COMPLETE with its last value).
    scheduler = OptunaPrunerScheduler(
        optuna.pruners.MedianPruner(n_startup_trials=1), tmp_path / "j", "s.pruning"
    )
    good, bad = FakeTrial("good"), FakeTrial("bad")
    assert _report(scheduler, good, 0.5, 0.6, 0.7) == [CONTINUE] * 3
    scheduler.on_trial_complete(None, good, {"val_accuracy": 0.7})
    assert _report(scheduler, bad, 0.1) == [STOP]
    assert scheduler.is_pruned("bad") and not scheduler.is_pruned("good")
    study = optuna.load_study(study_name="s.pruning", storage=open_journal(tmp_path / "j"))
    states = {t.user_attrs["ray_trial_id"]: (t.state, t.value) for t in study.trials}
    assert states == {"good": (TrialState.COMPLETE, 0.7), "bad": (TrialState.PRUNED, 0.1)}


def test_bridge_after_a_restore_stops_a_trial_pruned_before_it(tmp_path):
    # Rule: Ray does not checkpoint schedulers; the copy in tuner.pkl finds its trials in the journal.
    scheduler = OptunaPrunerScheduler(DeterministicPruner(trials=[0], at_step=2), tmp_path / "j", "s.pruning")
    trial = FakeTrial("t")
    assert _report(scheduler, trial, 0.5, 0.6) == [CONTINUE, STOP]
    restored = pickle.loads(pickle.dumps(scheduler))
    assert not restored.is_pruned("t")
    assert restored.on_trial_result(None, trial, {"val_accuracy": 0.7, "epoch": 3}) == STOP
    assert restored.is_pruned("t")
    assert len(restored.study.trials) == 1


def test_bridge_prunes_on_val_accuracy_and_ignores_results_without_it(tmp_path):
    # Rule of evidence: the pruner's default metric is validation accuracy; test accuracy alone
    # is never read, so a result that carries only test_accuracy prunes nothing.
    scheduler = OptunaPrunerScheduler(DeterministicPruner(every=1, at_step=1), tmp_path / "j", "p")
    assert scheduler.on_trial_result(None, FakeTrial("x"), {"storage_bytes": 10, "epoch": 1}) == CONTINUE
    assert scheduler.on_trial_result(None, FakeTrial("x"), {"test_accuracy": 0.2, "epoch": 1}) == CONTINUE
    assert scheduler.on_trial_result(None, FakeTrial("x"), {"val_accuracy": 0.2, "epoch": 1}) == STOP


def test_bridge_never_prunes_at_the_last_epoch(tmp_path):
    # Rule: a trial that reached the last epoch has spent its compute; pruning it there only loses it.
    scheduler = OptunaPrunerScheduler(
        DeterministicPruner(every=1, at_step=1), tmp_path / "j", "p", max_step=2
    )
    assert scheduler.on_trial_result(None, FakeTrial("x"), {"val_accuracy": 0.2, "epoch": 2}) == CONTINUE


@pytest.mark.parametrize("name", sorted(set(PRUNERS) - {"deterministic"}))
def test_every_named_pruner_builds_an_optuna_pruner(name):
    objectives = {"val_accuracy": "max", "storage_bytes": "min"}  # what a pipeline passes
    assert isinstance(make_pruner({"kind": name}, epochs=6, objectives=objectives), optuna.pruners.BasePruner)


@pytest.mark.parametrize(
    "number, step, pruned",
    [(0, 5, False), (1, 1, False), (1, 2, True), (3, 9, True), (2, 2, False)],
)
def test_deterministic_pruner_prunes_listed_trials_from_at_step(number, step, pruned):
    trial = SimpleNamespace(number=number, last_step=step)
    assert DeterministicPruner(trials=[1, 3], at_step=2).prune(None, trial) is pruned


# ---------------------------------------------------------------- study search


class _StatusTrial:
    """What a scheduler's choice reads from a Ray ``Trial``: its status."""

    PENDING, RUNNING, PAUSED, TERMINATED, ERROR = "PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR"

    def __init__(self):
        self.status = self.PENDING


@pytest.mark.parametrize("seed", range(5))
def test_fifo_queue_chooses_what_rays_fifo_scheduler_chooses(seed):
    # Rule: the same trial as Ray's FIFOScheduler at every step, through starts, pauses, ends and
    # requeues (Ray moves a requeued trial to the end of its list and adds it again), without
    # walking the finished trials.
    rng = random.Random(seed)
    controller = SimpleNamespace(trials=[])
    controller.get_trials = lambda: controller.trials
    ours, rays = FifoQueue(), FIFOScheduler()
    for _ in range(400):
        # a finished trial (TERMINATED, ERROR) changes only through a requeue, as in Ray
        live = [t for t in controller.trials if t.status not in (t.TERMINATED, t.ERROR)]
        move = rng.random()
        if move < 0.25 or not live:
            trial = _StatusTrial()
            controller.trials.append(trial)
            ours.on_trial_add(controller, trial)
        elif move < 0.35 and (failed := [t for t in controller.trials if t.status == t.ERROR]):
            trial = rng.choice(failed)
            trial.status = trial.PENDING
            controller.trials.remove(trial)
            controller.trials.append(trial)
            ours.on_trial_add(controller, trial)
        else:
            rng.choice(live).status = rng.choice(["RUNNING", "PAUSED", "TERMINATED", "ERROR"])
        assert ours.choose_trial_to_run(controller) is rays.choose_trial_to_run(controller)
    assert len(ours._queue) < len(controller.trials)  # finished trials were let go


def test_a_pickled_scheduler_holds_no_trials_and_an_older_pickle_still_chooses():
    scheduler = FifoQueue()
    scheduler.on_trial_add(None, _StatusTrial())
    again = pickle.loads(pickle.dumps(scheduler))
    assert again._queue == {}
    older = FifoQueue.__new__(FifoQueue)
    older.__setstate__({})  # the state of a sweep started before the queue
    trial = _StatusTrial()
    older.on_trial_add(None, trial)
    assert older.choose_trial_to_run(None) is trial


def _search(tmp_path, is_pruned=None):
    space = {"lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)}
    return StudySearch(
        space=space,
        metric=["val_accuracy", "storage_bytes"],
        mode=["max", "min"],
        sampler=optuna.samplers.RandomSampler(seed=0),
        study_name="s",
        storage=open_journal(tmp_path / "j"),
        is_pruned=is_pruned,
    )


def test_dashboard_studies_carry_metric_names_and_say_what_they_are(tmp_path):
    # optuna-dashboard opens the journal: objectives named, not "0"/"1"; the pruning study marked.
    _search(tmp_path).suggest("a")
    scheduler = OptunaPrunerScheduler(optuna.pruners.MedianPruner(), tmp_path / "j", "s.pruning")
    scheduler.on_trial_result(None, FakeTrial("a"), {"val_accuracy": 0.5, "epoch": 1})
    storage = open_journal(tmp_path / "j")  # a fresh reader, as the dashboard is
    search, pruning = (optuna.load_study(study_name=n, storage=storage) for n in ("s", "s.pruning"))
    assert search.metric_names == ["val_accuracy", "storage_bytes"]
    assert pruning.metric_names == ["val_accuracy"]
    assert search.user_attrs["albsnn.role"] == "search" and pruning.user_attrs["albsnn.role"] == "pruning"
    assert "not a search" in pruning.user_attrs["albsnn.description"]


def test_search_tells_pruned_trials_pruned_not_complete_with_partial_values(tmp_path):
    searcher = _search(tmp_path, is_pruned=lambda trial_id: trial_id == "b")
    searcher.suggest("a"), searcher.suggest("b")
    searcher.on_trial_complete("a", {"val_accuracy": 0.9, "storage_bytes": 100})
    searcher.on_trial_complete("b", {"val_accuracy": 0.2, "storage_bytes": 100})
    study = searcher._ot_study
    assert [(t.user_attrs["ray_trial_id"], t.state, t.values) for t in study.trials] == [
        ("a", TrialState.COMPLETE, [0.9, 100.0]),
        ("b", TrialState.PRUNED, None),
    ]
    assert searcher.trial_number("b") == 1


def test_search_restored_from_an_older_snapshot_reuses_orphaned_optuna_trials(tmp_path):
    # Rule: an Optuna trial asked for after the last Tune snapshot (its Ray trial lost with the
    # driver) is handed to the next Ray trial, so the study keeps one trial per Ray trial.
    searcher = _search(tmp_path)
    searcher.suggest("a")
    searcher.save(str(tmp_path / "snapshot.pkl"))
    lost = searcher.suggest("lost")
    restored = _search(tmp_path)
    restored.restore(str(tmp_path / "snapshot.pkl"))
    assert restored.suggest("new") == lost
    assert len(restored._ot_study.trials) == 2
    assert restored._ot_study.trials[1].user_attrs["ray_trial_id"] == "new"


# ---------------------------------------------------------------- MLflow callback


@pytest.fixture
def parent(tracking_uri, request):
    experiment_id = ensure_experiment(tracking_uri, f"unit-{request.node.name}")
    return experiment_id, start_parent_run(tracking_uri, experiment_id, "sweep", {})


@pytest.fixture
def sweep_log(tracking_uri, parent, tmp_path):
    logs = []

    def make(folder=tmp_path / "sweep"):
        logs.append(SweepLog(folder, tracking_uri, *parent, quiet=True))
        return logs[-1]

    yield make
    for log in logs:
        if not log.closed:
            log.close(timeout=30)


def _history(client, run_id, key="val_accuracy"):
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_callback_keeps_one_run_per_trial_and_logs_each_epoch_once(tracking_uri, parent, sweep_log):
    # Rule: a retried or resumed trial (a new callback and spool object, even) finds its run by
    # albsnn.trial_id; epochs a resumed trial reports again are not logged twice; the run carries
    # the whole resolved TrainConfig as params and is named from its swept values.
    experiment_id, parent_id = parent
    trial = FakeTrial("t1", config={"lr": 0.01, "seed": 0, "epochs": 3, "time_steps": 2})
    log = sweep_log()
    callback = MlflowTrialCallback(log, param_names=["lr", "time_steps", "seed"])
    callback.on_trial_start(0, [], trial)
    for epoch in (1, 2):
        callback.on_trial_result(0, [], trial, {"epoch": epoch, "val_accuracy": 0.5, "firing_rate.lif1": 0.1})
    log.close(timeout=60)
    again = pickle.loads(pickle.dumps(MlflowTrialCallback(sweep_log(), param_names=["lr"])))
    again.on_trial_start(0, [], trial)
    for epoch in (2, 3):
        again.on_trial_result(0, [], trial, {"epoch": epoch, "val_accuracy": 0.6, "best_val_accuracy": 0.6})
    trial.last_result = {"epoch": 3, "bwo_epoch": 2}
    again.on_trial_complete(0, [], trial)
    assert again.log.close(timeout=60) == 0 and not again.log.problems
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([experiment_id], "tags.`albsnn.role` = 'trial'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == "lr=0.01 T=2 s0"
    assert _history(client, run.info.run_id) == [1, 2, 3]
    assert run.data.params == trial_params(trial.config)
    assert {"lr": "0.01", "seed": "0", "time_steps": "2", "epochs": "3"}.items() <= run.data.params.items()
    assert {"dataset", "width", "batch_size", "threshold"} <= set(run.data.params)  # fixed values too
    assert run.data.tags["mlflow.parentRunId"] == parent_id
    assert run.data.tags["albsnn.trial_state"] == "FINISHED" and run.info.status == "FINISHED"
    assert run.data.metrics["best_val_accuracy"] == 0.6 and run.data.metrics["bwo_epoch"] == 2
    assert "firing_rate.lif1" in run.data.metrics


def test_callback_logs_the_estimator_check_at_the_final_step(tracking_uri, parent, sweep_log):
    # Rule: check_measured.* / check_estimate.* come with the final epoch only and are logged like
    # every per-epoch metric, at that epoch's step; test_accuracy is logged too (reported, not selected).
    log = sweep_log()
    callback = MlflowTrialCallback(log, param_names=[])
    trial = FakeTrial("c")
    callback.on_trial_start(0, [], trial)
    callback.on_trial_result(0, [], trial, {"epoch": 1, "val_accuracy": 0.5, "test_accuracy": 0.4})
    final = {
        "epoch": 2,
        "val_accuracy": 0.6,
        "test_accuracy": 0.5,
        **flat_metrics({"estimator_check": CHECK}),
    }
    callback.on_trial_result(0, [], trial, final)
    client = MlflowClient(tracking_uri)
    run_id = log.run_id("c")
    for key in ("check_measured.conv2", "check_estimate.weight-error.conv2", "check_estimate.taylor.conv2"):
        assert _history(client, run_id, key) == [2], key
    assert _history(client, run_id, "test_accuracy") == [1, 2]


def test_a_trials_artifacts_do_not_split_its_last_epoch_from_its_end(
    tracking_uri, parent, sweep_log, tmp_path
):
    # Rule: what gathers during the sender's linger goes as one group, and a trial's artifacts (files,
    # sent beside its metrics) do not cut it: a one-epoch trial costs create_run, one log_batch for
    # its params, one for its epoch and end, set_terminated, and one log_artifact per file.
    log = sweep_log()
    log.linger_s = 60  # the records below are one group; close() ends the linger
    calls = []
    client = log.writer.client
    for name in ("create_run", "log_batch", "set_terminated", "log_artifact"):
        real = getattr(client, name)
        setattr(
            client, name, lambda *a, _real=real, _name=name, **k: (calls.append(_name), _real(*a, **k))[1]
        )
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / L.TRIAL_ARTIFACTS[0]).write_text("{}")
    checkpoint = SimpleNamespace(as_directory=lambda: contextlib.nullcontext(str(folder)))
    trial = FakeTrial(
        "a", config={"lr": 0.1}, last_result={"epoch": 1, "val_accuracy": 0.5}, checkpoint=checkpoint
    )
    callback = MlflowTrialCallback(log, param_names=["lr"])
    callback.on_trial_start(0, [], trial)
    callback.on_trial_result(0, [], trial, {"epoch": 1, "val_accuracy": 0.5})
    callback.on_trial_complete(0, [], trial)
    assert log.close(timeout=60) == 0 and not log.problems
    assert sorted(calls) == ["create_run", "log_artifact", "log_batch", "log_batch", "set_terminated"]
    run = MlflowClient(tracking_uri).get_run(log.run_id("a"))
    assert run.info.status == "FINISHED" and run.data.metrics["val_accuracy"] == 0.5
    assert run.data.params["lr"] == "0.1"
    names = [f.path for f in MlflowClient(tracking_uri).list_artifacts(run.info.run_id)]
    assert names == [L.TRIAL_ARTIFACTS[0]]


def test_a_checkpoint_without_artifact_files_records_nothing(parent, sweep_log, tmp_path):
    log = sweep_log()
    log.artifacts("t", [])
    assert log.close(timeout=60) == 0
    assert not (log.folder / OUTBOX_DIR).exists()


@pytest.mark.parametrize("state, status", [("PRUNED", "KILLED"), (None, "FINISHED")])
def test_callback_ends_pruned_trials_killed(tracking_uri, parent, sweep_log, state, status):
    log = sweep_log()
    callback = MlflowTrialCallback(log, param_names=[], trial_state=lambda trial_id: state)
    trial = FakeTrial("p", last_result={"epoch": 2})
    callback.on_trial_start(0, [], trial)
    callback.on_trial_complete(0, [], trial)
    run = MlflowClient(tracking_uri).get_run(log.run_id("p"))
    assert run.info.status == status
    assert run.data.tags["albsnn.trial_state"] == (state or "FINISHED")


def test_sweep_log_deletes_runs_of_trials_nobody_knows(tracking_uri, parent, sweep_log):
    # A run whose Ray trial was lost with a killed driver, and which never ended, is not a result:
    # the resumed driver (a new log on the same folder) deletes it.
    experiment_id, parent_id = parent
    killed = sweep_log()
    callback = MlflowTrialCallback(killed, param_names=[])
    kept, lost = FakeTrial("kept"), FakeTrial("lost")
    callback.on_trial_start(0, [], kept)
    callback.on_trial_start(0, [], lost)
    killed.close(timeout=60)
    resumed = sweep_log()
    assert resumed.inherited
    resumed.forget_orphans(["kept"])
    resumed.flush(60)
    runs = MlflowClient(tracking_uri).search_runs([experiment_id], "tags.`albsnn.role` = 'trial'")
    assert [r.data.tags["albsnn.trial_id"] for r in runs] == ["kept"]


def test_a_driver_that_made_every_run_itself_does_not_scan_for_orphans(tracking_uri, parent, sweep_log):
    # A new sweep's log inherited no records: its runs are all of trials its Tune started, so the
    # scan of every child run (seconds at thousands of trials) is skipped and nothing is recorded.
    log = sweep_log()
    assert not log.inherited
    MlflowTrialCallback(log, param_names=[]).on_trial_start(0, [], FakeTrial("t"))
    log.forget_orphans([])
    log.flush(60)
    assert [r["op"] for r in log._records] == ["start"]
    runs = MlflowClient(tracking_uri).search_runs([parent[0]], "tags.`albsnn.role` = 'trial'")
    assert [r.data.tags["albsnn.trial_id"] for r in runs] == ["t"]


def test_callback_never_raises_into_tune_and_reports_a_failure_once(parent, sweep_log, capsys):
    # Rule: whatever goes wrong in a hook (here: a trial object without a config) is said once on
    # the console and kept for the summary; Tune never sees an exception.
    log = sweep_log()
    log.quiet = False
    callback = MlflowTrialCallback(log, param_names=["lr"])
    broken = SimpleNamespace(trial_id="x")
    for _ in range(3):
        callback.on_trial_start(0, [], broken)
    err = capsys.readouterr().err
    assert err.count("MLflow: on_trial_start failed") == 1, err
    assert list(log.problems.values()) == [3]


def test_records_wait_in_the_spool_while_the_server_is_down_and_are_sent_once(tracking_uri, parent, tmp_path):
    # Rule: recording never waits for MLflow; what could not be sent is sent by the next log that
    # opens the same spool (--resume, --abandon), and nothing is sent twice.
    experiment_id, parent_id = parent
    down = SweepLog(tmp_path / "s", "http://127.0.0.1:9", experiment_id, parent_id, quiet=True)
    down.start_trial("t", "t", {"lr": "0.01"})
    for step in (1, 2, 2, 3):
        down.epoch("t", step, {"val_accuracy": step / 10})
    assert down.close(timeout=1) == 4  # start + three epochs (step 2 recorded once)
    assert any("does not answer" in note for note in down.notes())  # still down: the summary says so
    up = SweepLog(tmp_path / "s", tracking_uri, experiment_id, parent_id, quiet=True)
    assert up.last_step == {"t": 3}
    up.epoch("t", 3, {"val_accuracy": 0.3})  # a resumed trial reporting its last epoch again
    assert up.close(timeout=60) == 0
    (tmp_path / "s" / SENT_FILE).unlink()  # as if that note were lost: every record is applied again
    replay = SweepLog(tmp_path / "s", tracking_uri, experiment_id, parent_id, quiet=True)
    assert replay.close(timeout=60) == 0
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([experiment_id], "tags.`albsnn.role` = 'trial'")
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.1), (2, 0.2), (3, 0.3)]


def test_summary_says_the_records_were_sent_after_an_outage_and_nothing_of_it_as_a_problem(sweep_log, capsys):
    # Rule: an outage is said when it starts and when it ends; the summary says how it ended, and
    # does not repeat "does not answer" for a server that answered again.
    log = sweep_log()
    log.quiet = False
    apply, failures = log.writer.apply_group, iter([ConnectionError("connection refused")] * 3)

    def down_three_times(records, fresh):
        error = next(failures, None)
        if error is not None:
            raise error
        apply(records, fresh)

    log.writer.apply_group = down_three_times
    log.start_trial("t", "t", {"lr": "0.01"})
    log.epoch("t", 1, {"val_accuracy": 0.5})
    assert log.close(timeout=60) == 0
    err = capsys.readouterr().err
    assert err.count("does not answer") == 1 and err.count("answers again after") == 1, err
    assert not log.problems
    (note,) = log.notes()
    assert re.fullmatch(
        r"\S+ did not answer 1 time\(s\), \d+ s in all; every record was sent when it answered again", note
    )


def test_unreachable_tracking_server_is_named():
    with pytest.raises(ConfigError, match=r"http://127\.0\.0\.1:9 "):
        check_tracking_uri("http://127.0.0.1:9", timeout=2)


def test_progress_line_leads_with_validation_accuracy_and_labels_test():
    last = {"epoch": 8, "val_accuracy": 0.9123, "test_accuracy": 0.905, "storage_bytes": 2048}
    assert _detail(last) == "epoch 8, val_accuracy 0.9123, test 0.9050, 2.0 KiB"


# ---------------------------------------------------------------- CLI: bad input
# -> one line, exit 2, nothing recorded


@pytest.fixture
def not_an_mlflow_server():
    """An HTTP server on 127.0.0.1 that answers every request with 404 (not MLflow)."""
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    server.RequestHandlerClass.log_message = lambda *a: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/nothing-here"
    server.shutdown()


def test_bad_input_fails_with_one_line_exit_2_and_nothing_in_mlflow(
    write_pipeline, tmp_path, tracking_uri, capsys, not_an_mlflow_server
):
    good = write_pipeline(tmp_path, "cli-good", mlflow={"experiment": "never-created"})
    unknown_key = write_pipeline(tmp_path, "cli-key", colour="blue")
    bad_param = write_pipeline(tmp_path, "cli-param", space="model:\n  depth: {choice: [1, 2]}\n")
    orphan_condition = write_pipeline(
        tmp_path, "cli-when", space="bwo:\n  bwo_patience: {int: [1, 5], when: {bwo: [project]}}\n"
    )
    deleted = write_pipeline(tmp_path, "cli-deleted", mlflow={"experiment": "gone"})
    client = MlflowClient(tracking_uri)
    client.delete_experiment(client.create_experiment("gone"))
    not_mlflow = not_an_mlflow_server
    ablation = write_pipeline(
        tmp_path, "cli-abl", space="model:\n  head: {grid: [gap, fc]}\n", mode="ablation", sampler=None
    )
    malformed = tmp_path / "malformed.yaml"
    malformed.write_text("name: [unclosed\n")
    cases = [
        ([str(malformed)], "malformed YAML"),
        ([str(unknown_key)], "unknown pipeline key(s) ['colour']"),
        ([str(bad_param)], "does not take 'depth'"),
        ([str(orphan_condition)], "bwo.bwo_patience: when names 'bwo', which is not a parameter"),
        ([str(good), "--tracking-uri", "http://127.0.0.1:9"], "http://127.0.0.1:9"),
        ([str(good), "--address", "ray://127.0.0.1:9"], "ray://127.0.0.1:9"),
        ([str(good), "--resume"], "--resume: no sweep of pipeline 'cli-good'"),
        ([str(good), "--tracking-uri", "mlfow://typo"], "unsupported tracking URI 'mlfow://typo'"),
        ([str(good), "--tracking-uri", not_mlflow], f"{not_mlflow} is not an MLflow tracking server"),
        ([str(deleted)], "MLflow experiment 'gone' at"),
        ([], "give a pipeline YAML file (or --abandon SWEEP_ID)"),
        ([str(ablation), "--num-samples", "2"], "--num-samples=2 in ablation mode"),
    ]
    for argv, words in cases:
        extra = [] if "--tracking-uri" in argv else ["--tracking-uri", tracking_uri]
        assert main(["sweep", *argv, *extra]) == 2, argv
        err = capsys.readouterr().err
        assert words in err, (argv, err)
        assert err.count("error:") == 1 and "Traceback" not in err
    assert MlflowClient(tracking_uri).get_experiment_by_name("never-created") is None
    assert not (tmp_path / "sweeps").exists()


def test_ui_prints_the_local_url_command_and_a_link_to_the_newest_sweeps_training_runs(tracking_uri, capsys):
    newest = MlflowClient(tracking_uri).create_experiment("ui-newest")
    assert main(["ui", "--tracking-uri", tracking_uri, "--port", "5077", "--print-only"]) == 0
    url, command, link = capsys.readouterr().out.splitlines()
    assert url == "http://127.0.0.1:5077"
    assert "mlflow ui --backend-store-uri " + tracking_uri in command and "--host 127.0.0.1" in command
    assert link.startswith(f"newest sweep: http://127.0.0.1:5077/#/experiments/{newest}/runs?")
    assert "workflowType=machine_learning" in link  # MLflow 3.17 would open the GenAI pages


def test_ui_without_a_database_says_so(tmp_path, capsys):
    assert main(["ui", "--tracking-uri", f"sqlite:///{tmp_path}/none.db", "--print-only"]) == 2
    assert "no MLflow database" in capsys.readouterr().err


# ---------------------------------------------------------------- trainable helpers


def _checkpoint_folder(folder, epoch: int):
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_text(f"epoch {epoch}")
    (folder / "state.json").write_text(json.dumps({"epoch": epoch}))
    return folder


def test_restarted_trial_takes_the_newest_readable_checkpoint_by_epoch(tmp_path):
    # Rule: after a killed driver Ray may restore an older checkpoint than the trial last wrote to
    # storage, or one that rotation has deleted since; the newest readable one by epoch wins.
    from ray.tune import Checkpoint

    ray_dir = _checkpoint_folder(tmp_path / "ray", 2)
    stored = _checkpoint_folder(tmp_path / "trial" / "checkpoint_000003", 4)
    deleted = Checkpoint(str(tmp_path / "trial" / "checkpoint_000009"))
    (tmp_path / "tmp").mkdir()
    picked, source = _pick_checkpoint(
        [Checkpoint(str(ray_dir)), deleted, Checkpoint(str(stored))], tmp_path / "tmp"
    )
    assert picked.read_text() == "epoch 4" and source == str(stored)
    assert _pick_checkpoint([None, deleted], tmp_path / "tmp") == (None, None)


def test_trial_keeps_only_its_newest_checkpoints_in_storage(tmp_path):
    # Rule: one copy of each checkpoint (Ray's), rotated by the trial: keep_checkpoints newest stay,
    # including the one it resumed from until newer ones replace it. A rotated folder keeps only a
    # marker, because Ray's last snapshot may name it and Ray restores only existing folders.
    import pyarrow.fs as pafs

    trial = tmp_path / "trial_x"
    for i in range(4):
        _checkpoint_folder(trial / f"checkpoint_00000{i}", i)
    (trial / "params.json").write_text("{}")
    storage = SimpleNamespace(storage_filesystem=pafs.LocalFileSystem(), trial_fs_path=str(trial))
    reporter = _Reporter(
        TrialOptions(keep_checkpoints=2), storage, resumed_from=str(trial / "checkpoint_000001")
    )

    def full() -> list[str]:
        return sorted(p.parent.name for p in trial.glob("*/checkpoint.pt"))

    reporter.kept.append(str(trial / "checkpoint_000002"))
    reporter._rotate()
    assert full() == ["checkpoint_000001", "checkpoint_000002"] and (trial / "params.json").exists()
    assert sorted(p.name for p in (trial / "checkpoint_000000").iterdir()) == [ROTATED_FILE]
    reporter.kept.append(str(_checkpoint_folder(trial / "checkpoint_000005", 5)))
    reporter._rotate()
    assert full() == ["checkpoint_000002", "checkpoint_000005"]
    assert len(list(trial.glob(f"*/{ROTATED_FILE}"))) == 3
    # a restarted trial skips the emptied folders Ray's snapshot may still name
    (tmp_path / "tmp").mkdir()
    from ray.tune import Checkpoint

    picked, source = _pick_checkpoint(
        [Checkpoint(str(trial / "checkpoint_000003")), Checkpoint(str(trial / "checkpoint_000002"))],
        tmp_path / "tmp",
    )
    assert source == str(trial / "checkpoint_000002") and picked.read_text() == "epoch 2"


def test_trial_resumed_from_a_checkpoint_ray_never_saw_reported_reports_that_epoch_again(monkeypatch):
    # Rule: a checkpoint reaches storage before the driver logs its epoch; if the driver dies in
    # between, the resumed trial reports that epoch again, or MLflow would miss it for good.
    import ray.tune

    from albsnn.sweep import trainable
    from albsnn.sweep.tracking.callback import DATASET_RESULT

    reports = []
    monkeypatch.setattr(ray.tune, "report", lambda metrics, checkpoint=None: reports.append(metrics))
    monkeypatch.setattr(trainable, "dataset_record", lambda trainer: {"name": "digits"})
    trainer = SimpleNamespace(history=[{"epoch": 3}, {"epoch": 4}], epoch=4, config=SimpleNamespace(epochs=6))
    _Reporter(TrialOptions(), None, resumed_from="stored", replay=True).on_fit_start(trainer)
    _Reporter(TrialOptions(), None, resumed_from="rays", replay=False).on_fit_start(trainer)
    assert [r["epoch"] for r in reports] == [4]
    assert json.loads(reports[0][DATASET_RESULT]) == {"name": "digits"}  # the run's dataset still logged


def test_flat_metrics_spells_out_layers_and_drops_missing_values():
    metrics = {
        "epoch": 2,
        "val_accuracy": 0.5,
        "firing_rates": {"lif1": 0.1},
        "estimates": {"conv2": 0.2, "conv3": float("nan")},
        "binarized_layers": ("conv2",),
        "bwo_epoch": None,
    }
    assert flat_metrics(metrics) == {
        "epoch": 2,
        "val_accuracy": 0.5,
        "firing_rate.lif1": 0.1,
        "estimate.conv2": 0.2,
        "binarized_layers": ["conv2"],
    }


# The final epoch's estimator_check as the trainer reports it (measured drop in pp, estimates).
CHECK = {
    "measured": {"conv2": 0.8, "conv3": 3.5},
    "estimates": {
        "weight-error": {"conv2": 12.0, "conv3": 30.0},
        "taylor": {"conv2": 0.4, "conv3": float("nan")},
    },
}


def test_flat_metrics_flattens_the_estimator_check_by_layer_and_estimator():
    # Rule: check_measured.<layer> and check_estimate.<estimator>.<layer>; NaN left out as elsewhere.
    assert flat_metrics({"epoch": 8, "estimator_check": CHECK}) == {
        "epoch": 8,
        "check_measured.conv2": 0.8,
        "check_measured.conv3": 3.5,
        "check_estimate.weight-error.conv2": 12.0,
        "check_estimate.weight-error.conv3": 30.0,
        "check_estimate.taylor.conv2": 0.4,
    }


def test_progress_tally_gives_the_share_done_and_an_eta_for_the_whole_sweep(capsys):
    from albsnn.sweep.progress import ProgressPrinter

    def trial(status, epoch=None):
        return SimpleNamespace(
            trial_id=status,
            status=status,
            config={"epochs": 4},
            last_result={"epoch": epoch} if epoch else {},
        )

    printer = ProgressPrinter(total=4, param_names=[], every_s=0)
    printer.setup()
    trials = [trial("TERMINATED"), trial("RUNNING", epoch=2), trial("PENDING"), trial("PENDING")]
    printer.on_step_begin(0, [trial("PENDING")] * 4)  # a fresh sweep: nothing done yet
    assert printer.fraction_done(trials) == pytest.approx(1.5 / 4)
    printer.on_trial_complete(0, trials, trials[0])  # the tally counts ended trials by their events
    capsys.readouterr()
    printer._start -= 30  # 30 s in, 1.5 of 4 trials' work done: 50 s to go at this pace
    printer.on_step_end(0, trials)
    line = capsys.readouterr().out.strip()
    assert line.endswith("running 1, pending 2, finished 1, pruned 0, failed 0; 38% done, ETA 0:00:50")
