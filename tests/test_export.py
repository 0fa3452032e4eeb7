"""Model files: exact round trip, size bound, clear errors on bad files, and no pickle anywhere."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from albsnn.binarize import binary_layers
from albsnn.errors import ModelFileError
from albsnn.export import FIXED_OVERHEAD_BYTES, MAGIC, load_model, save_model
from albsnn.models import SpikingNet, build_model
from albsnn.storage import storage_bytes

# name -> (model config overrides, layers to binarize ("odd" = every other binary layer))
CASES = {
    "tiny": (dict(arch="tiny"), ["conv2", "conv4"]),
    "tiny-T1": (dict(arch="tiny", time_steps=1), ["conv1", "classifier"]),
    "tiny-layer-alpha": (dict(arch="tiny", alpha_mode="layer"), ["conv2", "conv3"]),
    "tiny-fc-rate": (dict(arch="tiny", head="fc", readout="rate"), ["fc1"]),
    "fmnist": (dict(arch="fmnist"), "odd"),
    "fmnist-fc": (dict(arch="fmnist", head="fc"), "odd"),
    "fmnist_fast-spike-after-pool": (dict(arch="fmnist_fast", time_steps=1, spike_after_pool=True), "odd"),
}


def _make(overrides: dict, binary: list[str] | str, seed: int = 0) -> SpikingNet:
    """A network that looks trained: random BN affine and running stats, some layers binary."""
    torch.manual_seed(seed)
    net = build_model(**overrides)
    layers = list(binary_layers(net))
    names = layers[1::2] if binary == "odd" else binary
    for name in names:
        net.get_submodule(name).set_binary(True)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _input(net: SpikingNet, *, events: bool = False) -> torch.Tensor:
    c = net.config
    shape = (3, c.in_channels, *c.input_size)
    if events:
        return (torch.rand(c.time_steps, *shape) > 0.7).float()
    return torch.rand(shape) * 4


def _estimates(net: SpikingNet) -> dict[str, float]:
    return {name: 0.01 * (i + 1) for i, name in enumerate(binary_layers(net))}


METADATA = {"dataset": "digits", "train_config": {"epochs": 20, "lr": 0.001, "batch_size": 64}}


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return save_model(_make(*CASES["tiny"]), tmp_path / "tiny.albsnn", metadata=METADATA)


# Rule: what is loaded computes bit-identical logits (eval mode) to what was saved.
@pytest.mark.parametrize("case", list(CASES))
def test_round_trip_gives_identical_logits_on_static_input(tmp_path: Path, case: str) -> None:
    net = _make(*CASES[case])
    loaded, _ = load_model(save_model(net, tmp_path / "m.albsnn"))
    x = _input(net)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


@pytest.mark.parametrize("case", ["tiny", "tiny-layer-alpha", "fmnist"])
def test_round_trip_gives_identical_logits_on_event_input_with_two_steps(tmp_path: Path, case: str) -> None:
    overrides, binary = CASES[case]
    net = _make({**overrides, "time_steps": 2}, binary)
    loaded, _ = load_model(save_model(net, tmp_path / "m.albsnn"))
    x = _input(net, events=True)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


def test_round_trip_keeps_a_learned_alpha(tmp_path: Path) -> None:
    # BWO "scale" trains alpha away from mean|W|; the file must keep the trained value.
    net = _make(*CASES["tiny"])
    net.conv2.learn_alpha()
    with torch.no_grad():
        net.conv2.alpha.mul_(1.7)
    loaded, _ = load_model(save_model(net, tmp_path / "m.albsnn"))
    x = _input(net)
    with torch.no_grad():
        assert torch.equal(loaded.conv2.current_alpha(), net.conv2.alpha)
        assert torch.equal(loaded(x), net(x))


def test_round_trip_restores_which_layers_are_binary(tmp_path: Path) -> None:
    net = _make(*CASES["fmnist"])
    loaded, _ = load_model(save_model(net, tmp_path / "m.albsnn"))
    flags = {name: layer.is_binary for name, layer in binary_layers(loaded).items()}
    assert flags == {name: layer.is_binary for name, layer in binary_layers(net).items()}


def test_round_trip_restores_config_and_metadata(saved: Path) -> None:
    loaded, metadata = load_model(saved)
    assert (loaded.config, metadata) == (_make(*CASES["tiny"]).config, METADATA)


def test_loaded_model_is_in_eval_mode(saved: Path) -> None:
    loaded, _ = load_model(saved)
    assert not loaded.training


def test_metadata_that_is_not_json_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_model(_make(*CASES["tiny"]), tmp_path / "m.albsnn", metadata={"when": object()})


# Rule: file bytes <= accounted bytes * 1.01 + a fixed overhead of at most 4 KiB.
@pytest.mark.parametrize("case", ["tiny", "tiny-layer-alpha", "tiny-fc-rate", "fmnist", "fmnist-fc"])
def test_file_size_is_within_the_storage_bound(tmp_path: Path, case: str) -> None:
    net = _make(*CASES[case])
    metadata = {**METADATA, "estimates": _estimates(net)}
    path = save_model(net, tmp_path / "m.albsnn", metadata=metadata)
    assert FIXED_OVERHEAD_BYTES <= 4096
    assert path.stat().st_size <= storage_bytes(net) * 1.01 + FIXED_OVERHEAD_BYTES


def test_file_starts_with_the_magic(saved: Path) -> None:
    assert saved.read_bytes().startswith(MAGIC)


def test_saving_replaces_an_existing_file_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "m.albsnn"
    path.write_bytes(b"old")
    save_model(_make(*CASES["tiny"]), path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.albsnn"]
    assert path.read_bytes().startswith(MAGIC)


def test_a_failed_write_leaves_the_previous_file_untouched(saved: Path, monkeypatch) -> None:
    before = saved.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_model(_make(*CASES["fmnist"]), saved)
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]


# Rule: loading never unpickles, so a model file from a stranger cannot run code.
def test_loading_never_uses_pickle_or_torch_load(saved: Path, monkeypatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    loaded, _ = load_model(saved)
    assert isinstance(loaded, SpikingNet)


def test_a_torch_pickle_file_is_refused_without_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(_make(*CASES["tiny"]).state_dict(), path)
    with pytest.raises(ModelFileError, match="is not an ALBSNN model file"):
        load_model(path)


def _damaged(path: Path, how: str) -> Path:
    raw = bytearray(path.read_bytes())
    header_end = 12 + int.from_bytes(raw[8:12], "little")
    if how == "wrong magic":
        raw[:7] = b"PK\x03\x04zip"
    elif how == "empty":
        raw = bytearray()
    elif how.startswith("cut at "):
        raw = raw[: int(how.removeprefix("cut at "))]
    elif how == "cut in header":
        raw = raw[: header_end - 5]
    elif how == "cut in data":
        raw = raw[:-1]
    elif how == "flip in header":
        raw[header_end - 20] ^= 0xFF
    elif how == "flip in data":
        raw[header_end + 100] ^= 0x01
    elif how == "extra bytes":
        raw += b"\0\0"
    elif how == "future version":
        raw[7] = 99
    path.write_bytes(bytes(raw))
    return path


# Rule: a bad file raises ModelFileError naming the file and saying what is wrong.
@pytest.mark.parametrize(
    ("how", "says"),
    [
        ("wrong magic", "is not an ALBSNN model file"),
        ("empty", "is truncated"),
        ("cut at 4", "is truncated"),
        ("cut at 10", "is truncated"),
        ("cut in header", "is truncated"),
        ("cut in data", "is truncated"),
        ("flip in header", "corrupted header"),
        ("flip in data", "fails its CRC32 check"),
        ("extra bytes", "unexpected bytes after the data"),
        ("future version", "format version 99"),
    ],
)
def test_bad_file_raises_model_file_error_naming_file_and_problem(saved: Path, how: str, says: str) -> None:
    path = _damaged(saved, how)
    with pytest.raises(ModelFileError, match=says) as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_missing_file_raises_model_file_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nope.albsnn")
