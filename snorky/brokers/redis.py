"""RedisBroker: several Snorky processes behind a load balancer behave as one server.

Install with ``pip install snorky[redis]`` and configure ``broker = "redis://host:6379/0"``
(or ``redis+sentinel://host:26379/mymaster``). Every node publishes to Redis
and every node subscribed to a topic receives it, in the order Redis received
the publishes. History streams, presence and key-value entries live in Redis.

Failures are part of the design:

- publishes are queued while Redis is unreachable and sent when it returns
  (the queue is bounded by ``max_pending``; what overflows is counted and logged);
- the subscriber connection is re-established with exponential backoff and full
  jitter, every topic is subscribed again, and messages of history topics that
  this node missed meanwhile are fetched from their streams and delivered in order;
- each node publishes a heartbeat to itself; a subscription that silently stops
  delivering it is torn down and rebuilt;
- presence entries are refreshed by their node and expire ``presence_ttl``
  seconds after it dies; a surviving node reports each expired entry once.

Each outage is logged once when it starts and once when it ends, and counted in
:meth:`RedisBroker.stats`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import re
import secrets
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from snorky.brokers.base import Broker, Handler, History, HistoryResult
from snorky.errors import BrokerUnavailable
from snorky.protocol import Outbound

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.asyncio.sentinel import Sentinel
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as _RedisConnectionError
    from redis.exceptions import NoScriptError, ResponseError
    from redis.exceptions import TimeoutError as _RedisTimeoutError
except ImportError as error:  # pragma: no cover - depends on the extra
    raise ImportError("RedisBroker needs redis-py: pip install 'snorky[redis]'") from error

__all__ = ["RedisBroker"]

logger = logging.getLogger(__name__)

_POSITION = re.compile(rb',"offset":(\d+),"epoch":"([0-9a-f]+)"\}\}$')

_PUBLISH_WITH_HISTORY = """
local epoch = redis.call('HGET', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[5]
  redis.call('HSET', KEYS[2], 'e', epoch, 'o', 0)
end
local offset = redis.call('HINCRBY', KEYS[2], 'o', 1)
local payload = ARGV[2] .. ',"offset":' .. offset .. ',"epoch":"' .. epoch .. '"}}'
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], offset .. '-0', 't', ARGV[6], 'd', payload)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[1], ARGV[7] .. payload)
return offset
"""

_READ_HISTORY = """
local epoch = redis.call('HGET', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[2]
  redis.call('HSET', KEYS[2], 'e', epoch, 'o', 0)
end
local top = tonumber(redis.call('HGET', KEYS[2], 'o'))
if tonumber(ARGV[1]) > 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
elseif redis.call('PTTL', KEYS[2]) < 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
local since = tonumber(ARGV[3])
local entries = {}
if since >= 0 and since < top then
  entries = redis.call('XRANGE', KEYS[1], (since + 1) .. '-0', '+')
end
return {epoch, top, entries}
"""

_PRESENCE_ADD = """
if ARGV[5] == '1' then
  local expires = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if expires and tonumber(expires) > tonumber(ARGV[6]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
"""

_PRESENCE_REFRESH = """
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[2], ARGV[1], ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""

_PRESENCE_REMOVE = """
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
"""

_PRESENCE_LIST = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
local gone = {}
for _, member in ipairs(expired) do
  local info = redis.call('HGET', KEYS[1], member)
  redis.call('ZREM', KEYS[2], member)
  if redis.call('HDEL', KEYS[1], member) == 1 then
    table.insert(gone, member)
    table.insert(gone, info)
  end
end
return {gone, redis.call('HGETALL', KEYS[1])}
"""

_SCRIPTS = (_PUBLISH_WITH_HISTORY, _READ_HISTORY, _PRESENCE_ADD, _PRESENCE_REFRESH, _PRESENCE_REMOVE, _PRESENCE_LIST)

_CONNECTION_ERRORS = (_RedisConnectionError, _RedisTimeoutError, OSError, asyncio.TimeoutError)
"""Errors that mean Redis is unreachable (retried); anything else is a bug, logged."""


class _Confirmation:
    """Awaiting it waits for Redis to confirm a subscription, at most ``timeout`` seconds,
    then raises :class:`~snorky.errors.BrokerUnavailable`. Nothing runs unless awaited."""

    __slots__ = ("waiter", "timeout")

    def __init__(self, waiter: asyncio.Future[None], timeout: float) -> None:
        self.waiter = waiter
        self.timeout = timeout

    def __await__(self) -> Any:
        return self._wait().__await__()

    async def _wait(self) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self.waiter), self.timeout)
        except asyncio.TimeoutError:
            self.waiter.cancel()  # the broker forgets cancelled waiters
            raise BrokerUnavailable() from None


class _StaleSubscription(Exception):
    """The subscriber connection stopped delivering this node's own heartbeat."""


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
        presence_ttl: seconds after which a dead node's presence entries expire.
        max_pending: publishes kept while Redis is unreachable; beyond, the oldest
            are dropped (counted and logged).
        reconnect_min, reconnect_max: bounds of the reconnection backoff, in seconds.
        timeout: seconds a subscription may wait for Redis to confirm it; then the
            command that needs it answers ``unavailable``.
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

        self.handlers: dict[str, list[Handler]] = {}
        self._confirmed: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._outbox: deque[tuple[str, bytes, History | None, bytes, asyncio.Future[None] | None]] = deque()
        self._excluded: OrderedDict[int, Any] = OrderedDict()
        self._sequence = itertools.count(1)
        self._own_presence: dict[str, dict[str, bytes]] = {}
        self._watched: dict[str, Callable[[str, dict[str, bytes], dict[str, bytes]], None]] = {}
        self._positions: dict[str, tuple[str, int]] = {}
        self._filling: dict[str, list[tuple[int, str, bytes]]] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._client: Any = None
        self._sentinel: Any = None
        self._pubsub: Any = None
        self._wake: asyncio.Event | None = None
        self._back = asyncio.Event()
        self._unanswered: deque[tuple[float, asyncio.Future[None]]] = deque()
        self._answer_timer: asyncio.TimerHandle | None = None
        self._hurry: asyncio.Event | None = None
        self._closing = False
        self._down_since: float | None = None
        self._last_heartbeat_seen = 0.0
        self._heartbeats = 0
        self._counters = dict.fromkeys(
            ("published", "delivered", "outages", "reconnects", "dropped", "gaps_filled", "gaps_lost", "stale"), 0
        )

    # Naming -------------------------------------------------------------------------

    def _channel(self, topic: str) -> str:
        return f"{self.prefix}:t:{topic}"

    def _topic(self, channel: bytes) -> str:
        return channel.decode()[len(self.prefix) + 3 :]

    @property
    def _node_channel(self) -> str:
        return f"{self.prefix}:node:{self.node_id}"

    # Lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, and start the subscriber, writer and heartbeat tasks."""
        self._client = self._make_client()
        self._wake = asyncio.Event()
        self._back = asyncio.Event()
        self._hurry = asyncio.Event()
        self._closing = False
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._subscriber(), name="snorky-redis-subscriber"),
            loop.create_task(self._writer(), name="snorky-redis-writer"),
            loop.create_task(self._heartbeat_loop(), name="snorky-redis-heartbeat"),
        ]
        logger.info("= Redis broker node %s on %s", self.node_id, _safe_url(self.url))

    def _make_client(self) -> Any:
        no_retry = Retry(NoBackoff(), 0)
        parts = urlsplit(self.url)
        if parts.scheme == "redis+sentinel":
            hosts = [(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1])) for h in parts.netloc.split("@")[-1].split(",")]
            path = [p for p in parts.path.split("/") if p]
            service, db = path[0], int(path[1]) if len(path) > 1 else 0
            self._sentinel = Sentinel(hosts, socket_timeout=5, password=parts.password)
            return self._sentinel.master_for(service, db=db, retry=no_retry, socket_timeout=5, password=parts.password)
        return aioredis.Redis.from_url(self.url, retry=no_retry, socket_timeout=5, socket_connect_timeout=5)

    async def close(self) -> None:
        """Stop the tasks, remove this node's presence and liveness, disconnect."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []
        if self._answer_timer is not None:
            self._answer_timer.cancel()
            self._answer_timer = None
        try:
            pipe = self._client.pipeline(transaction=False)
            for key, members in self._own_presence.items():
                for member in members:
                    pipe.evalsha(*self._script(_PRESENCE_REMOVE, self._presence_keys(key), [member]))
            pipe.zrem(f"{self.prefix}:nodes", self.node_id)
            await asyncio.wait_for(self._run_scripts(pipe), 2)
        except (*_CONNECTION_ERRORS, ResponseError):
            pass  # shutting down: the entries expire by themselves
        await self._client.aclose()
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                await sentinel.aclose()

    # Publishing ---------------------------------------------------------------------

    def publish(  # type: ignore[override]
        self, topic: str, out: Outbound, history: History | None = None
    ) -> asyncio.Future[None] | None:
        """Queue ``out`` for Redis; while Redis is reachable, return a future done once Redis has it.

        Answering a publisher after that future keeps causally ordered publishes
        in order across nodes. During an outage the message is queued and ``None``
        is returned (it is sent when Redis is back).
        """
        data = out.json
        if history is not None and not data.endswith(b"}}"):
            raise ValueError("a message kept in history must be an object at the end of its envelope")
        tag = b""
        if out.exclude is not None and topic in self.handlers:
            # The message comes back to this node too; the tag tells it which local
            # client to skip (other nodes just strip it). History keeps it untagged.
            sequence = next(self._sequence)
            self._excluded[sequence] = out.exclude
            if len(self._excluded) > 10_000:  # messages lost in an outage never come back
                self._excluded.popitem(last=False)
            tag = b"\x01%s\x00%d\x00" % (self.node_id.encode(), sequence)
        sent = None
        if self._down_since is None and self._wake is not None:
            sent = asyncio.get_running_loop().create_future()
            self._answer_by(sent, self.timeout)
        self._outbox.append((topic, data, history, tag, sent))
        if len(self._outbox) > self.max_pending:
            dropped = self._outbox.popleft()
            if dropped[4] is not None and not dropped[4].done():
                dropped[4].set_result(None)
            self._counters["dropped"] += 1
            if self._counters["dropped"] == 1 or self._counters["dropped"] % 1000 == 0:
                logger.error("! Redis unreachable: %d queued publish(es) dropped so far", self._counters["dropped"])
        if self._wake is not None:
            self._wake.set()
        return sent

    def _answer_by(self, sent: asyncio.Future[None], delay: float) -> None:
        """Resolve ``sent`` after ``delay`` seconds at the latest: a publish still waiting
        for Redis then stays queued (it is sent when Redis answers), and its publisher
        is answered within the documented time. One timer serves every waiting publish."""
        loop = asyncio.get_running_loop()
        self._unanswered.append((loop.time() + delay, sent))
        if self._answer_timer is None:
            self._answer_timer = loop.call_later(delay, self._answer_late)

    def _answer_late(self) -> None:
        self._answer_timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._unanswered and (self._unanswered[0][1].done() or self._unanswered[0][0] <= now):
            sent = self._unanswered.popleft()[1]
            if not sent.done():
                sent.set_result(None)
        if self._unanswered:
            self._answer_timer = loop.call_at(self._unanswered[0][0], self._answer_late)

    async def _writer(self) -> None:
        assert self._wake is not None
        backoff = self.reconnect_min
        retried = False
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                batch = [self._outbox[i] for i in range(min(len(self._outbox), 500))]
                try:
                    await self._send(batch)
                except _CONNECTION_ERRORS as error:
                    if not retried:  # a pooled connection from before an outage fails on first use
                        retried = True
                        continue
                    self._outage(error)
                    # Wait for the backoff, or less: the subscriber tells the writer when Redis is back.
                    self._back.clear()
                    try:
                        await asyncio.wait_for(self._back.wait(), _jitter(backoff))
                    except asyncio.TimeoutError:
                        pass
                    backoff = min(backoff * 2, self.reconnect_max)
                    continue
                except ResponseError:
                    logger.exception("! Redis refused a batch of %d publish(es); dropped", len(batch))
                    self._counters["dropped"] += len(batch)
                retried = False
                backoff = self.reconnect_min
                self._recovered()
                for _ in batch:
                    sent = self._outbox.popleft()[4]
                    if sent is not None and not sent.done():
                        sent.set_result(None)
                self._counters["published"] += len(batch)

    async def _send(self, batch: list[tuple[str, bytes, History | None, bytes, Any]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        now_ms = int(time.time() * 1000)
        for topic, data, history, tag, _sent in batch:
            if history is None:
                pipe.publish(self._channel(topic), tag + data)
            else:
                stream, meta = self._stream_keys(topic)
                args = [
                    self._channel(topic),
                    data[:-2],
                    history.size,
                    int(history.ttl * 1000),
                    secrets.token_hex(4),
                    now_ms,
                    tag,
                ]
                pipe.evalsha(*self._script(_PUBLISH_WITH_HISTORY, [stream, meta], args))
        await self._run_scripts(pipe)

    # Scripts: loaded once per connection (a restarted Redis has forgotten them). -----

    _shas: dict[str, str] = {}

    def _script(self, source: str, keys: list[str], args: list[Any]) -> tuple[Any, ...]:
        sha = RedisBroker._shas.get(source)
        if sha is None:
            import hashlib

            sha = RedisBroker._shas[source] = hashlib.sha1(source.encode()).hexdigest()
        return (sha, len(keys), *keys, *args)

    async def _run_scripts(self, pipe: Any) -> list[Any]:
        """Run a pipeline; scripts Redis forgot (after a restart) are loaded and only they run again."""
        commands = [args for args, _options in pipe.command_stack]
        results: list[Any] = await pipe.execute(raise_on_error=False)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            for source in _SCRIPTS:
                await self._client.script_load(source)
            retry = self._client.pipeline(transaction=False)
            for i in missing:
                retry.execute_command(*commands[i])
            for i, result in zip(missing, await retry.execute(raise_on_error=False), strict=True):
                results[i] = result
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    async def _eval(self, source: str, keys: list[str], args: list[Any]) -> Any:
        async def run() -> Any:
            pipe = self._client.pipeline(transaction=False)
            pipe.evalsha(*self._script(source, keys, args))
            return (await self._run_scripts(pipe))[0]

        return await self._query(run)

    async def _query(self, run: Callable[[], Any]) -> Any:
        """Run a query; retried once at once (a pooled connection from before an outage
        fails on first use), then :class:`~snorky.errors.BrokerUnavailable`."""
        try:
            return await run()
        except _CONNECTION_ERRORS:
            try:
                return await run()
            except _CONNECTION_ERRORS as error:
                self._outage(error)
                raise BrokerUnavailable() from error

    # Subscribing and delivery -------------------------------------------------------

    def subscribe(self, topic: str, handler: Handler) -> asyncio.Future[None] | None:  # type: ignore[override]
        """Subscribe; returns a future that resolves when Redis confirmed it (``None`` if it already had)."""
        handlers = self.handlers.setdefault(topic, [])
        if handler not in handlers:
            handlers.append(handler)
            if len(handlers) == 1 and self._pubsub is not None:
                self._spawn(self._pubsub.subscribe(self._channel(topic)))
        if topic in self._confirmed:
            return None
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(topic, [])
        waiters[:] = [w for w in waiters if not w.done()]
        waiters.append(waiter)
        if self._pubsub is None and self._hurry is not None:
            self._hurry.set()  # someone waits: the subscriber retries now instead of after its backoff
        return _Confirmation(waiter, self.timeout)  # type: ignore[return-value]

    def unsubscribe(self, topic: str, handler: Handler) -> None:
        handlers = self.handlers.get(topic)
        if not handlers or handler not in handlers:
            return
        handlers.remove(handler)
        if not handlers:
            del self.handlers[topic]
            self._positions.pop(topic, None)
            self._confirmed.discard(topic)
            if self._pubsub is not None:
                self._spawn(self._pubsub.unsubscribe(self._channel(topic)))

    def _spawn(self, coroutine: Any) -> None:
        async def guarded() -> None:
            try:
                await coroutine
            except _CONNECTION_ERRORS:
                pass  # the subscriber loop notices the broken connection and resubscribes

        asyncio.get_running_loop().create_task(guarded())

    async def _subscriber(self) -> None:
        backoff = self.reconnect_min
        while True:
            pubsub = self._client.pubsub()
            self._confirmed.clear()
            try:
                topics = set(self.handlers)
                await pubsub.subscribe(self._node_channel, *[self._channel(t) for t in topics])
                self._pubsub = pubsub
                added = set(self.handlers) - topics  # subscribed while we were connecting
                if added:
                    await pubsub.subscribe(*[self._channel(t) for t in added])
                logger.debug(
                    "= subscriber connected, %d topic(s), filling %d", len(self.handlers), len(self._positions)
                )
                self._last_heartbeat_seen = time.monotonic()
                self._recovered()
                backoff = self.reconnect_min
                for topic in list(self._positions):
                    self._fill(topic, None)
                while True:
                    message = await pubsub.get_message(timeout=self.heartbeat)
                    if message is not None and message["type"] == "subscribe":
                        self._subscription_confirmed(message["channel"])
                    elif message is not None and message["type"] == "message":
                        try:
                            self._receive(message["channel"], message["data"])
                        except Exception:
                            logger.exception("! failed to deliver a message from %r", message["channel"])
                        # redis-py may hold many messages already read; without a turn of
                        # the loop here, replies and other work wait behind all their fan-outs.
                        await asyncio.sleep(0)
                    elif time.monotonic() - self._last_heartbeat_seen > 4 * self.heartbeat and self._down_since is None:
                        self._counters["stale"] += 1
                        raise _StaleSubscription
            except (*_CONNECTION_ERRORS, _StaleSubscription) as error:
                logger.debug("! subscriber lost: %r", error)
                self._pubsub = None
                self._outage(error)
                await self._pause(_jitter(backoff))
                backoff = min(backoff * 2, self.reconnect_max)
                self._counters["reconnects"] += 1
            finally:
                self._pubsub = None
                try:
                    await pubsub.aclose()
                except _CONNECTION_ERRORS:
                    pass

    async def _pause(self, delay: float) -> None:
        """Wait ``delay`` seconds before reconnecting, or less once a subscription waits for
        confirmation; then still ``reconnect_min``, so commands arriving during a long outage
        cost a few attempts per second, not a busy loop."""
        assert self._hurry is not None
        try:
            await asyncio.wait_for(self._hurry.wait(), delay)
        except asyncio.TimeoutError:
            return
        self._hurry.clear()
        await asyncio.sleep(self.reconnect_min)

    def _subscription_confirmed(self, channel: bytes) -> None:
        if channel == self._node_channel.encode():
            return
        topic = self._topic(channel)
        if topic in self.handlers:
            self._confirmed.add(topic)
        for waiter in self._waiters.pop(topic, ()):
            if not waiter.done():
                waiter.set_result(None)

    def _receive(self, channel: bytes, data: bytes) -> None:
        if channel == self._node_channel.encode():
            self._last_heartbeat_seen = time.monotonic()
            return
        topic = self._topic(channel)
        exclude = None
        if data[:1] == b"\x01":
            node, sequence, data = data[1:].split(b"\x00", 2)
            if node == self.node_id.encode():
                exclude = self._excluded.pop(int(sequence), None)
        match = _POSITION.search(data) if data.endswith(b'"}}') else None
        if match is None:
            self._deliver(topic, data, exclude)
            return
        offset, epoch = int(match.group(1)), match.group(2).decode()
        if topic in self._filling:
            self._filling[topic].append((offset, epoch, data))
            return
        position = self._positions.get(topic)
        if position is None or (position == (epoch, offset - 1)) or (position[0] != epoch and offset == 1):
            self._positions[topic] = (epoch, offset)
            self._deliver(topic, data, exclude)
        elif position[0] == epoch and offset <= position[1]:
            return  # already delivered (a stream read overlapped a live message)
        else:
            self._fill(topic, (offset, epoch, data))

    def _fill(self, topic: str, pending: tuple[int, str, bytes] | None) -> None:
        """Fetch what this node missed on ``topic`` from its stream, then deliver in order."""
        if topic in self._filling:
            if pending is not None:
                self._filling[topic].append(pending)
            return
        self._filling[topic] = [pending] if pending is not None else []
        asyncio.get_running_loop().create_task(self._guarded_fill(topic))

    async def _guarded_fill(self, topic: str) -> None:
        try:
            await self._fill_from_stream(topic)
        except Exception:
            logger.exception("! could not fill the gap of %s", topic)
            for _offset, _epoch, data in sorted(self._filling.pop(topic, []), key=lambda item: item[0]):
                self._deliver(topic, data)

    async def _fill_from_stream(self, topic: str) -> None:
        position = self._positions.get(topic)
        result = None
        for attempt in range(8):
            try:
                # ttl 0: read what the stream holds, without changing how long it is kept.
                result = await self.history(topic, (position[1], position[0]) if position else None, ttl=0)
                if position is not None and not result.recovered and result.epoch != position[0]:
                    # The stream started again (Redis lost it): everything it holds is new to us.
                    result = await self.history(topic, (0, result.epoch), ttl=0)
                break
            except (*_CONNECTION_ERRORS, BrokerUnavailable):
                # Redis may still be starting after an outage.
                await asyncio.sleep(_jitter(min(self.reconnect_max, self.reconnect_min * 2**attempt)))
        buffered = self._filling.pop(topic, [])
        if result is not None and result.recovered:
            if result.publications:
                self._counters["gaps_filled"] += 1
            for data in result.publications:
                self._receive(self._channel(topic).encode(), data)
        else:
            self._counters["gaps_lost"] += 1
            logger.error("! messages of %s were lost while this node was not listening", topic)
            self._positions.pop(topic, None)
        for _offset, _epoch, data in sorted(buffered, key=lambda item: item[0]):
            self._receive(self._channel(topic).encode(), data)

    def _deliver(self, topic: str, data: bytes, exclude: Any = None) -> None:
        handlers = self.handlers.get(topic)
        self._counters["delivered"] += 1
        if not handlers:
            return
        out = Outbound(json=data, exclude=exclude)
        for handler in handlers if len(handlers) == 1 else tuple(handlers):
            try:
                handler(topic, out)
            except Exception:
                logger.exception("! handler %r failed for topic %s", handler, topic)

    # Outages ------------------------------------------------------------------------

    def _outage(self, error: BaseException) -> None:
        if self._down_since is None and not self._closing:
            self._down_since = time.monotonic()
            self._counters["outages"] += 1
            logger.error("! Redis unreachable (%s): queueing publishes and reconnecting", type(error).__name__)

    def _recovered(self) -> None:
        if self._down_since is not None:
            logger.warning("= Redis reachable again after %.1f s", time.monotonic() - self._down_since)
            self._down_since = None
            if self._wake is not None:
                self._wake.set()
                self._back.set()

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await self._beat()
            except (*_CONNECTION_ERRORS, BrokerUnavailable) as error:
                self._outage(error)
            else:
                if self._pubsub is not None:
                    self._recovered()
            await asyncio.sleep(self.heartbeat)

    async def _beat(self) -> None:
        now = time.time()
        pipe = self._client.pipeline(transaction=False)
        pipe.zadd(f"{self.prefix}:nodes", {self.node_id: now})
        pipe.publish(self._node_channel, b"beat")
        refresh_every = max(1, int(self.presence_ttl / 3 / self.heartbeat))
        if self._heartbeats % refresh_every == 0:
            # Refreshed entries also come back after Redis lost them (a restart).
            expires, keep = int((now + self.presence_ttl) * 1000), int(self.presence_ttl * 2000)
            for key, members in self._own_presence.items():
                flat = [item for pair in members.items() for item in pair]
                pipe.evalsha(*self._script(_PRESENCE_REFRESH, self._presence_keys(key), [expires, keep, *flat]))
        await self._run_scripts(pipe)
        self._heartbeats += 1
        if self._watched and self._heartbeats % 2 == 0:
            for key in list(self._watched):
                await self.presence_list(key)

    # History ------------------------------------------------------------------------

    def _stream_keys(self, topic: str) -> list[str]:
        return [f"{self.prefix}:h:{topic}", f"{self.prefix}:hm:{topic}"]

    async def history(  # type: ignore[override]
        self, topic: str, since: tuple[int, str] | None = None, ttl: float = 300.0
    ) -> HistoryResult:
        asked = since[0] if since is not None else -1
        epoch, top, entries = await self._eval(
            _READ_HISTORY, self._stream_keys(topic), [int(ttl * 1000), secrets.token_hex(4), asked, 300_000]
        )
        result = HistoryResult(int(top), epoch.decode())
        if topic in self.handlers and topic not in self._positions:
            # What a subscriber is told it has seen, this node has seen: from here on,
            # anything this node misses (an outage) is filled from the stream.
            self._positions[topic] = (result.epoch, result.offset)
        if since is None or since[1] != result.epoch or since[0] > result.offset:
            return result
        now_ms = time.time() * 1000
        kept: list[tuple[int, bytes]] = []
        for entry_id, fields in entries:
            values = dict(zip(fields[::2], fields[1::2], strict=True))
            if ttl <= 0 or now_ms - int(values[b"t"]) <= ttl * 1000:
                kept.append((int(entry_id.split(b"-")[0]), values[b"d"]))
        if [o for o, _ in kept] != list(range(since[0] + 1, result.offset + 1)):
            return result
        result.recovered = True
        result.publications = [data for _, data in kept]
        return result

    # Presence -----------------------------------------------------------------------

    def _presence_keys(self, key: str) -> list[str]:
        return [f"{self.prefix}:p:{key}", f"{self.prefix}:pe:{key}"]

    async def presence_add(  # type: ignore[override]
        self, key: str, member: str, info: bytes, ttl: float = 30.0, only_if_absent: bool = False
    ) -> bool:
        now = time.time()
        args = [member, info, int((now + self.presence_ttl) * 1000), int(self.presence_ttl * 2000)]
        added = await self._eval(_PRESENCE_ADD, self._presence_keys(key), [*args, int(only_if_absent), int(now * 1000)])
        if added:
            self._own_presence.setdefault(key, {})[member] = info
        return bool(added)

    async def presence_remove(self, key: str, member: str) -> bool:  # type: ignore[override]
        own = self._own_presence.get(key)
        if own is not None:
            own.pop(member, None)
            if not own:
                del self._own_presence[key]
        return bool(await self._eval(_PRESENCE_REMOVE, self._presence_keys(key), [member]))

    async def presence_list(self, key: str) -> dict[str, bytes]:  # type: ignore[override]
        gone, current = await self._eval(_PRESENCE_LIST, self._presence_keys(key), [int(time.time() * 1000)])
        remaining = {m.decode(): i for m, i in zip(current[::2], current[1::2], strict=True)}
        callback = self._watched.get(key)
        if gone and callback is not None:
            expired = {m.decode(): i for m, i in zip(gone[::2], gone[1::2], strict=True)}
            try:
                callback(key, expired, remaining)
            except Exception:
                logger.exception("! presence expiry handler failed for %s", key)
        return remaining

    def watch_presence(
        self, key: str, on_expired: Callable[[str, dict[str, bytes], dict[str, bytes]], None] | None
    ) -> None:
        if on_expired is None:
            self._watched.pop(key, None)
        else:
            self._watched[key] = on_expired

    # Key-value ----------------------------------------------------------------------

    async def kv_set(  # type: ignore[override]
        self, key: str, value: bytes, ttl: float | None = None, only_if_absent: bool = False
    ) -> bool:
        result = await self._query(
            lambda: self._client.set(
                f"{self.prefix}:kv:{key}", value, px=None if ttl is None else int(ttl * 1000), nx=only_if_absent
            )
        )
        return bool(result)

    async def kv_get(self, key: str) -> bytes | None:  # type: ignore[override]
        value: bytes | None = await self._query(lambda: self._client.get(f"{self.prefix}:kv:{key}"))
        return value

    async def kv_delete(self, key: str) -> bool:  # type: ignore[override]
        return bool(await self._query(lambda: self._client.delete(f"{self.prefix}:kv:{key}")))

    # Nodes and stats ----------------------------------------------------------------

    async def nodes(self) -> list[str]:  # type: ignore[override]
        alive = await self._query(
            lambda: self._client.zrangebyscore(f"{self.prefix}:nodes", time.time() - self.node_ttl, "+inf")
        )
        return sorted(node.decode() for node in alive)

    def stats(self) -> dict[str, Any]:
        return {
            "kind": "redis",
            "node": self.node_id,
            "topics": len(self.handlers),
            "pending": len(self._outbox),
            "connected": self._down_since is None and self._pubsub is not None,
            **self._counters,
        }


def _jitter(backoff: float) -> float:
    """Full jitter: a random wait between 0 and ``backoff`` seconds."""
    return random.uniform(0, backoff)


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    return url.replace(parts.password, "***") if parts.password else url
