"""Publishing: the queue of publishes (the outbox), and the writer that sends it to Redis
in batches, each one script that skips the publishes Redis already ran."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Generator
from typing import Any

from redis.exceptions import ResponseError

from snorky.brokers.base import History
from snorky.brokers.redis.link import CONNECTION_ERRORS, Link, now_ms, transient
from snorky.brokers.redis.scripts import PUBLISH_BATCH, SHAS
from snorky.errors import BrokerUnavailable
from snorky.histogram import Histogram
from snorky.protocol import Outbound

__all__ = ["Outbox", "Publisher", "Refused"]

logger = logging.getLogger("snorky.brokers.redis")


class Refused:
    """The result of a publish the full queue refused: awaiting it raises
    :class:`~snorky.errors.BrokerUnavailable`; left alone, it is silent."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        raise BrokerUnavailable()
        yield  # pragma: no cover - makes this a generator


class _Publish:
    """One publish waiting in the queue."""

    __slots__ = ("topic", "data", "history", "seq", "tagged", "sent", "queued")

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
        self.queued = time.perf_counter()
        """When it was published, for the latency in the metrics."""


class Outbox:
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
        self.latency = Histogram()
        """Seconds from each publish to Redis's answer for it."""

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
        now = time.perf_counter()
        observe = self.latency.observe
        for _ in range(count):
            item = self.queue.popleft()
            observe(now - item.queued)
            future = item.sent
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


class Publisher:
    """Queues publishes and sends them: at once while Redis answers, after an outage once
    the other nodes listen again.

    ``excluded`` maps the sequence number of a tagged publish to the local client it
    must skip when it comes back to this node (the subscriber pops it).
    """

    def __init__(self, link: Link, excluded: OrderedDict[int, Any], max_pending: int, counter_ttl: float) -> None:
        self.link = link
        self.excluded = excluded
        self.max_pending = max_pending
        self.counter_ttl = counter_ttl
        self.outbox = Outbox(max_pending, link.timeout)

    def publish(
        self, topic: str, out: Outbound, history: History | None, local: bool
    ) -> asyncio.Future[None] | Refused | None:
        """Queue ``out`` (``local``: this node is subscribed to ``topic``); what to await for the answer."""
        link = self.link
        data = out.json
        if history is not None and not data.endswith(b"}}"):
            raise ValueError("a message kept in history must be an object at the end of its envelope")
        if self.outbox.full:
            link.counters["dropped"] += 1
            link.outage.refused += 1
            if link.counters["dropped"] == 1 or link.outage.refused == 1:
                logger.error("! publish queue full (%d): refusing publishes until Redis takes them", self.max_pending)
            return Refused()
        down = link.outage.down or not link.started
        # The message comes back to this node too; a tag tells it which local client to
        # skip (other nodes just strip it). History keeps it untagged.
        tagged = out.exclude is not None and local
        item = self.outbox.add(topic, data, history, tagged, answer=not down)
        if tagged:
            self.excluded[item.seq] = out.exclude
            if len(self.excluded) > 10_000:  # messages lost in an outage never come back
                self.excluded.popitem(last=False)
        if down:
            link.outage.queued += 1
        if link.started:
            link.wake.set()
        return item.sent

    async def run(self) -> None:
        """The writer: send the queue whenever there is something in it and Redis takes it."""
        link = self.link
        retried = False
        while not link.closing:
            await link.wake.wait()
            link.wake.clear()
            while self.outbox and not link.closing:
                if link.outage.down:
                    await link.back.wait()  # the heartbeat and the subscriber find out when Redis is back
                    continue
                if link.gate:
                    await self._wait_for_listeners()
                    continue
                batch = self.outbox.batch()
                try:
                    fresh = await self._send(batch)
                except CONNECTION_ERRORS as error:
                    if not retried:  # a pooled connection from before an outage fails on first use
                        retried = True
                        continue
                    retried = False
                    link.begin_outage(error)
                    continue
                except ResponseError as error:
                    retried = False
                    if transient(error):
                        link.begin_outage(str(error).split(" ")[0])
                        continue
                    logger.exception("! Redis refused a batch of %d publish(es); dropped", len(batch))
                    self._drop(batch)
                    continue
                except Exception:
                    retried = False
                    logger.exception("! could not send a batch of %d publish(es); dropped", len(batch))
                    self._drop(batch)
                    continue
                retried = False
                self.outbox.sent(len(batch))
                link.counters["published"] += fresh
                link.counters["resent"] += len(batch) - fresh

    def _drop(self, batch: list[_Publish]) -> None:
        self.link.counters["dropped"] += len(batch)
        self.outbox.failed(len(batch), BrokerUnavailable())

    async def _send(self, batch: list[_Publish]) -> int:
        """Run one batch in one script; how many of its publishes were new to Redis."""
        link = self.link
        keys = [f"{link.prefix}:pid:{link.incarnation}"]
        args: list[Any] = [batch[0].seq, now_ms(), secrets.token_hex(4), 86_400_000]
        counter_ttl = int(self.counter_ttl * 1000)
        node = link.node_id.encode()
        for item in batch:
            stream, meta = link.stream_keys(item.topic)
            keys += [meta, stream]
            tag = b"\x01%s\x00%d\x00" % (node, item.seq) if item.tagged else b""
            if item.history is None:
                args += [link.channel(item.topic), 0, counter_ttl, tag, item.data]
            else:
                args += [link.channel(item.topic), item.history.size, int(item.history.ttl * 1000), tag, item.data]
        pipe = link.client.pipeline(transaction=False)
        pipe.evalsha(SHAS[PUBLISH_BATCH], len(keys), *keys, *args)
        return int((await link.run_scripts(pipe))[0])

    async def _wait_for_listeners(self) -> None:
        """After an outage: wait until every node that was alive before it listens again
        (each marks itself so in its heartbeat, in Redis's time).

        A node that does not heartbeat within ``max(timeout, 4 * heartbeat)`` seconds is
        taken for dead; one that heartbeats but is still subscribing again is waited for
        up to ``reconnect_max + timeout`` seconds.
        """
        link = self.link
        waiting: dict[str, float | None] = dict.fromkeys(sorted(link.peers))  # peer -> liveness score first read
        alive: set[str] = set()
        started = time.monotonic()
        since = None
        while waiting and not link.outage.down:
            elapsed = time.monotonic() - started
            if elapsed > link.reconnect_max + link.timeout:
                break
            if elapsed > max(link.timeout, 4 * link.heartbeat):
                waiting = {peer: score for peer, score in waiting.items() if peer in alive}
                if not waiting:
                    break
            try:
                if since is None:
                    seconds, micros = await link.client.time()
                    since = seconds * 1000 + micros // 1000
                pipe = link.client.pipeline(transaction=False)
                for peer in waiting:
                    pipe.zscore(f"{link.prefix}:listening", peer)
                    pipe.zscore(f"{link.prefix}:nodes", peer)
                scores = await pipe.execute()
            except CONNECTION_ERRORS:
                await asyncio.sleep(link.reconnect_min)
                continue
            for (peer, first), listening, beat in zip(list(waiting.items()), scores[::2], scores[1::2], strict=True):
                if listening is not None and listening >= since:
                    del waiting[peer]
                elif first is None:
                    waiting[peer] = beat if beat is not None else -1.0
                elif beat is not None and beat != first:
                    alive.add(peer)  # it heartbeats: subscribing again, worth waiting for
            if waiting:
                await asyncio.sleep(min(link.heartbeat / 4, 0.25))
        if link.outage.down:
            return
        if waiting:
            logger.warning(
                "= %d node(s) not listening %.1f s after the outage: sending the queue",
                len(waiting),
                time.monotonic() - started,
            )
        link.gate = False
