"""Search spaces and pipelines: YAML -> Ray / Optuna domains, and one clear message per bad input."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from albsnn.errors import ConfigError
from albsnn.sweep import load_pipeline, load_search_space
from albsnn.sweep.pipeline import PRUNE_METRIC
from albsnn.sweep.space import _NOT_SWEEPABLE, GROUPS

REPO = Path(__file__).resolve().parents[2]
D = optuna.distributions


def _space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_yaml_round_trips_to_the_optuna_distributions_ray_derives(tmp_path):
    # Rule: our own Optuna mapping and OptunaSearch's conversion of our Ray domains agree, and
    # `int: [lo, hi]` is inclusive on both ends (Ray's randint upper bound is exclusive).
    space = load_search_space(
        _space(
            tmp_path,
            """
            model:
              time_steps: {int: [1, 4]}
              width: {choice: [0.25, 0.5]}
            estimator:
              threshold: {uniform: [0.1, 0.6]}
              budget: {choice: [null, 0.5]}
            bwo:
              bwo: {choice: [project, off]}
            training:
              lr: {loguniform: [1e-4, 1e-2]}
              epochs: {fixed: 3}
            """,
        )
    )
    expected = {
        "time_steps": D.IntDistribution(1, 4),
        "width": D.CategoricalDistribution([0.25, 0.5]),
        "threshold": D.FloatDistribution(0.1, 0.6),
        "budget": D.CategoricalDistribution([None, 0.5]),
        "bwo": D.CategoricalDistribution(["project", "off"]),
        "lr": D.FloatDistribution(1e-4, 1e-2, log=True),
    }
    assert space.to_optuna() == expected
    assert OptunaSearch.convert_search_space(space.to_ray()) == expected
    trial = optuna.create_study().ask()  # the define-by-run space a search sweep samples from
    assert space.suggest(trial) == {**trial.params, "epochs": 3}
    assert trial.distributions == expected
    ray_space = space.to_ray()
    assert ray_space["epochs"] == 3
    assert (ray_space["time_steps"].lower, ray_space["time_steps"].upper) == (1, 5)
    assert space.types() == {
        "time_steps": "int",
        "width": "float",
        "threshold": "float",
        "budget": "float",
        "bwo": "str",
        "lr": "float",
        "epochs": "int",
    }


def test_grid_parameters_become_ray_grid_search(tmp_path):
    space = load_search_space(_space(tmp_path, "model:\n  head: {grid: [gap, fc]}\n"))
    assert space.to_ray() == {"head": tune.grid_search(["gap", "fc"])}
    space.check_mode("ablation")


# (YAML text, words the message must contain) -- one row per problem.
BAD_SPACES = [
    ("model:\n  width: {normal: [0, 1]}\n", ["model.width", "unknown kind 'normal'"]),
    ("training:\n  lr: {uniform: [0.1, 0.01]}\n", ["training.lr", "low < high", "low=0.1"]),
    ("training:\n  lr: {loguniform: [0, 0.1]}\n", ["training.lr", "low > 0"]),
    ("model:\n  time_steps: {uniform: [1, 4]}\n", ["model.time_steps", "float parameter", "int"]),
    ("training:\n  lr: {int: [1, 4]}\n", ["training.lr", "int parameter", "float"]),
    ("bwo:\n  bwo: {uniform: [0, 1]}\n", ["bwo.bwo", "numeric parameter"]),
    ("model:\n  width: {choice: [0.5, wide]}\n", ["model.width", "'wide'", "wrong type", "expected float"]),
    ("model:\n  depth: {choice: [1, 2]}\n", ["model.depth", "does not take 'depth'"]),
    ("model:\n  lr: {fixed: 0.1}\n", ["model.lr", "belongs in group 'training'"]),
    ("optim:\n  lr: {fixed: 0.1}\n", ["unknown group 'optim'"]),
    ("bwo:\n  bwo: {choice: [project, sideways]}\n", ["bwo.bwo", "'sideways'", "rejected by the trainer"]),
    ("estimator:\n  budget: {fixed: 1.5}\n", ["estimator.budget", "rejected by the trainer", "(0, 1)"]),
    ("model:\n  width: {uniform: [0.1]}\n", ["model.width", "takes [low, high]"]),
    ("model:\n  width: {choice: []}\n", ["model.width", "non-empty list"]),
    ("model:\n  width: {choice: [0.5], fixed: 1}\n", ["model.width", "exactly one of"]),
    ("training:\n  seed: {choice: [0, 1]}\n", ["training.seed", "pipeline's `seeds`"]),
    ("model: [width]\n", ["group model"]),
    ("model:\n  width: {choice: [0.5\n", ["malformed YAML", "line"]),
    ("- a\n- b\n", ["must be a mapping"]),
    ("", ["is empty"]),
]


@pytest.mark.parametrize("text, words", BAD_SPACES, ids=[w[0][:30] for _, w in BAD_SPACES])
def test_bad_search_space_names_file_parameter_and_problem(tmp_path, text, words):
    path = _space(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_search_space(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message


def test_values_are_checked_with_the_spaces_fixed_values(tmp_path):
    # Rule: a value that needs another field (binarize=random needs a budget) passes when the space
    # fixes that field, and is named with the trainer's reason when it does not.
    text = "estimator:\n  binarize: {grid: [adaptive, random]}\n"
    assert load_search_space(_space(tmp_path, text + "  budget: {fixed: 0.5}\n"))["binarize"].kind == "grid"
    with pytest.raises(ConfigError, match=r"estimator\.binarize: value 'random' .* needs a budget"):
        load_search_space(_space(tmp_path, text))


def test_yaml_reads_off_as_text_and_1e_minus_3_as_a_number(tmp_path):
    # Rule: YAML 1.2 scalars. PyYAML's 1.1 rules would make `off` False and `1e-3` a string.
    space = load_search_space(
        _space(tmp_path, "bwo:\n  bwo: {choice: [off, project]}\ntraining:\n  lr: {fixed: 1e-3}\n")
    )
    assert space["bwo"].values == ("off", "project")
    assert space["lr"].values == (0.001,)


@pytest.mark.parametrize(
    "mode, text, word",
    [
        ("search", "model:\n  head: {grid: [gap, fc]}\n", "grid is for `mode: ablation`"),
        ("ablation", "model:\n  width: {choice: [0.5, 1.0]}\n", "ablation mode enumerates a grid"),
    ],
)
def test_each_mode_rejects_the_other_modes_kinds(tmp_path, mode, text, word):
    space = load_search_space(_space(tmp_path, text))
    with pytest.raises(ConfigError, match=word):
        space.check_mode(mode)


def test_groups_cover_every_sweepable_trainconfig_field():
    import dataclasses

    from albsnn.train import TrainConfig

    grouped = [name for names in GROUPS.values() for name in names]
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert len(grouped) == len(set(grouped))  # no field in two groups
    assert set(grouped) | set(_NOT_SWEEPABLE) == fields
    assert not set(grouped) & set(_NOT_SWEEPABLE)


def test_groups_are_the_trainconfig_group_metadata():
    # Rule: TrainConfig's field metadata is the one source; the search space adds only what it
    # never samples (_NOT_SWEEPABLE), and keeps the group names that search-space files use.
    import dataclasses

    from albsnn.train import CONFIG_GROUPS, TrainConfig

    expected = {
        group: tuple(
            f.name
            for f in dataclasses.fields(TrainConfig)
            if f.metadata["group"] == group and f.name not in _NOT_SWEEPABLE
        )
        for group in CONFIG_GROUPS
    }
    assert expected == GROUPS
    assert list(GROUPS) == ["model", "estimator", "bwo", "training", "data"]


@pytest.mark.parametrize("name", ["val_fraction", "estimator_check"])
def test_validation_split_and_estimator_check_are_not_sampled(tmp_path, name):
    # Rule: every trial is compared on the same validation split, and the check is a measurement.
    path = _space(tmp_path, f"data:\n  {name}: {{fixed: 0.2}}\n")
    with pytest.raises(ConfigError, match=f"data.{name}: not a search-space parameter"):
        load_search_space(path)


@pytest.mark.parametrize("path", sorted((REPO / "search_spaces").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_search_spaces_parse(path):
    assert load_search_space(path).params


@pytest.mark.parametrize("path", sorted((REPO / "pipelines").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_pipelines_parse(path):
    pipeline = load_pipeline(path)
    assert pipeline.objectives and pipeline.search_space.params
    if pipeline.mode == "search":
        OptunaSearch.convert_search_space(pipeline.param_space())


def test_ablation_param_space_is_the_grid_times_the_seeds(write_pipeline, tmp_path):
    path = write_pipeline(
        tmp_path,
        "abl",
        space="model:\n  head: {grid: [gap, fc]}\n",
        mode="ablation",
        seeds=[0, 1, 2],
        sampler=None,
        num_samples=None,
    )
    space = load_pipeline(path).param_space()
    with pytest.raises(ConfigError, match="--num-samples=2 in ablation mode"):
        load_pipeline(path, num_samples=2)
    assert space["head"] == tune.grid_search(["gap", "fc"])
    assert space["seed"] == tune.grid_search([0, 1, 2])
    assert space["epochs"] == 3 and space["dataset"] == "digits"


CONDITIONAL_SPACE = """
bwo:
  bwo_patience: {int: [1, 5], when: {bwo: [project]}}   # before its parent: order is resolved
  bwo: {choice: [project, "off"]}
  bwo_eps: {loguniform: [1e-3, 5e-2], when: {bwo: project}}
model:
  width: {choice: [0.25, 0.5]}
  time_steps: {int: [1, 2], when: {width: [0.5], bwo: [project]}}
"""


def test_conditional_parameters_are_sampled_only_when_their_parent_matches(tmp_path):
    # Rule: BWO knobs are sampled only with BWO on; a trial without them trains with the defaults
    # and its Optuna trial has no such parameter (define-by-run), so samplers never see noise.
    space = load_search_space(_space(tmp_path, CONDITIONAL_SPACE))
    assert space.names.index("bwo") < space.names.index("bwo_patience")
    assert space["bwo_eps"].when == (("bwo", ("project",)),)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        values = space.suggest(trial)
        assert values == trial.params
        on = values["bwo"] == "project"
        assert ("bwo_patience" in values) == on and ("bwo_eps" in values) == on
        assert ("time_steps" in values) == (on and values["width"] == 0.5)
        seen.add((on, "time_steps" in values))
    assert seen == {(False, False), (True, False), (True, True)}


@pytest.mark.parametrize(
    "text, words",
    [
        ("bwo:\n  bwo_patience: {int: [1, 5], when: {bwo: [project]}}\n", "when names 'bwo', which is not"),
        (
            'bwo:\n  bwo: {choice: [project, "off"]}\n  bwo_eps: {uniform: [0.1, 0.2], when: {bwo: [on]}}\n',
            "never takes",
        ),
        (
            "model:\n  decay: {uniform: [0.2, 0.9]}\n  width: {choice: [0.5, 1.0], when: {decay: [0.5]}}\n",
            "a uniform parameter",
        ),
        (
            "model:\n  width: {choice: [0.5], when: {head: [gap]}}\n"
            "  head: {choice: [gap], when: {width: [0.5]}}\n",
            "form a cycle",
        ),
        ("model:\n  width: {choice: [0.5], when: [head]}\n", "when takes {parent: [values]}"),
    ],
)
def test_bad_conditions_are_one_line_errors_naming_the_parameter(tmp_path, text, words):
    with pytest.raises(ConfigError) as info:
        load_search_space(_space(tmp_path, text))
    message = str(info.value)
    assert words in message and "\n" not in message and "parameter" in message


def test_conditions_need_search_mode(write_pipeline, tmp_path):
    space = "model:\n  head: {fixed: gap}\n  width: {grid: [0.25, 0.5], when: {head: [gap]}}\n"
    path = write_pipeline(tmp_path, "cond-abl", space=space, mode="ablation", sampler=None)
    with pytest.raises(ConfigError, match="model.width: `when` needs mode: search"):
        load_pipeline(path)


def test_search_param_space_holds_only_values_every_trial_shares(write_pipeline, tmp_path):
    # Rule: the searcher samples (define-by-run); Ray's param_space must not hold domains too.
    space = "model:\n  head: {fixed: gap}\n  width: {choice: [0.25, 0.5]}\n"
    space += "  time_steps: {fixed: 2, when: {width: [0.5]}}\n"
    param_space = load_pipeline(write_pipeline(tmp_path, "ps", space=space)).param_space()
    assert param_space["head"] == "gap" and "width" not in param_space and "time_steps" not in param_space


# pipeline overrides -> words of the message
BAD_PIPELINES = [
    ({"colour": "blue"}, ["unknown pipeline key(s) ['colour']"]),
    ({"objectives": {"accuracy": "max"}}, ["objective 'accuracy'", "val_accuracy"]),
    ({"objectives": {"val_accuracy": "up"}}, ["must be max or min"]),
    ({"mode": "grid"}, ["mode must be search or ablation"]),
    ({"pruner": "aggressive"}, ["unknown pruner 'aggressive'"]),
    ({"pruner": {"kind": "median", "patience": 3}}, ["pruner median", "patience"]),
    ({"sampler": "cmaes"}, ["unknown sampler 'cmaes'"]),
    ({"seeds": [0, 1]}, ["search mode takes one seed"]),
    ({"dataset": "mnist"}, ["unknown dataset 'mnist'"]),
    ({"train": {"width": 0.5}}, ["['width'] are both fixed in the pipeline and in the search space"]),
    ({"train": {"depth": 3}}, ["train.depth", "does not take 'depth'"]),
    ({"epochs": 0}, ["epochs must be >= 1"]),
    ({"resources": {"cpus": 1, "tpus": 1}}, ["resources takes cpus and gpus"]),
    ({"num_samples": "many"}, ["num_samples must be int"]),
    ({"mlflow": {"experiment": "x", "server": "y"}}, ["unknown key(s) ['server'] under mlflow"]),
    ({"checkpoint_every": 0}, ["checkpoint_every is out of range: 0"]),
    ({"seeds": [-1]}, ["seeds: seed must be in [0, 4294967295]", "seed=-1"]),
    (
        {
            "mode": "ablation",
            "sampler": None,
            "num_samples": 3,
            "space": "model:\n  head: {grid: [gap, fc]}\n",
        },
        ["num_samples=3 in ablation mode", "identical runs", "seeds: [0, 1, 2]"],
    ),
]


@pytest.mark.parametrize("overrides, words", BAD_PIPELINES, ids=[w[0][:30] for _, w in BAD_PIPELINES])
def test_bad_pipeline_names_file_key_and_problem(write_pipeline, tmp_path, overrides, words):
    path = write_pipeline(tmp_path, "bad", **overrides)
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    message = str(info.value)
    assert str(path) in message or "dataset" in message
    for word in words:
        assert word in message


SELECTION_MESSAGE = "objectives select runs and must use validation metrics (val_accuracy)"


@pytest.mark.parametrize(
    "objectives",
    [
        {"test_accuracy": "max", "storage_bytes": "min"},
        {"test_accuracy": "max"},
        {"val_accuracy": "max", "test_loss": "min"},
    ],
)
def test_pipeline_objective_on_a_test_metric_is_rejected(write_pipeline, tmp_path, objectives):
    # Rule of evidence: select on validation, report on test. One line, naming file and metric.
    path = write_pipeline(tmp_path, "selects-on-test", objectives=objectives)
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    message = str(info.value)
    test_metric = next(m for m in objectives if m.startswith("test_"))
    assert str(path) in message and SELECTION_MESSAGE in message
    assert f"{test_metric} is reported, never selected" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "objectives, prune_on",
    [
        ({"val_accuracy": "max", "storage_bytes": "min"}, ("val_accuracy", "max")),
        ({"storage_bytes": "min"}, ("storage_bytes", "min")),
    ],
)
def test_pruning_metric_is_val_accuracy_or_the_single_objective(
    write_pipeline, tmp_path, objectives, prune_on
):
    # Rule: multi-objective sweeps prune on validation accuracy; a single objective prunes on itself.
    assert PRUNE_METRIC == ("val_accuracy", "max")
    path = write_pipeline(tmp_path, "prune", objectives=objectives)
    assert load_pipeline(path).prune_on == prune_on


@pytest.mark.parametrize("train, expected", [({}, True), ({"estimator_check": False}, False)])
def test_sweeps_check_the_estimator_unless_the_pipeline_turns_it_off(
    write_pipeline, tmp_path, train, expected
):
    path = write_pipeline(tmp_path, "check", train={"batch_size": 100, **train})
    assert load_pipeline(path).base_config()["estimator_check"] is expected


@pytest.mark.parametrize("path", sorted((REPO / "pipelines").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_pipelines_select_on_validation(path):
    pipeline = load_pipeline(path)
    assert pipeline.objectives == {"val_accuracy": "max", "storage_bytes": "min"}
    assert pipeline.prune_on == ("val_accuracy", "max")


def test_ablation_space_has_a_random_cell_at_the_adaptive_budget():
    # Rule: `random` binarizes chance layers to the same storage reduction as the estimator's
    # budget mode, so the two cells differ only in which layers are binary.
    space = load_search_space(REPO / "search_spaces" / "ablation-components.yaml")
    assert space["binarize"].kind == "grid"
    assert space["binarize"].values == ("adaptive", "random", "all", "none")
    assert (space["budget"].kind, space["budget"].values) == ("fixed", (0.5,))


def test_every_cell_of_the_shipped_ablation_is_a_valid_trainconfig():
    # Rule: the fixed budget goes to every cell, so all/none must accept it too.
    import itertools

    from albsnn.train import TrainConfig

    pipeline = load_pipeline(REPO / "pipelines" / "fmnist-ablation.yaml")
    grid = {p.name: p.values for p in pipeline.search_space.params}
    for values in itertools.product(*grid.values()):
        cell = {**pipeline.base_config(), **dict(zip(grid, values, strict=True)), "seed": 0}
        TrainConfig.from_dict(cell)


def test_library_imports_without_the_platform():
    # Rule: albsnn (library) and the sweep parsers import neither Ray, Optuna nor MLflow.
    code = (
        "import sys, albsnn, albsnn.train, albsnn.sweep, albsnn.sweep.tracking.layout\n"
        "albsnn.sweep.load_search_space('search_spaces/demo.yaml')\n"
        "bad = [m for m in ('ray', 'mlflow', 'optuna') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


# ---------------------------------------------------------------- a value is checked once


def test_pipeline_checks_each_value_a_trial_can_get_once(write_pipeline, tmp_path, monkeypatch):
    # Rule: every value a trial can get is checked alone exactly once, when the pipeline is read:
    # the fixed values, the seed, and each search-space domain's bounds or choices (a declared range
    # is an interval, so a domain whose ends are inside it lies inside it).
    import collections

    from albsnn.train import TrainConfig

    checked = collections.Counter()
    check = TrainConfig.check_value

    def counting(name, value):
        checked[name, repr(value)] += 1
        check(name, value)

    monkeypatch.setattr(TrainConfig, "check_value", staticmethod(counting))
    load_pipeline(write_pipeline(tmp_path, "once"))
    domains = {("width", "0.25"), ("width", "0.5"), ("time_steps", "1"), ("time_steps", "2")}
    domains |= {("lr", "0.001"), ("lr", "0.01")}
    fixed = {("seed", "0"), ("epochs", "3"), ("batch_size", "100"), ("warmup", "1"), ("limit_train", "300")}
    assert domains | fixed <= set(checked)
    assert set(checked.values()) == {1}


@pytest.mark.filterwarnings("ignore:`get_.*` is meant to only be called:UserWarning")
def test_a_trial_builds_its_config_without_checking_values_again(write_pipeline, tmp_path, monkeypatch):
    # Rule: trials trust the pipeline. One trial's config builds (the driver's MLflow params, the
    # trainable's TrainConfig) range-check nothing and build no model, policy or trigger to judge
    # (before: `threshold` was checked 5 times per trial); fit's trainer builds each once.
    import torch

    import albsnn.models
    import albsnn.train
    from albsnn.sweep.tracking.callback import trial_params
    from albsnn.sweep.trainable import TrialOptions, run_trial

    pipe = load_pipeline(write_pipeline(tmp_path, "trusted"))
    config = {**pipe.param_space(), "width": 0.5, "time_steps": 2, "lr": 3e-3}  # one trial's sample
    checks, fitted = [], []
    for module in (albsnn.train, albsnn.models):
        monkeypatch.setattr(module, "check_in_range", lambda name, *_: checks.append(name))
    monkeypatch.setattr(albsnn.train.TrainConfig, "check_parts", lambda self: checks.append("parts"))
    monkeypatch.setattr(albsnn.train, "fit", lambda config, *_, **__: fitted.append(config))
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # the test process keeps its threads
    trial_params(config)
    run_trial(config, TrialOptions())
    assert checks == []
    assert fitted[0] == albsnn.train.TrainConfig.from_dict({**config, "out": None})


def test_a_trial_still_refuses_two_sampled_values_that_cannot_meet():
    # Rule: trusted values are checked alone; TrainConfig's own rule that joins two of them still runs.
    from albsnn.train import TrainConfig

    with pytest.raises(ConfigError, match="readout=rate needs time_steps >= 2"):
        TrainConfig.from_checked({"readout": "rate", "time_steps": 1})
    with pytest.raises(ConfigError, match=r"unknown training parameter\(s\) \['depth'\]"):
        TrainConfig.from_checked({"depth": 3})
