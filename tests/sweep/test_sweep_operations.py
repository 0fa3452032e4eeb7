"""Operating sweeps without a cluster: choosing the sweep to resume, one driver per sweep, dry runs,
the progress tally after a resume, and no per-trial scans of all trials."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from ray.tune.search import ConcurrencyLimiter

from albsnn.cli import main
from albsnn.errors import ConfigError
from albsnn.sweep.budget import TrialBudget
from albsnn.sweep.lock import lock_holder, sweep_lock
from albsnn.sweep.pipeline import load_pipeline
from albsnn.sweep.progress import ProgressPrinter
from albsnn.sweep.record import SweepRecord, find_sweep
from albsnn.sweep.scheduler import OptunaPrunerScheduler, open_journal
from albsnn.sweep.search import StudySearch
from albsnn.sweep.testing import DeterministicPruner


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def _fake_sweep(pipeline_path: Path, sweep_id: str, created: str, **info) -> Path:
    """A sweep folder as ``albsnn sweep`` leaves it, without having run anything."""
    pipe = load_pipeline(pipeline_path)
    folder = pipe.storage / pipe.name / sweep_id
    folder.mkdir(parents=True)
    shutil.copy2(pipeline_path, folder / "pipeline.yaml")
    record = {
        "sweep_id": sweep_id,
        "pipeline": str(pipeline_path),
        "overrides": {"search_space": str(pipe.search_space.path), "storage": str(pipe.storage)},
        "num_samples": pipe.num_samples,
        "experiment": pipe.experiment,
        "experiment_id": "0",
        "parent_run_id": "no-such-run",
        "tracking_uri": f"sqlite:///{pipeline_path.parent / 'mlflow.db'}",
        "created": created,
        **info,
    }
    (folder / "sweep.json").write_text(json.dumps(record))
    return folder


# ---------------------------------------------------------------- which sweep --resume continues


def test_resume_picks_the_newest_sweep_by_creation_not_folder_time_or_the_named_one(write_pipeline, tmp_path):
    path = write_pipeline(tmp_path, "pick")
    old = _fake_sweep(path, "pick-20250101-000000", "2025-01-01T00:00:00")
    new = _fake_sweep(path, "pick-20250102-000000", "2025-01-02T00:00:00")
    os.utime(old, (2e9, 2e9))  # the older sweep was written to last
    pipe = load_pipeline(path)
    assert find_sweep(pipe) == new
    assert find_sweep(pipe, "pick-20250101-000000") == old
    with pytest.raises(ConfigError, match="no sweep 'pick-1999' of pipeline 'pick'.*pick-20250102-000000"):
        find_sweep(pipe, "pick-1999")


# ---------------------------------------------------------------- one driver per sweep


def test_a_second_driver_of_a_sweep_is_refused_naming_the_holder(tmp_path):
    holder = f"already being run by pid {os.getpid()} on .*driver.lock"
    with sweep_lock(tmp_path):
        assert lock_holder(tmp_path).startswith(f"pid {os.getpid()} on ")
        with pytest.raises(ConfigError, match=holder), sweep_lock(tmp_path):
            pass
    assert lock_holder(tmp_path) is None
    with sweep_lock(tmp_path):  # free again once the holder is done (or dead: the kernel drops it)
        pass


def test_resume_of_a_sweep_another_driver_holds_exits_2_naming_its_pid(write_pipeline, tmp_path, capsys):
    path = write_pipeline(tmp_path, "locked")
    folder = _fake_sweep(path, "locked-20250101-000000", "2025-01-01T00:00:00")
    with sweep_lock(folder):
        assert main(["sweep", str(path), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"sweep locked-20250101-000000 is already being run by pid {os.getpid()}" in err
    assert err.count("error:") == 1 and "Traceback" not in err


# ---------------------------------------------------------------- --dry-run, --num-samples on resume


def test_dry_run_prints_trials_resources_and_config_and_starts_nothing(
    write_pipeline, tmp_path, tracking_uri, capsys
):
    path = write_pipeline(
        tmp_path, "dry", resources={"cpus": 1, "gpus": 0.25}, mlflow={"experiment": "dry-never"}
    )
    assert main(["sweep", str(path), "--dry-run", "--num-samples", "5", "--tracking-uri", tracking_uri]) == 0
    out = capsys.readouterr().out
    assert "trials:      search: 5 trials, sampler random, pruner none" in out
    assert "1 CPU, 0.25 GPU per trial; up to 2 at once = 2 CPU, 0.5 GPU" in out
    assert "at most 15 trial-epochs" in out and "lr: loguniform [0.001, 0.01]" in out
    assert "limit_train: 300" in out and "seed: 0" in out
    assert not (tmp_path / "sweeps").exists()
    assert MlflowClient(tracking_uri).get_experiment_by_name("dry-never") is None


def test_num_samples_on_resume_cannot_shrink_a_sweep_or_extend_an_ablation(write_pipeline, tmp_path, capsys):
    search = write_pipeline(tmp_path, "grow")
    _fake_sweep(search, "grow-20250101-000000", "2025-01-01T00:00:00", num_samples=4)
    ablation = write_pipeline(
        tmp_path,
        "grid",
        space="model:\n  head: {grid: [gap, fc]}\n",
        mode="ablation",
        sampler=None,
        num_samples=None,
    )
    _fake_sweep(ablation, "grid-20250101-000000", "2025-01-01T00:00:00")
    from albsnn.sweep.runner import _extend

    record = SweepRecord.load(tmp_path / "sweeps" / "grow" / "grow-20250101-000000")
    with pytest.raises(ConfigError, match="already has a budget of 4 trials"):
        _extend(record, record.started_pipeline(), 3, "unused")
    record = SweepRecord.load(tmp_path / "sweeps" / "grid" / "grid-20250101-000000")
    with pytest.raises(ConfigError, match="is an ablation .* cannot be extended"):
        _extend(record, record.started_pipeline(), 3, "unused")


# ---------------------------------------------------------------- progress after a resume


@dataclass
class _Trial:
    trial_id: str
    status: str
    config: dict
    last_result: dict


def test_progress_after_a_resume_counts_pruned_trials_as_pruned(capsys):
    pruned = {"b"}
    printer = ProgressPrinter(4, ["lr"], trial_state=lambda t: "PRUNED" if t in pruned else None, every_s=0)
    printer.setup(total_num_samples=6)  # the budget Tune passes, raised by --num-samples
    trials = [
        _Trial("a", "TERMINATED", {}, {}),
        _Trial("b", "TERMINATED", {}, {}),
        _Trial("c", "ERROR", {}, {}),
        _Trial("d", "RUNNING", {}, {}),
    ]
    printer.on_step_begin(0, trials)
    printer.on_step_end(0, trials)
    assert "running 1, pending 0, finished 1, pruned 1, failed 1" in capsys.readouterr().out
    printer.on_trial_complete(0, trials, _Trial("d", "TERMINATED", {}, {"epoch": 3}))
    assert "[4/6]" in capsys.readouterr().out


# ---------------------------------------------------------------- no scan of all trials per event


class _CountingStudy:
    def __init__(self):
        self.scans = 0

    def wrap(self, study):
        real = study.get_trials

        def get_trials(*args, **kwargs):
            self.scans += 1
            return real(*args, **kwargs)

        study.get_trials = get_trials
        return study

    @staticmethod
    def unwrap(study):
        del study.get_trials


def test_scheduler_reads_the_journal_once_not_once_per_trial(tmp_path):
    scheduler = OptunaPrunerScheduler(DeterministicPruner(trials=[0], at_step=1), tmp_path / "j", "p")
    counter = _CountingStudy()
    counter.wrap(scheduler.study)
    for i in range(30):
        scheduler.on_trial_result(None, _Trial(f"t{i}", "RUNNING", {}, {}), {"val_accuracy": 0.5, "epoch": 1})
    assert counter.scans <= 1
    # After a restore (Ray pickles schedulers into tuner.pkl) the journal still says who was pruned.
    restored = pickle.loads(pickle.dumps(scheduler))
    assert restored.trial_state("t0") == "PRUNED" and restored.trial_state("t1") is None


def _study_search(folder: Path) -> StudySearch:
    """A search over one ``lr`` on the journal ``folder/j`` (a restored one reads the same study)."""
    return StudySearch(
        space={"lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)},
        metric="val_accuracy",
        mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0),
        study_name="s",
        storage=open_journal(folder / "j"),
    )


def test_search_looks_for_orphaned_trials_only_once_after_a_restore(tmp_path):
    fresh = _study_search(tmp_path)
    fresh.suggest("first")  # creates the study
    counter = _CountingStudy()
    counter.wrap(fresh._ot_study)
    for i in range(20):
        fresh.suggest(f"t{i}")
    assert counter.scans == 0  # a fresh sweep has no orphans to look for
    counter.unwrap(fresh._ot_study)
    fresh.save(str(tmp_path / "snap.pkl"))
    restored = _study_search(tmp_path)
    restored.restore(str(tmp_path / "snap.pkl"))
    counter = _CountingStudy()
    counter.wrap(restored._ot_study)
    for i in range(20):
        restored.suggest(f"r{i}")
    assert counter.scans == 1


def test_trials_finished_after_rays_snapshot_are_kept_and_use_the_budget(tmp_path):
    # A killed driver can finish trials after Ray's last snapshot: Ray forgets them, but their
    # results are real, so the restored search names them and the budget counts them as created.
    search = _study_search(tmp_path)
    for trial_id in ("a", "b"):
        search.suggest(trial_id)
        search.on_trial_complete(trial_id, {"val_accuracy": 0.5})
    search.save(str(tmp_path / "snap.pkl"))  # Ray's snapshot: it knows a and b
    search.suggest("late")
    search.on_trial_complete("late", {"val_accuracy": 0.6})  # finished after the snapshot
    search.suggest("running")  # asked for, never finished: an orphan, handed to Ray's next trial

    restored = _study_search(tmp_path)
    restored.restore(str(tmp_path / "snap.pkl"))
    assert restored.lost_trials() == ["late"]
    sweep_file = tmp_path / "sweep.json"
    sweep_file.write_text(json.dumps({"num_samples": 5}))
    budget = TrialBudget(ConcurrencyLimiter(restored, max_concurrent=2), sweep_file)
    budget.set_state({"counter": 2, "total_samples": 5, "finished": False, "experiment": None})
    assert budget._counter == 3  # a, b and late: two trials left to create
    restored.suggest("next")
    assert restored.trial_number("next") == 3  # the orphan, not a new Optuna trial
