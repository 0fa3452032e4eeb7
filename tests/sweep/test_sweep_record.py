"""The sweep record (``sweep.json``): one typed record, read back as written, never torn by a kill."""

from __future__ import annotations

import itertools
import json
import os
import re
import select
import signal
import time

import pytest

from albsnn.errors import ConfigError
from albsnn.sweep.record import SWEEP_FILE, ConfirmPlan, ConfirmRun, SweepRecord, find_sweep, recorded_budget
from albsnn.sweep.tracking import layout as L

# sweep.json exactly as drivers before the typed record wrote it (runner.py of 2026-12), confirm plan
# included: a sweep started then must still resume, so the keys and their meaning never change.
OLD_RECORD = {
    "sweep_id": "demo-20261201-120000",
    "pipeline": "/work/pipelines/demo.yaml",
    "overrides": {
        "search_space": "/sweeps/demo/demo-20261201-120000/search_space.yaml",
        "storage": "/sweeps",
    },
    "num_samples": 12,
    "experiment": "albsnn-demo",
    "experiment_id": "3",
    "parent_run_id": "0123abcd",
    "tracking_uri": "sqlite:////work/runs/mlflow.db",
    "optuna_storage": "/sweeps/demo/demo-20261201-120000/optuna.journal",
    "optuna_study": "demo-20261201-120000",
    "pruning_study": "demo-20261201-120000.pruning",
    "created": "2026-12-01T12:00:00",
    "confirm": {
        "seeds": [1, 2],
        "points": ["a1b2c3"],
        "runs": [
            {"trial": "a1b2c3", "point": 1, "seed": 1, "config": {"lr": 0.01, "seed": 1}},
            {"trial": "a1b2c3", "point": 1, "seed": 2, "config": {"lr": 0.01, "seed": 2}},
        ],
    },
}


def _record(folder, **changes) -> SweepRecord:
    return SweepRecord.from_dict(folder, {**OLD_RECORD, **changes})


def test_an_old_sweep_json_reads_into_the_record_and_is_written_back_unchanged(tmp_path):
    (tmp_path / SWEEP_FILE).write_text(json.dumps(OLD_RECORD, indent=1))
    record = SweepRecord.load(tmp_path)
    assert record.folder == tmp_path and record.num_samples == 12
    assert record.confirm.runs[1] == ConfirmRun(
        trial="a1b2c3", point=1, seed=2, config={"lr": 0.01, "seed": 2}
    )
    assert str(record.journal) == OLD_RECORD["optuna_storage"]
    record.save()
    assert json.loads((tmp_path / SWEEP_FILE).read_text()) == OLD_RECORD  # same keys, same values
    assert SweepRecord.load(tmp_path) == record


def test_a_record_without_a_confirmation_plan_writes_no_confirm_key(tmp_path):
    # as before: the key appears only once the confirmation's candidates are chosen
    record = _record(tmp_path, confirm=None)
    record.save()
    assert "confirm" not in json.loads(record.path.read_text())
    record.confirm = ConfirmPlan(seeds=[1], points=["t"], runs=[ConfirmRun("t", 1, 1, {"seed": 1})])
    record.save()
    assert SweepRecord.load(tmp_path).confirm == record.confirm


def test_optional_keys_may_be_missing_but_required_ones_are_named(tmp_path):
    minimal = {
        k: v for k, v in OLD_RECORD.items() if k not in ("optuna_storage", "optuna_study", "pruning_study")
    }
    record = SweepRecord.from_dict(tmp_path, minimal)
    assert record.journal is None and record.optuna_study is None
    with pytest.raises(ConfigError, match=r"is not a sweep record: it has no \['parent_run_id'\]"):
        SweepRecord.from_dict(tmp_path, {k: v for k, v in OLD_RECORD.items() if k != "parent_run_id"})


@pytest.mark.parametrize(
    ("content", "words"),
    [(None, "is unreadable"), ("{not json", "is unreadable"), ("[1, 2]", "is not a sweep record")],
)
def test_an_unreadable_record_is_one_line_naming_the_file(tmp_path, content, words):
    if content is not None:
        (tmp_path / SWEEP_FILE).write_text(content)
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / SWEEP_FILE)) + f" {words}"):
        SweepRecord.load(tmp_path)


def test_a_failure_mid_write_leaves_the_previous_record_readable(tmp_path, monkeypatch):
    # The bytes of the new record are on disk in a temporary file when the "kill" comes (before the
    # rename): the record in place is the old one, whole, and no temporary file is left behind.
    import albsnn.atomic

    _record(tmp_path).save()

    def killed(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(albsnn.atomic.os, "fsync", killed)
    raised = _record(tmp_path, num_samples=40)
    with pytest.raises(KeyboardInterrupt):
        raised.save()
    monkeypatch.undo()
    assert SweepRecord.load(tmp_path).num_samples == 12
    assert os.listdir(tmp_path) == [SWEEP_FILE]


def _rewrite_until_killed(record: SweepRecord, ready: int) -> None:
    """A driver that rewrites its ~1 MB record back to back; says so on ``ready`` after 3 writes."""
    big = {f"key{i}": "x" * 200 for i in range(5000)}
    try:
        for n in itertools.count(1):
            record.num_samples = n
            record.overrides = {**big, "n": str(n)}
            record.save()
            if n == 3:
                os.write(ready, b"w")
    finally:
        os._exit(1)  # a forked child never returns into pytest


def test_kill_9_during_writes_leaves_a_whole_record(tmp_path):
    # Forked, not started: a new interpreter would spend seconds importing torch before its first write.
    record = _record(tmp_path)
    record.save()
    ready, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready)
        _rewrite_until_killed(record, write_end)
    os.close(write_end)
    try:
        assert select.select([ready], [], [], 120)[0], "the writer never wrote its record"
        time.sleep(0.1)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(ready)
    loaded = SweepRecord.load(tmp_path)  # parses: one of the records written whole, never a torn one
    assert loaded.num_samples >= 3 and loaded.overrides["n"] == str(loaded.num_samples)


def test_the_budget_is_read_from_the_record_file(tmp_path):
    _record(tmp_path, num_samples=7).save()
    assert recorded_budget(tmp_path / SWEEP_FILE) == 7


def test_started_pipeline_is_rebuilt_from_the_sweep_folders_copies(write_pipeline, tmp_path):
    import shutil

    from albsnn.sweep.pipeline import load_pipeline
    from albsnn.sweep.start import new_record, new_sweep_dir

    path = write_pipeline(tmp_path, "copies", num_samples=3)
    pipe = load_pipeline(path)
    folder = new_sweep_dir(pipe)
    shutil.copy2(path, folder / L.PIPELINE_FILE)
    shutil.copy2(pipe.search_space.path, folder / L.SEARCH_SPACE_FILE)
    record = new_record(pipe, folder, "sqlite:////nowhere/mlflow.db", "1", "parent")
    record.save()
    path.write_text("not: a pipeline any more\n")  # today's file changed: the sweep keeps its copy
    again = SweepRecord.load(find_sweep(pipe))
    started = again.started_pipeline()
    assert again == record and started.num_samples == 3 and started.name == "copies"
    assert started.search_space.path == folder / L.SEARCH_SPACE_FILE


def test_tune_state_of_sweeps_started_before_the_stage_modules_still_loads():
    # tuner.pkl of such a sweep (and of its confirmation) names the trial name function by reference
    # as albsnn.sweep.runner._trial_name; --resume unpickles it
    import pickle

    from albsnn.sweep.experiment import trial_name

    assert pickle.loads(b"calbsnn.sweep.runner\n_trial_name\n.") is trial_name
