"""The Ray cluster a sweep runs on: join one or start a local one, and check it can run a trial.

Both happen before any trial starts (and, for the address and the pre-flight checks, before the
sweep records anything in MLflow), so a wrong address or a cluster without the data fails at once
with one line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Iterator
from urllib.parse import urlparse

from albsnn.errors import ConfigError
from albsnn.sweep import local_ray
from albsnn.sweep._imports import require
from albsnn.sweep.pipeline import Pipeline

__all__ = ["check_address", "connect_ray", "preflight", "ray_session"]

_log = logging.getLogger(__name__)


def check_address(address: str) -> None:
    """Fail fast, naming the address, when a ``ray://host:port`` or ``host:port`` does not answer."""
    if address == "auto":
        return
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    host, port = parsed.hostname, parsed.port
    if not host or not port:
        raise ConfigError(f"Ray address {address!r} is not auto, ray://HOST:PORT or HOST:PORT")
    try:
        with socket.create_connection((host, port), timeout=5):
            pass
    except OSError as e:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address} ({e.strerror or e}); "
            "start it with `ray start --head` "
            "or check the address"
        ) from None


def connect_ray(address: str | None, num_cpus: int | None, runtime_env: dict | None = None) -> bool:
    """Join ``address`` or start a local Ray; returns True when this call started/joined Ray."""
    ray = require("ray")
    require("ray.tune")
    if address:
        check_address(address)
    if ray.is_initialized():  # e.g. a test session's cluster, or a notebook's
        if runtime_env:
            _log.warning(
                "Ray was already initialised in this process: the pipeline's runtime_env is not applied"
            )
        return False
    kwargs = {"include_dashboard": False, "logging_level": logging.WARNING, "runtime_env": runtime_env}
    if address:
        try:  # worker output stays on (with ray:// the sweep's own progress lines come through it)
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError, ImportError) as e:  # ray:// needs ray[client]
            raise ConfigError(f"cannot join the Ray cluster at {address}: {str(e).splitlines()[0]}") from None
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=num_cpus, log_to_driver=False, **kwargs)
    return True


def preflight(pipe: Pipeline) -> None:
    """Before any trial or MLflow run: the cluster can hold a trial and every node has the data."""
    from albsnn.sweep.preflight import check_dataset, check_resources

    check_resources(pipe.resources, require("ray").nodes(), f"{pipe.path}: resources")
    if not pipe.train.get("data_options", {}).get("download"):
        check_dataset(pipe.dataset, pipe.train.get("data_dir"), pipe.resources)


@contextlib.contextmanager
def ray_session(pipe: Pipeline, address: str | None, num_cpus: int | None) -> Iterator[None]:
    """Ray for as long as the sweep runs: joined at ``address``, or started here and shut down after.

    A local Ray left behind by a killed driver of this storage is ended first (:mod:`.local_ray`).
    """
    record = None
    if not address:
        for line in local_ray.end_stale(pipe.storage):
            print(line, file=sys.stderr, flush=True)
    owns_ray = connect_ray(address, num_cpus, pipe.runtime_env)
    if owns_ray and not address:
        record = local_ray.record(pipe.storage)
    try:
        yield
    finally:
        if owns_ray:
            require("ray").shutdown()
            local_ray.release(record)
