"""The filter language of :class:`~snorky.services.datasync.dealers.FilterDealer`.

A filter is a JSON list whose first element is an operator::

    ["==", "color", "blue"]                      color is "blue"
    ["!=", "color", "blue"]                      color exists and is not "blue"
    ["<", "age", 21]                             also "<=", ">", ">="
    ["and", ["==", "team", "red"], [">=", "level", 3]]
    ["or", ["==", "a", 1], ["not", ["==", "b", 2]]]
    ["==", "player.color", "blue"]               dotted paths walk into objects

:func:`compile_filter` checks a whole filter once and turns it into a predicate
that never raises: a missing field, or an ordering between a number and a
string, makes that comparison false. Booleans are not numbers here, as in JSON.

.. versionadded:: 0.1
.. versionchanged:: 0.2
   ``!=`` is new; dotted paths walk down the object (0.1 re-read the top level);
   malformed filters are refused with :class:`BadQuery` when compiled, not when matched.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from snorky.errors import BadQuery

__all__ = ["BadQuery", "compile_filter", "filter_matches", "get_field", "MAX_DEPTH"]

Predicate = Callable[[Any], bool]
"""A compiled filter: ``predicate(model) -> bool``."""

MAX_DEPTH = 32
"""How deeply ``and``/``or``/``not`` may nest."""

_MISSING = object()

_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_LOGICAL = ("and", "or", "not")


def get_field(model: Any, name: str) -> Any:
    """Return the value at the dotted path ``name`` inside ``model``.

    ``get_field(row, "player.color")`` is ``row["player"]["color"]``.

    Raises:
        KeyError: a step of the path is missing or is not an object.
    """
    value = _lookup(model, name.split("."))
    if value is _MISSING:
        raise KeyError(name)
    return value


def _lookup(model: Any, parts: list[str]) -> Any:
    value = model
    for part in parts:
        if not isinstance(value, Mapping):
            return _MISSING
        value = value.get(part, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _orderable(a: Any, b: Any) -> bool:
    return (_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str))


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _describe(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _compile_field(node: Sequence[Any], where: str) -> list[str]:
    field = node[1]
    if not isinstance(field, str):
        raise BadQuery(f"field must be a string, not {_describe(field)}, at {where}[1]")
    parts = field.split(".")
    if not all(parts):
        raise BadQuery(f'field "{field:.60}" has an empty part, at {where}[1]')
    return parts


def _compile(node: Any, where: str, depth: int) -> Predicate:
    if depth > MAX_DEPTH:
        raise BadQuery(f"filter nested deeper than {MAX_DEPTH} levels, at {where}")
    if not isinstance(node, (list, tuple)):
        raise BadQuery(f"a filter must be a list, not {_describe(node)}, at {where}")
    if not node:
        raise BadQuery(f"empty filter at {where}")
    op = node[0]
    if not isinstance(op, str) or (op not in _ORDERINGS and op not in _LOGICAL and op not in ("==", "!=")):
        shown = op if isinstance(op, str) else _describe(op)
        raise BadQuery(f'unknown operator "{shown:.20}" at {where}[0]')
    args = node[1:]

    if op in _LOGICAL:
        if op == "not" and len(args) != 1:
            raise BadQuery(f'"not" takes 1 filter, got {len(args)}, at {where}')
        if not args:
            raise BadQuery(f'"{op}" takes at least 1 filter, got 0, at {where}')
        subs = [_compile(arg, f"{where}[{i}]", depth + 1) for i, arg in enumerate(args, 1)]
        if op == "not":
            sub = subs[0]
            return lambda model: not sub(model)
        if op == "and":
            return lambda model: all(sub(model) for sub in subs)
        return lambda model: any(sub(model) for sub in subs)

    if len(args) != 2:
        raise BadQuery(f'"{op}" takes a field and a value, got {len(args)} arguments, at {where}')
    parts = _compile_field(node, where)
    value = node[2]

    if op == "==":

        def equals(model: Any) -> bool:
            found = _lookup(model, parts)
            return found is not _MISSING and _equal(found, value)

        return equals

    if op == "!=":

        def differs(model: Any) -> bool:
            found = _lookup(model, parts)
            return found is not _MISSING and not _equal(found, value)

        return differs

    if not (_is_number(value) or isinstance(value, str)):
        raise BadQuery(f'"{op}" compares with a number or a string, not {_describe(value)}, at {where}[2]')
    compare = _ORDERINGS[op]

    def ordered(model: Any) -> bool:
        found = _lookup(model, parts)
        return found is not _MISSING and _orderable(found, value) and compare(found, value)

    return ordered


def compile_filter(filter: Any) -> Predicate:
    """Check ``filter`` completely and return a predicate on models.

    Raises:
        BadQuery: the filter is malformed (not a list, an unknown operator, a
            wrong number of arguments, a field that is not a string...); the
            text names the problem and where it is (``query[2][1]``).
    """
    return _compile(filter, "query", 1)


def filter_matches(model: Any, filter: Any) -> bool:
    """Return whether ``model`` matches ``filter`` (compiles it on every call).

    Raises:
        BadQuery: the filter is malformed.
    """
    return compile_filter(filter)(model)
