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


def _classes():
    from ray.tune import tune as tune_module
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.utils.object_cache import _ObjectCache

    return tune_module, TuneController, _ObjectCache


def _pool_controller(size: int):
    """A ``TuneController`` subclass whose trial workers form a warm pool of ``size``."""
    _, TuneController, _ObjectCache = _classes()

    class PoolCache(_ObjectCache):
        """Idle workers kept between trials: up to ``size``, all flushed only when forced."""

        def cache_object(self, key, obj) -> bool:
            if self.num_cached_objects >= size:
                return False
            self._cached_objects[key].append(obj)
            self._num_cached_objects += 1
            return True

        def flush_cached_objects(self, force_all: bool = False):
            if force_all:
                yield from super().flush_cached_objects(force_all=True)

        def discard(self, obj) -> None:
            for objs in self._cached_objects.values():
                if obj in objs:
                    objs.remove(obj)
                    self._num_cached_objects -= 1

    class PoolController(TuneController):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._actor_cache = PoolCache(may_keep_one=True)
            self._spares: dict = {}  # worker asked for by a trial that took a cached one -> resources
            self._keeping = None  # the trial whose own request becomes a spare, during a reuse
            self._scheduling = False

        def __getstate__(self):  # Tune snapshots the controller's state; the pool is this run's own
            state = super().__getstate__()
            for key in ("_spares", "_keeping", "_scheduling"):
                state.pop(key, None)
            return state

        def _pool(self) -> int:
            return self._actor_manager.num_total_actors  # up, starting, asked for, or stopping

        def _schedule_trial_actor(self, trial):
            cached = self._actor_cache.has_cached_object(trial.placement_group_factory)
            if self._pool() >= size and not cached:
                trial.init_local_path()  # what Tune does before it looks for an actor
                self._mark_trial_to_checkpoint(trial)
                return  # staged: Tune offers it the next cached worker every step
            self._scheduling = True  # Tune's own look into the cache comes next, then its request
            try:
                super()._schedule_trial_actor(trial)
            finally:
                self._scheduling = False

        def _maybe_reuse_cached_actor(self, trial) -> bool:
            self._keeping = trial
            try:
                reused = super()._maybe_reuse_cached_actor(trial)
            finally:
                self._keeping = None
            waiting = trial in self._staged_trials and trial not in self._trial_to_actor
            if not reused and waiting and not self._scheduling and self._pool() < size:
                self._schedule_trial_actor(trial)  # a worker died: a trial left waiting gets a new one
            return reused

        def _remove_actor(self, tracked_actor):
            if self._keeping is not None:  # the request of a trial that just took a cached worker
                self._spares[tracked_actor] = self._keeping.placement_group_factory
                return
            self._spares.pop(tracked_actor, None)
            super()._remove_actor(tracked_actor)

        def _actor_started(self, tracked_actor, log: str = "STARTED"):
            resources = self._spares.pop(tracked_actor, None)
            if resources is None:
                return super()._actor_started(tracked_actor, log=log)
            self._started_actors.add(tracked_actor)
            if not self._actor_cache.cache_object(resources, tracked_actor):
                super()._remove_actor(tracked_actor)

        def _actor_failed(self, tracked_actor, exception):
            if tracked_actor in self._actor_to_trial:
                return super()._actor_failed(tracked_actor, exception)
            # a spare, or an idle worker in the pool (Tune itself expects every failed actor to
            # have a trial): forget it; the next trial that finds the pool short asks for another
            self._spares.pop(tracked_actor, None)
            self._actor_cache.discard(tracked_actor)
            self._actor_manager.clear_actor_task_futures(tracked_actor)  # as Tune cleans up a failed one
            tracked_actor.set_on_stop(None)
            tracked_actor.set_on_error(None)
            self._actor_manager.remove_actor(tracked_actor, kill=False)
            self._actor_stopped(tracked_actor)

    return PoolController


@contextlib.contextmanager
def warm_actor_pool(size: int | None) -> Iterator[None]:
    """Within the block, Ray Tune runs a sweep's trials on at most ``size`` worker processes.

    ``None`` (no ``max_concurrent``) leaves Tune as it is: the pool needs to know its size.
    """
    try:
        tune_module, real, _ = _classes()
    except (ImportError, AttributeError):
        size = None
    if not size:
        yield
        return
    tune_module.TuneController = _pool_controller(size)
    try:
        yield
    finally:
        tune_module.TuneController = real
