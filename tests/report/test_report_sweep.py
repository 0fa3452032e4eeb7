"""A report from a REAL tiny sweep: `albsnn sweep` (Ray Tune + Optuna + MLflow, issue 4) ends by
calling `albsnn.report.generate_report`; the report must exist, be logged to the parent run, and
show the numbers MLflow holds. Runs the sweep in a subprocess (its own Ray), ~40 s on 2 cores.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SPACE = """\
model:
  time_steps: {int: [1, 2]}
estimator:
  threshold: {uniform: [0.1, 0.6]}
"""
PIPELINE = """\
name: tiny
dataset: digits
limit_train: 400
limit_test: 200
epochs: 2
train: {batch_size: 16, lr: 0.01, warmup: 1, width: 0.25}
search_space: space.yaml
objectives: {val_accuracy: max, storage_bytes: min}
mode: search
sampler: {kind: random, seed: 0}
pruner: none
num_samples: 3
max_concurrent: 2
resources: {cpus: 1}
seeds: [0]
max_failures: 0
storage: sweeps
mlflow: {experiment: tiny}
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, str]:
    for module in ("ray", "optuna", "mlflow", "albsnn.sweep.runner"):
        pytest.importorskip(module, reason=f"the sweep platform needs {module}")
    folder = tmp_path_factory.mktemp("real-sweep")
    (folder / "space.yaml").write_text(SPACE)
    (folder / "tiny.yaml").write_text(textwrap.dedent(PIPELINE))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
    albsnn = [sys.executable, "-m", "albsnn.cli"]
    cmd = [*albsnn, "sweep", "tiny.yaml", "--quiet"]
    proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return folder, proc.stdout


@pytest.mark.slow
def test_the_sweep_writes_its_report_and_logs_it_to_the_parent_run(swept):
    from mlflow.tracking import MlflowClient

    folder, stdout = swept
    report = Path(re.search(r"^report:\s+(\S+)", stdout, re.M).group(1))
    assert report.parent == folder / "runs" / "reports" and report.is_dir()
    for name in (
        "index.html",
        "report.md",
        "pareto.csv",
        "trials.csv",
        "figures/pareto.png",
        "figures/pareto.svg",
    ):
        assert (report / name).is_file(), name
    parent = re.search(r"^parent run:\s+(\w+)", stdout, re.M).group(1)
    client = MlflowClient(f"sqlite:///{folder / 'runs' / 'mlflow.db'}")
    logged = {Path(a.path).name for a in client.list_artifacts(parent, "report")}
    assert {"index.html", "report.md", "pareto.csv"} <= logged


@pytest.mark.slow
def test_report_md_of_the_sweep_equals_mlflow(swept, md_table):
    from mlflow.tracking import MlflowClient

    folder, stdout = swept
    report = Path(re.search(r"^report:\s+(\S+)", stdout, re.M).group(1))
    client = MlflowClient(f"sqlite:///{folder / 'runs' / 'mlflow.db'}")
    rows = md_table((report / "report.md").read_text(), "#")
    assert rows
    for row in rows:
        m = client.get_run(row["run_id"]).data.metrics
        assert row["val accuracy"] == f"{100 * m['val_accuracy']:.2f}%"  # what selected the row
        assert row["test accuracy"] == f"{100 * m['test_accuracy']:.2f}%"  # what it reports
        assert row["storage (bytes)"] == f"{int(m['storage_bytes']):,}"
    with open(report / "trials.csv") as f:
        trials = list(csv.DictReader(f))
    assert len(trials) == 3 and {t["state"] for t in trials} == {"FINISHED"}
    counts = md_table((report / "report.md").read_text(), "sweep")
    assert counts[-1]["finished"] == "3"


@pytest.mark.slow
def test_the_sweeps_estimator_check_reaches_the_report(swept):
    # sweeps measure every candidate layer at the end (estimator_check on by default): the report's
    # table pools those pairs per estimator, each from the runs MLflow holds
    folder, stdout = swept
    report = Path(re.search(r"^report:\s+(\S+)", stdout, re.M).group(1))
    with open(report / "estimator_check.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(int(r["n_pairs"]) > 0 and r["runs"] == "3" for r in rows)
    assert (report / "figures" / "estimator_check.png").is_file()
