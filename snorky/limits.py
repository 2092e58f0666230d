"""Limits on what one client may take: channels, connections, commands, and new connections per address.

A :class:`~snorky.ServiceRegistry` enforces them when it is given a
:class:`LimitsConfig` (``snorky serve`` always gives it one, from the ``[limits]``
section of its configuration); a registry built in Python without one has no
limits, as in Snorky 0.1. Each limit has its own error code or close code:

=============================  =================================================
limit                          what happens past it
=============================  =================================================
``channels_per_connection``    the subscribe (join, ...) is answered
                               ``too_many_channels``; the connection stays open
``connections_per_identity``   the connection is closed at connect with 4005
                               (no reconnection); counted on every node that
                               shares the broker
``commands_per_second``        the command is answered ``too_many_requests``;
                               a connection that keeps sending is closed with
                               4029 (reconnect later, with backoff)
``connections_per_ip``         a WebSocket handshake is answered HTTP 429 with
                               ``Retry-After``; a SockJS session is closed with
                               4029
=============================  =================================================

Each refusal is counted (:attr:`Limiter.hits`, the server's information, and the
``snorky_limits_hit_total`` metric by limit) and logged once per episode.

The command check runs for every message a client sends, so it is a token
bucket of a few arithmetic operations; nothing here runs per delivery.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import itertools
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from snorky.brokers.base import Broker, then
from snorky.errors import RPCError

if TYPE_CHECKING:
    from snorky.metrics import Metrics

__all__ = ["LimitsConfig", "Limiter", "LIMIT_NAMES", "ALLOWED", "HELD", "REFUSED", "CLOSE"]

logger = logging.getLogger(__name__)

LIMIT_NAMES = ("channels_per_connection", "connections_per_identity", "commands_per_second", "connections_per_ip")
"""The limits, by the name they are counted under (metrics label ``limit``, server information)."""

ALLOWED = 0
""":meth:`Limiter.command`: the message goes on (falsy, so that the caller tests one value)."""
HELD = 1
""":meth:`Limiter.command`: the message waits until the connection's identity is admitted (or
is dropped: the connection is being closed)."""
REFUSED = 2
""":meth:`Limiter.command`: the message is answered ``too_many_requests``."""
CLOSE = 3
""":meth:`Limiter.command`: the client kept sending while refused: close it with 4029."""

_CLOSING: list[str | bytes] = []
"""The held messages of a client being closed for its rate: none are kept (never appended to)."""

_IDENTITY_KEY = "snorky.identity:"
"""The broker presence key of an identity's connections is this followed by the identity's JSON."""


@dataclass
class LimitsConfig:
    """Limits on what one connection, identity or address may take (0 turns a limit off)."""

    channels_per_connection: int = 128
    """Channels one connection may be in at once, across every service (PubSub channels,
    Chat channels, Cursors documents, Progress tasks, Messaging names); one more is
    refused with too_many_channels."""
    connections_per_identity: int = 32
    """Connections one identity (a token's sub) may hold at once, on every node sharing
    the broker; one more is closed at connect with 4005. Anonymous connections are not
    counted (see connections_per_second_per_ip)."""
    commands_per_second: float = 100.0
    """Messages per second one connection may send, on average (a token bucket); past
    that and the burst, a message is answered too_many_requests."""
    commands_burst: int = 200
    """Messages one connection may send at once above commands_per_second (the bucket's
    size; a new connection starts with it full)."""
    commands_close_after: int = 200
    """Refused messages a connection may pile up (each one it sends while refused counts,
    and commands_per_second of them are forgiven each second) before it is closed with
    4029; 0: never closed for it."""
    connections_per_second_per_ip: float = 20.0
    """New connections per second from one IP address, on average (a token bucket); past
    that and the burst, a WebSocket handshake gets HTTP 429 and a SockJS session is
    closed with 4029."""
    connections_burst_per_ip: int = 100
    """New connections one IP address may open at once above connections_per_second_per_ip."""
    exempt_addresses: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1"])
    """Addresses and networks (CIDR) whose new connections are never limited: by default
    loopback, where tests, benchmarks and a local proxy that is not trusted connect from."""
    trusted_proxies: list[str] = field(default_factory=list)
    """Addresses and networks (CIDR) of reverse proxies whose X-Forwarded-For (else
    X-Real-IP) header names the client; from any other peer those headers are ignored."""

    def __post_init__(self) -> None:
        for name in ("exempt_addresses", "trusted_proxies"):
            try:
                _networks(getattr(self, name))
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None


def _networks(entries: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for entry in entries:
        if not isinstance(entry, str):
            raise ValueError(f"{entry!r} is not an address or network")
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an address or network (CIDR)") from None
    return tuple(networks)


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


class _Bucket:
    """A token bucket: ``tokens`` at ``stamp`` (the limiter's clock).

    ``held`` is the list of messages waiting for the connection's identity to be
    admitted (``None``: none waits); ``refusing`` is set from the first refusal of an
    episode, so that it is logged once.
    """

    __slots__ = ("tokens", "stamp", "held", "refusing")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp
        self.held: list[str | bytes] | None = None
        self.refusing = False


class Limiter:
    """Enforces a :class:`LimitsConfig` for one registry's clients (its state lives here).

    Args:
        config: the limits.
        broker: where an identity's connections are counted, cluster-wide (presence entries).
        metrics: where refusals are counted (``snorky_limits_hit_total``), if anywhere.
        clock: seconds, for the token buckets (tests drive it).
    """

    def __init__(
        self,
        config: LimitsConfig,
        broker: Broker,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.broker = broker
        self.metrics = metrics
        self.clock = clock
        self.hits: dict[str, int] = dict.fromkeys(LIMIT_NAMES, 0)
        """Limit name -> how many times it refused something here."""
        self._buckets: dict[Any, _Bucket] = {}
        self.reconfigured()
        self._addresses: OrderedDict[str, _Bucket] = OrderedDict()
        self._members: dict[Any, tuple[str, str]] = {}
        self._next_member = itertools.count(1)
        self._background: set[asyncio.Future[Any]] = set()

    def reconfigured(self) -> None:
        """Take :attr:`config` as it is now (a reload changed it): every limit applies from
        the next message, subscribe or connection on. A command rate that was 0 applies to
        the connections opened from then on."""
        config = self.config
        self._rate = float(config.commands_per_second)
        self._burst = float(config.commands_burst)
        self._debt = -float(config.commands_close_after) if config.commands_close_after else -math.inf
        self._exempt = _networks(config.exempt_addresses)
        self._trusted = _networks(config.trusted_proxies)

    def hit(self, limit: str) -> None:
        """Count one refusal by ``limit`` (one of :data:`LIMIT_NAMES`)."""
        self.hits[limit] += 1
        if self.metrics is not None:
            self.metrics.limit_hit(limit)

    # Connections --------------------------------------------------------------------

    def connected(self, client: Any) -> bool | Awaitable[bool]:
        """A client connected: start its command bucket and count it under its identity.

        Returns whether it is admitted: at once, or (on a networked broker) an
        awaitable, during which the client's messages are held (see :meth:`release`).
        """
        if self._rate:
            self._buckets[client] = _Bucket(self._burst, self.clock())
        return self.identified(client)

    def identified(self, client: Any) -> bool | Awaitable[bool]:
        """``client`` has an identity now (at connect, or later with a token): count its
        connection under it; whether it is admitted, as :meth:`connected` returns it."""
        limit = self.config.connections_per_identity
        identity = getattr(client, "identity", None)
        if not limit or identity is None or client in self._members:
            return True
        key = _IDENTITY_KEY + orjson.dumps(identity, option=orjson.OPT_SORT_KEYS).decode()
        member = f"{self.broker.node_id}/{next(self._next_member)}"
        self._members[client] = (key, member)

        def counted(members: dict[str, bytes]) -> bool:
            if len(members) <= limit:
                return True
            self._forget_identity(client)
            self.hit("connections_per_identity")
            logger.warning(
                "! %r refused: %r already has %d connection(s) (connections_per_identity = %d)",
                client,
                identity,
                len(members) - 1,
                limit,
            )
            return False

        added: Any = then(self.broker.presence_add(key, member, b""), lambda _: self.broker.presence_list(key))
        if not inspect.isawaitable(added):
            return counted(added)
        self.hold(client)

        async def decide() -> bool:
            try:
                members: dict[str, bytes] = await added
                return counted(members)
            except Exception as error:  # the broker cannot be reached: admit, and count it once it can
                logger.warning("! could not count the connections of %r (%s): admitted", identity, error)
                return True

        return decide()

    def disconnected(self, client: Any) -> None:
        """A client left: forget its bucket and its connection's count."""
        self._buckets.pop(client, None)
        self._forget_identity(client)

    def _forget_identity(self, client: Any) -> None:
        entry = self._members.pop(client, None)
        if entry is None:
            return
        removed: Any = self.broker.presence_remove(*entry)
        if inspect.isawaitable(removed):
            task: asyncio.Future[Any] = asyncio.ensure_future(removed)
            self._background.add(task)
            task.add_done_callback(self._removed)

    def _removed(self, task: asyncio.Future[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("! could not remove a connection's count: %r", task.exception())

    def hold(self, client: Any) -> None:
        """Keep ``client``'s messages (see :meth:`command`) until :meth:`release`."""
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = _Bucket(self._burst, self.clock())
        if bucket.held is None:
            bucket.held = []

    def release(self, client: Any) -> list[str | bytes]:
        """Stop holding ``client``'s messages; return those held, in order."""
        bucket = self._buckets.get(client)
        if bucket is None or bucket.held is None or bucket.held is _CLOSING:
            return []
        held, bucket.held = bucket.held, None
        if not self._rate:
            del self._buckets[client]
        return held

    # Commands --------------------------------------------------------------------

    def command(self, client: Any, message: str | bytes) -> int:
        """Take a token for one message from ``client``: :data:`ALLOWED` (0), :data:`HELD`,
        :data:`REFUSED` or :data:`CLOSE`.

        Every message counts, refused ones too: a refused message adds to the
        connection's debt (``commands_per_second`` of it is forgiven each second),
        and a connection whose debt reaches ``commands_close_after`` is to be closed.
        """
        bucket = self._buckets.get(client)
        if bucket is None:
            return ALLOWED
        held = bucket.held
        if held is not None:
            if held is not _CLOSING:
                held.append(message)
            return HELD
        now = self.clock()
        tokens = bucket.tokens + (now - bucket.stamp) * self._rate
        if tokens > self._burst:
            tokens = self._burst
        bucket.stamp = now
        tokens -= 1.0
        if tokens >= 0.0:
            bucket.tokens = tokens
            bucket.refusing = False
            return ALLOWED
        if tokens < self._debt:
            bucket.held = _CLOSING  # what it sends until it is gone is dropped
            return CLOSE
        bucket.tokens = tokens
        return REFUSED

    def refusing(self, client: Any) -> bool:
        """Note a refusal of ``client``'s command; whether it is the first of an episode (to log)."""
        self.hit("commands_per_second")
        bucket = self._buckets.get(client)
        if bucket is None or bucket.refusing:
            return False
        bucket.refusing = True
        return True

    # Channels --------------------------------------------------------------------

    def check_channels(self, client: Any, services: Iterable[Any]) -> None:
        """Refuse one more channel for ``client`` if it is in ``channels_per_connection``
        channels already, counted over the channel maps of ``services``.

        Raises:
            RPCError: ``too_many_channels``.
        """
        limit = self.config.channels_per_connection
        if not limit:
            return
        count = 0
        for service in services:
            channel_map = getattr(service, "channel_map", None)
            if channel_map is not None:
                count += len(channel_map.channels.get(client) or ())
        if count >= limit:
            self.hit("channels_per_connection")
            raise RPCError("Too many channels", "too_many_channels")  # logged once, as every refused call

    # Addresses --------------------------------------------------------------------

    def client_address(self, peer: str | None, header: Callable[[str], str | None]) -> str | None:
        """The address of the client behind a connection from ``peer``.

        From a trusted proxy, the last address of ``X-Forwarded-For`` that is not a
        trusted proxy itself (else ``X-Real-IP``); from anyone else, ``peer``.
        ``header(name)`` reads a request header (``None`` when absent).
        """
        if not self._trusted or not self._is(peer, self._trusted):
            return peer
        forwarded = header("X-Forwarded-For")
        if forwarded:
            hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
            for hop in reversed(hops):
                if _address(hop) is None:
                    return peer  # garbage: trust nothing from here on
                if not self._is(hop, self._trusted):
                    return hop
            if hops:
                return hops[0]  # every hop is a trusted proxy
        real = header("X-Real-IP")
        if real and _address(real) is not None:
            return real.strip()
        return peer

    @staticmethod
    def _is(text: str | None, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
        address = _address(text)
        if address is None:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in networks)

    def new_connection(self, address: str | None) -> float:
        """Take a token for a new connection from ``address``; 0 when admitted, else the
        seconds until one would be (for ``Retry-After``)."""
        rate = float(self.config.connections_per_second_per_ip)
        if not rate or address is None or self._is(address, self._exempt):
            return 0.0
        burst = float(self.config.connections_burst_per_ip)
        now = self.clock()
        buckets = self._addresses
        bucket = buckets.get(address)
        if bucket is None:
            bucket = buckets[address] = _Bucket(burst, now)
        else:
            buckets.move_to_end(address)
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.stamp) * rate)
            bucket.stamp = now
        # Addresses whose bucket would be full again are as good as new: forget them,
        # oldest first, so that the table holds only the addresses of the last moments.
        full_after = burst / rate
        while buckets:
            oldest = next(iter(buckets.values()))
            if now - oldest.stamp < full_after or oldest is bucket:
                break
            buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            bucket.refusing = False
            return 0.0
        self.hit("connections_per_ip")
        if not bucket.refusing:
            bucket.refusing = True
            logger.warning(
                "! new connections from %s refused: over %g per second (connections_per_second_per_ip)", address, rate
            )
        return (1.0 - bucket.tokens) / rate
