"""Reading type hints: what a field or option annotated ``X | None`` accepts.

One place for the reflection behind the ``albsnn train`` flags (:mod:`albsnn.cli.train`), the
search-space checks (:mod:`albsnn.sweep.space`) and the dataset-option conversion
(:mod:`albsnn.data`). Give it resolved hints (``typing.get_type_hints``), not the strings that
``from __future__ import annotations`` leaves in ``__annotations__``.

    >>> split_optional(int | None)
    ((<class 'int'>,), True)
    >>> scalar_type(dict[str, int] | None)
    <class 'dict'>
"""

from __future__ import annotations

import types
import typing

__all__ = ["split_optional", "scalar_type"]


def split_optional(hint: object) -> tuple[tuple[object, ...], bool]:
    """The types ``hint`` allows besides ``None``, and whether it allows ``None``.

    ``int | None`` and ``Optional[int]`` give ``((int,), True)``, ``int | str`` gives
    ``((int, str), False)``, and a non-union hint gives ``((hint,), False)``: only a union is taken
    apart, so ``dict[str, int]`` stays whole.
    """
    if not (isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union):
        return (hint,), hint is type(None)
    args = typing.get_args(hint)
    return tuple(a for a in args if a is not type(None)), type(None) in args


def scalar_type(hint: object) -> type:
    """The first type ``hint`` allows besides ``None``, unparametrized: ``dict[str, int]`` -> ``dict``."""
    kinds, _ = split_optional(hint)
    kind = kinds[0] if kinds else hint
    return typing.get_origin(kind) or kind
