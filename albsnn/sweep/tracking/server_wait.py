"""The calls a sweep makes to an MLflow server before its spool exists: said at once when they wait.

Once the parent run exists every record goes through the spool (:mod:`.spool`) and training never
waits for MLflow. Before that (the experiment, the parent run, a resumed sweep's parent) the calls
are synchronous, and a server that stops answering between the start-up check and the parent run
would leave the sweep silent while MLflow's client retries. :func:`call_server` makes such a call:

* the server answers: the value, nothing printed;
* it refuses, or has not answered after ``slow_s`` seconds: one line at once, what waits and since
  when; the call is retried until the server answers (one more line: after how long) or ``wait_s``
  seconds have passed;
* then a :class:`~albsnn.errors.ConfigError` with one line (``albsnn sweep`` exits 2); nothing was
  trained. ``wait_s=0`` (``--mlflow-wait 0``) fails at the first failed request.

An error MLflow answers with (a deleted experiment, a missing run) is raised at once: waiting cannot
mend it. Only ``http(s)://`` stores can be down; other stores are called once, as before.

    experiment_id = call_server(uri, "creating the experiment", lambda: ensure(uri, name), wait_s=300)
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from albsnn.errors import ConfigError
from albsnn.sweep.tracking.writer import fail_fast_http, first_line, is_permanent

__all__ = ["WAIT_S", "call_server"]

WAIT_S = 300.0  # --mlflow-wait's default: longer than a server restart takes
SLOW_S = 5.0  # a request unanswered this long is said to wait (a stopped server never refuses)
_MAX_PAUSE = 10.0
T = TypeVar("T")


def call_server(
    uri: str,
    what: str,
    call: Callable[[], T],
    *,
    wait_s: float = WAIT_S,
    slow_s: float = SLOW_S,
    say: Callable[[str], None] | None = None,
) -> T:
    """``call()``, retried while the MLflow server at ``uri`` does not answer (see the module)."""
    if not uri.startswith(("http://", "https://")):
        return call()
    fail_fast_http(uri)  # one request fails in seconds: the waiting is ours, and said
    wait = _Wait(uri, what, wait_s, say or _stderr)
    while True:
        attempt = time.time()
        timer = threading.Timer(slow_s, wait.begin, args=(f"no answer for {slow_s:.0f} s", attempt))
        timer.daemon = True
        timer.start()
        try:
            value = call()
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001 - MLflow and requests raise many types for a down server
            if is_permanent(e):
                raise
            wait.failed(_reason(e), attempt)
            continue
        finally:
            timer.cancel()
        wait.answered()
        return value


class _Wait:
    """One start-up call's waiting: the line said at once, the retries' pace, the line given up with."""

    def __init__(self, uri: str, what: str, wait_s: float, say: Callable[[str], None]):
        self.uri, self.what, self.wait_s, self.say = uri, what, wait_s, say
        self.since: float | None = None  # wall time of the first request left unanswered
        self.started = time.monotonic()
        self.pause = 0.5
        self._lock = threading.Lock()

    def begin(self, reason: str, attempt: float) -> None:
        with self._lock:
            if self.since is not None:
                return
            self.since = attempt
        if self.wait_s > 0:
            when = time.strftime("%H:%M:%S", time.localtime(self.since))
            self.say(
                f"MLflow: {self.uri} does not answer ({reason}) since {when}; {self.what} waits for it, "
                f"up to {self.wait_s:.0f} s (--mlflow-wait); nothing is trained meanwhile"
            )

    def failed(self, reason: str, attempt: float) -> None:
        """Note a failed request; pause before the next, or raise the one line when time is up."""
        waited = time.monotonic() - self.started
        if waited >= self.wait_s:
            raise ConfigError(
                f"the MLflow tracking server {self.uri} did not answer while {self.what} ({reason}; "
                f"waited {waited:.0f} s, --mlflow-wait {self.wait_s:.0f}); nothing was trained: start the "
                "server and run the same command again, or wait longer with --mlflow-wait SECONDS"
            )
        self.begin(reason, attempt)
        time.sleep(min(self.pause, self.wait_s - waited))
        self.pause = min(self.pause * 2, _MAX_PAUSE)

    def answered(self) -> None:
        if self.since is not None and self.wait_s > 0:
            down = time.time() - self.since
            self.say(f"MLflow: {self.uri} answers again after {down:.0f} s; {self.what} goes on")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


_REASONS = {  # what requests says deep in MLflow's message -> what a user reads
    "connection refused": "connection refused",
    "timed out": "no answer within the request timeout",
    "connection reset": "connection reset",
    "remotedisconnected": "connection closed without an answer",
}


def _reason(error: Exception) -> str:
    text = first_line(error)
    lower = text.lower()
    return next((short for key, short in _REASONS.items() if key in lower), text[:160])
