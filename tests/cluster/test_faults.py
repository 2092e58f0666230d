"""Faults under steady traffic, counted message by message: nothing acknowledged lost,
nothing doubled, no presence left behind.

Three `snorky serve` nodes share a real redis-server started by the test; the faults
are real signals (SIGSTOP, SIGKILL) to real processes. Each test logs its counts
(``-o log_cli=true --log-cli-level=INFO`` shows them).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from tornado.testing import AsyncTestCase, gen_test

from tests.brokers.test_redis_failures import FreezingProxy
from tests.cluster.harness import Cluster, Node
from tests.cluster.traffic import Connection, Tally, Traffic, listeners, tally
from tests.redis_server import RedisServer

CONFIG = """
[frontend]
sockjs_prefix = ""
[services.pubsub]
class = "pubsub"
history = [{channel = "feed*", size = 1000, ttl = 300}]
[services.chat]
class = "chat"
[services.messaging]
class = "messaging"
[services.cursors]
class = "cursors"
"""

CHANNELS = ["plain", "feed"]
"""A channel without history and one with."""
SUBSCRIBERS = 150
RATE = 100.0
TIMEOUT = 1.0
"""The nodes' Redis timeout: a publish is answered within it."""

logger = logging.getLogger(__name__)


class FaultTestCase(AsyncTestCase):
    started_redis = True

    def setUp(self):
        super().setUp()
        self.redis = RedisServer()
        if self.started_redis:
            self.redis.start()
        self.cluster = Cluster(
            self.redis.url, CONFIG, f"x{secrets.token_hex(4)}", heartbeat=0.2, presence_ttl=1.0, timeout=TIMEOUT
        )

    def tearDown(self):
        logs = self.io_loop.run_sync(self.cluster.close)
        self.redis.close()
        super().tearDown()
        for log in logs:
            self.assertNotIn("Traceback", log)

    async def broker_stats(self, node: Node) -> dict:
        return (await node.backend.call("control", "info"))["broker"]

    async def know_each_other(self, nodes: list[Node]) -> None:
        """Wait until every node has seen the others heartbeat: after an outage it waits for them."""
        for node in nodes:
            while (await self.broker_stats(node))["peers"] < len(nodes) - 1:
                await asyncio.sleep(0.05)  # polling a node's state; the test's timeout bounds it

    async def under_traffic(
        self, fault: Callable[[list[Node], Traffic], Awaitable[None]], publish_through: str = "abc"
    ) -> tuple[list[Node], dict[str, Tally], float]:
        """Run ``fault`` in the middle of steady traffic; return the nodes, the counts and how
        long after the fault's end every subscriber had every message published before it."""
        nodes = await self.cluster.start_nodes("a", "b", "c")
        await self.know_each_other(nodes)
        connections = await listeners(nodes, SUBSCRIBERS, CHANNELS)
        publishers = [await Connection.open(node) for node in nodes if node.name in publish_through]
        traffic = Traffic(publishers, CHANNELS, RATE)
        traffic.start()
        await traffic.acknowledged(100)
        await fault(nodes, traffic)
        ended = time.monotonic()
        await publishers[0].call("pubsub", "publish", channel="plain", message={"marker": "recovered"})
        for connection in connections:
            if "plain" in connection.channels:
                await connection.marker("recovered")
        recovery = time.monotonic() - ended
        await traffic.acknowledged(100)
        await traffic.stop(connections)
        tallies = tally(traffic, connections)
        for t in tallies.values():
            logger.info("%s: %s", self.id().rsplit(".", 1)[-1], t.line())
        name = self.id().rsplit(".", 1)[-1]
        logger.info("%s: every subscriber up to date %.2f s after the fault", name, recovery)
        for node in nodes:
            for line in node.lines:
                if "snorky.brokers" in line:
                    logger.info("%s: node %s: %s", name, node.name, line.strip().split(" ", 2)[-1])
        for connection in [*connections, *publishers]:
            connection.close()
        return nodes, tallies, recovery

    def assertNothingLostOrDoubled(self, tallies: dict[str, Tally]) -> None:
        for t in tallies.values():
            self.assertEqual((t.unanswered, t.refused, t.lost, t.duplicated), (0, 0, 0, 0), t.line())
            self.assertEqual(t.delivered, t.acked * t.subscribers, t.line())
            self.assertLess(t.slowest_answer, 3 * TIMEOUT + 1, t.line())

    async def assertOneOutageEach(self, nodes: list[Node]) -> None:
        for node in nodes:
            await node.logged("Redis reachable again")
            self.assertEqual((await self.broker_stats(node))["outages"], 1, node.log)
            self.assertEqual(node.log.count("Redis unreachable"), 1, node.log)
            self.assertEqual(node.log.count("Redis reachable again"), 1, node.log)


class RedisFaultTests(FaultTestCase):
    @gen_test(timeout=120)
    async def test_redis_paused(self):
        """Redis stopped (SIGSTOP) past the timeout: publishes are answered in time, retried
        writes add no second copy, and every subscriber gets every message once."""

        async def pause(nodes: list[Node], traffic: Traffic) -> None:
            self.redis.pause()
            # Until every node gave up waiting: batches in flight then are sent again.
            for node in nodes:
                await node.logged("Redis unreachable")
            self.redis.resume()

        nodes, tallies, _ = await self.under_traffic(pause)
        self.assertNothingLostOrDoubled(tallies)
        await self.assertOneOutageEach(nodes)
        stats = [await self.broker_stats(node) for node in nodes]
        self.assertGreater(sum(s["resent"] for s in stats), 0, "no publish was sent twice: the fault missed its aim")

    @gen_test(timeout=120)
    async def test_redis_restarted(self):
        """Redis killed and started empty: what nodes acknowledged meanwhile reaches every
        subscriber once, on channels with and without history."""

        async def restart(nodes: list[Node], traffic: Traffic) -> None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self.redis.stop)
            for node in nodes:
                await node.logged("Redis unreachable")
            await traffic.acknowledged(100)  # queued by the nodes
            await loop.run_in_executor(None, self.redis.start)

        nodes, tallies, _ = await self.under_traffic(restart)
        self.assertNothingLostOrDoubled(tallies)
        await self.assertOneOutageEach(nodes)
        for node in nodes:
            self.assertEqual((await self.broker_stats(node))["dropped"], 0)

    @gen_test(timeout=120)
    async def test_subscriptions_cut(self):
        """Redis drops every subscriber connection: nodes subscribe again, fill history
        channels from their streams, and tell subscribers of the others what they missed."""

        async def cut(nodes: list[Node], traffic: Traffic) -> None:
            self.assertEqual(self.redis.command(b"CLIENT", b"KILL", b"TYPE", b"pubsub")[:1], b":")
            for node in nodes:
                await node.logged("Redis reachable again")

        nodes, tallies, _ = await self.under_traffic(cut)
        for t in tallies.values():
            self.assertEqual((t.unanswered, t.refused, t.duplicated, t.unannounced), (0, 0, 0, 0), t.line())
        self.assertEqual(tallies["feed"].lost, 0, tallies["feed"].line())
        await self.assertOneOutageEach(nodes)


class NodeFaultTests(FaultTestCase):
    @gen_test(timeout=120)
    async def test_node_paused(self):
        """A node stopped (SIGSTOP) past its liveness checks keeps its subscription when it
        resumes: its subscribers get everything once; its chat member comes back."""
        watched: dict[str, Connection] = {}

        async def pause(nodes: list[Node], traffic: Traffic) -> None:
            a, b = nodes[0], nodes[1]
            watcher = await self.cluster.page(a, "wes")
            member = await self.cluster.page(b, "bea")
            await watcher.call("chat", "join", channel="room")
            await member.call("chat", "join", channel="room")
            self.assertEqual((await watcher.next("chat", "presence"))["status"], "joined")
            b.pause()
            await traffic.acknowledged(100)
            left = await watcher.next("chat", "presence")  # bea's entry expired meanwhile
            self.assertEqual((left["from"], left["status"]), ("bea", "left"))
            b.resume()
            joined = await watcher.next("chat", "presence")
            self.assertEqual((joined["from"], joined["status"]), ("bea", "joined"))
            watched["b"] = b

        nodes, tallies, recovery = await self.under_traffic(pause, publish_through="ac")
        self.assertNothingLostOrDoubled(tallies)
        stats = await self.broker_stats(watched["b"])
        self.assertEqual((stats["stale"], stats["reconnects"], stats["outages"]), (0, 0, 0), stats)
        self.assertEqual(stats["presence_restored"], 1)
        members = await nodes[0].backend.call("control", "presence", service="chat", channel="room")
        self.assertEqual(sorted(m["identity"] for m in members), ["bea", "wes"])


class LeaveDuringOutageTests(FaultTestCase):
    @gen_test(timeout=120)
    async def test_leave_while_redis_restarts(self):
        """A member who leaves while Redis is down is answered at once and announced left once
        Redis is back, even though Redis restarted empty."""
        a, b = await self.cluster.start_nodes("a", "b")
        await self.know_each_other([a, b])
        ann, bob = await self.cluster.page(a, "ann"), await self.cluster.page(b, "bob")
        await ann.call("chat", "join", channel="room")
        self.assertEqual(sorted((await bob.call("chat", "join", channel="room"))["members"]), ["ann", "bob"])
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.redis.stop)
        for node in (a, b):
            await node.logged("Redis unreachable")
        await ann.call("chat", "leave", channel="room")  # ok: done here, finished when Redis is back
        await loop.run_in_executor(None, self.redis.start)
        for node in (a, b):
            await node.logged("Redis reachable again")
        left = await bob.next("chat", "presence")
        self.assertEqual((left["from"], left["status"]), ("ann", "left"))
        await bob.call("chat", "send", channel="room", body="end")
        self.assertEqual((await bob.next("chat"))["body"], "end")  # and no second "left" before it
        members = await a.backend.call("control", "presence", service="chat", channel="room")
        self.assertEqual([m["identity"] for m in members], ["bob"])


class NoRedisAtStartTests(FaultTestCase):
    started_redis = False

    @gen_test(timeout=120)
    async def test_retry_after_unavailable(self):
        """A node started without Redis answers unavailable and keeps nothing of the failed
        attempts: the same calls work once Redis is there, once."""
        (node,) = await self.cluster.start_nodes("a")
        await node.logged("Redis unreachable")
        page = await self.cluster.page(node, "ann")
        calls = [
            ("pubsub", "subscribe", {"channel": "plain"}),
            ("chat", "join", {"channel": "room"}),
            ("messaging", "registerParticipant", {"name": "ann"}),
            ("cursors", "join", {"document": "doc"}),
        ]
        for _ in range(2):  # and again while Redis is still down
            for service, command, params in calls:
                await self.assertUnavailable(page.call(service, command, **params))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.redis.start)
        await node.logged("Redis reachable again")
        answers = [await page.call(service, command, **params) for service, command, params in calls]
        self.assertEqual(
            (answers[0], answers[1]["members"], answers[2], answers[3]), (None, ["ann"], None, {"cursors": []})
        )
        for service in ("pubsub", "chat"):
            channel = "plain" if service == "pubsub" else "room"
            members = await node.backend.call("control", "presence", service=service, channel=channel)
            self.assertEqual([(m["identity"], m["connections"]) for m in members], [("ann", 1)])
        self.assertEqual(await page.call("messaging", "listParticipants"), ["ann"])

        # A cursor made while Redis is down is undone; the same handle works once it is back.
        await loop.run_in_executor(None, self.redis.stop)
        await node.logged("Redis unreachable", count=2)
        cursor = {"privateHandle": 1, "document": "doc", "position": 0, "status": None}
        await self.assertUnavailable(page.call("cursors", "createCursor", **cursor))
        await loop.run_in_executor(None, self.redis.start)
        await node.logged("Redis reachable again", count=2)
        handle = await page.call("cursors", "createCursor", **cursor)
        other = await self.cluster.page(node, "bob")
        listed = (await other.call("cursors", "join", document="doc"))["cursors"]
        self.assertEqual([c["publicHandle"] for c in listed], [handle])

        for i in range(50):
            await node.backend.call("pubsub", "publish", channel="plain", message={"n": i})
        received = [(await page.next("pubsub", "message"))["message"]["n"] for _ in range(50)]
        self.assertEqual(received, list(range(50)))
        await page.call("pubsub", "publish", channel="plain", message={"n": "last"})
        self.assertEqual((await page.next("pubsub", "message"))["message"]["n"], "last")  # nothing doubled before it
        logger.info("retry after unavailable: published 50, acked 50, delivered 50, duplicated 0, lost 0")

    async def assertUnavailable(self, call: Awaitable) -> None:
        with self.assertRaises(AssertionError) as caught:
            await call
        self.assertIn("unavailable", str(caught.exception))


class PresenceRaceTests(FaultTestCase):
    @gen_test(timeout=120)
    async def test_disconnects_racing_presence_writes(self):
        """Clients that leave while their presence is still being written leave nothing behind:
        within twice the TTL only the members still there are listed, and each departed
        member that was announced joined is announced left once, after it."""
        nodes = await self.cluster.start_nodes("a", "b", "c")
        watchers = [await self.cluster.page(node, f"watcher-{node.name}") for node in nodes]
        for watcher in watchers:
            await watcher.call("chat", "join", channel="room")
            await watcher.call("pubsub", "subscribe", channel="room")
        cycles, running = 300, asyncio.Semaphore(30)

        async def cycle(i: int) -> None:
            async with running:
                guest = await Connection.open(nodes[i % len(nodes)], f"guest-{i}")
                writes = [guest.send("chat", "join", channel="room"), guest.send("pubsub", "subscribe", channel="room")]
                if i % 2:  # half leave once the writes are done, half while they are in flight
                    await asyncio.wait(writes)
                guest.close()

        await asyncio.gather(*(cycle(i) for i in range(cycles)))
        deadline = time.monotonic() + 2 * self.cluster.presence_ttl
        keys = [f'{self.cluster.prefix}:p:chat:members:"room"', f'{self.cluster.prefix}:p:pubsub:presence:"room"']

        async def present() -> list[list[str]]:
            listed = [
                sorted(
                    m["identity"] for m in await nodes[0].backend.call("control", "presence", service=s, channel="room")
                )
                for s in ("chat", "pubsub")
            ]
            raw = [int(self.redis.command(b"HLEN", key.encode())[1:].split(b"\r")[0]) for key in keys]
            return [*listed, raw]

        expected = [["watcher-a", "watcher-b", "watcher-c"]] * 2 + [[3, 3]]
        while (found := await present()) != expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # polling Redis for a state, bounded by the deadline
        ghosts = len(found[0]) + len(found[1]) - 6 + sum(found[2]) - 6
        clean = time.monotonic() - (deadline - 2 * self.cluster.presence_ttl)
        logger.info(
            "presence race: %d connect/join/subscribe/disconnect cycles, ghosts at 2x TTL: %d (clean after %.2f s)",
            cycles,
            ghosts,
            clean,
        )
        self.assertEqual(found, expected)

        await watchers[0].call("chat", "send", channel="room", body="end")
        for watcher in watchers:
            events: dict[str, list[str]] = {}
            while (note := await watcher.next("chat")).get("body") != "end":
                if note["type"] == "presence" and note["from"].startswith("guest-"):
                    events.setdefault(note["from"], []).append(note["status"])
            wrong = {guest: seen for guest, seen in events.items() if seen != ["joined", "left"]}
            self.assertEqual(wrong, {})
            logger.info("presence race: watcher saw %d guests joined and left once each, none twice", len(events))


class CutOffNodeTests(FaultTestCase):
    @gen_test(timeout=120)
    async def test_cut_off_node_tells_its_clients_what_they_missed(self):
        """A node that stopped hearing Redis while another published fills history channels and
        tells its subscribers and chat members how many messages of the others they missed."""
        proxy = FreezingProxy(self.redis.port)
        port = await proxy.start()
        through_proxy = Cluster(
            f"redis://127.0.0.1:{port}/0", CONFIG, self.cluster.prefix, heartbeat=0.2, presence_ttl=1.0, timeout=TIMEOUT
        )
        try:
            a, b = await self.cluster.start_node("a"), await through_proxy.start_node("b")
            plain, feed = await through_proxy.page(b), await through_proxy.page(b)
            member, sender = await through_proxy.page(b, "bea"), await self.cluster.page(a, "al")
            await plain.call("pubsub", "subscribe", channel="plain")
            await feed.call("pubsub", "subscribe", channel="feed")
            await member.call("chat", "join", channel="room")
            await sender.call("chat", "join", channel="room")
            self.assertEqual((await member.next("chat", "presence"))["from"], "al")

            async def publish(numbers: range) -> None:
                for i in numbers:
                    for channel in ("plain", "feed"):
                        await a.backend.call("pubsub", "publish", channel=channel, message=i)

            await publish(range(3))
            self.assertEqual(proxy.freeze_subscribers(), 1)
            await publish(range(3, 13))
            for i in range(5):
                await sender.call("chat", "send", channel="room", body=i)
            await b.logged("Redis reachable again")
            await publish(range(13, 14))
            await sender.call("chat", "send", channel="room", body="after")

            def seen(note: dict) -> tuple:
                return (note["type"], note.get("missed", note.get("message", note.get("body"))))

            self.assertEqual(
                [seen(await plain.next("pubsub")) for _ in range(5)],
                [("message", 0), ("message", 1), ("message", 2), ("gap", 10), ("message", 13)],
            )
            self.assertEqual([(await feed.next("pubsub"))["message"] for _ in range(14)], list(range(14)))
            self.assertEqual([seen(await member.next("chat")) for _ in range(2)], [("gap", 5), ("message", "after")])
            stats = await self.broker_stats(b)
            self.assertEqual((stats["stale"], stats["missed"], stats["gaps_filled"]), (1, 15, 1))
            logger.info("cut-off node: plain missed 10 and told 10, feed filled 10 of 10, chat missed 5 and told 5")
        finally:
            for log in await through_proxy.close():
                self.assertNotIn("Traceback", log)
            await proxy.close()
