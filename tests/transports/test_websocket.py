"""WebSocket transport against a real Tornado server on loopback, with real clients."""

import asyncio
import json
import unittest

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.testing import AsyncHTTPTestCase, gen_test
from tornado.web import Application
from tornado.websocket import websocket_connect

from snorky import ServiceRegistry
from snorky.errors import CLOSE_SLOW_CLIENT
from snorky.request_handlers.websocket import SnorkyWebSocketHandler
from snorky.services.base import RPCService, Service, rpc_command
from snorky.services.pubsub import PubSubService
from tests.utils import ClosesSockets, expect_log, rpc_frame
from tests.wsraw import RawWebSocket

TIMEOUT = 10


class Watcher(Service):
    """Queues each client that connects or disconnects, for tests to wait on."""

    def __init__(self, name="watcher"):
        super().__init__(name)
        self.connected = asyncio.Queue()
        self.disconnected = asyncio.Queue()

    def client_connected(self, client):
        self.connected.put_nowait(client)

    def client_disconnected(self, client):
        self.disconnected.put_nowait(client)


class Echo(RPCService):
    @rpc_command
    def echo(self, req, value):
        return value


class WebSocketTestCase(ClosesSockets, AsyncHTTPTestCase):
    options: dict = {}

    def get_app(self):
        self.pubsub = PubSubService("pubsub")
        self.watcher = Watcher()
        self.registry = ServiceRegistry([self.pubsub, self.watcher, Echo("echo")])
        return Application([SnorkyWebSocketHandler.get_route(self.registry, "/ws", **self.options)])

    async def connect(self, **headers):
        request = HTTPRequest(self.get_url("/ws").replace("http", "ws"), headers=headers)
        ws = await self.open_ws(request)
        await asyncio.wait_for(self.watcher.connected.get(), TIMEOUT)
        return ws

    async def read(self, ws):
        raw = await asyncio.wait_for(ws.read_message(), TIMEOUT)
        self.assertIsNotNone(raw, "connection closed")
        return json.loads(raw)

    async def subscribe(self, ws, channel):
        ws.write_message(rpc_frame("pubsub", "subscribe", channel=channel))
        self.assertEqual((await self.read(ws))["message"]["type"], "response")


class RoundTripTests(WebSocketTestCase):
    @gen_test(timeout=TIMEOUT)
    async def test_rpc_round_trip(self):
        """A command's answer comes back on the same socket with its callId."""
        ws = await self.connect()
        ws.write_message(rpc_frame("echo", "echo", call_id=42, value={"a": [1, "é"]}))
        self.assertEqual(
            await self.read(ws),
            {"service": "echo", "message": {"type": "response", "callId": 42, "data": {"a": [1, "é"]}}},
        )

    @gen_test(timeout=TIMEOUT)
    async def test_publish_reaches_other_clients(self):
        """A publish from one client reaches every subscriber's socket."""
        alice, bob = await self.connect(), await self.connect()
        await self.subscribe(alice, "news")
        await self.subscribe(bob, "news")
        bob.write_message(rpc_frame("pubsub", "publish", call_id=2, channel="news", message="hi"))
        expected = {"service": "pubsub", "message": {"type": "message", "channel": "news", "message": "hi"}}
        self.assertEqual(await self.read(alice), expected)
        first, second = await self.read(bob), await self.read(bob)
        self.assertIn(expected, (first, second))

    @gen_test(timeout=TIMEOUT)
    async def test_publish_from_python(self):
        """do_publish from server code reaches a WebSocket subscriber."""
        ws = await self.connect()
        await self.subscribe(ws, {"room": 7})
        self.pubsub.do_publish({"room": 7}, [1, 2])
        self.assertEqual((await self.read(ws))["message"]["message"], [1, 2])

    @gen_test(timeout=TIMEOUT)
    async def test_binary_frames_are_accepted(self):
        """JSON in a binary frame is processed like text."""
        ws = await self.connect()
        ws.write_message(rpc_frame("echo", "echo", value=1).encode(), binary=True)
        self.assertEqual((await self.read(ws))["message"]["data"], 1)

    @gen_test(timeout=TIMEOUT)
    async def test_disconnect_removes_subscriptions(self):
        """A closed socket leaves no subscription behind."""
        ws = await self.connect()
        await self.subscribe(ws, "news")
        ws.close()
        await asyncio.wait_for(self.watcher.disconnected.get(), TIMEOUT)
        self.assertEqual(self.pubsub.subscriptions, {})
        self.assertEqual(self.registry.clients, set())

    @gen_test(timeout=TIMEOUT)
    async def test_replies_keep_order_with_notifications(self):
        """Many messages to one socket arrive complete and in order."""
        ws = await self.connect()
        await self.subscribe(ws, "c")
        for i in range(500):
            self.pubsub.do_publish("c", {"i": i, "pad": "x" * 200})
        for i in range(500):
            self.assertEqual((await self.read(ws))["message"]["message"]["i"], i)


class DefaultLimitTests(WebSocketTestCase):
    @gen_test(timeout=TIMEOUT)
    async def test_large_message_within_default_limit_is_delivered(self):
        """With the default limits, a publish of almost 1 MiB (0.1 had no limit) reaches a subscriber."""
        alice, bob = await self.connect(), await self.connect()
        await self.subscribe(alice, "big")
        payload = "x" * (1024 * 1024 - 200)
        bob.write_message(rpc_frame("pubsub", "publish", call_id=3, channel="big", message=payload))
        self.assertEqual((await self.read(alice))["message"]["message"], payload)
        self.assertEqual((await self.read(bob))["message"]["type"], "response")


class PlainHTTPTests(WebSocketTestCase):
    def test_options_request_is_refused_cleanly(self):
        """An HTTP OPTIONS to the WebSocket path gets 405, not a server error."""
        self.assertEqual(self.fetch("/ws", method="OPTIONS").code, 405)

    def test_plain_get_is_refused_cleanly(self):
        """A plain GET without the upgrade gets 400."""
        self.assertEqual(self.fetch("/ws").code, 400)


class BadInputTests(WebSocketTestCase):
    options = {"max_message_size": 1024}

    async def assert_others_undisturbed(self, other):
        other.write_message(rpc_frame("echo", "echo", call_id=99, value="still here"))
        self.assertEqual((await self.read(other))["message"]["data"], "still here")

    @gen_test(timeout=TIMEOUT)
    async def test_malformed_frames_are_answered(self):
        """Bad JSON, non-envelopes and unknown services get error replies; the socket stays open."""
        ws, other = await self.connect(), await self.connect()
        cases = [
            ("{not json", "Invalid JSON", "invalid_json"),
            ('"just a string"', "Malformed message", "invalid_message"),
            ('{"service": "pubsub"}', "Malformed message", "invalid_message"),
            ('{"service": "nope", "message": {"callId": 5}}', "non existing service", "unknown_service"),
            ('{"service": "pubsub", "message": {"params": {}, "callId": 6}}', "Invalid format", "invalid_message"),
        ]
        for raw, log, code in cases:
            with self.subTest(raw=raw), expect_log(self, log):
                ws.write_message(raw)
                answer = await self.read(ws)
            self.assertEqual((answer["message"]["type"], answer["message"]["code"]), ("error", code))
        with expect_log(self, "Invalid JSON"):
            ws.write_message(b"\xff\xfe", binary=True)
            self.assertEqual((await self.read(ws))["message"]["code"], "invalid_json")
        await self.assert_others_undisturbed(other)
        await self.assert_others_undisturbed(ws)

    @gen_test(timeout=TIMEOUT)
    async def test_unknown_command_and_invalid_params(self):
        """Unknown commands and wrong parameters are answered with their codes."""
        ws = await self.connect()
        with expect_log(self, "unknown command", "INFO"):
            ws.write_message(rpc_frame("pubsub", "explode", call_id=1))
            self.assertEqual((await self.read(ws))["message"]["code"], "unknown_command")
        with expect_log(self, "Invalid params"):
            ws.write_message(rpc_frame("pubsub", "subscribe", call_id=2, chanel="typo"))
            answer = (await self.read(ws))["message"]
        self.assertEqual((answer["callId"], answer["message"], answer["code"]), (2, "Invalid params", "invalid_params"))

    @gen_test(timeout=TIMEOUT)
    async def test_oversized_message_closes_with_1009(self):
        """A message over max_message_size closes that socket with 1009, and only that one."""
        ws, other = await self.connect(), await self.connect()
        with expect_log(self, "message too big"):
            ws.write_message(rpc_frame("echo", "echo", value="x" * 2000))
            self.assertIsNone(await asyncio.wait_for(ws.read_message(), TIMEOUT))
        self.assertEqual(ws.close_code, 1009)
        await self.assert_others_undisturbed(other)


class OriginTests(WebSocketTestCase):
    options = {"allowed_origins": ["https://app.example.com", "partner.example.org"]}

    @gen_test(timeout=TIMEOUT)
    async def test_foreign_origin_is_refused(self):
        """A browser from an origin not allowed gets 403 at the handshake."""
        with expect_log(self, "refused WebSocket from origin"):
            with self.assertRaises(HTTPClientError) as caught:
                await websocket_connect(
                    HTTPRequest(self.get_url("/ws").replace("http", "ws"), headers={"Origin": "https://evil.example"})
                )
        self.assertEqual(caught.exception.code, 403)

    @gen_test(timeout=TIMEOUT)
    async def test_same_host_and_listed_origins_are_allowed(self):
        """The server's own host and the listed origins may connect."""
        for origin in [
            f"http://127.0.0.1:{self.get_http_port()}",
            "https://app.example.com",
            "http://partner.example.org",
        ]:
            with self.subTest(origin=origin):
                ws = await self.connect(Origin=origin)
                ws.close()

    @gen_test(timeout=TIMEOUT)
    async def test_default_allows_only_same_host(self):
        """With no list, only the same host is allowed (0.1 allowed every origin)."""
        from snorky.request_handlers.options import origin_allowed

        self.assertTrue(origin_allowed("http://h:1", "h:1", []))
        self.assertFalse(origin_allowed("http://other:1", "h:1", []))
        self.assertTrue(origin_allowed("http://anything", "h:1", ["*"]))


class SlowClientTests(WebSocketTestCase):
    options = {"max_unsent_bytes": 64 * 1024}

    @gen_test(timeout=30)
    async def test_slow_client_is_closed_and_others_get_everything(self):
        """A client that stops reading is closed with 4008; a reading client gets every message."""
        slow = await RawWebSocket.connect(self.get_http_port(), rcvbuf=4096)
        slow_server_side = await asyncio.wait_for(self.watcher.connected.get(), TIMEOUT)
        await slow.send_text(rpc_frame("pubsub", "subscribe", channel="firehose"))
        fast = await self.connect()
        await self.subscribe(fast, "firehose")
        received = []

        async def reader():
            while True:
                message = await self.read(fast)
                received.append(message["message"]["message"]["i"])
                if received[-1] == -1:
                    return

        reading = asyncio.ensure_future(reader())
        payload = "y" * 1000
        sent = 0
        with expect_log(self, "closing slow client"):
            while not slow_server_side.closed and sent < 50000:
                for _ in range(100):
                    self.pubsub.do_publish("firehose", {"i": sent, "pad": payload})
                    sent += 1
                await asyncio.sleep(0)  # let the loop write and read
        self.assertTrue(slow_server_side.closed, f"slow client still open after {sent} messages")
        at_close = sent
        for _ in range(10):  # published after the close: never sent to the slow client
            self.pubsub.do_publish("firehose", {"i": sent, "pad": payload})
            sent += 1
        self.pubsub.do_publish("firehose", {"i": -1})
        await asyncio.wait_for(reading, 20)
        self.assertEqual(received, list(range(sent)) + [-1])
        code, before_close = await asyncio.wait_for(slow.read_until_close(), 20)
        self.assertEqual(code, CLOSE_SLOW_CLIENT)
        self.assertLessEqual(before_close, at_close + 1)  # the subscribe reply, then messages
        slow.close()
        await asyncio.wait_for(self.watcher.disconnected.get(), TIMEOUT)
        self.assertEqual(self.pubsub.subscriptions["firehose"], {next(iter(self.registry.clients))})


class DeadPeerTests(WebSocketTestCase):
    options = {"ping_interval": 0.2, "ping_timeout": 0.2}

    @gen_test(timeout=TIMEOUT)
    async def test_peer_that_never_pongs_is_closed(self):
        """A peer that does not answer pings is closed and cleaned up."""
        dead = await RawWebSocket.connect(self.get_http_port())
        await asyncio.wait_for(self.watcher.connected.get(), TIMEOUT)
        await dead.send_text(rpc_frame("pubsub", "subscribe", channel="c"))
        code, _ = await asyncio.wait_for(dead.read_until_close(), TIMEOUT)  # pings arrive, unanswered
        dead.close()
        await asyncio.wait_for(self.watcher.disconnected.get(), TIMEOUT)
        self.assertEqual(self.pubsub.subscriptions, {})

    @gen_test(timeout=TIMEOUT)
    async def test_live_peer_stays(self):
        """A peer that answers pings stays connected across several ping intervals."""
        ws = await self.connect()
        for i in range(4):
            ws.write_message(rpc_frame("echo", "echo", call_id=i, value=i))
            self.assertEqual((await self.read(ws))["message"]["data"], i)
            await asyncio.sleep(0.15)
        self.assertEqual(len(self.registry.clients), 1)


class RouteTests(unittest.TestCase):
    def test_unknown_option_fails_when_the_route_is_built(self):
        """A misspelt option is a TypeError naming it, before any connection."""
        with self.assertRaises(TypeError) as caught:
            SnorkyWebSocketHandler.get_route(ServiceRegistry(), "/ws", pingg_interval=1)
        self.assertIn("pingg_interval", str(caught.exception))

    def test_routes_share_one_options_object(self):
        """get_route builds the transport options once, for every connection of the route."""
        _path, _handler, kwargs = SnorkyWebSocketHandler.get_route(ServiceRegistry(), "/ws", max_message_size=10)
        self.assertEqual(kwargs["transport_options"].max_message_size, 10)


class HandWrittenRouteTests(ClosesSockets, AsyncHTTPTestCase):
    def get_app(self):
        # A route tuple written by hand, as some 0.1 apps did.
        return Application([(r"/ws", SnorkyWebSocketHandler, {"service_registry": ServiceRegistry([Echo("echo")])})])

    @gen_test(timeout=TIMEOUT)
    async def test_hand_written_route(self):
        """A hand-written route with only service_registry works with the default options."""
        ws = await self.open_ws(self.get_url("/ws").replace("http", "ws"))
        ws.write_message(rpc_frame("echo", "echo", value=1))
        self.assertEqual(json.loads(await ws.read_message())["message"]["data"], 1)


class CompatibleAppTests(AsyncHTTPTestCase):
    def get_app(self):
        # Exactly as a Snorky 0.1 app wrote it.
        registry = ServiceRegistry()
        registry.register_service(PubSubService("pubsub"))
        return Application([SnorkyWebSocketHandler.get_route(registry, "/websocket")])

    @gen_test(timeout=TIMEOUT)
    async def test_01_app_runs_unchanged(self):
        """A 0.1-style app serves subscribe and publish over /websocket."""
        ws = await websocket_connect(self.get_url("/websocket").replace("http", "ws"))
        ws.write_message(rpc_frame("pubsub", "subscribe", channel="c"))
        self.assertEqual(json.loads(await ws.read_message())["message"]["type"], "response")
        ws.write_message(rpc_frame("pubsub", "publish", call_id=2, channel="c", message="m"))
        messages = [json.loads(await ws.read_message()) for _ in range(2)]
        self.assertIn({"service": "pubsub", "message": {"type": "message", "channel": "c", "message": "m"}}, messages)
        ws.close()
