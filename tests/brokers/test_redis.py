"""The broker contract on RedisBroker, against a real redis-server the tests start."""

import asyncio
import secrets
import unittest

from snorky.brokers.redis import RedisBroker
from tests.brokers.contract import WAIT, BrokerContract
from tests.redis_server import shared_redis


class RedisBrokerTestCase(unittest.IsolatedAsyncioTestCase):
    redis_url = None

    async def asyncSetUp(self):
        self.redis = shared_redis()
        self.prefix = f"test-{secrets.token_hex(4)}"
        self.nodes = []

    async def asyncTearDown(self):
        for node in self.nodes:
            await node.close()

    async def make_node(self, **options):
        node = RedisBroker(self.redis.url, prefix=self.prefix, heartbeat=0.2, **options)
        await node.start()
        self.nodes.append(node)
        return node

    async def subscribed(self, broker):
        """Wait until Redis has confirmed the broker's subscription to each of its topics."""
        for topic in list(broker.handlers):
            ready = broker.subscribe(topic, broker.handlers[topic][0])
            if ready is not None:
                await ready

    async def published(self, broker):
        deadline = asyncio.get_running_loop().time() + WAIT
        while broker._outbox or broker._heartbeats == 0:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("publishes not sent")
            await asyncio.sleep(0.01)


class RedisBrokerContractTests(RedisBrokerTestCase, BrokerContract):
    pass


class ClosingTests(RedisBrokerTestCase):
    async def test_close_does_a_removal_still_waiting(self):
        """A presence removal still waiting its turn (behind a refresh in flight) when the node
        closes is done by the close: a node that stops leaves no entry behind."""
        node = await self.make_node()
        await node.presence_add("names", "alice", b"x")
        node._presence.ledger.refreshing = asyncio.get_running_loop().create_future()  # a refresh in flight
        removal = node.presence_remove("names", "alice")
        await node.close()
        self.nodes.remove(node)
        self.assertTrue(removal.cancelled())
        other = await self.make_node()
        self.assertEqual(await other.presence_list("names"), {})
