"""Failures in a cluster: Redis restarted mid-stream, a subscription that silently stops."""

import asyncio
import logging
import secrets
import time

from tornado.testing import AsyncTestCase, gen_test

from tests.cluster.harness import Cluster
from tests.redis_server import RedisServer

CONFIG = """
[frontend]
sockjs_prefix = ""
[services.pubsub]
class = "pubsub"
history = [{channel = "feed*", size = 1000, ttl = 300}]
"""

logger = logging.getLogger(__name__)


class RedisRestartTests(AsyncTestCase):
    def setUp(self):
        super().setUp()
        self.redis = RedisServer().start()
        self.cluster = Cluster(self.redis.url, CONFIG, f"f{secrets.token_hex(4)}")

    def tearDown(self):
        self.logs = self.io_loop.run_sync(self.cluster.close)
        self.redis.close()
        super().tearDown()

    async def received(self, page, count):
        return [(await page.next("pubsub", "message"))["message"] for _ in range(count)]

    @gen_test(timeout=90)
    async def test_redis_restart_mid_stream_loses_nothing(self):
        """Messages published before, during and after a Redis restart all arrive, in order, once."""
        a, b = await self.cluster.start_node("a"), await self.cluster.start_node("b")
        pages = [await self.cluster.page(a), await self.cluster.page(b)]
        for page in pages:
            await page.call("pubsub", "subscribe", channel="feed")
        for i in range(100):
            await b.backend.call("pubsub", "publish", channel="feed", message=i)
        for page in pages:
            self.assertEqual(await self.received(page, 100), list(range(100)))

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.redis.stop)
        for i in range(100, 200):  # accepted by the node while Redis is down
            await b.backend.call("pubsub", "publish", channel="feed", message=i)
        started = time.monotonic()
        await loop.run_in_executor(None, self.redis.start)
        for i in range(200, 300):
            await b.backend.call("pubsub", "publish", channel="feed", message=i)
        for page in pages:
            self.assertEqual(await self.received(page, 200), list(range(100, 300)))
            self.assertTrue(page.notifications.empty())
        logger.info("recovered everything %.2f s after Redis came back", time.monotonic() - started)

        info = await a.backend.call("control", "info")
        self.assertGreaterEqual(info["broker"]["outages"], 1)
        self.assertGreaterEqual(info["broker"]["reconnects"], 1)
        self.assertEqual(info["broker"]["dropped"], 0)

    @gen_test(timeout=90)
    async def test_commands_needing_redis_answer_unavailable(self):
        """While Redis is down, a subscribe answers unavailable instead of hanging; after, it works."""
        a = await self.cluster.start_node("a")
        page = await self.cluster.page(a)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.redis.stop)
        with self.assertRaises(AssertionError) as caught:
            await page.call("pubsub", "subscribe", channel="feed")
        self.assertIn("unavailable", str(caught.exception))
        await loop.run_in_executor(None, self.redis.start)
        await page.call("pubsub", "subscribe", channel="news")

    @gen_test(timeout=90)
    async def test_outage_is_logged_once_per_node(self):
        """Each node logs the outage once when it starts and once when it ends."""
        a = await self.cluster.start_node("a")
        page = await self.cluster.page(a)
        await page.call("pubsub", "subscribe", channel="feed")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.redis.stop)
        await a.backend.call("pubsub", "publish", channel="feed", message="during")
        await loop.run_in_executor(None, self.redis.start)
        self.assertEqual((await page.next("pubsub", "message"))["message"], "during")
        info = await a.backend.call("control", "info")
        self.assertEqual(info["broker"]["outages"], 1)
        logs = await self.cluster.close()
        self.cluster.nodes = []
        self.assertEqual(logs[0].count("Redis unreachable"), 1)
        self.assertEqual(logs[0].count("Redis reachable again"), 1)
