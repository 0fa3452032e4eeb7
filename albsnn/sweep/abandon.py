"""``albsnn sweep --abandon SWEEP_ID``: end a sweep whose driver died and that will not be resumed.

The sweep's spool (if its folder is still there) is sent first, so nothing it recorded is lost;
then every child run still RUNNING ends KILLED with ``albsnn.end_reason = abandoned``, and so does
the parent run. A sweep whose driver still runs on this host is refused (stop it with Ctrl-C).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from albsnn.errors import ConfigError
from albsnn.sweep.tracking import layout as L
from albsnn.sweep.tracking import runs
from albsnn.sweep.tracking.spool import SweepLog

__all__ = ["abandon_sweep", "ABANDONED"]

ABANDONED = "abandoned"


def abandon_sweep(sweep_id: str, tracking_uri: str | None = None) -> str:
    """End sweep ``sweep_id`` and its unfinished trial runs KILLED; returns a one-line account."""
    uri = tracking_uri or L.default_tracking_uri()
    L.check_tracking_uri(uri, must_exist=True)
    parent = runs.find_parent(uri, sweep_id)
    if parent.info.status != "RUNNING":
        status = parent.info.status
        raise ConfigError(f"--abandon: sweep {sweep_id!r} already ended {status}; nothing to abandon")
    if runs.driver_alive(parent):
        driver = parent.data.tags[L.DRIVER]
        raise ConfigError(
            f"--abandon: sweep {sweep_id!r} is still running (driver {driver}); stop it with Ctrl-C first"
        )
    experiment_id, parent_id = parent.info.experiment_id, parent.info.run_id
    folder = Path(parent.data.tags.get(L.SWEEP_DIR, ""))
    with tempfile.TemporaryDirectory(prefix="albsnn-abandon-") as tmp:
        log = SweepLog(folder if folder.name and folder.is_dir() else tmp, uri, experiment_id, parent_id)
        unsent = log.pending
        log.flush(timeout=120)
        running = f"{L.children_filter(parent_id)} and attributes.status = 'RUNNING'"
        unfinished = len(L.search_all(L.client(uri), [experiment_id], running))
        log.kill_unfinished(ABANDONED)
        log.end_sweep("KILLED", reason=ABANDONED)
        left = log.close(timeout=120)
    if left:
        raise ConfigError(
            f"--abandon: {left} record(s) could not be sent to {uri}; run it again when it answers"
        )
    return (
        f"sweep {sweep_id} abandoned: parent run {parent_id} and {unfinished} unfinished trial run(s) "
        f"ended KILLED ({unsent} spooled record(s) sent first)"
    )
