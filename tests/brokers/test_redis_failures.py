"""RedisBroker against failures a real Redis alone cannot show: a subscription that silently stops."""

import asyncio
import secrets
import unittest

from snorky.brokers.base import History
from snorky.brokers.redis import RedisBroker
from tests.brokers.contract import Recorder, message
from tests.redis_server import shared_redis


class FreezingProxy:
    """A TCP proxy to Redis that can silently stop passing Redis's data to subscriber connections."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connections: list[dict] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader, writer):
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        state = {"subscriber": False, "frozen": False, "writers": (writer, upstream_writer)}
        self.connections.append(state)

        async def to_redis():
            while data := await reader.read(65536):
                if b"SUBSCRIBE" in data.upper():
                    state["subscriber"] = True
                upstream_writer.write(data)
            upstream_writer.close()

        async def from_redis():
            while data := await upstream_reader.read(65536):
                if not state["frozen"]:  # frozen: Redis's data is dropped, nothing is closed
                    writer.write(data)
            writer.close()

        await asyncio.gather(to_redis(), from_redis(), return_exceptions=True)

    def freeze_subscribers(self) -> int:
        frozen = [c for c in self.connections if c["subscriber"] and not c["frozen"]]
        for connection in frozen:
            connection["frozen"] = True
        return len(frozen)

    async def close(self):
        self.server.close()
        for connection in self.connections:
            for writer in connection["writers"]:
                writer.close()


class SilentSubscriptionTests(unittest.IsolatedAsyncioTestCase):
    async def test_a_subscription_that_silently_stops_is_rebuilt(self):
        """A subscriber connection that stops delivering without closing is noticed and rebuilt."""
        proxy = FreezingProxy(shared_redis().port)
        port = await proxy.start()
        node = RedisBroker(f"redis://127.0.0.1:{port}/0", prefix=f"silent-{secrets.token_hex(4)}", heartbeat=0.1)
        await node.start()
        try:
            seen = Recorder()
            await asyncio.wait_for(node.subscribe("t", seen), 5)
            node.publish("t", message(0))
            self.assertEqual(await seen.numbers(1), [0])
            self.assertEqual(proxy.freeze_subscribers(), 1)
            received, sent = None, 0
            with self.assertLogs("snorky.brokers.redis", "ERROR"):
                for sent in range(1, 200):  # bounded: the check runs every heartbeat
                    node.publish("t", message(sent))
                    try:
                        received = (await asyncio.wait_for(seen.queue.get(), 0.1))[1]["message"]["n"]
                        break
                    except asyncio.TimeoutError:
                        continue
            self.assertIsNotNone(received, "the frozen subscription was never replaced")
            self.assertEqual(node.stats()["stale"], 1)
            self.assertGreaterEqual(node.stats()["reconnects"], 1)
        finally:
            await node.close()
            await proxy.close()


class GapTests(unittest.IsolatedAsyncioTestCase):
    async def test_what_a_cut_off_node_missed_is_filled_or_counted(self):
        """A node whose subscription silently stopped fills history topics from their streams
        and tells the handlers of the others exactly how many messages it missed."""
        redis = shared_redis()
        proxy = FreezingProxy(redis.port)
        port = await proxy.start()
        prefix = f"gap-{secrets.token_hex(4)}"
        publisher = RedisBroker(redis.url, prefix=prefix, heartbeat=0.1)
        node = RedisBroker(f"redis://127.0.0.1:{port}/0", prefix=prefix, heartbeat=0.1)
        await publisher.start()
        await node.start()
        try:
            plain, feed, gaps = Recorder(), Recorder(), asyncio.Queue()
            await asyncio.wait_for(node.subscribe("plain", plain, lambda topic, count: gaps.put_nowait(count)), 5)
            await asyncio.wait_for(node.subscribe("feed", feed, lambda topic, count: gaps.put_nowait(count)), 5)
            history = History(size=100, ttl=60)
            for i in range(3):
                await publisher.publish("plain", message(i))
                await publisher.publish("feed", message(i), history)
            self.assertEqual(await plain.numbers(3), [0, 1, 2])
            self.assertEqual(await feed.numbers(3), [0, 1, 2])
            self.assertEqual(proxy.freeze_subscribers(), 1)
            with self.assertLogs("snorky.brokers.redis", "WARNING") as logged:
                for i in range(3, 13):  # published while the node hears nothing
                    await publisher.publish("plain", message(i))
                    await publisher.publish("feed", message(i), history)
                self.assertEqual(await asyncio.wait_for(gaps.get(), 10), 10)
                self.assertEqual(await feed.numbers(10), list(range(3, 13)))
            self.assertTrue(any("10 message(s) missed on 1 topic(s)" in line for line in logged.output), logged.output)
            await publisher.publish("plain", message(13))
            await publisher.publish("feed", message(13), history)
            self.assertEqual(await plain.numbers(1), [13])
            self.assertEqual(await feed.numbers(1), [13])
            self.assertTrue(gaps.empty() and plain.queue.empty() and feed.queue.empty())
            stats = node.stats()
            self.assertEqual((stats["missed"], stats["gaps_filled"], stats["stale"]), (10, 1, 1))
        finally:
            await node.close()
            await publisher.close()
            await proxy.close()
