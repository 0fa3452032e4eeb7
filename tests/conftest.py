"""Session-wide test setup: no test may reach the network, and the real data is found in one place."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

# /work/main/tests/conftest.py -> /work/shared/data: the checkout's sibling folder "shared".
SHARED_DATA = Path(__file__).parents[1].parent / "shared" / "data"
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "", None)


# Fixtures that start Ray, train models for a whole sweep, run an MLflow server or a browser: every test
# that uses one is slow, so `make test-fast` stays fast as the suite grows without anyone marking it.
SLOW_FIXTURES = frozenset({"ray_cluster", "logged_sweeps", "report", "mlflow_server", "chromium"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


class NetworkBlocked(OSError):
    """Raised instead of opening a connection; an OSError so code treats it as "offline"."""


def _is_local(address: object) -> bool:
    host = address[0] if isinstance(address, tuple) else None
    return host in _LOCAL_HOSTS or (isinstance(host, str) and host.startswith("127."))


@pytest.fixture(scope="session", autouse=True)
def _no_network():
    """Refuse every connection and name lookup except loopback and Unix sockets, for the whole session."""
    real_connect, real_connect_ex, real_getaddrinfo = (
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo,
    )  # fmt: skip

    def guard(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address):
            raise NetworkBlocked(f"tests may not touch the network (tried to connect to {address!r})")

    def connect(sock, address):
        guard(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock, address):
        guard(sock, address)
        return real_connect_ex(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _is_local((host,)):
            raise NetworkBlocked(f"tests may not touch the network (tried to resolve {host!r})")
        return real_getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", connect)
        mp.setattr(socket.socket, "connect_ex", connect_ex)
        mp.setattr(socket, "getaddrinfo", getaddrinfo)
        yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data root (Fashion-MNIST, 1,000 N-MNIST training samples); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (the checkout's sibling shared/data)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark("layer_study")``: a script of benchmarks/ as a module (they are not a package)."""

    def load(name: str):
        path = Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: on a busy 2-core box a second torch thread only waits (2 tiny epochs: 35 s, not 3 s)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---- headless chromium --------------------------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium; installed with apt-get when missing and we are root, else the test skips."""
    if not os.path.exists(CHROMIUM):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.skip(f"{CHROMIUM} is missing and apt-get needs root: apt-get install -y chromium")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                pytest.skip(f"could not install chromium ({' '.join(cmd)}): {proc.stderr.strip()[-300:]}")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} still missing after apt-get install chromium")
    return CHROMIUM
