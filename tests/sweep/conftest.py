"""Sweep-platform fixtures: one Ray cluster and one MLflow database for the whole test session.

Ray takes ~6 s to start on 2 cores and MLflow ~5 s to create a database, so both are shared; each
test uses its own experiment name and sweep folder. Tests that must own a cluster (the killed
driver, the two-node cluster) run their driver in a subprocess.
"""

from __future__ import annotations

import os

# Before any Ray import: no token auth on the test cluster, no Tune tables or TensorBoard files.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

import logging  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

try:
    import mlflow  # noqa: F401
    import optuna  # noqa: F401
    import ray  # noqa: F401
    from ray import tune  # noqa: F401
except ImportError:  # the platform's extras are not installed: nothing here can run
    collect_ignore_glob = ["test_*.py"]

REPO = Path(__file__).resolve().parents[2]

# A tiny, fast trial: 300 digits, width 0.25, T=1..2, 3 epochs (about a second per trial on 2 cores).
TINY_SPACE = """\
model:
  width: {choice: [0.25, 0.5]}
  time_steps: {int: [1, 2]}
training:
  lr: {loguniform: [1e-3, 1e-2]}
"""


def _write_pipeline(folder: Path, name: str, *, space: str = TINY_SPACE, **overrides) -> Path:
    """Write ``<folder>/<name>.yaml`` (+ its search space) for a tiny digits sweep; returns its path.

    ``overrides`` replace pipeline keys; a None value leaves the key out.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}-space.yaml").write_text(textwrap.dedent(space))
    values = {
        "name": name,
        "dataset": "digits",
        "limit_train": 300,
        "limit_test": 200,
        "epochs": 3,
        "train": {"batch_size": 100, "warmup": 1},
        "search_space": f"{name}-space.yaml",
        "objectives": {"val_accuracy": "max", "storage_bytes": "min"},
        "mode": "search",
        "sampler": {"kind": "random"},
        "pruner": "none",
        "num_samples": 2,
        "max_concurrent": 2,
        "resources": {"cpus": 1},
        "seeds": [0],
        "max_failures": 1,
        "storage": str(folder / "sweeps"),
        "mlflow": {"experiment": f"test-{name}"},
        "report": {"enabled": False},
        **overrides,
    }
    values = {k: v for k, v in values.items() if v is not None}  # None: leave the key out
    import yaml

    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def write_pipeline():
    """``write_pipeline(folder, name, space=..., **pipeline keys) -> path`` of a tiny digits sweep."""
    return _write_pipeline


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="session")
def wait_for():
    """``wait_for(predicate, timeout_s, what)``: poll until ``predicate()``, or fail naming ``what``."""
    return _wait_for


@pytest.fixture(scope="session")
def ray_cluster():
    """A 2-CPU local Ray for the session; yields its GCS address (for subprocess drivers)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory) -> str:
    """One SQLite MLflow store for the session (created once: the schema migration is slow)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()
    return uri


@pytest.fixture
def subprocess_env() -> dict:
    """Environment for driver subprocesses: the repository importable, Ray quiet."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def python() -> str:
    return sys.executable


# ---- a real MLflow tracking server on 127.0.0.1 ---------------------------------------------------
class MlflowServer:
    """``mlflow server`` (SQLite backend, local artifact folder) that a test can stop and start again."""

    def __init__(self, folder: Path):
        import socket

        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, timeout: float = 300) -> None:
        import subprocess
        import time
        import urllib.request

        argv = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", "1", "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
                "--artifacts-destination", str(self.folder / "artifacts")]  # fmt: skip
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 - the server's lifetime
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited: {(self.folder / 'server.log').read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"mlflow server did not answer within {timeout} s")

    def stop(self) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except Exception:  # noqa: BLE001 - it would not stop: make sure
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` on 127.0.0.1 for the session (tests may stop and restart it)."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    yield server
    server.stop()
