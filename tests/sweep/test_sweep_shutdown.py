"""Shutdowns: a sweep driver killed with kill -9 leaves its local Ray running; the next start ends it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from albsnn.sweep import run_sweep
from albsnn.sweep.local_ray import RECORD_DIR, end_stale, record, session_processes


def test_a_live_drivers_record_is_left_alone_and_a_normal_exit_removes_it(ray_cluster, tmp_path):
    path = record(tmp_path)  # this process is the (live) driver of the session's Ray
    assert path is not None and path.parent == tmp_path / RECORD_DIR
    assert session_processes(json.loads(path.read_text())["session_dir"])  # Ray's own processes
    assert end_stale(tmp_path) == [] and path.exists()


@pytest.mark.slow
def test_resume_after_kill_9_leaves_no_ray_process_of_the_killed_run(
    wait_for, ray_cluster, tracking_uri, write_pipeline, tmp_path, subprocess_env, python
):
    path = write_pipeline(tmp_path, "stray", num_samples=3, epochs=4, max_concurrent=1)
    # No --address: the driver starts, and records, a local Ray of its own.
    argv = [python, "-m", "albsnn.cli", "sweep", str(path), "--tracking-uri", tracking_uri]
    records = Path(tmp_path / "sweeps" / RECORD_DIR)

    def running() -> bool:  # its Ray is up and Tune has saved a state to resume from
        assert driver.poll() is None, "the driver ended early"
        states = (tmp_path / "sweeps" / "stray").glob("*/experiment_state-*.json")
        return bool(list(records.glob("*.json"))) and bool(list(states))

    driver = subprocess.Popen(
        argv, cwd=tmp_path, env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_for(running, 480, "the driver's sweep to run")  # a fresh Ray on a busy 2-core machine
    finally:
        os.kill(driver.pid, signal.SIGKILL)
        out = driver.communicate()[0].decode()
    assert driver.returncode == -signal.SIGKILL, out
    (killed,) = [json.loads(p.read_text()) for p in records.glob("*.json")]
    assert killed["driver_pid"] == driver.pid
    time.sleep(2)  # what dies with the driver has died by now
    left = session_processes(killed["session_dir"])
    assert left, "the premise: kill -9 leaves Ray processes of the driver's session running"

    result = run_sweep(path, tracking_uri=tracking_uri, resume=True, progress=False)

    assert result.counts["FINISHED"] == 3
    assert session_processes(killed["session_dir"]) == []
    assert not any(Path(f"/proc/{pid}").exists() for pid in left if _alive(pid))
    assert not list(records.glob("*.json"))


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
