"""Deltas: the change notifications DataSync carries, one per changed model row.

A delta says that one row of a model was inserted, updated or deleted. It comes
from the application server as JSON (``publishDeltas``), is checked by
:func:`parse_deltas`, crosses the broker, and reaches each matching subscription
as ``{"type": "delta", "delta": delta.for_json()}``.

A delta may also carry the row's ``key`` (its primary key) and a ``version``
that grows with each committed change of the row; Snorky then drops a delta
older than one it delivered for the same row (see
:mod:`snorky.services.datasync.ordering`). Clients never see these two fields.

.. versionadded:: 0.1
.. versionchanged:: 0.2
   The optional ``key`` and ``version``.
"""

from __future__ import annotations

from typing import Any

from snorky.errors import RPCError
from snorky.hashable import make_hashable

__all__ = ["Delta", "InsertionDelta", "UpdateDelta", "DeletionDelta", "parse_delta", "parse_order", "parse_deltas"]


class Delta:
    """A change to one row of a model; see the three subclasses."""

    __slots__ = ("model", "key", "version")

    type: str = ""  # the wire name of the change: "insert", "update" or "delete"

    def __init__(self, model: str) -> None:
        self.model = model
        """The name of the model (the table, the class) the row belongs to."""
        self.key: Any = None
        """The row's identity in its model (a hashable JSON value), when the delta is versioned."""
        self.version: int | None = None
        """The row's version: it grows with each committed change of the row (``None``: unordered)."""

    def for_json(self) -> dict[str, Any]:
        """The delta as the JSON object clients receive."""
        raise NotImplementedError

    def for_broker(self) -> dict[str, Any]:
        """The delta as it crosses the broker: :meth:`for_json`, with ``key`` and ``version`` if set.

        .. versionadded:: 0.2
        """
        value = self.for_json()
        if self.version is not None:
            value["key"] = self.key
            value["version"] = self.version
        return value

    def ordered_like(self, other: Delta) -> Delta:
        """Give this delta the key and version of ``other``; return it.

        .. versionadded:: 0.2
        """
        self.key, self.version = other.key, other.version
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Delta) and self.for_json() == other.for_json()

    __hash__ = None  # type: ignore[assignment]  # equal by value, so not hashable

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model!r}>"


class InsertionDelta(Delta):
    """A row was created (or came into view of a subscription).

    Args:
        model: the model name.
        data: the new row.
    """

    __slots__ = ("data",)

    type = "insert"

    def __init__(self, model: str, data: Any) -> None:
        super().__init__(model)
        self.data = data
        """The inserted row."""

    def for_json(self) -> dict[str, Any]:
        return {"type": "insert", "model": self.model, "data": self.data}


class UpdateDelta(Delta):
    """A row changed; both versions are carried so dealers can compare them.

    Args:
        model: the model name.
        new_data: the row after the change.
        old_data: the row before the change.
    """

    __slots__ = ("new_data", "old_data")

    type = "update"

    def __init__(self, model: str, new_data: Any, old_data: Any) -> None:
        super().__init__(model)
        self.new_data = new_data
        """The row after the change."""
        self.old_data = old_data
        """The row before the change."""

    def for_json(self) -> dict[str, Any]:
        return {"type": "update", "model": self.model, "newData": self.new_data, "oldData": self.old_data}


class DeletionDelta(Delta):
    """A row was removed (or left the view of a subscription).

    Args:
        model: the model name.
        data: the row as it was before removal.
    """

    __slots__ = ("data",)

    type = "delete"

    def __init__(self, model: str, data: Any) -> None:
        super().__init__(model)
        self.data = data
        """The removed row."""

    def for_json(self) -> dict[str, Any]:
        return {"type": "delete", "model": self.model, "data": self.data}


def _field(value: dict[str, Any], name: str, index: int) -> Any:
    try:
        return value[name]
    except KeyError:
        raise RPCError("Missing field", "invalid_delta", f'Delta {index} has no "{name}"') from None


def parse_delta(value: Any, index: int = 0) -> Delta:
    """Build a :class:`Delta` from its JSON form, checking every field.

    Args:
        value: ``{"type": "insert" | "delete", "model", "data"}`` or
            ``{"type": "update", "model", "newData", "oldData"}``.
        index: the delta's position in its batch, quoted in error messages.

    Raises:
        RPCError: ``invalid_delta``, naming the missing or wrong field.
    """
    if not isinstance(value, dict):
        raise RPCError("Invalid params", "invalid_params", f"Delta {index} must be an object")
    kind = _field(value, "type", index)
    model = _field(value, "model", index)
    if not isinstance(model, str):
        raise RPCError("model must be string", "invalid_delta", f'Field "model" of delta {index} must be a string')
    if kind == "insert":
        return InsertionDelta(model, _field(value, "data", index))
    if kind == "delete":
        return DeletionDelta(model, _field(value, "data", index))
    if kind == "update":
        return UpdateDelta(model, _field(value, "newData", index), _field(value, "oldData", index))
    shown = kind if isinstance(kind, str) else type(kind).__name__
    raise RPCError("Invalid delta type", "invalid_delta", f'Delta {index} has type "{shown:.40}"')


def parse_order(delta: Delta, value: dict[str, Any], index: int = 0) -> Delta:
    """Set ``delta``'s ``key`` and ``version`` from its JSON form ``value``, if it has them; return it.

    Raises:
        RPCError: ``invalid_delta``: a ``version`` that is not a non-negative
            integer, or a ``version`` without a ``key``.

    .. versionadded:: 0.2
    """
    if "version" not in value:
        return delta
    version = value["version"]
    if type(version) is not int or version < 0:
        raise RPCError(f'Field "version" must be a non-negative integer in delta {index}', "invalid_delta")
    delta.key, delta.version = make_hashable(_field(value, "key", index)), version
    return delta


def parse_deltas(values: Any) -> list[Delta]:
    """Check a whole batch of deltas; nothing is built unless every one is valid.

    Raises:
        RPCError: ``invalid_params`` if ``values`` is not a list, else
            ``invalid_delta`` naming the first bad delta and field.
    """
    if not isinstance(values, (list, tuple)):
        raise RPCError("Invalid params", "invalid_params", 'Field "deltas" must be a list')
    return [parse_order(parse_delta(value, index), value, index) for index, value in enumerate(values)]
