"""``albsnn report``: tables and figures of a sweep, read back from MLflow."""

from __future__ import annotations

import argparse

from albsnn.cli import Command

__all__ = ["Report"]


class Report(Command):
    """Write a sweep's report (HTML, Markdown, CSV, PNG/SVG) and log it to the sweep's MLflow run.

    Reads the trial runs of an experiment (every sweep in it) or of one sweep's parent run, and the
    sweep's Optuna journal when there is one. Writes OUT/index.html (self-contained), report.md,
    one CSV per table (pareto.csv has run_id), figures/*.png and *.svg. See docs/reports.md.

    Examples:
        albsnn report --experiment demo
        albsnn report --parent-run 3f2a9c...                     # -> runs/reports/<sweep>/
        albsnn report --experiment fmnist-pareto --out reports/fmnist-pareto   # a committed example
        albsnn report --experiment ablation-bwo --test wilcoxon --tracking-uri sqlite:////data/mlflow.db
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--experiment", metavar="NAME", help="MLflow experiment: every sweep in it")
        which.add_argument("--parent-run", metavar="ID", help="one sweep: its parent run's id")
        parser.add_argument(
            "--tracking-uri",
            metavar="URI",
            help="MLflow tracking URI (default: sqlite:///<current folder>/runs/mlflow.db)",
        )
        parser.add_argument("--out", metavar="DIR", help="report folder (default: runs/reports/NAME)")
        parser.add_argument(
            "--test",
            choices=("t", "wilcoxon"),
            default="t",
            help="paired test over seeds in the ablation table (default: t, the paired t-test)",
        )
        parser.add_argument(
            "--no-log-artifacts",
            dest="log_artifacts",
            action="store_false",
            help="do not log the report to the sweep's parent run",
        )

    def take_action(self, args: argparse.Namespace) -> int:
        from albsnn.report import generate_report
        from albsnn.sweep.tracking.layout import default_tracking_uri

        uri = args.tracking_uri or default_tracking_uri()
        out = generate_report(
            uri,
            experiment=args.experiment,
            parent_run_id=args.parent_run,
            out_dir=args.out,
            test=args.test,
            log_artifacts=args.log_artifacts,
        )
        print(f"report: {out / 'index.html'}")
        return 0
