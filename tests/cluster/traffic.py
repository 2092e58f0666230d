"""Steady PubSub traffic through a cluster, counted message by message.

Publishers send numbered messages at a steady rate through real WebSocket
connections to the nodes, without waiting for each answer, and record every
answer. Listeners are real WebSocket connections that record every message and
every ``gap`` push they get. :func:`tally` then counts, per channel, what was
published, acknowledged, refused, delivered, duplicated and lost, and what the
listeners were told they missed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from tornado.websocket import websocket_connect

from snorky.auth import sign_token
from tests.cluster.harness import SECRET, TIMEOUT, Node

logger = logging.getLogger(__name__)


class Connection:
    """One WebSocket connection: calls, and a record of the PubSub pushes it got."""

    def __init__(self, ws: Any, node: Node) -> None:
        self.ws = ws
        self.node = node
        self.channels: list[str] = []
        """The channels it subscribed to."""
        self.answers: dict[int, asyncio.Future[Any]] = {}
        self.calls = itertools.count(1)
        self.received: dict[str, Counter[int]] = {}
        """Channel -> message number -> how many times it arrived."""
        self.told: Counter[str] = Counter()
        """Channel -> how many messages the node said it missed (``gap`` pushes)."""
        self.markers: dict[str, asyncio.Event] = {}
        self.closed = asyncio.Event()
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, node: Node, identity: str | None = None) -> Connection:
        query = f"?token={sign_token(identity, SECRET)}" if identity else ""
        return cls(await websocket_connect(f"ws://127.0.0.1:{node.port}/ws{query}"), node)

    async def _read(self) -> None:
        while True:
            raw = await self.ws.read_message()
            if raw is None:
                self.closed.set()
                return
            message = orjson.loads(raw)["message"]
            kind = message.get("type")
            if kind == "message":
                body = message["message"]
                if "marker" in body:
                    self.markers.setdefault(body["marker"], asyncio.Event()).set()
                else:
                    self.received.setdefault(message["channel"], Counter())[body["n"]] += 1
            elif kind == "gap":
                self.told[message["channel"]] += message["missed"]
            elif kind in ("response", "error"):
                waiter = self.answers.pop(message.get("callId"), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(message)

    def send(self, service: str, command: str, **params: Any) -> asyncio.Future[Any]:
        """Send a call; the future gets its answer (``response`` or ``error``)."""
        call_id = next(self.calls)
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.answers[call_id] = answer
        frame = {"service": service, "message": {"command": command, "params": params, "callId": call_id}}
        self.ws.write_message(orjson.dumps(frame).decode())
        return answer

    async def call(self, service: str, command: str, **params: Any) -> Any:
        answer = await asyncio.wait_for(self.send(service, command, **params), TIMEOUT)
        if answer["type"] != "response":
            raise AssertionError(answer)
        return answer["data"]

    async def subscribe(self, channel: str) -> None:
        await self.call("pubsub", "subscribe", channel=channel)
        self.channels.append(channel)

    async def marker(self, name: str) -> None:
        """Wait for the marker message ``name``: every message published before it has arrived."""
        await asyncio.wait_for(self.markers.setdefault(name, asyncio.Event()).wait(), TIMEOUT)

    def close(self) -> None:
        self.reader.cancel()
        self.ws.close()


async def listeners(nodes: list[Node], count: int, channels: list[str]) -> list[Connection]:
    """``count`` connections spread over ``nodes`` and ``channels`` (one channel each), subscribed."""
    connections = list(await asyncio.gather(*(Connection.open(nodes[i % len(nodes)]) for i in range(count))))
    # i // len(nodes): every node gets subscribers of every channel
    await asyncio.gather(*(c.subscribe(channels[i // len(nodes) % len(channels)]) for i, c in enumerate(connections)))
    return connections


@dataclass
class Publication:
    channel: str
    n: int
    sent: float
    answer: str | None = None
    """``ok``, an error code, or ``None`` while unanswered."""
    latency: float | None = None


class Traffic:
    """Numbered messages at ``rate`` per second, alternating over channels and publishers."""

    def __init__(self, publishers: list[Connection], channels: list[str], rate: float) -> None:
        self.publishers = publishers
        self.channels = channels
        self.rate = rate
        self.publications: list[Publication] = []
        self.acked = 0
        self._acked_event = asyncio.Event()
        self._running = False
        self._task: asyncio.Task[None] | None = None
        self._answers: set[asyncio.Future[Any]] = set()

    def start(self) -> None:
        self._running = True
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        interval = 1 / self.rate
        started = time.monotonic()
        for i in itertools.count():
            if not self._running:
                return
            channel = self.channels[i % len(self.channels)]
            publisher = self.publishers[i % len(self.publishers)]
            publication = Publication(channel, i, time.monotonic())
            self.publications.append(publication)
            answer = publisher.send("pubsub", "publish", channel=channel, message={"n": i})
            answer.add_done_callback(lambda done, p=publication: self._answered(p, done.result()))
            self._answers.add(answer)
            answer.add_done_callback(self._answers.discard)
            # Pacing a load generator, not waiting for an event.
            await asyncio.sleep(max(0.0, started + (i + 1) * interval - time.monotonic()))

    def _answered(self, publication: Publication, message: Any) -> None:
        publication.latency = time.monotonic() - publication.sent
        publication.answer = "ok" if message["type"] == "response" else message.get("code", "error")
        if publication.answer == "ok":
            self.acked += 1
            self._acked_event.set()

    async def acknowledged(self, more: int) -> None:
        """Wait until ``more`` further publishes have been acknowledged."""
        target = self.acked + more

        async def wait() -> None:
            while self.acked < target:
                self._acked_event.clear()
                await self._acked_event.wait()

        await asyncio.wait_for(wait(), TIMEOUT * 2)

    async def stop(self, connections: list[Connection]) -> None:
        """Stop publishing, wait for every answer, then send a marker on each channel and wait
        until every connection got it: whatever was published before has arrived by then."""
        self._running = False
        assert self._task is not None
        await self._task
        if self._answers:
            await asyncio.wait_for(asyncio.wait(list(self._answers)), TIMEOUT * 2)
        for channel in self.channels:
            await self.publishers[0].call("pubsub", "publish", channel=channel, message={"marker": channel})
        for connection in connections:
            for channel in connection.channels:
                await connection.marker(channel)


@dataclass
class Tally:
    """Counts for one channel, message by message."""

    channel: str
    published: int = 0
    acked: int = 0
    refused: int = 0
    unanswered: int = 0
    subscribers: int = 0
    delivered: int = 0
    duplicated: int = 0
    lost: int = 0
    """Acknowledged messages a connection that stayed open did not get."""
    told: int = 0
    """What the connections were told they missed (``gap`` pushes)."""
    unannounced: int = 0
    """Messages lost without the connection being told: must be 0."""
    slowest_answer: float = 0.0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.channel}: published {self.published}, acked {self.acked}, refused {self.refused}, "
            f"unanswered {self.unanswered}, subscribers {self.subscribers}, delivered {self.delivered}, "
            f"duplicated {self.duplicated}, "
            f"lost {self.lost}, told {self.told}, unannounced {self.unannounced}, "
            f"slowest answer {self.slowest_answer:.2f} s"
        )


def tally(traffic: Traffic, connections: list[Connection]) -> dict[str, Tally]:
    """Count each channel's publications against what each connection received."""
    tallies = {channel: Tally(channel) for channel in traffic.channels}
    acked: dict[str, set[int]] = {channel: set() for channel in traffic.channels}
    for p in traffic.publications:
        t = tallies[p.channel]
        t.published += 1
        if p.answer is None:
            t.unanswered += 1
        elif p.answer == "ok":
            t.acked += 1
            acked[p.channel].add(p.n)
        else:
            t.refused += 1
        if p.latency is not None:
            t.slowest_answer = max(t.slowest_answer, p.latency)
    for connection in connections:
        for channel in connection.channels:
            t = tallies[channel]
            t.subscribers += 1
            received = connection.received.get(channel, Counter())
            t.delivered += sum(1 for n in received if n in acked[channel])
            t.duplicated += sum(count - 1 for count in received.values())
            missing = len(acked[channel] - set(received))
            t.lost += missing
            told = connection.told[channel]
            t.told += told
            # Told of more than it lost is fine (an unanswered publish may have been missed too).
            t.unannounced += max(0, missing - told)
    return tallies
