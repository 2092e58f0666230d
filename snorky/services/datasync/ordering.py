"""Row order: a delta older than one delivered for the same row is dropped, not applied over it.

Deltas of different transactions can reach Snorky in another order than their
commits: each transaction publishes on its own, from several threads and
processes. A delta that carries its row's ``key`` and a ``version`` (a number
that grows with each committed change of the row; the Django integration sends
PostgreSQL's WAL position, read inside the transaction after the write) lets
:class:`RowVersions` put them back in order, row by row:

* a delta whose version is lower than the last one delivered for its row is
  dropped and counted (:attr:`RowVersions.stale`); an equal version is
  delivered (one transaction may change a row twice);
* a delta that is delivered is routed against what subscribers were last sent
  for the row: an update's ``oldData`` and a deletion's ``data`` become the row
  last delivered, an update after a delivered deletion becomes an insertion,
  and an insertion over a delivered row becomes an update. So a row that moved
  out of a subscription's query by a delta that arrived late still leaves it.

Only the last ``capacity`` rows changed are remembered; a delta of a forgotten
row is delivered as it comes. Deltas without a version are delivered as they
come, as in Snorky 0.1.

.. versionadded:: 0.2
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from snorky.services.datasync.delta import DeletionDelta, Delta, InsertionDelta, UpdateDelta

__all__ = ["RowVersions", "DEFAULT_CAPACITY"]

logger = logging.getLogger(__name__)

DEFAULT_CAPACITY = 10_000
"""Rows whose last delivered version is remembered, by default."""

_DELETED = object()


class RowVersions:
    """The last version delivered of each recently changed row, and the row it showed.

    Args:
        capacity: how many rows to remember; the least recently changed one
            is forgotten first.
    """

    __slots__ = ("capacity", "rows", "stale", "forgotten")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        """How many rows are remembered."""
        self.rows: OrderedDict[tuple[str, Any], tuple[int, Any]] = OrderedDict()
        """(model, key) -> (version, row last delivered or a deletion marker), oldest first."""
        self.stale = 0
        """Deltas dropped because a newer one of their row was delivered first."""
        self.forgotten = 0
        """Rows forgotten to stay within :attr:`capacity`."""

    def admit(self, delta: Delta) -> Delta | None:
        """The delta to deliver in place of ``delta``, or ``None`` if it is older than one delivered."""
        arrived = delta.version
        if arrived is None:
            return delta
        row = (delta.model, delta.key)
        known = self.rows.get(row)
        if known is not None:
            delivered, shown = known
            if arrived < delivered:
                self.stale += 1
                logger.debug("= dropped a delta of %s %r: version %d < %d", delta.model, delta.key, arrived, delivered)
                return None
            self.rows.move_to_end(row)
            delta = _against(delta, shown)
        self.rows[row] = (arrived, _DELETED if isinstance(delta, DeletionDelta) else _row_after(delta))
        if len(self.rows) > self.capacity:
            self.rows.popitem(last=False)
            self.forgotten += 1
        return delta

    def clear(self) -> None:
        """Forget every row (the counters stay)."""
        self.rows.clear()


def _row_after(delta: Delta) -> Any:
    return delta.new_data if isinstance(delta, UpdateDelta) else delta.data  # type: ignore[attr-defined]  # insertions and deletions have data


def _against(delta: Delta, shown: Any) -> Delta:
    """``delta`` as a change from ``shown``, the row subscribers were last sent."""
    if shown is _DELETED:
        if isinstance(delta, UpdateDelta):
            return InsertionDelta(delta.model, delta.new_data).ordered_like(delta)
        return delta
    if isinstance(delta, UpdateDelta):
        if delta.old_data == shown:
            return delta
        return UpdateDelta(delta.model, delta.new_data, shown).ordered_like(delta)
    if isinstance(delta, InsertionDelta):
        return UpdateDelta(delta.model, delta.data, shown).ordered_like(delta)
    if isinstance(delta, DeletionDelta) and delta.data != shown:
        return DeletionDelta(delta.model, shown).ordered_like(delta)
    return delta
