"""benchmarks/sweep_scale.py: the per-trial / per-result split, and the committed results it made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPORT = Path(__file__).parents[1] / "reports" / "sweep-scale-cpu"


def _run(trials: int, epochs: int, results: int, cpu_s: float) -> dict:
    return {
        "trials": trials,
        "epochs": epochs,
        "trial_epochs": results,
        "window_cpu_s": cpu_s,
        "window_wall_s": 10.0,
        "wall_s": 12.0,
        "mlflow_writes_per_trial_epoch": 1.0,
    }


def test_split_recovers_a_known_fixed_and_marginal_cost(load_benchmark):
    scale = load_benchmark("sweep_scale")
    # 40 ms per trial + 6 ms per result: 500 trials x 1 result, and 500 trials x 8 results
    short = _run(500, 1, 500, 500 * 0.040 + 500 * 0.006)
    long = _run(500, 10, 4000, 500 * 0.040 + 4000 * 0.006)
    out = scale.split(short, long)
    assert out["driver_ms_per_trial"] == pytest.approx(40.0)
    assert out["driver_ms_per_result"] == pytest.approx(6.0)
    assert out["capacity_results_per_s"] == pytest.approx(1000 / 6, abs=0.1)


def test_committed_results_carry_the_issue_keys_and_their_split_recomputes(load_benchmark):
    scale = load_benchmark("sweep_scale")
    files = sorted(REPORT.glob("*.json"))
    assert files, f"no result files in {REPORT}"
    for path in files:
        for size in json.loads(path.read_text()):
            assert {"trials", "driver_ms_per_trial", "driver_ms_per_result", "runs"} <= set(size), path
            assert scale.split(*size["runs"]) == size, path  # every number from its two runs


def test_table_has_a_row_per_file_naming_the_longer_sweep(load_benchmark):
    scale = load_benchmark("sweep_scale")
    files = [str(p) for p in sorted(REPORT.glob("*.json"))]
    lines = scale.table(files).splitlines()
    assert len(lines) == 2 + sum(len(json.loads(Path(f).read_text())) for f in files)
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_box_cpu_reads_the_machines_cpu_by_kind_and_only_grows(load_benchmark):
    scale = load_benchmark("sweep_scale")
    if not Path("/proc/stat").exists():
        pytest.skip("no /proc/stat (not Linux): box_cpu is empty there")
    before = scale.box_cpu()
    sum(i * i for i in range(2_000_000))  # about 0.1 s of CPU: several clock ticks
    after = scale.box_cpu()
    kinds = {"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"}
    assert kinds <= set(before)
    assert all(after[k] >= before[k] >= 0 for k in kinds)
    assert after["user"] + after["system"] > before["user"] + before["system"]
