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

    __slots__ = ("_hash",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._hash: int | None = None

    def __hash__(self) -> int:  # type: ignore[override]  # list declares __hash__ = None
        if self._hash is None:
            self._hash = hash(tuple(self))
        return self._hash


class HashableDict(dict[Any, Any]):
    """A :class:`dict` that can be hashed; do not change it once it is used as a key.

    Two dicts with the same items hash alike whatever their key order.
    """

    __slots__ = ("_hash",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._hash: int | None = None

    def __hash__(self) -> int:  # type: ignore[override]  # dict declares __hash__ = None
        if self._hash is None:
            self._hash = hash(frozenset(self.items()))
        return self._hash


def make_hashable(value: Any, max_depth: int = MAX_DEPTH) -> Any:
    """Return ``value`` with every list and dict in it replaced by a hashable twin.

    Strings, numbers, booleans and ``None`` come back unchanged (and fast).

    Raises:
        NestingTooDeep: lists and dicts are nested more than ``max_depth`` levels deep.
    """
    kind = type(value)
    if kind is dict or kind is HashableDict or kind is list or kind is HashableList:
        return _convert(value, max_depth)
    return value


def _convert(value: Any, room: int) -> Any:
    kind = type(value)
    if kind is dict or kind is HashableDict:
        if not room:
            raise NestingTooDeep("lists and objects nested too deep")
        room -= 1
        return HashableDict({key: _convert(item, room) for key, item in value.items()})
    if kind is list or kind is HashableList:
        if not room:
            raise NestingTooDeep("lists and objects nested too deep")
        room -= 1
        return HashableList([_convert(item, room) for item in value])
    return value
