import json

import pytest
import torch

from albsnn.cli import main
from albsnn.errors import ConfigError
from albsnn.train import Callback, TrainConfig, fit, get_lr


class _StopAfter(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, trainer, metrics):
        return metrics["epoch"] >= self.epoch


def _quick(tmp_path, name, **kw):
    # Small but complete: binarization decides at epoch 1, BWO fires at epoch 3 (project + alpha).
    base = dict(
        dataset="digits",
        limit_train=300,
        epochs=4,
        time_steps=2,
        width=0.5,
        warmup=1,
        threshold=0.5,
        bwo="both",
        bwo_epoch=3,
        batch_size=50,
        out=str(tmp_path / name),
    )
    return TrainConfig(**{**base, **kw})


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    full = fit(_quick(tmp_path, "full"))
    fit(_quick(tmp_path, "split"), [_StopAfter(2)])
    resumed = fit(_quick(tmp_path, "split"), resume_from=tmp_path / "split" / "checkpoint.pt")
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert full["bwo_epoch"] == resumed["bwo_epoch"] == 3
    assert full["binarized_layers"] == resumed["binarized_layers"] != []
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert full["test_accuracy"] == resumed["test_accuracy"]
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]


def test_same_seed_gives_identical_results(tmp_path):
    r1 = fit(_quick(tmp_path, "a", epochs=2))
    r2 = fit(_quick(tmp_path, "b", epochs=2))
    assert r1["train_loss"] == r2["train_loss"] and r1["test_accuracy"] == r2["test_accuracy"]


@pytest.mark.slow
def test_cli_train_on_digits_reaches_90_percent_with_binary_layers(tmp_path, capsys):
    # The acceptance run: albsnn train --dataset digits --epochs 8 --time-steps 2.
    code = main(
        [
            "train",
            "--dataset",
            "digits",
            "--epochs",
            "8",
            "--time-steps",
            "2",
            "--out",
            str(tmp_path / "run"),
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["test_accuracy"] >= 0.90
    assert result["binarized_layers"]
    assert 0 < result["storage_reduction"] < 1
    assert result["storage_bytes"] < result["fp32_bytes"]
    assert result["epochs"] == 8
    assert (tmp_path / "run" / "model.albsnn").exists() and result["model_path"].endswith("model.albsnn")
    assert "bwo_epoch" in result


def test_metrics_jsonl_has_one_line_per_epoch(tmp_path):
    fit(_quick(tmp_path, "m", epochs=2))
    lines = (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()
    metrics = [json.loads(line) for line in lines]
    assert [m["epoch"] for m in metrics] == [1, 2]
    for key in (
        "train_loss",
        "train_accuracy",
        "test_accuracy",
        "storage_bytes",
        "storage_reduction",
        "binarized_layers",
        "estimates",
        "firing_rates",
        "epoch_seconds",
    ):
        assert key in metrics[-1]
    assert set(metrics[-1]["firing_rates"]) == {"lif1", "lif2", "lif3", "lif4"}


@pytest.mark.parametrize(
    "schedule, step, expected",
    [
        ("constant", 50, 1.0),
        ("cosine", 0, 1.0),
        ("cosine", 50, 0.5),
        ("cosine", 100, 0.0),
        ("onecycle", 0, 0.04),
        ("onecycle", 25, 1.0),
        ("onecycle", 100, 0.0),
    ],
)
def test_lr_schedules(schedule, step, expected):
    assert get_lr(step, 100, 1.0, schedule) == pytest.approx(expected, abs=1e-9)


BAD = [
    (["--arch", "resnet"], "unknown architecture 'resnet'"),
    (["--estimator", "oracle"], "invalid choice: 'oracle'"),
    (["--bwo", "sometimes"], "invalid choice: 'sometimes'"),
    (["--threshold", "-1"], "threshold must be >= 0"),
    (["--budget", "1.5"], "budget"),
    (["--time-steps", "0"], "time_steps (T) must be >= 1"),
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
]


@pytest.mark.parametrize("args, message", BAD)
def test_bad_train_arguments_give_one_line_and_exit_2(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:  # argparse errors exit directly
        code = main(["train", "--epochs", "1", "--out", str(tmp_path / "x"), *args])
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_unknown_config_key_is_named():
    with pytest.raises(ConfigError, match="tau"):
        TrainConfig.from_dict({"tau": 2.0})


@pytest.mark.slow
def test_fashion_mnist_subset_from_the_canonical_files_reaches_80_percent(tmp_path, shared_data):
    # Real Fashion-MNIST read straight from the four IDX .gz files: 5k train / 1k test, small width.
    result = fit(
        TrainConfig(
            dataset="fashion-mnist",
            data_dir=str(shared_data),
            limit_train=5000,
            limit_test=1000,
            width=0.5,
            epochs=4,
            time_steps=1,
            lr=5e-3,
            out=str(tmp_path / "fm"),
        )
    )
    assert result["test_accuracy"] >= 0.80
    assert result["arch"] == "fmnist"
