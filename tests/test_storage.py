"""Storage accounting: expected bits come from a hand formula, not from the code under test."""

from __future__ import annotations

import pytest
from torch import nn

from albsnn.binarize import BinaryLinear
from albsnn.models import build_model, count_parameters, list_models
from albsnn.storage import (
    ModelProfile,
    WeightProfile,
    fp32_bytes,
    memory_as_readable_str,
    profile_model,
    reduction,
    storage_bytes,
    summary,
)

# tiny at width 1: 3x3 convs (C_out, C_in), each followed by a BN of C_out, then a 64 -> 10 linear.
TINY_CONVS = {"conv1": (16, 1), "conv2": (32, 16), "conv3": (64, 32), "conv4": (64, 64)}
TINY_LAYERS = ["conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "conv4", "bn4", "classifier"]


def _weight_bits(name: str, n_weights: int, c_out: int, binary: set[str], alpha_mode: str) -> int:
    if name not in binary:
        return 32 * n_weights
    n_alpha = c_out if alpha_mode == "channel" else 1
    return n_weights + 32 * n_alpha  # 1 bit per weight + a float32 alpha per channel (or one)


def tiny_hand_bits(binary: set[str], alpha_mode: str) -> int:
    bits = 0
    for name, (c_out, c_in) in TINY_CONVS.items():
        bits += _weight_bits(name, c_out * c_in * 9, c_out, binary, alpha_mode)  # bias=False
        bits += 4 * c_out * 32  # BN weight, bias, running_mean, running_var
    bits += _weight_bits("classifier", 10 * 64, 10, binary, alpha_mode) + 10 * 32  # + bias
    return bits


def _tiny(binary: set[str] = frozenset(), alpha_mode: str = "channel") -> nn.Module:
    net = build_model(arch="tiny", alpha_mode=alpha_mode)
    for name in binary:
        net.get_submodule(name).set_binary(True)
    return net


BINARY_SETS = [
    set(),
    {"conv2"},
    {"conv2", "conv4"},
    {"conv1", "conv2", "conv3", "conv4", "classifier"},
]


# Rule: bits = sum of (1 bit per binary weight + 32 per alpha) or 32 per FP weight, + 32 per bias
# and 4 x 32 per BN channel; alpha is one per output channel, or one per layer in "layer" mode.
@pytest.mark.parametrize("alpha_mode", ["channel", "layer"])
@pytest.mark.parametrize("binary", BINARY_SETS, ids=lambda s: "+".join(sorted(s)) or "fp")
def test_tiny_bits_equal_hand_count(binary: set[str], alpha_mode: str) -> None:
    profile = profile_model(_tiny(binary, alpha_mode))
    assert profile.memory == tiny_hand_bits(binary, alpha_mode)


# Rule: the model's bytes round the total bits up, once.
@pytest.mark.parametrize("binary", BINARY_SETS, ids=lambda s: "+".join(sorted(s)) or "fp")
def test_bytes_are_total_bits_rounded_up(binary: set[str]) -> None:
    bits = tiny_hand_bits(binary, "channel")
    assert storage_bytes(_tiny(binary)) == -(-bits // 8)


def test_bytes_round_up_a_partial_byte() -> None:
    # 3 one-bit weights + one float32 alpha + one float32 bias = 67 bits -> 9 bytes.
    layer = BinaryLinear(3, 1)
    layer.set_binary(True)
    profile = profile_model(nn.Sequential(layer))
    assert (profile.memory, profile.bytes) == (67, 9)


def test_layers_are_named_modules_owning_numbers_in_order() -> None:
    # LIF, pooling and GAP own nothing to store, so they are not layers of the profile.
    assert [layer.name for layer in profile_model(_tiny()).layers] == TINY_LAYERS


@pytest.mark.parametrize(
    ("alpha_mode", "expected"),
    [
        ("channel", (WeightProfile("weight", 64 * 64 * 9, 1), WeightProfile("alpha", 64, 32, True))),
        ("layer", (WeightProfile("weight", 64 * 64 * 9, 1), WeightProfile("alpha", 1, 32, True))),
    ],
)
def test_binary_layer_stores_one_bit_weights_and_alpha(alpha_mode: str, expected: tuple) -> None:
    conv4 = next(lp for lp in profile_model(_tiny({"conv4"}, alpha_mode)).layers if lp.name == "conv4")
    assert (conv4.precision, conv4.shape, conv4.weights) == (1, (64, 64, 3, 3), expected)


def test_batchnorm_counts_affine_and_running_stats_only() -> None:
    # num_batches_tracked is training state: not counted.
    bn1 = profile_model(_tiny()).layers[1]
    assert [(w.name, w.count, w.bitwidth) for w in bn1.weights] == [
        ("weight", 16, 32),
        ("bias", 16, 32),
        ("running_mean", 16, 32),
        ("running_var", 16, 32),
    ]


def test_alpha_of_a_full_precision_layer_is_not_counted() -> None:
    # A learned alpha that the FP forward never reads costs nothing.
    net = _tiny()
    net.conv2.learn_alpha()
    assert profile_model(net).memory == tiny_hand_bits(set(), "channel")


@pytest.mark.parametrize("arch", list_models())
def test_all_fp_model_has_zero_reduction_and_fp32_bytes_of_its_parameters(arch: str) -> None:
    net = build_model(arch=arch, input_size=(32, 32))  # big enough for every arch's pools
    fp32 = 4 * count_parameters(net)
    assert (reduction(net), storage_bytes(net), fp32_bytes(net)) == (0.0, fp32, fp32)


@pytest.mark.parametrize("binary", BINARY_SETS[1:], ids=lambda s: "+".join(sorted(s)))
def test_binarizing_gives_reduction_between_0_and_1(binary: set[str]) -> None:
    # fp32_bytes is the same model all in FP32 whatever is binary now.
    net = _tiny(binary)
    fp32 = 4 * count_parameters(net)
    assert fp32_bytes(net) == fp32
    assert 0.0 < reduction(net) < 1.0
    assert reduction(net) == pytest.approx(1 - storage_bytes(net) / fp32)


def test_storage_bytes_follow_set_binary_both_ways() -> None:
    # The trainer reads it every epoch while layers switch.
    net = _tiny()
    before = storage_bytes(net)
    net.conv3.set_binary(True)
    during = storage_bytes(net)
    net.conv3.set_binary(False)
    assert during < before == storage_bytes(net)


def test_parameters_match_count_parameters_when_binary() -> None:
    net = _tiny({"conv2", "classifier"})
    assert profile_model(net).parameters == count_parameters(net)


def test_estimates_are_attached_to_named_layers() -> None:
    profile = profile_model(_tiny(), estimates={"conv2": 0.25})
    assert {lp.name: lp.estimate for lp in profile.layers if lp.estimate is not None} == {"conv2": 0.25}


@pytest.mark.parametrize(
    ("bits", "text"),
    [
        (8, "1.00 B"),
        (8 * 1023, "1023.00 B"),
        (8 * 1024, "1.00 KiB"),
        (8 * 1536, "1.50 KiB"),
        (8 * 3 * 1024**2, "3.00 MiB"),
        (8 * 2 * 1024**3, "2.00 GiB"),
    ],
)
def test_memory_as_readable_str_uses_binary_prefixes(bits: int, text: str) -> None:
    assert memory_as_readable_str(bits) == text


def _summary_text(arg: nn.Module | ModelProfile) -> str:
    lines: list[str] = []
    summary(arg, print_fn=lines.append)
    return "\n".join(lines)


def test_summary_lists_every_layer_with_its_estimate_or_dash() -> None:
    text = _summary_text(profile_model(_tiny({"conv3"}), estimates={"conv3": 0.125}))
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.split()}
    assert all(name in rows for name in TINY_LAYERS)
    assert (rows["conv3"][3], rows["conv3"][-1]) == ("1", "0.125")
    assert (rows["conv2"][3], rows["conv2"][-1]) == ("32", "-")


def test_summary_prints_totals_in_kib() -> None:
    net = _tiny({"conv4"})
    text = _summary_text(net)
    assert f"{storage_bytes(net):,} bytes" in text
    assert memory_as_readable_str(profile_model(net).memory) in text
    assert "KiB" in text
    assert "reduction:" in text
