"""Ray Tune's lookups of a sweep's trainable, answered from memory while the sweep's Tuner runs.

Tune keeps the trainable in the cluster's key-value store (the GCS) under a name and asks the store
about it five times per trial: whether it exists when the trial is made, then whether it exists and
its class (unpickled anew each time) when the trial's placement group and its actor are made. A
py-spy profile of a 1,500-trial sweep on the loaded 2-core VM found the driver's main thread in these
lookups about 7 ms per trial (sampled time, which counts the waits for the GCS, not CPU alone;
docs/performance.md).

Within one ``Tuner.fit`` the answer cannot change: the Tuner registers its trainable when it is made,
before ``fit``, and nothing registers another under that name until the experiment ends.
:func:`cached_trainables` therefore remembers what the store answered, for trainables only and only
what exists, for the length of one ``fit``.

Ray's registry is internal (``ray.tune.registry._Registry``). If a Ray release renames it, the cache
does nothing and every lookup costs what it costs in Ray; a sweep never fails for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["cached_trainables"]


@contextlib.contextmanager
def cached_trainables() -> Iterator[None]:
    """Within the block, Ray Tune's registry answers lookups of trainables it found once from memory."""
    try:
        from ray.tune import registry

        cls, category = registry._Registry, registry.TRAINABLE_CLASS
        real_get, real_contains = cls.get, cls.contains
    except (ImportError, AttributeError):
        yield
        return
    found: dict = {}

    def get(self, kind, key):
        if kind != category:
            return real_get(self, kind, key)
        where = (self.prefix, key)
        if where not in found:
            found[where] = real_get(self, kind, key)  # raises for a name that is not there
        return found[where]

    def contains(self, kind, key):
        if kind == category and (self.prefix, key) in found:
            return True
        present = real_contains(self, kind, key)
        if present and kind == category:
            found[(self.prefix, key)] = real_get(self, kind, key)
        return present

    cls.get, cls.contains = get, contains
    try:
        yield
    finally:
        cls.get, cls.contains = real_get, real_contains
