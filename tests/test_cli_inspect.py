"""``albsnn inspect MODEL [--json]``: the table, the JSON line, and exit 2 on a bad file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from albsnn.cli import main
from albsnn.export import save_model
from albsnn.models import build_model
from albsnn.storage import fp32_bytes, profile_model, storage_bytes

LAYERS = ["conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "conv4", "bn4", "classifier"]


@pytest.fixture
def net():
    net = build_model(arch="tiny")
    net.conv2.set_binary(True)
    net.classifier.set_binary(True)
    return net


@pytest.fixture
def model_file(tmp_path: Path, net) -> Path:
    metadata = {"estimates": {"conv2": 0.0625, "classifier": 0.5}, "dataset": "digits"}
    return save_model(net, tmp_path / "tiny.albsnn", metadata=metadata)


def _rows(text: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in text.splitlines() if line.split()}


def test_table_has_a_row_per_layer_with_precision_and_last_estimate(model_file: Path, capsys) -> None:
    assert main(["inspect", str(model_file)]) == 0
    rows = _rows(capsys.readouterr().out)
    assert all(name in rows for name in LAYERS)
    # columns: layer, type, shape, bits/w, bits, bytes, size value, size unit, estimate
    assert (rows["conv2"][3], rows["conv2"][-1]) == ("1", "0.0625")
    assert (rows["conv3"][3], rows["conv3"][-1]) == ("32", "-")


def test_table_prints_totals(model_file: Path, net, capsys) -> None:
    main(["inspect", str(model_file)])
    out = capsys.readouterr().out
    for line in (
        f"storage:    {storage_bytes(net):,} bytes",
        f"fp32:       {fp32_bytes(net):,} bytes",
        f"reduction:  {profile_model(net).reduction:.2%}",
        f"parameters: {profile_model(net).parameters:,}",
    ):
        assert line in out


def test_json_is_one_object_on_the_last_line(model_file: Path, net, capsys) -> None:
    assert main(["inspect", str(model_file), "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [layer["name"] for layer in record["layers"]] == LAYERS
    assert record["totals"] == {
        "bits": profile_model(net).memory,
        "bytes": storage_bytes(net),
        "fp32_bytes": fp32_bytes(net),
        "reduction": profile_model(net).reduction,
        "parameters": profile_model(net).parameters,
    }


def test_json_carries_estimates_and_null_where_none(model_file: Path, capsys) -> None:
    main(["inspect", str(model_file), "--json"])
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    estimates = {layer["name"]: layer["estimate"] for layer in record["layers"]}
    assert (estimates["conv2"], estimates["classifier"], estimates["conv1"]) == (0.0625, 0.5, None)


# Rule: a bad file is one "albsnn inspect: error:" line naming the file, and exit code 2.
@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"not a model at all", "is not an ALBSNN model file"),
        (b"ALBSNN\0", "is truncated"),
        (None, "does not exist"),
    ],
)
def test_bad_file_exits_2_with_one_error_line(
    tmp_path: Path, capsys, content: bytes | None, says: str
) -> None:
    path = tmp_path / "bad.albsnn"
    if content is not None:
        path.write_bytes(content)
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("albsnn inspect: error:")]
    assert len(errors) == 1
    assert says in errors[0]
    assert str(path) in errors[0]
    assert "Traceback" not in err
