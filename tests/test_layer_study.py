"""benchmarks/layer_study.py: the design refuses incomplete cells, and the report is recomputed from
run files with the contrasts it says (random = mean of its draws; the static control chosen on
validation)."""

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def study(load_benchmark):
    return load_benchmark("layer_study")


@pytest.mark.parametrize(
    "cells, message",
    [
        (["adaptive", "deepest"], "cell 'adaptive' needs its control 'random'"),
        (["bwo", "random"], "cell 'bwo' needs its control 'adaptive'"),
        (["rule"], "cell 'rule' needs its control 'none'"),
        (["adaptive", "random"], "needs a static control"),
        (["adaptive", "oracle"], "unknown cell(s) ['oracle']"),
    ],
)
def test_a_cell_without_its_control_is_one_line_exit_2_and_nothing_recorded(
    study, cells, message, tmp_path, capsys
):
    assert study.main(["--cells", *cells, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_plan_runs_draws_for_random_and_the_threshold_cells_on_three_seeds(study):
    runs = study.plan(["adaptive", "random", "deepest", "rule", "none"], [0, 1, 2, 3], draws=3)
    assert [r for r in runs if r[1] == 0] == [
        ("adaptive", 0, 0),
        ("random", 0, 0),
        ("random", 0, 1),
        ("random", 0, 2),
        ("deepest", 0, 0),
        ("rule", 0, 0),
        ("none", 0, 0),
    ]
    assert {c for c, s, _ in runs if s == 3} == {"adaptive", "random", "deepest"}


def _write(
    out: Path, cell: str, seed: int, test: float, val: float, draw: int = 0, layers=("conv5", "conv6")
):
    record = {
        "cell": cell,
        "seed": seed,
        "draw": draw,
        "result": {
            "test_accuracy": test,
            "val_accuracy": val,
            "storage_reduction": 0.375,
            "binarized_layers": list(layers),
            "decisions": [{"epoch": 2, "layers": list(layers), "cost": 0.1, "upper": 0.5, "summed": 0.2}],
            "bwo_epoch": None,
        },
        "wall_seconds": 60.0,
        "provenance": {"commit": "0" * 40, "cpu": "test CPU"},
    }
    path = out / "runs" / f"{study_name(cell, seed, draw)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def study_name(cell, seed, draw):
    return f"{cell}{draw if cell == 'random' else ''}-s{seed}"


def test_report_contrasts_adaptive_with_the_mean_of_the_draws_and_picks_the_static_rule_on_validation(
    study, tmp_path
):
    adaptive = {0: 0.860, 1: 0.870, 2: 0.865}
    draws = {0: (0.850, 0.856), 1: (0.868, 0.862), 2: (0.861, 0.859)}
    for s in range(3):
        _write(tmp_path, "adaptive", s, adaptive[s], 0.87)
        for d, value in enumerate(draws[s]):
            _write(tmp_path, "random", s, value, 0.86, draw=d, layers=(f"conv{2 + d}", "conv6"))
        # deepest: higher validation, lower test; largest: the reverse. Validation must choose.
        _write(tmp_path, "deepest", s, 0.850, 0.880)
        _write(tmp_path, "largest", s, 0.880, 0.850, layers=("conv2", "conv3"))
    summary = study.report(tmp_path)
    assert summary["better_static_on_validation"] == "deepest"
    first = summary["contrasts"]["contrasts"][0]
    expected = [100 * (adaptive[s] - sum(draws[s]) / 2) for s in range(3)]
    assert (first["cell"], first["control"]) == ("adaptive", "random")
    assert first["mean"] == pytest.approx(sum(expected) / 3)
    assert summary["contrasts"]["contrasts"][1]["control"] == "deepest"
    assert (tmp_path / "README.md").read_text().startswith("# Layer choice at matched storage")


def test_a_run_file_twice_is_an_error(study, tmp_path):
    _write(tmp_path, "adaptive", 0, 0.86, 0.87)
    twin = json.loads((tmp_path / "runs" / "adaptive-s0.json").read_text())
    (tmp_path / "runs" / "adaptive-s0-copy.json").write_text(json.dumps(twin))
    with pytest.raises(ValueError, match=r"run \('adaptive', 0, 0\) appears twice"):
        study.load_runs(tmp_path)


def test_committed_report_is_what_the_committed_run_files_give(study, tmp_path):
    # The report and the docs' table are recomputed from the run files alone: nothing typed by hand.
    committed = ROOT / "reports" / "layer-study-cpu"
    if not (committed / "summary.json").exists():
        pytest.skip("no committed layer-study report yet")
    shutil.copytree(committed / "runs", tmp_path / "runs")
    summary = study.report(tmp_path)
    assert (tmp_path / "README.md").read_text() == (committed / "README.md").read_text()
    for doc in ("docs/results.md", "README.md"):
        assert summary["contrasts_markdown"] in (ROOT / doc).read_text(), doc
