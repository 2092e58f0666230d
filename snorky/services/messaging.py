"""MessagingService: clients register names and send messages to one another.

Commands: ``registerParticipant``, ``unregisterParticipant``,
``listParticipants``, ``send`` (Snorky 0.1's names and parameters). A client may
hold several names; a name belongs to one client at a time, and a client sends
only as a name it holds. See ``docs/services/messaging.rst``.

.. versionadded:: 0.1
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from snorky.brokers.base import or_undo, settled, then
from snorky.channels import ChannelMap
from snorky.errors import RPCError
from snorky.protocol import decode, encode
from snorky.services.rpc import Request, RPCService, rpc_command

__all__ = ["MessagingService"]

logger = logging.getLogger(__name__)


def _name_order(name: Any) -> tuple[int, str]:
    if isinstance(name, str):
        return (0, name)
    return (1, orjson.dumps(name, option=orjson.OPT_SORT_KEYS).decode())


class MessagingService(RPCService):
    """Named participants exchanging one-to-one messages.

    Override the hook :meth:`is_name_allowed` to restrict which names a client may
    register (for example, only its own user name).

    Args:
        name: the service's name.
    """

    def __init__(self, name: str = "messaging") -> None:
        super().__init__(name)
        self.participants: dict[Any, Any] = {}
        """Participant name -> the local client holding it."""
        self.names = self.channel_map = ChannelMap(self, self.name + ":to", field="dest", gaps=False)
        """The names held here, each a channel of one client: its messages' topic."""
        self.client_participants = self.names.channels
        """Client -> the names it holds."""

    # Hook --------------------------------------------------------------------

    def is_name_allowed(self, client: Any, name: Any) -> bool:
        """Whether ``client`` may register ``name`` (default: any name, any client).

        Called for names nobody holds yet; a refusal answers ``Name not allowed``.
        """
        return True

    # Names: claimed cluster-wide as broker presence entries, held on this node -------

    @property
    def names_key(self) -> str:
        """The broker presence key of every participant name (their entries are claims)."""
        return self.name + ":names"

    def name_topic(self, name: Any) -> str:
        """The broker topic of messages to the participant ``name``."""
        return self.names.topic(name)

    @staticmethod
    def _member(name: Any) -> str:
        return encode(name).decode()

    def holder_of(self, name: Any) -> Any | None:
        """The local client holding the participant ``name``, or ``None``."""
        return self.participants.get(name)

    def _claim(self, client: Any, name: Any) -> None:
        self.names.add(client, name)  # first: a limit may refuse the name
        self.participants[name] = client

    def _drop(self, client: Any, name: Any) -> None:
        del self.participants[name]
        self.names.remove(client, name)

    def _release(self, client: Any, name: Any) -> Any:
        self._drop(client, name)
        return self.broker.presence_remove(self.names_key, self._member(name))

    # Commands ----------------------------------------------------------------

    @rpc_command
    def registerParticipant(self, req: Request, name: Any) -> Any:
        """Give the caller the participant name ``name``, unique on every node.

        Raises:
            RPCError: ``Name already registered`` (by anyone, the caller included),
                ``Name not allowed``.
        """
        if self.holder_of(name) is not None:
            raise RPCError("Name already registered", "name_taken")
        if not self.is_name_allowed(req.client, name):
            raise RPCError("Name not allowed", "name_not_allowed")
        self._claim(req.client, name)  # held here at once, so a second call on this node is refused

        def undo() -> None:
            if self.participants.get(name) is req.client:
                self._drop(req.client, name)

        def claimed(added: bool) -> None:
            if not added:
                undo()
                raise RPCError("Name already registered", "name_taken")
            logger.debug("= %r registered %r in %r", req.client, name, self.name)

        def failed() -> None:
            # The broker could not be reached (``unavailable``): give the name up, here and
            # in the broker, so that trying again works.
            if self.participants.get(name) is req.client:
                undo()
                self.in_background(self.broker.presence_remove(self.names_key, self._member(name)))

        claim = self.broker.presence_add(self.names_key, self._member(name), encode(name), only_if_absent=True)
        return or_undo(then(claim, claimed), failed)

    @rpc_command
    def unregisterParticipant(self, req: Request, name: Any) -> Any:
        """Free the name ``name``, held by the caller.

        Raises:
            RPCError: ``Unknown participant`` (nobody holds it),
                ``Invalid participant`` (another client holds it).
        """
        holder = self.holder_of(name)
        if holder is req.client:
            return settled(self._release(req.client, name), self.broker.timeout)
        if holder is not None:
            raise RPCError("Invalid participant", "invalid_participant")

        def refuse(names: dict[str, bytes]) -> None:
            if self._member(name) in names:
                raise RPCError("Invalid participant", "invalid_participant")
            raise RPCError("Unknown participant", "unknown_participant")

        return then(self.broker.presence_list(self.names_key), refuse)

    @rpc_command
    def listParticipants(self, req: Request) -> Any:
        """Return the names of every participant on every node, sorted.

        Text names come first, in text order; any other JSON names follow, ordered
        by their JSON form (0.1 failed with ``Internal error`` on mixed types).
        """
        names = self.broker.presence_list(self.names_key)
        return then(names, lambda found: sorted((decode(info) for info in found.values()), key=_name_order))

    @rpc_command
    def send(self, req: Request, sender: Any, dest: Any, body: Any) -> Any:
        """Send ``body`` from the caller's name ``sender`` to the participant ``dest``, on any node.

        ``dest`` receives ``{"type": "message", "sender", "dest", "body"}``.

        Raises:
            RPCError: ``Invalid sender`` (the caller does not hold ``sender``),
                ``Unknown destination``.
        """
        if self.holder_of(sender) is not req.client:
            raise RPCError("Invalid sender", "invalid_sender")
        message = self.outbound({"type": "message", "sender": sender, "dest": dest, "body": body})
        local = self.holder_of(dest)
        if local is not None:
            self.deliver(local, message)
            return None

        def route(names: dict[str, bytes]) -> None:
            if self._member(dest) not in names:
                raise RPCError("Unknown destination", "unknown_destination")
            self.broker.publish(self.name_topic(dest), message)

        return then(self.broker.presence_list(self.names_key), route)

    def client_disconnected(self, client: Any) -> None:
        """Free every name the client held."""
        for name in self.names.channels_of(client):
            self.in_background(self._release(client, name))
