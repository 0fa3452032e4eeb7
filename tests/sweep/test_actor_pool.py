"""The sweep's trial workers form a warm pool (albsnn.sweep.actor_pool): a sweep asks Ray for no more
worker processes than it runs trials at once, even when its trials end in milliseconds, which is when
Tune alone asks for one for most trials and kills it unused (docs/performance.md). A worker lost with
a failed trial is replaced: tests/sweep/test_sweep_ray.py's retried trials run with the pool on."""

from __future__ import annotations

import sys

import pytest
from ray import cloudpickle, tune
from ray.air.execution._internal.actor_manager import RayActorManager

from albsnn.sweep import runner

pytestmark = pytest.mark.slow


def instant_trial(config: dict) -> None:
    """A trial that trains nothing: one made-up epoch."""
    tune.report({"epoch": 1, "val_accuracy": config["lr"], "test_accuracy": 0.5, "storage_bytes": 1000.0})


def instant_trainable(pipe, fail_once_at_epoch):
    return tune.with_resources(instant_trial, {"cpu": 1})


@pytest.fixture
def worker_requests(monkeypatch) -> list:
    """Every actor (worker process) Tune asks Ray for while the test runs."""
    asked, real = [], RayActorManager.add_actor

    def add_actor(self, *args, **kwargs):
        asked.append(kwargs.get("resource_request"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(RayActorManager, "add_actor", add_actor)
    monkeypatch.setattr(runner, "make_trainable", instant_trainable)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    return asked


def test_a_sweep_of_instant_trials_asks_for_no_more_workers_than_it_runs_at_once(
    ray_cluster, tracking_uri, write_pipeline, tmp_path, worker_requests
):
    # Without the pool this sweep asked for 30, one per trial (Ray 2.60, the 2-core VM, 2026-12-03)
    path = write_pipeline(tmp_path, "pool", num_samples=30, epochs=1, max_concurrent=2)
    result = runner.run_sweep(path, tracking_uri=tracking_uri, progress=False)
    assert result.counts == {"FINISHED": 30, "PRUNED": 0, "FAILED": 0}
    assert 1 <= len(worker_requests) <= 2  # max_concurrent: 2
