"""Hashable JSON values, so that any decoded JSON (an object too) can key a dict.

Snorky 0.1 made every incoming message hashable: a channel name may be a JSON
object such as ``{"room": 5}`` and still be used as a dictionary key.

Values nested deeper than :data:`MAX_DEPTH` are refused (:class:`NestingTooDeep`):
converting and hashing them would recurse that deep, and the JSON encoder could not
send them on (it stops at 254 levels).
"""

from __future__ import annotations

from typing import Any

__all__ = ["HashableDict", "HashableList", "MAX_DEPTH", "NestingTooDeep", "make_hashable"]

MAX_DEPTH = 128
"""The deepest nesting of lists and objects :func:`make_hashable` accepts (``[[1]]`` is 2).

Well below what the JSON encoder handles (254), so that a value accepted inside an
incoming message can be sent on inside any outgoing envelope."""


class NestingTooDeep(ValueError):
    """A value has lists or objects nested deeper than allowed."""


class HashableList(list[Any]):
    """A :class:`list` that can be hashed; do not change it once it is used as a key."""

    __slots__ = ("_hash",)  # set by the first hash: no __init__ of our own, list's is in C
    _hash: int

    def __hash__(self) -> int:  # type: ignore[override]  # list declares __hash__ = None
        try:
            return self._hash
        except AttributeError:
            value: int = hash(tuple(self))
            self._hash = value
            return value


class HashableDict(dict[Any, Any]):
    """A :class:`dict` that can be hashed; do not change it once it is used as a key.

    Two dicts with the same items hash alike whatever their key order.
    """

    __slots__ = ("_hash",)  # set by the first hash: no __init__ of our own, dict's is in C
    _hash: int

    def __hash__(self) -> int:  # type: ignore[override]  # dict declares __hash__ = None
        try:
            return self._hash
        except AttributeError:
            value: int = hash(frozenset(self.items()))
            self._hash = value
            return value


_CONTAINERS = frozenset((dict, list, HashableDict, HashableList))


def make_hashable(value: Any, max_depth: int = MAX_DEPTH) -> Any:
    """Return ``value`` with every list and dict in it replaced by a hashable twin.

    Strings, numbers, booleans and ``None`` come back unchanged (and fast).

    Raises:
        NestingTooDeep: lists and dicts are nested more than ``max_depth`` levels deep.
    """
    if type(value) in _CONTAINERS:
        return _convert(value, max_depth)
    return value


def _convert(value: Any, room: int) -> Any:
    """A hashable copy of the list or dict ``value``: copied whole in C, then only the
    lists and dicts in it replaced (most values of a message are scalars)."""
    if not room:
        raise NestingTooDeep("lists and objects nested too deep")
    room -= 1
    containers = _CONTAINERS
    if type(value) is dict or type(value) is HashableDict:
        mapping = HashableDict(value)
        for key, item in value.items():
            if type(item) in containers:
                mapping[key] = _convert(item, room)
        return mapping
    sequence = HashableList(value)
    for index, item in enumerate(value):
        if type(item) in containers:
            sequence[index] = _convert(item, room)
    return sequence
