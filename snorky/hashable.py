"""Hashable JSON values, so that any decoded JSON (an object too) can key a dict.

Snorky 0.1 made every incoming message hashable: a channel name may be a JSON
object such as ``{"room": 5}`` and still be used as a dictionary key.
"""

from __future__ import annotations

from typing import Any

__all__ = ["HashableDict", "HashableList", "make_hashable"]


class HashableList(list):  # type: ignore[type-arg]
    """A :class:`list` that can be hashed; do not change it once it is used as a key."""

    __slots__ = ("_hash",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._hash: int | None = None

    def __hash__(self) -> int:  # type: ignore[override]
        if self._hash is None:
            self._hash = hash(tuple(self))
        return self._hash


class HashableDict(dict):  # type: ignore[type-arg]
    """A :class:`dict` that can be hashed; do not change it once it is used as a key.

    Two dicts with the same items hash alike whatever their key order.
    """

    __slots__ = ("_hash",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._hash: int | None = None

    def __hash__(self) -> int:  # type: ignore[override]
        if self._hash is None:
            self._hash = hash(frozenset(self.items()))
        return self._hash


def make_hashable(value: Any) -> Any:
    """Return ``value`` with every list and dict in it replaced by a hashable twin.

    Strings, numbers, booleans and ``None`` come back unchanged (and fast).
    """
    kind = type(value)
    if kind is dict or kind is HashableDict:
        return HashableDict({key: make_hashable(item) for key, item in value.items()})
    if kind is list or kind is HashableList:
        return HashableList([make_hashable(item) for item in value])
    return value
