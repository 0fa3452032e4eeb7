"""TrainConfig is the one source: groups, model defaults and choices live in its field metadata."""

from __future__ import annotations

import ast
import dataclasses
import math
import typing
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import pytest

from albsnn._typing import scalar_type, split_optional
from albsnn.errors import ConfigError
from albsnn.models import ModelConfig
from albsnn.train import _MODEL_KEYS, CONFIG_GROUPS, TrainConfig

ALBSNN = Path(__file__).resolve().parents[1] / "albsnn"
TRAIN_FIELDS = dataclasses.fields(TrainConfig)
MODEL_FIELDS = {f.name: f for f in dataclasses.fields(ModelConfig)}


@pytest.mark.parametrize("f", TRAIN_FIELDS, ids=lambda f: f.name)
def test_every_field_belongs_to_one_known_group(f):
    # Rule: the `group` metadata is how CLI help and search spaces place a field; a missing or
    # misspelt group would drop it from every search space.
    assert f.metadata["group"] in CONFIG_GROUPS


def test_every_group_has_a_field():
    assert {f.metadata["group"] for f in TRAIN_FIELDS} == set(CONFIG_GROUPS)


def test_model_keys_are_the_model_group():
    assert tuple(f.name for f in TRAIN_FIELDS if f.metadata["group"] == "model") == _MODEL_KEYS
    assert set(_MODEL_KEYS) <= set(MODEL_FIELDS)


@pytest.mark.parametrize("name", [k for k in _MODEL_KEYS if k != "arch"])
def test_model_fields_take_default_type_and_choices_from_model_config(name):
    # Rule: ModelConfig owns the model fields (a model file loads it alone); TrainConfig copies them.
    # `arch` is the exception: None in TrainConfig means the dataset's suggested architecture.
    train, model = {f.name: f for f in TRAIN_FIELDS}[name], MODEL_FIELDS[name]
    assert train.default == model.default
    assert train.metadata.get("choices") == model.metadata.get("choices")
    assert typing.get_type_hints(TrainConfig)[name] == typing.get_type_hints(ModelConfig)[name]


def test_model_config_carries_the_model_fields():
    config = TrainConfig(width=0.5, time_steps=3, head="fc", surrogate="sigmoid")
    info = SimpleNamespace(input_shape=(1, 8, 8), num_classes=10, suggested_arch="tiny")
    model = config.model_config(info)
    assert {k: getattr(model, k) for k in _MODEL_KEYS} == {
        **{k: getattr(config, k) for k in _MODEL_KEYS},
        "arch": "tiny",
    }
    assert (model.in_channels, model.num_classes, model.input_size) == (1, 10, (8, 8))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'"),
        ({"binarize": "half"}, "unknown binarize 'half'"),
        ({"estimator": "oracle"}, "unknown estimator 'oracle'"),
        ({"head": "mlp"}, "unknown head 'mlp'"),  # a ModelConfig choice, checked by TrainConfig too
        ({"arch": "resnet"}, "unknown architecture 'resnet'"),  # ModelConfig's validation
        ({"width": 0}, "width must be in (0, inf), but got width=0"),
        ({"time_steps": 0}, "time_steps must be in [1, inf), but got time_steps=0"),
    ],
)
def test_bad_values_are_rejected_when_the_config_is_made(kwargs, message):
    with pytest.raises(ConfigError) as exc:
        TrainConfig(**kwargs)
    assert message in str(exc.value)


@pytest.mark.parametrize(
    "hint, members, optional",
    [
        (int, (int,), False),
        (int | None, (int,), True),
        (Optional[str], (str,), True),  # noqa: UP045 (the typing spelling must work too)
        (int | str, (int, str), False),
        (dict, (dict,), False),
        (dict[str, int], (dict[str, int],), False),  # only unions are taken apart
    ],
)
def test_split_optional(hint, members, optional):
    assert split_optional(hint) == (members, optional)


@pytest.mark.parametrize(
    "hint, expected",
    [(float, float), (float | None, float), (dict, dict), (dict[str, int] | None, dict), (bool, bool)],
)
def test_scalar_type(hint, expected):
    assert scalar_type(hint) is expected


@pytest.mark.parametrize(
    "module, forbidden",
    [("models.py", ("albsnn.train", "albsnn.sweep")), ("train.py", ("albsnn.sweep",))],
)
def test_library_config_modules_do_not_import_upwards(module, forbidden):
    # Rule: a model file loads with albsnn.models alone; the library never imports the platform.
    tree = ast.parse((ALBSNN / module).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and m.startswith(forbidden)}


# ---- numeric ranges -------------------------------------------------------------------------------
NUMERIC_FIELDS = [
    f for f in TRAIN_FIELDS if scalar_type(typing.get_type_hints(TrainConfig)[f.name]) in (int, float)
]


@pytest.mark.parametrize("f", NUMERIC_FIELDS, ids=lambda f: f.name)
def test_every_numeric_option_has_a_documented_range_holding_its_default(f):
    from albsnn.interval import Interval

    assert "range" in f.metadata, f"{f.name} has no valid range"
    interval = Interval.parse(f.metadata["range"])
    assert f.default is None or f.default in interval
    # docs/method.md's table of options is what a user reads; it must say the same.
    table = (ALBSNN.parent / "docs" / "method.md").read_text()
    assert f"| `{f.name}` | `{f.metadata['range']}` |" in table


@pytest.mark.parametrize("f", NUMERIC_FIELDS, ids=lambda f: f.name)
def test_a_value_just_outside_the_range_is_rejected_naming_option_value_and_range(f):
    from albsnn.interval import Interval

    interval = Interval.parse(f.metadata["range"])
    kind = scalar_type(typing.get_type_hints(TrainConfig)[f.name])
    step = 1 if kind is int else 1e-6
    ends = [(interval.low, interval.low_open, -step), (interval.high, interval.high_open, step)]
    outside = [kind(end if open_ else end + delta) for end, open_, delta in ends if math.isfinite(end)]
    assert outside, f"{f.name}: an interval open on both sides checks nothing"
    for value in outside:
        with pytest.raises(ConfigError) as exc:
            TrainConfig(**{f.name: value})
        assert f"{f.name} must be in {f.metadata['range']}, but got {f.name}={value!r}" in str(exc.value)


def test_threshold_range_is_the_estimators_percent_scale():
    from albsnn.estimator import THRESHOLD_RANGE
    from albsnn.interval import Interval

    field = next(f for f in TRAIN_FIELDS if f.name == "threshold")
    interval = Interval.parse(field.metadata["range"])
    assert (interval.low, interval.high) == THRESHOLD_RANGE
    TrainConfig(threshold=7)  # 7 pp is a valid (loose) threshold on the percent scale


def test_train_help_shows_each_range(capsys):
    from albsnn.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--threshold THRESHOLD range [0, 100]; default: 0.5" in help_text
    assert "--momentum MOMENTUM range [0, 1); default: 0.9" in help_text


def test_search_space_bounds_outside_a_range_are_rejected():
    pytest.importorskip("ray")
    from albsnn.sweep.space import parse_search_space

    with pytest.raises(ConfigError, match=r"momentum must be in \[0, 1\), but got momentum=1.0"):
        parse_search_space({"training": {"momentum": {"uniform": [0.5, 1.0]}}})
