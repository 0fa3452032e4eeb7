"""A report from real training runs logged as docs/tracking.md says: files, HTML, numbers.

The store (``logged_sweeps`` in conftest.py) holds REAL digits runs trained by ``albsnn.train.fit``
and logged by the fixture in the sweep's layout (not through ``albsnn sweep``).
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from albsnn.pareto import ACCURACY_STORAGE, pareto_mask
from albsnn.report.figures import FIGURES
from albsnn.report.source import TEST_ACCURACY as TEST
from albsnn.report.source import VAL_ACCURACY as VAL

TABLES = (
    "counts",
    "pareto",
    "hypervolume",
    "ablation",
    "time_steps",
    "layer_map",
    "estimator_check",
    "importances",
    "trials",
)


@pytest.fixture(scope="module")
def mlflow_runs(logged_sweeps) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(logged_sweeps.tracking_uri)
    return {rid: client.get_run(rid) for rid in logged_sweeps.children}


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def test_every_file_exists(report):
    for name in ("index.html", "report.md", "report.json", *(f"{t}.csv" for t in TABLES)):
        assert (report / name).is_file(), name
    for name in FIGURES:  # the fixture has data for every figure
        for ext in ("png", "svg"):
            path = report / "figures" / f"{name}.{ext}"
            assert path.is_file() and path.stat().st_size > 1000, path
    assert not list(report.parent.glob(".e2e.*")), "a temporary build folder was left behind"
    json.loads((report / "report.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))


def test_html_embeds_every_figure_and_has_no_external_urls(report):
    html = (report / "index.html").read_text()
    embedded = re.findall(r'<img[^>]*src="data:image/png;base64,[A-Za-z0-9+/=]+"', html)
    assert len(embedded) == len(FIGURES)
    links = re.findall(r'(?:src|href)\s*=\s*["\']?([^"\'\s>]+)', html)
    assert all(link.startswith("data:") or link.startswith("#") for link in links), links
    assert "http://" not in html and "https://" not in html and "url(" not in html
    assert "<script" not in html and "<link" not in html


def test_pareto_numbers_in_report_md_and_csv_equal_mlflow(report, mlflow_runs, md_table):
    # the front is chosen on validation accuracy; each row also shows that run's test accuracy
    md = (report / "report.md").read_text()
    finished = {rid: r for rid, r in mlflow_runs.items() if r.info.status == "FINISHED"}
    acc = [r.data.metrics[VAL] for r in finished.values()]
    size = [r.data.metrics["storage_bytes"] for r in finished.values()]
    mask = pareto_mask({VAL: acc, "storage_bytes": size}, ACCURACY_STORAGE)  # the sweeps' objectives
    front = {rid for rid, on in zip(finished, mask, strict=True) if on}
    rows = md_table(md, "#")
    assert {row["run_id"] for row in rows} == front
    for row in rows:
        m = finished[row["run_id"]].data.metrics
        assert row["val accuracy"] == _pct(m[VAL])
        assert row["test accuracy"] == _pct(m[TEST])
        assert row["storage (bytes)"] == f"{int(m['storage_bytes']):,}"
        assert row["storage reduction"] == f"{100 * m['storage_reduction']:.1f}%"
    with open(report / "pareto.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert {r["run_id"] for r in csv_rows} == front
    for r in csv_rows:  # the CSV keeps full precision
        m = finished[r["run_id"]].data.metrics
        assert (float(r[VAL]), float(r[TEST])) == (m[VAL], m[TEST])
        assert float(r["storage_bytes"]) == m["storage_bytes"]


def test_report_says_it_selects_on_validation_and_reports_test(report):
    md = (report / "report.md").read_text()
    rule = (
        "selected on validation accuracy (val_accuracy, final epoch); test accuracy (test_accuracy) reported"
    )
    assert f"- **selection**: {rule}" in md
    assert rule in (report / "index.html").read_text()
    assert json.loads((report / "report.json").read_text())["selected_on"] == VAL


def test_estimator_check_table_shows_the_constructed_rank_agreement(report, logged_sweeps, md_table):
    md = (report / "report.md").read_text()
    assert "## Does the estimator estimate?" in md
    rows = {r["estimator"]: r for r in md_table(md, "estimator")}
    assert set(rows) == {"measured", "taylor", "weight-error"}
    for name, rho in logged_sweeps.check_rho.items():
        assert rows[name]["n pairs"] == "12"
        assert rows[name]["Spearman ρ (pooled)"] == f"{rho:+.2f}"
        assert rows[name]["median per-run ρ (runs)"] == f"{rho:+.2f} (4/4)"


def test_trial_counts_and_states_equal_mlflow(report, logged_sweeps, md_table):
    md = (report / "report.md").read_text()
    counts = {row["sweep"]: row for row in md_table(md, "sweep")}
    assert (counts["search"]["finished"], counts["search"]["pruned"], counts["search"]["failed"]) == (
        "4",
        "1",
        "1",
    )
    assert (counts["ablation"]["finished"], counts["all"]["total"]) == ("3", "9")
    with open(report / "trials.csv") as f:
        states = {r["run_id"]: r["state"] for r in csv.DictReader(f)}
    assert states == {rid: c["state"] for rid, c in logged_sweeps.children.items()}


def test_ablation_row_with_a_missing_seed_is_flagged_and_its_numbers_equal_mlflow(
    report, logged_sweeps, mlflow_runs, md_table
):
    import numpy as np

    md = (report / "report.md").read_text()
    rows = {r["configuration"]: r for r in md_table(md, "configuration")}
    by_bwo: dict[str, list[float]] = {}
    for rid, child in logged_sweeps.children.items():
        if "bwo" in child["params"]:
            by_bwo.setdefault(child["params"]["bwo"], []).append(mlflow_runs[rid].data.metrics[TEST])
    base = rows["(baseline) bwo=project"]
    a = np.array(by_bwo["project"])
    assert base["test accuracy % mean ± std (n/expected)"] == (
        f"{100 * a.mean():.2f} ± {100 * a.std(ddof=1):.2f} ({len(a)}/{len(logged_sweeps.ablation_seeds)})"
    )
    off = rows["bwo=off †"]
    assert off["flag"] == "missing seed(s) 1"
    assert off["test accuracy % mean ± std (n/expected)"] == f"{100 * by_bwo['off'][0]:.2f} ± – (1/2)"
    assert off["p"] == "–"  # one common seed: no paired test


def test_importances_come_from_the_optuna_journal(report):
    with open(report / "importances.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["param"] for r in rows} == {"time_steps", "estimator", "threshold"}
    for objective in (VAL, "storage_bytes"):
        assert sum(float(r["importance"]) for r in rows if r["objective"] == objective) == pytest.approx(1.0)


def test_report_is_logged_to_the_parent_run(report, logged_sweeps):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(logged_sweeps.tracking_uri)
    # --experiment logs to the sweep that started last: the ablation sweep here
    names = {Path(a.path).name for a in client.list_artifacts(logged_sweeps.ablation_parent, "report")}
    assert {"index.html", "report.md", "pareto.csv", "figures"} <= names


def test_cli_report_of_one_sweep_by_parent_run_id_imports_no_ray(logged_sweeps, tmp_path):
    # a separate interpreter, so "ray not imported" is about the report alone; default out: runs/reports/NAME
    code = (
        "import sys; from albsnn.cli import main; "
        f"rc = main(['report', '--parent-run', {logged_sweeps.search_parent!r}, "
        f"'--tracking-uri', {logged_sweeps.tracking_uri!r}]); "
        "assert 'ray' not in sys.modules, 'the report imported ray'; sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "runs" / "reports" / "search"
    assert f"report: {out / 'index.html'}" in proc.stdout
    with open(out / "trials.csv") as f:
        assert len(list(csv.DictReader(f))) == 6  # only the search sweep's trials
    assert not (out / "ablation.csv").exists()


def test_library_never_imports_the_report_package():
    code = (
        "import sys, albsnn, albsnn.train, albsnn.storage, albsnn.export, albsnn.data, albsnn.cli; "
        "assert not [m for m in sys.modules if m.startswith('albsnn.report')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_report_text_carries_no_absolute_path_of_the_machine(report, logged_sweeps):
    # The sweeps recorded absolute paths (pipeline file, sqlite:////... URI, journal); a committed
    # report must show them relative to the folder it was made from, not this machine's folders.
    folders = {str(logged_sweeps.root), str(Path.cwd()), str(report.parent)}
    absolute = re.compile(r"(?<![\w.])(?:" + "|".join(re.escape(f) for f in folders) + ")")
    texts = {p.name: p.read_text() for p in report.iterdir() if p.suffix in (".md", ".html", ".json", ".csv")}
    assert {"report.md", "index.html", "report.json"} <= set(texts)
    for name, text in texts.items():
        found = absolute.search(text)
        assert found is None, f"{name}: {text[max(found.start() - 80, 0) : found.end() + 40]!r}"
        assert "sqlite:////" not in text, name
    md = texts["report.md"]
    assert "search.yaml]" in md  # the pipeline path is still shown, relative
    assert "sqlite:///../" in md or "sqlite:///" in md
