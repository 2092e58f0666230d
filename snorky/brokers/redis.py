"""RedisBroker: several Snorky processes behind a load balancer behave as one server.

Install with ``pip install snorky[redis]`` and configure ``broker = "redis://host:6379/0"``
(or ``redis+sentinel://host:26379/mymaster``). Every node publishes to Redis
and every node subscribed to a topic receives it, in the order Redis received
the publishes. History streams, presence and key-value entries live in Redis.

What a node promises under faults, and how it keeps it
(``docs/howto/scale-with-redis.rst`` is the user's side of it):

- **A publish is answered within ``timeout`` seconds**: ``ok`` once Redis has it, or
  once the node holds it in its queue because Redis does not answer (it is sent when
  Redis is back), or :class:`~snorky.errors.BrokerUnavailable` when the queue is full
  (it is never sent).
- **Once, never twice.** Every publish carries an id, the node's incarnation and a
  sequence number. Publishes go to Redis in batches, each one script that skips the
  ids Redis already ran: a batch sent again after a timeout (Redis paused, not dead)
  adds no second stream entry and no second delivery (:class:`_Outbox`).
- **Counted, never silently lost.** Every message of a topic gets the next offset
  of the topic (history topics show it to clients; the others carry it in a header
  that is stripped before delivery). When a node rebuilds its subscription, it reads
  each topic's position behind a *fence* (a message to itself through Redis, which
  arrives after every message published before the read), delivers what history
  streams still hold, and counts the rest as missed; services then tell their
  clients (a ``gap`` push) (:class:`_Topic`).
- **Queued publishes wait for listeners.** After an outage a node sends its queue
  once its own subscription is back and every other live node has marked itself
  listening again (for at most ``timeout`` seconds), so a Redis restart loses no
  queued publish.
- **Presence follows ownership** (:class:`_PresenceLedger`). A node refreshes only
  the entries it owns, writes each entry with a token and orders the writes to one
  entry; a removal leaves a tombstone of the token, so a write that arrives late
  (Redis paused) cannot bring the entry back. Entries that nobody refreshes (their
  node died, or was paused) expire after ``presence_ttl``; whoever removes an expired
  entry reports it, once, and a paused node that finds its entries gone adds them
  again and reports them restored.
- **One outage, two log lines** (:class:`_Outage`): when it begins, and when it ends
  with what it cost (publishes queued and refused, messages missed); each is
  counted once in :meth:`RedisBroker.stats`.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
import random
import re
import secrets
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from snorky.brokers.base import Broker, GapHandler, Handler, History, HistoryResult, PresenceHandler
from snorky.errors import BrokerUnavailable
from snorky.protocol import Outbound

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.asyncio.sentinel import Sentinel
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as _RedisConnectionError
    from redis.exceptions import NoScriptError, ReadOnlyError, ResponseError
    from redis.exceptions import TimeoutError as _RedisTimeoutError
except ImportError as error:  # pragma: no cover - depends on the extra
    raise ImportError("RedisBroker needs redis-py: pip install 'snorky[redis]'") from error

__all__ = ["RedisBroker"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_POSITION = re.compile(rb',"offset":(\d+),"epoch":"([0-9a-f]+)"\}\}$')

# Scripts ------------------------------------------------------------------------------

_REDIS_NOW = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
"""

_PUBLISH_BATCH = """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local first = tonumber(ARGV[1])
local count = (#KEYS - 1) / 2
local fresh = 0
local epochs, offsets, ttls, streams = {}, {}, {}, {}
for i = 1, count do
  if first + i - 1 > last then
    local meta, stream, a = KEYS[2 * i], KEYS[2 * i + 1], 4 + (i - 1) * 5
    local channel, size, ttl, tag, data = ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
    local epoch = epochs[meta]
    if not epoch then
      local position = redis.call('HMGET', meta, 'e', 'o')
      epoch = position[1]
      if not epoch then
        epoch = ARGV[3]
      end
      epochs[meta], offsets[meta] = epoch, tonumber(position[2] or '0')
    end
    local offset = offsets[meta] + 1
    offsets[meta], ttls[meta] = offset, ttl
    if size > 0 then
      local payload = string.sub(data, 1, -3) .. ',"offset":' .. offset .. ',"epoch":"' .. epoch .. '"}}'
      redis.call('XADD', stream, 'MAXLEN', size, offset .. '-0', 't', ARGV[2], 'd', payload)
      streams[stream] = ttl
      redis.call('PUBLISH', channel, tag .. payload)
    else
      redis.call('PUBLISH', channel, '\\2' .. epoch .. '\\0' .. offset .. '\\0' .. tag .. data)
    end
    fresh = fresh + 1
  end
end
for meta, offset in pairs(offsets) do
  redis.call('HSET', meta, 'e', epochs[meta], 'o', offset)
  redis.call('PEXPIRE', meta, ttls[meta])
end
for stream, ttl in pairs(streams) do
  redis.call('PEXPIRE', stream, ttl)
end
if first + count - 1 > last then
  redis.call('SET', KEYS[1], first + count - 1, 'PX', ARGV[4])
end
return fresh
"""
"""KEYS: the node's publish mark, then (meta, stream) per message. ARGV: the first
sequence number, the time (ms), an epoch for new topics, the mark's ttl (ms), then
(channel, history size or 0, ttl ms, tag, data) per message. Returns how many
messages were new (the others had run already)."""

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

_READ_POSITION = """
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  return {'', 0, {}}
end
local top = tonumber(redis.call('HGET', KEYS[1], 'o'))
local since = tonumber(ARGV[1])
if epoch ~= ARGV[2] then
  since = 0
end
local entries = {}
if ARGV[3] == '1' and since < top then
  entries = redis.call('XRANGE', KEYS[2], (since + 1) .. '-0', '+')
end
return {epoch, top, entries}
"""
"""A topic's position without changing anything: KEYS meta, stream; ARGV the offset
and epoch this node has, and whether to read the stream after it."""

_BEAT = (
    """
redis.replicate_commands()
"""
    + _REDIS_NOW
    + """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[2]) - 86400)
local receivers = redis.call('PUBLISH', ARGV[4], 'beat')
if ARGV[3] == '1' and receivers > 0 then
  redis.call('ZADD', KEYS[2], now, ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 86400000)
end
return receivers
"""
)
"""KEYS nodes, listening; ARGV node, its time (s), whether it listens to all its topics,
its channel. Publishes the heartbeat to the node itself and returns how many
connections got it; marks the node listening (in Redis's time, which every node
compares with) only if Redis sees a subscription to its channel."""

_SWEEP_EXPIRED = """
local gone = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])) do
  local value = redis.call('HGET', KEYS[1], member)
  redis.call('ZREM', KEYS[2], member)
  if value and redis.call('HDEL', KEYS[1], member) == 1 then
    local token = string.match(value, '^([^%z]*)%z')
    if token then
      redis.call('ZADD', KEYS[3], ARGV[1], member .. '\\0' .. token)
    end
    table.insert(gone, member)
    table.insert(gone, value)
  end
end
"""
"""Removes the expired entries of a presence key, leaves their tombstones, and
collects them in ``gone``; ARGV[1] is the time (ms)."""

_TRIM_TOMBSTONES = """
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[3], ARGV[2])
"""
"""Tombstones are kept ARGV[2] ms. Every presence script takes ARGV[1] the time (ms),
ARGV[2] how long tombstones are kept and ARGV[3] how long entries are kept (ms)."""

_PRESENCE_ADD = """
if redis.call('ZSCORE', KEYS[3], ARGV[4] .. '\\0' .. ARGV[5]) then
  return -1
end
local current = redis.call('HGET', KEYS[1], ARGV[4])
if ARGV[7] == '1' and current and string.sub(current, 1, #ARGV[5] + 1) ~= ARGV[5] .. '\\0' then
  local expires = redis.call('ZSCORE', KEYS[2], ARGV[4])
  if expires and tonumber(expires) > tonumber(ARGV[1]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[4], ARGV[5] .. '\\0' .. ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[8], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""
"""KEYS entries, expiries, tombstones; ARGV (1-3 as above) member, token, info, only
if absent, expiry (ms). 1 added, 0 held by another, -1 this write was undone."""

_PRESENCE_REMOVE = (
    """
local tombstone = ARGV[4] .. '\\0' .. ARGV[5]
if redis.call('ZSCORE', KEYS[3], tombstone) then
  return -1
end
redis.call('ZADD', KEYS[3], ARGV[1], tombstone)
"""
    + _TRIM_TOMBSTONES
    + """
local current = redis.call('HGET', KEYS[1], ARGV[4])
if current and string.sub(current, 1, #ARGV[5] + 1) == ARGV[5] .. '\\0' then
  redis.call('ZREM', KEYS[2], ARGV[4])
  return redis.call('HDEL', KEYS[1], ARGV[4])
end
return 0
"""
)
"""KEYS as above; ARGV (1-3) member, token: removes the entry if that write made it,
and leaves a tombstone of the write. 1 removed; 0 not there (never written, or
Redis lost it); -1 removed before, as expired (and reported then)."""

_PRESENCE_REFRESH = (
    """
local refused = {}
for i = 5, #ARGV, 3 do
  local member, token = ARGV[i], ARGV[i + 1]
  local current = redis.call('HGET', KEYS[1], member)
  if redis.call('ZSCORE', KEYS[3], member .. '\\0' .. token) then
    table.insert(refused, member)
  elseif current and string.sub(current, 1, #token + 1) ~= token .. '\\0' then
    table.insert(refused, member)
  else
    redis.call('HSET', KEYS[1], member, token .. '\\0' .. ARGV[i + 2])
    redis.call('ZADD', KEYS[2], ARGV[4], member)
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
"""
    + _SWEEP_EXPIRED
    + _TRIM_TOMBSTONES
    + """
if #gone > 0 then
  return {gone, redis.call('HGETALL', KEYS[1]), refused}
end
return {gone, {}, refused}
"""
)
"""KEYS as above; ARGV (1-3), the expiry, then (member, token, info) per owned entry.
Entries this node still owns are written again (also after Redis lost them); those
whose token has a tombstone (someone removed them as expired) or that another
holds are refused. Then expired entries are removed (``gone``)."""

_PRESENCE_LIST = (
    _SWEEP_EXPIRED
    + _TRIM_TOMBSTONES
    + """
return {gone, redis.call('HGETALL', KEYS[1])}
"""
)

_PRESENCE_COUNT = (
    _SWEEP_EXPIRED
    + _TRIM_TOMBSTONES
    + """
return {gone, redis.call('HLEN', KEYS[1])}
"""
)

_SCRIPTS = (
    _PUBLISH_BATCH,
    _READ_HISTORY,
    _READ_POSITION,
    _BEAT,
    _PRESENCE_ADD,
    _PRESENCE_REMOVE,
    _PRESENCE_REFRESH,
    _PRESENCE_LIST,
    _PRESENCE_COUNT,
)
_SHAS = {source: hashlib.sha1(source.encode()).hexdigest() for source in _SCRIPTS}

_POOL_SIZE = 50
"""Connections a node opens to Redis for commands, at most (the subscriber has its own)."""

_CONNECTION_ERRORS = (_RedisConnectionError, _RedisTimeoutError, OSError, asyncio.TimeoutError)
"""Errors that mean Redis is unreachable (retried); anything else is a bug, logged."""

_TRANSIENT_REPLIES = ("OOM", "BUSY", "MASTERDOWN", "LOADING", "TRYAGAIN", "CLUSTERDOWN")
"""Error replies of a Redis that cannot take writes for now (counted as an outage, retried)."""


def _transient(error: ResponseError) -> bool:
    return isinstance(error, ReadOnlyError) or str(error).startswith(_TRANSIENT_REPLIES)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _info(value: bytes) -> bytes:
    """A presence value without the token of the write that made it."""
    return value.partition(b"\x00")[2]


def _pairs(flat: list[bytes]) -> dict[str, bytes]:
    return {m.decode(): _info(v) for m, v in zip(flat[::2], flat[1::2], strict=True)}


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


class _Refused:
    """The result of a publish the full queue refused: awaiting it raises
    :class:`~snorky.errors.BrokerUnavailable`; left alone, it is silent."""

    __slots__ = ()

    def __await__(self) -> Any:
        raise BrokerUnavailable()
        yield  # pragma: no cover - makes this a generator


class _StaleSubscription(Exception):
    """The subscriber connection stopped delivering this node's own heartbeat."""


# Outages ------------------------------------------------------------------------------


class _Outage:
    """Episodes of this node not reaching Redis, or not hearing from it.

    An episode begins with the first failure (logged once, counted once) and ends
    when this node hears its own message through a rebuilt subscription and has
    settled every topic; then one line says how long it lasted and what it cost.
    """

    def __init__(self, counters: dict[str, int]) -> None:
        self.counters = counters
        self.since: float | None = None
        self.queued = 0
        self.refused = 0
        self.missed = 0
        self.channels: set[str] = set()

    @property
    def down(self) -> bool:
        return self.since is not None

    def begin(self, error: BaseException | str) -> bool:
        """Start an episode (nothing if one is going on); whether one started."""
        if self.since is not None:
            return False
        self.since = time.monotonic()
        self.queued = self.refused = self.missed = 0
        self.channels = set()
        self.counters["outages"] += 1
        cause = error if isinstance(error, str) else type(error).__name__
        logger.error("! Redis unreachable (%s): queueing publishes and reconnecting", cause)
        return True

    def end(self) -> None:
        if self.since is None:
            return
        logger.warning(
            "= Redis reachable again after %.1f s: %d publish(es) queued, %d refused (queue full), "
            "%d message(s) missed on %d topic(s)",
            time.monotonic() - self.since,
            self.queued,
            self.refused,
            self.missed,
            len(self.channels),
        )
        self.since = None


# Publishing ----------------------------------------------------------------------------


class _Publish:
    """One publish waiting in the queue."""

    __slots__ = ("topic", "data", "history", "seq", "tagged", "sent")

    def __init__(
        self,
        topic: str,
        data: bytes,
        history: History | None,
        seq: int,
        tagged: bool,
        sent: asyncio.Future[None] | None,
    ) -> None:
        self.topic = topic
        self.data = data
        self.history = history
        self.seq = seq
        """Its id within this node's incarnation: consecutive, in queue order."""
        self.tagged = tagged
        """Whether it names a local client to skip (the tag carries its sequence number)."""
        self.sent = sent
        """Resolved once Redis has it, or ``timeout`` seconds after the publish."""


class _Outbox:
    """The queue of publishes, bounded by ``max_pending``, and their answers.

    A publish's future is resolved when Redis has run it, or ``timeout`` seconds
    after it was made, whichever comes first (one timer serves them all): a publish
    still queued then is sent when Redis answers, so ``ok`` means it will be delivered.
    """

    def __init__(self, max_pending: int, timeout: float) -> None:
        self.queue: deque[_Publish] = deque()
        self.max_pending = max_pending
        self.timeout = timeout
        self._sequence = itertools.count(1)
        self._unanswered: deque[tuple[float, asyncio.Future[None]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self.queue)

    @property
    def full(self) -> bool:
        return len(self.queue) >= self.max_pending

    def add(self, topic: str, data: bytes, history: History | None, tagged: bool, answer: bool) -> _Publish:
        sent = None
        if answer:
            loop = asyncio.get_running_loop()
            sent = loop.create_future()
            self._unanswered.append((loop.time() + self.timeout, sent))
            if self._timer is None:
                self._timer = loop.call_later(self.timeout, self._answer_late)
        item = _Publish(topic, data, history, next(self._sequence), tagged, sent)
        self.queue.append(item)
        return item

    def batch(self, size: int = 500) -> list[_Publish]:
        return [self.queue[i] for i in range(min(len(self.queue), size))]

    def sent(self, count: int) -> None:
        """The first ``count`` publishes are in Redis: answer them."""
        for _ in range(count):
            future = self.queue.popleft().sent
            if future is not None and not future.done():
                future.set_result(None)

    def failed(self, count: int, error: BaseException) -> None:
        """The first ``count`` publishes will never be sent."""
        for _ in range(count):
            future = self.queue.popleft().sent
            if future is not None and not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: nobody may be waiting any more

    def _answer_late(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._unanswered and (self._unanswered[0][1].done() or self._unanswered[0][0] <= now):
            future = self._unanswered.popleft()[1]
            if not future.done():
                future.set_result(None)
        if self._unanswered:
            self._timer = loop.call_at(self._unanswered[0][0], self._answer_late)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


# Topic positions -------------------------------------------------------------------


class _Topic:
    """What this node has delivered of one topic it is subscribed to.

    ``epoch`` is ``None`` while unknown (just subscribed), ``""`` when Redis had no
    position for the topic. While ``buffer`` is a list, the topic is being settled
    behind a fence and live messages wait in it.
    """

    __slots__ = ("epoch", "offset", "buffer")

    def __init__(self) -> None:
        self.epoch: str | None = None
        self.offset = 0
        self.buffer: list[tuple[int, str, bool, bytes, Any]] | None = None


_SETTLE, _LOCATE = 1, 2
"""What a fence does for a topic: settle it (fill and count what this node missed;
its live messages wait meanwhile), or only learn its position (just subscribed)."""


class _Fence:
    """Reads of topic positions, followed by a message to this node through Redis.

    When that message arrives, every message published before the reads has
    arrived too: what the reads say is missing and has not arrived was missed.
    """

    __slots__ = ("id", "items", "reads", "echoed")

    def __init__(self, fence_id: int, items: list[tuple[str, _Topic, int]]) -> None:
        self.id = fence_id
        self.items = items
        self.reads: list[Any] | None = None
        self.echoed = False


# Presence ---------------------------------------------------------------------------


class _PresenceLedger:
    """The presence entries this node owns, and the order of its writes to each.

    Each write of an entry has a token (this node's incarnation and a number). The
    node refreshes only what it owns; a removal names the token it removes and
    leaves a tombstone of it in Redis, so that an earlier write of the same token
    arriving late is refused. Writes to one entry run one after the other, and a
    removal also waits for a refresh in flight.
    """

    def __init__(self, incarnation: str) -> None:
        self.incarnation = incarnation
        self.owned: dict[str, dict[str, tuple[str, bytes, bool]]] = {}
        """Key -> member -> (token, info, whether it is a claim)."""
        self.refreshing: asyncio.Future[None] | None = None
        """Done when the refresh in flight is."""
        self.leaving: dict[tuple[str, str, str], None] = {}
        """(key, member, token) of removals not done yet (waiting their turn, or for Redis)."""
        self._tails: dict[tuple[str, str], asyncio.Future[Any]] = {}
        self._numbers = itertools.count(1)

    def own(self, key: str, member: str, info: bytes, claim: bool) -> str:
        token = f"{self.incarnation}.{next(self._numbers)}"
        self.owned.setdefault(key, {})[member] = (token, info, claim)
        return token

    def disown(self, key: str, member: str, token: str | None = None) -> str | None:
        """Stop owning ``member`` (only if its token is ``token``, when given); its token."""
        members = self.owned.get(key)
        entry = members.get(member) if members else None
        if entry is None or (token is not None and entry[0] != token):
            return None
        del members[member]  # type: ignore[union-attr]
        if not members:
            del self.owned[key]
        return entry[0]

    def owns(self, key: str, member: str, token: str) -> bool:
        entry = self.owned.get(key, {}).get(member)
        return entry is not None and entry[0] == token

    def after(
        self, key: str, member: str, run: Callable[[], Awaitable[T]], removal: bool, patience: float
    ) -> asyncio.Task[T]:
        """Run ``run()`` once the earlier writes of ``member`` (and, for a removal, the
        refresh in flight) are done; a task, which need not be awaited.

        A removal waits as long as it takes; a write waits at most ``patience`` seconds
        (an earlier removal may be waiting for Redis), then fails with
        :class:`~snorky.errors.BrokerUnavailable` (the refresh makes the entry later).
        """
        earlier = [self._tails.get((key, member)), self.refreshing if removal else None]
        waits = [future for future in earlier if future is not None and not future.done()]

        async def ordered() -> T:
            if waits:
                _, pending = await asyncio.wait(waits, timeout=None if removal else patience)
                if pending:
                    raise BrokerUnavailable()
            return await run()

        task = asyncio.ensure_future(ordered())
        slot = (key, member)
        self._tails[slot] = task

        def done(finished: asyncio.Task[T]) -> None:
            if self._tails.get(slot) is finished:
                del self._tails[slot]
            if not finished.cancelled():
                finished.exception()  # retrieved: the caller may have let it run alone

        task.add_done_callback(done)
        return task

    def cancel(self) -> None:
        """Cancel the writes still waiting (the broker is closing)."""
        for task in list(self._tails.values()):
            task.cancel()

    def snapshot(self) -> list[tuple[str, list[Any]]]:
        """(key, [member, token, info, ...]) for every owned entry."""
        return [
            (key, [item for member, (token, info, _) in members.items() for item in (member, token, info)])
            for key, members in self.owned.items()
        ]


# The broker --------------------------------------------------------------------------


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

        self.handlers: dict[str, list[Handler]] = {}
        self._gap_handlers: dict[str, dict[Handler, GapHandler]] = {}
        self._topics: dict[str, _Topic] = {}
        self._confirmed: set[str] = set()
        self._node_confirmed = False
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._outbox = _Outbox(max_pending, timeout)
        self._excluded: OrderedDict[int, Any] = OrderedDict()
        self._ledger = _PresenceLedger(self.incarnation)
        self._watched: dict[str, PresenceHandler] = {}
        self._restore_watchers: dict[str, PresenceHandler] = {}
        self._fences: dict[int, _Fence] = {}
        self._fence_ids = itertools.count(1)
        self._fence_queue: dict[str, int] = {}
        self._fence_flush: asyncio.Handle | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._client: Any = None
        self._sentinel: Any = None
        self._pubsub: Any = None
        self._wake: asyncio.Event | None = None
        self._back: asyncio.Event | None = None
        self._hurry: asyncio.Event | None = None
        self._closing = False
        self._unechoed = 0
        self._stale = False
        self._gate = False
        self._peers: set[str] = set()
        self._heartbeats = 0
        self._recovering = False
        self._counters = dict.fromkeys(
            (
                "published",
                "resent",
                "delivered",
                "outages",
                "reconnects",
                "dropped",
                "missed",
                "gaps_filled",
                "gaps_lost",
                "stale",
                "presence_restored",
            ),
            0,
        )
        self._outage = _Outage(self._counters)

    # Naming -------------------------------------------------------------------------

    def _channel(self, topic: str) -> str:
        return f"{self.prefix}:t:{topic}"

    def _topic(self, channel: bytes) -> str:
        return channel.decode()[len(self.prefix) + 3 :]

    @property
    def _node_channel(self) -> str:
        return f"{self.prefix}:node:{self.node_id}"

    def _stream_keys(self, topic: str) -> list[str]:
        """The topic's stream and its meta (offset, epoch)."""
        return [f"{self.prefix}:h:{topic}", f"{self.prefix}:hm:{topic}"]

    def _presence_keys(self, key: str) -> list[str]:
        """Entries, their expiries, and tombstones of removed writes."""
        return [f"{self.prefix}:p:{key}", f"{self.prefix}:pe:{key}", f"{self.prefix}:pt:{key}"]

    def _presence_args(self) -> list[int]:
        """The arguments every presence script starts with: now, tombstones' and entries' keep (ms)."""
        return [_now_ms(), int(max(20 * self.presence_ttl, 600) * 1000), int(self.presence_ttl * 2000)]

    # Lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, and start the subscriber, writer and heartbeat tasks."""
        self._client = self._make_client()
        self._wake = asyncio.Event()
        self._back = asyncio.Event()
        self._back.set()
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
        wait = max(self.timeout, 1.0)
        if parts.scheme == "redis+sentinel":
            hosts = [(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1])) for h in parts.netloc.split("@")[-1].split(",")]
            path = [p for p in parts.path.split("/") if p]
            service, db = path[0], int(path[1]) if len(path) > 1 else 0
            self._sentinel = Sentinel(hosts, socket_timeout=wait, password=parts.password)
            return self._sentinel.master_for(
                service, db=db, retry=no_retry, socket_timeout=wait, password=parts.password
            )
        # A blocking pool: a burst of commands (hundreds of subscribes reading history at
        # once) waits for a free connection instead of failing with MaxConnectionsError,
        # which would look like an outage (redis-py 8 caps a plain pool at 100).
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=_POOL_SIZE,
            timeout=self.timeout,
            retry=no_retry,
            socket_timeout=wait,
            socket_connect_timeout=wait,
        )
        return aioredis.Redis.from_pool(pool)  # the client owns the pool: closing it closes every connection

    async def close(self) -> None:
        """Send what is queued (briefly), stop the tasks, remove this node's presence and liveness."""
        if self._outbox and not self._outage.down and self._wake is not None:
            deadline = time.monotonic() + min(self.timeout, 2.0)
            while self._outbox and time.monotonic() < deadline and not self._outage.down:
                await asyncio.sleep(0.01)
        self._closing = True
        for task in [*self._tasks, *self._side_tasks]:
            task.cancel()
        self._ledger.cancel()
        for task in [*self._tasks, *self._side_tasks]:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []
        self._outbox.close()
        if self._fence_flush is not None:
            self._fence_flush.cancel()
        try:
            pipe = self._client.pipeline(transaction=False)
            owned = [(k, m, t) for k, members in self._ledger.owned.items() for m, (t, _, _) in members.items()]
            for key, member, token in [*owned, *self._ledger.leaving]:
                args = [*self._presence_args(), member, token]
                pipe.evalsha(_SHAS[_PRESENCE_REMOVE], 3, *self._presence_keys(key), *args)
            pipe.zrem(f"{self.prefix}:nodes", self.node_id)
            pipe.zrem(f"{self.prefix}:listening", self.node_id)
            await asyncio.wait_for(self._run_scripts(pipe), 2)
        except (*_CONNECTION_ERRORS, ResponseError):
            pass  # shutting down: the entries expire by themselves
        await self._client.aclose()
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                await sentinel.aclose()

    def _background(self, coroutine: Any) -> None:
        """Run a coroutine of this broker on its own; it is cancelled by :meth:`close`."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # Publishing ---------------------------------------------------------------------

    def publish(  # type: ignore[override]
        self, topic: str, out: Outbound, history: History | None = None
    ) -> asyncio.Future[None] | _Refused | None:
        """Queue ``out`` for Redis and return what to await for the answer.

        While Redis is reachable, a future done once Redis has the message (or
        ``timeout`` seconds later, the message still queued): answering a publisher
        after it keeps causally ordered publishes in order across nodes. During an
        outage ``None`` (the message is queued and sent when Redis is back). When
        the queue is full, an awaitable that raises
        :class:`~snorky.errors.BrokerUnavailable`: the message is not sent.
        """
        data = out.json
        if history is not None and not data.endswith(b"}}"):
            raise ValueError("a message kept in history must be an object at the end of its envelope")
        if self._outbox.full:
            self._counters["dropped"] += 1
            self._outage.refused += 1
            if self._counters["dropped"] == 1 or self._outage.refused == 1:
                logger.error("! publish queue full (%d): refusing publishes until Redis takes them", self.max_pending)
            return _Refused()
        down = self._outage.down or self._wake is None
        # The message comes back to this node too; a tag tells it which local client to
        # skip (other nodes just strip it). History keeps it untagged.
        tagged = out.exclude is not None and topic in self.handlers
        item = self._outbox.add(topic, data, history, tagged, answer=not down)
        if tagged:
            self._excluded[item.seq] = out.exclude
            if len(self._excluded) > 10_000:  # messages lost in an outage never come back
                self._excluded.popitem(last=False)
        if down:
            self._outage.queued += 1
        if self._wake is not None:
            self._wake.set()
        return item.sent

    async def _writer(self) -> None:
        assert self._wake is not None and self._back is not None
        retried = False
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox and not self._closing:
                if self._outage.down:
                    await self._back.wait()  # the heartbeat and the subscriber find out when Redis is back
                    continue
                if self._gate:
                    await self._wait_for_listeners()
                    continue
                batch = self._outbox.batch()
                try:
                    fresh = await self._send(batch)
                except _CONNECTION_ERRORS as error:
                    if not retried:  # a pooled connection from before an outage fails on first use
                        retried = True
                        continue
                    retried = False
                    self._begin_outage(error)
                    continue
                except ResponseError as error:
                    retried = False
                    if _transient(error):
                        self._begin_outage(str(error).split(" ")[0])
                        continue
                    logger.exception("! Redis refused a batch of %d publish(es); dropped", len(batch))
                    self._counters["dropped"] += len(batch)
                    self._outbox.failed(len(batch), BrokerUnavailable())
                    continue
                except Exception:
                    retried = False
                    logger.exception("! could not send a batch of %d publish(es); dropped", len(batch))
                    self._counters["dropped"] += len(batch)
                    self._outbox.failed(len(batch), BrokerUnavailable())
                    continue
                retried = False
                self._outbox.sent(len(batch))
                self._counters["published"] += fresh
                self._counters["resent"] += len(batch) - fresh

    async def _send(self, batch: list[_Publish]) -> int:
        """Run one batch in one script; how many of its publishes were new to Redis."""
        keys = [f"{self.prefix}:pid:{self.incarnation}"]
        args: list[Any] = [batch[0].seq, _now_ms(), secrets.token_hex(4), 86_400_000]
        counter_ttl = int(self.counter_ttl * 1000)
        node = self.node_id.encode()
        for item in batch:
            stream, meta = self._stream_keys(item.topic)
            keys += [meta, stream]
            tag = b"\x01%s\x00%d\x00" % (node, item.seq) if item.tagged else b""
            if item.history is None:
                args += [self._channel(item.topic), 0, counter_ttl, tag, item.data]
            else:
                args += [self._channel(item.topic), item.history.size, int(item.history.ttl * 1000), tag, item.data]
        pipe = self._client.pipeline(transaction=False)
        pipe.evalsha(_SHAS[_PUBLISH_BATCH], len(keys), *keys, *args)
        return int((await self._run_scripts(pipe))[0])

    async def _wait_for_listeners(self) -> None:
        """After an outage: wait until every node that was alive before it listens again
        (each marks itself so in its heartbeat, in Redis's time).

        A node that does not heartbeat within ``max(timeout, 4 * heartbeat)`` seconds is
        taken for dead; one that heartbeats but is still subscribing again is waited for
        up to ``reconnect_max + timeout`` seconds.
        """
        waiting: dict[str, float | None] = dict.fromkeys(sorted(self._peers))  # peer -> liveness score first read
        alive: set[str] = set()
        started = time.monotonic()
        since = None
        while waiting and not self._outage.down:
            elapsed = time.monotonic() - started
            if elapsed > self.reconnect_max + self.timeout:
                break
            if elapsed > max(self.timeout, 4 * self.heartbeat):
                waiting = {peer: score for peer, score in waiting.items() if peer in alive}
                if not waiting:
                    break
            try:
                if since is None:
                    seconds, micros = await self._client.time()
                    since = seconds * 1000 + micros // 1000
                pipe = self._client.pipeline(transaction=False)
                for peer in waiting:
                    pipe.zscore(f"{self.prefix}:listening", peer)
                    pipe.zscore(f"{self.prefix}:nodes", peer)
                scores = await pipe.execute()
            except _CONNECTION_ERRORS:
                await asyncio.sleep(self.reconnect_min)
                continue
            for (peer, first), listening, beat in zip(list(waiting.items()), scores[::2], scores[1::2], strict=True):
                if listening is not None and listening >= since:
                    del waiting[peer]
                elif first is None:
                    waiting[peer] = beat if beat is not None else -1.0
                elif beat is not None and beat != first:
                    alive.add(peer)  # it heartbeats: subscribing again, worth waiting for
            if waiting:
                await asyncio.sleep(min(self.heartbeat / 4, 0.25))
        if self._outage.down:
            return
        if waiting:
            logger.warning(
                "= %d node(s) not listening %.1f s after the outage: sending the queue",
                len(waiting),
                time.monotonic() - started,
            )
        self._gate = False

    # Scripts: loaded once per connection (a restarted Redis has forgotten them). -----

    def _script(self, source: str, keys: list[str], args: list[Any]) -> tuple[Any, ...]:
        return (_SHAS[source], len(keys), *keys, *args)

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
                self._begin_outage(error)
                raise BrokerUnavailable() from error
        except ResponseError as error:
            if not _transient(error):
                raise
            self._begin_outage(str(error).split(" ")[0])
            raise BrokerUnavailable() from error

    # Subscribing --------------------------------------------------------------------

    def subscribe(  # type: ignore[override]
        self, topic: str, handler: Handler, on_gap: GapHandler | None = None
    ) -> _Confirmation | None:
        """Subscribe; returns an awaitable done when Redis confirmed it (``None`` if it already had)."""
        handlers = self.handlers.setdefault(topic, [])
        if topic not in self._topics:
            self._topics[topic] = _Topic()
        if handler not in handlers:
            handlers.append(handler)
            if on_gap is not None:
                self._gap_handlers.setdefault(topic, {})[handler] = on_gap
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
        return _Confirmation(waiter, self.timeout)

    def unsubscribe(self, topic: str, handler: Handler) -> None:
        handlers = self.handlers.get(topic)
        if not handlers or handler not in handlers:
            return
        handlers.remove(handler)
        gaps = self._gap_handlers.get(topic)
        if gaps is not None:
            gaps.pop(handler, None)
        if not handlers:
            del self.handlers[topic]
            self._gap_handlers.pop(topic, None)
            self._topics.pop(topic, None)
            self._confirmed.discard(topic)
            if self._pubsub is not None:
                self._spawn(self._pubsub.unsubscribe(self._channel(topic)))

    def _spawn(self, coroutine: Any) -> None:
        async def guarded() -> None:
            try:
                await coroutine
            except _CONNECTION_ERRORS:
                pass  # the subscriber loop notices the broken connection and resubscribes

        self._background(guarded())

    async def _subscriber(self) -> None:
        backoff = self.reconnect_min
        while not self._closing:
            pubsub = self._client.pubsub()
            self._confirmed.clear()
            self._node_confirmed = False
            self._unechoed = 0
            self._stale = False
            self._fences.clear()  # their answers would come on the old connection
            self._fence_queue.clear()
            for state in self._topics.values():
                if state.epoch is not None and state.buffer is None:
                    state.buffer = []  # settled once subscribed again: hold live messages until then
            try:
                topics = set(self.handlers)
                await pubsub.subscribe(self._node_channel, *[self._channel(t) for t in topics])
                self._pubsub = pubsub
                added = set(self.handlers) - topics  # subscribed while we were connecting
                if added:
                    await pubsub.subscribe(*[self._channel(t) for t in added])
                logger.debug("= subscriber connected, %d topic(s)", len(self.handlers))
                backoff = self.reconnect_min
                # Not ``while True``: redis-py may swallow the cancellation that close() sends
                # while it waits for a message; the flag ends the loop anyway.
                while not self._closing:
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
                    elif message is None and (self._stale or self._unechoed >= 4):
                        # Idle, and this node's own messages do not come back: the subscription is dead.
                        self._counters["stale"] += 1
                        raise _StaleSubscription
            except Exception as error:  # connection errors, a stale subscription, or a bug: start again
                if not isinstance(error, (*_CONNECTION_ERRORS, _StaleSubscription, ResponseError)):
                    logger.exception("! subscriber failed; subscribing again")
                logger.debug("! subscriber lost: %r", error)
                self._pubsub = None
                self._begin_outage("subscription stalled" if isinstance(error, _StaleSubscription) else error)
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
            self._node_confirmed = True
            return
        topic = self._topic(channel)
        state = self._topics.get(topic)
        if state is not None:
            self._confirmed.add(topic)
            # From now on Redis sends this node the topic's messages: learn where it
            # stands, or settle what it missed while it was not subscribed.
            self._queue_fence(topic, _SETTLE if state.buffer is not None else _LOCATE)
        for waiter in self._waiters.pop(topic, ()):
            if not waiter.done():
                waiter.set_result(None)

    def _listening(self) -> bool:
        """Whether Redis sends this node every topic it is subscribed to."""
        return self._pubsub is not None and self._node_confirmed and len(self._confirmed) >= len(self.handlers)

    # Receiving ----------------------------------------------------------------------

    def _receive(self, channel: bytes, data: bytes) -> None:
        if channel == self._node_channel.encode():
            self._echo(data)
            return
        topic = self._topic(channel)
        epoch = None
        offset = 0
        if data[:1] == b"\x02":  # a topic without history: its position is in a header
            epoch_bytes, offset_bytes, data = data[1:].split(b"\x00", 2)
            epoch, offset = epoch_bytes.decode(), int(offset_bytes)
        exclude = None
        if data[:1] == b"\x01":
            node, sequence, data = data[1:].split(b"\x00", 2)
            if node == self.node_id.encode():
                exclude = self._excluded.pop(int(sequence), None)
        history = False
        if epoch is None and data.endswith(b'"}}'):
            match = _POSITION.search(data)
            if match is not None:
                epoch, offset, history = match.group(2).decode(), int(match.group(1)), True
        state = self._topics.get(topic)
        if state is None or epoch is None:
            self._deliver(topic, data, exclude)
        elif state.buffer is not None:
            state.buffer.append((offset, epoch, history, data, exclude))
        else:
            self._advance(topic, state, offset, epoch, history, data, exclude)

    def _advance(
        self, topic: str, state: _Topic, offset: int, epoch: str, history: bool, data: bytes, exclude: Any
    ) -> None:
        """Deliver a live message in its place: the next one, or after a gap (filled from
        the stream for history topics, counted as missed for the others)."""
        if (
            state.epoch is None
            or (epoch != state.epoch and offset == 1)
            or (epoch == state.epoch and offset == state.offset + 1)
        ):
            state.epoch, state.offset = epoch, offset
            self._deliver(topic, data, exclude)
        elif epoch == state.epoch and offset <= state.offset:
            if not history:  # no stream can have delivered it: not a copy
                self._deliver(topic, data, exclude)
        elif history:
            state.buffer = [(offset, epoch, history, data, exclude)]
            self._queue_fence(topic, _SETTLE)
        else:
            missed = offset - 1 if epoch != state.epoch else offset - state.offset - 1
            state.epoch, state.offset = epoch, offset
            self._missed(topic, missed)
            self._deliver(topic, data, exclude)

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

    def _missed(self, topic: str, count: int) -> None:
        """This node's clients of ``topic`` missed ``count`` messages: count them, tell the services."""
        if count <= 0:
            return
        self._counters["missed"] += count
        self._counters["gaps_lost"] += 1
        if self._outage.down:
            self._outage.missed += count
            self._outage.channels.add(topic)
        else:
            logger.warning("! %d message(s) of %s missed while this node was not listening", count, topic)
        for on_gap in list(self._gap_handlers.get(topic, {}).values()):
            try:
                on_gap(topic, count)
            except Exception:
                logger.exception("! gap handler %r failed for topic %s", on_gap, topic)

    # Fences -------------------------------------------------------------------------

    def _queue_fence(self, topic: str, mode: int) -> None:
        """Read ``topic``'s position behind a fence; the topics of one loop turn share one."""
        if self._fence_queue.get(topic) != _SETTLE:
            self._fence_queue[topic] = mode
        if self._fence_flush is None:
            self._fence_flush = asyncio.get_running_loop().call_soon(self._send_fence)

    def _send_fence(self) -> None:
        self._fence_flush = None
        queued, self._fence_queue = self._fence_queue, {}
        items = [(topic, self._topics[topic], mode) for topic, mode in queued.items() if topic in self._topics]
        if items:
            fence = _Fence(next(self._fence_ids), items)
            self._fences[fence.id] = fence
            self._background(self._run_fence(fence))

    async def _run_fence(self, fence: _Fence) -> None:
        backoff = self.reconnect_min
        while fence.id in self._fences and not self._closing:
            pipe = self._client.pipeline(transaction=False)
            for topic, state, mode in fence.items:
                stream, meta = self._stream_keys(topic)
                since = state.offset if state.epoch else 0
                args = [since, state.epoch or "", 1 if mode == _SETTLE else 0]
                pipe.evalsha(_SHAS[_READ_POSITION], 2, meta, stream, *args)
            pipe.publish(self._node_channel, b"fence:%d" % fence.id)
            try:
                results = await self._run_scripts(pipe)
            except (*_CONNECTION_ERRORS, ResponseError) as error:
                self._begin_outage(error)
                await asyncio.sleep(_jitter(backoff))
                backoff = min(backoff * 2, self.reconnect_max)
                continue
            fence.reads = results[:-1]
            if fence.echoed:
                self._settle(fence)
            return

    def _echo(self, data: bytes) -> None:
        """This node's own message came back: the subscription works."""
        self._unechoed = 0
        if data.startswith(b"fence:"):
            fence = self._fences.get(int(data[6:]))
            if fence is not None:
                fence.echoed = True
                if fence.reads is not None:
                    self._settle(fence)
        self._maybe_recovered()

    def _settle(self, fence: _Fence) -> None:
        del self._fences[fence.id]
        assert fence.reads is not None
        for (topic, state, mode), (epoch, top, entries) in zip(fence.items, fence.reads, strict=True):
            if self._topics.get(topic) is not state:
                continue  # unsubscribed since
            epoch = epoch.decode()
            if mode == _SETTLE and state.buffer is not None:
                self._fill(topic, state, epoch, int(top), entries)
            elif mode == _LOCATE and state.buffer is None:
                if state.epoch is None:
                    state.epoch, state.offset = epoch, int(top)
                elif state.epoch == epoch:
                    state.offset = max(state.offset, int(top))
        self._maybe_recovered()

    def _fill(self, topic: str, state: _Topic, epoch: str, top: int, entries: list[Any]) -> None:
        """Deliver what the stream holds after this node's offset and the live messages held
        meanwhile, in order and once; count the rest of the offsets up to ``top`` as missed."""
        buffer, state.buffer = state.buffer or [], None
        if state.epoch is None:  # nothing delivered yet: nothing to count either
            state.epoch, state.offset = epoch, top
            for offset, item_epoch, _history, data, exclude in buffer:
                if item_epoch == state.epoch:
                    state.offset = max(state.offset, offset)
                self._deliver(topic, data, exclude)
            return
        if epoch != state.epoch:  # a new stream (Redis lost the old one): all of it is new here
            state.epoch, state.offset = epoch, 0
        missed = filled = 0
        for entry_id, fields in entries:
            offset = int(entry_id.split(b"-")[0])
            if offset <= state.offset:
                continue
            missed += offset - state.offset - 1
            state.offset = offset
            filled += 1
            values = dict(zip(fields[::2], fields[1::2], strict=True))
            self._deliver(topic, values[b"d"])
        for offset, item_epoch, history, data, exclude in buffer:
            if item_epoch != state.epoch:
                self._deliver(topic, data, exclude)  # from a stream that is gone: never dropped
            elif offset > state.offset:
                missed += offset - state.offset - 1
                state.offset = offset
                self._deliver(topic, data, exclude)
            elif not history:
                self._deliver(topic, data, exclude)
        if top > state.offset:
            missed += top - state.offset
            state.offset = top
        if filled:
            self._counters["gaps_filled"] += 1
        self._missed(topic, missed)

    # Outages ------------------------------------------------------------------------

    def _begin_outage(self, error: BaseException | str) -> None:
        if self._closing:
            return
        if self._outage.begin(error):
            assert self._back is not None
            self._back.clear()
            self._gate = bool(self._peers)

    def _settled_everything(self) -> bool:
        """Whether this node hears every topic it is subscribed to and has settled them all."""
        if not self._listening() or self._fences or self._fence_queue:
            return False
        return all(state.buffer is None for state in self._topics.values())

    def _maybe_recovered(self) -> None:
        """End the outage once this node hears itself on a subscription that covers every
        topic, has settled them all, and has written its presence entries again."""
        if self._outage.down and not self._recovering and self._settled_everything():
            self._recovering = True
            self._background(self._recover())

    async def _recover(self) -> None:
        try:
            # Entries Redis lost (a restart) or removed as expired (this node was paused)
            # come back before the outage is over.
            pipe = self._client.pipeline(transaction=False)
            refreshed = self._queue_refresh(pipe, time.time())
            if refreshed:
                self._refreshed(refreshed, await self._run_refresh(pipe))
        except (*_CONNECTION_ERRORS, ResponseError, BrokerUnavailable):
            return  # still unreachable: the next message to itself tries again
        finally:
            self._recovering = False
        if self._outage.down and self._settled_everything():
            self._outage.end()
            assert self._back is not None and self._wake is not None
            self._back.set()
            self._wake.set()

    # Heartbeat ----------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        # Not ``while True``: redis-py may turn a cancellation into a connection error.
        while not self._closing:
            try:
                await self._beat()
                if self._pubsub is None and self._hurry is not None:
                    self._hurry.set()  # Redis answers again: the subscriber stops its backoff
            except (*_CONNECTION_ERRORS, BrokerUnavailable) as error:
                self._begin_outage(error)
            except ResponseError as error:
                if not _transient(error):
                    logger.exception("! heartbeat failed")
                self._begin_outage(str(error).split(" ")[0])
            await asyncio.sleep(self.heartbeat)

    async def _beat(self) -> None:
        now = time.time()
        pipe = self._client.pipeline(transaction=False)
        keys = [f"{self.prefix}:nodes", f"{self.prefix}:listening"]
        refresh_every = max(1, int(self.presence_ttl / 3 / self.heartbeat))
        refreshed: list[tuple[str, list[Any]]] = []
        if self._heartbeats % refresh_every == 0:
            refreshed = self._queue_refresh(pipe, now)
        learn_peers = not self._outage.down
        if learn_peers:
            pipe.zrangebyscore(keys[0], now - self.node_ttl, "+inf")
        pipe.evalsha(_SHAS[_BEAT], 2, *keys, self.node_id, now, int(self._listening()), self._node_channel)
        # Redis's count of listeners says something only about a subscription it had confirmed before.
        subscription = self._pubsub if self._node_confirmed else None
        results = await (self._run_refresh(pipe) if refreshed else self._run_scripts(pipe))
        self._heartbeats += 1
        if learn_peers:
            self._peers = {node.decode() for node in results[-2]} - {self.node_id}
        receivers = results[-1]
        if receivers == 0 and subscription is not None and subscription is self._pubsub:
            self._stale = True  # Redis says nobody listens on this node's channel
        elif receivers:
            self._unechoed += 1
        self._refreshed(refreshed, results)
        if self._watched and self._heartbeats % 2 == 0:
            for key in list(self._watched):
                await self.presence_list(key)

    def _queue_refresh(self, pipe: Any, now: float) -> list[tuple[str, list[Any]]]:
        """Add a refresh of every owned presence entry to ``pipe``; the (key, entries) refreshed."""
        refreshed = self._ledger.snapshot()
        expires = int((now + self.presence_ttl) * 1000)
        for key, flat in refreshed:
            args = [*self._presence_args(), expires, *flat]
            pipe.evalsha(_SHAS[_PRESENCE_REFRESH], 3, *self._presence_keys(key), *args)
        return refreshed

    async def _run_refresh(self, pipe: Any) -> list[Any]:
        """Run a pipeline holding a refresh; removals wait until it is done."""
        refreshing = self._ledger.refreshing = asyncio.get_running_loop().create_future()
        try:
            return await self._run_scripts(pipe)
        finally:
            refreshing.set_result(None)
            if self._ledger.refreshing is refreshing:
                self._ledger.refreshing = None

    def _refreshed(self, refreshed: list[tuple[str, list[Any]]], results: list[Any]) -> None:
        """Report what a refresh found: entries that expired, and this node's own entries that
        were removed meanwhile (written again, see :meth:`_restore`)."""
        for (key, flat), (gone, remaining, refused) in zip(refreshed, results[: len(refreshed)], strict=True):
            if gone:
                self._expired(key, _pairs(gone), _pairs(remaining))
            if refused:
                tokens = dict(zip(flat[::3], flat[1::3], strict=True))
                self._restore(key, {member.decode(): tokens[member.decode()] for member in refused})

    # History ------------------------------------------------------------------------

    async def history(  # type: ignore[override]
        self, topic: str, since: tuple[int, str] | None = None, ttl: float = 300.0
    ) -> HistoryResult:
        asked = since[0] if since is not None else -1
        epoch, top, entries = await self._eval(
            _READ_HISTORY, self._stream_keys(topic), [int(ttl * 1000), secrets.token_hex(4), asked, 300_000]
        )
        result = HistoryResult(int(top), epoch.decode())
        state = self._topics.get(topic)
        if state is not None and state.epoch is None and state.buffer is None:
            # What a subscriber is told it has seen, this node has seen: from here on,
            # anything this node misses (an outage) is filled from the stream.
            state.epoch, state.offset = result.epoch, result.offset
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

    def presence_add(  # type: ignore[override]
        self, key: str, member: str, info: bytes, ttl: float = 30.0, only_if_absent: bool = False
    ) -> asyncio.Task[bool]:
        """Own ``member`` of ``key`` from now on and write it; a task telling whether it was added.

        The entry is this node's until :meth:`presence_remove`: if the write fails (Redis
        unreachable, :class:`~snorky.errors.BrokerUnavailable`), the next refresh makes it.
        """
        token = self._ledger.own(key, member, info, only_if_absent)
        return self._ledger.after(
            key,
            member,
            lambda: self._write_presence(key, member, token, info, only_if_absent),
            removal=False,
            patience=self.timeout,
        )

    async def _write_presence(self, key: str, member: str, token: str, info: bytes, claim: bool) -> bool:
        if not self._ledger.owns(key, member, token):
            return False  # removed before it was written
        expires = int((time.time() + self.presence_ttl) * 1000)
        args = [*self._presence_args(), member, token, info, int(claim), expires]
        added = await self._eval(_PRESENCE_ADD, self._presence_keys(key), args)
        if added != 1:
            self._ledger.disown(key, member, token)
        return bool(added == 1)

    def presence_remove(self, key: str, member: str) -> Awaitable[bool]:  # type: ignore[override]
        """Stop owning ``member`` of ``key`` and remove it, once Redis answers (through outages).

        The task's result: whether the departure is the caller's to report (``True``:
        this call removed the entry, or Redis had lost it in a restart), not
        (``False``: it was removed as expired, and reported then, or it was not this
        node's).
        """
        token = self._ledger.disown(key, member)
        if token is None:
            done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            done.set_result(False)
            return done
        # Leaving from now on: a close before the removal is done (waiting its turn, or for
        # Redis) does it itself.
        self._ledger.leaving[key, member, token] = None
        return self._ledger.after(
            key, member, lambda: self._remove_presence(key, member, token), removal=True, patience=self.timeout
        )

    async def _remove_presence(self, key: str, member: str, token: str) -> bool:
        while True:
            try:
                args = [*self._presence_args(), member, token]
                removed = bool(await self._eval(_PRESENCE_REMOVE, self._presence_keys(key), args) >= 0)
            except BrokerUnavailable:
                assert self._back is not None
                await self._back.wait()  # the outage ends when Redis answers again
            else:
                del self._ledger.leaving[key, member, token]
                return removed

    async def presence_list(self, key: str) -> dict[str, bytes]:  # type: ignore[override]
        gone, current = await self._eval(_PRESENCE_LIST, self._presence_keys(key), self._presence_args())
        remaining = _pairs(current)
        if gone:
            self._expired(key, _pairs(gone), remaining)
        return remaining

    async def presence_count(self, key: str) -> int:  # type: ignore[override]
        gone, count = await self._eval(_PRESENCE_COUNT, self._presence_keys(key), self._presence_args())
        if gone:
            self._expired(key, _pairs(gone), await self.presence_list(key))
        return int(count)

    def _expired(self, key: str, expired: dict[str, bytes], remaining: dict[str, bytes]) -> None:
        callback = self._watched.get(key)
        if callback is not None:
            try:
                callback(key, expired, remaining)
            except Exception:
                logger.exception("! presence expiry handler failed for %s", key)

    def _restore(self, key: str, refused: dict[str, str]) -> None:
        """Entries this node owns (``refused`` maps them to the tokens refreshed) were removed
        as expired (this node was paused) or are held by another: write them again with new
        tokens, and report the ones written."""
        restored: dict[str, bytes] = {}

        async def write(member: str, info: bytes, claim: bool) -> None:
            if await self.presence_add(key, member, info, only_if_absent=claim):
                restored[member] = info
            elif claim:
                logger.warning("! %s of %s is held by another node now", member, key)

        async def restore_all() -> None:
            owned = self._ledger.owned.get(key, {})
            writes = [(m, owned[m][1], owned[m][2]) for m, token in refused.items() if owned.get(m, ("",))[0] == token]
            results = await asyncio.gather(*(write(*w) for w in writes), return_exceptions=True)
            for result in results:
                if isinstance(result, Exception) and not isinstance(result, BrokerUnavailable):
                    logger.error("! could not restore a presence entry of %s: %r", key, result)
            if restored:
                self._counters["presence_restored"] += len(restored)
                callback = self._restore_watchers.get(key)
                if callback is not None:
                    try:
                        callback(key, restored, {})
                    except Exception:
                        logger.exception("! presence restore handler failed for %s", key)

        self._background(restore_all())

    def watch_presence(
        self, key: str, on_expired: PresenceHandler | None, on_restored: PresenceHandler | None = None
    ) -> None:
        if on_expired is None:
            self._watched.pop(key, None)
            self._restore_watchers.pop(key, None)
            return
        self._watched[key] = on_expired
        if on_restored is not None:
            self._restore_watchers[key] = on_restored

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
            "peers": len(self._peers),
            "connected": not self._outage.down and self._pubsub is not None,
            **self._counters,
        }


def _jitter(backoff: float) -> float:
    """Full jitter: a random wait between 0 and ``backoff`` seconds."""
    return random.uniform(0, backoff)


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    return url.replace(parts.password, "***") if parts.password else url
