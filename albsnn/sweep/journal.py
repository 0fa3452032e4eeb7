"""A sweep's Optuna journal file: one storage per file in the driver, its appends fsynced in groups.

Both Optuna studies of a search sweep (the search study and the pruning study) live in
``<sweep>/optuna.journal``. Optuna's ``JournalFileBackend`` fsyncs every append, and the driver
appends two to three times per reported epoch and about five times per trial: measured on this
project's VM, ~0.28 s of waiting per fsync, the sweep's largest cost in wall time
(docs/performance.md, "Sweep driver cost at scale"). Here:

* the driver's backend writes each append as Optuna does (same lines, so the dashboard,
  ``optuna.load_study`` and other processes read it unchanged) and leaves the fsync to a timer
  thread, which syncs all appends of the last ``SYNC_S`` seconds (1 s) at once; the end of a
  sweep (:func:`sync_journals`) and the driver's exit sync what is left. A killed driver loses
  nothing (its writes are in the page cache); a machine that loses power loses at most the last
  second of appends, as if the driver had died a second earlier, which ``--resume`` handles.
* :func:`open_journal` with ``shared=True`` gives the driver one ``JournalStorage`` per file, so the
  searcher and the pruning scheduler replay each other's appends once, not twice.
* its appends are serialized by :class:`FlockLock`, an ``flock`` on ``<journal>.flock``, instead of
  Optuna's symlink lock, which creates, renames and removes a file per append: under a loaded disk
  those metadata writes waited ~2 ms each on the driver's main thread (docs/performance.md), and a
  driver killed while holding it left a lock that the resumed sweep waited 30 s to break; the kernel
  drops an ``flock`` with its process. The driver is a sweep's only writer of its journal (readers
  take no lock), so no other process needs Optuna's lock meanwhile.

    storage = open_journal(sweep_dir / "optuna.journal", shared=True)   # the driver's
    reader = open_journal(sweep_dir / "optuna.journal")                 # a fresh one, as a dashboard's
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import threading
import weakref
from pathlib import Path

from albsnn.sweep._imports import require

JournalFileBackend = require("optuna.storages.journal").JournalFileBackend

__all__ = ["SYNC_S", "FlockLock", "GroupSyncBackend", "open_journal", "sync_journals"]

SYNC_S = 1.0  # longest time an append waits for its fsync while the driver keeps appending
_shared: dict[str, object] = {}  # resolved path -> JournalStorage (the driver's)
# every live GroupSyncBackend of this process, synced at exit (one with unsynced appends is live:
# its timer holds it)
_backends: weakref.WeakSet = weakref.WeakSet()
_lock = threading.RLock()  # open_journal holds it while a backend registers


def open_journal(path: str | Path, *, shared: bool = False):
    """An Optuna ``JournalStorage`` over the file ``path`` (what ``optuna-dashboard`` opens).

    ``shared``: the driver's one storage of that file (group-synced appends); otherwise a new storage
    with Optuna's own backend (an fsync per append), as any other reader or writer would open it.
    """
    storages = require("optuna.storages")
    if not shared:
        return storages.JournalStorage(JournalFileBackend(str(path)))
    key = str(Path(path).resolve())
    with _lock:
        if key not in _shared:
            _shared[key] = storages.JournalStorage(GroupSyncBackend(key))
        return _shared[key]


def sync_journals() -> None:
    """fsync every journal append of this process not yet on disk (the end of a sweep, exit)."""
    for backend in list(_backends):
        backend.sync()


atexit.register(sync_journals)


class FlockLock:
    """An exclusive ``flock`` on ``<journal>.flock`` (created once, never removed), between threads and
    processes; released by the kernel when its holder dies. (Optuna's lock interface: ``acquire`` and
    ``release``; its base class is private.)"""

    def __init__(self, journal_path: str) -> None:
        self.path = journal_path + ".flock"
        self._setup()

    def _setup(self) -> None:
        self._fd, self._thread_lock = None, threading.Lock()  # flock does not exclude threads of one process

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._setup()

    def acquire(self) -> bool:
        self._thread_lock.acquire()
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise
        return True

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()


class GroupSyncBackend(JournalFileBackend):
    """Optuna's ``JournalFileBackend``; an append is fsynced by a timer thread within ``SYNC_S``
    seconds, with every other append of that interval (the driver never waits for the disk)."""

    def __init__(self, file_path: str, lock_obj=None):
        super().__init__(file_path, lock_obj or FlockLock(file_path))
        self._setup()

    def _setup(self) -> None:
        self._state_lock, self._dirty, self._timer = threading.Lock(), False, None
        with _lock:
            _backends.add(self)

    # Ray pickles the searcher, and with it this storage, into the Tuner's state (--resume).
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for name in ("_state_lock", "_dirty", "_timer"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._setup()

    def append_logs(self, logs: list[dict]) -> None:
        text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
        self._lock.acquire()  # between this driver's threads and any other process writing this journal
        try:
            with open(self._file_path, "ab") as f:
                f.write(text.encode("utf-8"))
        finally:
            self._lock.release()
        with self._state_lock:
            self._dirty = True
            if self._timer is None:
                self._timer = threading.Timer(SYNC_S, self.sync)
                self._timer.daemon = True
                self._timer.start()

    def sync(self) -> None:
        with self._state_lock:
            if self._timer is not None:
                self._timer.cancel()  # a no-op when the timer itself is calling
                self._timer = None
            if not self._dirty:
                return
            self._dirty = False
        try:
            fd = os.open(self._file_path, os.O_RDONLY)
        except FileNotFoundError:
            return  # its folder was removed (a finished sweep, a test's temporary study): nothing to keep
        try:
            os.fsync(fd)  # the file's pages, whichever descriptor wrote them
        finally:
            os.close(fd)
