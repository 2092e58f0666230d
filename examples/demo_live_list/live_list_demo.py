"""The live list demo: a shopping list kept in SQLite and shown live with DataSync.

``snorky serve`` imports this module because it sits next to the demo's
``snorky.toml``; ``publisher.py`` imports it too. The database stands in for an
application's own: the pages load the rows from it, and every change to it is
published as a DataSync delta, by :class:`ListService` for changes made in a
page and by ``publisher.py`` through the backend port for changes made outside.

The database file is ``DEMO_LIST_DB`` if set, else ``snorky-demo-live-list.sqlite3``
in the temporary folder.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from snorky.errors import RPCError
from snorky.services.base import Request, RPCService, rpc_command
from snorky.services.datasync.dealers import BroadcastDealer

__all__ = ["Items", "ItemStore", "ListService", "database_path"]

MODEL = "Item"


def database_path() -> str:
    """The database file of the demo."""
    return os.environ.get("DEMO_LIST_DB") or os.path.join(tempfile.gettempdir(), "snorky-demo-live-list.sqlite3")


class Items(BroadcastDealer):
    """Every page sees every item."""

    name = "items"
    model = MODEL


class ItemStore:
    """The list's rows: ``{"id", "text", "done"}``. Each change returns its DataSync delta.

    Args:
        path: the SQLite file (created if missing).
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path or database_path()
        with self._transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, text TEXT NOT NULL, done INTEGER)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection that commits (or rolls back) and then closes: sqlite3's own
        ``with`` block only ends the transaction and leaves the connection open."""
        db = self._connect()
        try:
            with db:
                yield db
        finally:
            db.close()

    @staticmethod
    def _row(row: tuple[int, str, int]) -> dict[str, Any]:
        return {"id": row[0], "text": row[1], "done": bool(row[2])}

    def all(self) -> list[dict[str, Any]]:
        """Every item, oldest first."""
        db = self._connect()
        try:
            return [self._row(row) for row in db.execute("SELECT id, text, done FROM items ORDER BY id")]
        finally:
            db.close()

    def get(self, item_id: int) -> dict[str, Any] | None:
        db = self._connect()
        try:
            row = db.execute("SELECT id, text, done FROM items WHERE id = ?", (item_id,)).fetchone()
        finally:
            db.close()
        return self._row(row) if row else None

    def add(self, text: str) -> dict[str, Any]:
        """Add an item; return the ``insert`` delta."""
        with self._transaction() as db:
            cursor = db.execute("INSERT INTO items (text, done) VALUES (?, 0)", (text,))
            item = {"id": cursor.lastrowid, "text": text, "done": False}
        return {"type": "insert", "model": MODEL, "data": item}

    def set_done(self, item_id: int, done: bool) -> dict[str, Any] | None:
        """Tick or untick an item; return the ``update`` delta (``None`` if there is no such item)."""
        old = self.get(item_id)
        if old is None:
            return None
        with self._transaction() as db:
            db.execute("UPDATE items SET done = ? WHERE id = ?", (int(done), item_id))
        return {"type": "update", "model": MODEL, "oldData": old, "newData": {**old, "done": done}}

    def remove(self, item_id: int) -> dict[str, Any] | None:
        """Remove an item; return the ``delete`` delta (``None`` if there is no such item)."""
        old = self.get(item_id)
        if old is None:
            return None
        with self._transaction() as db:
            db.execute("DELETE FROM items WHERE id = ?", (item_id,))
        return {"type": "delete", "model": MODEL, "data": old}


class ListService(RPCService):
    """What the pages call: ``snapshot()``, ``add(text)``, ``setDone(id, done)``, ``remove(id)``.

    ``snapshot`` authorizes a DataSync subscription *before* reading the rows,
    so that a change made in between reaches the page as a delta, and replies
    ``{"token", "items"}``. The page calls it again after a reconnection (its
    ``getToken``), which reloads the list.

    Args:
        name: the service's name.
        datasync: the name of the DataSync service.
        path: the SQLite file (default: :func:`database_path`).
    """

    def __init__(self, name: str = "list", datasync: str = "datasync", path: str | None = None) -> None:
        super().__init__(name)
        self.datasync_name = datasync
        self.store = ItemStore(path)

    def _datasync(self) -> Any:
        service = self.registry.registered_services.get(self.datasync_name) if self.registry else None
        if service is None:
            raise RPCError(f"The demo needs a service named {self.datasync_name}", "not_configured")
        return service

    def _publish(self, delta: dict[str, Any] | None) -> None:
        if delta is not None:
            self._datasync().publish_deltas([delta])

    @rpc_command
    def snapshot(self, req: Request) -> dict[str, Any]:
        """A subscription token for every item's deltas, and the items now."""
        token = self._datasync().authorize_subscription([{"dealer": Items.name, "query": None}])
        return {"token": token, "items": self.store.all()}

    @rpc_command
    def add(self, req: Request, text: Any) -> None:
        """Add an item."""
        if not isinstance(text, str) or not 0 < len(text.strip()) <= 200:
            raise RPCError("Invalid params", "invalid_params")
        self._publish(self.store.add(text.strip()))

    @rpc_command
    def setDone(self, req: Request, id: Any, done: Any) -> None:
        """Tick or untick an item."""
        if not isinstance(id, int) or not isinstance(done, bool):
            raise RPCError("Invalid params", "invalid_params")
        self._publish(self.store.set_done(id, done))

    @rpc_command
    def remove(self, req: Request, id: Any) -> None:
        """Remove an item."""
        if not isinstance(id, int):
            raise RPCError("Invalid params", "invalid_params")
        self._publish(self.store.remove(id))
