"""``albsnn sweep``: run a pipeline's sweep on Ray Tune, tracked in MLflow."""

from __future__ import annotations

import argparse
import shlex
import sys

from albsnn.cli import Command
from albsnn.errors import ConfigError


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
        from albsnn.sweep.runner import run_sweep

        command = " ".join(shlex.quote(a) for a in ["albsnn", *sys.argv[1:]])
        result = run_sweep(
            args.pipeline,
            tracking_uri=args.tracking_uri,
            address=args.address,
            resume=args.resume,
            num_samples=args.num_samples,
            experiment=args.name,
            command=command,
            progress=not args.quiet,
        )
        print(result.summary(), flush=True)
        return 130 if result.interrupted else 0
