"""PubSub across several `snorky serve` processes on one Redis."""

import secrets
import signal
import time

from tornado.testing import AsyncTestCase, gen_test

from tests.cluster.harness import Cluster
from tests.redis_server import shared_redis

CONFIG = """
[frontend]
sockjs_prefix = ""
[services.pubsub]
class = "pubsub"
history = [{channel = "feed*", size = 1000, ttl = 300}]
[namespaces.room]
allow_subscribe = "authenticated"
join_leave = true
allow_presence = true
"""


class PubSubClusterTests(AsyncTestCase):
    def setUp(self):
        super().setUp()
        self.cluster = Cluster(shared_redis().url, CONFIG, f"c{secrets.token_hex(4)}")

    def tearDown(self):
        self.io_loop.run_sync(self.cluster.close)
        super().tearDown()

    @gen_test(timeout=60)
    async def test_publish_reaches_every_node_once_in_order(self):
        """Publishes from any node and the backend reach every subscriber on every node once, in order."""
        a, b = await self.cluster.start_node("a"), await self.cluster.start_node("b")
        subscribers = [await self.cluster.page(node) for node in (a, a, b, b, b)]
        for page in subscribers:
            await page.call("pubsub", "subscribe", channel="news")
        publisher = await self.cluster.page(a)
        for i in range(100):
            await publisher.call("pubsub", "publish", channel="news", message=i)
        for i in range(100, 120):
            await b.backend.call("pubsub", "publish", channel="news", message=i)
        for page in subscribers:
            received = [(await page.next("pubsub", "message"))["message"] for _ in range(120)]
            self.assertEqual(received, list(range(120)))
            self.assertTrue(page.notifications.empty())

    @gen_test(timeout=60)
    async def test_history_recovery_across_nodes(self):
        """A client that reconnects to another node recovers what it missed, in order."""
        a, b = await self.cluster.start_node("a"), await self.cluster.start_node("b")
        page = await self.cluster.page(a)
        position = await page.call("pubsub", "subscribe", channel="feed")
        for i in range(5):
            await b.backend.call("pubsub", "publish", channel="feed", message=i)
        last = [(await page.next("pubsub", "message")) for _ in range(5)][-1]
        page.close()
        for i in range(5, 9):
            await a.backend.call("pubsub", "publish", channel="feed", message=i)
        again = await self.cluster.page(b)
        reply = await again.call(
            "pubsub", "subscribe", channel="feed", recover={"offset": last["offset"], "epoch": last["epoch"]}
        )
        self.assertTrue(reply["recovered"])
        self.assertEqual([p["message"] for p in reply["publications"]], [5, 6, 7, 8])
        self.assertEqual(reply["epoch"], position["epoch"])

    @gen_test(timeout=60)
    async def test_killed_node_subscribers_leave(self):
        """In a join_leave namespace, the subscribers of a node killed with SIGKILL are announced
        as gone once their presence expires, and presence no longer lists them."""
        a, b = await self.cluster.start_node("a"), await self.cluster.start_node("b")
        alice, bob = await self.cluster.page(a, "alice"), await self.cluster.page(b, "bob")
        await alice.call("pubsub", "subscribe", channel="room:1")
        await bob.call("pubsub", "subscribe", channel="room:1")
        joined = await alice.next("pubsub", "join")
        self.assertEqual(joined["identity"], "bob")
        killed = time.monotonic()
        await b.stop(signal.SIGKILL)
        left = await alice.next("pubsub", "leave", timeout=20)
        self.assertEqual((left["identity"], left["client"]), ("bob", joined["client"]))
        self.assertLess(time.monotonic() - killed, 15)
        members = await alice.call("pubsub", "presence", channel="room:1")
        self.assertEqual([m["identity"] for m in members], ["alice"])
