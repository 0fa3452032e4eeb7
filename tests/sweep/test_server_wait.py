"""A sweep's start-up calls to an MLflow server that stops answering: said at once, waited for up to
``--mlflow-wait`` seconds, then one line and exit 2 (:mod:`albsnn.sweep.tracking.server_wait`)."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time

import pytest

from albsnn.cli import main
from albsnn.errors import ConfigError
from albsnn.sweep.pipeline import load_pipeline
from albsnn.sweep.start import new_sweep_dir, start_parent_run
from albsnn.sweep.tracking import runs
from albsnn.sweep.tracking.server_wait import call_server

DEAD = "http://127.0.0.1:9"  # nothing listens on the discard port: connection refused


class Down(Exception):
    """What MLflow raises for a server that does not answer (no error code)."""


class Refused(Exception):
    error_code = "RESOURCE_DOES_NOT_EXIST"  # an answer: waiting cannot mend it


def flaky(failures: int, value="ok"):
    calls = []

    def call():
        calls.append(time.monotonic())
        if len(calls) <= failures:
            raise Down("API request to http://h/api failed with exception ... [Errno 111] Connection refused")
        return value

    return call, calls


def test_a_server_back_within_the_wait_is_said_once_at_once_and_once_when_it_answers():
    said: list[str] = []
    call, calls = flaky(2)
    before = time.strftime("%H:%M:%S")
    assert call_server("http://h:5000", "creating the parent run", call, wait_s=30, say=said.append) == "ok"
    assert len(calls) == 3 and len(said) == 2, said
    waiting, back = said
    assert waiting.startswith("MLflow: http://h:5000 does not answer (connection refused) since ")
    since = re.search(r"since (\d\d:\d\d:\d\d);", waiting).group(1)
    assert before <= since <= time.strftime("%H:%M:%S")
    assert "creating the parent run waits for it, up to 30 s (--mlflow-wait)" in waiting
    assert back.startswith("MLflow: http://h:5000 answers again after ") and back.endswith("goes on")


def test_a_server_that_stays_down_ends_the_wait_with_one_line():
    said: list[str] = []
    call, calls = flaky(10**6)
    started = time.monotonic()
    with pytest.raises(ConfigError) as error:
        call_server("http://h:5000", "creating the experiment", call, wait_s=1.5, say=said.append)
    assert 1.5 <= time.monotonic() - started < 5
    assert len(calls) >= 2 and len(said) == 1  # the waiting line, then the error
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(
        "the MLflow tracking server http://h:5000 did not answer while creating the experiment"
    )
    assert "--mlflow-wait SECONDS" in message and "nothing was trained" in message


def test_wait_zero_fails_at_the_first_failed_request_without_a_waiting_line():
    said: list[str] = []
    call, calls = flaky(10**6)
    with pytest.raises(ConfigError, match="--mlflow-wait 0"):
        call_server("http://h:5000", "creating the experiment", call, wait_s=0, say=said.append)
    assert len(calls) == 1 and said == []


def test_a_request_left_unanswered_is_said_while_it_hangs():
    # a stopped server never refuses: the line must not wait for the request to time out
    said: list[str] = []
    seen_during_call: list[list[str]] = []

    def hangs():
        time.sleep(0.8)
        seen_during_call.append(list(said))
        return 7

    assert (
        call_server("http://h:5000", "creating the parent run", hangs, wait_s=30, slow_s=0.2, say=said.append)
        == 7
    )
    assert len(seen_during_call[0]) == 1 and "does not answer (no answer for 0 s)" in seen_during_call[0][0]
    assert said[1].startswith("MLflow: http://h:5000 answers again after")


def test_an_answer_that_is_an_error_is_raised_at_once_and_other_stores_are_called_once():
    said: list[str] = []

    def refused():
        raise Refused("no such run")

    with pytest.raises(Refused):
        call_server("http://h:5000", "finding the sweep's parent run", refused, wait_s=30, say=said.append)
    call, calls = flaky(1)
    with pytest.raises(Down):  # a database is not a server that comes back
        call_server("sqlite:////tmp/x.db", "creating the experiment", call, wait_s=30, say=said.append)
    assert len(calls) == 1 and said == []


def test_a_real_refused_connection_is_recognised_through_mlflow(tmp_path):
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"http://127\.0\.0\.1:9 did not answer .*connection refused"):
        call_server(DEAD, "creating the experiment", lambda: runs.ensure_experiment(DEAD, "x"), wait_s=0)
    assert time.monotonic() - started < 20  # MLflow's own retries would take minutes


def test_a_sweep_whose_server_never_answers_at_start_up_leaves_no_folder(write_pipeline, tmp_path):
    pipe = load_pipeline(write_pipeline(tmp_path, "startup"))
    sweep_dir = new_sweep_dir(pipe)
    with pytest.raises(ConfigError, match="creating the experiment"):
        start_parent_run(pipe, sweep_dir, DEAD, "albsnn sweep startup.yaml", wait_s=0)
    assert not sweep_dir.exists()


@pytest.fixture
def server_that_goes_down():
    """Answers the start-up check (an MLflow REST API), then stops listening: down after the check."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"experiments": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            threading.Thread(target=stop, daemon=True).start()

        def log_message(self, *args):
            pass

    def stop():
        server.shutdown()
        server.server_close()  # refused from now on, as a server that went away

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    thread.join(10)


def test_cli_says_what_waits_and_exits_2_when_the_server_goes_down_during_start_up(
    write_pipeline, tmp_path, capsys, server_that_goes_down
):
    uri = server_that_goes_down
    good = write_pipeline(tmp_path, "goes-down", mlflow={"experiment": "never"})
    started = time.monotonic()
    code = main(["sweep", str(good), "--tracking-uri", uri, "--mlflow-wait", "2"])
    assert code == 2
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[0].startswith(f"MLflow: {uri} does not answer (") and " since " in lines[0], err
    assert "checking the experiment waits for it, up to 2 s (--mlflow-wait)" in lines[0]
    assert err.count("error:") == 1 and "Traceback" not in err
    assert f"the MLflow tracking server {uri} did not answer while checking the experiment" in err
    assert not (tmp_path / "sweeps").exists()
