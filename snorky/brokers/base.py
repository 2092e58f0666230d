"""The Broker contract: the one seam every fan-out goes through.

A service never loops over another node's clients. It *subscribes* its node to a
topic while at least one of its local clients is interested, and *publishes* an
:class:`~snorky.protocol.Outbound` to a topic; the broker hands it to every
handler subscribed to that topic, on every node that shares the broker. The
in-memory broker does this synchronously inside ``publish``; a networked broker
does it when the message comes back from the network, so services must not
assume either.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar, overload

import orjson

from snorky.errors import BrokerUnavailable
from snorky.histogram import Histogram
from snorky.protocol import Outbound

__all__ = [
    "Broker",
    "GapHandler",
    "Handler",
    "History",
    "HistoryResult",
    "MaybeAwaitable",
    "PresenceHandler",
    "or_undo",
    "settled",
    "then",
    "topic_for",
    "with_position",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
MaybeAwaitable: TypeAlias = T | Awaitable[T]
"""What broker queries return: the value itself (in-memory broker) or an awaitable
(networked brokers). Services combine them with :func:`then`, so that on one node
a command still answers before it returns, as in Snorky 0.1."""


# An awaitable result stays an awaitable; a value (or a union of both, as a broker's
# result is typed) gives either. Without the first overload, mypy cannot tell T from
# Awaitable[T] in an argument that is only an awaitable.
@overload
def then(result: Awaitable[T], callback: Callable[[T], R]) -> Awaitable[R]: ...
@overload
def then(result: MaybeAwaitable[T], callback: Callable[[T], R]) -> MaybeAwaitable[R]: ...
def then(result: MaybeAwaitable[T], callback: Callable[[T], R]) -> MaybeAwaitable[R]:
    """Apply ``callback`` to a broker result now if it is a value, or once it is awaited."""
    if inspect.isawaitable(result):
        awaitable = result

        async def later() -> R:
            value: Any = callback(await awaitable)
            while inspect.isawaitable(value):  # a callback may itself ask the broker
                value = await value
            return value  # type: ignore[no-any-return]

        return later()
    return callback(result)


@overload
def or_undo(result: Awaitable[T], undo: Callable[[], None]) -> Awaitable[T]: ...
@overload
def or_undo(result: MaybeAwaitable[T], undo: Callable[[], None]) -> MaybeAwaitable[T]: ...
def or_undo(result: Any, undo: Callable[[], None]) -> Any:  # mypy checks the overloads' types
    """``result``, but if it is an awaitable that fails, ``undo()`` runs before the error goes on.

    A command that changed state before asking the broker uses it to roll the change
    back when the broker fails, so that the caller can simply try again.
    """
    if not inspect.isawaitable(result):
        return result
    awaitable = result

    async def checked() -> Any:
        try:
            return await awaitable
        except Exception:
            undo()
            raise

    return checked()


def settled(result: Any, within: float) -> Any:
    """``None`` once ``result`` is done, or after ``within`` seconds if it is not.

    For commands that remove something (a chat ``leave``): the change is made on
    this node at once and the broker finishes its part even across an outage (the
    departure is announced then), so the command answers ``ok`` within the
    broker's timeout either way, and the caller never retries what already happened.
    """
    if not inspect.isawaitable(result):
        return None
    task = asyncio.ensure_future(result)

    def retrieve(done: asyncio.Future[Any]) -> None:
        if not done.cancelled() and done.exception() is not None:
            logger.error("! could not finish a removal: %r", done.exception())

    task.add_done_callback(retrieve)

    async def wait() -> None:
        try:
            await asyncio.wait_for(asyncio.shield(task), within)
        except (asyncio.TimeoutError, BrokerUnavailable):
            pass

    return wait()


@dataclass(frozen=True)
class History:
    """How a topic keeps its recent messages: the last ``size`` for ``ttl`` seconds."""

    size: int = 100
    ttl: float = 300.0


@dataclass
class HistoryResult:
    """A topic's position and, when asked, the messages after a given offset.

    Attributes:
        offset: the offset of the newest message (0 before the first one).
        epoch: identifies this stream; it changes when a stream is lost or restarted,
            and offsets from another epoch mean nothing.
        recovered: whether every message after the asked offset was still kept.
        publications: those messages' JSON, oldest first (empty if not recovered).
    """

    offset: int
    epoch: str
    recovered: bool = False
    publications: list[bytes] = field(default_factory=list)


def with_position(out: Outbound, offset: int, epoch: str) -> bytes:
    """The JSON of ``out`` with ``"offset"`` and ``"epoch"`` added to its message.

    ``out`` must be an envelope whose last key is an object ``message`` (every
    service builds them so), so the fields are spliced into the encoded bytes
    without decoding them; a networked broker's script can do the same.
    """
    data = out.json
    if not data.endswith(b"}}"):
        raise ValueError("a message kept in history must be an object at the end of its envelope")
    return b'%s,"offset":%d,"epoch":"%s"}}' % (data[:-2], offset, epoch.encode())


Handler = Callable[[str, Outbound], None]
"""A topic handler: ``handler(topic, outbound)``."""

GapHandler = Callable[[str, int], None]
"""Told ``(topic, count)`` when this node could not deliver ``count`` messages of a topic
(it was not listening, and no history stream still had them)."""

PresenceHandler = Callable[[str, dict[str, bytes], dict[str, bytes]], None]
"""Told ``(key, entries, remaining)`` about presence entries that expired or came back."""


def topic_for(service_name: str, channel: Any) -> str:
    """Return the broker topic for a service's channel.

    Channels may be any JSON value (a string or an object); the topic holds its
    canonical JSON (sorted keys), so equal channels share a topic on every node.
    """
    return service_name + ":" + orjson.dumps(channel, option=orjson.OPT_SORT_KEYS).decode()


class Broker(ABC):
    """Moves outbound messages from publishers to topic handlers on every node."""

    @abstractmethod
    def subscribe(self, topic: str, handler: Handler, on_gap: GapHandler | None = None) -> MaybeAwaitable[None]:
        """Call ``handler`` for every message later published to ``topic``.

        Subscribing the same handler twice to a topic has no further effect. A
        networked broker returns an awaitable that resolves once the subscription
        is in effect everywhere (publishes made after that reach the handler).

        A networked broker that lost messages of ``topic`` for this node (it was
        cut off from the others and no history stream still had them) calls
        ``on_gap(topic, count)`` instead: the service tells its clients.

        .. versionchanged:: 0.2
           ``on_gap``.
        """

    @abstractmethod
    def unsubscribe(self, topic: str, handler: Handler) -> None:
        """Stop calling ``handler`` for ``topic`` (no error if it was not subscribed)."""

    @abstractmethod
    def publish(self, topic: str, out: Outbound, history: History | None = None) -> MaybeAwaitable[None]:
        """Hand ``out`` to every handler subscribed to ``topic``, on every node, once.

        A networked broker may return an awaitable that is done once the message
        is on its way to every node; a publisher answered after it stays ahead of
        anything published later, on any node. Awaiting it raises
        :class:`~snorky.errors.BrokerUnavailable` when the message was not
        accepted (it will not be delivered).


        With ``history``, the message is also kept in the topic's stream: it is
        given the next offset and the stream's epoch (see :func:`with_position`),
        and handlers receive it with them.
        """

    @abstractmethod
    def history(
        self, topic: str, since: tuple[int, str] | None = None, ttl: float = 300.0
    ) -> MaybeAwaitable[HistoryResult]:
        """The position of ``topic``'s stream and, given ``since = (offset, epoch)``,
        the messages after ``offset`` if the stream still has them all.

        Reading keeps the stream (and its epoch) alive for another ``ttl`` seconds,
        so that a subscriber of a quiet channel can recover later."""

    # Presence: who is in a channel, on every node ------------------------------------

    node_id: str = "local"
    """This node's id; presence members are ``"<node_id>/<local id>"``."""

    timeout: float = 5.0
    """Seconds a command may wait for a networked broker before it answers anyway."""

    @abstractmethod
    def presence_add(
        self, key: str, member: str, info: bytes, ttl: float = 30.0, only_if_absent: bool = False
    ) -> MaybeAwaitable[bool]:
        """Add ``member`` (with ``info``) to the presence set ``key``; whether it was added.

        The entry belongs to this node until :meth:`presence_remove`: the broker
        refreshes it, and it expires ``ttl`` seconds after its node stops (see
        :meth:`watch_presence`). With ``only_if_absent``, a member already there
        (and alive) is left alone and ``False`` returned: an atomic claim, for
        names unique in the cluster.
        """

    @abstractmethod
    def presence_remove(self, key: str, member: str) -> MaybeAwaitable[bool]:
        """Remove ``member`` from ``key``; whether its departure is the caller's to report.

        That is whether it was there; a networked broker also answers ``True`` when
        Redis lost the entry (a restart), and ``False`` when the entry had expired
        and was reported by whoever removed it (see :meth:`watch_presence`). A
        networked broker finishes a removal even across an outage: its awaitable may
        take that long.
        """

    @abstractmethod
    def presence_list(self, key: str) -> MaybeAwaitable[dict[str, bytes]]:
        """The live members of ``key`` and their info."""

    def presence_count(self, key: str) -> MaybeAwaitable[int]:
        """How many live members ``key`` has (a networked broker counts them where they are)."""
        return then(self.presence_list(key), len)

    def watch_presence(  # noqa: B027 - optional: only networked brokers have nodes that die
        self, key: str, on_expired: PresenceHandler | None, on_restored: PresenceHandler | None = None
    ) -> None:
        """Call ``on_expired(key, expired, remaining)`` when entries of ``key`` expire (their node died).

        ``expired`` and ``remaining`` map members to their info; each expired entry
        is reported once, on one node. A node that was paused longer than the
        entries live finds its own entries expired when it resumes: it writes them
        again and calls ``on_restored(key, restored, {})``. ``None`` stops watching.
        The in-memory broker has no other nodes, so nothing ever expires there.

        .. versionchanged:: 0.2
           ``on_restored``.
        """

    # Key-value entries with expiry -----------------------------------------------------

    @abstractmethod
    def kv_set(
        self, key: str, value: bytes, ttl: float | None = None, only_if_absent: bool = False
    ) -> MaybeAwaitable[bool]:
        """Set ``key``; with ``only_if_absent``, only if it is not set (then: whether it was set)."""

    @abstractmethod
    def kv_get(self, key: str) -> MaybeAwaitable[bytes | None]:
        """The value of ``key``, or ``None``."""

    @abstractmethod
    def kv_delete(self, key: str) -> MaybeAwaitable[bool]:
        """Delete ``key``; whether it existed (so exactly one caller can claim a key)."""

    # Nodes ----------------------------------------------------------------------------

    def nodes(self) -> MaybeAwaitable[list[str]]:
        """The ids of the live nodes sharing this broker."""
        return [self.node_id]

    def stats(self) -> dict[str, Any]:
        """Counters for the status page and server info."""
        return {}

    @property
    def publish_latency(self) -> Histogram | None:
        """How long publishes waited for the broker's acknowledgement, in seconds (a
        networked broker's; ``None`` where a publish is done when it returns)."""
        return None

    @property
    def reachable(self) -> bool:
        """Whether the broker can carry messages now (a networked broker may be cut off)."""
        return bool(self.stats().get("connected", True))

    async def start(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Connect (networked brokers); the in-memory broker has nothing to do."""

    async def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Disconnect and release resources."""
