"""RFC 6455 framing as Snorky's direct connection handles it, byte by byte from a raw client.

The same cases run against Tornado's own frame loop (``direct_io = False``, the path of
TLS and compressed connections), which must behave the same.
"""

import asyncio
import json
import struct

from tornado.testing import AsyncHTTPTestCase, gen_test
from tornado.web import Application

from snorky import ServiceRegistry
from snorky.request_handlers.websocket import SnorkyWebSocketHandler
from snorky.services.pubsub import PubSubService
from tests.transports.test_websocket import Echo, Watcher
from tests.utils import expect_log, rpc_frame
from tests.wsraw import RawWebSocket, frame

TIMEOUT = 10


class TornadoFramedHandler(SnorkyWebSocketHandler):
    direct_io = False


class DirectFramingTests(AsyncHTTPTestCase):
    handler = SnorkyWebSocketHandler
    direct = True

    def get_app(self):
        self.watcher = Watcher()
        self.registry = ServiceRegistry([self.watcher, Echo("echo"), PubSubService("pubsub")])
        route = self.handler.get_route(self.registry, "/ws", max_message_size=1000)
        return Application([route])

    def setUp(self):
        super().setUp()
        self.raws = []

    def tearDown(self):
        for ws in self.raws:
            ws.close()
        super().tearDown()

    async def open(self, then=b""):
        ws = await RawWebSocket.connect(self.get_http_port(), then=then)
        self.raws.append(ws)
        client = await asyncio.wait_for(self.watcher.connected.get(), TIMEOUT)
        self.assertEqual(client.req_handler.direct_connection is not None, self.direct)
        return ws

    async def close_code(self, ws):
        """The code of the server's close frame, or None if it dropped the connection without one
        (Tornado's frame loop does that on protocol errors)."""
        try:
            code, _ = await asyncio.wait_for(ws.read_until_close(), TIMEOUT)
        except ConnectionError:
            return None
        return code

    async def reply(self, ws):
        opcode, payload = await asyncio.wait_for(ws.read_frame(), TIMEOUT)
        self.assertEqual(opcode, 0x1)
        return json.loads(payload)["message"]

    @gen_test(timeout=TIMEOUT)
    async def test_fragmented_message_is_reassembled(self):
        """A text message in three frames, with a ping between two of them, is one message."""
        ws = await self.open()
        text = rpc_frame("echo", "echo", call_id=7, value="é" * 100)
        data = text.encode()
        await ws.send_raw(frame(data[:10], final=False) + frame(b"hi", opcode=0x9))
        self.assertEqual(await asyncio.wait_for(ws.read_frame(), TIMEOUT), (0xA, b"hi"))
        await ws.send_raw(frame(data[10:101], opcode=0x0, final=False) + frame(data[101:], opcode=0x0))
        self.assertEqual((await self.reply(ws))["data"], "é" * 100)

    @gen_test(timeout=TIMEOUT)
    async def test_first_message_in_the_handshake_segment(self):
        """A frame sent in the same write as the handshake request is answered."""
        ws = await self.open(then=frame(rpc_frame("echo", "echo", call_id=3, value="early")))
        self.assertEqual((await self.reply(ws))["data"], "early")

    @gen_test(timeout=TIMEOUT)
    async def test_invalid_utf8_closes_with_1007(self):
        """A text frame that is not UTF-8 closes that connection with 1007."""
        ws = await self.open()
        if self.direct:
            with expect_log(self, "not UTF-8"):
                await ws.send_raw(frame(b"\xff\xfe"))
                self.assertEqual(await self.close_code(ws), 1007)
        else:
            await ws.send_raw(frame(b"\xff\xfe"))
            self.assertIsNone(await self.close_code(ws))
        await asyncio.wait_for(self.watcher.disconnected.get(), TIMEOUT)

    @gen_test(timeout=TIMEOUT)
    async def test_unmasked_frame_closes_with_1002(self):
        """A client frame without a mask is a protocol error: 1002."""
        if not self.direct:
            self.skipTest("Tornado's frame loop accepts unmasked client frames")
        ws = await self.open()
        with expect_log(self, "unmasked"):
            await ws.send_raw(frame(rpc_frame("echo", "echo", value=1), masked=False))
            self.assertEqual(await self.close_code(ws), 1002)
        await asyncio.wait_for(self.watcher.disconnected.get(), TIMEOUT)

    @gen_test(timeout=TIMEOUT)
    async def test_protocol_errors_close_with_1002(self):
        """Each protocol error closes its connection with 1002, logged once; others carry on."""
        if not self.direct:
            self.skipTest("Tornado's frame loop drops such connections without a close frame")
        cases = [
            ("ping of 126 bytes", frame(b"p" * 126, opcode=0x9), "bad control frame"),
            ("fragmented ping", frame(b"p", opcode=0x9, final=False), "bad control frame"),
            ("unknown opcode", frame(b"x", opcode=0x3), "unknown opcode 3"),
            ("continuation of nothing", frame(b"x", opcode=0x0), "continuation frame outside"),
            ("new message inside a fragmented one", frame(b"a", final=False) + frame(b"b"), "inside a fragmented"),
            ("reserved bit set", bytes([0xC1]) + frame(b"x")[1:], "reserved bits"),
        ]
        other = await self.open()
        for name, data, log in cases:
            with self.subTest(name):
                ws = await self.open()
                with expect_log(self, log):
                    await ws.send_raw(data)
                    self.assertEqual(await self.close_code(ws), 1002)
                ws.close()  # instead of answering the close frame: the server drops it at once
                await asyncio.wait_for(self.watcher.disconnected.get(), TIMEOUT)
        await other.send_text(rpc_frame("echo", "echo", call_id=9, value="still here"))
        self.assertEqual((await self.reply(other))["data"], "still here")

    @gen_test(timeout=TIMEOUT)
    async def test_fragments_over_the_limit_close_with_1009(self):
        """Fragments that add up to more than max_message_size close with 1009."""
        ws = await self.open()
        with expect_log(self, "too big"):
            await ws.send_raw(frame("x" * 600, final=False) + frame("x" * 600, opcode=0x0))
            self.assertEqual(await self.close_code(ws), 1009)

    @gen_test(timeout=TIMEOUT)
    async def test_client_close_is_answered_and_cleaned_up(self):
        """The client's close frame is echoed, and the server forgets the client."""
        ws = await self.open()
        await ws.send_text(rpc_frame("pubsub", "subscribe", call_id=1, channel="c"))
        self.assertEqual((await self.reply(ws))["type"], "response")
        await ws.send_raw(frame(struct.pack("!H", 1000) + b"bye", opcode=0x8))
        self.assertEqual(await self.close_code(ws), 1000)
        await asyncio.wait_for(self.watcher.disconnected.get(), TIMEOUT)
        self.assertEqual(self.registry.clients, set())


class LegacyHandler(SnorkyWebSocketHandler):
    """A 0.1-style subclass: its own on_message, answering with Tornado's write_message."""

    def on_message(self, message):
        if message == "ping":
            self.write_message({"pong": True})
            self.write_message(b"\x00\x01", binary=True)
        else:
            super().on_message(message)


class SubclassTests(DirectFramingTests):
    handler = LegacyHandler

    @gen_test(timeout=TIMEOUT)
    async def test_subclass_on_message_and_write_message(self):
        """A subclass's on_message is called, and write_message sends text, JSON and binary frames."""
        ws = await self.open()
        await ws.send_text("ping")
        self.assertEqual(await asyncio.wait_for(ws.read_frame(), TIMEOUT), (0x1, b'{"pong": true}'))
        self.assertEqual(await asyncio.wait_for(ws.read_frame(), TIMEOUT), (0x2, b"\x00\x01"))
        await ws.send_text(rpc_frame("echo", "echo", call_id=4, value="via super"))
        self.assertEqual((await self.reply(ws))["data"], "via super")


class TornadoFramingTests(DirectFramingTests):
    handler = TornadoFramedHandler
    direct = False
