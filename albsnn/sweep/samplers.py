"""Samplers by name: the pipeline's ``sampler`` entry -> an Optuna sampler (sampling stays Optuna's).

``sampler: tpe`` or ``sampler: {kind: nsga2, population_size: 8}``; other keys are the Optuna
class's arguments. ``seed`` defaults to the pipeline's first seed, so a search is repeatable.

    >>> make_sampler({"kind": "random"}, seed=0)
    <optuna.samplers._random.RandomSampler object at ...>
"""

from __future__ import annotations

from albsnn.errors import ConfigError
from albsnn.sweep._imports import require

__all__ = ["SAMPLERS", "make_sampler", "sampler_spec"]

# name -> optuna.samplers class name
SAMPLERS: dict[str, str] = {
    "tpe": "TPESampler",
    "nsga2": "NSGAIISampler",
    "random": "RandomSampler",
    "qmc": "QMCSampler",
}
_ALIASES = {"nsga-ii": "nsga2", "nsgaii": "nsga2", "nsga2": "nsga2"}


def sampler_spec(spec: object, where: str = "pipeline") -> dict:
    """Normalise ``"tpe"`` / ``{kind: tpe, ...}`` / ``None`` (TPE) to ``{"kind": ..., **options}``."""
    if spec is None:
        spec = {"kind": "tpe"}
    if isinstance(spec, str):
        spec = {"kind": spec}
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ConfigError(f"{where}: sampler must be a name or {{kind: NAME, ...options}}, but got {spec!r}")
    kind = _ALIASES.get(str(spec["kind"]).lower(), str(spec["kind"]).lower())
    if kind not in SAMPLERS:
        raise ConfigError(f"{where}: unknown sampler {spec['kind']!r}; use one of {list(SAMPLERS)}")
    return {**spec, "kind": kind}


def make_sampler(spec: object, seed: int | None = None, where: str = "pipeline"):
    spec = sampler_spec(spec, where)
    options = {k: v for k, v in spec.items() if k != "kind"}
    options.setdefault("seed", seed)
    cls = getattr(require("optuna.samplers"), SAMPLERS[spec["kind"]])
    try:
        return cls(**options)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: sampler {spec['kind']}: {e}") from None
