"""YAML reading for search spaces and pipelines, with YAML 1.2 scalars.

PyYAML follows YAML 1.1, where ``off``/``no``/``on``/``yes`` are booleans and ``1e-3`` is a string.
Both bite here (``bwo: {choice: [project, off]}``, ``lr: {loguniform: [1e-4, 1e-2]}``), so this
loader only treats ``true``/``false`` as booleans and reads ``1e-3`` as a float.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from albsnn.errors import ConfigError

__all__ = ["read_yaml_mapping"]


class _Loader(yaml.SafeLoader):
    pass


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_yaml_mapping(path: str | Path, what: str) -> dict:
    """Parse ``path`` as a YAML mapping; any problem is a :class:`ConfigError` naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{line}: {problem}") from None
    if data is None:
        raise ConfigError(f"{path}: the {what} is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a {what} must be a mapping of keys, but got {type(data).__name__}")
    return data
