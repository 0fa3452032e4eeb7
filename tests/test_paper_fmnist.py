"""benchmarks/paper_fmnist.py: the summary is recomputed from the run files alone (best epoch on
validation, every asked seed exactly once), and one tiny real run writes a well-formed run file."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from albsnn.train import Callback, TrainConfig, fit

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: a second thread only waits


@pytest.fixture(scope="module")
def script(load_benchmark):
    return load_benchmark("paper_fmnist")


LAYERS = ["conv2", "conv3", "conv4"]
STORAGE = [0.0, 0.5, 0.6]  # per epoch: what is binary then
BINARY = [[], ["conv4"], ["conv3", "conv4"]]
# seed -> (val per epoch, test per epoch). The best epoch on validation is neither the best test
# epoch nor the last; seed 1 ties on validation (epochs 1 and 2): the earliest wins.
CURVES = {
    0: ([0.90, 0.93, 0.92], [0.91, 0.92, 0.95]),  # best val: epoch 2 -> test 0.92
    1: ([0.91, 0.91, 0.90], [0.93, 0.96, 0.97]),  # tie -> epoch 1 -> test 0.93
    2: ([0.89, 0.90, 0.94], [0.90, 0.91, 0.94]),  # epoch 3 -> test 0.94
}
BEST = {0: 2, 1: 1, 2: 3}


def write_run(
    out: Path,
    binarize: str,
    seed: int,
    val: list[float],
    test: list[float],
    *,
    name: str | None = None,
    storage: list[float] = STORAGE,
    complete: bool = True,
    full: bool = True,
    commit: str = "abc123",
    overrides: dict | None = None,
    **config,
) -> Path:
    """A fake but well-formed run file, as benchmarks/paper_fmnist.py writes them."""
    rows = [
        {
            "epoch": i + 1,
            "val_accuracy": v,
            "test_accuracy": t,
            "storage_reduction": s,
            "binarized_layers": b,
            "wall_s": 40.0 + i,
            "train_s": 30.0,
        }
        for i, (v, t, s, b) in enumerate(zip(val, test, storage, BINARY, strict=False))
    ]
    limits = {} if full else {"limit_train": 600, "limit_test": 200}
    recipe = {"dataset": "fashion-mnist", "epochs": len(rows), "lr": 0.004, **config}
    record = {
        "format": "paper-fmnist-run-1",
        "binarize": binarize,
        "seed": seed,
        "complete": complete,
        "recipe": {**recipe, **limits},
        "config": {
            "limit_train": None,
            "limit_test": None,
            **recipe,
            **limits,
            "seed": seed,
            "binarize": binarize,
        },
        "overrides": overrides or {},
        "split_sizes": {"train": 54_000, "val": 6_000, "test": 10_000}
        if full
        else {"train": 600, "val": 6_000, "test": 200},
        "candidates": LAYERS,
        "epochs": rows,
        "wall_s": sum(r["wall_s"] for r in rows),
        "provenance": {"commit": commit, "cpu": "test CPU", "threads": 2},
    }
    path = out / "runs" / (name or f"{binarize}-s{seed}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def write_study(out: Path, modes=("adaptive",)) -> None:
    for mode in modes:
        for seed, (val, test) in CURVES.items():
            write_run(out, mode, seed, val, test)


def aggregate_cli(script, out: Path, *extra: str) -> int:
    return script.main(["--aggregate", "--out", str(out), "--no-plot", *extra])


def test_summary_is_the_mean_and_std_of_each_seeds_best_epoch_on_validation(script, tmp_path, capsys):
    write_study(tmp_path, modes=("adaptive", "all"))
    assert aggregate_cli(script, tmp_path) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    s = summary["modes"]["adaptive"]
    # each seed's number is the test accuracy of its best epoch on validation: 0.92, 0.93, 0.94
    expected = [CURVES[seed][1][BEST[seed] - 1] for seed in (0, 1, 2)]
    assert s["seeds"] == [0, 1, 2]
    assert [r["best_epoch"] for r in s["runs"]] == [BEST[0], BEST[1], BEST[2]]
    assert math.isclose(s["test_accuracy_mean"], statistics.mean(expected))
    assert math.isclose(s["test_accuracy_std"], statistics.stdev(expected))  # sample std, n - 1
    assert math.isclose(s["val_accuracy_mean"], statistics.mean([0.93, 0.91, 0.94]))
    assert math.isclose(s["storage_reduction_mean"], statistics.mean([0.5, 0.0, 0.6]))
    assert s["storage_reduction_min"] == 0.0 and s["commit"] == "abc123"
    # the per-epoch curve and the layer map (seeds with the layer binary at each epoch)
    assert math.isclose(s["curve"][2]["test_accuracy_mean"], statistics.mean([0.95, 0.97, 0.94]))
    assert s["layer_map"] == {"conv2": [0, 0, 0], "conv3": [0, 0, 3], "conv4": [0, 3, 3]}
    assert set(summary["modes"]) == {"adaptive", "all"}
    readme = (tmp_path / "README.md").read_text()
    assert "93.39" in readme and "| conv4 | 0/3 | 3/3 | 3/3 |" in readme and "--aggregate" in readme


def test_adaptive_minus_all_is_paired_by_seed_with_a_confidence_interval(script, tmp_path):
    # Rule: "better" needs a paired test on the same seeds (each at its best epoch on validation).
    for seed, gain in [(0, 0.010), (1, 0.004), (2, 0.007)]:
        write_run(tmp_path, "all", seed, [0.90], [0.90])
        write_run(tmp_path, "adaptive", seed, [0.90], [0.90 + gain])
    paired = script.aggregate(tmp_path)["paired"]
    assert paired["seeds"] == [0, 1, 2]
    assert math.isclose(paired["mean"], 0.007, abs_tol=1e-12)
    low, high = paired["ci95"]
    half = 4.302653 * statistics.stdev([0.010, 0.004, 0.007]) / math.sqrt(3)  # t(0.975, 2 df)
    assert math.isclose(low, 0.007 - half, abs_tol=1e-6) and math.isclose(high, 0.007 + half, abs_tol=1e-6)
    assert "a difference" in script._paired_line(paired)


@pytest.mark.parametrize(
    "val, test, epoch",
    [
        ([0.5, 0.7, 0.6], [0.9, 0.1, 0.9], 2),  # test never chooses
        ([0.7, 0.7, 0.7], [0.1, 0.2, 0.9], 1),  # ties: the earliest epoch
        ([0.1, 0.2, 0.3], [0.3, 0.2, 0.1], 3),
    ],
)
def test_best_epoch_is_the_highest_validation_accuracy_earliest_of_equals(script, val, test, epoch):
    pairs = enumerate(zip(val, test, strict=True), 1)
    rows = [{"epoch": i, "val_accuracy": v, "test_accuracy": t} for i, (v, t) in pairs]
    assert script.best_epoch(rows)["epoch"] == epoch


@pytest.mark.parametrize(
    "tests, storage, full, met",
    [
        ([0.935, 0.936, 0.934], [0.25, 0.30, 0.21], True, True),  # mean 93.50 %, every seed >= 20 %
        ([0.935, 0.936, 0.934], [0.25, 0.30, 0.19], True, False),  # one seed below 20 %
        ([0.935, 0.930, 0.934], [0.25, 0.30, 0.21], True, False),  # mean 93.30 % < 93.39 %
        ([0.935, 0.936, 0.934], [0.25, 0.30, 0.21], False, False),  # a subset run says nothing
    ],
)
def test_target_is_the_mean_test_accuracy_and_storage_on_every_seed(
    script, tmp_path, tests, storage, full, met
):
    for seed, (t, s) in enumerate(zip(tests, storage, strict=True)):
        write_run(tmp_path, "adaptive", seed, [0.9], [t], storage=[s], full=full)
    summary = script.aggregate(tmp_path, (0, 1, 2), ["adaptive"])
    assert summary["modes"]["adaptive"]["target_met"] is met


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing", "adaptive: seed 1 has no run file"),
        ("duplicated", "adaptive: seed 1 is in 2 run files (adaptive-s1-again.json, adaptive-s1.json)"),
        ("incomplete", "adaptive-s1.json is an incomplete run"),
        ("other recipe", "adaptive-s1.json was trained with lr=0.001"),
    ],
)
def test_a_missing_duplicated_or_unlike_run_is_exit_2_and_one_line(script, tmp_path, capsys, damage, message):
    # A summary over fewer seeds (or two copies of one) would be a silent mean: refuse, name the seed.
    write_study(tmp_path)
    val, test = CURVES[1]
    if damage == "missing":
        (tmp_path / "runs" / "adaptive-s1.json").unlink()
    elif damage == "duplicated":
        write_run(tmp_path, "adaptive", 1, val, test, name="adaptive-s1-again.json")
    elif damage == "incomplete":
        write_run(tmp_path, "adaptive", 1, val, test, complete=False)
    else:
        write_run(tmp_path, "adaptive", 1, val, test, lr=0.001)
    capsys.readouterr()
    assert aggregate_cli(script, tmp_path, "--seeds", "0", "1", "2") == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "summary.json").exists()


def test_compare_ranks_search_variants_on_validation_never_on_test(script, tmp_path):
    # variant "b" has the higher test accuracy, "a" the higher validation accuracy: "a" comes first
    write_run(tmp_path / "a", "adaptive", 0, [0.90, 0.93], [0.90, 0.91], lr=script.RECIPE["lr"])
    write_run(tmp_path / "b", "adaptive", 0, [0.90, 0.92], [0.90, 0.95], lr=0.01)
    table = script.compare([tmp_path / "b", tmp_path / "a"]).splitlines()
    assert [line.split(" | ")[0] for line in table[2:]] == ["| a", "| b"]
    a, b = table[2].split(" | "), table[3].split(" | ")
    assert a[5] == "93.00" and a[7] == "91.00" and b[5] == "92.00"  # val and test at the best val epoch
    assert "`lr=0.01`" in b[3] and "`lr=" not in a[3]  # what differs from today's RECIPE
    # a --set of a TrainConfig default that RECIPE does not name is a difference too
    write_run(
        tmp_path / "c",
        "adaptive",
        0,
        [0.90, 0.91],
        [0.90, 0.91],
        threshold=0.25,
        overrides={"threshold": 0.25},
    )
    assert "`threshold=0.25`" in script.compare([tmp_path / "c"]).splitlines()[2].split(" | ")[3]
    with pytest.raises(script.StudyError, match="no run files"):
        script.compare([tmp_path / "empty"])


@pytest.mark.parametrize("study", ["fmnist-paper-cpu", "fmnist-paper-cpu-w075", "fmnist-paper-cpu-w05"])
def test_committed_summary_is_what_its_committed_run_files_give(script, study):
    # Rule: a committed number is regenerated from the committed run files, never edited by hand.
    folder = ROOT / "reports" / study
    committed = json.loads((folder / "summary.json").read_text())
    seeds = {tuple(mode["seeds"]) for mode in committed["modes"].values()}
    assert len(seeds) == 1, seeds  # every mode over the same seeds (a study under way may have fewer than 3)
    again = json.loads(json.dumps(script.aggregate(folder, seeds.pop(), modes=list(committed["modes"]))))
    assert again == committed


def test_a_mode_asked_without_any_run_file_is_an_error(script, tmp_path, capsys):
    write_study(tmp_path)
    assert aggregate_cli(script, tmp_path, "--binarize", "adaptive", "all") == 2
    assert "all: seed 0 has no run file" in capsys.readouterr().err


# ---- one real tiny run -----------------------------------------------------------------------------
TINY = {  # small subsets; warmup 0 so the estimator decides after epoch 1; augmentation on, so that
    # the resume test below covers the augmentation generator (the recipe itself trains without it)
    "data_options": {"augment": True},
    "limit_train": 600,
    "limit_test": 200,
    "val_fraction": 0.02,
    "epochs": 2,
    "width": 0.25,
    "warmup": 0,
    "calibration_size": 300,
}
RUN_KEYS = {
    "format", "binarize", "seed", "complete", "recipe", "config", "overrides", "split_sizes", "candidates",
    "epochs", "best", "final", "wall_s", "train_s", "decisions", "sessions", "provenance",
}  # fmt: skip
ROW_KEYS = {
    "epoch", "val_accuracy", "test_accuracy", "wall_s", "train_s", "storage_bytes", "fp32_bytes",
    "storage_reduction", "binarized_layers",
}  # fmt: skip


class _StopAfter(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer, metrics) -> bool:
        return metrics["epoch"] >= self.epoch


@pytest.fixture(scope="module")
def tiny_run(script, shared_data, tmp_path_factory):
    out, ckpt = tmp_path_factory.mktemp("report"), tmp_path_factory.mktemp("ckpt")
    record = script.run("adaptive", 0, overrides=TINY, data_dir=shared_data, out=out, ckpt_dir=ckpt)
    return out, ckpt, record


def test_a_tiny_real_run_writes_the_documented_run_file(script, tiny_run):
    out, ckpt, record = tiny_run
    written = json.loads((out / "runs" / "adaptive-s0.json").read_text())
    assert written == json.loads(json.dumps(record))
    assert set(written) >= RUN_KEYS and written["complete"] is True
    assert [r["epoch"] for r in written["epochs"]] == [1, 2]
    assert all(set(r) >= ROW_KEYS and r["wall_s"] > 0 for r in written["epochs"])
    assert written["split_sizes"] == {"train": 600, "val": 1200, "test": 200}
    assert written["config"]["data_options"] == {"augment": True} and written["config"]["time_steps"] == 1
    recipe = {k: v for k, v in {**script.RECIPE, **TINY}.items() if k != "binarize"}
    assert written["recipe"] == recipe and written["overrides"] == TINY
    assert written["best"]["epoch"] == script.best_epoch(written["epochs"])["epoch"]
    assert {"commit", "cpu", "threads"} <= set(written["provenance"])
    assert written["best_checkpoint_epoch"] == written["best"]["epoch"]  # runs/.../best.pt is that epoch
    assert (ckpt / "adaptive-s0" / "checkpoint.pt").is_file() and (ckpt / "adaptive-s0" / "best.pt").is_file()
    # a second call finds the file and trains nothing
    assert (
        script.run("adaptive", 0, overrides=TINY, data_dir=Path("/nonexistent"), out=out, ckpt_dir=ckpt)
        is None
    )


def test_an_interrupted_run_resumes_to_the_same_numbers(script, shared_data, tiny_run, tmp_path, capsys):
    _, _, straight = tiny_run
    ckpt = tmp_path / "ckpt"
    config = script.run_config("adaptive", 0, TINY, shared_data, ckpt)
    fit(TrainConfig.from_dict(config), [_StopAfter(1)])  # killed after epoch 1
    # without --resume the checkpoint is not silently overwritten
    argv = ["--out", str(tmp_path), "--ckpt-dir", str(ckpt), "--data-dir", str(shared_data), "--seeds", "0"]
    argv += [f"--set={k}={json.dumps(v)}" for k, v in TINY.items()]
    assert script.main(argv) == 2 and "pass --resume" in capsys.readouterr().err
    resumed = script.run(
        "adaptive", 0, overrides=TINY, data_dir=shared_data, out=tmp_path, ckpt_dir=ckpt, resume=True
    )
    keys = ("val_accuracy", "test_accuracy", "train_loss", "binarized_layers", "storage_bytes")
    assert [[r[k] for k in keys] for r in resumed["epochs"]] == [
        [r[k] for k in keys] for r in straight["epochs"]
    ]
    assert resumed["wall_s_missing_epochs"] == [1]  # epoch 1 ran without the recorder
    assert [s["from_epoch"] for s in resumed["sessions"]] == [2]
    assert resumed["best_checkpoint_epoch"] == resumed["best"]["epoch"]


def test_verify_retrains_a_committed_run_and_reports_any_difference(script, shared_data, tiny_run, tmp_path):
    out, _, _ = tiny_run
    assert script.verify(out, "adaptive", 0, 1, shared_data, tmp_path / "scratch") is True
    record = json.loads((out / "runs" / "adaptive-s0.json").read_text())
    record["epochs"][0]["val_accuracy"] += 0.001  # a number today's code would not reproduce
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "adaptive-s0.json").write_text(json.dumps(record))
    assert script.verify(tmp_path, "adaptive", 0, 1, shared_data, tmp_path / "scratch") is False
    with pytest.raises(script.StudyError, match="nothing to verify"):
        script.verify(tmp_path, "all", 0, 1, shared_data, tmp_path / "scratch")
