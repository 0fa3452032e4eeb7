"""The dataset registry, the data root, loader options, and `albsnn datasets`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from albsnn.cli import main
from albsnn.data import (
    check_options,
    data_root,
    dataset_info,
    dataset_options,
    dataset_status,
    list_datasets,
    load_dataset,
)
from albsnn.errors import ConfigError, DataError
from albsnn.models import list_models

EXPECTED = ["cifar10", "cifar10-dvs", "cifar100", "digits", "dvs-gesture", "fashion-mnist", "nmnist"]


def test_registry_lists_the_paper_datasets_and_the_embedded_default():
    assert list_datasets() == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_every_dataset_names_a_real_architecture_and_consistent_classes(name):
    info = dataset_info(name)
    assert info.suggested_arch in list_models()
    assert len(info.class_names) == info.num_classes == len(set(info.class_names))
    assert len(info.input_shape) == 3 and all(d > 0 for d in info.input_shape)
    assert info.events == (info.suggested_arch == "dvs")


@pytest.mark.parametrize("name", [n for n in EXPECTED if n != "digits"])
def test_every_file_dataset_reports_missing_for_an_empty_root(name, tmp_path):
    status = dataset_status(name, tmp_path)
    assert status.state == "missing" and status.folder == tmp_path / dataset_info(name).folder


def test_unknown_dataset_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'; choose one of"):
        load_dataset("mnist")


# rule: --data-dir > $ALBSNN_DATA > ~/.cache/albsnn
@pytest.mark.parametrize(
    "arg, env, expected",
    [
        ("given", "from-env", "given"),
        (None, "from-env", "from-env"),
        (None, None, "home/.cache/albsnn"),
    ],
)
def test_data_root_precedence(monkeypatch, tmp_path, arg, env, expected):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if env:
        monkeypatch.setenv("ALBSNN_DATA", str(tmp_path / env))
    else:
        monkeypatch.delenv("ALBSNN_DATA", raising=False)
    assert data_root(tmp_path / arg if arg else None) == (tmp_path / expected).resolve()


def test_a_data_dir_that_is_a_file_is_a_data_error(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(DataError, match="is a file, not a folder"):
        load_dataset("fashion-mnist", path)


def test_options_are_declared_per_dataset():
    assert set(dataset_options("fashion-mnist")) == {"verify", "download", "augment", "pad", "flip"}
    assert {"size", "denoise_us", "test_fraction", "cache_dir", "cache", "download"} <= set(
        dataset_options("nmnist")
    )
    assert dataset_options("digits") == {}


# rule: text from the CLI is converted to the declared type; JSON-decoded values pass as they are
@pytest.mark.parametrize(
    "name, options, expected",
    [
        ("nmnist", {"test_fraction": "0.5"}, {"test_fraction": 0.5}),
        ("nmnist", {"test_fraction": 0.5}, {"test_fraction": 0.5}),
        ("nmnist", {"test_fraction": "none"}, {"test_fraction": None}),
        ("nmnist", {"size": "17", "cache": "false"}, {"size": 17, "cache": False}),
        ("nmnist", {"size": 17.0, "cache_dir": "~/x"}, {"size": 17, "cache_dir": Path("~/x").expanduser()}),
        ("fashion-mnist", {"verify": "no", "download": 1}, {"verify": False, "download": True}),
    ],
)
def test_option_text_is_converted(name, options, expected):
    converted = check_options(name, options)
    assert converted == expected
    assert all(type(converted[k]) is type(v) for k, v in expected.items())


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("nmnist", {"size": "2.5"}, "size expects"),
        ("nmnist", {"size": True}, "size expects"),
        ("nmnist", {"cache": "maybe"}, "cache expects"),
        ("cifar10-dvs", {"test_fraction": None}, "cannot be empty"),
        ("fashion-mnist", {"verify": "yes", "colour": 1}, r"unknown option\(s\) \['colour'\]"),
        ("digits", {"size": 1}, "it accepts none"),
    ],
)
def test_bad_option_values_are_config_errors(name, options, message):
    with pytest.raises(ConfigError, match=message):
        check_options(name, options)


def _table(out: str) -> dict[str, str]:
    return {
        line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in EXPECTED
    }


def test_cli_lists_every_dataset_with_status(shared_data, capsys):
    assert main(["datasets", "--data-dir", str(shared_data), "--verify"]) == 0
    out = capsys.readouterr().out
    rows = {name: line.split()[1:] for name, line in _table(out).items()}
    assert set(rows) == set(EXPECTED)
    assert rows["fashion-mnist"][:4] == ["present", "29.5", "MiB", "ok"]  # md5s computed with --verify
    assert rows["nmnist"][0] == "partial" and "nmnist: Train 1,000/60,000 .bin; Test missing" in out
    assert rows["cifar10"][0] == "missing" and rows["digits"][0] == "embedded"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["datasets", "--data-dir", "{file}"], "is a file, not a folder"),
        (["datasets", "--download", "mnist"], "unknown dataset 'mnist'"),
        (["datasets", "--download", "digits", "--data-dir", "{tmp}"], "nothing to download"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, argv, message):
    file = tmp_path / "file"
    file.write_text("x")
    argv = [a.format(file=file, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1


def test_cli_offline_download_is_one_line_and_leaves_nothing(tmp_path, capsys):
    assert main(["datasets", "--download", "cifar10", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cifar-10-python.tar.gz (md5 c58f30108f718f92721af3b95e74349a)" in err and "Traceback" not in err
    assert not any(Path(tmp_path).iterdir())


# ---- the validation split --------------------------------------------------------------------------


def _rows(x):
    return {tuple(r.flatten().tolist()) for r in x}


def test_validation_split_is_disjoint_stratified_and_the_same_for_every_seed():
    # Rule: one validation split per dataset, carved from train, disjoint from train and test, with
    # class proportions kept, identical whatever the run's seed (so runs stay paired).
    import numpy as np

    a = load_dataset("digits", seed=0)
    b = load_dataset("digits", seed=7, limit_train=500)
    assert torch.equal(a.val_x, b.val_x) and torch.equal(a.val_y, b.val_y)
    assert len(a.val_y) == round(0.1 * (len(a.train_y) + len(a.val_y)))
    assert not _rows(a.val_x) & _rows(a.train_x)
    assert not _rows(a.val_x) & _rows(a.test_x)
    train_share = np.bincount(a.train_y.numpy()) / len(a.train_y)
    val_share = np.bincount(a.val_y.numpy()) / len(a.val_y)
    assert np.abs(train_share - val_share).max() < 0.02


@pytest.mark.parametrize("fraction", [0.0, -0.1, 0.51, 1.0])
def test_val_fraction_outside_its_range_is_refused(fraction):
    with pytest.raises(ConfigError, match=r"val_fraction must be in \(0, 0.5\]"):
        load_dataset("digits", val_fraction=fraction)


def test_a_validation_split_smaller_than_the_class_count_is_refused():
    with pytest.raises(ConfigError, match="fewer than its 10 classes"):
        load_dataset("digits", val_fraction=0.004)
