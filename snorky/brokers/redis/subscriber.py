"""Subscribing: the subscriber connection (rebuilt after every failure), and what this
node has delivered of each topic.

Every message of a topic carries the topic's next offset. When the node rebuilds its
subscription, it reads each topic's position behind a *fence* (a message to itself
through Redis, which arrives after every message published before the read),
delivers what history streams still hold, and counts the rest as missed; services
then tell their clients (a ``gap`` push).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from redis.exceptions import ResponseError

from snorky.brokers.base import GapHandler, Handler, HistoryResult
from snorky.brokers.redis.link import CONNECTION_ERRORS, Link, jitter
from snorky.brokers.redis.scripts import POSITION, READ_HISTORY, READ_POSITION, SHAS
from snorky.errors import BrokerUnavailable
from snorky.protocol import Outbound

__all__ = ["Confirmation", "Subscriber"]

logger = logging.getLogger("snorky.brokers.redis")


class Confirmation:
    """Awaiting it waits for Redis to confirm a subscription, at most ``timeout`` seconds,
    then raises :class:`~snorky.errors.BrokerUnavailable`. Nothing runs unless awaited."""

    __slots__ = ("waiter", "timeout")

    def __init__(self, waiter: asyncio.Future[None], timeout: float) -> None:
        self.waiter = waiter
        self.timeout = timeout

    def __await__(self) -> Generator[Any, None, None]:
        return self._wait().__await__()

    async def _wait(self) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self.waiter), self.timeout)
        except asyncio.TimeoutError:
            self.waiter.cancel()  # the broker forgets cancelled waiters
            raise BrokerUnavailable() from None


class _StaleSubscription(Exception):
    """The subscriber connection stopped delivering this node's own heartbeat."""


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


class Subscriber:
    """The topics this node listens to, their handlers, and the connection that brings
    their messages.

    ``excluded`` is shared with the publisher (a tagged message coming back names the
    local client to skip); ``on_settled`` is called whenever this node may have become
    whole again after an outage (it heard itself, or settled a fence).
    """

    def __init__(self, link: Link, excluded: OrderedDict[int, Any], on_settled: Callable[[], None]) -> None:
        self.link = link
        self.excluded = excluded
        self.on_settled = on_settled
        self.handlers: dict[str, list[Handler]] = {}
        self.topics: dict[str, _Topic] = {}
        self.pubsub: Any = None
        self.node_confirmed = False
        self.unechoed = 0
        """Heartbeats sent to this node's channel since one came back."""
        self.stale = False
        """Whether Redis said that nobody listens on this node's channel."""
        self._gap_handlers: dict[str, dict[Handler, GapHandler]] = {}
        self._confirmed: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._fences: dict[int, _Fence] = {}
        self._fence_ids = itertools.count(1)
        self._fence_queue: dict[str, int] = {}
        self._fence_flush: asyncio.Handle | None = None

    # Subscribing --------------------------------------------------------------------

    def subscribe(self, topic: str, handler: Handler, on_gap: GapHandler | None = None) -> Confirmation | None:
        """Subscribe; returns an awaitable done when Redis confirmed it (``None`` if it already had)."""
        handlers = self.handlers.setdefault(topic, [])
        if topic not in self.topics:
            self.topics[topic] = _Topic()
        if handler not in handlers:
            handlers.append(handler)
            if on_gap is not None:
                self._gap_handlers.setdefault(topic, {})[handler] = on_gap
            if len(handlers) == 1 and self.pubsub is not None:
                self._spawn(self.pubsub.subscribe(self.link.channel(topic)))
        if topic in self._confirmed:
            return None
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(topic, [])
        waiters[:] = [w for w in waiters if not w.done()]
        waiters.append(waiter)
        if self.pubsub is None and self.link.started:
            self.link.hurry.set()  # someone waits: the subscriber retries now instead of after its backoff
        return Confirmation(waiter, self.link.timeout)

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
            self.topics.pop(topic, None)
            self._confirmed.discard(topic)
            if self.pubsub is not None:
                self._spawn(self.pubsub.unsubscribe(self.link.channel(topic)))

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        async def guarded() -> None:
            try:
                await coroutine
            except CONNECTION_ERRORS:
                pass  # the subscriber loop notices the broken connection and resubscribes

        self.link.background(guarded())

    async def run(self) -> None:
        """Subscribe, deliver what arrives, and subscribe again whenever the connection fails."""
        backoff = self.link.reconnect_min
        while not self.link.closing:
            pubsub = self.link.client.pubsub()
            self._confirmed.clear()
            self.node_confirmed = False
            self.unechoed = 0
            self.stale = False
            self._fences.clear()  # their answers would come on the old connection
            self._fence_queue.clear()
            for state in self.topics.values():
                if state.epoch is not None and state.buffer is None:
                    state.buffer = []  # settled once subscribed again: hold live messages until then
            try:
                topics = set(self.handlers)
                await pubsub.subscribe(self.link.node_channel, *[self.link.channel(t) for t in topics])
                self.pubsub = pubsub
                added = set(self.handlers) - topics  # subscribed while we were connecting
                if added:
                    await pubsub.subscribe(*[self.link.channel(t) for t in added])
                logger.debug("= subscriber connected, %d topic(s)", len(self.handlers))
                backoff = self.link.reconnect_min
                # Not ``while True``: redis-py may swallow the cancellation that close() sends
                # while it waits for a message; the flag ends the loop anyway.
                while not self.link.closing:
                    message = await pubsub.get_message(timeout=self.link.heartbeat)
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
                    elif message is None and (self.stale or self.unechoed >= 4):
                        # Idle, and this node's own messages do not come back: the subscription is dead.
                        self.link.counters["stale"] += 1
                        raise _StaleSubscription
            except Exception as error:  # connection errors, a stale subscription, or a bug: start again
                if not isinstance(error, (*CONNECTION_ERRORS, _StaleSubscription, ResponseError)):
                    logger.exception("! subscriber failed; subscribing again")
                logger.debug("! subscriber lost: %r", error)
                self.pubsub = None
                self.link.begin_outage("subscription stalled" if isinstance(error, _StaleSubscription) else error)
                await self._pause(jitter(backoff))
                backoff = min(backoff * 2, self.link.reconnect_max)
                self.link.counters["reconnects"] += 1
            finally:
                self.pubsub = None
                try:
                    await pubsub.aclose()
                except CONNECTION_ERRORS:
                    pass

    async def _pause(self, delay: float) -> None:
        """Wait ``delay`` seconds before reconnecting, or less once a subscription waits for
        confirmation; then still ``reconnect_min``, so commands arriving during a long outage
        cost a few attempts per second, not a busy loop."""
        try:
            await asyncio.wait_for(self.link.hurry.wait(), delay)
        except asyncio.TimeoutError:
            return
        self.link.hurry.clear()
        await asyncio.sleep(self.link.reconnect_min)

    def _subscription_confirmed(self, channel: bytes) -> None:
        if channel == self.link.node_channel.encode():
            self.node_confirmed = True
            return
        topic = self.link.topic(channel)
        state = self.topics.get(topic)
        if state is not None:
            self._confirmed.add(topic)
            # From now on Redis sends this node the topic's messages: learn where it
            # stands, or settle what it missed while it was not subscribed.
            self._queue_fence(topic, _SETTLE if state.buffer is not None else _LOCATE)
        for waiter in self._waiters.pop(topic, ()):
            if not waiter.done():
                waiter.set_result(None)

    def listening(self) -> bool:
        """Whether Redis sends this node every topic it is subscribed to."""
        return self.pubsub is not None and self.node_confirmed and len(self._confirmed) >= len(self.handlers)

    # Receiving ----------------------------------------------------------------------

    def _receive(self, channel: bytes, data: bytes) -> None:
        if channel == self.link.node_channel.encode():
            self._echo(data)
            return
        topic = self.link.topic(channel)
        epoch = None
        offset = 0
        if data[:1] == b"\x02":  # a topic without history: its position is in a header
            epoch_bytes, offset_bytes, data = data[1:].split(b"\x00", 2)
            epoch, offset = epoch_bytes.decode(), int(offset_bytes)
        exclude = None
        if data[:1] == b"\x01":
            node, sequence, data = data[1:].split(b"\x00", 2)
            if node == self.link.node_id.encode():
                exclude = self.excluded.pop(int(sequence), None)
        history = False
        if epoch is None and data.endswith(b'"}}'):
            match = POSITION.search(data)
            if match is not None:
                epoch, offset, history = match.group(2).decode(), int(match.group(1)), True
        state = self.topics.get(topic)
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
        self.link.counters["delivered"] += 1
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
        self.link.counters["missed"] += count
        self.link.counters["gaps_lost"] += 1
        if self.link.outage.down:
            self.link.outage.missed += count
            self.link.outage.channels.add(topic)
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
        items = [(topic, self.topics[topic], mode) for topic, mode in queued.items() if topic in self.topics]
        if items:
            fence = _Fence(next(self._fence_ids), items)
            self._fences[fence.id] = fence
            self.link.background(self._run_fence(fence))

    async def _run_fence(self, fence: _Fence) -> None:
        backoff = self.link.reconnect_min
        while fence.id in self._fences and not self.link.closing:
            pipe = self.link.client.pipeline(transaction=False)
            for topic, state, mode in fence.items:
                stream, meta = self.link.stream_keys(topic)
                since = state.offset if state.epoch else 0
                args = [since, state.epoch or "", 1 if mode == _SETTLE else 0]
                pipe.evalsha(SHAS[READ_POSITION], 2, meta, stream, *args)
            pipe.publish(self.link.node_channel, b"fence:%d" % fence.id)
            try:
                results = await self.link.run_scripts(pipe)
            except (*CONNECTION_ERRORS, ResponseError) as error:
                self.link.begin_outage(error)
                await asyncio.sleep(jitter(backoff))
                backoff = min(backoff * 2, self.link.reconnect_max)
                continue
            fence.reads = results[:-1]
            if fence.echoed:
                self._settle(fence)
            return

    def _echo(self, data: bytes) -> None:
        """This node's own message came back: the subscription works."""
        self.unechoed = 0
        if data.startswith(b"fence:"):
            fence = self._fences.get(int(data[6:]))
            if fence is not None:
                fence.echoed = True
                if fence.reads is not None:
                    self._settle(fence)
        self.on_settled()

    def _settle(self, fence: _Fence) -> None:
        del self._fences[fence.id]
        assert fence.reads is not None
        for (topic, state, mode), (epoch, top, entries) in zip(fence.items, fence.reads, strict=True):
            if self.topics.get(topic) is not state:
                continue  # unsubscribed since
            epoch = epoch.decode()
            if mode == _SETTLE and state.buffer is not None:
                self._fill(topic, state, epoch, int(top), entries)
            elif mode == _LOCATE and state.buffer is None:
                if state.epoch is None:
                    state.epoch, state.offset = epoch, int(top)
                elif state.epoch == epoch:
                    state.offset = max(state.offset, int(top))
        self.on_settled()

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
            self.link.counters["gaps_filled"] += 1
        self._missed(topic, missed)

    def close(self) -> None:
        if self._fence_flush is not None:
            self._fence_flush.cancel()

    def settled_everything(self) -> bool:
        """Whether this node hears every topic it is subscribed to and has settled them all."""
        if not self.listening() or self._fences or self._fence_queue:
            return False
        return all(state.buffer is None for state in self.topics.values())

    # History ------------------------------------------------------------------------

    async def history(self, topic: str, since: tuple[int, str] | None, ttl: float) -> HistoryResult:
        """See :meth:`snorky.brokers.base.Broker.history`; a topic this node has not placed yet
        takes the position read as what it has delivered."""
        asked = since[0] if since is not None else -1
        epoch, top, entries = await self.link.eval(
            READ_HISTORY, self.link.stream_keys(topic), [int(ttl * 1000), secrets.token_hex(4), asked, 300_000]
        )
        result = HistoryResult(int(top), epoch.decode())
        state = self.topics.get(topic)
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
