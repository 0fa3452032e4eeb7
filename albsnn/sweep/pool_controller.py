"""Ray Tune's controller with a warm pool of trial workers; see :mod:`albsnn.sweep.actor_pool`.

Imports Ray Tune's internals at import: :func:`albsnn.sweep.actor_pool.warm_actor_pool` imports this
module only inside a sweep, and runs Tune unchanged if the import fails.
"""

from __future__ import annotations

from ray.tune.execution.tune_controller import TuneController
from ray.tune.utils.object_cache import _ObjectCache

__all__ = ["PoolController"]


class PoolCache(_ObjectCache):
    """Idle workers kept between trials: up to ``size``, all flushed only when forced."""

    def __init__(self, size: int):
        super().__init__(may_keep_one=True)
        self.size = size

    def cache_object(self, key, obj) -> bool:
        if self.num_cached_objects >= self.size:
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
    """Tune's controller, its trial workers a warm pool of ``pool_size`` (set by a subclass)."""

    pool_size = 1

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._actor_cache = PoolCache(self.pool_size)
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
        if self._pool() >= self.pool_size and not cached:
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
        if not reused and waiting and not self._scheduling and self._pool() < self.pool_size:
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
