"""The local Ray instance a sweep driver starts, and the one a killed driver left behind.

``albsnn sweep`` without ``--address`` starts Ray on this machine and stops it at the end. A driver
killed with ``kill -9`` never does: Ray's agents (dashboard agent, runtime-env agent) and sometimes
the raylet keep running. So the driver records its Ray session in ``<storage>/.local-ray/<pid>.json``
while it runs (removed on a normal exit), and the next sweep that starts or resumes on the same
storage ends every process of a recorded session whose driver is gone.

A process belongs to a session when it holds a file open in the session's folder
(``/tmp/ray/session_…``): every Ray process keeps its logs open there, including the agents whose
command line no longer names the session. Where ``/proc`` is not available the sweep prints how to
end them instead (``ray stop``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from pathlib import Path

__all__ = ["RECORD_DIR", "record", "release", "end_stale", "session_processes"]

RECORD_DIR = ".local-ray"
GRACE_S = 3.0  # seconds between SIGTERM and SIGKILL
_PROC = Path("/proc")


def _started(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (tells a reused pid apart), or None."""
    try:
        return (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _session_dir() -> str | None:
    import ray

    try:  # not public API: Ray offers no other way to name the session's folder
        return str(Path(ray._private.worker._global_node.get_session_dir_path()).resolve())
    except Exception:
        return None


def record(storage: Path) -> Path | None:
    """Write this driver's Ray session to ``storage/.local-ray/<pid>.json``; None when unknown."""
    session = _session_dir()
    if session is None:
        return None
    path = storage / RECORD_DIR / f"{os.getpid()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {
        "driver_pid": os.getpid(),
        "driver_started": _started(os.getpid()),
        "host": socket.gethostname(),
        "session_dir": session,
    }
    path.write_text(json.dumps(info, indent=1))
    return path


def release(path: Path | None) -> None:
    """Forget a record: its driver stopped its Ray itself."""
    if path is not None:
        path.unlink(missing_ok=True)


def _driver_alive(info: dict) -> bool:
    started = _started(info["driver_pid"])
    return started is not None and started == info.get("driver_started")


def session_processes(session_dir: str) -> list[int]:
    """Pids of the processes (not this one) holding a file open under ``session_dir``."""
    root = os.path.join(os.path.realpath(session_dir), "")
    found = []
    for entry in _PROC.iterdir() if _PROC.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to read
            if any(os.readlink(fd).startswith(root) for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
    return found


def _terminate(pids: list[int], grace_s: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            pids = [p for p in pids if _PROC.joinpath(str(p)).exists() and not _zombie(p)]
            if not pids:
                return
            time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        return (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def end_stale(storage: Path, grace_s: float = GRACE_S) -> list[str]:
    """End the Ray instances recorded under ``storage`` whose driver died; returns what was done."""
    said = []
    for path in sorted((storage / RECORD_DIR).glob("*.json")):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if info.get("host") != socket.gethostname() or _driver_alive(info):
            continue  # another machine's, or a sweep that is still running
        session = info["session_dir"]
        if not _PROC.is_dir():
            said.append(
                f"a sweep driver (pid {info['driver_pid']}) ended without stopping its Ray (session "
                f"{session}); if Ray processes are left, `ray stop` ends every local Ray instance"
            )
        elif pids := session_processes(session):
            _terminate(pids, grace_s)
            said.append(
                f"ended {len(pids)} process(es) of the Ray instance left by a killed sweep driver "
                f"(pid {info['driver_pid']}, session {session})"
            )
        path.unlink(missing_ok=True)
    return said
