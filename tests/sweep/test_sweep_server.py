"""Sweeps against a real ``mlflow server`` on 127.0.0.1: an outage mid-sweep, and the MLflow UI in a browser.

The server (SQLite backend, local artifact folder) is stopped while trials train and started again
a few seconds later; the sweep must finish and MLflow must hold every epoch of every trial once.
The same store then serves the browser check of the UI (headless chromium).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from albsnn.sweep.tracking.layout import ui_url

pytestmark = pytest.mark.slow

EPOCHS = 3
EPOCH_KEYS = ("val_accuracy", "test_accuracy", "train_loss", "storage_bytes", "learning_rate")
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def outage_sweep(mlflow_server, ray_cluster, write_pipeline, tmp_path_factory, wait_for):
    """A 4-trial sweep over HTTP whose server is down for a few seconds while trials train."""
    folder = tmp_path_factory.mktemp("outage")
    path = write_pipeline(folder, "outage", num_samples=4, epochs=EPOCHS)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "albsnn.cli", "sweep", str(path),
            "--tracking-uri", mlflow_server.uri, "--address", ray_cluster]  # fmt: skip
    driver = subprocess.Popen(argv, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    client = MlflowClient(mlflow_server.uri)

    def training() -> bool:
        experiment = client.get_experiment_by_name("test-outage")
        if experiment is None:
            return False
        runs = client.search_runs([experiment.experiment_id], "tags.`albsnn.role` = 'trial'")
        return any(r.data.metrics for r in runs)

    try:
        wait_for(training, 180, "the first epoch in MLflow")
        mlflow_server.stop()
        time.sleep(6)  # trials keep training and reporting meanwhile
        mlflow_server.start()
        out = driver.communicate(timeout=300)[0].decode()
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    experiment = client.get_experiment_by_name("test-outage")
    return dict(code=driver.returncode, out=out, client=client, experiment=experiment, server=mlflow_server)


def test_sweep_survives_a_server_outage_with_every_epoch_logged_once(outage_sweep):
    out, client = outage_sweep["out"], outage_sweep["client"]
    assert outage_sweep["code"] == 0, out
    assert "does not answer" in out and "answers again" in out, out  # the outage happened mid-sweep
    assert "4 finished, 0 pruned, 0 failed" in out
    summary = out[out.rindex("experiment:    ") :]
    assert "every record was sent when it answered again" in summary, summary  # how the outage ended
    assert "does not answer" not in summary, summary
    assert "View run" not in out and "View experiment" not in out  # MLflow's own lines stay out
    experiment_id = outage_sweep["experiment"].experiment_id
    (parent,) = client.search_runs([experiment_id], "tags.`albsnn.role` = 'sweep'")
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_finished"] == 4
    runs = client.search_runs([experiment_id], "tags.`albsnn.role` = 'trial'")
    assert len(runs) == 4
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.tags["albsnn.trial_state"] == "FINISHED"
        for key in EPOCH_KEYS:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert sorted(steps) == list(range(1, EPOCHS + 1)), (run.info.run_name, key, steps)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.json", "metrics.json", "model"} <= artifacts
        assert [a.path for a in client.list_artifacts(run.info.run_id, "model")] == ["model/model.albsnn"]


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--hide-scrollbars",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium(chromium: str, tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=20000", "--window-size=1600,1000", *args, url]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def _text(dom: str) -> str:
    dom = re.sub(r"<script.*?</script>|<style.*?</style>", "", dom, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))


def test_mlflow_ui_opens_the_sweep_on_its_training_runs(outage_sweep, chromium, tmp_path):
    # Rule: the URL the sweep prints opens the experiment on its runs (not MLflow 3's GenAI pages)
    # and the runs table lists the child runs by the names of their swept values, with their
    # dataset; the chart view of that page is kept in docs/ (linked from the README).
    client, server = outage_sweep["client"], outage_sweep["server"]
    experiment_id = outage_sweep["experiment"].experiment_id
    url = ui_url(server.uri, experiment_id)
    assert f"MLflow UI:     {url}" in outage_sweep["out"]
    trials = client.search_runs([experiment_id], "tags.`albsnn.role` = 'trial'")
    page = _chromium(chromium, tmp_path, url, "--dump-dom")
    text = _text(page.stdout)
    assert "Runs - Experiment" in text and "Detect Issues" not in text, (page.stderr[-1500:], text[:1500])
    missing = [r.info.run_name for r in trials if r.info.run_name not in text]
    assert not missing, (missing, text[:3000])
    digest = trials[0].inputs.dataset_inputs[0].dataset.digest
    assert f"digits ({digest})" in text
    shot = tmp_path / "chart-view.png"
    _chromium(chromium, tmp_path, f"{url}&compareRunsMode=CHART", f"--screenshot={shot}")
    assert shot.is_file() and shot.stat().st_size > 20_000
    if os.environ.get("ALBSNN_UPDATE_SCREENSHOT"):  # refresh the one docs/ and the README show
        shutil.copy2(shot, DOCS / "mlflow-ui-chart-view.png")
