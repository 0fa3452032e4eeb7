"""A warm pool of trial workers: a sweep starts at most ``max_concurrent`` worker processes.

With ``reuse_actors=True`` Ray Tune still asks for a new actor (a placement group, then a worker
process) for nearly every trial: the next trial is made in the controller step after a trial ends,
before that trial's actor is back in the cache. One step later the cached actor frees up, the trial
takes it, and Tune removes the actor it had asked for, killing its process if Ray had started one
by then. On a 2-core box with trials that last milliseconds, ``benchmarks/sweep_scale.py`` counted
213-219 worker processes started and killed unused per 2,000-trial sweep, 185-207 s of CPU
(docs/performance.md), and Tune keeps no more than one idle actor, so the pool never grows.

:func:`warm_actor_pool` makes Tune's controller keep its workers instead:

* a worker started for a trial that went to a cached one is kept as a spare and cached once it is
  up, not killed;
* the cache keeps up to ``size`` idle workers between trials, flushed when the search is over;
* no new worker is asked for while ``size`` exist or are being started: the trial waits (one
  controller step, typically) for the next one that frees up. A worker that dies is replaced.

``size`` is the sweep's ``max_concurrent``, the most trials that run at once, so the pool never
holds more workers than the sweep could use. The controller's internals are Ray's
(``ray.tune.execution.tune_controller.TuneController``, Ray 2.60); if a release renames them, the
pool does nothing and the sweep runs as Tune runs it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["warm_actor_pool"]


def _pool_controller(size: int):
    """A ``TuneController`` subclass whose trial workers form a warm pool of ``size``."""
    from albsnn.sweep.pool_controller import PoolController

    return type("PoolController", (PoolController,), {"pool_size": size})


@contextlib.contextmanager
def warm_actor_pool(size: int | None) -> Iterator[None]:
    """Within the block, Ray Tune runs a sweep's trials on at most ``size`` worker processes.

    ``None`` (no ``max_concurrent``) leaves Tune as it is: the pool needs to know its size.
    """
    try:
        from ray.tune import tune as tune_module

        controller = _pool_controller(size) if size else None
    except (ImportError, AttributeError):
        controller = None
    if controller is None:
        yield
        return
    real, tune_module.TuneController = tune_module.TuneController, controller
    try:
        yield
    finally:
        tune_module.TuneController = real
