"""snorky.backend against a real backend port: data, service errors, transport errors."""

import asyncio
import socket
import threading

from tornado.testing import AsyncHTTPTestCase, gen_test
from tornado.web import Application

from snorky import ServiceRegistry
from snorky.backend import (
    AsyncSnorkyBackend,
    AsyncSnorkyHTTPTransport,
    SnorkyBackend,
    SnorkyError,
    SnorkyHTTPTransport,
    TransportError,
)
from snorky.request_handlers.http import BackendHTTPHandler
from snorky.services.base import RPCError, RPCService, rpc_command
from snorky.services.pubsub import PubSubBackend, PubSubService
from tests.utils import RecordingClient, call, expect_log

KEY = "connector-key"


class Math(RPCService):
    @rpc_command
    def div(self, req, a, b):
        if b == 0:
            raise RPCError("Division by zero", "division_by_zero")
        return a / b

    @rpc_command
    def echo(self, req, service, command):
        return [service, command]

    @rpc_command
    async def slow_double(self, req, x):
        await asyncio.sleep(0)
        return 2 * x


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SilentServer:
    """A real TCP server that accepts connections and never answers (or, ``hang_up``, reads and closes)."""

    def __init__(self, hang_up=False):
        self.hang_up = hang_up
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/backend"
        self.connections = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(connection)
            if self.hang_up:
                connection.recv(65536)
                connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self.sock.close()
        for connection in self.connections:
            connection.close()
        self.thread.join(5)


class ConnectorTestCase(AsyncHTTPTestCase):
    def get_app(self):
        self.pubsub = PubSubService("pubsub")
        registry = ServiceRegistry(
            [PubSubBackend("pubsub", self.pubsub), Math("math")], broker=ServiceRegistry([self.pubsub]).broker
        )
        return Application([BackendHTTPHandler.get_route(registry, "/backend", api_key=KEY)])

    @property
    def url(self):
        return self.get_url("/backend")

    async def in_thread(self, function, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(None, lambda: function(*args, **kwargs))


class SyncConnectorTests(ConnectorTestCase):
    def backend(self, key=KEY, url=None):
        return SnorkyBackend(SnorkyHTTPTransport(url or self.url, key))

    @gen_test
    async def test_call_returns_data(self):
        """call() returns the command's data."""
        self.assertEqual(await self.in_thread(self.backend().call, "math", "div", a=6, b=3), 2)

    @gen_test
    async def test_parameters_named_service_and_command(self):
        """Commands may have parameters named service or command (call's own are positional-only)."""
        self.assertEqual(
            await self.in_thread(self.backend().call, "math", "echo", service="s", command="c"), ["s", "c"]
        )

    @gen_test
    async def test_publish(self):
        """call("pubsub", "publish", ...) reaches a subscriber."""
        browser = RecordingClient()
        call(self.pubsub, browser, "subscribe", channel="c")
        await self.in_thread(self.backend().call, "pubsub", "publish", channel="c", message={"n": 1})
        self.assertEqual(browser.notifications()[0]["message"], {"n": 1})

    @gen_test
    async def test_service_error_has_message_and_code(self):
        """A service's error raises SnorkyError with its message and code."""
        with self.assertRaises(SnorkyError) as caught, expect_log(self, "Division by zero", "INFO"):
            await self.in_thread(self.backend().call, "math", "div", a=1, b=0)
        self.assertEqual((caught.exception.message, caught.exception.code), ("Division by zero", "division_by_zero"))
        self.assertNotIsInstance(caught.exception, TransportError)

    @gen_test
    async def test_wrong_key_names_url_and_status(self):
        """A 401 raises TransportError naming the URL and the status."""
        with self.assertRaises(TransportError) as caught, expect_log(self, "refused: 401"):
            await self.in_thread(self.backend(key="bad").call, "math", "div", a=1, b=1)
        self.assertEqual(caught.exception.status, 401)
        self.assertIn(self.url, str(caught.exception))
        self.assertIn("401", str(caught.exception))

    @gen_test
    async def test_unknown_service(self):
        """An unknown service raises TransportError with status 404."""
        with self.assertRaises(TransportError) as caught, expect_log(self, "refused: 404"):
            await self.in_thread(self.backend().call, "nope", "x")
        self.assertEqual(caught.exception.status, 404)

    def test_unreachable(self):
        """Nothing listening raises TransportError naming the URL, no status; the call certainly never arrived."""
        url = f"http://127.0.0.1:{free_port()}/backend"
        with self.assertRaises(TransportError) as caught:
            self.backend(url=url).call("math", "div", a=1, b=1)
        self.assertIsNone(caught.exception.status)
        self.assertIn(url, str(caught.exception))
        self.assertFalse(caught.exception.outcome_unknown)

    def test_no_answer_in_time_is_an_unknown_outcome(self):
        """A server that takes the request and never answers: a timeout whose outcome is unknown."""
        with SilentServer() as server:
            backend = SnorkyBackend(SnorkyHTTPTransport(server.url, KEY, timeout=0.2))
            with self.assertRaises(TransportError) as caught:
                backend.call("math", "div", a=1, b=1)
        self.assertTrue(caught.exception.outcome_unknown)
        self.assertIn("timed out", str(caught.exception))

    def test_connection_closed_without_answer_is_an_unknown_outcome(self):
        """A server that reads the request and closes the connection: the outcome is unknown."""
        with SilentServer(hang_up=True) as server:
            with self.assertRaises(TransportError) as caught:
                self.backend(url=server.url).call("math", "div", a=1, b=1)
        self.assertTrue(caught.exception.outcome_unknown)

    @gen_test
    async def test_an_answer_is_a_known_outcome(self):
        """An HTTP error is an answer: the outcome is known."""
        with self.assertRaises(TransportError) as caught, expect_log(self, "refused: 401"):
            await self.in_thread(self.backend(key="bad").call, "math", "div", a=1, b=1)
        self.assertFalse(caught.exception.outcome_unknown)


class AsyncConnectorTests(ConnectorTestCase):
    def backend(self, key=KEY, url=None):
        return AsyncSnorkyBackend(AsyncSnorkyHTTPTransport(url or self.url, key))

    @gen_test
    async def test_call_returns_data(self):
        """await call() returns the data, coroutine commands included."""
        self.assertEqual(await self.backend().call("math", "slow_double", x=21), 42)

    @gen_test
    async def test_service_error(self):
        """A service's error raises SnorkyError with its code."""
        with self.assertRaises(SnorkyError) as caught, expect_log(self, "Division by zero", "INFO"):
            await self.backend().call("math", "div", a=1, b=0)
        self.assertEqual(caught.exception.code, "division_by_zero")

    @gen_test
    async def test_wrong_key(self):
        """A 401 raises TransportError with the status and the server's message."""
        with self.assertRaises(TransportError) as caught, expect_log(self, "refused: 401"):
            await self.backend(key="bad").call("math", "div", a=1, b=1)
        self.assertEqual(caught.exception.status, 401)
        self.assertIn("Invalid API key", str(caught.exception))

    @gen_test
    async def test_unreachable(self):
        """Nothing listening raises TransportError naming the URL."""
        url = f"http://127.0.0.1:{free_port()}/backend"
        with self.assertRaises(TransportError) as caught:
            await self.backend(url=url).call("math", "div", a=1, b=1)
        self.assertIn(url, str(caught.exception))
        self.assertFalse(caught.exception.outcome_unknown)

    @gen_test
    async def test_timeout_is_an_unknown_outcome(self):
        """No answer in time: TransportError whose outcome is unknown."""
        with SilentServer() as server:
            backend = AsyncSnorkyBackend(AsyncSnorkyHTTPTransport(server.url, KEY, timeout=0.2))
            with self.assertRaises(TransportError) as caught:
                await backend.call("math", "div", a=1, b=1)
        self.assertTrue(caught.exception.outcome_unknown)
