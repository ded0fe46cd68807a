"""One type check for values that arrive from YAML, the command line or code (a leaf every layer may import):
``Config`` fields against their annotations, method hyperparameters against their defaults' types, a chapter's
parameters against its smoke file.

The rules a plain ``isinstance`` gets wrong for such values: a bool is not a number (``True`` is an ``int`` to
Python), an int is a float (YAML writes ``1e-3`` as a float but ``0`` as an int), and containers are checked
element by element (``list[float]``, ``tuple[str, ...]``).
"""
from __future__ import annotations

import collections.abc
import types
import typing


def conforms(value, hint) -> bool:
    """Whether ``value`` is of type ``hint``: a class, ``None``, a union (``int | None``), ``list[T]``,
    ``tuple[T, ...]`` or ``Mapping[K, V]`` (keys and values unchecked), ``typing.Any``."""
    if hint is typing.Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return any(conforms(value, h) for h in args)
    if origin in (list, tuple):
        return isinstance(value, origin) and all(conforms(v, args[0]) for v in value) if args else isinstance(
            value, origin)
    if origin is not None:  # Mapping[str, Any], dict[str, int], …: the container only
        return isinstance(value, origin)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is collections.abc.Mapping:
        return isinstance(value, collections.abc.Mapping)
    return isinstance(value, hint)


def name(hint) -> str:
    """A readable name of ``hint`` for error messages (``float``, ``list of int``, ``int | None``)."""
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return hint.__name__
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, tuple) and args:
        return f"{origin.__name__} of {name(args[0])}"
    return str(hint).replace("typing.", "")
