"""Ray Tune's trainable lookups are answered from memory inside one fit, and only those."""

from __future__ import annotations

import pytest
from ray.tune import registry

from albsnn.sweep.trainable_cache import cached_trainables


class _Trainable:
    pass


@pytest.fixture
def counted(monkeypatch):
    """A registry of its own (no cluster), and the lookups that reach it."""
    calls = []
    real_get, real_contains = registry._Registry.get, registry._Registry.contains

    def get(self, kind, key):
        calls.append(("get", kind, key))
        return real_get(self, kind, key)

    def contains(self, kind, key):
        calls.append(("contains", kind, key))
        return real_contains(self, kind, key)

    monkeypatch.setattr(registry._Registry, "get", get)
    monkeypatch.setattr(registry._Registry, "contains", contains)
    store = registry._Registry(prefix="test")
    store.register(registry.TRAINABLE_CLASS, "fit", _Trainable)
    store.register(registry.ENV_CREATOR, "env", _Trainable)
    return store, calls


def test_a_trainable_is_looked_up_once_per_fit_whatever_tune_asks(counted):
    store, calls = counted
    with cached_trainables():
        for _ in range(5):  # what Tune asks per trial: contains; contains + get, twice
            assert store.contains(registry.TRAINABLE_CLASS, "fit")
            first = store.get(registry.TRAINABLE_CLASS, "fit")
            assert store.get(registry.TRAINABLE_CLASS, "fit") is first
    assert first.__name__ == "_Trainable"
    assert [c[0] for c in calls] == ["contains", "get"]
    # after the fit every lookup goes to the store again
    store.contains(registry.TRAINABLE_CLASS, "fit")
    assert len(calls) == 3


def test_names_that_are_not_there_and_other_kinds_are_always_asked(counted):
    store, calls = counted
    with cached_trainables():
        for _ in range(2):
            assert not store.contains(registry.TRAINABLE_CLASS, "missing")
            with pytest.raises((KeyError, ValueError)):  # KeyError without a cluster
                store.get(registry.TRAINABLE_CLASS, "missing")
            assert store.contains(registry.ENV_CREATOR, "env")
    assert len(calls) == 6
