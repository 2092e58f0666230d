"""PubSubService: clients subscribe to channels and publish to them.

Commands: ``subscribe``/``join``, ``unsubscribe``/``leave``, ``publish``.
Subscribers receive ``{"type": "message", "channel", "message"}``, and, on a
cluster, ``{"type": "gap", "channel", "missed"}`` when their node could not
deliver ``missed`` messages of the channel (it was cut off from Redis and no
history stream still had them): the client should reload. Code in the
same process publishes with one call, :meth:`PubSubService.do_publish`; a trusted
application server publishes through :class:`PubSubBackend` on the backend port.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from snorky.brokers.base import History, HistoryResult, or_undo, then, topic_for
from snorky.channels import ChannelMap
from snorky.errors import RPCError
from snorky.protocol import Outbound, decode, encode
from snorky.services.presence import count_presence
from snorky.services.rpc import Request, RPCService, rpc_command

__all__ = ["PubSubService", "PubSubBackend", "HistoryRule"]


@dataclass(frozen=True)
class HistoryRule:
    """Channels whose names match ``channel`` (a glob such as ``"news.*"``) keep history."""

    channel: str
    size: int = 100
    ttl: float = 300.0

    @property
    def history(self) -> History:
        return History(self.size, self.ttl)


class PubSubService(RPCService):
    """Channels that clients subscribe to; a publish reaches every subscriber once.

    Override :meth:`can_subscribe` and :meth:`can_publish` to restrict channels.

    Args:
        name: the service name.
        history: which channels keep their recent messages, so that a client that
            reconnects can recover what it missed: rules (or dicts) with a glob
            ``channel``, a ``size`` and a ``ttl`` in seconds; the first match wins.
    """

    def __init__(self, name: str = "pubsub", history: list[HistoryRule | dict[str, Any]] | None = None) -> None:
        super().__init__(name)
        self.history_rules = [rule if isinstance(rule, HistoryRule) else HistoryRule(**rule) for rule in history or ()]
        """The history rules, in order."""
        self.map = self.channel_map = ChannelMap(self)
        """The channels with local subscribers."""
        self.subscriptions = self.map.clients
        """Channel -> local clients subscribed to it."""
        self.subscriptions_by_client = self.map.channels
        """Client -> channels it is subscribed to."""
        self._attempts: dict[tuple[Any, Any], object] = {}

    # Hooks -------------------------------------------------------------------

    def can_publish(self, client: Any, channel: Any) -> bool:
        """Whether ``client`` may publish to ``channel`` (default: yes)."""
        return True

    def can_subscribe(self, client: Any, channel: Any) -> bool:
        """Whether ``client`` may subscribe to ``channel`` (default: yes)."""
        return True

    # Publishing from Python ----------------------------------------------------

    def do_publish(self, channel: Any, message: Any) -> Any:
        """Publish ``message`` to every subscriber of ``channel``, on every node.

        Call it from anywhere on the server's event loop (a handler, a coroutine,
        a timer): it needs no client and checks no hook. With a networked broker it
        returns an awaitable, done once the message is on its way to every node
        (await it to keep a later publish behind this one; ignoring it is fine).
        """
        out = Outbound({"service": self.name, "message": {"type": "message", "channel": channel, "message": message}})
        rule = self.history_rule(channel) if self.history_rules else None
        return self.broker.publish(topic_for(self.name, channel), out, rule.history if rule else None)

    publish_message = do_publish

    # Commands ------------------------------------------------------------------

    @rpc_command
    def publish(self, req: Request, channel: Any, message: Any) -> Any:
        """Publish ``message`` to ``channel``; answered once it is on its way to every node."""
        if not self.can_publish(req.client, channel):
            raise RPCError("Not authorized", "forbidden")
        return then(self.do_publish(channel, message), lambda _: None)

    def history_rule(self, channel: Any) -> HistoryRule | None:
        """The first history rule matching ``channel`` (only string channels keep history)."""
        if isinstance(channel, str):
            for rule in self.history_rules:
                if fnmatchcase(channel, rule.channel):
                    return rule
        return None

    @rpc_command
    def subscribe(self, req: Request, channel: Any, recover: Any = None) -> Any:
        """Subscribe the caller to ``channel``.

        Answers ``null``, or for a channel with history its position
        ``{"offset", "epoch"}``; given ``recover = {"offset", "epoch"}`` (the last
        message the client saw) it adds ``"recovered"`` and the missed messages,
        oldest first, in ``"publications"`` (when ``recovered`` is false the gap
        could not be filled, and the client should reload).

        When the broker cannot be reached it answers ``unavailable`` and the caller
        is not subscribed: it can try again.
        """
        client = req.client
        if recover is not None and not (
            isinstance(recover, dict)
            and type(recover.get("offset")) is int
            and recover["offset"] >= 0
            and isinstance(recover.get("epoch"), str)
        ):
            raise RPCError("Invalid params", "invalid_params")
        if self.map.has(client, channel):
            raise RPCError("Already subscribed", "already_subscribed")
        if not self.can_subscribe(client, channel):
            raise RPCError("Not authorized", "forbidden")
        topic = self.map.topic(channel)
        # A networked broker answers once the subscription is in effect: from the
        # reply on, the client receives every message published to the channel.
        ready = self.map.add(client, channel)
        identity = getattr(client, "identity", None)
        if identity is not None:  # anonymous subscribers have no presence
            info = encode({"identity": identity, "info": getattr(client, "info", None)})
            self.in_background(self.broker.presence_add(self.presence_key(channel), self.map.member_id(client), info))
        rule = self.history_rule(channel) if self.history_rules else None
        if rule is None:
            answer: Any = None if ready is None else then(ready, lambda _: None)
        else:
            since = (recover["offset"], recover["epoch"]) if recover is not None else None
            answer = then(
                ready,
                lambda _: then(
                    self.broker.history(topic, since, rule.ttl),
                    lambda found: self._position(found, recover is not None),
                ),
            )
        attempt = self._attempts[client, channel] = object()

        def undo() -> None:
            # A failed subscribe leaves nothing behind, so that trying again works.
            if self._attempts.get((client, channel)) is attempt and self.map.has(client, channel):
                self._drop(client, channel)

        return or_undo(answer, undo)

    @staticmethod
    def _position(found: HistoryResult, recovering: bool) -> dict[str, Any]:
        reply: dict[str, Any] = {"offset": found.offset, "epoch": found.epoch}
        if recovering:
            reply["recovered"] = found.recovered
            reply["publications"] = [decode(data)["message"] for data in found.publications]
        return reply

    @rpc_command
    def unsubscribe(self, req: Request, channel: Any) -> None:
        """Cancel the caller's subscription to ``channel``."""
        if not self.map.has(req.client, channel):
            raise RPCError("Not subscribed", "not_subscribed")
        self._drop(req.client, channel)

    # The seed overview of Snorky names these commands join and leave; they call
    # the methods above, so a subclass that overrides those changes both names.
    @rpc_command
    def join(self, req: Request, channel: Any, recover: Any = None) -> Any:
        """Same as ``subscribe``."""
        return self.subscribe(req, channel, recover)

    @rpc_command
    def leave(self, req: Request, channel: Any) -> None:
        """Same as ``unsubscribe``."""
        self.unsubscribe(req, channel)

    def _drop(self, client: Any, channel: Any) -> None:
        self._attempts.pop((client, channel), None)
        member = self.map.known_member(client)
        if member is not None:
            self.in_background(self.broker.presence_remove(self.presence_key(channel), member))
        self.map.remove(client, channel)

    # Server control ----------------------------------------------------------------

    def presence_key(self, channel: Any) -> str:
        """The broker presence key of a channel's authenticated subscribers."""
        return topic_for(self.name + ":presence", channel)

    def presence(self, channel: Any) -> Any:
        """The identities subscribed to ``channel`` on every node, with their info and connection count."""

        return then(self.broker.presence_list(self.presence_key(channel)), count_presence)

    def unsubscribe_identity(self, identity: Any, channel: Any) -> int:
        """Cancel ``identity``'s subscriptions to ``channel``; return how many connections had one.

        Each of those connections is told with ``{"type": "unsubscribed", "channel"}``,
        so that its client stops following the channel (and does not subscribe
        again after a reconnection).
        """
        clients = [c for c in self.map.clients_of(channel) if getattr(c, "identity", None) == identity]
        for client in clients:
            self._drop(client, channel)
            self.send_message_to(client, {"type": "unsubscribed", "channel": channel})
        return len(clients)

    def client_disconnected(self, client: Any) -> None:
        """Cancel every subscription of a client that left."""
        for channel in self.map.channels_of(client):
            self._drop(client, channel)


class PubSubBackend(RPCService):
    """Backend service publishing to a :class:`PubSubService` (command: ``publish``).

    Publishing through it skips :meth:`PubSubService.can_publish`: only trusted
    servers reach the backend port.

    Args:
        name: this service's name in the backend registry.
        frontend: the :class:`PubSubService` to publish to.
    """

    def __init__(self, name: str, frontend: PubSubService) -> None:
        super().__init__(name)
        self.frontend = frontend

    @rpc_command
    def publish(self, req: Request, channel: Any, message: Any) -> Any:
        """Publish ``message`` to ``channel`` of the frontend service."""
        return then(self.frontend.do_publish(channel, message), lambda _: None)
