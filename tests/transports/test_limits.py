"""Limits over real connections, on a real ``SnorkyServer`` configured with ``[limits]``:
WebSocket (Tornado's client) and SockJS (the real sockjs-client in Node).

Cluster-wide connections per identity: ``tests/cluster/test_limits_cluster.py``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.testing import AsyncTestCase, gen_test
from tornado.websocket import websocket_connect

from snorky.auth import sign_token
from snorky.config import Config
from snorky.server import SnorkyServer
from tests.transports.test_sockjs import Peer
from tests.utils import expect_log

SECRET = "limits-transport-secret-long-enough-for-hs256"
API_KEY = "limits-api-key"
TIMEOUT = 10.0


class Connection:
    """A WebSocket client: RPC calls answered by callId."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0

    def send(self, service: str, command: str, **params: Any) -> int:
        self.next_id += 1
        message = {"command": command, "params": params, "callId": self.next_id}
        self.ws.write_message(json.dumps({"service": service, "message": message}))
        return self.next_id

    async def read(self) -> Any:
        """The next message, or ``None`` once the server closed the connection."""
        raw = await asyncio.wait_for(self.ws.read_message(), TIMEOUT)
        return None if raw is None else json.loads(raw)

    async def call(self, service: str, command: str, **params: Any) -> dict[str, Any]:
        """Call and return the answer's body (response or error)."""
        call_id = self.send(service, command, **params)
        while True:
            envelope = await self.read()
            assert envelope is not None, f"closed with {self.ws.close_code} before answering"
            body: dict[str, Any] = envelope["message"]
            if body.get("callId") == call_id and body.get("type") in ("response", "error"):
                return body

    async def closed(self) -> int | None:
        """Wait until the server closes the connection; its close code."""
        while await self.read() is not None:
            pass
        code: int | None = self.ws.close_code
        return code


class LimitsServerCase(AsyncTestCase):
    """Starts a SnorkyServer (PubSub, Chat, auth) with the test's ``[limits]``."""

    limits: dict[str, Any] = {}

    async def start(self, **limits: Any) -> SnorkyServer:
        config = Config.from_dict(
            {
                "frontend": {"port": 0, "drain_window": 0},
                "backend": {"port": 0, "api_key": API_KEY},
                "auth": {"secret": SECRET},
                "services": {"pubsub": {"class": "pubsub"}, "chat": {"class": "chat"}},
                "limits": limits,
            }
        )
        self.server = SnorkyServer(config)
        await self.server.start()
        self.connections: list[Any] = []
        return self.server

    def tearDown(self) -> None:
        server = getattr(self, "server", None)
        if server is not None:
            for ws in self.connections:
                ws.close()
            self.io_loop.run_sync(lambda: server.stop(grace=1, window=0))
        super().tearDown()

    def url(self, path: str = "/ws", scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.server.frontend_port}{path}"

    async def connect(self, identity: str | None = None, headers: dict[str, str] | None = None) -> Connection:
        query = f"?token={sign_token(identity, SECRET)}" if identity else ""
        ws = await websocket_connect(HTTPRequest(self.url() + query, headers=headers))
        self.connections.append(ws)
        return Connection(ws)

    async def scrape(self, limit: str) -> float:
        """snorky_limits_hit_total for ``limit``, read at /metrics on the backend port."""
        response = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{self.server.backend_port}/metrics")
        for line in response.body.decode().splitlines():
            if line.startswith("snorky_limits_hit_total{") and f'limit="{limit}"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0


class WebSocketLimitTests(LimitsServerCase):
    @gen_test(timeout=30)
    async def test_channels_per_connection(self):
        """Past channels_per_connection (PubSub and Chat together) a join is refused; the connection goes on."""
        await self.start(channels_per_connection=2)
        alice = await self.connect("alice")
        self.assertEqual((await alice.call("pubsub", "subscribe", channel="a"))["type"], "response")
        self.assertEqual((await alice.call("chat", "join", channel="room"))["type"], "response")
        with expect_log(self, "Too many channels in RPC service", "INFO"):
            refused = await alice.call("pubsub", "subscribe", channel="b")
        self.assertEqual(
            refused,
            {"type": "error", "callId": 3, "message": "Too many channels", "code": "too_many_channels"},
        )
        self.assertEqual((await alice.call("pubsub", "unsubscribe", channel="a"))["type"], "response")
        self.assertEqual((await alice.call("pubsub", "subscribe", channel="b"))["type"], "response")
        self.assertEqual(self.server.info()["limits"]["channels_per_connection"], 1)
        self.assertEqual(await self.scrape("channels_per_connection"), 1)

    @gen_test(timeout=30)
    async def test_commands_refused_then_closed_4029(self):
        """Past the burst, calls are answered too_many_requests with their callId; a connection that
        keeps sending is closed with 4029. Another connection is not affected."""
        await self.start(commands_per_second=0.001, commands_burst=3, commands_close_after=2)
        flood, calm = await self.connect(), await self.connect()
        for channel in range(3):
            self.assertEqual((await flood.call("pubsub", "subscribe", channel=channel))["type"], "response")
        with expect_log(self, "commands from .* refused"):
            for channel in (3, 4):
                refused = await flood.call("pubsub", "subscribe", channel=channel)
                self.assertEqual(
                    refused,
                    {
                        "type": "error",
                        "callId": channel + 1,
                        "message": "Too many requests",
                        "code": "too_many_requests",
                    },
                )
        self.assertEqual(self.server.registry.registered_services["pubsub"].map.channels_of(flood), [])
        with expect_log(self, "went on sending while refused"):
            flood.send("pubsub", "subscribe", channel=5)
            self.assertEqual(await flood.closed(), 4029)
        self.assertEqual(flood.ws.close_reason, "too many requests")
        self.assertEqual((await calm.call("pubsub", "subscribe", channel="x"))["type"], "response")
        self.assertEqual(self.server.info()["limits"]["commands_per_second"], 3)
        self.assertEqual(await self.scrape("commands_per_second"), 3)

    @gen_test(timeout=30)
    async def test_connections_per_identity_4005(self):
        """One connection more than connections_per_identity is closed with 4005; once one leaves, one fits."""
        await self.start(connections_per_identity=2)
        first, _second = await self.connect("alice"), await self.connect("alice")
        bob = await self.connect("bob")
        with expect_log(self, "already has 2 connection"):
            third = await self.connect("alice")
            self.assertEqual(await third.closed(), 4005)
        self.assertEqual(third.ws.close_reason, "too many connections")
        self.assertEqual((await bob.call("pubsub", "subscribe", channel="a"))["type"], "response")
        first.ws.close()
        self.assertIsNone(await first.closed())  # the closing handshake: the server let it go
        again = await self.connect("alice")
        self.assertEqual((await again.call("pubsub", "subscribe", channel="a"))["type"], "response")
        self.assertEqual(self.server.info()["limits"]["connections_per_identity"], 1)

    @gen_test(timeout=30)
    async def test_authenticate_into_a_full_identity(self):
        """Authenticating with the authenticate command counts too: answered too_many_connections, closed 4005."""
        await self.start(connections_per_identity=1)
        await self.connect("alice")
        anonymous = await self.connect()
        with expect_log(self, "already has 1 connection"):
            answer = await anonymous.call("auth", "authenticate", token=sign_token("alice", SECRET))
            self.assertEqual(answer["code"], "too_many_connections")
            self.assertEqual(await anonymous.closed(), 4005)

    @gen_test(timeout=30)
    async def test_new_connections_per_ip_429(self):
        """Past the burst of new connections from one address, the handshake is answered 429 with Retry-After."""
        await self.start(connections_per_second_per_ip=0.001, connections_burst_per_ip=2, exempt_addresses=[])
        await self.connect(), await self.connect()
        with expect_log(self, "new connections from 127.0.0.1 refused"):
            with self.assertRaises(HTTPClientError) as caught:
                await self.connect()
        self.assertEqual(caught.exception.code, 429)
        with self.assertRaises(HTTPClientError) as caught:
            await AsyncHTTPClient().fetch(self.url(scheme="http"))
        self.assertEqual(caught.exception.code, 429)
        assert caught.exception.response is not None
        self.assertGreaterEqual(int(caught.exception.response.headers["Retry-After"]), 1)
        self.assertEqual(self.server.info()["limits"]["connections_per_ip"], 2)

    @gen_test(timeout=30)
    async def test_forwarded_for_from_a_trusted_proxy(self):
        """Behind a trusted proxy each client address has its own allowance; loopback itself is exempt."""
        await self.start(connections_per_second_per_ip=0.001, connections_burst_per_ip=1, trusted_proxies=["127.0.0.1"])
        await self.connect(headers={"X-Forwarded-For": "203.0.113.5"})
        with expect_log(self, "new connections from 203.0.113.5 refused"):
            with self.assertRaises(HTTPClientError) as caught:
                await self.connect(headers={"X-Forwarded-For": "203.0.113.5"})
        self.assertEqual(caught.exception.code, 429)
        await self.connect(headers={"X-Forwarded-For": "203.0.113.6"})
        await self.connect(headers={"X-Real-IP": "203.0.113.7"})
        await self.connect(), await self.connect()  # the proxy's own address: exempt

    @gen_test(timeout=30)
    async def test_forwarded_for_ignored_without_trusted_proxies(self):
        """Without trusted_proxies, X-Forwarded-For is ignored: a client cannot pick its address."""
        await self.start(connections_per_second_per_ip=0.001, connections_burst_per_ip=1, exempt_addresses=[])
        await self.connect(headers={"X-Forwarded-For": "203.0.113.5"})
        with expect_log(self, "new connections from 127.0.0.1 refused"):
            with self.assertRaises(HTTPClientError):
                await self.connect(headers={"X-Forwarded-For": "203.0.113.6"})

    @gen_test(timeout=60)
    async def test_defaults_let_an_ordinary_app_through(self):
        """snorky serve's defaults let an ordinary app through: 32 connections of one identity,
        from loopback, four of them sending 150 calls at once into 100 channels, all answered."""
        await self.start()
        connections = [await self.connect("alice") for _ in range(32)]
        for connection in connections[:4]:
            ids = [connection.send("pubsub", "subscribe", channel=index) for index in range(100)]
            ids += [connection.send("pubsub", "unsubscribe", channel=index) for index in range(50)]
            answers = [await connection.read() for _ in ids]
            self.assertEqual({a["message"]["type"] for a in answers}, {"response"})
        self.assertEqual(set(self.server.info()["limits"].values()), {0})


class SockJSLimitScenarios:
    """The same limits over SockJS, with sockjs-client; mixed into a class per transport."""

    transport: str
    start: Any
    server: SnorkyServer
    url: Any
    io_loop: Any

    def setUp(self) -> None:
        super().setUp()  # type: ignore[misc]
        self.peers: list[Peer] = []

    def tearDown(self) -> None:
        async def stop_peers() -> None:
            for peer in self.peers:
                await peer.stop()

        self.io_loop.run_sync(stop_peers)
        super().tearDown()  # type: ignore[misc]

    async def peer(self, identity: str | None = None, wait_open: bool = True) -> Peer:
        query = f"?token={sign_token(identity, SECRET)}" if identity else ""
        peer = await Peer.start(self.url("/sockjs", "http") + query, self.transport, name=identity or "peer")
        self.peers.append(peer)
        if wait_open:
            await peer.opened()
        return peer

    async def close_event(self, peer: Peer) -> dict[str, Any]:
        """The close event, after the open event if the transport opened first."""
        event = await peer.next_event()
        if event == {"event": "open"}:
            event = await peer.next_event()
        return event

    @gen_test(timeout=30)
    async def test_channels_per_connection(self):
        """The third channel is refused too_many_channels; the session goes on."""
        await self.start(channels_per_connection=2)
        peer = await self.peer("alice")
        for call_id, channel in ((1, "a"), (2, "b")):
            self.assertEqual((await peer.call("subscribe", call_id, channel=channel))["type"], "response")
        with expect_log(self, "Too many channels in RPC service", "INFO"):
            self.assertEqual((await peer.call("subscribe", 3, channel="c"))["code"], "too_many_channels")
        self.assertEqual((await peer.call("unsubscribe", 4, channel="a"))["type"], "response")

    @gen_test(timeout=30)
    async def test_commands_refused_then_closed_4029(self):
        """Calls past the burst are answered too_many_requests; going on closes the session with 4029."""
        await self.start(commands_per_second=0.001, commands_burst=2, commands_close_after=1)
        peer = await self.peer()
        for call_id in (1, 2):
            self.assertEqual((await peer.call("subscribe", call_id, channel=call_id))["type"], "response")
        with expect_log(self, "commands from .* refused"):
            refused = await peer.call("subscribe", 3, channel=3)
        self.assertEqual(refused["code"], "too_many_requests")
        with expect_log(self, "went on sending while refused"):
            peer.send("pubsub", {"command": "subscribe", "params": {"channel": 4}, "callId": 4})
            event = await peer.next_event()
        self.assertEqual(event, {"event": "close", "code": 4029, "reason": "too many requests"})
        self.assertEqual(self.server.info()["limits"]["commands_per_second"], 2)

    @gen_test(timeout=30)
    async def test_connections_per_identity_4005(self):
        """A session over connections_per_identity is closed with 4005."""
        await self.start(connections_per_identity=1)
        alice = await self.peer("alice")
        with expect_log(self, "already has 1 connection"):
            again = await self.peer("alice", wait_open=False)
            event = await self.close_event(again)
        self.assertEqual(event, {"event": "close", "code": 4005, "reason": "too many connections"})
        self.assertEqual((await alice.call("subscribe", 1, channel="a"))["type"], "response")

    @gen_test(timeout=30)
    async def test_new_sessions_per_ip_4029(self):
        """A session over the address's burst of new connections is closed with 4029."""
        await self.start(connections_per_second_per_ip=0.001, connections_burst_per_ip=1, exempt_addresses=[])
        await self.peer()
        with expect_log(self, "new connections from 127.0.0.1 refused"):
            refused = await self.peer(wait_open=False)
            event = await self.close_event(refused)
        self.assertEqual(event, {"event": "close", "code": 4029, "reason": "too many requests"})
        self.assertEqual(self.server.info()["limits"]["connections_per_ip"], 1)


class SockJSXhrStreamingLimitTests(SockJSLimitScenarios, LimitsServerCase):
    transport = "xhr-streaming"


class SockJSWebSocketLimitTests(SockJSLimitScenarios, LimitsServerCase):
    transport = "websocket"
