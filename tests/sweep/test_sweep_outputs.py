"""Where a user's sweep writes: under the git-ignored runs/, so `make demo` leaves `git status` clean."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from albsnn.cli.sweep import sweep_and_report

REPO = Path(__file__).resolve().parents[2]


def _git(repo, *args) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


@pytest.mark.slow
def test_the_demo_pipeline_leaves_git_status_clean(ray_cluster, tmp_path, monkeypatch):
    # The repository's own .gitignore, demo pipeline and search space in a fresh checkout; only the
    # run's size is cut (epochs, samples, trials): every output location is the demo's own default.
    repo = tmp_path / "checkout"
    (repo / "pipelines").mkdir(parents=True)
    shutil.copytree(REPO / "search_spaces", repo / "search_spaces")
    shutil.copy2(REPO / ".gitignore", repo / ".gitignore")
    demo = yaml.safe_load((REPO / "pipelines" / "demo.yaml").read_text())
    assert "tracking_uri" not in demo.get("mlflow", {}) and not demo.get("report", {}).get("out_dir")
    demo.update(epochs=3, limit_train=300, limit_test=100)
    (repo / "pipelines" / "demo.yaml").write_text(yaml.safe_dump(demo))
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "checkout")
    monkeypatch.chdir(repo)

    result = sweep_and_report("pipelines/demo.yaml", num_samples=1, progress=False)  # as `albsnn sweep`

    assert result.counts["FINISHED"] == 1
    assert result.tracking_uri == f"sqlite:///{repo.resolve() / 'runs' / 'mlflow.db'}"
    assert result.report_path == repo.resolve() / "runs" / "reports" / result.sweep_id
    assert (result.report_path / "index.html").is_file()
    assert _git(repo, "status", "--porcelain") == ""
