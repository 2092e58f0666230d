"""Every built-in service end to end: a configured SnorkyServer, real WebSockets, signed tokens.

The server is built from configuration as ``snorky serve`` builds it, on free
loopback ports; browsers are Tornado WebSocket clients with tokens; the
application server uses the asyncio backend connector on the backend port.
"""

from tornado.testing import AsyncTestCase, gen_test

from snorky.auth import sign_token
from snorky.backend import AsyncSnorkyBackend, AsyncSnorkyHTTPTransport
from snorky.config import Config
from snorky.server import SnorkyServer
from snorky.services.datasync.dealers import FilterDealer
from tests.cluster.harness import Page
from tests.utils import ClosesSockets

SECRET = "end-to-end-services-secret-for-hs256-tokens"
API_KEY = "end-to-end-api-key"
TIMEOUT = 10


class TasksFilter(FilterDealer):
    """A filter dealer over Task rows, loaded by the configuration below through its dotted path."""

    name = "tasks"
    model = "Task"


CONFIG = {
    "log_level": "warning",
    "frontend": {"port": 0, "sockjs_prefix": ""},
    "backend": {"port": 0, "api_key": API_KEY},
    "auth": {"secret": SECRET},
    "services": {
        "chat": {"class": "chat", "history_size": 5},
        "cursors": {"class": "cursors"},
        "messaging": {"class": "messaging"},
        "datasync": {"class": "datasync", "dealers": ["tests.test_end_to_end.TasksFilter"]},
        "progress": {"class": "progress"},
    },
    "backend_services": {
        "datasync": {"class": "datasync_backend", "frontend": "datasync"},
        "progress": {"class": "progress_backend", "frontend": "progress"},
    },
}


class ServicesEndToEndTests(ClosesSockets, AsyncTestCase):
    def setUp(self):
        super().setUp()
        self.browsers = []  # Pages (tests/cluster/harness.py), closed on tearDown
        self.server = SnorkyServer(Config.from_dict(CONFIG))
        self.io_loop.run_sync(self.server.start)
        backend_url = f"http://127.0.0.1:{self.server.backend_port}/backend"
        self.backend = AsyncSnorkyBackend(AsyncSnorkyHTTPTransport(backend_url, API_KEY))

    def tearDown(self):
        for browser in self.browsers:
            browser.reader.cancel()
        self.io_loop.run_sync(lambda: self.server.stop(grace=1))
        super().tearDown()

    async def browser(self, identity, **claims):
        token = sign_token(identity, SECRET, **claims)
        ws = await self.open_ws(f"ws://127.0.0.1:{self.server.frontend_port}/ws?token={token}")
        browser = Page(ws)
        self.browsers.append(browser)
        return browser

    @gen_test(timeout=30)
    async def test_two_identities_chat(self):
        """Alice and Bob join a room with tokens, see each other, and chat."""
        alice = await self.browser("alice", info={"name": "Alice"})
        bob = await self.browser("bob")
        await alice.call("chat", "join", channel="lobby")
        joined = await bob.call("chat", "join", channel="lobby")
        self.assertEqual(sorted(joined["members"]), ["alice", "bob"])
        self.assertEqual((await alice.next("chat", "presence"))["from"], "bob")
        await alice.call("chat", "send", channel="lobby", body="hi Bob")
        message = await bob.next("chat", "message")
        self.assertEqual((message["from"], message["body"]), ("alice", "hi Bob"))

    @gen_test(timeout=30)
    async def test_presence_on_disconnect(self):
        """When Bob's only connection drops, Alice gets his 'left' presence."""
        alice, bob = await self.browser("alice"), await self.browser("bob")
        await alice.call("chat", "join", channel="room")
        await bob.call("chat", "join", channel="room")
        await alice.next("chat", "presence")
        bob.ws.close()
        left = await alice.next("chat", "presence")
        self.assertEqual((left["from"], left["status"]), ("bob", "left"))

    @gen_test(timeout=30)
    async def test_cursor_seen_by_the_other_client(self):
        """A cursor Alice creates appears on Bob's page with her identity."""
        alice, bob = await self.browser("alice"), await self.browser("bob")
        await bob.call("cursors", "join", document="doc-1")
        await alice.call("cursors", "join", document="doc-1")
        handle = await alice.call(
            "cursors", "createCursor", privateHandle=1, document="doc-1", position=42, status="typing"
        )
        added = await bob.next("cursors", "cursorAdded")
        self.assertEqual(
            added["cursor"],
            {"publicHandle": handle, "document": "doc-1", "position": 42, "status": "typing", "owner": "alice"},
        )

    @gen_test(timeout=30)
    async def test_messaging_between_identities(self):
        """A message sent to a registered name reaches only its holder."""
        alice, bob = await self.browser("alice"), await self.browser("bob")
        await alice.call("messaging", "registerParticipant", name="alice")
        await bob.call("messaging", "registerParticipant", name="bob")
        await alice.call("messaging", "send", sender="alice", dest="bob", body="psst")
        self.assertEqual((await bob.next("messaging", "message"))["body"], "psst")

    @gen_test(timeout=30)
    async def test_datasync_delta_passes_a_filter_transition(self):
        """An update that makes a row match a subscriber's filter reaches it as an insert."""
        alice = await self.browser("alice")
        token = await self.backend.call(
            "datasync", "authorizeSubscription", items=[{"dealer": "tasks", "query": ["==", "done", False]}]
        )
        await alice.call("datasync", "acquireSubscription", token=token)
        await self.backend.call(
            "datasync",
            "publishDeltas",
            deltas=[
                {
                    "type": "update",
                    "model": "Task",
                    "oldData": {"id": 1, "done": True},
                    "newData": {"id": 1, "done": False},
                }
            ],
        )
        delta = (await alice.next("datasync", "delta"))["delta"]
        self.assertEqual(delta, {"type": "insert", "model": "Task", "data": {"id": 1, "done": False}})

    @gen_test(timeout=30)
    async def test_progress_seen_by_a_late_subscriber(self):
        """A page that subscribes to a running task gets its current state at once, then updates."""
        task = await self.backend.call("progress", "createTask", name="Import", max=10)
        await self.backend.call("progress", "update", task=task, value=4, label="row 4")
        bob = await self.browser("bob")
        state = await bob.call("progress", "subscribe", task=task)
        self.assertEqual((state["value"], state["label"]), (4, "row 4"))
        self.assertEqual((await bob.next("progress", "init"))["value"], 4)
        await self.backend.call("progress", "complete", task=task)
        self.assertEqual((await bob.next("progress", "done"))["status"], "completed")

    @gen_test(timeout=30)
    async def test_server_control_disconnects_an_identity(self):
        """control.disconnect closes every connection of an identity with 4004."""
        mallory, other = await self.browser("mallory"), await self.browser("mallory")
        self.assertEqual(await self.backend.call("control", "disconnect", identity="mallory"), {"disconnected": 2})
        for browser in (mallory, other):
            self.assertIsNone(await browser.next())
            self.assertEqual(browser.ws.close_code, 4004)
