"""Search spaces: YAML files of :class:`~albsnn.train.TrainConfig` parameters, grouped, validated.

A search space file names parameters under the groups ``model``, ``estimator``, ``bwo``,
``training`` and ``data``; each parameter is one of::

    model:
      time_steps: {int: [1, 4]}            # integers lo..hi, both inclusive
      width: {choice: [0.25, 0.5, 1.0]}
    estimator:
      threshold: {uniform: [1.0, 10.0]}    # percent scale (docs/method.md)
      estimator: {grid: [weight-error, taylor]}   # ablation mode only
    bwo:
      bwo: {fixed: project}                # or just `bwo: project`
    training:
      lr: {loguniform: [1e-4, 1e-2]}

A parameter may be *conditional*: ``when: {parent: [values]}`` samples it only in trials whose
``parent`` (a ``choice`` or ``fixed`` parameter of the same file) took one of ``values``; other
trials leave it out and train with the TrainConfig default::

    bwo:
      bwo: {choice: [project, "off"]}
      bwo_patience: {int: [1, 5], when: {bwo: [project]}}   # no BWO knobs when bwo is off

Names are ``TrainConfig`` fields, each under the group its field's ``group`` metadata names
(:data:`GROUPS` is read from that metadata, so TrainConfig is the one source). Every value
is checked against the field's type and against the trainer's own validation, together with the
space's ``fixed`` values (``binarize: random`` needs a fixed ``budget``), so a sweep never starts
with a value the trainer would reject. Errors name the file, the parameter and the problem.

:meth:`SearchSpace.suggest` is the Optuna define-by-run search space a search sweep samples from
(conditions are what define-by-run is for); :meth:`SearchSpace.to_ray` gives Ray Tune domains
(``int: [lo, hi]`` becomes ``tune.randint(lo, hi + 1)``: Ray's upper bound is exclusive), which an
ablation sweep enumerates; :meth:`SearchSpace.to_optuna` gives the Optuna distributions.

    >>> space = load_search_space("search_spaces/demo.yaml")
    >>> sorted(space.names)[:2]
    ['bwo', 'lr']
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from pathlib import Path

from albsnn._typing import scalar_type, split_optional
from albsnn.errors import ConfigError
from albsnn.sweep._imports import require
from albsnn.sweep._yaml import read_yaml_mapping
from albsnn.train import CONFIG_GROUPS, TrainConfig

__all__ = [
    "KINDS",
    "GROUPS",
    "Param",
    "SearchSpace",
    "load_search_space",
    "parse_search_space",
    "field_types",
]

KINDS = ("choice", "uniform", "loguniform", "int", "grid", "fixed")
WHEN = "when"  # the condition key of a parameter spec
SEARCH_KINDS = ("choice", "uniform", "loguniform", "int", "fixed")
ABLATION_KINDS = ("grid", "fixed")

# Set by the pipeline or the sweep itself, never sampled.
_NOT_SWEEPABLE = {
    "seed": "seeds come from the pipeline's `seeds` list",
    "out": "the sweep gives every trial its own folder",
    "dataset": "the dataset is the pipeline's `dataset`",
    "data_dir": "the data folder is the pipeline's `data_dir`",
    "data_options": "dataset options are the pipeline's `data_options`",
    "device": "the device follows the pipeline's `resources`",
    "val_fraction": "trials are compared on one validation split; fix it in the pipeline's `train`",
    "estimator_check": "a measurement, not a setting; sweeps turn it on (pipeline `train` to turn it off)",
}
# The sweepable TrainConfig fields of each group, from the fields' `group` metadata.
GROUPS: dict[str, tuple[str, ...]] = {
    group: tuple(
        f.name
        for f in dataclasses.fields(TrainConfig)
        if f.metadata["group"] == group and f.name not in _NOT_SWEEPABLE
    )
    for group in CONFIG_GROUPS
}


def field_types() -> dict[str, type]:
    """``{TrainConfig field: int | float | str | bool | dict}`` (``X | None`` reads as ``X``)."""
    return {name: scalar_type(hint) for name, hint in typing.get_type_hints(TrainConfig).items()}


def _optional_fields() -> set[str]:
    return {name for name, hint in typing.get_type_hints(TrainConfig).items() if split_optional(hint)[1]}


@dataclass(frozen=True)
class Param:
    """One parameter of a search space: ``kind`` is one of :data:`KINDS`; ``values`` its list.

    ``choice``/``grid``: the options; ``uniform``/``loguniform``/``int``: ``[lo, hi]``;
    ``fixed``: ``[value]``.
    """

    name: str
    group: str
    kind: str
    values: tuple
    type: str  # "float" | "int" | "str" | "bool": how a reader casts MLflow's string params
    when: tuple[tuple[str, tuple], ...] = ()  # ((parent, allowed values), ...): all must hold

    def active(self, chosen: dict) -> bool:
        """Whether this parameter is sampled, given the values ``chosen`` so far (parents first)."""
        return all(parent in chosen and chosen[parent] in allowed for parent, allowed in self.when)

    def suggest(self, trial):
        """Sample this parameter on Optuna ``trial`` (define-by-run); a ``fixed`` value is returned."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.values))
        if self.kind in ("uniform", "loguniform"):
            return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "loguniform")
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high)
        if self.kind == "fixed":
            return self.values[0]
        raise ConfigError(f"parameter {self.group}.{self.name}: {self.kind} cannot be sampled")

    @property
    def low(self):
        return self.values[0]

    @property
    def high(self):
        return self.values[1]

    def to_ray(self):
        from ray import tune

        if self.kind == "choice":
            return tune.choice(list(self.values))
        if self.kind == "uniform":
            return tune.uniform(self.low, self.high)
        if self.kind == "loguniform":
            return tune.loguniform(self.low, self.high)
        if self.kind == "int":
            return tune.randint(self.low, self.high + 1)  # Ray's upper bound is exclusive
        if self.kind == "grid":
            return tune.grid_search(list(self.values))
        return self.values[0]

    def to_optuna(self):
        distributions = require("optuna.distributions")
        if self.kind == "choice":
            return distributions.CategoricalDistribution(list(self.values))
        if self.kind in ("uniform", "loguniform"):
            return distributions.FloatDistribution(self.low, self.high, log=self.kind == "loguniform")
        if self.kind == "int":
            return distributions.IntDistribution(self.low, self.high)
        return None  # grid / fixed: not an Optuna distribution


@dataclass(frozen=True)
class SearchSpace:
    """The validated parameters of one search-space file."""

    params: tuple[Param, ...]
    path: Path | None = None

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def __getitem__(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def kinds(self) -> set[str]:
        return {p.kind for p in self.params}

    def to_ray(self) -> dict:
        """``{field: Ray Tune domain | grid_search | constant}`` for ``Tuner(param_space=...)``."""
        require("ray.tune")
        return {p.name: p.to_ray() for p in self.params}

    def to_optuna(self) -> dict:
        """``{field: optuna distribution}`` for the sampled parameters (fixed ones left out)."""
        return {p.name: d for p in self.params if (d := p.to_optuna()) is not None}

    def fixed_values(self) -> dict:
        """``{field: value}`` of the unconditional ``fixed`` parameters (every trial has them)."""
        return {p.name: p.values[0] for p in self.params if p.kind == "fixed" and not p.when}

    def suggest(self, trial) -> dict:
        """Optuna define-by-run search space: sample ``trial``'s values, parents before children.

        A conditional parameter whose condition fails is not sampled and not returned (its trial
        uses the TrainConfig default). Picklable (a bound method of a frozen dataclass), so Ray's
        ``OptunaSearch(space=space.suggest)`` survives experiment snapshots.
        """
        chosen: dict = {}
        for p in self.params:  # parents come first (parse_search_space orders them)
            if p.active(chosen):
                chosen[p.name] = p.suggest(trial)
        return chosen

    def types(self) -> dict[str, str]:
        """``{field: "float" | "int" | "str" | "bool"}`` (the MLflow tag ``albsnn.search_space_types``)."""
        return {p.name: p.type for p in self.params}

    def check_mode(self, mode: str) -> None:
        """Search mode samples (no ``grid``); ablation mode enumerates (``grid`` and ``fixed`` only)."""
        allowed = SEARCH_KINDS if mode == "search" else ABLATION_KINDS
        for p in self.params:
            if p.when and mode != "search":
                raise ConfigError(
                    f"{self.path or 'search space'}: parameter {p.group}.{p.name}: `when` needs "
                    f"mode: search (an ablation grid enumerates every combination); remove the condition"
                )
            if p.kind not in allowed:
                hint = (
                    "grid is for `mode: ablation`; use choice in search mode"
                    if mode == "search"
                    else "ablation mode enumerates a grid; write the values as `grid: [...]`"
                )
                raise ConfigError(
                    f"{self.path or 'search space'}: parameter {p.group}.{p.name}: "
                    f"{p.kind} cannot be used in {mode} mode ({hint})"
                )
        if mode == "search" and not self.to_optuna():
            raise ConfigError(
                f"{self.path or 'search space'}: search mode has nothing to sample (every parameter is "
                f"fixed); give one a choice/uniform/int range, or use mode: ablation to repeat a config"
            )


def load_search_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space YAML file (see the module docstring for the format)."""
    path = Path(path).resolve()
    return parse_search_space(read_yaml_mapping(path, "search space"), path)


def parse_search_space(data: dict, path: Path | None = None) -> SearchSpace:
    where = str(path) if path else "search space"
    types = field_types()
    owner = {name: group for group, names in GROUPS.items() for name in names}
    params: list[Param] = []
    for group, entries in data.items():
        if group not in GROUPS:
            raise ConfigError(f"{where}: unknown group {group!r}; use one of {list(GROUPS)}")
        if not isinstance(entries, dict) or not entries:
            raise ConfigError(
                f"{where}: group {group} must map parameter names to specs, but got {entries!r}"
            )
        for name, spec in entries.items():
            label = f"{where}: parameter {group}.{name}"
            if name in _NOT_SWEEPABLE:
                raise ConfigError(f"{label}: not a search-space parameter ({_NOT_SWEEPABLE[name]})")
            if name not in types:
                raise ConfigError(
                    f"{label}: the trainer does not take {name!r} (not a TrainConfig field); "
                    f"known: {sorted(owner)}"
                )
            if owner[name] != group:
                raise ConfigError(f"{label}: {name} belongs in group {owner[name]!r}, not {group!r}")
            if any(p.name == name for p in params):
                raise ConfigError(f"{label}: given twice")
            params.append(_parse_param(label, name, group, spec, types[name]))
    if not params:
        raise ConfigError(f"{where}: no parameters")
    params = _order_by_condition(where, params)
    _check_values(where, params)
    return SearchSpace(tuple(params), path)


def _parse_param(label: str, name: str, group: str, spec: object, kind_type: type) -> Param:
    if not isinstance(spec, dict):  # a bare scalar is a fixed value
        spec = {"fixed": spec}
    spec = dict(spec)
    when = _parse_when(label, spec.pop(WHEN)) if WHEN in spec else ()
    if len(spec) != 1:
        raise ConfigError(f"{label}: expected exactly one of {list(KINDS)}, but got keys {sorted(spec)}")
    ((kind, raw),) = spec.items()
    if kind not in KINDS:
        raise ConfigError(f"{label}: unknown kind {kind!r}; use one of {list(KINDS)}")
    type_name = kind_type.__name__
    if kind in ("uniform", "loguniform", "int"):
        if not isinstance(raw, list) or len(raw) != 2:
            raise ConfigError(f"{label}: {kind} takes [low, high], but got {raw!r}")
        if kind_type is bool or kind_type is str:
            raise ConfigError(
                f"{label}: {kind} needs a numeric parameter, but {name} is {type_name}; use choice"
            )
        if kind == "int" and kind_type is not int:
            raise ConfigError(f"{label}: int needs an int parameter, but {name} is {type_name}; use uniform")
        if kind in ("uniform", "loguniform") and kind_type is not float:
            raise ConfigError(f"{label}: {kind} needs a float parameter, but {name} is {type_name}; use int")
        low, high = (_convert(label, v, kind_type) for v in raw)
        if not low < high:
            raise ConfigError(f"{label}: {kind} needs low < high, but got low={low}, high={high}")
        if kind == "loguniform" and low <= 0:
            raise ConfigError(f"{label}: loguniform needs low > 0, but got low={low}")
        values: tuple = (low, high)
    elif kind in ("choice", "grid"):
        if not isinstance(raw, list) or not raw:
            raise ConfigError(f"{label}: {kind} takes a non-empty list of values, but got {raw!r}")
        values = tuple(_convert(label, v, kind_type, optional=name in _optional_fields()) for v in raw)
        if len(set(map(repr, values))) != len(values):
            raise ConfigError(f"{label}: {kind} lists a value twice: {list(values)}")
    else:
        values = (_convert(label, raw, kind_type, optional=name in _optional_fields()),)
    return Param(name, group, kind, values, type_name, when)


def _parse_when(label: str, when: object) -> tuple:
    """``{parent: [values]}`` (a single value is a list of one) -> ``((parent, (values...)), ...)``."""
    if not isinstance(when, dict) or not when:
        raise ConfigError(f"{label}: when takes {{parent: [values]}}, e.g. when: {{bwo: [project]}}")
    out = []
    for parent, allowed in when.items():
        allowed = allowed if isinstance(allowed, list) else [allowed]
        if not allowed:
            raise ConfigError(f"{label}: when.{parent} lists no values")
        out.append((str(parent), tuple(allowed)))
    return tuple(out)


def _order_by_condition(where: str, params: list[Param]) -> list[Param]:
    """Check each condition against its parent and order parents before their children.

    A parent must be a ``choice`` or ``fixed`` parameter of this space, and the values a condition
    lists must be values the parent can take (converted to its type: ``when: {time_steps: [2]}``).
    """
    by_name = {p.name: p for p in params}
    resolved = []
    for p in params:
        when = []
        for parent, allowed in p.when:
            label = f"{where}: parameter {p.group}.{p.name}"
            if parent not in by_name:
                raise ConfigError(
                    f"{label}: when names {parent!r}, which is not a parameter of this search space; "
                    f"add {parent} to the space or remove the condition"
                )
            owner = by_name[parent]
            if owner.kind not in ("choice", "fixed"):
                raise ConfigError(
                    f"{label}: when names {parent}, a {owner.kind} parameter; a condition needs a "
                    f"choice or fixed parent"
                )
            kind_type = {"float": float, "int": int, "str": str, "bool": bool}[owner.type]
            values = tuple(_convert(f"{label}: when.{parent}", v, kind_type, True) for v in allowed)
            missing = [v for v in values if v not in owner.values]
            if missing:
                raise ConfigError(
                    f"{label}: when.{parent} lists {missing}, which {parent} never takes "
                    f"(its values: {list(owner.values)})"
                )
            when.append((parent, values))
        resolved.append(dataclasses.replace(p, when=tuple(when)))
    return _parents_first(where, resolved)


def _parents_first(where: str, params: list[Param]) -> list[Param]:
    """File order, except that a conditional parameter comes after its parents; cycles are errors."""
    ordered: list[Param] = []
    placed: set[str] = set()
    pending = list(params)
    while pending:
        ready = [p for p in pending if all(parent in placed for parent, _ in p.when)]
        if not ready:
            names = ", ".join(f"{p.group}.{p.name}" for p in pending)
            raise ConfigError(
                f"{where}: the conditions of parameters {names} form a cycle; make one of them unconditional"
            )
        ordered.extend(ready)
        placed.update(p.name for p in ready)
        pending = [p for p in pending if p.name not in placed]
    return ordered


def _convert(label: str, value: object, kind_type: type, optional: bool = False) -> object:
    """``value`` as ``kind_type`` (ints are fine for floats; "1e-3" strings are numbers)."""
    if value is None and optional:
        return None
    if kind_type is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = float(value)
    elif kind_type in (int, float) and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is not None and (kind_type is float or number.is_integer()):
            value = kind_type(number)
    if kind_type is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{label}: {value!r} is not a finite number")
    if not isinstance(value, kind_type) or (kind_type is int and isinstance(value, bool)):
        raise ConfigError(
            f"{label}: value {value!r} has the wrong type: expected {kind_type.__name__}, "
            f"got {type(value).__name__}"
        )
    return value


def _check_values(where: str, params: list[Param]) -> None:
    """Check every value a trial can get from this space, once, so that trials trust them.

    First each value alone, against its field's declared range and choices: a numeric domain's
    bounds stand for every value it can produce, since each declared range is an interval. Then
    each value with the space's fixed values, and a conditional one with its parents' values, under
    the rules that join values (``binarize: random`` needs a ``budget``, which a grid may fix).
    Fixed values go first there too, so a bad one is named by its own label.
    """
    for p in params:
        for value in p.values:
            _check_with_trainer(_label(where, p), p.name, value)
    fixed = {p.name: p.values[0] for p in params if p.kind == "fixed" and not p.when}
    for p in sorted(params, key=lambda p: p.kind != "fixed"):
        condition = {parent: allowed[0] for parent, allowed in p.when}
        context = {k: v for k, v in {**fixed, **condition}.items() if k != p.name}
        for value in p.values:
            _check_with_trainer(_label(where, p), p.name, value, context)


def _label(where: str, p: Param) -> str:
    return f"{where}: parameter {p.group}.{p.name}"


def _check_with_trainer(label: str, name: str, value: object, context: dict | None = None) -> None:
    """Let the trainer judge one value: alone, or joined with ``context`` (values checked already).

    No data is read. Joined, the value meets the model's, the policy's and the trigger's own
    checks (:meth:`TrainConfig.check_parts`), as it will in every trial that gets it.
    """
    try:
        if context is None:
            TrainConfig.check_value(name, value)
        else:
            TrainConfig.from_checked({**context, name: value}).check_parts()
    except (ConfigError, TypeError, ValueError) as e:
        where = f" (with the fixed values {context})" if context else ""
        raise ConfigError(f"{label}: value {value!r} is rejected by the trainer{where}: {e}") from None
