"""Service: the base every Snorky service is built on (see :mod:`snorky.services.base`).

A service receives decoded messages from clients and sends messages back, each
wrapped in its envelope; fan-outs go through its broker.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Iterable, Sized
from typing import TYPE_CHECKING, Any, Protocol

from snorky.client import deliver, fan_out
from snorky.errors import BrokerUnavailable
from snorky.protocol import Outbound

if TYPE_CHECKING:
    from snorky.brokers.base import Broker
    from snorky.channels import ChannelMap
    from snorky.histogram import Timings
    from snorky.limits import Limiter
    from snorky.metrics import Metrics

__all__ = ["Service", "Registry"]

logger = logging.getLogger(__name__)


class Registry(Protocol):
    """What a service sees of the :class:`~snorky.ServiceRegistry` it is registered in.

    (Services do not import the registry: it sits above them and imports them.)
    """

    broker: Broker
    registered_services: dict[str, Service]
    clients: set[Any]
    metrics: Metrics | None
    limiter: Limiter | None
    auth_service: Any

    def identified(self, client: Any) -> bool | Awaitable[bool]:
        """Whether ``client``, which gained an identity after it connected, may keep it."""
        ...


class Service:
    """Base of every service: a name, and messages in and out.

    Subclass it and override :meth:`process_message_from` for a free-form
    protocol, or subclass :class:`RPCService` for commands.

    Args:
        name: the name clients address in the envelope's ``service`` field.
    """

    registry: Registry | None = None
    """The registry this service was registered in, if any."""
    _broker: Broker | None = None
    _broker_is_private = False
    command_timings: Timings | None = None
    """Where the latencies of this service's successful commands go: its share of the
    registry's metrics, set when it is registered (``None``: not timed)."""
    channel_map: ChannelMap | None = None
    """The service's channels on this node, for a service that has channels (its
    counts reach the server's information, metrics and admin page)."""

    def __init__(self, name: str) -> None:
        self.name = name
        """The name clients use to address this service."""
        self.registry = None
        self._broker: Broker | None = None

    @property
    def broker(self) -> Broker:
        """The broker fan-outs go through: the registry's, or a private in-memory one.

        A service used before it is registered gets a private in-memory broker;
        registering it later moves its topic subscriptions to the registry's.
        """
        if self._broker is None:
            from snorky.brokers.memory import MemoryBroker

            self._broker = MemoryBroker()
            self._broker_is_private = True
        return self._broker

    @broker.setter
    def broker(self, broker: Broker) -> None:
        old = self._broker
        self._broker = broker
        if self._broker_is_private and old is not None and old is not broker:
            for topic, handlers in list(getattr(old, "handlers", {}).items()):
                for handler in handlers:
                    broker.subscribe(topic, handler)
        self._broker_is_private = False

    def attach_to(self, registry: Registry) -> None:
        """Become part of ``registry`` (called by :meth:`ServiceRegistry.register_service
        <snorky.ServiceRegistry.register_service>`).

        The service takes the registry's broker unless it was given one of its own,
        then :meth:`registered` is called.
        """
        self.registry = registry
        if self._broker is None or self._broker_is_private:
            self.broker = registry.broker
        metrics = registry.metrics
        self.command_timings = metrics.timings_for(self.name) if metrics is not None else None
        self.registered(registry)

    def registered(self, registry: Registry) -> None:
        """Called once the service is registered (its :attr:`broker` is the registry's)."""

    def process_message_from(self, client: Any, msg: Any) -> None:
        """Handle one decoded (hashable) message from ``client``."""
        raise NotImplementedError

    def in_background(self, result: Any) -> None:
        """Let a broker result finish on its own (awaitables become tasks whose errors are logged)."""
        if not inspect.isawaitable(result):
            return

        async def run() -> None:
            try:
                await result
            except BrokerUnavailable:
                # Expected while Redis is unreachable: the broker logs the outage once, and
                # redoes what it owns (presence) when Redis is back.
                logger.debug("! background work of %r waits for the broker", self)
            except Exception:
                logger.exception("! background work of %r failed", self)

        task = asyncio.ensure_future(run())
        background = self.__dict__.setdefault("_background", set())
        background.add(task)
        task.add_done_callback(background.discard)

    def outbound(self, msg: Any, exclude: Any = None) -> Outbound:
        """Wrap ``msg`` in this service's envelope, ready to send to many clients.

        ``exclude`` names a local client that must not receive it (the sender).
        """
        return Outbound({"service": self.name, "message": msg}, exclude=exclude)

    def send_message_to(self, client: Any, msg: Any) -> None:
        """Send ``msg`` to one client inside this service's envelope."""
        deliver(client, Outbound({"service": self.name, "message": msg}))

    def deliver(self, client: Any, out: Outbound) -> None:
        """Send an already wrapped message to one client (0.1's ``send(dict)`` clients too)."""
        deliver(client, out)

    def deliver_many(self, clients: Iterable[Any], out: Outbound) -> None:
        """Send one wrapped message to many local clients, encoded once for all.

        ``out.exclude``, if set, is skipped. It is counted once in the metrics (with
        its number of recipients), never once per recipient.
        """
        fan_out(clients, out)
        metrics = self.metrics
        if metrics is not None:
            count = len(clients) if isinstance(clients, Sized) else 0
            if count and out.exclude is not None and out.exclude in clients:
                count -= 1
            metrics.fanout(self.name, count, len(out.json))

    @property
    def metrics(self) -> Metrics | None:
        """Where this service's messages are counted: its registry's metrics, if any."""
        registry = self.registry
        return registry.metrics if registry is not None else None

    def channel_count(self) -> int | None:
        """How many channels have local clients (``None``: the service has no channels)."""
        return self.channel_map.channel_count() if self.channel_map is not None else None

    def subscription_count(self) -> int | None:
        """How many (client, channel) memberships there are here (``None``: no channels)."""
        return self.channel_map.subscription_count() if self.channel_map is not None else None

    def stats(self) -> dict[str, Any] | None:
        """The service's own counters for server control's ``info`` (``None``: it has none)."""
        return None

    def client_connected(self, client: Any) -> None:
        """Called when a client connects to this service's registry (not for backend HTTP)."""

    def client_identified(self, client: Any) -> None:
        """Called when a connected client proves an identity (``client.identity``) by a
        command; one identified at connect is told by :meth:`client_connected` alone."""

    def client_disconnected(self, client: Any) -> None:
        """Called when a client disconnects; release everything it held."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
