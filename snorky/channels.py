"""ChannelMap: one mechanism for every service's channels on this node.

PubSub's channels, Chat's channels (and its read-receipt topics), Cursors'
documents and Progress' tasks are all the same thing underneath: a channel has
local clients; the node listens to the channel's broker topic while it has at
least one; a message from the topic goes to those clients, encoded once for
all; a gap in the topic is pushed to them. A :class:`ChannelMap` does all of it,
so that membership, cleanup, limits and metrics are written once.

Each client of a map also gets a *member id* (``"<node>/<n>"``) while it is in
any of the map's channels: the name of its presence entries in the broker.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from snorky.brokers.base import Broker, MaybeAwaitable, topic_for
from snorky.protocol import Outbound
from snorky.types import MultiDict

__all__ = ["ChannelMap", "Owner"]


class Owner(Protocol):
    """What a map needs of the service that owns it (a
    :class:`~snorky.services.service.Service` is one), so that the map, below the
    services, knows none of them."""

    @property
    def name(self) -> str: ...

    @property
    def broker(self) -> Broker: ...

    @property
    def registry(self) -> Any:
        """The registry the owner is in (its limiter counts channels), or ``None``."""

    @property
    def channel_map(self) -> Any:
        """The map the owner shows as its channels (the one the limits count)."""

    def outbound(self, msg: Any, exclude: Any = None) -> Outbound: ...

    def deliver_many(self, clients: Iterable[Any], out: Outbound) -> None: ...


class ChannelMap:
    """The channels of one service on this node.

    Args:
        service: the owner: its broker carries the topics, its envelope wraps the
            pushes, its metrics count the fan-outs.
        prefix: the namespace of the topics (default: the service's name).
        field: the name of the channel in the pushes this map sends itself
            (``{"type": "gap", field: channel, "missed": n}``).
        gaps: whether a gap in a topic is pushed to the channel's clients.
        on_message: called as ``on_message(channel, out)`` before a message from
            the broker is fanned out (Chat keeps its history there); when it
            returns true, the message was for the service, not the clients.
    """

    def __init__(
        self,
        service: Owner,
        prefix: str | None = None,
        *,
        field: str = "channel",
        gaps: bool = True,
        on_message: Callable[[Any, Outbound], bool | None] | None = None,
    ) -> None:
        self.service = service
        self.prefix = service.name if prefix is None else prefix
        self.field = field
        self.gaps = gaps
        self.on_message = on_message
        self.clients = MultiDict()
        """Channel -> the local clients in it."""
        self.channels = MultiDict()
        """Client -> the channels it is in."""
        self._by_topic: dict[str, Any] = {}
        self._member_ids: dict[Any, str] = {}
        self._next_member = itertools.count(1)

    # Naming --------------------------------------------------------------------

    def topic(self, channel: Any) -> str:
        """The broker topic of ``channel``."""
        return topic_for(self.prefix, channel)

    def channel_of(self, topic: str) -> Any:
        """The channel of a topic this node listens to, else ``None``."""
        return self._by_topic.get(topic)

    def member_id(self, client: Any) -> str:
        """``client``'s member id (its presence entries' name), kept while it is in a channel."""
        member = self._member_ids.get(client)
        if member is None:
            member = self._member_ids[client] = f"{self.service.broker.node_id}/{next(self._next_member)}"
        return member

    def known_member(self, client: Any) -> str | None:
        """``client``'s member id if it has one, without making one."""
        return self._member_ids.get(client)

    # Membership ----------------------------------------------------------------

    def has(self, client: Any, channel: Any) -> bool:
        """Whether ``client`` is in ``channel``."""
        return self.clients.in_set(channel, client)

    def add(self, client: Any, channel: Any, *, limited: bool = True) -> MaybeAwaitable[None]:
        """Put ``client`` in ``channel``, listening to its topic if it is new here.

        Returns the broker's answer to the subscription: on a networked broker, an
        awaitable done once every message published to the channel reaches this
        node (a reply sent after it promises the client every later message).

        The map a service shows as its :attr:`~snorky.services.service.Service.channel_map`
        counts toward the registry's ``channels_per_connection`` limit, if it has one;
        nothing changes when the limit refuses the channel. ``limited=False`` (a
        subscription the server decided) is counted but never refused.

        Raises:
            RPCError: ``too_many_channels``.
        """
        registry = self.service.registry
        if limited and registry is not None and registry.limiter is not None and self.service.channel_map is self:
            if not self.clients.in_set(channel, client):
                registry.limiter.check_channels(client, registry.registered_services.values())
        topic = self.topic(channel)
        if channel not in self.clients:
            self._by_topic[topic] = channel
        ready = self.service.broker.subscribe(topic, self._message, self._gap if self.gaps else None)
        self.clients.add(channel, client)
        self.channels.add(client, channel)
        return ready

    def listening(self, channel: Any) -> MaybeAwaitable[None]:
        """Done once this node receives every message of ``channel``'s topic (call it while
        the channel has local clients here: it does not add a subscription of its own)."""
        if channel not in self.clients:
            raise KeyError(channel)
        return self.service.broker.subscribe(self.topic(channel), self._message, self._gap if self.gaps else None)

    def remove(self, client: Any, channel: Any) -> bool:
        """Take ``client`` out of ``channel``; return whether the channel has no one left here.

        The node stops listening to an emptied channel's topic. ``client``'s member id
        is forgotten with its last channel.

        Raises:
            KeyError: ``client`` is not in ``channel``.
        """
        self.clients.remove(channel, client)
        self.channels.remove(client, channel)
        if client not in self.channels:
            self._member_ids.pop(client, None)
        if channel in self.clients:
            return False
        topic = self.topic(channel)
        self._by_topic.pop(topic, None)
        self.service.broker.unsubscribe(topic, self._message)
        return True

    def channels_of(self, client: Any) -> list[Any]:
        """The channels ``client`` is in (a copy: safe to remove while iterating)."""
        return list(self.channels.get_set(client))

    def clients_of(self, channel: Any) -> set[Any]:
        """The local clients in ``channel`` (do not modify it)."""
        return self.clients.get_set(channel)

    def channel_count(self) -> int:
        """How many channels have local clients."""
        return len(self.clients)

    def subscription_count(self) -> int:
        """How many (client, channel) memberships there are here."""
        return sum(len(clients) for clients in self.clients.values())

    def counts(self) -> dict[Any, int]:
        """Channel -> how many local clients it has."""
        return {channel: len(clients) for channel, clients in self.clients.items()}

    # Delivery ------------------------------------------------------------------

    def deliver(self, channel: Any, out: Outbound) -> None:
        """Send ``out`` to the local clients of ``channel`` (but ``out.exclude``), encoded once."""
        clients = self.clients.get(channel)
        if clients:
            self.send(clients, out)

    def send(self, clients: Iterable[Any], out: Outbound) -> None:
        """Fan ``out`` out to ``clients``, counted once in the service's metrics."""
        self.service.deliver_many(clients, out)

    def _message(self, topic: str, out: Outbound) -> None:
        channel = self._by_topic.get(topic)
        if channel is None:
            return
        clients = self.clients.get(channel)
        if not clients:
            return
        if self.on_message is not None and self.on_message(channel, out):
            return
        self.send(clients, out)

    def _gap(self, topic: str, count: int) -> None:
        """This node missed ``count`` messages of a topic: tell the channel's clients here."""
        channel = self._by_topic.get(topic)
        if channel is not None:
            self.deliver(channel, self.service.outbound({"type": "gap", self.field: channel, "missed": count}))
