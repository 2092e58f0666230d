"""Draining a node: SIGTERM sends its clients to another node over a window, and nothing is lost.

Two `snorky serve` nodes share a real Redis. 500 clients subscribe on node A to a
channel with history; a publisher keeps publishing through node B's backend
port; node A gets SIGTERM. Each client does what snorky.js does on close code
1012: it reconnects at once, here to node B, asking to recover from the last
message it saw. Every client must end with every message once, in order.
"""

import asyncio
import json
import logging
import secrets
import signal

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.testing import AsyncTestCase, gen_test
from tornado.websocket import websocket_connect

from tests.cluster.harness import Cluster
from tests.redis_server import shared_redis

WINDOW = 2.0
CLIENTS = 500
MESSAGES = 200

CONFIG = f"""
[frontend]
sockjs_prefix = ""
drain_window = {WINDOW}
[services.pubsub]
class = "pubsub"
history = [{{channel = "feed*", size = 1000, ttl = 300}}]
"""

logger = logging.getLogger(__name__)


def subscribe_frame(call_id, **params):
    return json.dumps({"service": "pubsub", "message": {"command": "subscribe", "params": params, "callId": call_id}})


class Follower:
    """A client of channel "feed" that moves to another node when its node drains (as snorky.js does)."""

    def __init__(self, loop):
        self.loop = loop
        self.received = []
        self.position = None
        self.closed_at = None
        self.close_code = None
        self.moved = asyncio.Event()
        self.subscribed = asyncio.Event()
        self.complete = asyncio.Event()
        self.started = asyncio.Event()
        self.ws = None

    async def follow(self, port):
        ws = self.ws = await websocket_connect(f"ws://127.0.0.1:{port}/ws")
        params = {"channel": "feed"}
        if self.position is not None:
            params["recover"] = self.position
        ws.write_message(subscribe_frame(1, **params))
        return ws

    async def run(self, first_port, second_port):
        ws = await self.follow(first_port)
        await self.read(ws)
        self.closed_at, self.close_code = self.loop.time(), ws.close_code
        ws.close()
        ws = await self.follow(second_port)
        self.moved.set()
        await self.read(ws)

    async def read(self, ws):
        waiting = []  # live messages that arrive before the subscribe answer wait for it, as in snorky.js
        answered = False
        while True:
            raw = await ws.read_message()
            if raw is None:
                return
            message = json.loads(raw)["message"]
            if message.get("type") == "response":
                data = message["data"]
                for publication in data.get("publications", ()):
                    self.take(publication)
                if self.position is None or data["epoch"] != self.position["epoch"]:
                    self.position = {"offset": data["offset"], "epoch": data["epoch"]}
                for live in waiting:
                    self.take(live)
                answered = True
                self.subscribed.set()
            elif message.get("type") == "message":
                if answered:
                    self.take(message)
                else:
                    waiting.append(message)

    def take(self, message):
        """Deliver a message unless its offset was seen already (what snorky.js's recovery does)."""
        if self.position is not None and message["epoch"] == self.position["epoch"]:
            if message["offset"] <= self.position["offset"]:
                return
        self.received.append(message["message"])
        self.position = {"offset": message["offset"], "epoch": message["epoch"]}
        if len(self.received) >= 10:
            self.started.set()
        if len(self.received) >= MESSAGES:
            self.complete.set()


class DrainTests(AsyncTestCase):
    def setUp(self):
        super().setUp()
        self.cluster = Cluster(shared_redis().url, CONFIG, f"d{secrets.token_hex(4)}")

    def tearDown(self):
        self.io_loop.run_sync(self.cluster.close)
        super().tearDown()

    async def status(self, port, path):
        response = await AsyncHTTPClient().fetch(
            HTTPRequest(f"http://127.0.0.1:{port}{path}", headers={"Upgrade": "websocket"}), raise_error=False
        )
        return response.code

    @gen_test(timeout=120)
    async def test_drain_spreads_clients_over_the_window_and_loses_nothing(self):
        """SIGTERM: /ready turns 503, new handshakes get 503, the 500 clients leave over the window
        with 1012, reconnect elsewhere and recover: every message once, in order; the node exits 0."""
        loop = asyncio.get_running_loop()
        a, b = await self.cluster.start_node("a"), await self.cluster.start_node("b")
        followers = [Follower(loop) for _ in range(CLIENTS)]
        tasks = [asyncio.ensure_future(f.run(a.port, b.port)) for f in followers]
        await asyncio.wait_for(asyncio.gather(*(f.subscribed.wait() for f in followers)), 60)

        async def publish():
            for i in range(MESSAGES):
                await b.backend.call("pubsub", "publish", channel="feed", message=i)
                await asyncio.sleep(0.01)

        publisher = asyncio.ensure_future(publish())
        await asyncio.wait_for(followers[-1].started.wait(), 30)  # some messages arrived before the drain
        started = loop.time()
        a.process.send_signal(signal.SIGTERM)
        while await self.status(a.port, "/ready") != 503:
            pass
        self.assertEqual(await self.status(a.port, "/ws"), 503)

        await asyncio.wait_for(asyncio.gather(*(f.moved.wait() for f in followers)), 30)
        self.assertEqual(await asyncio.wait_for(a.process.wait(), 30), 0)
        await publisher
        await asyncio.wait_for(asyncio.gather(*(f.complete.wait() for f in followers)), 60)
        for task, follower in zip(tasks, followers, strict=True):
            task.cancel()
            follower.ws.close()
        await asyncio.gather(*tasks, return_exceptions=True)

        self.assertEqual({f.close_code for f in followers}, {1012})
        lost = sum(MESSAGES - len(set(f.received)) for f in followers)
        doubled = sum(len(f.received) - len(set(f.received)) for f in followers)
        out_of_order = sum(f.received != sorted(f.received) for f in followers)
        self.assertEqual((lost, doubled, out_of_order), (0, 0, 0))

        offsets = sorted(f.closed_at - started for f in followers)
        tenths = [0] * 10
        for offset in offsets:
            tenths[min(9, int(10 * offset / WINDOW))] += 1
        logger.info("closes per tenth of the %.1f s window: %s", WINDOW, tenths)
        self.assertLessEqual(sum(tenths[:3]), 0.5 * CLIENTS, tenths)  # not bunched at the start
        self.assertGreaterEqual(sum(tenths[5:]), 0.3 * CLIENTS, tenths)  # spread to the end
