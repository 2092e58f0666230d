"""RedisBroker: the facade that composes the parts of a node's broker.

:class:`~snorky.brokers.redis.link.Link` (the connection, scripts and outages),
:class:`~snorky.brokers.redis.publisher.Publisher`,
:class:`~snorky.brokers.redis.subscriber.Subscriber`,
:class:`~snorky.brokers.redis.presence.Presence` and
:class:`~snorky.brokers.redis.heartbeat.Heartbeat`; it also ends an outage, which
needs them all.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable
from typing import Any

from redis.exceptions import ResponseError

from snorky.brokers.base import Broker, GapHandler, Handler, History, HistoryResult, PresenceHandler
from snorky.brokers.redis.heartbeat import Heartbeat
from snorky.brokers.redis.link import CONNECTION_ERRORS, Link, safe_url
from snorky.brokers.redis.presence import Presence
from snorky.brokers.redis.publisher import Outbox, Publisher, Refused
from snorky.brokers.redis.subscriber import Confirmation, Subscriber
from snorky.errors import BrokerUnavailable
from snorky.histogram import Histogram
from snorky.protocol import Outbound

__all__ = ["RedisBroker"]

logger = logging.getLogger("snorky.brokers.redis")


class RedisBroker(Broker):
    """A broker on Redis (standalone or Sentinel), shared by every node of a cluster.

    Args:
        url: ``redis://[:password@]host:port/db`` or, for Sentinel,
            ``redis+sentinel://[:password@]host:port[,host:port...]/service_name[/db]``.
        prefix: prefix of every Redis key and channel (several clusters can share a Redis).
        node_id: this node's id (default: host name, process id and random bits).
        heartbeat: seconds between heartbeats (node liveness, presence refresh,
            subscription check).
        node_ttl: seconds after which a node that stopped heartbeating counts as dead.
        presence_ttl: seconds after which presence entries that are no longer
            refreshed (their node died) expire.
        max_pending: publishes kept while Redis is unreachable; a publish beyond
            that is refused (:class:`~snorky.errors.BrokerUnavailable`, counted as
            ``dropped``).
        reconnect_min, reconnect_max: bounds of the reconnection backoff, in seconds.
        timeout: seconds a command waits for Redis before answering ``unavailable``,
            and the longest a publish waits for its answer.
        counter_ttl: seconds a topic without history keeps its message counter after
            its last publish (the counter is how nodes count what they missed).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "snorky",
        node_id: str | None = None,
        heartbeat: float = 1.0,
        node_ttl: float = 10.0,
        presence_ttl: float = 30.0,
        max_pending: int = 100_000,
        reconnect_min: float = 0.05,
        reconnect_max: float = 5.0,
        timeout: float = 5.0,
        counter_ttl: float = 3600.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.node_id = node_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.heartbeat = heartbeat
        self.node_ttl = node_ttl
        self.presence_ttl = presence_ttl
        self.max_pending = max_pending
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.timeout = timeout
        self.counter_ttl = counter_ttl
        self.incarnation = f"{self.node_id}:{secrets.token_hex(4)}"
        """This process's run of the node: publish ids and presence tokens are unique to it."""

        self._link = Link(
            url,
            prefix=prefix,
            node_id=self.node_id,
            incarnation=self.incarnation,
            heartbeat=heartbeat,
            timeout=timeout,
            reconnect_min=reconnect_min,
            reconnect_max=reconnect_max,
        )
        # Tagged publishes (by sequence number) -> the local client to skip when they come back.
        excluded: OrderedDict[int, Any] = OrderedDict()
        self._publisher = Publisher(self._link, excluded, max_pending, counter_ttl)
        self._subscriber = Subscriber(self._link, excluded, on_settled=self._maybe_recovered)
        self._presence = Presence(self._link, presence_ttl)
        self._heartbeat = Heartbeat(self._link, self._subscriber, self._presence, node_ttl, presence_ttl)
        self.handlers = self._subscriber.handlers
        self._tasks: list[asyncio.Task[Any]] = []
        self._recovering = False

    @property
    def _outbox(self) -> Outbox:
        return self._publisher.outbox

    @property
    def publish_latency(self) -> Histogram:
        return self._publisher.outbox.latency

    @property
    def _heartbeats(self) -> int:
        return self._heartbeat.count

    # Lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, and start the subscriber, writer and heartbeat tasks."""
        self._link.connect()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._subscriber.run(), name="snorky-redis-subscriber"),
            loop.create_task(self._publisher.run(), name="snorky-redis-writer"),
            loop.create_task(self._heartbeat.run(), name="snorky-redis-heartbeat"),
        ]
        logger.info("= Redis broker node %s on %s", self.node_id, safe_url(self.url))

    async def close(self) -> None:
        """Send what is queued (briefly), stop the tasks, remove this node's presence and liveness."""
        link = self._link
        if self._outbox and not link.outage.down and link.started:
            deadline = time.monotonic() + min(self.timeout, 2.0)
            while self._outbox and time.monotonic() < deadline and not link.outage.down:
                await asyncio.sleep(0.01)
        link.closing = True
        for task in [*self._tasks, *link.side_tasks]:
            task.cancel()
        self._presence.ledger.cancel()
        for task in [*self._tasks, *link.side_tasks]:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []
        self._outbox.close()
        self._subscriber.close()
        try:
            pipe = link.client.pipeline(transaction=False)
            self._presence.queue_removals(pipe)
            pipe.zrem(f"{self.prefix}:nodes", self.node_id)
            pipe.zrem(f"{self.prefix}:listening", self.node_id)
            await asyncio.wait_for(link.run_scripts(pipe), 2)
        except (*CONNECTION_ERRORS, ResponseError):
            pass  # shutting down: the entries expire by themselves
        await link.disconnect()

    # Messages -----------------------------------------------------------------------

    def publish(
        self, topic: str, out: Outbound, history: History | None = None
    ) -> asyncio.Future[None] | Refused | None:
        """Queue ``out`` for Redis and return what to await for the answer.

        While Redis is reachable, a future done once Redis has the message (or
        ``timeout`` seconds later, the message still queued): answering a publisher
        after it keeps causally ordered publishes in order across nodes. During an
        outage ``None`` (the message is queued and sent when Redis is back). When
        the queue is full, an awaitable that raises
        :class:`~snorky.errors.BrokerUnavailable`: the message is not sent.
        """
        return self._publisher.publish(topic, out, history, local=topic in self.handlers)

    def subscribe(self, topic: str, handler: Handler, on_gap: GapHandler | None = None) -> Confirmation | None:
        """Subscribe; returns an awaitable done when Redis confirmed it (``None`` if it already had)."""
        return self._subscriber.subscribe(topic, handler, on_gap)

    def unsubscribe(self, topic: str, handler: Handler) -> None:
        self._subscriber.unsubscribe(topic, handler)

    async def history(self, topic: str, since: tuple[int, str] | None = None, ttl: float = 300.0) -> HistoryResult:
        return await self._subscriber.history(topic, since, ttl)

    # Outages ------------------------------------------------------------------------

    def _maybe_recovered(self) -> None:
        """End the outage once this node hears itself on a subscription that covers every
        topic, has settled them all, and has written its presence entries again."""
        if self._link.outage.down and not self._recovering and self._subscriber.settled_everything():
            self._recovering = True
            self._link.background(self._recover())

    async def _recover(self) -> None:
        link = self._link
        try:
            # Entries Redis lost (a restart) or removed as expired (this node was paused)
            # come back before the outage is over.
            pipe = link.client.pipeline(transaction=False)
            refreshed = self._presence.queue_refresh(pipe, time.time())
            if refreshed:
                self._presence.refreshed(refreshed, await self._presence.run_refresh(pipe))
        except (*CONNECTION_ERRORS, ResponseError, BrokerUnavailable):
            return  # still unreachable: the next message to itself tries again
        finally:
            self._recovering = False
        if link.outage.down and self._subscriber.settled_everything():
            link.outage.end()
            link.back.set()
            link.wake.set()

    # Presence -----------------------------------------------------------------------

    def presence_add(
        self, key: str, member: str, info: bytes, ttl: float = 30.0, only_if_absent: bool = False
    ) -> asyncio.Task[bool]:
        """Own ``member`` of ``key`` from now on and write it; a task telling whether it was added.

        The entry is this node's until :meth:`presence_remove`: if the write fails (Redis
        unreachable, :class:`~snorky.errors.BrokerUnavailable`), the next refresh makes it.
        """
        return self._presence.add(key, member, info, only_if_absent)

    def presence_remove(self, key: str, member: str) -> Awaitable[bool]:
        """Stop owning ``member`` of ``key`` and remove it, once Redis answers (through outages).

        The task's result: whether the departure is the caller's to report (``True``:
        this call removed the entry, or Redis had lost it in a restart), not
        (``False``: it was removed as expired, and reported then, or it was not this
        node's).
        """
        return self._presence.remove(key, member)

    async def presence_list(self, key: str) -> dict[str, bytes]:
        return await self._presence.members(key)

    async def presence_count(self, key: str) -> int:
        return await self._presence.count(key)

    def watch_presence(
        self, key: str, on_expired: PresenceHandler | None, on_restored: PresenceHandler | None = None
    ) -> None:
        self._presence.watch(key, on_expired, on_restored)

    # Key-value ----------------------------------------------------------------------

    async def kv_set(self, key: str, value: bytes, ttl: float | None = None, only_if_absent: bool = False) -> bool:
        result = await self._link.query(
            lambda: self._link.client.set(
                f"{self.prefix}:kv:{key}", value, px=None if ttl is None else int(ttl * 1000), nx=only_if_absent
            )
        )
        return bool(result)

    async def kv_get(self, key: str) -> bytes | None:
        value: bytes | None = await self._link.query(lambda: self._link.client.get(f"{self.prefix}:kv:{key}"))
        return value

    async def kv_delete(self, key: str) -> bool:
        return bool(await self._link.query(lambda: self._link.client.delete(f"{self.prefix}:kv:{key}")))

    # Nodes and stats ----------------------------------------------------------------

    async def nodes(self) -> list[str]:
        alive = await self._link.query(
            lambda: self._link.client.zrangebyscore(f"{self.prefix}:nodes", time.time() - self.node_ttl, "+inf")
        )
        return sorted(node.decode() for node in alive)

    def stats(self) -> dict[str, Any]:
        return {
            "kind": "redis",
            "node": self.node_id,
            "topics": len(self.handlers),
            "pending": len(self._outbox),
            "peers": len(self._link.peers),
            "connected": not self._link.outage.down and self._subscriber.pubsub is not None,
            **self._link.counters,
        }
