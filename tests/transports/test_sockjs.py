"""The SockJS transport against the real ``sockjs-client`` npm package, run in Node.

Each scenario runs once per transport (WebSocket, xhr-streaming, xhr-polling,
EventSource): one test class per transport. A test starts one or more Node peers
(``tests/js/sockjs_peer.mjs``); a peer prints each event it sees as a JSON line
and sends each line the test writes to it. Needs ``npm ci --prefix tests/js``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from tornado.testing import AsyncHTTPTestCase, ExpectLog, gen_test
from tornado.web import Application
from tornado.websocket import websocket_connect

from snorky import ServiceRegistry
from snorky.auth import sign_token
from snorky.errors import CLOSE_FORBIDDEN_ORIGIN
from snorky.request_handlers.sockjs import SnorkySockJSHandler
from snorky.services.auth import AuthService
from snorky.services.chat import ChatService
from snorky.services.pubsub import PubSubService
from tests.nodejs import find_node, js_dir

WAIT = 5.0
"""Seconds to wait for any one thing a test expects (a line, a disconnection)."""
TEST_TIMEOUT = 30.0
"""Seconds a whole test may take."""
MAX_MESSAGE_SIZE = 1000
TOKEN_SECRET = "sockjs-token-secret-long-enough-for-hs256"
ALLOWED_ORIGIN = "http://app.example.com"
FOREIGN_ORIGIN = "http://evil.example.com"
SUBSCRIBE_C = json.dumps(
    {"service": "pubsub", "message": {"command": "subscribe", "params": {"channel": "c"}, "callId": 1}}
)

registry_log = logging.getLogger("snorky")  # the lines 0.1 logged, in its words
sockjs_log = logging.getLogger("snorky.request_handlers.sockjs")


class WatchedRegistry(ServiceRegistry):
    """A registry that wakes waiting tests whenever a client connects or disconnects."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.changed = asyncio.Event()
        self.connections = 0
        """How many clients ever connected."""

    def client_connected(self, client: Any) -> None:
        super().client_connected(client)
        self.connections += 1
        self.changed.set()

    def client_disconnected(self, client: Any) -> None:
        super().client_disconnected(client)
        self.changed.set()

    async def wait_until(self, predicate: Callable[[], bool], what: str) -> None:
        """Wait (at most :data:`WAIT` seconds) until ``predicate()`` holds after some change."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while not predicate():
            self.changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting until {what}")
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except asyncio.TimeoutError:
                raise AssertionError(f"timed out waiting until {what}") from None


class Peer:
    """One Node process running sockjs-client; see ``tests/js/sockjs_peer.mjs``."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name

    @classmethod
    async def start(cls, url: str, transport: str, origin: str | None = None, name: str = "peer") -> Peer:
        script = js_dir() / "sockjs_peer.mjs"
        args = [str(script), url, transport] + ([origin] if origin else [])
        proc = await asyncio.create_subprocess_exec(
            find_node(),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=str(script.parent),
        )
        return cls(proc, name)

    async def next_event(self) -> dict[str, Any]:
        """The next line the peer printed, decoded."""
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), WAIT)
        except asyncio.TimeoutError:
            raise AssertionError(f"{self.name}: nothing received within {WAIT} s") from None
        if not line:
            raise AssertionError(f"{self.name}: the Node peer exited (code {await self.proc.wait()})")
        event: dict[str, Any] = json.loads(line)
        return event

    async def opened(self) -> None:
        """Wait for the session to open."""
        event = await self.next_event()
        assert event == {"event": "open"}, f"{self.name}: expected open, got {event}"

    async def receive(self) -> Any:
        """The next message the peer received (decoded JSON)."""
        event = await self.next_event()
        assert event["event"] == "message", f"{self.name}: expected a message, got {event}"
        return event["data"]

    def send_raw(self, text: str) -> None:
        """Send ``text`` as one SockJS message."""
        assert self.proc.stdin is not None
        assert "\n" not in text
        self.proc.stdin.write(text.encode() + b"\n")

    def send(self, service: str, message: Any) -> None:
        """Send one Snorky envelope."""
        self.send_raw(json.dumps({"service": service, "message": message}, ensure_ascii=False))

    async def call(self, command: str, call_id: int, **params: Any) -> dict[str, Any]:
        """Send a pubsub RPC call and return the answer body (the next message)."""
        self.send("pubsub", {"command": command, "params": params, "callId": call_id})
        answer = await self.receive()
        assert answer["service"] == "pubsub", answer
        body: dict[str, Any] = answer["message"]
        assert body["callId"] == call_id, body
        return body

    async def disconnect(self) -> dict[str, Any]:
        """Close the session from the client side; return the close event."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        event = await self.next_event()
        assert event["event"] == "close", f"{self.name}: expected close, got {event}"
        await asyncio.wait_for(self.proc.wait(), WAIT)
        return event

    async def stop(self) -> None:
        """Make sure the process is gone."""
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


class SockJSScenarios:
    """The scenarios; mixed into one ``AsyncHTTPTestCase`` class per transport."""

    transport: str
    refused_code = CLOSE_FORBIDDEN_ORIGIN
    """The close code sockjs-client reports for a session from a foreign origin."""
    refused_reason = "origin not allowed"
    refusal_log = "snorky.request_handlers.sockjs"
    """The logger that reports the refusal."""

    # The methods AsyncHTTPTestCase provides, for readers and type checkers.
    get_url: Callable[[str], str]
    io_loop: Any

    def get_app(self) -> Application:
        self.peers: list[Peer] = []
        js_dir()  # fail early, saying how to install them, if the npm packages are missing
        self.pubsub = PubSubService("pubsub")
        self.registry = WatchedRegistry([self.pubsub, AuthService("auth", secret=TOKEN_SECRET), ChatService("chat")])
        routes = SnorkySockJSHandler.get_routes(
            self.registry,
            "/sockjs",
            max_message_size=MAX_MESSAGE_SIZE,
            allowed_origins=[ALLOWED_ORIGIN],
        )
        return Application(routes)

    def tearDown(self) -> None:
        async def stop_peers() -> None:
            for peer in self.peers:
                await peer.stop()

        self.io_loop.run_sync(stop_peers)
        super().tearDown()  # type: ignore[misc]

    async def peer(
        self, name: str = "peer", origin: str | None = None, wait_open: bool = True, token: str | None = None
    ) -> Peer:
        """Start a peer on this class's transport (with a token, if given); wait until its session is open."""
        url = self.get_url("/sockjs") + (f"?token={token}" if token else "")
        peer = await Peer.start(url, self.transport, origin, name)
        self.peers.append(peer)
        if wait_open:
            await peer.opened()
        return peer

    async def subscribed_peer(self, name: str = "peer", channel: str = "c") -> Peer:
        """A peer subscribed to ``channel``."""
        peer = await self.peer(name)
        answer = await peer.call("subscribe", 1, channel=channel)
        assert answer == {"type": "response", "callId": 1, "data": None}, answer
        return peer

    # Scenarios -------------------------------------------------------------

    @gen_test(timeout=TEST_TIMEOUT)
    async def test_chat_with_tokens(self) -> None:
        """Two identities with tokens in the SockJS URL join a chat room and talk."""
        alice = await self.peer("alice", token=sign_token("alice", TOKEN_SECRET))
        bob = await self.peer("bob", token=sign_token("bob", TOKEN_SECRET))
        alice.send("chat", {"command": "join", "params": {"channel": "lobby"}, "callId": 1})
        assert (await alice.receive())["message"]["data"]["members"] == ["alice"]
        bob.send("chat", {"command": "join", "params": {"channel": "lobby"}, "callId": 1})
        assert sorted((await bob.receive())["message"]["data"]["members"]) == ["alice", "bob"]
        assert (await alice.receive())["message"]["from"] == "bob"  # presence: joined
        bob.send("chat", {"command": "send", "params": {"channel": "lobby", "body": "hi"}, "callId": 2})
        message = (await alice.receive())["message"]
        assert (message["type"], message["from"], message["body"]) == ("message", "bob", "hi")

    @gen_test(timeout=TEST_TIMEOUT)
    async def test_bad_token_closes_4001(self) -> None:
        """A forged token in the SockJS URL closes the session with 4001 before it opens."""
        with ExpectLog("snorky.service_registry", "! refused token"):
            peer = await self.peer(token=sign_token("alice", TOKEN_SECRET + "-forged"), wait_open=False)
            event = await peer.next_event()
        assert (event["event"], event["code"], event["reason"]) == ("close", 4001, "invalid token")
        assert self.registry.connections == 0

    @gen_test(timeout=TEST_TIMEOUT)
    async def test_rpc_round_trip(self) -> None:
        """A subscribe call is answered with a response carrying its callId."""
        peer = await self.peer()
        peer.send("pubsub", {"command": "subscribe", "params": {"channel": "c"}, "callId": 1})
        assert await peer.receive() == {
            "service": "pubsub",
            "message": {"type": "response", "callId": 1, "data": None},
        }
        assert len(self.registry.clients) == 1
        assert len(self.pubsub.subscriptions.get_set("c")) == 1

    @gen_test(timeout=TEST_TIMEOUT)
    async def test_rpc_error(self) -> None:
        """A call with wrong params is answered with an invalid_params error."""
        peer = await self.peer()
        answer = await peer.call("subscribe", 7, room="c")
        assert answer == {"type": "error", "callId": 7, "message": "Invalid params", "code": "invalid_params"}

    @gen_test(timeout=TEST_TIMEOUT)
    async def test_publish_reaches_another_sockjs_client(self) -> None:
        """A publish from one SockJS client reaches another client subscribed to the channel."""
        listener = await self.subscribed_peer("listener")
        publisher = await self.peer("publisher")
        answer = await publisher.call("publish", 1, channel="c", message={"hello": "world"})
        assert answer == {"type": "response", "callId": 1, "data": None}
        assert await listener.receive() == {
            "service": "pubsub",
            "message": {"type": "message", "channel": "c", "message": {"hello": "world"}},
        }

    @gen_test(timeout=TEST_TIMEOUT)
    async def test_publish_from_python_reaches_client(self) -> None:
        """PubSubService.do_publish from the server reaches a subscribed SockJS client."""
        peer = await self.subscribed_peer()
        self.pubsub.do_publish("c", {"x": 1})
        assert await peer.receive() == {
            "service": "pubsub",
            "message": {"type": "message", "channel": "c", "message": {"x": 1}},
        }

    @gen_test(timeout=TEST_TIMEOUT)
    async def test_malformed_json_answered_and_session_usable(self) -> None:
        """A message that is not JSON gets an invalid_json error and the session goes on."""
        peer = await self.peer()
        with ExpectLog(registry_log, ""):
            peer.send_raw("{this is not json")
            assert await peer.receive() == {
                "service": None,
                "message": {
                    "type": "error",
                    "callId": None,
                    "message": "Invalid JSON",
                    "code": "invalid_json",
                },
            }
        answer = await peer.call("subscribe", 2, channel="c")
        assert answer == {"type": "response", "callId": 2, "data": None}
        assert len(self.registry.clients) == 1

    @gen_test(timeout=TEST_TIMEOUT)
    async def test_malformed_json_does_not_disturb_other_clients(self) -> None:
        """Another client stays connected and subscribed while one sends garbage."""
        listener = await self.subscribed_peer("listener")
        sender = await self.peer("sender")
        with ExpectLog(registry_log, ""):
            sender.send_raw("\x00garbage]")
            assert (await sender.receive())["message"]["code"] == "invalid_json"
        self.pubsub.do_publish("c", "still here")
        assert (await listener.receive())["message"]["message"] == "still here"
        assert len(self.registry.clients) == 2

    @gen_test(timeout=TEST_TIMEOUT)
    async def test_json_that_is_not_an_envelope_answered(self) -> None:
        """Valid JSON that is not {"service", "message"} gets an invalid_message error."""
        peer = await self.peer()
        with ExpectLog(registry_log, ""):
            peer.send_raw("[1, 2, 3]")
            assert await peer.receive() == {
                "service": None,
                "message": {
                    "type": "error",
                    "callId": None,
                    "message": "Invalid message",
                    "code": "invalid_message",
                },
            }
        assert (await peer.call("subscribe", 3, channel="c"))["type"] == "response"

    @gen_test(timeout=TEST_TIMEOUT)
    async def test_oversized_message_answered(self) -> None:
        """A message over max_message_size gets a message_too_large error and is not processed."""
        peer = await self.peer()
        big = {"command": "subscribe", "params": {"channel": "x" * MAX_MESSAGE_SIZE}, "callId": 4}
        with ExpectLog(sockjs_log, ""):
            peer.send("pubsub", big)
            assert await peer.receive() == {
                "service": None,
                "message": {
                    "type": "error",
                    "callId": None,
                    "message": "Message too large",
                    "code": "message_too_large",
                },
            }
        assert not self.pubsub.subscriptions
        assert (await peer.call("subscribe", 5, channel="c"))["type"] == "response"

    @gen_test(timeout=TEST_TIMEOUT)
    async def test_size_limit_counts_utf8_bytes(self) -> None:
        """A message under max_message_size in characters but over it in UTF-8 bytes is refused."""
        peer = await self.peer()
        channel = "\u20ac" * (MAX_MESSAGE_SIZE // 2)  # 500 characters, 1500 bytes
        with ExpectLog(sockjs_log, ""):
            peer.send("pubsub", {"command": "subscribe", "params": {"channel": channel}, "callId": 6})
            assert (await peer.receive())["message"]["code"] == "message_too_large"
        assert not self.pubsub.subscriptions

    @gen_test(timeout=TEST_TIMEOUT)
    async def test_disconnect_removes_subscriptions(self) -> None:
        """A client that closes its session is disconnected and loses its subscriptions."""
        peer = await self.subscribed_peer()
        other = await self.subscribed_peer("other")
        assert len(self.pubsub.subscriptions.get_set("c")) == 2
        event = await peer.disconnect()
        assert event["code"] == 1000, event
        await self.registry.wait_until(lambda: len(self.registry.clients) == 1, "the server sees the close")
        assert len(self.pubsub.subscriptions.get_set("c")) == 1
        assert len(self.pubsub.subscriptions_by_client) == 1
        self.pubsub.do_publish("c", "after")
        assert (await other.receive())["message"]["message"] == "after"

    @gen_test(timeout=TEST_TIMEOUT)
    async def test_allowed_origin_accepted(self) -> None:
        """A session from an origin in allowed_origins opens and works."""
        peer = await self.peer(origin=ALLOWED_ORIGIN)
        assert (await peer.call("subscribe", 1, channel="c"))["type"] == "response"
        assert self.registry.connections == 1

    @gen_test(timeout=TEST_TIMEOUT)
    async def test_foreign_origin_refused(self) -> None:
        """A session from an origin not allowed never opens and never reaches the services."""
        with ExpectLog(self.refusal_log, ""):
            peer = await self.peer(origin=FOREIGN_ORIGIN, wait_open=False)
            event = await peer.next_event()
        assert event == {"event": "close", "code": self.refused_code, "reason": self.refused_reason}
        assert self.registry.connections == 0


class TestWebSocket(SockJSScenarios, AsyncHTTPTestCase):
    transport = "websocket"
    # sockjs-tornado refuses the handshake itself (HTTP 403, logged as an access
    # warning), so the session is never created; sockjs-client, allowed no other
    # transport, gives up with its own code.
    refused_code = 2000
    refused_reason = "All transports failed"
    refusal_log = "tornado.access"


class TestXhrStreaming(SockJSScenarios, AsyncHTTPTestCase):
    transport = "xhr-streaming"


class TestXhrPolling(SockJSScenarios, AsyncHTTPTestCase):
    transport = "xhr-polling"


class TestEventSource(SockJSScenarios, AsyncHTTPTestCase):
    transport = "eventsource"


class TestRawWebSocketEndpoint(AsyncHTTPTestCase):
    """The endpoint ``PREFIX/websocket`` that sockjs-tornado serves beside SockJS: plain
    WebSocket text frames, one JSON envelope each (no sockjs-client involved)."""

    def get_app(self) -> Application:
        self.pubsub = PubSubService("pubsub")
        self.registry = ServiceRegistry([self.pubsub])
        return Application(SnorkySockJSHandler.get_routes(self.registry, "/sockjs"))

    async def connect(self) -> Any:
        url = self.get_url("/sockjs/websocket").replace("http://", "ws://", 1)
        return await websocket_connect(url)

    async def receive(self, ws: Any) -> Any:
        text = await asyncio.wait_for(ws.read_message(), WAIT)
        assert text is not None, "the server closed the connection"
        return json.loads(text)

    @gen_test(timeout=TEST_TIMEOUT)
    async def test_rpc_round_trip(self) -> None:
        """A subscribe call over the raw endpoint is answered in a plain JSON frame."""
        ws = await self.connect()
        await ws.write_message(SUBSCRIBE_C)
        assert await self.receive(ws) == {
            "service": "pubsub",
            "message": {"type": "response", "callId": 1, "data": None},
        }
        ws.close()

    @gen_test(timeout=TEST_TIMEOUT)
    async def test_publish_from_python_reaches_client(self) -> None:
        """PubSubService.do_publish reaches a client subscribed over the raw endpoint."""
        ws = await self.connect()
        await ws.write_message(SUBSCRIBE_C)
        assert (await self.receive(ws))["message"]["type"] == "response"
        self.pubsub.do_publish("c", {"x": 1})
        assert await self.receive(ws) == {
            "service": "pubsub",
            "message": {"type": "message", "channel": "c", "message": {"x": 1}},
        }
        ws.close()
