"""CursorsService: shared cursors (carets, selections, pointers) in documents.

Commands: ``join``, ``leave``, ``createCursor``, ``updateCursor``,
``removeCursor`` (Snorky 0.1's names and parameters). A client names its
cursors with *private* handles of its choice; the others see each cursor under
a *public* handle, a number unique in its document. See
``docs/services/cursors.rst``.

Notifications go through the broker, to the topic ``topic_for(name, document)``
that a node subscribes to while one of its clients is in the document.

.. versionadded:: 0.1
"""

from __future__ import annotations

import logging
import random
from typing import Any

from snorky.brokers.base import or_undo, then, topic_for
from snorky.channels import ChannelMap
from snorky.errors import RPCError
from snorky.protocol import decode, encode
from snorky.services.presence import identities_of
from snorky.services.rpc import Request, RPCService, rpc_command

__all__ = ["CursorsService", "Cursor"]

logger = logging.getLogger(__name__)

PUBLIC_HANDLE_BITS = 31
"""Public handles are random numbers below ``2**31`` (a JavaScript int32)."""


class Cursor:
    """One cursor: who owns it, where it is and what it is doing.

    Args:
        private_handle: the owner's name for it.
        public_handle: everybody else's name for it, unique in its document.
        document: the document it is in.
        position: any JSON value (the service does not read it).
        status: any JSON value (the service does not read it).
        owner: the client that created it.
    """

    __slots__ = ("private_handle", "public_handle", "document", "position", "status", "owner")

    def __init__(
        self, private_handle: Any, public_handle: int, document: Any, position: Any, status: Any, owner: Any
    ) -> None:
        self.private_handle = private_handle
        self.public_handle = public_handle
        self.document = document
        self.position = position
        self.status = status
        self.owner = owner

    def for_json(self) -> dict[str, Any]:
        """The cursor as others see it: ``{"publicHandle", "document", "position", "status", "owner"}``."""
        return {
            "publicHandle": self.public_handle,
            "document": self.document,
            "position": self.position,
            "status": self.status,
            "owner": getattr(self.owner, "identity", None),
        }

    def __repr__(self) -> str:
        return f"<Cursor {self.public_handle} in {self.document!r}>"


class CursorsService(RPCService):
    """Documents whose members see one another's cursors.

    Override the hook :meth:`can_join` to restrict documents; a refusal answers
    ``Not authorized`` (code ``forbidden``).

    Args:
        name: the service's name.
        max_cursors: how many cursors one client may hold, over all documents.

    .. versionchanged:: 0.2
       ``max_cursors`` and :meth:`can_join`; public handles are unique per
       document.
    """

    def __init__(self, name: str = "cursors", max_cursors: int = 16) -> None:
        super().__init__(name)
        if max_cursors < 0:
            raise ValueError("max_cursors must be 0 or more")
        self.max_cursors = max_cursors
        """How many cursors one client may hold."""
        self.map = self.channel_map = ChannelMap(self, field="document", gaps=False)
        """The documents with local clients."""
        self.clients_by_document = self.map.clients
        """Document -> local clients joined to it."""
        self.documents_by_client = self.map.channels
        """Client -> documents it joined."""
        self.cursors_by_document: dict[Any, dict[int, Cursor]] = {}
        """Document -> public handle -> cursor."""
        self.cursors_by_client: dict[Any, dict[Any, Cursor]] = {}
        """Client -> private handle -> cursor."""
        self.random = random.Random()
        """The source of public handles (tests may replace it)."""
        self._document_by_key: dict[str, Any] = {}

    # Hook --------------------------------------------------------------------

    def can_join(self, client: Any, document: Any) -> bool:
        """Whether ``client`` may join ``document`` (default: yes).

        Called after the authentication and ``Already joined`` checks.
        """
        return True

    # Helpers kept from 0.1 ---------------------------------------------------

    def check_identity(self, client: Any) -> None:
        """Refuse an anonymous client.

        Raises:
            RPCError: ``Not authenticated``.
        """
        if getattr(client, "identity", None) is None:
            raise RPCError("Not authenticated", "not_authenticated")

    def check_new_cursor_allowed(self, client: Any) -> None:
        """Refuse a client already holding :attr:`max_cursors` cursors.

        Raises:
            RPCError: ``Too many cursors``.
        """
        if len(self.cursors_by_client.get(client, ())) >= self.max_cursors:
            raise RPCError("Too many cursors", "too_many_cursors")

    # Topics ------------------------------------------------------------------

    def document_topic(self, document: Any) -> str:
        """The broker topic of a document's cursor notifications."""
        return topic_for(self.name, document)

    def _notify(self, document: Any, body: dict[str, Any], sender: Any) -> None:
        """Publish ``body`` to every client in ``document`` but ``sender``, on every node."""
        self.broker.publish(self.document_topic(document), self.outbound(body, exclude=sender))

    # State (local to this node) ----------------------------------------------

    def _is_joined(self, client: Any, document: Any) -> bool:
        return self.map.has(client, document)

    # Cursors across nodes: each one is a presence entry of its document ------------

    def cursors_key(self, document: Any) -> str:
        """The broker presence key of a document's cursors (one entry per cursor)."""
        return topic_for(self.name + ":cursors", document)

    def _cursor_member(self, cursor: Cursor) -> str:
        return f"{self.broker.node_id}/{cursor.public_handle}"

    def _publish_cursor(self, cursor: Cursor) -> Any:
        """Record the cursor for every node; a broker result, done once recorded."""
        info = encode(cursor.for_json())
        return self.broker.presence_add(self.cursors_key(cursor.document), self._cursor_member(cursor), info)

    def _on_cursors_expired(self, key: str, expired: dict[str, bytes], remaining: dict[str, bytes]) -> None:
        """A dead node's cursors expired: tell the document's clients they are gone."""
        document = self._document_by_key.get(key)
        if document is None:
            return
        for info in expired.values():
            cursor = decode(info)
            removed = {"publicHandle": cursor["publicHandle"], "document": cursor["document"]}
            self._notify(document, {"type": "cursorRemoved", "cursor": removed}, None)

    def _on_cursors_restored(self, key: str, restored: dict[str, bytes], _: dict[str, bytes]) -> None:
        """This node's cursors had expired (it was paused) and were written again: the
        others were told ``cursorRemoved``, so tell them ``cursorAdded`` again."""
        document = self._document_by_key.get(key)
        if document is None:
            return
        for info in restored.values():
            cursor = self.cursors_by_document.get(document, {}).get(decode(info)["publicHandle"])
            if cursor is not None:
                self._notify(document, {"type": "cursorAdded", "cursor": cursor.for_json()}, cursor.owner)

    def _add_client(self, client: Any, document: Any) -> Any:
        new = document not in self.clients_by_document
        ready = self.map.add(client, document)  # first: a limit may refuse the document
        if new:
            key = self.cursors_key(document)
            self._document_by_key[key] = document
            self.broker.watch_presence(key, self._on_cursors_expired, self._on_cursors_restored)
        return ready

    def _remove_client(self, client: Any, document: Any) -> None:
        if self.map.remove(client, document):
            key = self.cursors_key(document)
            self._document_by_key.pop(key, None)
            self.broker.watch_presence(key, None)

    def _cursor_of(self, client: Any, private_handle: Any) -> Cursor:
        try:
            return self.cursors_by_client[client][private_handle]
        except KeyError:
            raise RPCError("No such cursor", "no_such_cursor") from None

    def _new_public_handle(self, document: Any) -> int:
        """A random handle no cursor of ``document`` has."""
        taken = self.cursors_by_document.get(document, {})
        while True:
            handle = self.random.getrandbits(PUBLIC_HANDLE_BITS)
            if handle not in taken:
                return handle

    def _store(self, cursor: Cursor) -> Any:
        self.cursors_by_client.setdefault(cursor.owner, {})[cursor.private_handle] = cursor
        self.cursors_by_document.setdefault(cursor.document, {})[cursor.public_handle] = cursor
        return self._publish_cursor(cursor)

    def _discard(self, cursor: Cursor) -> None:
        by_document = self.cursors_by_document[cursor.document]
        del by_document[cursor.public_handle]
        if not by_document:
            del self.cursors_by_document[cursor.document]
        by_client = self.cursors_by_client[cursor.owner]
        del by_client[cursor.private_handle]
        if not by_client:
            del self.cursors_by_client[cursor.owner]
        self.in_background(self.broker.presence_remove(self.cursors_key(cursor.document), self._cursor_member(cursor)))

    # Commands ----------------------------------------------------------------

    @rpc_command
    def join(self, req: Request, document: Any) -> Any:
        """Join ``document``.

        Returns:
            ``{"cursors": [cursor, ...]}``: the cursors already in it, on every node.

        Raises:
            RPCError: ``Not authenticated``, ``Already joined``, ``Not authorized``.
        """
        client = req.client
        self.check_identity(client)
        if self._is_joined(client, document):
            raise RPCError("Already joined", "already_joined")
        if not self.can_join(client, document):
            raise RPCError("Not authorized", "forbidden")
        self._add_client(client, document)
        entries = self.broker.presence_list(self.cursors_key(document))

        def undo() -> None:
            # The cursors could not be listed (``unavailable``): not joined, so that trying again works.
            if self._is_joined(client, document):
                self.do_leave(client, document)

        answer = then(entries, lambda found: {"cursors": [decode(info) for _member, info in sorted(found.items())]})
        return or_undo(answer, undo)

    @rpc_command
    def leave(self, req: Request, document: Any) -> None:
        """Leave ``document``, removing the caller's cursors in it.

        Raises:
            RPCError: ``Not joined``.
        """
        if not self._is_joined(req.client, document):
            raise RPCError("Not joined", "not_joined")
        self.do_leave(req.client, document)

    @rpc_command
    def createCursor(self, req: Request, privateHandle: Any, document: Any, position: Any, status: Any) -> Any:
        """Create a cursor in ``document``; the others receive ``cursorAdded``.

        Returns:
            The cursor's public handle.

        Raises:
            RPCError: ``Not joined``, ``Reused handle``, ``Too many cursors``.
        """
        client = req.client
        if not self._is_joined(client, document):
            raise RPCError("Not joined", "not_joined")
        if privateHandle in self.cursors_by_client.get(client, ()):
            raise RPCError("Reused handle", "reused_handle")
        self.check_new_cursor_allowed(client)
        cursor = Cursor(privateHandle, self._new_public_handle(document), document, position, status, client)
        recorded = self._store(cursor)
        self._notify(document, {"type": "cursorAdded", "cursor": cursor.for_json()}, client)

        def undo() -> None:
            # Not recorded (``unavailable``): remove it again, so that trying again works.
            if self.cursors_by_client.get(client, {}).get(privateHandle) is cursor:
                self.do_remove_cursor(client, privateHandle)

        return or_undo(then(recorded, lambda _: cursor.public_handle), undo)

    @rpc_command
    def updateCursor(self, req: Request, privateHandle: Any, newData: Any) -> Any:
        """Change a cursor's ``position`` and/or ``status``; the others receive ``cursorUpdated``.

        Other keys of ``newData`` are ignored.

        Raises:
            RPCError: ``No such cursor``, ``Invalid params`` (``newData`` is not an object).
        """
        cursor = self._cursor_of(req.client, privateHandle)
        if not isinstance(newData, dict):
            raise RPCError("Invalid params", "invalid_params")
        if "position" in newData:
            cursor.position = newData["position"]
        if "status" in newData:
            cursor.status = newData["status"]
        recorded = self._publish_cursor(cursor)
        self._notify(cursor.document, {"type": "cursorUpdated", "cursor": cursor.for_json()}, req.client)
        return then(recorded, lambda _: None)

    @rpc_command
    def removeCursor(self, req: Request, privateHandle: Any) -> None:
        """Remove a cursor; the others receive ``cursorRemoved``.

        Raises:
            RPCError: ``No such cursor``.
        """
        self._cursor_of(req.client, privateHandle)
        self.do_remove_cursor(req.client, privateHandle)

    # Cleanup -----------------------------------------------------------------

    def do_remove_cursor(self, client: Any, private_handle: Any) -> None:
        """Forget ``client``'s cursor ``private_handle`` and tell the others in its document."""
        cursor = self.cursors_by_client[client][private_handle]
        self._discard(cursor)
        removed = {"publicHandle": cursor.public_handle, "document": cursor.document}
        self._notify(cursor.document, {"type": "cursorRemoved", "cursor": removed}, client)

    def do_leave(self, client: Any, document: Any) -> None:
        """Remove ``client``'s cursors in ``document``, then ``client`` itself."""
        for cursor in list(self.cursors_by_client.get(client, {}).values()):
            if cursor.document == document:
                self.do_remove_cursor(client, cursor.private_handle)
        self._remove_client(client, document)
        logger.debug("= %r left %r in %r", client, document, self.name)

    # Server control ----------------------------------------------------------------

    def presence(self, document: Any) -> list[dict[str, Any]]:
        """The identities in ``document`` (on this node), with their info and connection count."""
        return identities_of(self.clients_by_document.get_set(document))

    def unsubscribe_identity(self, identity: Any, document: Any) -> int:
        """Make ``identity`` leave ``document``; return how many connections left it.

        Each of those connections is told with ``{"type": "unsubscribed", "document"}``.
        """
        clients = [c for c in self.clients_by_document.get_set(document) if getattr(c, "identity", None) == identity]
        for client in clients:
            self.do_leave(client, document)
            self.send_message_to(client, {"type": "unsubscribed", "document": document})
        return len(clients)

    def client_disconnected(self, client: Any) -> None:
        """Leave every document the client was in, removing its cursors."""
        for document in list(self.documents_by_client.get_set(client)):
            self.do_leave(client, document)
