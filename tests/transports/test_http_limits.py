"""HTTP input limits on both ports of a real ``SnorkyServer``: request bodies over the limit,
SockJS sends that are not arrays of strings, and slow senders (slowloris)."""

import asyncio
import json
import socket

import requests
from tornado.testing import AsyncTestCase, gen_test

from snorky.config import Config
from snorky.server import SnorkyServer
from tests.utils import expect_log

TIMEOUT = 10
KEY = "limits-test-key"


class ServerTestCase(AsyncTestCase):
    """A real SnorkyServer on free loopback ports, with small limits and timeouts."""

    settings: dict = {}

    def setUp(self):
        super().setUp()
        config = Config.from_dict(
            {
                "frontend": {"port": 0, "max_message_size": 1000, "header_timeout": 0.5, "body_timeout": 0.5},
                "backend": {
                    "port": 0,
                    "api_key": KEY,
                    "max_message_size": 2000,
                    "header_timeout": 0.5,
                    "body_timeout": 0.5,
                },
            }
        )
        self.server = SnorkyServer(config)
        self.io_loop.run_sync(self.server.start)
        self.socks = []

    def tearDown(self):
        for sock in self.socks:
            sock.close()
        self.io_loop.run_sync(self.server.stop)
        super().tearDown()

    async def connect(self, port):
        sock = socket.socket()
        sock.setblocking(False)
        self.socks.append(sock)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        return sock

    async def read_all(self, sock):
        """Everything the server sends until it closes the connection."""
        loop, data = asyncio.get_running_loop(), b""
        while True:
            try:
                chunk = await loop.sock_recv(sock, 65536)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk

    async def read_response(self, sock):
        """One HTTP response: (status, headers text, body), read by its Content-Length."""
        loop, data = asyncio.get_running_loop(), b""
        while b"\r\n\r\n" not in data:
            chunk = await loop.sock_recv(sock, 65536)
            self.assertTrue(chunk, f"connection closed after {data!r}")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(
            next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        while len(body) < length:
            body += await loop.sock_recv(sock, 65536)
        return int(head.split()[1]), head.decode(), body[:length]


class BackendBodyTests(ServerTestCase):
    """The backend port's body limit, checked before the body is read."""

    def url(self):
        return f"http://127.0.0.1:{self.server.backend_port}/backend"

    @gen_test(timeout=TIMEOUT)
    async def test_body_well_over_the_limit_gets_json_413(self):
        """A body 100 KiB over the limit gets the documented JSON 413 (it was a bare 400)."""
        body = json.dumps({"service": "pubsub", "message": "x" * (100 << 10)})
        loop = asyncio.get_running_loop()
        with expect_log(self, "refused: 413"):
            response = await loop.run_in_executor(
                None, lambda: requests.post(self.url(), data=body, headers={"X-Backend-Key": KEY}, timeout=TIMEOUT)
            )
        self.assertEqual(response.status_code, 413)
        self.assertEqual(response.json()["code"], "message_too_large")

    @gen_test(timeout=TIMEOUT)
    async def test_huge_body_is_refused_before_it_is_read(self):
        """A request announcing 95 MB is answered 413 from its headers, without its body."""
        sock = await self.connect(self.server.backend_port)
        request = (
            f"POST /backend HTTP/1.1\r\nHost: x\r\nX-Backend-Key: {KEY}\r\nContent-Length: {95 << 20}\r\n\r\n"
        ).encode()
        with expect_log(self, "refused: 413"):
            await asyncio.get_running_loop().sock_sendall(sock, request)
            status, _head, body = await self.read_response(sock)
        self.assertEqual((status, json.loads(body)["code"]), (413, "message_too_large"))

    @gen_test(timeout=TIMEOUT)
    async def test_chunked_body_over_the_limit_gets_json_413(self):
        """A chunked body that grows past the limit gets the JSON 413 too."""
        sock = await self.connect(self.server.backend_port)
        chunk = b"x" * 1500
        request = (
            (
                f"POST /backend HTTP/1.1\r\nHost: x\r\nX-Backend-Key: {KEY}\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode()
            + b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3))
            + b"0\r\n\r\n"
        )
        with expect_log(self, "refused: 413"):
            await asyncio.get_running_loop().sock_sendall(sock, request)
            status, _head, body = await self.read_response(sock)
        self.assertEqual((status, json.loads(body)["code"]), (413, "message_too_large"))

    @gen_test(timeout=TIMEOUT)
    async def test_body_within_the_limit_is_served(self):
        """A body under the limit is still served (the limit is not off by one)."""
        body = json.dumps({"service": "control", "message": {"command": "nope", "callId": 1}})
        loop = asyncio.get_running_loop()
        response = await loop.run_in_executor(
            None, lambda: requests.post(self.url(), data=body, headers={"X-Backend-Key": KEY}, timeout=TIMEOUT)
        )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["message"]["code"], "unknown_command")


class SlowSenderTests(ServerTestCase):
    """Header and body timeouts close slowloris connections on both ports."""

    @gen_test(timeout=TIMEOUT)
    async def test_partial_header_is_cut_off(self):
        """A connection that sends half a request header and stops is closed, on both ports."""
        for port in (self.server.frontend_port, self.server.backend_port):
            with self.subTest(port=port):
                sock = await self.connect(port)
                await asyncio.get_running_loop().sock_sendall(sock, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                self.assertEqual(await asyncio.wait_for(self.read_all(sock), TIMEOUT), b"")

    @gen_test(timeout=TIMEOUT)
    async def test_idle_connection_is_closed(self):
        """A connection that sends nothing is closed."""
        sock = await self.connect(self.server.frontend_port)
        self.assertEqual(await asyncio.wait_for(self.read_all(sock), TIMEOUT), b"")

    @gen_test(timeout=TIMEOUT)
    async def test_slow_body_is_cut_off(self):
        """A body that stops coming is given up on."""
        sock = await self.connect(self.server.backend_port)
        request = f"POST /backend HTTP/1.1\r\nHost: x\r\nX-Backend-Key: {KEY}\r\nContent-Length: 100\r\n\r\n{{"
        await asyncio.get_running_loop().sock_sendall(sock, request.encode())
        self.assertEqual(await asyncio.wait_for(self.read_all(sock), TIMEOUT), b"")


class SockJSInputTests(ServerTestCase):
    """SockJS sends over xhr-polling, as raw HTTP: odd payloads and oversized bodies."""

    session = 0

    def base(self):
        SockJSInputTests.session += 1
        return f"http://127.0.0.1:{self.server.frontend_port}/sockjs/000/s{SockJSInputTests.session}"

    async def post(self, url, data=b"", headers=None):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: requests.post(url, data=data, headers=headers, timeout=TIMEOUT))

    async def open_session(self):
        base = self.base()
        response = await self.post(f"{base}/xhr")
        self.assertEqual(response.text, "o\n")
        return base

    async def poll(self, base):
        """The next frame from the session (``a[...]`` decoded to its messages, or ``c[...]``)."""
        text = (await self.post(f"{base}/xhr")).text.strip()
        if text.startswith("a"):
            return [json.loads(item) for item in json.loads(text[1:])]
        return text

    @gen_test(timeout=TIMEOUT)
    async def test_items_that_are_not_strings(self):
        """[42] and [null]: an invalid_message error each, 204, and the session goes on."""
        base = await self.open_session()
        for payload in (b"[42]", b"[null]"):
            with self.subTest(payload=payload), expect_log(self, "not a string"):
                response = await self.post(f"{base}/xhr_send", payload)
                self.assertEqual(response.status_code, 204)
                [error] = await self.poll(base)
                self.assertEqual(error["message"]["code"], "invalid_message")
        await self.assert_usable(base)

    @gen_test(timeout=TIMEOUT)
    async def test_payloads_that_are_not_arrays(self):
        """42, null or an object instead of an array: a clean error, no 500, the session lives."""
        base = await self.open_session()
        for payload in (b"42", b"null", b'{"a": 1}'):
            with self.subTest(payload=payload), expect_log(self, "not a string"):
                response = await self.post(f"{base}/xhr_send", payload)
                self.assertEqual(response.status_code, 204)
                [error] = await self.poll(base)
                self.assertEqual(error["message"]["code"], "invalid_message")
        await self.assert_usable(base)

    async def assert_usable(self, base):
        call = json.dumps(
            {"service": "pubsub", "message": {"command": "subscribe", "params": {"channel": "c"}, "callId": 5}}
        )
        self.assertEqual((await self.post(f"{base}/xhr_send", json.dumps([call]))).status_code, 204)
        [reply] = await self.poll(base)
        self.assertEqual(reply["message"], {"type": "response", "callId": 5, "data": None})

    @gen_test(timeout=TIMEOUT)
    async def test_oversized_send_is_refused_before_it_is_read(self):
        """An xhr_send announcing 95 MB gets 413 from its headers, and its session closes with 1009."""
        base = await self.open_session()
        sock = await self.connect(self.server.frontend_port)
        path = base.split(str(self.server.frontend_port), 1)[1]
        request = f"POST {path}/xhr_send HTTP/1.1\r\nHost: x\r\nContent-Length: {95 << 20}\r\n\r\n".encode()
        with expect_log(self, "SockJS send over"):
            await asyncio.get_running_loop().sock_sendall(sock, request)
            status, _head, _body = await self.read_response(sock)
        self.assertEqual(status, 413)
        self.assertEqual(await self.poll(base), 'c[1009,"message too big"]')
