"""Pipelines: one YAML file that says what a sweep trains, searches, optimises and records.

    name: demo                          # sweep name (default: the file name)
    dataset: digits                     # + data_dir, limit_train, limit_test, data_options
    arch: tiny
    epochs: 6
    train: {batch_size: 64}             # any other fixed TrainConfig fields
    search_space: ../search_spaces/demo.yaml     # relative to this file
    objectives: {val_accuracy: max, storage_bytes: min}   # validation metrics only
    mode: search                        # search (Optuna sampler) | ablation (grid x seeds)
    sampler: {kind: tpe, n_startup_trials: 6}    # tpe | nsga2 | random | qmc (search mode)
    pruner: {kind: pareto, min_dominators: 2}    # pareto (default with 2+ objectives) | moasha |
                                        # median | percentile | successive-halving | hyperband |
                                        # wilcoxon | none
    num_samples: 16                     # trials (search); repeats of the grid (ablation)
    max_concurrent: 2
    resources: {cpus: 1, gpus: 0}       # per trial; fractional gpus pack trials on one card
    seeds: [0]                          # search: the one seed; ablation: grid x seeds
    max_failures: 2                     # retries of a crashed trial, from its last checkpoint
    checkpoint_every: 1                 # epochs between trial checkpoints (the last epoch always)
    keep_checkpoints: 2                 # newest checkpoints each trial keeps
    storage: runs/sweeps                # Ray Tune storage: a folder all nodes share, or a URI
                                        # pyarrow.fs opens (s3://bucket/prefix, gs://..., hdfs://...)
    local_storage: runs/sweeps          # with a URI storage: the driver's sweep.json, journal, lock
    runtime_env: {working_dir: .., env_vars: {ALBSNN_DATA: /data}}   # Ray runtime_env of the job
    mlflow: {experiment: albsnn-demo, tracking_uri: null}
    report: {enabled: true, out_dir: null}
    confirm: {seeds: [1, 2], front: true, max_points: 8}   # re-run the Pareto front on more seeds
                                        # (multi-objective search only; albsnn.sweep.confirm)

Unknown keys, wrong types and values the trainer would reject are :class:`ConfigError` lines that
name the file and the key. ``docs/sweeps.md`` documents every key.

Rule of evidence: objectives and the pruning metric select runs, so they are validation metrics
(``val_accuracy``, carved from the training data); test metrics are reported, never selected on,
and an objective that names one is an error. Sweeps measure every candidate layer's true accuracy
drop at the end of each run (``estimator_check``) unless ``train: {estimator_check: false}``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from albsnn.errors import ConfigError
from albsnn.metrics import BEST_VAL_ACCURACY, TEST_PREFIX, VAL_ACCURACY
from albsnn.sweep._yaml import read_yaml_mapping
from albsnn.sweep.pruners import make_pruner, pruner_spec
from albsnn.sweep.samplers import make_sampler, sampler_spec
from albsnn.sweep.space import SearchSpace, field_types, load_search_space

__all__ = [
    "Pipeline",
    "load_pipeline",
    "parse_pipeline",
    "OBJECTIVE_METRICS",
    "PRUNE_METRIC",
    "SWEEP_TRAIN_DEFAULTS",
]

# Metrics a trial reports every epoch that a sweep may optimise: validation, training and cost
# metrics. Test metrics are missing on purpose (rule of evidence, see the module docstring).
OBJECTIVE_METRICS = (
    VAL_ACCURACY,
    "val_loss",
    BEST_VAL_ACCURACY,
    "train_accuracy",
    "train_loss",
    "storage_bytes",
    "storage_reduction",
    "fp32_bytes",
    "num_binarized",
    "epoch_seconds",
)
PRUNE_METRIC = (VAL_ACCURACY, "max")  # multi-objective sweeps prune on validation accuracy
# TrainConfig values every sweep trial gets unless the pipeline's `train` sets them.
SWEEP_TRAIN_DEFAULTS = {"estimator_check": True}  # record each layer's measured vs estimated drop
_TRAIN_KEYS = ("dataset", "data_dir", "limit_train", "limit_test", "data_options", "arch", "epochs")


@dataclass
class Pipeline:
    """A parsed, validated pipeline. Paths are absolute."""

    name: str
    path: Path
    dataset: str
    search_space: SearchSpace
    objectives: dict[str, str]
    epochs: int
    train: dict = field(default_factory=dict)  # fixed TrainConfig values (dataset, epochs, ... included)
    mode: str = "search"
    sampler: dict = field(default_factory=lambda: {"kind": "tpe"})
    pruner: dict = field(default_factory=lambda: {"kind": "none"})
    num_samples: int = 8
    max_concurrent: int | None = None
    resources: dict = field(default_factory=lambda: {"cpus": 1, "gpus": 0})
    seeds: list[int] = field(default_factory=lambda: [0])
    max_failures: int = 2
    checkpoint_every: int = 1
    keep_checkpoints: int = 2
    storage: Path = Path("runs/sweeps")  # the driver's sweep folders (and Ray's, without ray_storage)
    ray_storage: str | None = None  # a URI for Ray Tune's experiment folders (checkpoints, snapshots)
    runtime_env: dict | None = None
    experiment: str = ""
    tracking_uri: str | None = None
    report: dict = field(default_factory=lambda: {"enabled": True, "out_dir": None})
    confirm: dict | None = None  # {"seeds": [...], "front": True, "max_points": int | None}

    @property
    def metrics(self) -> list[str]:
        return list(self.objectives)

    @property
    def modes(self) -> list[str]:
        return list(self.objectives.values())

    @property
    def prune_on(self) -> tuple[str, str]:
        """(metric, mode) the pruning study records: a single objective, else validation accuracy."""
        if len(self.objectives) == 1:
            return next(iter(self.objectives.items()))
        return PRUNE_METRIC

    @property
    def prune_objectives(self) -> dict[str, str]:
        """``{metric: mode}`` a multi-objective pruner (``pareto``) compares: :attr:`prune_on` first."""
        metric, mode = self.prune_on
        return {metric: mode, **{k: v for k, v in self.objectives.items() if k != metric}}

    def base_config(self) -> dict:
        """Fixed TrainConfig values shared by every trial (search-space values are added per trial)."""
        seed = {"seed": self.seeds[0]} if self.mode == "search" else {}
        return {**self.train, **seed}

    def param_space(self) -> dict:
        """The Ray Tune ``param_space``: fixed values, and in ablation mode the grid and the seeds.

        In search mode the searcher samples the rest (:meth:`SearchSpace.suggest`, define-by-run).
        """
        from ray import tune

        if self.mode == "search":
            return {**self.base_config(), **self.search_space.fixed_values()}
        space = {**self.base_config(), **self.search_space.to_ray()}
        space["seed"] = tune.grid_search(list(self.seeds))
        return space

    def ray_storage_path(self) -> str:
        """Ray Tune's ``storage_path`` for this pipeline's sweeps (a folder or a URI)."""
        from albsnn.sweep.storage_uri import join_uri

        return join_uri(self.ray_storage, self.name) if self.ray_storage else str(self.storage / self.name)

    def experiment_path(self, sweep_id: str) -> str:
        """Ray Tune's experiment folder of sweep ``sweep_id`` (what ``Tuner.restore`` takes)."""
        from albsnn.sweep.storage_uri import join_uri

        return (
            join_uri(self.ray_storage_path(), sweep_id)
            if self.ray_storage
            else str(self.storage / self.name / sweep_id)
        )

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["path"], d["storage"] = str(self.path), str(self.storage)
        if self.ray_storage is None:
            d.pop("ray_storage")
        d["search_space"] = str(self.search_space.path)
        return d


_KEYS = {
    "name": str,
    "dataset": str,
    "data_dir": (str, type(None)),
    "limit_train": (int, type(None)),
    "limit_test": (int, type(None)),
    "data_options": dict,
    "arch": (str, type(None)),
    "epochs": int,
    "train": dict,
    "search_space": str,
    "objectives": dict,
    "mode": str,
    "sampler": (str, dict, type(None)),
    "pruner": (str, dict, type(None)),
    "num_samples": int,
    "max_concurrent": (int, type(None)),
    "resources": dict,
    "seeds": (list, int),
    "max_failures": int,
    "checkpoint_every": int,
    "keep_checkpoints": int,
    "storage": str,
    "local_storage": str,
    "runtime_env": dict,
    "mlflow": dict,
    "report": dict,
    "confirm": dict,
}
_REQUIRED = ("dataset", "epochs", "search_space", "objectives")


def load_pipeline(
    path: str | Path, *, num_samples: int | None = None, experiment: str | None = None
) -> Pipeline:
    """Read and validate a pipeline file (and its search space); CLI overrides apply on top."""
    path = Path(path).resolve()
    return parse_pipeline(
        read_yaml_mapping(path, "pipeline"), path, num_samples=num_samples, experiment=experiment
    )


def parse_pipeline(
    data: dict, path: Path, *, num_samples: int | None = None, experiment: str | None = None
) -> Pipeline:
    """Validate ``data`` read from pipeline file ``path``; every value a trial can get is checked here."""
    where = str(path)
    _check_keys(where, data)
    mode = _mode(where, data)
    space = load_search_space((path.parent / data["search_space"]).resolve())
    space.check_mode(mode)
    objectives = _objectives(where, data["objectives"])
    seeds = _seeds(where, data, mode)
    train = _train_values(where, data, space)
    samples = _num_samples(where, data, mode, num_samples)
    pruner, sampler = _pruner_and_sampler(where, data, mode, objectives, seeds)
    resources = _resources(where, data.get("resources", {}))
    counts = _counts(where, data)
    name = data.get("name", path.stem)
    storage, ray_storage = _storage(where, data)
    tracking = _tracking(where, data, name, experiment)
    report = _section(
        where, "report", data.get("report", {}), {"enabled": bool, "out_dir": (str, type(None))}
    )
    pipe = Pipeline(
        name=name,
        path=path,
        dataset=data["dataset"],
        search_space=space,
        objectives=objectives,
        epochs=data["epochs"],
        train=train,
        mode=mode,
        sampler=sampler,
        pruner=pruner,
        num_samples=samples,
        resources=resources,
        seeds=seeds,
        storage=storage,
        ray_storage=ray_storage,
        runtime_env=_runtime_env(where, data.get("runtime_env"), path.parent),
        report={"enabled": report.get("enabled", True), "out_dir": report.get("out_dir")},
        confirm=_confirm(where, data["confirm"], mode, objectives, seeds) if "confirm" in data else None,
        **counts,
        **tracking,
    )
    # validate the pruner's options now, not after the cluster starts
    make_pruner(pipe.pruner, pipe.epochs, where, pipe.prune_objectives)
    return pipe


def _check_keys(where: str, data: dict) -> None:
    """Known keys only, the required ones present, each of its type (:data:`_KEYS`)."""
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown pipeline key(s) {unknown}; known keys: {sorted(_KEYS)}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {missing}")
    for key, kinds in _KEYS.items():
        if key in data and (not isinstance(data[key], kinds) or isinstance(data[key], bool)):
            expected = " or ".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
            raise ConfigError(f"{where}: {key} must be {expected}, but got {data[key]!r}")


def _mode(where: str, data: dict) -> str:
    mode = data.get("mode", "search")
    if mode not in ("search", "ablation"):
        raise ConfigError(f"{where}: mode must be search or ablation, but got {mode!r}")
    return mode


def _seeds(where: str, data: dict, mode: str) -> list[int]:
    """The trials' seeds: one in search mode, the repeats of the grid in ablation mode."""
    seeds = data.get("seeds", [0])
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"{where}: seeds must be a non-empty list of integers, but got {seeds!r}")
    _check_seeds(f"{where}: seeds", seeds)
    if mode == "search" and len(seeds) != 1:
        raise ConfigError(
            f"{where}: search mode takes one seed, but got seeds={seeds}; repeat seeds with mode: ablation"
        )
    if mode == "ablation" and "sampler" in data:
        raise ConfigError(f"{where}: sampler applies to search mode only (ablation enumerates a grid)")
    return seeds


def _check_seeds(label: str, seeds: list[int]) -> None:
    """Each seed against the trainer's ``seed`` field: trials trust what the pipeline checked."""
    from albsnn.train import TrainConfig

    for seed in seeds:
        try:
            TrainConfig.check_value("seed", seed)
        except ConfigError as e:
            raise ConfigError(f"{label}: {e}") from None


def _num_samples(where: str, data: dict, mode: str, override: int | None) -> int:
    """Trials (search) or repeats of the grid (ablation); ``override`` is ``--num-samples``."""
    samples = override if override is not None else data.get("num_samples", 8 if mode == "search" else 1)
    if samples < 1:
        raise ConfigError(f"{where}: num_samples must be >= 1, but got {samples}")
    if mode == "ablation" and samples > 1:
        source = "--num-samples" if override is not None else "num_samples"
        raise ConfigError(
            f"{where}: {source}={samples} in ablation mode would run each cell again with the same "
            f"seed (identical runs); list more seeds instead, e.g. seeds: [0, 1, 2]"
        )
    return samples


def _pruner_and_sampler(
    where: str, data: dict, mode: str, objectives: dict, seeds: list[int]
) -> tuple[dict, dict]:
    # Pareto pruning by default where there is a front to keep; an ablation grid is never pruned
    # unless asked, and a single objective keeps the pruner it names.
    default_pruner = "pareto" if mode == "search" and len(objectives) > 1 else "none"
    pruner = pruner_spec(data.get("pruner", default_pruner), where)
    sampler = sampler_spec(data.get("sampler"), where)
    if mode == "search":
        make_sampler(sampler, seeds[0], where)
    return pruner, sampler


# Least values of the retry and checkpoint counts; Pipeline's defaults stand for those left out.
_COUNTS = {"max_failures": 0, "checkpoint_every": 1, "keep_checkpoints": 1}


def _counts(where: str, data: dict) -> dict:
    max_concurrent = data.get("max_concurrent")
    if max_concurrent is not None and max_concurrent < 1:
        raise ConfigError(f"{where}: max_concurrent must be >= 1, but got {max_concurrent}")
    for key, least in _COUNTS.items():
        if key in data and data[key] < least:
            raise ConfigError(f"{where}: {key} is out of range: {data[key]}")
    return {key: data[key] for key in ("max_concurrent", *_COUNTS) if key in data}


def _tracking(where: str, data: dict, name: str, experiment: str | None) -> dict:
    """MLflow's experiment (``--experiment``, else the pipeline's, else ``albsnn-<name>``) and server."""
    mlflow = _section(
        where, "mlflow", data.get("mlflow", {}), {"experiment": str, "tracking_uri": (str, type(None))}
    )
    return {
        "experiment": experiment or mlflow.get("experiment") or f"albsnn-{name}",
        "tracking_uri": mlflow.get("tracking_uri"),
    }


def _objectives(where: str, objectives: dict) -> dict[str, str]:
    if not objectives:
        raise ConfigError(f"{where}: objectives must name at least one metric, e.g. {{{VAL_ACCURACY}: max}}")
    for metric, mode in objectives.items():
        if str(metric).startswith(TEST_PREFIX):
            raise ConfigError(
                f"{where}: objective {metric!r}: objectives select runs and must use validation metrics "
                f"({VAL_ACCURACY}), {metric} is reported, never selected"
            )
        if metric not in OBJECTIVE_METRICS:
            raise ConfigError(
                f"{where}: objective {metric!r} is not a metric trials report; "
                f"use one of {list(OBJECTIVE_METRICS)}"
            )
        if mode not in ("max", "min"):
            raise ConfigError(f"{where}: objective {metric} must be max or min, but got {mode!r}")
    return dict(objectives)


_CONFIRM_KEYS = {"seeds": list, "front": bool, "max_points": (int, type(None))}


def _confirm(where: str, confirm: dict, mode: str, objectives: dict, seeds: list[int]) -> dict:
    """``confirm``: extra seeds for the search's Pareto front (``albsnn.sweep.confirm``)."""
    if mode != "search" or len(objectives) < 2:
        what = "an ablation" if mode != "search" else f"a single-objective search ({next(iter(objectives))})"
        raise ConfigError(
            f"{where}: confirm re-runs a Pareto front, but this pipeline is {what}; remove the confirm "
            "block, or list two or more objectives (e.g. storage_bytes: min)"
        )
    confirm = _section(where, "confirm", confirm, _CONFIRM_KEYS)
    extra = confirm.get("seeds")
    if not extra or not all(isinstance(s, int) and not isinstance(s, bool) for s in extra):
        raise ConfigError(f"{where}: confirm.seeds must be a non-empty list of integers, but got {extra!r}")
    _check_seeds(f"{where}: confirm.seeds", extra)
    if len(set(extra)) != len(extra) or set(extra) & set(seeds):
        raise ConfigError(
            f"{where}: confirm.seeds {extra} must be distinct and differ from the search seed {seeds[0]}"
        )
    if not confirm.get("front", True):
        raise ConfigError(f"{where}: confirm.front: false selects nothing to confirm; set front: true")
    cap = confirm.get("max_points")
    if cap is not None and (isinstance(cap, bool) or cap < 1):
        raise ConfigError(f"{where}: confirm.max_points must be >= 1 (null: the whole front), got {cap}")
    return {"seeds": list(extra), "front": True, "max_points": cap}


def _train_values(where: str, data: dict, space: SearchSpace) -> dict:
    """The fixed TrainConfig values; checked by TrainConfig itself and against the search space."""
    from albsnn.data import dataset_info

    train = dict(data.get("train", {}))
    types = field_types()
    for key in train:
        if key not in types:
            raise ConfigError(
                f"{where}: train.{key}: the trainer does not take {key!r} (not a TrainConfig field)"
            )
        if key in ("out", "seed", *_TRAIN_KEYS):
            raise ConfigError(f"{where}: train.{key}: set {key} as a top-level pipeline key, not under train")
    for key in _TRAIN_KEYS:
        if key in data:
            train[key] = data[key]
    defaults = {k: v for k, v in SWEEP_TRAIN_DEFAULTS.items() if k not in space.names}
    train = {**defaults, **train}
    if "data_dir" in train and train["data_dir"] is not None:
        train["data_dir"] = str(Path(train["data_dir"]).expanduser().resolve())
    clash = sorted(set(train) & set(space.names))
    if clash:
        raise ConfigError(f"{where}: {clash} are both fixed in the pipeline and in the search space")
    dataset_info(train["dataset"])
    if train["epochs"] < 1:
        raise ConfigError(f"{where}: epochs must be >= 1, but got {train['epochs']}")
    _check_train(where, train)
    return train


def _check_train(where: str, train: dict) -> None:
    """Each fixed value alone, once, then all of them under the rules that join values."""
    from albsnn.train import TrainConfig

    try:
        for key, value in train.items():
            TrainConfig.check_value(key, value)
        TrainConfig.from_checked(train).check_parts()
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except TypeError as e:
        raise ConfigError(f"{where}: train: {e}") from None


def _resources(where: str, resources: dict) -> dict:
    unknown = sorted(set(resources) - {"cpus", "gpus"})
    if unknown:
        raise ConfigError(f"{where}: resources takes cpus and gpus, but got {unknown}")
    cpus, gpus = resources.get("cpus", 1), resources.get("gpus", 0)
    for key, value in (("cpus", cpus), ("gpus", gpus)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{where}: resources.{key} must be a number >= 0, but got {value!r}")
    if cpus <= 0:
        raise ConfigError(f"{where}: resources.cpus must be > 0, but got {cpus}")
    if gpus > 1 and gpus != int(gpus):
        raise ConfigError(f"{where}: resources.gpus above 1 must be a whole number, but got {gpus}")
    return {"cpus": cpus, "gpus": gpus}


def _storage(where: str, data: dict) -> tuple[Path, str | None]:
    """(the driver's sweep folder root, Ray's storage URI or None when that is the same folder)."""
    from albsnn.sweep.storage_uri import is_uri

    value = data.get("storage", "runs/sweeps")
    if not is_uri(value):
        if "local_storage" in data:
            raise ConfigError(
                f"{where}: local_storage applies only when storage is a URI (s3://, gs://, ...)"
            )
        return Path(value.removeprefix("file://")).expanduser().resolve(), None
    local = data.get("local_storage", "runs/sweeps")
    return Path(local).expanduser().resolve(), value


# Ray runtime_env keys a pipeline may set; paths are relative to the pipeline file.
_RUNTIME_ENV = {"working_dir": str, "py_modules": list, "env_vars": dict, "excludes": list, "pip": list}


def _runtime_env(where: str, env: dict | None, folder: Path) -> dict | None:
    if env is None:
        return None
    env = dict(_section(where, "runtime_env", env, _RUNTIME_ENV))
    bad = {k: v for k, v in env.get("env_vars", {}).items() if not isinstance(v, str)}
    if bad:
        raise ConfigError(f"{where}: runtime_env.env_vars values must be strings (quote them), but got {bad}")
    if "working_dir" in env and "://" not in env["working_dir"]:
        env["working_dir"] = _existing(where, "runtime_env.working_dir", folder / env["working_dir"])
    if "py_modules" in env:
        env["py_modules"] = [
            m if "://" in m else _existing(where, "runtime_env.py_modules", folder / m)
            for m in env["py_modules"]
        ]
    return env


def _existing(where: str, key: str, path: Path) -> str:
    if not path.exists():
        raise ConfigError(f"{where}: {key}: {path} does not exist (paths are relative to the pipeline file)")
    return str(path.resolve())


def _section(where: str, name: str, values: dict, keys: dict) -> dict:
    unknown = sorted(set(values) - set(keys))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} under {name}; known: {sorted(keys)}")
    for key, kinds in keys.items():
        if key in values and not isinstance(values[key], kinds):
            raise ConfigError(f"{where}: {name}.{key} has the wrong type: {values[key]!r}")
    return values
