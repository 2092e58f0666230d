"""ChatService: named channels whose members exchange messages, with presence.

Commands: ``join``, ``leave``, ``send``, ``read`` (Snorky 0.1's names and
parameters). Members are *identities*: two connections (two tabs) of one user are
one member, announced ``joined`` when the first connection joins a channel and
``left`` when the last one leaves it. See ``docs/services/chat.rst``.

On a cluster, a member's presence is tied to its connection: a join that fails
(``unavailable``) leaves nothing behind, a connection that leaves while its join
is still in flight is announced ``left`` only after its ``joined``, and members
of a dead node are announced ``left`` once, by one node. Clients also receive
``{"type": "gap", "channel", "missed"}`` when their node could not deliver
``missed`` messages of a channel (it was cut off from Redis).

Every push goes through the broker. A channel's messages and presence go to the
topic ``topic_for(name, channel)``; read receipts go to a topic of their own per
identity and channel (:meth:`ChatService.read_topic`), so that they reach only
the nodes holding that identity's other connections, and no client can join a
channel whose topic is another user's receipts.

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from snorky.brokers.base import or_undo, settled, then, topic_for
from snorky.channels import ChannelMap
from snorky.errors import RPCError
from snorky.hashable import make_hashable
from snorky.protocol import Outbound, decode, encode
from snorky.services.presence import count_presence
from snorky.services.rpc import Request, RPCService, rpc_command

__all__ = ["ChatService"]

logger = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class ChatService(RPCService):
    """Channels of identified members who send messages and see who is there.

    Override the hooks :meth:`can_join` and :meth:`can_send` to restrict channels;
    a refusal answers ``Not authorized`` (code ``forbidden``).

    Args:
        name: the service's name.
        history_size: how many recent messages of a channel a ``join`` replies with
            (0, the default, keeps none). A channel's history is kept while it has
            members on this node and dropped when the last one leaves.
        allow_anonymous: let clients without an identity join. Each anonymous
            connection is then a member of its own (``"from": null``): nothing
            proves that two of them are the same person.
        clock: returns the current time as an aware :class:`~datetime.datetime`
            (default: now, in UTC); timestamps are its ISO-8601 form.

    .. versionchanged:: 0.2
       ``history_size``, ``allow_anonymous``, ``clock``, the hooks, ``presence``
       in the ``join`` reply and ``info`` in presence notifications.
    """

    def __init__(
        self,
        name: str = "chat",
        history_size: int = 0,
        allow_anonymous: bool = False,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(name)
        if history_size < 0:
            raise ValueError("history_size must be 0 or more")
        self.history_size = history_size
        """How many recent messages per channel ``join`` replies with."""
        self.allow_anonymous = allow_anonymous
        """Whether clients without an identity may join."""
        self.clock: Callable[[], datetime] = clock if clock is not None else _utc_now
        """Returns the current time (an aware datetime) for timestamps."""
        self.map = self.channel_map = ChannelMap(self, on_message=self._keep)
        """The channels with local members."""
        self.readers = ChannelMap(self, self.name + ":read", gaps=False)
        """(identity, channel) -> the identity's local connections in the channel, which
        hear of its read receipts (anonymous members have none)."""
        self.clients_by_channel = self.map.clients
        """Channel -> local clients joined to it."""
        self.channels_by_client = self.map.channels
        """Client -> channels it joined."""
        self.clients_by_identity_and_channel = self.readers.clients
        """(identity, channel) -> the identity's local connections in the channel."""
        self.history_by_channel: dict[Any, deque[Any]] = {}
        """Channel -> its last ``history_size`` message notifications, oldest first."""
        self._channel_by_presence_key: dict[str, Any] = {}
        self._joining: dict[tuple[Any, Any], asyncio.Future[Any]] = {}
        self._visible: set[tuple[Any, Any]] = set()

    # Hooks -------------------------------------------------------------------

    def can_join(self, client: Any, channel: Any) -> bool:
        """Whether ``client`` may join ``channel`` (default: yes).

        Called after the authentication and ``Already joined`` checks.
        """
        return True

    def can_send(self, client: Any, channel: Any) -> bool:
        """Whether ``client``, a member of ``channel``, may send to it (default: yes)."""
        return True

    # Helpers kept from 0.1 ---------------------------------------------------

    def get_time(self) -> str:
        """The current time from :attr:`clock`, as ISO-8601 text with its time zone."""
        return self.clock().isoformat()

    def check_identity(self, client: Any) -> None:
        """Refuse an anonymous client unless :attr:`allow_anonymous`.

        Raises:
            RPCError: ``Not authenticated``.
        """
        if getattr(client, "identity", None) is None and not self.allow_anonymous:
            raise RPCError("Not authenticated", "not_authenticated")

    # Topics ------------------------------------------------------------------

    def channel_topic(self, channel: Any) -> str:
        """The broker topic of a channel's messages and presence."""
        return self.map.topic(channel)

    def read_topic(self, identity: Any, channel: Any) -> str:
        """The broker topic of ``identity``'s read receipts in ``channel``.

        It lives under ``NAME:read``, a prefix that no :meth:`channel_topic` can
        have (JSON text never starts with ``r``).
        """
        return self.readers.topic((make_hashable(identity), channel))

    def _keep(self, channel: Any, out: Outbound) -> None:
        """Remember a message of ``channel`` for the ``join`` replies (with ``history_size``)."""
        if self.history_size:
            body = out.value["message"]
            if body.get("type") == "message":
                self._remember(channel, body)

    def _publish(self, channel: Any, body: dict[str, Any], exclude: Any = None) -> Any:
        """Publish to the channel's topic; a broker result, done once the message is on its way."""
        return self.broker.publish(self.channel_topic(channel), self.outbound(body, exclude=exclude))

    # Membership across nodes: one presence entry per connection ---------------------

    def presence_key(self, channel: Any) -> str:
        """The broker presence key of a channel's members (one entry per connection)."""
        return topic_for(self.name + ":members", channel)

    @staticmethod
    def _group(entries: dict[str, bytes]) -> list[dict[str, Any]]:
        """Presence entries -> members: one per identity (anonymous connections are one each)."""
        members: dict[Any, dict[str, Any]] = {}
        for member, info in sorted(entries.items()):
            entry = decode(info)
            key = member if entry["identity"] is None else entry["identity"]
            members.setdefault(key, {"identity": entry["identity"], "info": entry["info"]})
        return list(members.values())

    @staticmethod
    def _has_identity(entries: dict[str, bytes], identity: Any, besides: str | None = None) -> bool:
        return identity is not None and any(
            member != besides and decode(info)["identity"] == identity for member, info in entries.items()
        )

    def _on_presence_expired(self, key: str, expired: dict[str, bytes], remaining: dict[str, bytes]) -> None:
        """Entries of a dead node expired: announce ``left`` for each identity now gone."""
        channel = self._channel_by_presence_key.get(key)
        if channel is None:
            return
        announced: set[Any] = set()
        for info in expired.values():
            entry = decode(info)
            identity = entry["identity"]
            if identity in announced or self._has_identity(remaining, identity):
                continue
            announced.add(identity)
            self._publish(channel, self._presence_body(identity, channel, "left", entry["info"]))

    def _on_presence_restored(self, key: str, restored: dict[str, bytes], _: dict[str, bytes]) -> None:
        """This node's entries had expired (it was paused) and were written again: the
        others were told ``left``, so announce ``joined`` again."""
        channel = self._channel_by_presence_key.get(key)
        if channel is None:
            return
        announced: set[Any] = set()
        for info in restored.values():
            entry = decode(info)
            if entry["identity"] not in announced:
                announced.add(entry["identity"])
                self._publish(channel, self._presence_body(entry["identity"], channel, "joined", entry["info"]))

    # Membership state (local to this node) -------------------------------------

    def _is_joined(self, client: Any, channel: Any) -> bool:
        return self.map.has(client, channel)

    def _add_connection(self, client: Any, channel: Any) -> Any:
        """Record ``client`` in ``channel``, listening to new topics; the broker's answer."""
        identity = getattr(client, "identity", None)
        new = channel not in self.clients_by_channel
        ready = self.map.add(client, channel)  # first: a limit may refuse the channel
        if new:
            key_of_members = self.presence_key(channel)
            self._channel_by_presence_key[key_of_members] = channel
            self.broker.watch_presence(key_of_members, self._on_presence_expired, self._on_presence_restored)
        if identity is not None:
            self.readers.add(client, (make_hashable(identity), channel))
        return ready

    def _remove_connection(self, client: Any, channel: Any) -> None:
        """Forget ``client`` in ``channel`` on this node, and the channel if it was its last member here."""
        identity = getattr(client, "identity", None)
        if identity is not None:
            self.readers.remove(client, (make_hashable(identity), channel))
        if self.map.remove(client, channel):
            self.history_by_channel.pop(channel, None)
            key_of_members = self.presence_key(channel)
            self._channel_by_presence_key.pop(key_of_members, None)
            self.broker.watch_presence(key_of_members, None)

    def _remember(self, channel: Any, body: Any) -> None:
        history = self.history_by_channel.get(channel)
        if history is None:
            history = self.history_by_channel[channel] = deque(maxlen=self.history_size)
        history.append(body)

    def _history(self, channel: Any) -> list[Any]:
        return list(self.history_by_channel.get(channel, ()))

    # Commands ----------------------------------------------------------------

    @rpc_command
    def join(self, req: Request, channel: Any) -> Any:
        """Join ``channel``.

        Returns:
            ``{"members": [identity, ...], "presence": [{"identity", "info"}, ...]}``,
            the caller included, on every node, plus ``"history"`` (oldest first)
            when :attr:`history_size` is set.

        Raises:
            RPCError: ``Not authenticated``, ``Already joined``, ``Not authorized``.
        """
        client = req.client
        self.check_identity(client)
        if self._is_joined(client, channel):
            raise RPCError("Already joined", "already_joined")
        if not self.can_join(client, channel):
            raise RPCError("Not authorized", "forbidden")
        identity, info = getattr(client, "identity", None), getattr(client, "info", None)
        # On a cluster, the reply waits until the node listens to the channel: from then
        # on the member receives every message sent to it.
        ready = self._add_connection(client, channel)
        member, key = self.map.member_id(client), self.presence_key(channel)
        added = self.broker.presence_add(key, member, encode({"identity": identity, "info": info}))
        logger.debug("= %r joined %r in %r", client, channel, self.name)
        answer = then(
            ready,
            lambda _: then(
                added,
                lambda written: then(
                    self.broker.presence_list(key),
                    lambda entries: self._joined(client, channel, member, written, entries),
                ),
            ),
        )
        if not inspect.isawaitable(answer):
            return answer

        def undo() -> None:
            # A failed join leaves nothing behind, so that trying again works.
            if self._joining.get((client, channel)) is task and self._is_joined(client, channel):
                self._remove_connection(client, channel)
                self._visible.discard((client, channel))
                self.in_background(self.broker.presence_remove(key, member))

        # A leave (or a disconnect) meanwhile waits for this join to end: its "left" follows the "joined".
        task = self._joining[client, channel] = asyncio.ensure_future(or_undo(answer, undo))

        def done(finished: asyncio.Future[Any]) -> None:
            if self._joining.get((client, channel)) is finished:
                del self._joining[client, channel]
            if not finished.cancelled():
                finished.exception()  # retrieved here: the caller may have gone

        task.add_done_callback(done)

        async def reply() -> Any:
            return await task

        return reply()

    def _joined(
        self, client: Any, channel: Any, member: str, written: Any, entries: dict[str, bytes]
    ) -> dict[str, Any] | Any:
        identity = getattr(client, "identity", None)
        presence = self._group(entries)
        reply: dict[str, Any] = {"members": [entry["identity"] for entry in presence], "presence": presence}
        if self.history_size:
            reply["history"] = self._history(channel)
        if written is False:  # the connection left before its entry was written: nobody saw it
            return reply
        self._visible.add((client, channel))
        if self._has_identity(entries, identity, besides=member):
            return reply
        # The identity's first connection: announced to the others, never to the newcomer,
        # and before the reply, so that whoever hears of the newcomer later is behind it.
        announced = self._send_presence(channel, client, "joined", getattr(client, "info", None))
        return then(announced, lambda _: reply)

    @rpc_command
    def leave(self, req: Request, channel: Any) -> Any:
        """Leave ``channel``.

        Raises:
            RPCError: ``Not joined``.
        """
        if not self._is_joined(req.client, channel):
            raise RPCError("Not joined", "not_joined")
        return settled(self.do_leave(req.client, channel), self.broker.timeout)

    @rpc_command
    def send(self, req: Request, channel: Any, body: Any) -> None:
        """Send ``body`` to every connection in ``channel``, the caller's included.

        Raises:
            RPCError: ``Not joined``, ``Not authorized``.
        """
        client = req.client
        if not self._is_joined(client, channel):
            raise RPCError("Not joined", "not_joined")
        if not self.can_send(client, channel):
            raise RPCError("Not authorized", "forbidden")
        message = {
            "type": "message",
            "from": getattr(client, "identity", None),
            "channel": channel,
            "body": body,
            "timestamp": self.get_time(),
        }
        self._publish(channel, message)

    @rpc_command
    def read(self, req: Request, channel: Any) -> None:
        """Tell the caller's other connections in ``channel`` that it was read.

        An anonymous caller has no other connections; nothing is sent.
        """
        identity = getattr(req.client, "identity", None)
        if identity is None:
            return
        notification = {"type": "read", "channel": channel, "timestamp": self.get_time()}
        self.broker.publish(self.read_topic(identity, channel), self.outbound(notification, exclude=req.client))

    # Leaving -----------------------------------------------------------------

    def do_leave(self, client: Any, channel: Any) -> Any:
        """Remove ``client`` from ``channel``, announcing ``left`` if it was its identity's last connection.

        Returns a broker result (an awaitable on a networked broker) that is done
        once the departure is recorded and announced.
        """
        identity, info = getattr(client, "identity", None), getattr(client, "info", None)
        member, key = self.map.member_id(client), self.presence_key(channel)
        self._remove_connection(client, channel)
        logger.debug("= %r left %r in %r", client, channel, self.name)
        joining = self._joining.pop((client, channel), None)
        removed = self.broker.presence_remove(key, member)  # the broker orders it after the join's write

        def announce(removed: Any) -> Any:
            visible = (client, channel) in self._visible
            self._visible.discard((client, channel))
            if not removed or not visible:
                return None  # never seen, or already announced as left when it expired
            return then(
                self.broker.presence_list(key),
                lambda entries: self._left(client, channel, identity, info, entries),
            )

        if joining is None or joining.done():
            return then(removed, announce)

        async def after_join() -> Any:
            await asyncio.wait([joining])
            result = then(removed, announce)
            return await result if inspect.isawaitable(result) else result

        return after_join()

    def _left(self, client: Any, channel: Any, identity: Any, info: Any, entries: dict[str, bytes]) -> Any:
        if not self._has_identity(entries, identity):
            return self._publish(channel, self._presence_body(identity, channel, "left", info), exclude=client)
        return None

    def _presence_body(self, identity: Any, channel: Any, status: str, info: Any) -> dict[str, Any]:
        body = {
            "type": "presence",
            "from": identity,
            "channel": channel,
            "status": status,
            "timestamp": self.get_time(),
        }
        if info is not None:  # 0.1 clients compare the whole push: no key when there is no info
            body["info"] = info
        return body

    def _send_presence(self, channel: Any, client: Any, status: str, info: Any) -> Any:
        body = self._presence_body(getattr(client, "identity", None), channel, status, info)
        return self._publish(channel, body, exclude=client)

    # Server control ----------------------------------------------------------------

    def presence(self, channel: Any) -> Any:
        """The identities in ``channel`` on every node, with their info and connection count."""

        return then(self.broker.presence_list(self.presence_key(channel)), count_presence)

    def unsubscribe_identity(self, identity: Any, channel: Any) -> int:
        """Make ``identity``'s connections on this node leave ``channel``; return how many.

        Each of those connections is told with ``{"type": "unsubscribed", "channel"}``.
        """
        clients = [c for c in self.clients_by_channel.get_set(channel) if getattr(c, "identity", None) == identity]
        for client in clients:
            self.in_background(self.do_leave(client, channel))
            self.send_message_to(client, {"type": "unsubscribed", "channel": channel})
        return len(clients)

    def client_disconnected(self, client: Any) -> None:
        """Leave every channel the client was in, with presence."""
        for channel in list(self.channels_by_client.get_set(client)):
            self.in_background(self.do_leave(client, channel))
