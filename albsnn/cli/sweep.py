"""``albsnn sweep``: run a pipeline's sweep on Ray Tune, tracked in MLflow, then make its report.

The sweep (:mod:`albsnn.sweep`) never imports the report (:mod:`albsnn.report`, which reads what
sweeps record): :func:`sweep_and_report` joins the two, in that order.

    result = sweep_and_report("pipelines/demo.yaml", progress=False)
    print(result.summary())       # ... report: runs/reports/<sweep id>
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from albsnn.cli import Command
from albsnn.errors import ConfigError
from albsnn.sweep.tracking.server_wait import WAIT_S

__all__ = ["Sweep", "sweep_and_report", "make_report"]

_log = logging.getLogger(__name__)


def sweep_and_report(pipeline: str | Path, **options):
    """:func:`albsnn.sweep.run_sweep` (same ``options``), then the report, when one is due."""
    from albsnn.sweep.runner import run_sweep

    result = run_sweep(pipeline, **options)
    if result.report_due:
        make_report(result)
    return result


def make_report(result) -> None:
    """Make the report of a finished sweep (:class:`~albsnn.sweep.result.SweepResult`) and note in
    ``result`` where it is, or why there is none: a failed report never fails the recorded sweep."""
    try:
        from albsnn.report import generate_report
    except ImportError as e:
        result.report_error = f"albsnn.report is not available: {e}"
        return
    try:
        out = generate_report(
            result.tracking_uri, parent_run_id=result.parent_run_id, out_dir=result.report_out_dir
        )
    except Exception as e:  # the sweep is recorded either way; say why and how to retry
        _log.exception("report generation failed")
        result.report_error = f"{type(e).__name__}: {e}"
        return
    result.report_path = Path(out)


class Sweep(Command):
    """Run the sweep a pipeline YAML describes (Ray Tune + Optuna, tracked in MLflow).

    Prints each trial's start, prune, finish or failure while it runs, and at the end the MLflow
    experiment, the parent run id, the numbers of finished / pruned / failed trials and the report.

    Example:
        albsnn sweep pipelines/demo.yaml
        albsnn sweep pipelines/demo.yaml --dry-run               # trials, resources, config; runs nothing
        albsnn sweep pipelines/demo.yaml --resume                # continue the newest sweep
        albsnn sweep pipelines/demo.yaml --resume demo-20250101-120000 --num-samples 40   # extend one
        albsnn sweep --abandon demo-20250101-120000              # end a dead sweep's runs KILLED
        albsnn sweep pipelines/fmnist-pareto.yaml --address auto --tracking-uri http://mlflow:5000
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "pipeline", nargs="?", help="pipeline YAML file (see pipelines/ and docs/sweeps.md)"
        )
        parser.add_argument(
            "--name", help="MLflow experiment name (default: the pipeline's mlflow.experiment)"
        )
        parser.add_argument(
            "--tracking-uri", help="MLflow tracking URI (default: sqlite:///<working folder>/runs/mlflow.db)"
        )
        parser.add_argument(
            "--address",
            help="join a Ray cluster: auto or ray://HOST:PORT (default: start Ray on this machine)",
        )
        parser.add_argument(
            "--resume",
            nargs="?",
            const=True,
            default=False,
            metavar="SWEEP_ID",
            help="continue a sweep of this pipeline: the newest, or SWEEP_ID",
        )
        parser.add_argument(
            "--num-samples",
            type=int,
            help="number of trials (overrides the pipeline; with --resume, raises the sweep's budget)",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="print the trial count, resources and resolved config; start nothing",
        )
        parser.add_argument(
            "--abandon",
            metavar="SWEEP_ID",
            help="end the MLflow runs of a sweep whose driver died (instead of --resume)",
        )
        parser.add_argument(
            "--mlflow-wait",
            type=float,
            default=WAIT_S,
            metavar="SECONDS",
            help="how long the start of a sweep waits, saying so at once, for an MLflow server that stops "
            f"answering before the parent run exists; then exit 2 (default {WAIT_S:.0f}; 0: exit 2 at the "
            "first failed request). Later outages never stop a sweep: records wait in its spool",
        )
        parser.add_argument("--quiet", action="store_true", help="print only the final summary")

    def take_action(self, args: argparse.Namespace) -> int:
        if args.abandon:
            from albsnn.sweep.abandon import abandon_sweep

            print(abandon_sweep(args.abandon, args.tracking_uri), flush=True)
            return 0
        if not args.pipeline:
            raise ConfigError("give a pipeline YAML file (or --abandon SWEEP_ID)")
        if args.dry_run:
            from albsnn.sweep.plan import plan_sweep

            print(
                plan_sweep(
                    args.pipeline,
                    tracking_uri=args.tracking_uri,
                    address=args.address,
                    resume=args.resume,
                    num_samples=args.num_samples,
                    experiment=args.name,
                )
            )
            return 0
        command = " ".join(shlex.quote(a) for a in ["albsnn", *sys.argv[1:]])
        result = sweep_and_report(
            args.pipeline,
            tracking_uri=args.tracking_uri,
            address=args.address,
            resume=args.resume,
            num_samples=args.num_samples,
            experiment=args.name,
            command=command,
            progress=not args.quiet,
            mlflow_wait=args.mlflow_wait,
        )
        print(result.summary(), flush=True)
        return 130 if result.interrupted else 0
