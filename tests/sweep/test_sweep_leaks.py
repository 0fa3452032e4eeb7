"""Nothing left RUNNING in MLflow: an error before the fit, an error during it, Ctrl-C, kill -9.

Each case ends with every run of the sweep ended (FINISHED, FAILED or KILLED) and those that did not
finish tagged ``albsnn.end_reason``; a killed driver's sweep is ended by ``--abandon`` or continued
by ``--resume``, which reopens the runs it ended.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import textwrap

import pytest
from mlflow import MlflowClient

from albsnn.cli import main
from albsnn.sweep import run_sweep
from albsnn.sweep.tracking import layout as L
from albsnn.sweep.tracking.runs import ensure_experiment, start_parent_run

pytestmark = pytest.mark.slow


def _runs(uri: str, experiment: str) -> tuple[object, list]:
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    (parent,) = client.search_runs([experiment_id], f"tags.`{L.ROLE}` = '{L.SWEEP}'")
    return parent, client.search_runs([experiment_id], f"tags.`{L.ROLE}` = '{L.TRIAL}'")


def test_an_error_before_the_fit_ends_the_parent_failed(
    ray_cluster, tracking_uri, write_pipeline, tmp_path, monkeypatch
):
    # Anything that fails after the parent run exists and before Tune starts (here: building the
    # searcher) must not leave that run RUNNING.
    from albsnn.sweep import start

    def broken(*args, **kwargs):
        raise RuntimeError("searcher cannot be built")

    monkeypatch.setattr(start, "_scheduler_and_searcher", broken)
    path = write_pipeline(tmp_path, "nothing-searched")
    with pytest.raises(RuntimeError, match="searcher cannot be built"):
        run_sweep(path, tracking_uri=tracking_uri, progress=False)
    parent, children = _runs(tracking_uri, "test-nothing-searched")
    assert parent.info.status == "FAILED"
    assert parent.data.tags[L.END_REASON].startswith("driver error:")
    assert all(r.info.status != "RUNNING" for r in children)


CRASH = textwrap.dedent(
    """
    import sys
    from albsnn.sweep import run_sweep
    from albsnn.sweep.progress import ProgressPrinter

    def explode(self, iteration, trials, trial, result, **info):
        if result.get("epoch") == 2:
            raise RuntimeError("a callback bug")

    ProgressPrinter.on_trial_result = explode
    run_sweep(sys.argv[1], tracking_uri=sys.argv[2], address=sys.argv[3], progress=True)
    """
)


def test_an_error_during_the_fit_ends_unfinished_trials_killed(
    ray_cluster, tracking_uri, write_pipeline, tmp_path, subprocess_env, python
):
    # A driver of its own: a sweep that dies inside Tune leaves its trial actors to the driver's job.
    path = write_pipeline(tmp_path, "crash", num_samples=2, epochs=4)
    argv = [python, "-c", CRASH, str(path), tracking_uri, ray_cluster]
    proc = subprocess.run(argv, cwd=tmp_path, env=subprocess_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "a callback bug" in proc.stderr, proc.stdout + proc.stderr
    parent, children = _runs(tracking_uri, "test-crash")
    assert parent.info.status == "FAILED"
    assert parent.data.tags[L.END_REASON] == "driver error: RuntimeError: a callback bug"
    assert children and all(r.info.status in ("FINISHED", "KILLED") for r in children)
    killed = [r for r in children if r.info.status == "KILLED"]
    assert killed and all("a callback bug" in r.data.tags[L.END_REASON] for r in killed)


def _driver(python, path, uri, address, env, cwd, *extra):
    argv = [python, "-m", "albsnn.cli", "sweep", str(path), "--tracking-uri", uri, "--address", address]
    return subprocess.Popen(
        [*argv, *extra], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _training(uri: str, experiment: str):
    client = MlflowClient(uri)

    def check() -> bool:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return False
        runs = client.search_runs([found.experiment_id], f"tags.`{L.ROLE}` = '{L.TRIAL}'")
        return any(r.data.metrics for r in runs)

    return check


def test_ctrl_c_ends_runs_killed_and_resume_reopens_them(
    wait_for, ray_cluster, tracking_uri, write_pipeline, tmp_path, subprocess_env, python
):
    path = write_pipeline(tmp_path, "sigint", num_samples=2, epochs=6)
    driver = _driver(python, path, tracking_uri, ray_cluster, subprocess_env, tmp_path)
    try:
        wait_for(_training(tracking_uri, "test-sigint"), 180, "the first epoch")
        driver.send_signal(signal.SIGINT)
        out = driver.communicate(timeout=180)[0].decode()
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, out
    parent, children = _runs(tracking_uri, "test-sigint")
    assert parent.info.status == "KILLED" and parent.data.tags[L.END_REASON] == "interrupted"
    killed = [r for r in children if r.info.status == "KILLED"]
    assert killed and all(r.data.tags[L.END_REASON] == "interrupted" for r in killed), out
    assert all(r.info.status != "RUNNING" for r in children)

    resumed = _driver(python, path, tracking_uri, ray_cluster, subprocess_env, tmp_path, "--resume")
    out = resumed.communicate(timeout=300)[0].decode()
    assert resumed.returncode == 0, out
    parent, children = _runs(tracking_uri, "test-sigint")
    assert parent.info.status == "FINISHED"
    assert len(children) == 2 and {r.info.status for r in children} == {"FINISHED"}


def test_kill_9_then_abandon_ends_every_run_killed(
    wait_for, ray_cluster, tracking_uri, write_pipeline, tmp_path, subprocess_env, python, capsys
):
    path = write_pipeline(tmp_path, "abandon", num_samples=2, epochs=6)
    driver = _driver(python, path, tracking_uri, ray_cluster, subprocess_env, tmp_path)
    try:
        wait_for(_training(tracking_uri, "test-abandon"), 180, "the first epoch")
    finally:
        os.kill(driver.pid, signal.SIGKILL)
        driver.communicate()
    parent, children = _runs(tracking_uri, "test-abandon")
    assert parent.info.status == "RUNNING"
    sweep_id = parent.info.run_name
    assert main(["sweep", "--abandon", sweep_id, "--tracking-uri", tracking_uri]) == 0
    assert f"sweep {sweep_id} abandoned" in capsys.readouterr().out
    parent, children = _runs(tracking_uri, "test-abandon")
    assert parent.info.status == "KILLED" and parent.data.tags[L.END_REASON] == "abandoned"
    assert children and all(r.info.status in ("FINISHED", "KILLED") for r in children)
    assert all(r.data.tags[L.END_REASON] == "abandoned" for r in children if r.info.status == "KILLED")
    # a second --abandon: nothing left to end
    assert main(["sweep", "--abandon", sweep_id, "--tracking-uri", tracking_uri]) == 2
    err = capsys.readouterr().err
    assert "already ended KILLED" in err and err.count("error:") == 1


def test_abandon_refuses_unknown_and_still_running_sweeps(tracking_uri, capsys):
    assert main(["sweep", "--abandon", "no-such-sweep", "--tracking-uri", tracking_uri]) == 2
    assert "no sweep named 'no-such-sweep'" in capsys.readouterr().err
    experiment_id = ensure_experiment(tracking_uri, "test-alive")
    alive = {L.DRIVER: f"{socket.gethostname()}:{os.getppid()}"}  # this test's parent process
    start_parent_run(tracking_uri, experiment_id, "alive-sweep", alive)
    assert main(["sweep", "--abandon", "alive-sweep", "--tracking-uri", tracking_uri]) == 2
    err = capsys.readouterr().err
    assert "is still running" in err and "Traceback" not in err and err.count("error:") == 1
