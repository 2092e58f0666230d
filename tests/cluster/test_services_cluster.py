"""Stateful services across nodes: each behaves as on one server."""

import secrets
import signal
import time

from tornado.testing import AsyncTestCase, gen_test

from snorky.errors import SnorkyError
from tests.cluster.harness import Cluster
from tests.redis_server import shared_redis

CONFIG = """
[frontend]
sockjs_prefix = ""
[services.chat]
class = "chat"
[services.cursors]
class = "cursors"
[services.messaging]
class = "messaging"
[services.progress]
class = "progress"
"""


class ServicesClusterTestCase(AsyncTestCase):
    def setUp(self):
        super().setUp()
        self.cluster = Cluster(shared_redis().url, CONFIG, f"s{secrets.token_hex(4)}", presence_ttl=2.0)

    def tearDown(self):
        self.io_loop.run_sync(self.cluster.close)
        super().tearDown()


class ChatClusterTests(ServicesClusterTestCase):
    @gen_test(timeout=60)
    async def test_members_and_messages_across_nodes(self):
        """Members on two nodes see each other join and chat; one identity on two nodes is one member."""
        a, b = await self.cluster.start_node("a"), await self.cluster.start_node("b")
        alice, bob = await self.cluster.page(a, "alice"), await self.cluster.page(b, "bob")
        await alice.call("chat", "join", channel="lobby")
        joined = await bob.call("chat", "join", channel="lobby")
        self.assertEqual(sorted(joined["members"]), ["alice", "bob"])
        self.assertEqual((await alice.next("chat", "presence"))["from"], "bob")
        alice_again = await self.cluster.page(b, "alice")  # a second tab, on the other node
        joined = await alice_again.call("chat", "join", channel="lobby")
        self.assertEqual(sorted(joined["members"]), ["alice", "bob"])
        await bob.call("chat", "send", channel="lobby", body="hi")
        for page in (alice, alice_again):
            self.assertEqual((await page.next("chat", "message"))["body"], "hi")
        self.assertTrue(bob.notifications.empty() or (await bob.next("chat", "message"))["body"] == "hi")
        await alice_again.call("chat", "leave", channel="lobby")
        await alice.call("chat", "leave", channel="lobby")
        left = await bob.next("chat", "presence")
        self.assertEqual((left["from"], left["status"]), ("alice", "left"))

    @gen_test(timeout=60)
    async def test_killed_node_members_leave(self):
        """Members of a node killed with SIGKILL are announced as left once their presence expires."""
        a, b = await self.cluster.start_node("a"), await self.cluster.start_node("b")
        alice, bob = await self.cluster.page(a, "alice"), await self.cluster.page(b, "bob")
        await alice.call("chat", "join", channel="lobby")
        await bob.call("chat", "join", channel="lobby")
        await alice.next("chat", "presence")
        killed = time.monotonic()
        await b.stop(signal.SIGKILL)
        left = await alice.next("chat", "presence", timeout=20)
        self.assertEqual((left["from"], left["status"]), ("bob", "left"))
        self.assertLess(time.monotonic() - killed, 15)
        members = await a.backend.call("control", "presence", service="chat", channel="lobby")
        self.assertEqual([m["identity"] for m in members], ["alice"])


class CursorsClusterTests(ServicesClusterTestCase):
    @gen_test(timeout=60)
    async def test_cursors_across_nodes(self):
        """A cursor made on one node is listed and updated on another; a killed node's cursors are removed."""
        a, b = await self.cluster.start_node("a"), await self.cluster.start_node("b")
        alice, bob = await self.cluster.page(a, "alice"), await self.cluster.page(b, "bob")
        await alice.call("cursors", "join", document="doc")
        handle = await alice.call("cursors", "createCursor", privateHandle=1, document="doc", position=3, status=None)
        joined = await bob.call("cursors", "join", document="doc")
        self.assertEqual([(c["publicHandle"], c["owner"]) for c in joined["cursors"]], [(handle, "alice")])
        await alice.call("cursors", "updateCursor", privateHandle=1, newData={"position": 9})
        updated = await bob.next("cursors", "cursorUpdated")
        self.assertEqual((updated["cursor"]["position"], updated["cursor"]["owner"]), (9, "alice"))
        await a.stop(signal.SIGKILL)
        removed = await bob.next("cursors", "cursorRemoved", timeout=20)
        self.assertEqual(removed["cursor"]["publicHandle"], handle)


class MessagingClusterTests(ServicesClusterTestCase):
    @gen_test(timeout=60)
    async def test_names_are_unique_and_reachable_across_nodes(self):
        """A name held on one node is refused on another, listed everywhere, and reached from anywhere."""
        a, b = await self.cluster.start_node("a"), await self.cluster.start_node("b")
        alice, bob, mallory = (
            await self.cluster.page(a, "alice"),
            await self.cluster.page(b, "bob"),
            await self.cluster.page(b, "mallory"),
        )
        await alice.call("messaging", "registerParticipant", name="alice")
        await bob.call("messaging", "registerParticipant", name="bob")
        with self.assertRaises(AssertionError) as caught:
            await mallory.call("messaging", "registerParticipant", name="alice")
        self.assertIn("name_taken", str(caught.exception))
        self.assertEqual(await mallory.call("messaging", "listParticipants"), ["alice", "bob"])
        await bob.call("messaging", "send", sender="bob", dest="alice", body="hello from b")
        self.assertEqual((await alice.next("messaging", "message"))["body"], "hello from b")
        alice.close()
        await a.stop()
        await mallory.call("messaging", "registerParticipant", name="alice")


class ProgressClusterTests(ServicesClusterTestCase):
    @gen_test(timeout=60)
    async def test_progress_across_nodes(self):
        """A task created through one node is moved through another and seen late on a third."""
        a = await self.cluster.start_node("a")
        b = await self.cluster.start_node("b")
        c = await self.cluster.start_node("c")
        watcher = await self.cluster.page(b)
        await watcher.call("progress", "subscribe", task="import")
        await a.backend.call("progress", "createTask", name="Import", max=10, task="import")
        self.assertEqual((await watcher.next("progress", "init"))["name"], "Import")
        await b.backend.call("progress", "update", task="import", value=6, label="half")
        self.assertEqual((await watcher.next("progress", "update"))["value"], 6)
        with self.assertRaises(SnorkyError) as caught:
            await c.backend.call("progress", "createTask", task="import")
        self.assertEqual(caught.exception.code, "task_exists")
        late = await self.cluster.page(c)
        state = await late.call("progress", "subscribe", task="import")
        self.assertEqual((state["value"], state["label"]), (6, "half"))
        await c.backend.call("progress", "complete", task="import")
        for page in (watcher, late):
            self.assertEqual((await page.next("progress", "done"))["value"], 10)


class ControlClusterTests(ServicesClusterTestCase):
    @gen_test(timeout=60)
    async def test_control_acts_on_every_node(self):
        """disconnect and presence through one node's backend cover every node; info lists the nodes."""
        a, b = await self.cluster.start_node("a"), await self.cluster.start_node("b")
        mallory_a, mallory_b = await self.cluster.page(a, "mallory"), await self.cluster.page(b, "mallory")
        bob = await self.cluster.page(b, "bob")
        for page in (mallory_a, mallory_b, bob):
            await page.call("chat", "join", channel="lobby")
        members = await a.backend.call("control", "presence", service="chat", channel="lobby")
        self.assertEqual(sorted((m["identity"], m["connections"]) for m in members), [("bob", 1), ("mallory", 2)])
        info = await a.backend.call("control", "info")
        self.assertEqual(len(info["nodes"]), 2)
        await a.backend.call("control", "disconnect", identity="mallory")
        for page in (mallory_a, mallory_b):
            while await page.next() is not None:  # notifications before the close
                pass
            self.assertEqual(page.ws.close_code, 4004)
        left = await bob.next("chat", "presence")
        self.assertEqual((left["from"], left["status"]), ("mallory", "left"))
