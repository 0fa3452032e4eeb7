"""Generated reports of sweeps: Pareto fronts, hypervolume, ablation statistics, curves.

The report reads MLflow only (plus the sweep's Optuna journal when its parent run names one), in
the layout ``docs/tracking.md`` fixes, computes one typed :class:`ReportInfo` (Pareto points,
hypervolume, ablation rows, estimator check, ...) and renders it to::

    OUT/index.html        one self-contained page (figures embedded, no external URL)
    OUT/report.md         the same tables, pasteable
    OUT/<table>.csv       one CSV per table; pareto.csv has a run_id column
    OUT/figures/*.png|svg every figure in both formats
    OUT/report.json       the info record itself

and logs ``OUT`` to the sweep's parent run as the artifact folder ``report/``. The library part
of albsnn never imports this package. Rule of evidence: the report selects (Pareto front,
hypervolume, best run) on validation accuracy and reports the test accuracy of what it selected.

Example::

    from albsnn.report import generate_report
    out = generate_report("sqlite:////abs/path/mlflow.db", experiment="demo")
    print(out / "index.html")

or ``albsnn report --experiment demo``. See ``docs/reports.md``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from albsnn.errors import AlbsnnError
from albsnn.pareto import hypervolume_2d, pareto_mask
from albsnn.report.ablation import (
    AblationInfo,
    AblationRow,
    Contrast,
    ContrastInfo,
    holm,
    paired_contrasts,
    paired_test,
)
from albsnn.report.estimator_check import EstimatorCheckInfo, estimator_check
from albsnn.report.info import ReportInfo, build_info
from albsnn.report.pareto import HypervolumeInfo, ParetoInfo, ParetoPoint
from albsnn.report.source import RunsData, load_runs

__all__ = [
    "generate_report",
    "write_report",
    "load_runs",
    "build_info",
    "RunsData",
    "ReportInfo",
    "ParetoInfo",
    "ParetoPoint",
    "HypervolumeInfo",
    "AblationInfo",
    "AblationRow",
    "Contrast",
    "ContrastInfo",
    "EstimatorCheckInfo",
    "estimator_check",
    "pareto_mask",
    "hypervolume_2d",
    "paired_test",
    "paired_contrasts",
    "holm",
]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "report"


def _csv_value(x):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    return x


def _json_safe(x):
    # strict JSON: NaN/inf become null, numpy scalars plain numbers, anything else its str()
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    if isinstance(x, bool | str) or x is None:
        return x
    if isinstance(x, int | float) or hasattr(x, "item"):
        value = x.item() if hasattr(x, "item") else x
        return None if isinstance(value, float) and not math.isfinite(value) else value
    return str(x)


def write_report(info: ReportInfo, folder: Path) -> None:
    """Render ``info`` into an existing empty ``folder`` (figures, CSVs, Markdown, HTML, JSON)."""
    from albsnn.report.figures import save_figures
    from albsnn.report.render import render_html, render_markdown
    from albsnn.report.tables import build_tables

    figures = save_figures(info, folder / "figures")
    tables = build_tables(info)
    for t in tables.values():
        with open(folder / f"{t.name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(t.columns)
            w.writerows([[_csv_value(x) for x in row] for row in t.rows])
    (folder / "report.md").write_text(render_markdown(info, tables, figures))
    (folder / "index.html").write_text(render_html(info, tables, figures))
    (folder / "report.json").write_text(json.dumps(_json_safe(info.to_dict()), indent=1) + "\n")


_REPORT_MARKERS = ("index.html", "report.md")


def _check_out(out: Path) -> None:
    # the old report is replaced whole, so never replace a folder that is not one (say, --out .)
    if out.is_file():
        raise AlbsnnError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not all((out / m).is_file() for m in _REPORT_MARKERS):
        raise AlbsnnError(f"--out {out} exists and is not a report folder; give a new or empty folder")


def _replace_folder(built: Path, out: Path) -> None:
    # swap in the finished folder: a reader never sees a half-written report
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        os.replace(out, old / out.name)
    os.replace(built, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def generate_report(
    tracking_uri: str,
    experiment: str | None = None,
    parent_run_id: str | None = None,
    out_dir: str | Path | None = None,
    *,
    test: str = "t",
    log_artifacts: bool = True,
) -> Path:
    """Read a sweep from MLflow, write its report folder, and log it to the sweep's parent run.

    Args:
        tracking_uri: MLflow tracking URI, e.g. ``sqlite:////abs/path/mlflow.db`` or ``http://host:5000``.
        experiment: report every sweep of this experiment (hypervolumes compared side by side) ...
        parent_run_id: ... or only the children of this sweep's parent run (exactly one of the two).
        out_dir: the report folder; default ``runs/reports/NAME`` (NAME: the experiment, or the sweep's
            run name). Built in a temporary folder beside it and renamed into place, so a failure
            leaves no partial folder and an old report is replaced whole.
        test: paired test of the ablation table, ``"t"`` (paired t-test) or ``"wilcoxon"``.
        log_artifacts: log the folder to the parent run as ``report/`` (with ``--experiment``: to
            the sweep that started last). A failure to log is a warning; the local report stands.

    Returns:
        The report folder (``index.html`` is in it).

    Raises:
        AlbsnnError: unknown experiment or run, no finished runs, a tracking URI that does not
            answer, or an ``out_dir`` that is a file or a non-empty folder that is not a report.
    """
    if out_dir is not None:
        _check_out(Path(out_dir).resolve())
    data = load_runs(tracking_uri, experiment=experiment, parent_run_id=parent_run_id)
    try:
        info = build_info(data, test=test)
    finally:
        data.close()
    # User runs go under runs/ (git-ignored); committed example reports name their --out.
    out = Path(out_dir) if out_dir is not None else Path("runs") / "reports" / _safe_name(data.title)
    out = out.resolve()
    _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        write_report(info, building)
        _replace_folder(building, out)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    if log_artifacts:
        _log(data, parent_run_id, out)
    return out


def _log(data: RunsData, parent_run_id: str | None, out: Path) -> None:
    target = parent_run_id or (data.sweeps[-1].run_id if data.sweeps else None)
    if target is None:
        return
    try:
        data.client.log_artifacts(target, str(out), artifact_path="report")
    except Exception as e:  # the artifact store may be read-only or remote and down; the files exist locally
        print(f"warning: could not log the report to MLflow run {target}: {e}", file=sys.stderr)
