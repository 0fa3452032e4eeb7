"""``albsnn ui``: the MLflow UI (or optuna-dashboard) for this folder's sweeps, on 127.0.0.1."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from albsnn.cli import Command
from albsnn.errors import ConfigError

HOST = "127.0.0.1"
STOP_S = 2.0  # Ctrl-C to no server process left
KILL_AFTER_S = 0.5  # the last part of STOP_S: SIGKILL for what SIGTERM did not end


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _newest_journal(root: Path) -> Path:
    journals = sorted(root.glob("*/*/optuna.journal"), key=lambda p: p.stat().st_mtime)
    if not journals:
        raise ConfigError(
            f"no Optuna journal under {root}; run `albsnn sweep` first or pass --dashboard FILE"
        )
    return journals[-1]


def _store(args: argparse.Namespace) -> tuple[str, Path | None]:
    """The MLflow store the UI serves (``--tracking-uri``, else ./runs/mlflow.db) and its SQLite file."""
    from albsnn.sweep.tracking.layout import default_tracking_uri, sqlite_path

    uri = args.tracking_uri or default_tracking_uri()
    return uri, sqlite_path(uri)


def ui_command(args: argparse.Namespace) -> tuple[list[str], str]:
    """The server command line and the URL it will serve (checked, not started)."""
    if args.dashboard is not None:
        journal = Path(args.dashboard) if args.dashboard else _newest_journal(Path(args.sweeps).resolve())
        if not journal.is_file():
            raise ConfigError(f"--dashboard: {journal} is not an Optuna journal file")
        exe = Path(sys.executable).with_name("optuna-dashboard")
        exe = str(exe) if exe.exists() else shutil.which("optuna-dashboard")
        if not exe:
            raise ConfigError("optuna-dashboard is not installed: pip install optuna-dashboard")
        port = args.port or 8080
        argv = [exe, str(journal.resolve()), "--storage-class", "JournalFileStorage", "--host", HOST]
        return [*argv, "--port", str(port)], f"http://{HOST}:{port}"
    uri, database = _store(args)
    if database is not None and not database.is_file():
        raise ConfigError(
            f"no MLflow database at {database}; run `albsnn sweep` first or pass --tracking-uri"
        )
    port = args.port or 5000
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    return argv, f"http://{HOST}:{port}"


class Ui(Command):
    """Start the MLflow UI for this folder's sweeps on 127.0.0.1 and print its URL.

    With --dashboard, start optuna-dashboard on a sweep's Optuna journal instead (the newest under
    runs/sweeps by default). Ctrl-C stops the server and every process it started within 2 s.

    Example:
        albsnn ui                                  # http://127.0.0.1:5000, ./runs/mlflow.db
        albsnn ui --dashboard                      # http://127.0.0.1:8080, newest sweep's study
        albsnn ui --tracking-uri sqlite:////data/sweeps/mlflow.db --port 5050
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--tracking-uri", help="MLflow store (default: sqlite:///<working folder>/runs/mlflow.db)"
        )
        parser.add_argument("--port", type=int, help="port (default: 5000; 8080 with --dashboard)")
        parser.add_argument(
            "--dashboard",
            nargs="?",
            const="",
            metavar="JOURNAL",
            help="optuna-dashboard on JOURNAL (default: the newest runs/sweeps/*/*/optuna.journal)",
        )
        parser.add_argument("--sweeps", default="runs/sweeps", help="where --dashboard looks for sweeps")
        parser.add_argument(
            "--print-only", action="store_true", help="print the URL and command, start nothing"
        )

    def take_action(self, args: argparse.Namespace) -> int:
        argv, url = ui_command(args)
        if (
            args.tracking_uri
            and args.tracking_uri.startswith(("http://", "https://"))
            and args.dashboard is None
        ):
            print(f"MLflow UI: {args.tracking_uri} (served by that tracking server)")
            return 0
        port = int(argv[-1])
        link = None if args.dashboard is not None else _newest_sweep_link(args, url)
        if args.print_only:
            print(url)
            print(" ".join(argv))
            if link:
                print(f"newest sweep: {link}")
            return 0
        if not _free(port):
            raise ConfigError(f"port {port} on {HOST} is in use; pass --port")
        print(
            f"{'optuna-dashboard' if args.dashboard is not None else 'MLflow UI'}: {url}  (Ctrl-C stops it)",
            flush=True,
        )
        if link:
            print(f"newest sweep: {link}", flush=True)
        return serve(argv)


def _newest_sweep_link(args: argparse.Namespace, url: str) -> str | None:
    """The UI page of the most recently updated experiment, on its training runs (None if none).

    MLflow 3.17 opens an experiment on its GenAI pages unless the URL asks for training runs
    (:func:`~albsnn.sweep.tracking.layout.ui_url`), so a link is worth more than the bare address.
    A convenience only: whatever goes wrong here, the UI still starts.
    """
    from albsnn.sweep.tracking.layout import client, ui_url

    uri, database = _store(args)
    if database is not None and not database.is_file():
        return None  # never create a database just to look for experiments
    try:
        found = client(uri).search_experiments(
            filter_string="name != 'Default'", order_by=["last_update_time DESC"], max_results=1
        )
    except Exception:  # noqa: BLE001 - see the docstring
        return None
    return ui_url(url, found[0].experiment_id) if found else None


def serve(argv: list[str]) -> int:
    """Run the server until it exits, or until Ctrl-C / SIGTERM, which stop its whole process group.

    The server runs in its own session, so the terminal's Ctrl-C reaches only us; we then end the
    group (the server and the workers it forked) within :data:`STOP_S` seconds: SIGTERM, SIGKILL
    for whatever is left. A second Ctrl-C meanwhile cannot cut the clean-up short.
    """
    process = subprocess.Popen(argv, start_new_session=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return process.wait()
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _stop_group(process)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _stop_group(process: subprocess.Popen) -> None:
    deadline = time.monotonic() + STOP_S
    for sig, until in ((signal.SIGTERM, deadline - KILL_AFTER_S), (signal.SIGKILL, deadline)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        while time.monotonic() < until:
            process.poll()  # reap the server itself; its forked workers are reaped by init
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)
    process.wait()
