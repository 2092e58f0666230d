"""PubSubService: clients subscribe to channels and publish to them.

Commands: ``subscribe``/``join``, ``unsubscribe``/``leave``, ``publish``, and where
a namespace allows them ``presence``, ``presence_stats`` and ``history``.
Subscribers receive ``{"type": "message", "channel", "message"}``, and, on a
cluster, ``{"type": "gap", "channel", "missed"}`` when their node could not
deliver ``missed`` messages of the channel (it was cut off from Redis and no
history stream still had them): the client should reload. The server may
subscribe a connection itself (``{"type": "subscribed", "channel"}``) or end a
subscription (``{"type": "unsubscribed", "channel"}``), and send one identity a
message of its own (``{"type": "user_message", "message"}``); where ``join_leave``
is on, subscribers hear ``{"type": "join" | "leave", "channel", "identity", "info",
"client"}``.

Who may do what comes from :attr:`PubSubService.namespaces` (the ``[namespaces]``
of a configuration file, see :mod:`snorky.namespaces`) and from the hooks
:meth:`~PubSubService.can_subscribe` and :meth:`~PubSubService.can_publish`. Code in
the same process publishes with one call, :meth:`PubSubService.do_publish`; a
trusted application server publishes through :class:`PubSubBackend` on the
backend port.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from snorky.auth import AuthError
from snorky.brokers.base import History, HistoryResult, MaybeAwaitable, or_undo, then, topic_for
from snorky.channels import ChannelMap
from snorky.errors import RPCError
from snorky.namespaces import Namespace, Namespaces
from snorky.protocol import Outbound, decode, encode
from snorky.services.presence import count_presence
from snorky.services.rpc import Request, RPCService, rpc_command

__all__ = ["PubSubService", "PubSubBackend", "HistoryRule"]

logger = logging.getLogger(__name__)

SUBSCRIPTIONS_CLAIM = "subscriptions"
"""The token claim listing channels a connection is subscribed to when it connects."""


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

    Give it :class:`~snorky.namespaces.Namespaces` to decide who may subscribe and
    publish where; override :meth:`can_subscribe` and :meth:`can_publish` to restrict
    channels further.

    Args:
        name: the service name.
        history: which channels keep their recent messages, so that a client that
            reconnects can recover what it missed: rules (or dicts) with a glob
            ``channel``, a ``size`` and a ``ttl`` in seconds; the first match wins
            (before a namespace's ``history_size``).
        namespaces: the channel rules; ``None`` (the default for a service made in
            Python, as in Snorky 0.1) lets every client subscribe and publish
            everywhere the hooks allow.
    """

    def __init__(
        self,
        name: str = "pubsub",
        history: list[HistoryRule | dict[str, Any]] | None = None,
        namespaces: Namespaces | None = None,
    ) -> None:
        super().__init__(name)
        self.history_rules = [rule if isinstance(rule, HistoryRule) else HistoryRule(**rule) for rule in history or ()]
        """The history rules, in order."""
        self.namespaces = namespaces
        """Who may do what, by namespace (``None``: only the hooks decide)."""
        self.users = ChannelMap(self, f"{name}:user", field="user", gaps=False, on_message=self._user_action)
        """Identity -> its local connections, listening to the identity's topic (messages
        to one user, server-side subscriptions)."""
        self.map = self.channel_map = ChannelMap(self)
        """The channels with local subscribers."""
        self.subscriptions = self.map.clients
        """Channel -> local clients subscribed to it."""
        self.subscriptions_by_client = self.map.channels
        """Client -> channels it is subscribed to."""
        self._attempts: dict[tuple[Any, Any], object] = {}
        self._announced: dict[str, Any] = {}
        """Presence key -> channel, for channels here whose namespace has join_leave."""

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
        a timer): it needs no client and checks no rule. With a networked broker it
        returns an awaitable, done once the message is on its way to every node
        (await it to keep a later publish behind this one; ignoring it is fine).
        """
        return self._publish_out(channel, self._message_out(channel, message))

    publish_message = do_publish

    def _message_out(self, channel: Any, message: Any) -> Outbound:
        return Outbound({"service": self.name, "message": {"type": "message", "channel": channel, "message": message}})

    def _publish_out(self, channel: Any, out: Outbound) -> Any:
        rule = self.history_rule(channel) if self.history_rules or self.namespaces is not None else None
        return self.broker.publish(topic_for(self.name, channel), out, rule.history if rule else None)

    def publish_to_user(self, identity: Any, message: Any) -> Any:
        """Send ``message`` to every connection of ``identity``, on every node, as
        ``{"type": "user_message", "message"}``; a broker result like :meth:`do_publish`'s."""
        return self.broker.publish(
            self.users.topic(identity), self.outbound({"type": "user_message", "message": message})
        )

    def subscribe_user(self, identity: Any, channel: Any) -> Any:
        """Subscribe every connection of ``identity``, on every node, to ``channel``.

        No rule is checked: the server decides. Each connection is told with
        ``{"type": "subscribed", "channel"}`` (plus the stream position on a channel
        with history); one already subscribed is left as it is. The subscription lasts
        as long as the connection: to subscribe a user at every connect, put the channel
        in its token's ``subscriptions`` claim.
        """
        return self.broker.publish(
            self.users.topic(identity), Outbound({"service": self.name, "action": "subscribe", "channel": channel})
        )

    def unsubscribe_user(self, identity: Any, channel: Any) -> Any:
        """End ``identity``'s subscriptions to ``channel`` on every node (see :meth:`unsubscribe_identity`)."""
        return self.broker.publish(
            self.users.topic(identity), Outbound({"service": self.name, "action": "unsubscribe", "channel": channel})
        )

    def _user_action(self, identity: Any, out: Outbound) -> bool:
        """A message on an identity's topic: an action for its connections here, or a message to pass on."""
        value = out.value
        action = value.get("action") if isinstance(value, dict) else None
        if action is None:
            return False
        if action == "subscribe":
            for client in list(self.users.clients_of(identity)):
                if not self.map.has(client, value["channel"]):
                    self.in_background(self.server_subscribe(client, value["channel"]))
        elif action == "unsubscribe":
            self.unsubscribe_identity(identity, value["channel"])
        return True

    # Commands ------------------------------------------------------------------

    @rpc_command
    def publish(self, req: Request, channel: Any, message: Any) -> Any:
        """Publish ``message`` to ``channel``; answered once it is on its way to every node."""
        client = req.client
        out = self._message_out(channel, message)
        if self.namespaces is not None:
            refusal = self.namespaces.refuse_publish(client, channel, self.map.has(client, channel))
            if refusal is not None:
                raise RPCError("Not authorized", "forbidden", refusal)
            namespace = self.namespaces.of(channel)
            limit = namespace.max_message_size if namespace is not None else 0
            if limit and len(out.json) > limit:
                raise RPCError("Message too large", "message_too_large", f"over the namespace's {limit} bytes")
        if not self.can_publish(client, channel):
            raise RPCError("Not authorized", "forbidden")
        return then(self._publish_out(channel, out), lambda _: None)

    def history_rule(self, channel: Any) -> HistoryRule | None:
        """How ``channel`` keeps history: the first history rule matching it, else its
        namespace's ``history_size`` (only string channels keep history)."""
        if isinstance(channel, str):
            for rule in self.history_rules:
                if fnmatchcase(channel, rule.channel):
                    return rule
            namespace = self.namespaces.of(channel) if self.namespaces is not None else None
            if namespace is not None and namespace.history_size:
                return HistoryRule(channel, namespace.history_size, namespace.history_ttl)
        return None

    def _namespace(self, client: Any, channel: Any, token: Any) -> Namespace | None:
        """The channel's namespace, once ``client`` may subscribe to it.

        Raises:
            RPCError: ``forbidden``, with the reason in ``detail``.
        """
        if self.namespaces is None:
            if token is not None:
                raise RPCError("Invalid params", "invalid_params", "token: no namespaces, no subscription tokens")
            return None
        check = None if token is None else (lambda: self.subscription_token_valid(client, channel, token))
        refusal = self.namespaces.refuse_subscribe(client, channel, check)
        if refusal is not None:
            raise RPCError("Not authorized", "forbidden", refusal)
        return self.namespaces.of(channel)

    def subscription_token_valid(self, client: Any, channel: Any, token: Any) -> bool:
        """Whether ``token`` is a subscription token for ``client``'s identity and ``channel``.

        A subscription token is signed like a connection token (see
        :func:`snorky.auth.sign_subscription_token`) and has a ``channel`` claim;
        its ``sub`` is the connection's identity (``""`` for an anonymous one).
        """
        auth = self.registry.auth_service if self.registry is not None else None
        verifier = getattr(auth, "verifier", None)
        if verifier is None:
            return False
        try:
            claims = verifier.verify(token)
        except AuthError as error:
            logger.info("! refused subscription token of %r for %r: %s", client, channel, error.message)
            return False
        identity = getattr(client, "identity", None)
        return bool(claims.get("channel") == channel and claims["sub"] == ("" if identity is None else identity))

    @rpc_command
    def subscribe(
        self, req: Request, channel: Any, recover: Any = None, token: Any = None, position: Any = None
    ) -> Any:
        """Subscribe the caller to ``channel``.

        Answers ``null``, or for a channel with history its position
        ``{"offset", "epoch"}``; given ``recover = {"offset", "epoch"}`` (the last
        message the client saw) it adds ``"recovered"`` and the missed messages,
        oldest first, in ``"publications"`` (when ``recovered`` is false the gap
        could not be filled, and the client should reload). On a channel whose
        history comes from its namespace (not from a ``history`` rule), the position
        is answered when the client asks (``position: true`` or ``recover``) or the
        namespace has ``force_recovery``. ``token`` is a subscription token for the channel.

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
        if position is not None and not isinstance(position, bool):
            raise RPCError("Invalid params", "invalid_params", "position must be true or false")
        if self.map.has(client, channel):
            raise RPCError("Already subscribed", "already_subscribed")
        namespace = self._namespace(client, channel, token)
        if not self.can_subscribe(client, channel):
            raise RPCError("Not authorized", "forbidden")
        answer_position = (
            namespace is None
            or bool(position)
            or recover is not None
            or namespace.force_recovery
            or any(fnmatchcase(channel, rule.channel) for rule in self.history_rules if isinstance(channel, str))
        )
        return self._subscribe(client, channel, recover, namespace, answer_position)

    def server_subscribe(self, client: Any, channel: Any) -> Any:
        """Subscribe ``client`` to ``channel`` by the server's decision (no rule checked) and
        tell it with ``{"type": "subscribed", "channel"}`` (and the position on a channel
        with history), once the subscription is in effect."""
        if self.map.has(client, channel):
            return None
        namespace = self.namespaces.of(channel) if self.namespaces is not None else None
        answer = self._subscribe(client, channel, None, namespace, True, refusable=False)

        def tell(position: Any) -> None:
            if self.map.has(client, channel):
                self.send_message_to(client, {"type": "subscribed", "channel": channel, **(position or {})})

        return then(answer, tell)

    def _subscribe(
        self,
        client: Any,
        channel: Any,
        recover: Any,
        namespace: Namespace | None,
        position: bool,
        refusable: bool = True,
    ) -> Any:
        try:
            return self._subscribe_now(client, channel, recover, namespace, position, refusable)
        except RPCError:  # refused at once (one node): leave nothing behind
            if self.map.has(client, channel):
                self._drop(client, channel)
            raise

    def _subscribe_now(
        self, client: Any, channel: Any, recover: Any, namespace: Namespace | None, position: bool, refusable: bool
    ) -> Any:
        topic = self.map.topic(channel)
        new = channel not in self.map.clients
        # A networked broker answers once the subscription is in effect: from the
        # reply on, the client receives every message published to the channel. The
        # server's own subscriptions count toward channels_per_connection, but only a
        # client's are refused by it.
        ready = self.map.add(client, channel, limited=refusable)
        if namespace is not None and namespace.join_leave and new:
            self._watch(channel)
        identity = getattr(client, "identity", None)
        written: Any = None
        if identity is not None:  # anonymous subscribers have no presence
            member, key = self.map.member_id(client), self.presence_key(channel)
            written = self.broker.presence_add(
                key, member, encode({"identity": identity, "info": getattr(client, "info", None)})
            )
            if namespace is not None and namespace.max_presence_members:
                limited = namespace
                ready = then(
                    ready,
                    lambda _: then(
                        written, lambda _: then(self.broker.presence_count(key), lambda n: self._room_for(limited, n))
                    ),
                )
            elif namespace is not None and namespace.join_leave:
                ready = then(ready, lambda _: written)
            else:
                self.in_background(written)
            if namespace is not None and namespace.join_leave:
                ready = then(ready, lambda _: self._announce(channel, "join", client))
        rule = self.history_rule(channel) if self.history_rules or namespace is not None else None
        if rule is None or not position:
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
    def _room_for(namespace: Namespace, count: int) -> None:
        """Refuse a subscriber that took the channel's presence over its limit (``count`` includes it)."""
        limit = namespace.max_presence_members
        if count > limit:
            raise RPCError("Not authorized", "forbidden", f"the channel's presence holds {limit} connections already")

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
    def join(self, req: Request, channel: Any, recover: Any = None, token: Any = None, position: Any = None) -> Any:
        """Same as ``subscribe``."""
        return self.subscribe(req, channel, recover, token, position)

    @rpc_command
    def leave(self, req: Request, channel: Any) -> None:
        """Same as ``unsubscribe``."""
        self.unsubscribe(req, channel)

    def _readable(self, client: Any, channel: Any, what: str) -> Namespace:
        """The namespace of ``channel`` if ``client`` may read its ``what`` (presence, history)."""
        namespace = self._namespace(client, channel, None) if self.namespaces is not None else None
        if namespace is None or not getattr(namespace, f"allow_{what}"):
            raise RPCError("Not authorized", "forbidden", f"the namespace does not allow {what}")
        if not self.can_subscribe(client, channel):
            raise RPCError("Not authorized", "forbidden")
        return namespace

    @rpc_command
    def presence(self, req: Request, channel: Any) -> Any:
        """Who is subscribed to ``channel``, on every node: ``[{"identity", "info",
        "connections"}]`` (where the namespace has ``allow_presence``)."""
        self._readable(req.client, channel, "presence")
        return self.channel_presence(channel)

    @rpc_command
    def presence_stats(self, req: Request, channel: Any) -> Any:
        """How many identities and connections are subscribed: ``{"identities", "connections"}``."""
        self._readable(req.client, channel, "presence")
        return then(
            self.channel_presence(channel),
            lambda members: {"identities": len(members), "connections": sum(m["connections"] for m in members)},
        )

    @rpc_command
    def history(self, req: Request, channel: Any, limit: Any = None) -> Any:
        """The channel's most recent messages, oldest first: ``{"offset", "epoch",
        "publications"}`` (at most ``limit``; where the namespace has ``allow_history``)."""
        if limit is not None and not (type(limit) is int and limit >= 0):
            raise RPCError("Invalid params", "invalid_params", "limit must be a whole number")
        self._readable(req.client, channel, "history")
        rule = self.history_rule(channel)
        if rule is None:
            raise RPCError("Not supported by this service", "unsupported", "the channel keeps no history")
        wanted = rule.size if limit is None else min(limit, rule.size)
        topic = self.map.topic(channel)

        def read(position: HistoryResult) -> Any:
            since = (max(position.offset - wanted, 0), position.epoch)
            return then(self.broker.history(topic, since, rule.ttl), lambda found: self._publications(found, wanted))

        return then(self.broker.history(topic, None, rule.ttl), read)

    @staticmethod
    def _publications(found: HistoryResult, wanted: int) -> dict[str, Any]:
        messages = [decode(data)["message"] for data in found.publications] if wanted else []
        return {"offset": found.offset, "epoch": found.epoch, "publications": messages[-wanted:] if wanted else []}

    def _drop(self, client: Any, channel: Any) -> None:
        self._attempts.pop((client, channel), None)
        member = self.map.known_member(client)
        if member is not None:
            removed: MaybeAwaitable[Any] = self.broker.presence_remove(self.presence_key(channel), member)
            namespace = self.namespaces.of(channel) if self.namespaces is not None else None
            if namespace is not None and namespace.join_leave:
                identity, info = getattr(client, "identity", None), getattr(client, "info", None)
                removed = then(
                    removed,
                    lambda was: self._announce(channel, "leave", client, identity, info, member) if was else None,
                )
            self.in_background(removed)
        if self.map.remove(client, channel) and self._announced:
            key = self.presence_key(channel)
            if self._announced.pop(key, None) is not None:
                self.broker.watch_presence(key, None)

    def _watch(self, channel: Any) -> None:
        """Announce the departures of a dead node's connections from ``channel`` (and their
        return, for a node that was only paused), while this node has subscribers in it."""
        key = self.presence_key(channel)
        self._announced[key] = channel
        self.broker.watch_presence(key, self._expired, self._restored)

    def _expired(self, key: str, expired: dict[str, bytes], _: dict[str, bytes]) -> None:
        self._announce_entries(key, expired, "leave")

    def _restored(self, key: str, restored: dict[str, bytes], _: dict[str, bytes]) -> None:
        self._announce_entries(key, restored, "join")

    def _announce_entries(self, key: str, entries: dict[str, bytes], kind: str) -> None:
        channel = self._announced.get(key)
        for member, info in entries.items() if channel is not None else ():
            entry = decode(info)
            body = {"type": kind, "channel": channel, "identity": entry["identity"], "info": entry["info"]}
            self.in_background(self.broker.publish(self.map.topic(channel), self.outbound({**body, "client": member})))

    def _announce(
        self, channel: Any, kind: str, client: Any, identity: Any = None, info: Any = None, member: str | None = None
    ) -> Any:
        """Push a join or a leave of one connection to the channel's subscribers, on every node."""
        if kind == "join":
            identity, info, member = (
                getattr(client, "identity", None),
                getattr(client, "info", None),
                self.map.known_member(client),
            )
        body = {"type": kind, "channel": channel, "identity": identity, "info": info, "client": member}
        return self.broker.publish(self.map.topic(channel), self.outbound(body, exclude=client))

    # Server control ----------------------------------------------------------------

    def presence_key(self, channel: Any) -> str:
        """The broker presence key of a channel's authenticated subscribers."""
        return topic_for(self.name + ":presence", channel)

    def channel_presence(self, channel: Any) -> Any:
        """The identities subscribed to ``channel`` on every node, with their info and connection count."""
        return then(self.broker.presence_list(self.presence_key(channel)), count_presence)

    def unsubscribe_identity(self, identity: Any, channel: Any) -> int:
        """Cancel ``identity``'s subscriptions to ``channel`` on this node; return how many connections had one.

        Each of those connections is told with ``{"type": "unsubscribed", "channel"}``,
        so that its client stops following the channel (and does not subscribe
        again after a reconnection).
        """
        clients = [c for c in self.map.clients_of(channel) if getattr(c, "identity", None) == identity]
        for client in clients:
            self._drop(client, channel)
            self.send_message_to(client, {"type": "unsubscribed", "channel": channel})
        return len(clients)

    def client_connected(self, client: Any) -> None:
        """Follow an identified connection's own topic; subscribe it to its token's ``subscriptions``."""
        if getattr(client, "identity", None) is not None:
            self.client_identified(client)

    def client_identified(self, client: Any) -> None:
        """``client`` has an identity now (at connect, or by the ``authenticate`` command)."""
        identity = client.identity
        if not self.users.has(client, identity):
            self.in_background(self.users.add(client, identity))
        claims = getattr(client, "claims", None) or {}
        channels = claims.get(SUBSCRIPTIONS_CLAIM) if isinstance(claims, dict) else None
        for channel in channels if isinstance(channels, list) else ():
            self.in_background(self.server_subscribe(client, channel))

    def client_disconnected(self, client: Any) -> None:
        """Cancel every subscription of a client that left."""
        for channel in self.map.channels_of(client):
            self._drop(client, channel)
        for identity in self.users.channels_of(client):
            self.users.remove(client, identity)


class PubSubBackend(RPCService):
    """Backend service of a :class:`PubSubService`: commands ``publish(channel, message)``,
    ``publish_to_user(identity, message)``, ``subscribe_user(identity, channel)`` and
    ``unsubscribe_user(identity, channel)``, each acting on every node.

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

    @rpc_command
    def publish_to_user(self, req: Request, identity: Any, message: Any) -> Any:
        """Send ``message`` to every connection of ``identity`` (see :meth:`PubSubService.publish_to_user`)."""
        return then(self.frontend.publish_to_user(identity, message), lambda _: None)

    @rpc_command
    def subscribe_user(self, req: Request, identity: Any, channel: Any) -> Any:
        """Subscribe every connection of ``identity`` to ``channel`` (see :meth:`PubSubService.subscribe_user`)."""
        return then(self.frontend.subscribe_user(identity, channel), lambda _: None)

    @rpc_command
    def unsubscribe_user(self, req: Request, identity: Any, channel: Any) -> Any:
        """End ``identity``'s subscriptions to ``channel`` (see :meth:`PubSubService.unsubscribe_user`)."""
        return then(self.frontend.unsubscribe_user(identity, channel), lambda _: None)
