"""One driver per sweep: an exclusive lock on ``<sweep folder>/driver.lock`` for as long as it runs.

The lock is an ``fcntl.flock`` on a file that also records who holds it (``pid host command``):
the kernel drops it when the process ends however it ends (kill -9 included), so a crashed driver
never leaves a stale lock behind, and a second ``albsnn sweep --resume`` of the same sweep fails at
once with a message naming the holder.

    with sweep_lock(sweep_dir):
        ...  # run or resume the sweep
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from albsnn.errors import ConfigError

__all__ = ["LOCK_FILE", "sweep_lock", "lock_holder"]

LOCK_FILE = "driver.lock"


def lock_holder(sweep_dir: Path) -> str | None:
    """``pid N on HOST (COMMAND)`` of the driver holding ``sweep_dir``'s lock, or None when free."""
    path = Path(sweep_dir) / LOCK_FILE
    if not path.exists():
        return None
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            return _describe(f.read())
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def _describe(text: str) -> str:
    pid, _, rest = text.strip().partition(" ")
    host, _, command = rest.partition(" ")
    where = f"pid {pid or '?'} on {host or '?'}"
    return f"{where} ({command})" if command else where


@contextlib.contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """Hold ``sweep_dir``'s driver lock; a ConfigError naming the holder when another driver has it."""
    path = Path(sweep_dir) / LOCK_FILE
    f = open(path, "a+")  # noqa: SIM115 - held open for the lifetime of the lock
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise ConfigError(
                f"sweep {Path(sweep_dir).name} is already being run by {_describe(f.read())}; "
                f"wait for it to end or stop that process (lock: {path})"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()} {socket.gethostname()} {' '.join(sys.argv)}\n")
        f.flush()
        yield
    finally:
        f.close()  # closing the file releases the lock
