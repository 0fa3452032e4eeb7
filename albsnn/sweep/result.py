"""What a finished (or interrupted) sweep reports: :class:`SweepResult` and its summary lines."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from albsnn.sweep.tracking.layout import ui_url

__all__ = ["SweepResult"]


@dataclass
class SweepResult:
    """What a finished (or interrupted) sweep reports."""

    sweep_id: str
    sweep_dir: Path
    experiment: str
    experiment_id: str
    parent_run_id: str
    tracking_uri: str
    counts: dict[str, int] = field(default_factory=dict)  # FINISHED / PRUNED / FAILED (MLflow tags)
    ray_trials: int = 0
    interrupted: bool = False
    optuna_storage: Path | None = None
    optuna_study: str | None = None
    # The report is the caller's (`albsnn sweep` makes it after the sweep): the sweep says whether the
    # pipeline wants one and the sweep ended whole (report_due), and where it goes.
    report_due: bool = False
    report_out_dir: str | None = None
    report_path: Path | None = None
    report_error: str | None = None
    wall_seconds: float = 0.0
    tracking_notes: list[str] = field(default_factory=list)  # outages and how they ended, problems
    # the confirmation of the Pareto front (pipeline `confirm`); counts are of confirmation runs only
    confirm_seeds: list[int] = field(default_factory=list)
    confirm_counts: dict[str, int] = field(default_factory=dict)
    confirm_points: list = field(default_factory=list)  # albsnn.sweep.confirm.ConfirmedPoint

    def summary(self) -> str:
        c = self.counts
        lines = [
            f"experiment:    {self.experiment} (id {self.experiment_id}) at {self.tracking_uri}",
            f"parent run:    {self.parent_run_id}",
            f"trials:        {c.get('FINISHED', 0)} finished, {c.get('PRUNED', 0)} pruned, "
            f"{c.get('FAILED', 0)} failed ({self.ray_trials} Ray trials, {self.wall_seconds:.0f} s)",
            f"sweep folder:  {self.sweep_dir}",
        ]
        if self.confirm_seeds:
            lines.append(f"confirmation:  {self._confirm_line()}")
        if self.optuna_storage:
            lines.append(f"optuna study:  {self.optuna_study} in {self.optuna_storage}")
        if self.report_path:
            lines.append(f"report:        {self.report_path}")
        else:
            why = f" ({self.report_error})" if self.report_error else ""
            lines.append(
                f"report:        not generated{why}; run: albsnn report --parent-run {self.parent_run_id} "
                f"--tracking-uri {shlex.quote(self.tracking_uri)}"
            )
        if self.tracking_uri.startswith(("http://", "https://")):
            lines.append(f"MLflow UI:     {ui_url(self.tracking_uri, self.experiment_id)}")
        else:
            lines.append(
                f"MLflow UI:     `albsnn ui`, then {ui_url('http://127.0.0.1:5000', self.experiment_id)}"
            )
        lines += [f"MLflow:        {problem}" for problem in self.tracking_notes]
        if self.interrupted:
            lines.append("interrupted:   continue with the same command plus --resume")
        return "\n".join(lines)

    def _confirm_line(self) -> str:
        c, points = self.confirm_counts, self.confirm_points
        if not c and not points:
            return f"seeds {self.confirm_seeds}: not run (the search did not finish)"
        survive = sum(p.survives for p in points)
        verdict = (
            "survival is decided when every run has ended"
            if self.interrupted
            else f"{survive} of {len(points)} survive on validation seed means"
        )
        return (
            f"{len(points)} Pareto point(s) x seeds {self.confirm_seeds}: {c.get('FINISHED', 0)} finished, "
            f"{c.get('FAILED', 0)} failed; {verdict}"
        )
