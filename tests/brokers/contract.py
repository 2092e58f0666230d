"""The broker contract, run against every broker (test_memory.py, test_redis.py).

A test gets "nodes" from ``make_node()``: brokers sharing one backend (the same
MemoryBroker, or RedisBrokers on one Redis). Results that may be awaitable
(networked brokers) go through ``resolved()``; deliveries are awaited on queues.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from snorky.brokers.base import History
from snorky.protocol import Outbound

WAIT = 5.0


async def resolved(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def message(i: Any, service: str = "s") -> Outbound:
    return Outbound({"service": service, "message": {"type": "message", "n": i}})


class Recorder:
    """A topic handler that queues what it receives."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def __call__(self, topic: str, out: Outbound) -> None:
        self.queue.put_nowait((topic, out.value))

    async def next(self) -> Any:
        return await asyncio.wait_for(self.queue.get(), WAIT)

    async def numbers(self, count: int) -> list[Any]:
        return [(await self.next())[1]["message"]["n"] for _ in range(count)]


class BrokerContract:
    """Mixed into an IsolatedAsyncioTestCase that defines ``make_node()`` and ``subscribed(broker)``."""

    async def make_node(self) -> Any:
        raise NotImplementedError

    async def subscribed(self, broker: Any) -> None:
        """Wait until the broker's subscriptions are in effect (nothing to wait for in memory)."""

    async def test_publish_reaches_a_handler(self):
        """A publish reaches the handler subscribed to its topic, once."""
        node = await self.make_node()
        seen = Recorder()
        node.subscribe("t", seen)
        await self.subscribed(node)
        node.publish("t", message(1))
        self.assertEqual(await seen.next(), ("t", {"service": "s", "message": {"type": "message", "n": 1}}))
        node.publish("t", message(2))
        self.assertEqual((await seen.next())[1]["message"]["n"], 2)

    async def test_publish_on_one_node_reaches_another(self):
        """A publish on one node reaches handlers on every node, once each."""
        a, b = await self.make_node(), await self.make_node()
        on_a, on_b = Recorder(), Recorder()
        a.subscribe("t", on_a)
        b.subscribe("t", on_b)
        await self.subscribed(a)
        await self.subscribed(b)
        a.publish("t", message("hello"))
        self.assertEqual(await on_b.numbers(1), ["hello"])
        self.assertEqual(await on_a.numbers(1), ["hello"])
        self.assertTrue(on_a.queue.empty() and on_b.queue.empty())

    async def test_order_is_kept(self):
        """Many publishes arrive complete and in publish order."""
        a, b = await self.make_node(), await self.make_node()
        seen = Recorder()
        b.subscribe("t", seen)
        await self.subscribed(b)
        for i in range(1000):
            a.publish("t", message(i))
        self.assertEqual(await seen.numbers(1000), list(range(1000)))

    async def test_other_topics_and_unsubscribe(self):
        """Handlers get only their topic, and nothing after unsubscribing."""
        node = await self.make_node()
        first, second = Recorder(), Recorder()
        node.subscribe("a", first)
        node.subscribe("b", second)
        await self.subscribed(node)
        node.publish("a", message(1))
        self.assertEqual(await first.numbers(1), [1])
        node.unsubscribe("a", first)
        node.publish("a", message(2))
        node.publish("b", message(3))
        self.assertEqual(await second.numbers(1), [3])
        self.assertTrue(first.queue.empty())

    async def test_failing_handler_does_not_stop_others(self):
        """A handler that raises is logged; the other handlers still get the message."""
        node = await self.make_node()
        seen = Recorder()

        def broken(topic: str, out: Outbound) -> None:
            raise RuntimeError("bug")

        node.subscribe("t", broken)
        node.subscribe("t", seen)
        await self.subscribed(node)
        with self.assertLogs("snorky.brokers", "ERROR"):
            node.publish("t", message(1))
            self.assertEqual(await seen.numbers(1), [1])

    async def test_history_offsets_and_recovery(self):
        """History messages carry offsets; a reader recovers what came after its offset."""
        a, b = await self.make_node(), await self.make_node()
        seen = Recorder()
        b.subscribe("h", seen)
        await self.subscribed(b)
        start = await resolved(a.history("h", None, 60))
        for i in range(5):
            a.publish("h", message(i), History(size=10, ttl=60))
        received = [await seen.next() for _ in range(5)]
        self.assertEqual([m[1]["message"]["offset"] for m in received], [1, 2, 3, 4, 5])
        self.assertEqual({m[1]["message"]["epoch"] for m in received}, {start.epoch})
        result = await resolved(b.history("h", (2, start.epoch), 60))
        self.assertTrue(result.recovered)
        self.assertEqual([Outbound.from_json(p).value["message"]["n"] for p in result.publications], [2, 3, 4])
        self.assertEqual(result.offset, 5)

    async def test_history_gap_and_epoch(self):
        """A gap larger than the history, or another epoch, is not recovered."""
        node = await self.make_node()
        epoch = (await resolved(node.history("h", None, 60))).epoch
        for i in range(6):
            node.publish("h", message(i), History(size=3, ttl=60))
        await self.published(node)
        self.assertFalse((await resolved(node.history("h", (1, epoch), 60))).recovered)
        self.assertTrue((await resolved(node.history("h", (3, epoch), 60))).recovered)
        self.assertFalse((await resolved(node.history("h", (3, "other"), 60))).recovered)

    async def published(self, broker: Any) -> None:
        """Wait until every publish of ``broker`` reached the backend (nothing to wait for in memory)."""

    async def test_presence(self):
        """Presence entries are added, listed from any node, and removed."""
        a, b = await self.make_node(), await self.make_node()
        await resolved(a.presence_add("room", "a/1", b'{"identity":"ann"}'))
        await resolved(b.presence_add("room", "b/7", b'{"identity":"bob"}'))
        self.assertEqual(
            await resolved(a.presence_list("room")), {"a/1": b'{"identity":"ann"}', "b/7": b'{"identity":"bob"}'}
        )
        self.assertTrue(await resolved(b.presence_remove("room", "b/7")))
        self.assertFalse(await resolved(b.presence_remove("room", "b/7")))
        self.assertEqual(list(await resolved(b.presence_list("room"))), ["a/1"])

    async def test_key_values(self):
        """Key-value entries: set, get, set-if-absent and delete (which one caller wins)."""
        a, b = await self.make_node(), await self.make_node()
        self.assertTrue(await resolved(a.kv_set("k", b"v1", ttl=60)))
        self.assertEqual(await resolved(b.kv_get("k")), b"v1")
        self.assertFalse(await resolved(b.kv_set("k", b"v2", ttl=60, only_if_absent=True)))
        self.assertEqual(await resolved(a.kv_get("k")), b"v1")
        self.assertTrue(await resolved(b.kv_delete("k")))
        self.assertFalse(await resolved(a.kv_delete("k")))
        self.assertIsNone(await resolved(a.kv_get("k")))

    async def test_nodes(self):
        """A node lists itself among the live nodes."""
        node = await self.make_node()
        await self.published(node)
        self.assertIn(node.node_id, await resolved(node.nodes()))

    async def test_presence_claim(self):
        """only_if_absent adds a member once, however many nodes try: a cluster-wide claim."""
        a, b = await self.make_node(), await self.make_node()
        self.assertTrue(await resolved(a.presence_add("names", "alice", b"a", only_if_absent=True)))
        self.assertFalse(await resolved(b.presence_add("names", "alice", b"b", only_if_absent=True)))
        self.assertEqual(await resolved(b.presence_list("names")), {"alice": b"a"})
        await resolved(a.presence_remove("names", "alice"))
        self.assertTrue(await resolved(b.presence_add("names", "alice", b"b", only_if_absent=True)))
