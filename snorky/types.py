"""Small container types services use; :class:`MultiDict` keeps Snorky 0.1's API."""

from __future__ import annotations

from typing import Any

__all__ = ["MultiDict", "is_string"]


def is_string(thing: Any) -> bool:
    """Return whether ``thing`` is a string (kept from Snorky 0.1)."""
    return isinstance(thing, str)


class MultiDict(dict[Any, set[Any]]):
    """A dict of sets: each key maps to a set of values, and empty sets vanish."""

    def add(self, key: Any, value: Any) -> None:
        """Add ``value`` to the set under ``key``."""
        bucket = self.get(key)
        if bucket is None:
            self[key] = {value}
        else:
            bucket.add(value)

    def remove(self, key: Any, value: Any) -> None:
        """Remove ``value`` from the set under ``key``.

        Raises:
            KeyError: if ``value`` is not under ``key``.
        """
        bucket = self[key]
        bucket.remove(value)
        if not bucket:
            del self[key]

    def get_set(self, key: Any) -> set[Any]:
        """Return the set under ``key`` (an empty set if there is none; do not modify it)."""
        return self.get(key) or set()

    def in_set(self, key: Any, value: Any) -> bool:
        """Return whether ``value`` is in the set under ``key``."""
        bucket = self.get(key)
        return bucket is not None and value in bucket

    def clear_set(self, key: Any) -> None:
        """Remove ``key`` and its whole set, if present."""
        self.pop(key, None)
