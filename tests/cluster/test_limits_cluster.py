"""connections_per_identity across two `snorky serve` nodes on a real Redis: one count for the
cluster, and no ghost left by a node that died."""

import asyncio
import secrets
import signal

from tornado.testing import AsyncTestCase, gen_test

from tests.cluster.harness import TIMEOUT, Cluster, Page
from tests.redis_server import shared_redis

CONFIG = """
[frontend]
sockjs_prefix = ""
[limits]
connections_per_identity = 2
[services.chat]
class = "chat"
"""


async def closed(page: Page) -> int | None:
    """Wait until the node closes ``page``; its close code."""
    while await page.next() is not None:
        pass
    code: int | None = page.ws.close_code
    return code


class IdentityLimitClusterTests(AsyncTestCase):
    def setUp(self):
        super().setUp()
        self.cluster = Cluster(shared_redis().url, CONFIG, f"l{secrets.token_hex(4)}", presence_ttl=2.0)

    def tearDown(self):
        self.io_loop.run_sync(self.cluster.close)
        super().tearDown()

    @gen_test(timeout=60)
    async def test_one_count_for_the_cluster(self):
        """Two connections of alice, one on each node, fill her limit of 2: a third is closed with 4005 on
        either node; once one leaves, one more fits."""
        a, b = await self.cluster.start_nodes("a", "b")
        on_a, on_b = await self.cluster.page(a, "alice"), await self.cluster.page(b, "alice")
        for page in (on_a, on_b):
            self.assertEqual((await page.call("chat", "join", channel="lobby"))["members"], ["alice"])
        for node in (a, b):
            refused = await self.cluster.page(node, "alice")
            self.assertEqual(await closed(refused), 4005)
            await node.logged("already has 2 connection(s)")
        bob = await self.cluster.page(a, "bob")  # another identity has its own count
        await bob.call("chat", "join", channel="lobby")
        on_b.ws.close()
        self.assertIsNone(await closed(on_b))
        # Node b removes the connection's entry as the connection closes, one Redis round trip
        # later: until then a new connection may still be refused.
        again = await self.admitted(a, "alice")
        self.assertEqual(sorted((await again.call("chat", "join", channel="other"))["members"]), ["alice"])

    async def admitted(self, node, identity):
        """A page of ``identity`` on ``node`` that the node admits (trying again while it refuses)."""
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while True:
            page = await self.cluster.page(node, identity)
            answered = asyncio.ensure_future(page.call("chat", "join", channel="probe"))
            await asyncio.wait([answered, page.reader], return_when=asyncio.FIRST_COMPLETED)
            if not page.reader.done():
                await answered
                await page.call("chat", "leave", channel="probe")
                return page
            answered.cancel()
            await asyncio.gather(answered, return_exceptions=True)
            self.assertEqual(page.ws.close_code, 4005)
            self.assertLess(asyncio.get_running_loop().time(), deadline, "never admitted")

    @gen_test(timeout=60)
    async def test_a_dead_node_leaves_no_ghost(self):
        """The connections of a node killed with SIGKILL stop counting once its presence expires."""
        a, b = await self.cluster.start_nodes("a", "b")
        await self.cluster.page(a, "alice")
        alice_on_b = await self.cluster.page(b, "alice")
        bob = await self.cluster.page(a, "bob")
        await bob.call("chat", "join", channel="lobby")
        await alice_on_b.call("chat", "join", channel="lobby")
        joined = await bob.next("chat", "presence")
        self.assertEqual((joined["from"], joined["status"]), ("alice", "joined"))
        await b.stop(signal.SIGKILL)
        # Alice's chat entry was written after her connection's, and every refresh gives a node's
        # entries one expiry: when the chat says she left, her connection on b is gone too.
        left = await bob.next("chat", "presence", timeout=20)
        self.assertEqual((left["from"], left["status"]), ("alice", "left"))
        again = await self.cluster.page(a, "alice")
        self.assertEqual(sorted((await again.call("chat", "join", channel="lobby"))["members"]), ["alice", "bob"])
