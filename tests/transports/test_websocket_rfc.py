"""The direct WebSocket path over real sockets: the close handshake, close codes, large
frames, permessage-deflate, deeply nested JSON, TCP_NODELAY, and the Tornado internals check.

Each case is one finding of a conformance run (Autobahn|Testsuite) or of hostile
input over a real connection; the pure rules are tested byte by byte in
``tests/test_websocket_connection.py``.
"""

import asyncio
import json
import socket
import struct
import zlib
from unittest import mock

from tornado.testing import AsyncHTTPTestCase, AsyncTestCase, gen_test
from tornado.web import Application
from tornado.websocket import websocket_connect

from snorky import ServiceRegistry
from snorky.config import Config
from snorky.protocol import compress_message
from snorky.request_handlers import tornado_internals, ws_direct
from snorky.request_handlers.websocket import SnorkyWebSocketHandler
from snorky.server import SnorkyServer
from snorky.services.pubsub import PubSubService
from tests.transports.test_websocket import Echo, Watcher
from tests.utils import ClosesSockets, expect_log, rpc_frame
from tests.wsraw import RawWebSocket, frame

TIMEOUT = 10


def nested(depth):
    """A JSON list nested ``depth`` levels deep."""
    return "[" * depth + "]" * depth


class DirectTestCase(ClosesSockets, AsyncHTTPTestCase):
    options: dict = {}

    def get_app(self):
        self.watcher = Watcher()
        self.pubsub = PubSubService("pubsub")
        self.registry = ServiceRegistry([self.watcher, Echo("echo"), self.pubsub])
        return Application([SnorkyWebSocketHandler.get_route(self.registry, "/ws", **self.options)])

    def setUp(self):
        super().setUp()
        self.raws = []

    def tearDown(self):
        for ws in self.raws:
            ws.close()
        super().tearDown()

    async def raw(self, **kwargs):
        ws = await RawWebSocket.connect(self.get_http_port(), **kwargs)
        self.raws.append(ws)
        client = await asyncio.wait_for(self.watcher.connected.get(), TIMEOUT)
        self.assertIsNotNone(client.req_handler.direct_connection)
        return ws, client

    async def reply(self, ws):
        opcode, payload = await asyncio.wait_for(ws.read_frame(), TIMEOUT)
        self.assertEqual(opcode, 0x1)
        return json.loads(payload)

    async def close_frame(self, ws):
        opcode, payload = await asyncio.wait_for(ws.read_frame(), TIMEOUT)
        self.assertEqual(opcode, 0x8)
        return struct.unpack("!H", payload[:2])[0] if payload else None


class CloseHandshakeTests(DirectTestCase):
    """RFC 6455, 7.1: the server closes first, hears the answer, ends TCP promptly."""

    def setUp(self):
        super().setUp()
        patcher = mock.patch.object(ws_direct, "CLOSE_TIMEOUT", 60.0)  # far longer than any wait below
        patcher.start()
        self.addCleanup(patcher.stop)

    @gen_test(timeout=TIMEOUT)
    async def test_server_close_is_answered_and_tcp_ends(self):
        """A server-initiated close (4002): services hear at once, the peer's close reply
        is read, and the server ends TCP well before the close timeout."""
        ws, client = await self.raw()
        client.close(4002)
        self.assertEqual(await self.close_frame(ws), 4002)
        # The services heard before the peer answered.
        self.assertIs(await asyncio.wait_for(self.watcher.disconnected.get(), TIMEOUT), client)
        self.assertEqual(self.registry.clients, set())
        await ws.send_raw(frame(struct.pack("!H", 4002), opcode=0x8))
        self.assertEqual(await asyncio.wait_for(ws.read_eof(), TIMEOUT), b"")

    @gen_test(timeout=TIMEOUT)
    async def test_messages_after_the_server_close_are_not_delivered(self):
        """Frames the peer sends after the server's close frame are read but not processed."""
        ws, client = await self.raw()
        client.close(4004)
        await ws.send_text(rpc_frame("pubsub", "subscribe", channel="late"))
        await ws.send_raw(frame(struct.pack("!H", 1000), opcode=0x8))
        self.assertEqual(await self.close_frame(ws), 4004)
        await asyncio.wait_for(ws.read_eof(), TIMEOUT)
        self.assertNotIn("late", self.pubsub.subscriptions)

    @gen_test(timeout=TIMEOUT)
    async def test_protocol_error_ends_tcp_without_waiting(self):
        """After failing the connection (1002) the server ends TCP itself, answer or not."""
        ws, client = await self.raw()
        with expect_log(self, "reserved bits"):
            await ws.send_raw(bytes([0xC1]) + frame(b"x")[1:])
            self.assertEqual(await self.close_frame(ws), 1002)
            await asyncio.wait_for(ws.read_eof(), TIMEOUT)
        await asyncio.wait_for(self.watcher.disconnected.get(), TIMEOUT)

    @gen_test(timeout=TIMEOUT)
    async def test_client_close_is_echoed_and_tcp_ends(self):
        """The peer's close is echoed and the server closes TCP first (7.1.1)."""
        ws, client = await self.raw()
        await ws.send_raw(frame(struct.pack("!H", 1000) + b"bye", opcode=0x8))
        self.assertEqual(await self.close_frame(ws), 1000)
        self.assertEqual(await asyncio.wait_for(ws.read_eof(), TIMEOUT), b"")
        await asyncio.wait_for(self.watcher.disconnected.get(), TIMEOUT)
        self.assertEqual(client.req_handler.close_code, 1000)
        self.assertEqual(client.req_handler.close_reason, "bye")

    @gen_test(timeout=TIMEOUT)
    async def test_slow_client_is_forgotten_at_once(self):
        """A client that stops reading is closed with 4008 and services hear of it at once,
        though its close frame waits behind what it did not read."""
        ws, client = await self.raw(rcvbuf=4096)
        await ws.send_text(rpc_frame("pubsub", "subscribe", channel="flood"))
        await asyncio.wait_for(self._until(lambda: "flood" in self.pubsub.subscriptions), TIMEOUT)
        with expect_log(self, "closing slow client"):
            while not client.closed:
                self.pubsub.do_publish("flood", "z" * 10000)
                await asyncio.sleep(0)
            await asyncio.wait_for(self.watcher.disconnected.get(), TIMEOUT)
        self.assertNotIn("flood", self.pubsub.subscriptions)

    async def _until(self, predicate):
        while not predicate():
            await asyncio.sleep(0.01)


class OrderTests(DirectTestCase):
    """Pongs keep their place among answers (Autobahn 5.6, 5.7, 5.19)."""

    @gen_test(timeout=TIMEOUT)
    async def test_ping_between_fragments_is_answered_before_the_message(self):
        """A ping between two fragments of a call is answered before the call's reply."""
        ws, _client = await self.raw()
        data = rpc_frame("echo", "echo", call_id=1, value="in two parts").encode()
        await ws.send_raw(frame(data[:9], final=False) + frame(b"ping payload", opcode=0x9) + frame(data[9:], opcode=0))
        self.assertEqual(await asyncio.wait_for(ws.read_frame(), TIMEOUT), (0xA, b"ping payload"))
        self.assertEqual((await self.reply(ws))["message"]["data"], "in two parts")

    @gen_test(timeout=TIMEOUT)
    async def test_call_then_ping_is_answered_in_order(self):
        """A call then a ping, in one write: the reply comes first, then the pong."""
        ws, _client = await self.raw()
        await ws.send_raw(frame(rpc_frame("echo", "echo", call_id=2, value="first")) + frame(b"then", opcode=0x9))
        self.assertEqual((await self.reply(ws))["message"]["data"], "first")
        self.assertEqual(await asyncio.wait_for(ws.read_frame(), TIMEOUT), (0xA, b"then"))


class CloseCodeTests(DirectTestCase):
    """RFC 6455, 7.4: close frames the server refuses (Autobahn 7.3.2, 7.5.1, 7.9.*)."""

    @gen_test(timeout=TIMEOUT)
    async def test_invalid_codes_are_answered_1002(self):
        """Codes that may not be sent are answered with 1002, not echoed."""
        for code in (0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999):
            with self.subTest(code=code):
                ws, _client = await self.raw()
                with expect_log(self, f"code {code}"):
                    await ws.send_raw(frame(struct.pack("!H", code), opcode=0x8))
                    self.assertEqual(await self.close_frame(ws), 1002)
                    await asyncio.wait_for(ws.read_eof(), TIMEOUT)
                await asyncio.wait_for(self.watcher.disconnected.get(), TIMEOUT)

    @gen_test(timeout=TIMEOUT)
    async def test_reason_that_is_not_utf8_is_answered_1007(self):
        """A close reason that is not UTF-8 is answered with 1007."""
        ws, _client = await self.raw()
        with expect_log(self, "not UTF-8"):
            await ws.send_raw(frame(struct.pack("!H", 1000) + b"\xed\xa0\x80", opcode=0x8))
            self.assertEqual(await self.close_frame(ws), 1007)

    @gen_test(timeout=TIMEOUT)
    async def test_one_byte_payload_is_answered_1002(self):
        """A close frame with a 1-byte payload is answered with 1002, not echoed."""
        ws, _client = await self.raw()
        with expect_log(self, "1-byte"):
            await ws.send_raw(frame(b"\x03", opcode=0x8))
            self.assertEqual(await self.close_frame(ws), 1002)

    @gen_test(timeout=TIMEOUT)
    async def test_valid_code_is_echoed(self):
        """A registered or private code (1012, 4999) is echoed."""
        for code in (1012, 4999):
            with self.subTest(code=code):
                ws, _client = await self.raw()
                await ws.send_raw(frame(struct.pack("!H", code), opcode=0x8))
                self.assertEqual(await self.close_frame(ws), code)


class LargeMessageTests(DirectTestCase):
    options = {"max_message_size": 16 << 20}

    @gen_test(timeout=30)
    async def test_large_message_round_trip(self):
        """An 8 MiB message is received and answered whole (Autobahn 9.1.*)."""
        ws, _client = await self.raw()
        value = "x" * (8 << 20)
        await ws.send_text(rpc_frame("echo", "echo", call_id=1, value=value))
        self.assertEqual((await self.reply(ws))["message"]["data"], value)


class StaysPlainTests(DirectTestCase):
    """A route without ``compression`` ignores offers."""

    @gen_test(timeout=TIMEOUT)
    async def test_offer_without_compression_enabled(self):
        """The offer is not accepted; frames are plain."""
        ws, client = await self.raw(extensions="permessage-deflate; client_max_window_bits")
        self.assertIsNone(ws.response_header("Sec-WebSocket-Extensions"))
        self.assertIsNone(client.req_handler.direct_connection.deflate)


class CompressionTests(DirectTestCase):
    """RFC 7692 on the direct path: negotiated per connection, one compressed frame per publish."""

    options = {"compression": True, "compression_min_size": 64}
    OFFER = "permessage-deflate; client_max_window_bits"

    @gen_test(timeout=TIMEOUT)
    async def test_negotiated_on_the_direct_path(self):
        """An offer is accepted on the direct path with server_no_context_takeover."""
        ws, client = await self.raw(extensions=self.OFFER)
        self.assertEqual(
            ws.response_header("Sec-WebSocket-Extensions"), "permessage-deflate; server_no_context_takeover"
        )
        self.assertIsNotNone(client.req_handler.direct_connection.deflate)

    @gen_test(timeout=TIMEOUT)
    async def test_publish_is_compressed_once_for_every_compressing_client(self):
        """Two compressing clients get the same compressed frame, built once; a client that
        did not offer compression gets the plain frame; a Tornado client decodes it."""
        zipped = [(await self.raw(extensions=self.OFFER))[0] for _ in range(2)]
        plain, _ = await self.raw()
        tornado_ws = await self.compressing_tornado_client()
        await asyncio.wait_for(self.watcher.connected.get(), TIMEOUT)
        for ws in [*zipped, plain]:
            await ws.send_text(rpc_frame("pubsub", "subscribe", channel="news"))
            self.assertEqual((await self.reply_any(ws))["message"]["type"], "response")
        tornado_ws.write_message(rpc_frame("pubsub", "subscribe", channel="news"))
        self.assertEqual(json.loads(await tornado_ws.read_message())["message"]["type"], "response")
        news = {"title": "compressed " * 50}
        with mock.patch("snorky.websocket.deflate.compress_message", wraps=compress_message) as compress:
            self.pubsub.do_publish("news", news)
        self.assertEqual(compress.call_count, 1)
        frames = [await asyncio.wait_for(ws.read_frame_rsv(), TIMEOUT) for ws in zipped]
        self.assertEqual(frames[0], frames[1])
        rsv1, opcode, payload = frames[0]
        self.assertTrue(rsv1)
        body = json.loads(zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff"))
        self.assertEqual(body["message"]["message"], news)
        rsv1, _opcode, payload = await asyncio.wait_for(plain.read_frame_rsv(), TIMEOUT)
        self.assertFalse(rsv1)
        self.assertEqual(json.loads(payload)["message"]["message"], news)
        self.assertEqual(json.loads(await tornado_ws.read_message())["message"]["message"], news)

    async def compressing_tornado_client(self):
        ws = await websocket_connect(self.get_url("/ws").replace("http", "ws"), compression_options={})
        self.sockets.append(ws)
        return ws

    async def reply_any(self, ws):
        rsv1, _opcode, payload = await asyncio.wait_for(ws.read_frame_rsv(), TIMEOUT)
        if rsv1:
            payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
        return json.loads(payload)

    @gen_test(timeout=TIMEOUT)
    async def test_compressed_messages_from_the_client(self):
        """A client's compressed messages (Tornado's client compresses) are understood and
        answered compressed."""
        tornado_ws = await self.compressing_tornado_client()
        await asyncio.wait_for(self.watcher.connected.get(), TIMEOUT)
        value = "é" * 500
        for call_id in range(3):  # Tornado's client keeps its context: later messages refer back
            tornado_ws.write_message(rpc_frame("echo", "echo", call_id=call_id, value=value))
            reply = json.loads(await asyncio.wait_for(tornado_ws.read_message(), TIMEOUT))
            self.assertEqual(reply["message"]["data"], value)

    @gen_test(timeout=TIMEOUT)
    async def test_eight_bit_window_gets_plain_frames(self):
        """server_max_window_bits=8 is accepted; zlib cannot honour it, so frames stay plain."""
        ws, _client = await self.raw(extensions="permessage-deflate; server_max_window_bits=8")
        self.assertIn("server_max_window_bits=8", ws.response_header("Sec-WebSocket-Extensions"))
        await ws.send_text(rpc_frame("echo", "echo", value="p" * 500))
        rsv1, _opcode, payload = await asyncio.wait_for(ws.read_frame_rsv(), TIMEOUT)
        self.assertFalse(rsv1)
        self.assertEqual(json.loads(payload)["message"]["data"], "p" * 500)

    @gen_test(timeout=TIMEOUT)
    async def test_decompression_bomb_closes_1009(self):
        """A compressed message that inflates past max_message_size closes with 1009."""
        ws, _client = await self.raw(extensions=self.OFFER)
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        bomb = (compressor.compress(b" " * (4 << 20)) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
        data = frame(bomb)
        with expect_log(self, "too big"):
            await ws.send_raw(bytes([data[0] | 0x40]) + data[1:])
            self.assertEqual(await self.close_frame(ws), 1009)


class DeepJSONTests(DirectTestCase):
    """Deeply nested JSON is refused up front with invalid_params and one log line."""

    @gen_test(timeout=TIMEOUT)
    async def test_deep_frame_gets_invalid_params_and_the_connection_stays(self):
        """500 nested lists: an invalid_params error, one log line, no 1011; the socket goes on."""
        ws, _client = await self.raw()
        with expect_log(self, "nested more than 128 levels"):
            await ws.send_text(nested(500))
            reply = await self.reply(ws)
        self.assertEqual(reply["message"]["code"], "invalid_params")
        await ws.send_text(rpc_frame("echo", "echo", call_id=2, value="still here"))
        self.assertEqual((await self.reply(ws))["message"]["data"], "still here")

    @gen_test(timeout=TIMEOUT)
    async def test_deep_publish_is_refused_not_dropped(self):
        """A publish nested 300 deep is answered invalid_params with its callId and reaches no
        subscriber; one nested 120 deep is delivered."""
        publisher, _ = await self.raw()
        subscriber, _ = await self.raw()
        await subscriber.send_text(rpc_frame("pubsub", "subscribe", channel="c"))
        await self.reply(subscriber)
        deep = '{"service":"pubsub","message":{"command":"publish","callId":7,"params":{"channel":"c","message":%s}}}'
        with expect_log(self, "nested more than 128 levels"):
            await publisher.send_text(deep % nested(300))
            refused = await self.reply(publisher)
        self.assertEqual(
            refused,
            {
                "service": "pubsub",
                "message": {"type": "error", "callId": 7, "message": "Invalid params", "code": "invalid_params"},
            },
        )
        await publisher.send_text(deep % nested(120))
        self.assertEqual((await self.reply(publisher))["message"]["type"], "response")
        delivered = await self.reply(subscriber)
        self.assertEqual(json.dumps(delivered["message"]["message"], separators=(",", ":")), nested(120))


class NodelayTests(DirectTestCase):
    @gen_test(timeout=TIMEOUT)
    async def test_nodelay_is_set(self):
        """The taken-over socket sends small frames at once (TCP_NODELAY)."""
        _ws, client = await self.raw()
        sock = client.req_handler.direct_connection.sock
        self.assertTrue(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


class NagleTests(DirectTestCase):
    options = {"tcp_nodelay": False}

    @gen_test(timeout=TIMEOUT)
    async def test_nodelay_can_be_turned_off(self):
        """tcp_nodelay = false leaves Nagle's algorithm on."""
        _ws, client = await self.raw()
        sock = client.req_handler.direct_connection.sock
        self.assertFalse(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


class ShutdownTests(AsyncTestCase):
    @gen_test(timeout=TIMEOUT)
    async def test_shutdown_with_a_well_behaved_client_is_quick(self):
        """stop() with a client that answers the close handshake does not wait out its grace."""
        config = Config.from_dict({"frontend": {"port": 0}})
        server = SnorkyServer(config)
        await server.start()
        ws = await websocket_connect(f"ws://127.0.0.1:{server.frontend_port}/ws")
        try:
            while not server.registry.clients:
                await asyncio.sleep(0.01)
            await asyncio.wait_for(server.stop(grace=60, window=0), TIMEOUT / 2)
            self.assertIsNone(await asyncio.wait_for(ws.read_message(), TIMEOUT))
            self.assertEqual(ws.close_code, 1012)  # sent away by the drain, with no window to spread it over
        finally:
            ws.close()


class TornadoInternalsTests(AsyncTestCase):
    def test_every_internal_is_there(self):
        """Each undocumented Tornado attribute Snorky uses exists in the installed Tornado."""
        self.assertEqual(tornado_internals.check(), [])

    def test_a_change_is_named(self):
        """A missing attribute is reported by name, with what depended on it."""
        extra = ("tornado.iostream.IOStream", "_gone_in_a_later_release", "the test")
        with mock.patch.object(tornado_internals, "REQUIRED", [*tornado_internals.REQUIRED, extra]):
            problems = tornado_internals.check()
        self.assertEqual(
            problems,
            [
                "tornado.iostream.IOStream._gone_in_a_later_release is gone from this Tornado;"
                " Snorky used it for the test"
            ],
        )


class HandshakeRequestTests(DirectTestCase):
    options = {"compression": True}

    @gen_test(timeout=TIMEOUT)
    async def test_tornado_does_not_negotiate_on_the_direct_path(self):
        """With compression on, the response holds Snorky's answer once, not Tornado's too."""
        ws, _client = await self.raw(extensions="permessage-deflate; server_max_window_bits=10")
        self.assertEqual(ws.response_head.lower().count(b"sec-websocket-extensions"), 1)
        self.assertIn("server_max_window_bits=10", ws.response_header("Sec-WebSocket-Extensions"))
