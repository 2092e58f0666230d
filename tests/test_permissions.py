"""Namespaces, grants, subscription tokens and server-side subscriptions, over real connections.

Each test starts a real ``SnorkyServer`` from a configuration (as ``snorky serve``
reads a file) and talks to it with real WebSocket clients and the backend port
over HTTP; the SockJS class drives the ``sockjs-client`` npm package.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tornado.testing import AsyncTestCase, ExpectLog, gen_test
from tornado.websocket import websocket_connect

from snorky.auth import sign_subscription_token, sign_token
from snorky.backend import AsyncSnorkyBackend, AsyncSnorkyHTTPTransport
from snorky.config import Config
from snorky.server import SnorkyServer
from tests.nodejs import js_dir
from tests.redis_server import shared_redis
from tests.transports.test_sockjs import Peer

SECRET = "permissions-test-secret-of-32-bytes-or-more"
EXAMPLE = Path(__file__).parent.parent / "examples" / "permissions" / "snorky.toml"
WAIT = 10

NAMESPACES: dict[str, Any] = {
    "allow_subscribe": "anyone",
    "private": {"allow_subscribe": "granted"},
    "members": {"allow_subscribe": "authenticated", "allow_anonymous": False},
    "room": {
        "allow_subscribe": "authenticated",
        "allow_publish": "subscribers",
        "allow_presence": True,
        "allow_history": True,
        "join_leave": True,
        "history_size": 10,
        "max_presence_members": 2,
        "max_message_size": 200,
    },
    "open": {"allow_publish": "anyone"},
}


def config(namespaces: dict[str, Any] | None = None, **more: Any) -> Config:
    """A configuration as a file would give it (so: clients publish only where allowed)."""
    data = {
        "frontend": {"port": 0},
        "backend": {"port": 0, "api_key": "backend-key"},
        "auth": {"secret": SECRET},
        "namespaces": NAMESPACES if namespaces is None else namespaces,
        **more,
    }
    return Config.from_dict(data, "test.toml")


class WS:
    """One real WebSocket connection speaking Snorky's protocol."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.pushes: list[dict[str, Any]] = []
        self.call_ids = iter(range(1, 1_000_000))

    @classmethod
    async def open(cls, port: int, identity: str | None = None, **claims: Any) -> WS:
        url = f"ws://127.0.0.1:{port}/ws"
        if identity is not None:
            url += "?token=" + sign_token(identity, SECRET, **claims)
        return cls(await websocket_connect(url))

    async def _next(self) -> dict[str, Any]:
        text = await asyncio.wait_for(self.connection.read_message(), WAIT)
        assert text is not None, "the server closed the connection"
        message: dict[str, Any] = json.loads(text)
        return message

    async def call(self, command: str, service: str = "pubsub", **params: Any) -> dict[str, Any]:
        """Call a command; the answer's body (pushes that arrive meanwhile are kept)."""
        call_id = next(self.call_ids)
        body = {"command": command, "params": params, "callId": call_id}
        await self.connection.write_message(json.dumps({"service": service, "message": body}))
        while True:
            message = await self._next()
            if message["message"].get("callId") == call_id and message["message"]["type"] != "message":
                answer: dict[str, Any] = message["message"]
                return answer
            self.pushes.append(message["message"])

    async def ok(self, command: str, **params: Any) -> Any:
        answer = await self.call(command, **params)
        assert answer["type"] == "response", answer
        return answer["data"]

    async def refused(self, command: str, **params: Any) -> tuple[str, str | None]:
        answer = await self.call(command, **params)
        assert answer["type"] == "error", answer
        return answer["code"], answer.get("detail")

    async def push(self) -> dict[str, Any]:
        """The next message the server pushed (not an answer)."""
        if self.pushes:
            return self.pushes.pop(0)
        return (await self._next())["message"]

    def close(self) -> None:
        self.connection.close()


class ServerCase(AsyncTestCase):
    async def serve(self, cfg: Config) -> SnorkyServer:
        server = SnorkyServer(cfg)
        await server.start()
        self.servers.append(server)
        return server

    def setUp(self) -> None:
        super().setUp()
        self.servers: list[SnorkyServer] = []
        self.sockets: list[WS] = []

    def tearDown(self) -> None:
        for ws in self.sockets:
            ws.close()
        for server in self.servers:
            self.io_loop.run_sync(lambda server=server: server.stop(grace=0.2))
        super().tearDown()

    async def ws(self, server: SnorkyServer, identity: str | None = None, **claims: Any) -> WS:
        assert server.frontend_port is not None
        ws = await WS.open(server.frontend_port, identity, **claims)
        self.sockets.append(ws)
        return ws

    def backend(self, server: SnorkyServer) -> AsyncSnorkyBackend:
        url = f"http://127.0.0.1:{server.backend_port}/backend"
        return AsyncSnorkyBackend(AsyncSnorkyHTTPTransport(url, "backend-key"))


class NamespaceRuleTests(ServerCase):
    @gen_test(timeout=30)
    async def test_a_config_file_lets_no_client_publish(self) -> None:
        """With a file that says nothing of publishing, a client's publish is refused with the
        reason; its subscription goes on and the backend's publish reaches it."""
        server = await self.serve(config({}))
        ws = await self.ws(server)
        self.assertIsNone(await ws.ok("subscribe", channel="news"))
        with ExpectLog("snorky", ".*", required=False):
            self.assertEqual(
                await ws.refused("publish", channel="news", message="hi"),
                ("forbidden", "clients may not publish here"),
            )
        await self.backend(server).call("pubsub", "publish", channel="news", message="from the app")
        self.assertEqual(await ws.push(), {"type": "message", "channel": "news", "message": "from the app"})

    @gen_test(timeout=30)
    async def test_embedded_defaults_let_clients_publish_and_say_so(self) -> None:
        """``snorky serve`` without a file keeps the README's first example: clients publish,
        and the start-up log says how to turn it off."""
        cfg = Config.load(None, env={})
        cfg.frontend.port = 0
        with ExpectLog("snorky.server", r"! any client may publish to any channel"):
            server = await self.serve(cfg)
        ws = await self.ws(server)
        await ws.ok("subscribe", channel="news")
        await ws.ok("publish", channel="news", message="hello")
        self.assertEqual(await ws.push(), {"type": "message", "channel": "news", "message": "hello"})

    @gen_test(timeout=30)
    async def test_granted_channels_follow_the_token(self) -> None:
        """``granted``: exact names and prefix patterns of the token's channels claim admit;
        anything else is refused with the reason, and the connection goes on."""
        server = await self.serve(config())
        alice = await self.ws(server, "alice", channels=["private:team-*", "private:exact"])
        anonymous = await self.ws(server)
        self.assertIsNone(await alice.ok("subscribe", channel="private:team-blue"))
        self.assertIsNone(await alice.ok("subscribe", channel="private:exact"))
        self.assertEqual(
            await alice.refused("subscribe", channel="private:exactly"),
            ("forbidden", "the token does not grant this channel"),
        )
        self.assertEqual(
            await anonymous.refused("subscribe", channel="private:team-blue"), ("forbidden", "needs an identity")
        )
        self.assertEqual(await alice.refused("subscribe", channel="nowhere:x"), ("forbidden", "no namespace 'nowhere'"))
        await self.backend(server).call("pubsub", "publish", channel="private:team-blue", message=1)
        self.assertEqual((await alice.push())["message"], 1)

    @gen_test(timeout=30)
    async def test_subscription_tokens(self) -> None:
        """A subscription token admits its identity to its one channel, and nothing else."""
        server = await self.serve(config())
        bob = await self.ws(server, "bob")
        anonymous = await self.ws(server)
        good = sign_subscription_token("bob", "private:report", SECRET)
        self.assertEqual(
            await bob.refused("subscribe", channel="private:other", token=good),
            ("forbidden", "invalid subscription token"),
        )
        self.assertEqual(
            await anonymous.refused("subscribe", channel="private:report", token=good),
            ("forbidden", "invalid subscription token"),
        )
        expired = sign_subscription_token("bob", "private:report", SECRET, ttl=-10)
        self.assertEqual(
            await bob.refused("subscribe", channel="private:report", token=expired),
            ("forbidden", "invalid subscription token"),
        )
        connection_token = sign_token("bob", SECRET)
        self.assertEqual(
            await bob.refused("subscribe", channel="private:report", token=connection_token),
            ("forbidden", "invalid subscription token"),
        )
        self.assertIsNone(await bob.ok("subscribe", channel="private:report", token=good))
        anonymous_token = sign_subscription_token("", "private:report", SECRET)
        self.assertIsNone(await anonymous.ok("subscribe", channel="private:report", token=anonymous_token))

    @gen_test(timeout=30)
    async def test_user_limited_channels(self) -> None:
        """``name#alice,bob`` admits those identities only, whatever the namespace says."""
        server = await self.serve(config())
        alice, carol = await self.ws(server, "alice"), await self.ws(server, "carol")
        anonymous = await self.ws(server)
        self.assertIsNone(await alice.ok("subscribe", channel="dm#alice,bob"))
        for ws in (carol, anonymous):
            self.assertEqual(
                await ws.refused("subscribe", channel="dm#alice,bob"),
                ("forbidden", "the channel is limited to other users"),
            )

    @gen_test(timeout=30)
    async def test_anonymous_connections_kept_out(self) -> None:
        """``allow_anonymous = false`` refuses connections without an identity."""
        server = await self.serve(config())
        self.assertEqual(
            await (await self.ws(server)).refused("subscribe", channel="members:a"),
            ("forbidden", "anonymous connections are not allowed here"),
        )
        self.assertIsNone(await (await self.ws(server, "dave")).ok("subscribe", channel="members:a"))

    @gen_test(timeout=30)
    async def test_subscribers_publish_with_a_size_limit(self) -> None:
        """``subscribers`` publish; others are refused; a message over the namespace's size is refused."""
        server = await self.serve(config())
        alice, bob = await self.ws(server, "alice"), await self.ws(server, "bob")
        await alice.ok("subscribe", channel="room:1")
        self.assertEqual(
            await bob.refused("publish", channel="room:1", message="x"), ("forbidden", "only subscribers may publish")
        )
        self.assertEqual(
            await alice.refused("publish", channel="room:1", message="x" * 300),
            ("message_too_large", "over the namespace's 200 bytes"),
        )
        await alice.ok("publish", channel="room:1", message="short")
        self.assertEqual((await alice.push())["message"], "short")


class PresenceAndHistoryTests(ServerCase):
    @gen_test(timeout=30)
    async def test_presence_history_and_join_leave(self) -> None:
        """Where a namespace allows them: presence, presence_stats, history, and join/leave pushes."""
        server = await self.serve(config())
        alice = await self.ws(server, "alice", info={"name": "Alice"})
        await alice.ok("subscribe", channel="room:2")
        bob = await self.ws(server, "bob")
        await bob.ok("subscribe", channel="room:2")
        joined = await alice.push()
        self.assertEqual(
            {k: joined[k] for k in ("type", "channel", "identity", "info")},
            {"type": "join", "channel": "room:2", "identity": "bob", "info": None},
        )
        self.assertEqual(
            await alice.ok("presence", channel="room:2"),
            [
                {"identity": "alice", "info": {"name": "Alice"}, "connections": 1},
                {"identity": "bob", "info": None, "connections": 1},
            ],
        )
        self.assertEqual(await bob.ok("presence_stats", channel="room:2"), {"identities": 2, "connections": 2})
        for n in range(3):
            await alice.ok("publish", channel="room:2", message=n)
        history = await bob.ok("history", channel="room:2", limit=2)
        self.assertEqual([(p["message"], p["offset"]) for p in history["publications"]], [(1, 2), (2, 3)])
        self.assertEqual(history["offset"], 3)
        bob.close()
        while True:  # alice's own messages come first
            push = await alice.push()
            if push["type"] == "leave":
                break
        self.assertEqual((push["identity"], push["client"]), ("bob", joined["client"]))
        self.assertEqual(await alice.ok("presence_stats", channel="room:2"), {"identities": 1, "connections": 1})
        self.assertEqual(
            await alice.refused("presence", channel="news"), ("forbidden", "the namespace does not allow presence")
        )
        self.assertEqual(
            await alice.refused("history", channel="news"), ("forbidden", "the namespace does not allow history")
        )

    @gen_test(timeout=30)
    async def test_presence_member_limit(self) -> None:
        """A channel's presence holds at most ``max_presence_members`` connections with an
        identity: one more is refused and leaves nothing behind."""
        server = await self.serve(config())
        for name in ("a", "b"):
            await (await self.ws(server, name)).ok("subscribe", channel="room:3")
        for name in ("carol", "a"):
            late = await self.ws(server, name)
            code, detail = await late.refused("subscribe", channel="room:3")
            self.assertEqual((code, detail), ("forbidden", "the channel's presence holds 2 connections already"))
            self.assertEqual(await late.refused("unsubscribe", channel="room:3"), ("not_subscribed", None))
        stats = await (await self.ws(server, "b")).ok("presence_stats", channel="room:3")
        self.assertEqual(stats, {"identities": 2, "connections": 2})


class ServerSideSubscriptionTests(ServerCase):
    @gen_test(timeout=30)
    async def test_token_subscriptions_at_connect(self) -> None:
        """A token's subscriptions claim subscribes the connection at connect, rules aside; it is told."""
        server = await self.serve(config())
        alice = await self.ws(server, "alice", subscriptions=["private:inbox", "room:9"])
        told = {(await alice.push())["channel"] for _ in range(2)}
        self.assertEqual(told, {"private:inbox", "room:9"})
        await self.backend(server).call("pubsub", "publish", channel="private:inbox", message="mail")
        self.assertEqual((await alice.push())["message"], "mail")
        self.assertEqual(await alice.refused("subscribe", channel="private:inbox"), ("already_subscribed", None))

    @gen_test(timeout=30)
    async def test_backend_subscribes_and_unsubscribes_a_user_and_writes_to_them(self) -> None:
        """The backend subscribes all of a user's connections, writes to the user, and ends it."""
        server = await self.serve(config())
        phone, laptop = await self.ws(server, "erin"), await self.ws(server, "erin")
        other = await self.ws(server, "frank")
        backend = self.backend(server)
        await backend.call("pubsub", "subscribe_user", identity="erin", channel="private:alerts")
        for ws in (phone, laptop):
            self.assertEqual(await ws.push(), {"type": "subscribed", "channel": "private:alerts"})
        await backend.call("pubsub", "publish", channel="private:alerts", message="a1")
        await backend.call("pubsub", "publish_to_user", identity="erin", message={"note": 1})
        for ws in (phone, laptop):
            self.assertEqual((await ws.push())["message"], "a1")
            self.assertEqual(await ws.push(), {"type": "user_message", "message": {"note": 1}})
        await backend.call("pubsub", "unsubscribe_user", identity="erin", channel="private:alerts")
        for ws in (phone, laptop):
            self.assertEqual(await ws.push(), {"type": "unsubscribed", "channel": "private:alerts"})
        await backend.call("pubsub", "publish_to_user", identity="frank", message="only frank")
        self.assertEqual((await other.push())["message"], "only frank")

    @gen_test(timeout=30)
    async def test_identity_given_after_connect_gets_user_messages(self) -> None:
        """A connection that authenticates by command is an address for its user from then on."""
        server = await self.serve(config())
        ws = await self.ws(server)
        await ws.call("authenticate", service="auth", token=sign_token("gil", SECRET))
        await self.backend(server).call("pubsub", "publish_to_user", identity="gil", message="hi gil")
        self.assertEqual(await ws.push(), {"type": "user_message", "message": "hi gil"})


class SockJSRuleTests(ServerCase):
    @gen_test(timeout=60)
    async def test_rules_hold_over_sockjs(self) -> None:
        """The same refusals, with their reasons, over a real sockjs-client session."""
        js_dir()
        server = await self.serve(config())
        token = sign_token("alice", SECRET, channels=["private:a"])
        url = f"http://127.0.0.1:{server.frontend_port}/sockjs?token={token}"
        peer = await Peer.start(url, "xhr-streaming")
        try:
            await peer.opened()
            refused = await peer.call("subscribe", 1, channel="private:b")
            self.assertEqual(
                (refused["code"], refused["detail"]), ("forbidden", "the token does not grant this channel")
            )
            self.assertEqual((await peer.call("subscribe", 2, channel="private:a"))["type"], "response")
            refused = await peer.call("publish", 3, channel="private:a", message=1)
            self.assertEqual((refused["code"], refused["detail"]), ("forbidden", "clients may not publish here"))
            refused = await peer.call("subscribe", 4, channel="dm#bob,carol")
            self.assertEqual(
                (refused["code"], refused["detail"]), ("forbidden", "the channel is limited to other users")
            )
            token = sign_subscription_token("alice", "private:z", SECRET)
            self.assertEqual((await peer.call("subscribe", 5, channel="private:z", token=token))["type"], "response")
            await self.backend(server).call("pubsub", "subscribe_user", identity="alice", channel="members:x")
            self.assertEqual((await peer.receive())["message"], {"type": "subscribed", "channel": "members:x"})
            await self.backend(server).call("pubsub", "publish_to_user", identity="alice", message="over sockjs")
            self.assertEqual((await peer.receive())["message"], {"type": "user_message", "message": "over sockjs"})
        finally:
            await peer.stop()


class ConfigTests(AsyncTestCase):
    def test_check_config_names_file_section_and_key(self) -> None:
        """A wrong namespace option is an error naming the file, the table and the key."""
        from snorky.errors import ConfigError

        cases = [
            (
                {"chat": {"allow_publsh": "anyone"}},
                "x.toml: [namespaces.chat]: unknown key 'allow_publsh'; did you mean",
            ),
            ({"allow_subscribe": "all"}, "x.toml: [namespaces]: allow_subscribe must be one of nobody, anyone,"),
        ]
        for table, message in cases:
            with self.subTest(table=table), self.assertRaises(ConfigError) as raised:
                Config.from_dict({"namespaces": table}, "x.toml")
            self.assertTrue(str(raised.exception).startswith(message), str(raised.exception))


class PythonAPITests(AsyncTestCase):
    def test_a_service_made_in_python_keeps_01_behaviour(self) -> None:
        """PubSubService built in Python has no namespaces: every channel, every publisher (0.1)."""
        from snorky.service_registry import ServiceRegistry
        from snorky.services.pubsub import PubSubService
        from tests.utils import RecordingClient, call

        pubsub = PubSubService("pubsub")
        ServiceRegistry([pubsub])
        client = RecordingClient()
        self.assertIsNone(pubsub.namespaces)
        self.assertIsNone(call(pubsub, client, "subscribe", channel="any:thing"))
        self.assertIsNone(call(pubsub, client, "publish", channel="any:thing", message=1))
        self.assertEqual(client.bodies("pubsub")[-2], {"type": "message", "channel": "any:thing", "message": 1})


class TwoNodeTests(ServerCase):
    """Two nodes on one real Redis: what is cluster-wide is tested across them."""

    def setUp(self) -> None:
        super().setUp()
        self.redis = shared_redis()
        self.redis.flush()

    async def two_nodes(self) -> tuple[SnorkyServer, SnorkyServer]:
        nodes = []
        for name in ("n1", "n2"):
            cfg = config(broker=self.redis.url, redis={"prefix": "perm", "node_id": name, "heartbeat": 0.2})
            nodes.append(await self.serve(cfg))
        return nodes[0], nodes[1]

    @gen_test(timeout=60)
    async def test_users_are_addresses_across_nodes(self) -> None:
        """The backend of one node subscribes a user, writes to them and unsubscribes them on both
        nodes; presence and its limit count both nodes' connections."""
        one, two = await self.two_nodes()
        here, there = await self.ws(one, "hal"), await self.ws(two, "hal")
        await here.ok("subscribe", channel="room:c")
        await there.ok("presence_stats", channel="room:c")  # both connections are in, on their nodes
        for node in (one, two):  # and each node listens to hal's own topic
            listening = node.registry.registered_services["pubsub"].users.listening("hal")
            if listening is not None:
                await listening
        backend = self.backend(one)
        await backend.call("pubsub", "subscribe_user", identity="hal", channel="private:ops")
        self.assertEqual(await there.push(), {"type": "subscribed", "channel": "private:ops"})
        self.assertEqual(await here.push(), {"type": "subscribed", "channel": "private:ops"})
        await self.backend(two).call("pubsub", "publish", channel="private:ops", message="deploy")
        for ws in (here, there):
            self.assertEqual((await ws.push())["message"], "deploy")
        await backend.call("pubsub", "unsubscribe_user", identity="hal", channel="private:ops")
        for ws in (here, there):
            self.assertEqual(await ws.push(), {"type": "unsubscribed", "channel": "private:ops"})
        await there.ok("subscribe", channel="room:c")
        self.assertEqual(await here.ok("presence_stats", channel="room:c"), {"identities": 1, "connections": 2})
        late = await self.ws(two, "ivy")
        self.assertEqual(
            await late.refused("subscribe", channel="room:c"),
            ("forbidden", "the channel's presence holds 2 connections already"),
        )


class ExampleTests(ServerCase):
    @gen_test(timeout=30)
    async def test_the_security_page_example(self) -> None:
        """examples/permissions/snorky.toml (shown on the security page) does what its comments say."""
        cfg = Config.load(EXAMPLE, env={})
        cfg.frontend.port = 0
        server = await self.serve(cfg)
        secret = cfg.auth.secret
        anonymous = await self.ws(server)
        alice = await WS.open(server.frontend_port, None)
        self.sockets.append(alice)
        await alice.call("authenticate", service="auth", token=sign_token("alice", secret, channels=["team:*"]))
        self.assertIsNone(await anonymous.ok("subscribe", channel="news"))
        self.assertEqual((await anonymous.refused("publish", channel="news", message=1))[0], "forbidden")
        self.assertEqual((await anonymous.refused("subscribe", channel="chat:lobby"))[0], "forbidden")
        await alice.ok("subscribe", channel="chat:lobby")
        await alice.ok("publish", channel="chat:lobby", message="hello")
        self.assertEqual((await alice.push())["message"], "hello")
        history = await alice.ok("history", channel="chat:lobby")
        self.assertEqual([p["message"] for p in history["publications"]], ["hello"])
        await alice.ok("subscribe", channel="team:blue")
        self.assertEqual((await anonymous.refused("subscribe", channel="team:blue"))[0], "forbidden")
        await alice.ok("subscribe", channel="user:inbox#alice")
        bob = await self.ws(server)
        await bob.call("authenticate", service="auth", token=sign_token("bob", secret))
        self.assertEqual(
            await bob.refused("subscribe", channel="user:inbox#alice"),
            ("forbidden", "the channel is limited to other users"),
        )
