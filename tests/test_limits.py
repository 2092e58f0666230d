"""Limits without sockets: the token buckets on a driven clock, client addresses behind
proxies, the channel count across services, the identity count, and their configuration."""

from __future__ import annotations

import asyncio
import unittest
from typing import Any

from snorky import ServiceRegistry
from snorky.auth import sign_token
from snorky.brokers.memory import MemoryBroker
from snorky.config import Config
from snorky.errors import CLOSE_TOO_MANY_CONNECTIONS, CLOSE_TOO_MANY_REQUESTS, ConfigError, RPCError
from snorky.limits import ALLOWED, CLOSE, HELD, REFUSED, Limiter, LimitsConfig
from snorky.metrics import Metrics
from snorky.services.auth import AuthService
from snorky.services.chat import ChatService
from snorky.services.cursors import CursorsService
from snorky.services.messaging import MessagingService
from snorky.services.progress import ProgressService
from snorky.services.pubsub import PubSubService
from tests.utils import ClosableClient, call, call_error, rpc_frame

SECRET = "limits-test-secret-long-enough-for-hs256"


class Clock:
    """Time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock | None = None, **options: object) -> Limiter:
    return Limiter(LimitsConfig(**options), MemoryBroker(), clock=clock or Clock())  # type: ignore[arg-type]


class CommandBucketTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.limiter = limiter(self.clock, commands_per_second=10.0, commands_burst=5, commands_close_after=3)
        self.client = ClosableClient()
        self.assertIs(self.limiter.connected(self.client), True)

    def take(self, count: int) -> list[int]:
        return [self.limiter.command(self.client, "{}") for _ in range(count)]

    def test_burst_then_refused(self) -> None:
        """A new connection may send its burst at once; the next message is refused."""
        self.assertEqual(self.take(6), [ALLOWED] * 5 + [REFUSED])

    def test_tokens_come_back_at_the_rate(self) -> None:
        """After the burst, one message is allowed per 1/rate seconds."""
        self.take(5)
        self.clock.now += 0.1
        self.assertEqual(self.take(2), [ALLOWED, REFUSED])

    def test_refused_messages_are_a_debt(self) -> None:
        """Messages sent while refused must be paid back before the next one is allowed."""
        self.assertEqual(self.take(7), [ALLOWED] * 5 + [REFUSED, REFUSED])
        self.clock.now += 0.2  # two tokens: the debt of two
        self.assertEqual(self.take(1), [REFUSED])
        self.clock.now += 0.3 + 0.001
        self.assertEqual(self.take(1), [ALLOWED])

    def test_keeps_going_then_close(self) -> None:
        """A connection whose debt goes past commands_close_after is to be closed; what it
        sends then is dropped."""
        self.assertEqual(self.take(10), [ALLOWED] * 5 + [REFUSED] * 3 + [CLOSE, HELD])

    def test_never_closed_when_close_after_is_0(self) -> None:
        """commands_close_after = 0 refuses without end, never closes."""
        bucket = limiter(self.clock, commands_per_second=1.0, commands_burst=1, commands_close_after=0)
        bucket.connected(self.client)
        verdicts = {bucket.command(self.client, "{}") for _ in range(1000)}
        self.assertEqual(verdicts, {ALLOWED, REFUSED})

    def test_the_bucket_holds_no_more_than_the_burst(self) -> None:
        """A long idle time refills the bucket to the burst, not beyond."""
        self.clock.now += 3600
        self.assertEqual(self.take(6), [ALLOWED] * 5 + [REFUSED])

    def test_first_refusal_of_an_episode(self) -> None:
        """refusing() says True once per episode of refusals (to log once), and counts each."""
        self.take(5)
        self.assertEqual([self.limiter.refusing(self.client) for _ in range(3)], [True, False, False])
        self.clock.now += 1
        self.take(1)
        self.assertTrue(self.limiter.refusing(self.client))
        self.assertEqual(self.limiter.hits["commands_per_second"], 4)

    def test_rate_0_counts_nothing(self) -> None:
        """commands_per_second = 0: no bucket, every message allowed."""
        free = limiter(self.clock, commands_per_second=0.0)
        free.connected(self.client)
        self.assertEqual({free.command(self.client, "{}") for _ in range(500)}, {ALLOWED})

    def test_disconnect_forgets_the_bucket(self) -> None:
        """A client that left has no state here."""
        self.limiter.disconnected(self.client)
        self.assertEqual(self.limiter._buckets, {})


class RegistryCommandTests(unittest.TestCase):
    """The registry answers refused messages with the call's id, and closes the one that keeps going."""

    def setUp(self) -> None:
        self.metrics = Metrics("test")
        limits = LimitsConfig(commands_per_second=0.001, commands_burst=2, commands_close_after=2)
        self.registry = ServiceRegistry([PubSubService("pubsub")], metrics=self.metrics, limits=limits)
        self.client = ClosableClient()
        self.registry.client_connected(self.client)

    def test_refused_with_the_call_id(self) -> None:
        """The third call is answered too_many_requests in its service's envelope, with its callId."""
        for call_id in (1, 2):
            self.registry.process_message_raw(self.client, rpc_frame("pubsub", "subscribe", call_id, channel=call_id))
        with self.assertLogs("snorky.service_registry", "WARNING") as logs:
            self.registry.process_message_raw(self.client, rpc_frame("pubsub", "subscribe", 3, channel=3))
        self.assertEqual(
            self.client.sent[-1],
            {
                "service": "pubsub",
                "message": {"type": "error", "callId": 3, "message": "Too many requests", "code": "too_many_requests"},
            },
        )
        self.assertEqual(len(logs.records), 1)
        self.assertIsNone(self.client.closed_with)

    def test_refused_garbage_is_answered_too(self) -> None:
        """A refused message that is not JSON is answered too_many_requests without a service."""
        for _ in range(2):
            self.registry.process_message_raw(self.client, "{}")
        with self.assertLogs("snorky.service_registry", "WARNING"):
            self.registry.process_message_raw(self.client, "{not json")
        self.assertEqual(self.client.sent[-1]["service"], None)
        self.assertEqual(self.client.sent[-1]["message"]["code"], "too_many_requests")

    def test_a_large_refused_message_is_not_read(self) -> None:
        """A refused message over 64 KiB is answered without being decoded (no callId)."""
        for _ in range(2):
            self.registry.process_message_raw(self.client, "{}")
        big = rpc_frame("pubsub", "subscribe", 9, channel="x" * 70_000)
        with self.assertLogs("snorky.service_registry", "WARNING"):
            self.registry.process_message_raw(self.client, big)
        self.assertEqual(self.client.sent[-1]["message"]["code"], "too_many_requests")
        self.assertEqual((self.client.sent[-1]["service"], self.client.sent[-1]["message"]["callId"]), (None, None))

    def test_keeps_going_closed_4029(self) -> None:
        """One message past commands_close_after refused ones, the client is closed with 4029."""
        with self.assertLogs("snorky.service_registry", "WARNING") as logs:
            for call_id in range(1, 8):
                self.registry.process_message_raw(self.client, rpc_frame("pubsub", "subscribe", call_id, channel=1))
        self.assertEqual(self.client.closed_with, CLOSE_TOO_MANY_REQUESTS)
        self.assertEqual(len(logs.records), 2)  # the first refusal, the close
        self.assertEqual(self.registry.limiter.hits["commands_per_second"], 3)  # type: ignore[union-attr]
        hits = self.metrics.registry.get_sample_value("snorky_limits_hit_total", {"limit": "commands_per_second"})
        self.assertEqual(hits, 3)
        self.assertEqual(len(self.client.sent), 4)  # 2 answers, 2 refusals, nothing after the close

    def test_a_registry_without_limits_limits_nothing(self) -> None:
        """A ServiceRegistry made in Python without limits answers everything, as 0.1 did."""
        registry = ServiceRegistry([PubSubService("pubsub")])
        self.assertIsNone(registry.limiter)
        client = ClosableClient()
        registry.client_connected(client)
        for call_id in range(500):
            registry.process_message_raw(client, rpc_frame("pubsub", "subscribe", call_id, channel=call_id))
        self.assertEqual({m["message"]["type"] for m in client.sent}, {"response"})


class ChannelLimitTests(unittest.TestCase):
    """One count across every service's channels: PubSub, Chat, Cursors, Progress, Messaging."""

    def setUp(self) -> None:
        self.pubsub, self.chat = PubSubService("pubsub"), ChatService("chat")
        self.cursors, self.progress = CursorsService("cursors"), ProgressService("progress")
        self.messaging = MessagingService("messaging")
        services = [self.pubsub, self.chat, self.cursors, self.progress, self.messaging]
        self.registry = ServiceRegistry(services, limits=LimitsConfig(channels_per_connection=5))
        self.client = ClosableClient("alice")
        self.registry.client_connected(self.client)

    def fill(self) -> None:
        call(self.pubsub, self.client, "subscribe", channel="a")
        call(self.chat, self.client, "join", channel="room")
        call(self.cursors, self.client, "join", document="doc")
        call(self.progress, self.client, "subscribe", task="t")
        call(self.messaging, self.client, "registerParticipant", name="alice")

    def test_each_service_counts(self) -> None:
        """Five channels in five services fill a limit of 5; a sixth is refused in each."""
        self.fill()
        for service, command, params in (
            (self.pubsub, "subscribe", {"channel": "b"}),
            (self.chat, "join", {"channel": "room2"}),
            (self.cursors, "join", {"document": "doc2"}),
            (self.progress, "subscribe", {"task": "t2"}),
            (self.messaging, "registerParticipant", {"name": "alice2"}),
        ):
            with self.subTest(service=service.name), self.assertLogs("snorky", "INFO"):
                self.assertEqual(
                    call_error(service, self.client, command, **params), ("Too many channels", "too_many_channels")
                )
        self.assertEqual(self.registry.limiter.hits["channels_per_connection"], 5)  # type: ignore[union-attr]

    def test_a_refused_channel_leaves_nothing(self) -> None:
        """The refused join leaves no trace: no membership, no presence watch, no name held."""
        self.fill()
        with self.assertLogs("snorky", "INFO"):
            call_error(self.chat, self.client, "join", channel="room2")
            call_error(self.messaging, self.client, "registerParticipant", name="bob")
            call_error(self.cursors, self.client, "join", document="doc2")
        self.assertNotIn("room2", self.chat.clients_by_channel)
        self.assertNotIn(self.chat.presence_key("room2"), self.chat._channel_by_presence_key)
        self.assertNotIn("bob", self.messaging.participants)
        self.assertNotIn("doc2", self.cursors.clients_by_document)
        self.assertEqual(len(self.chat.readers.channels_of(self.client)), 1)

    def test_leaving_makes_room(self) -> None:
        """Once a channel is left, another may be joined."""
        self.fill()
        call(self.pubsub, self.client, "unsubscribe", channel="a")
        call(self.chat, self.client, "join", channel="room2")

    def test_chat_read_receipts_are_not_counted(self) -> None:
        """A Chat channel counts once, not again for its read-receipt topic."""
        for index in range(5):
            call(self.chat, self.client, "join", channel=f"room{index}")

    def test_another_connection_has_its_own_count(self) -> None:
        """The limit is per connection."""
        self.fill()
        other = ClosableClient("bob")
        self.registry.client_connected(other)
        call(self.pubsub, other, "subscribe", channel="a")

    def test_the_servers_subscriptions_count_but_are_not_refused(self) -> None:
        """Channels a token's subscriptions claim names are subscribed past the limit, and count."""
        client = ClosableClient("carol")
        client.claims = {"sub": "carol", "subscriptions": [f"s{index}" for index in range(6)]}
        self.registry.client_connected(client)
        self.assertEqual(len(self.pubsub.map.channels_of(client)), 6)
        with self.assertLogs("snorky", "INFO"):
            self.assertEqual(call_error(self.chat, client, "join", channel="room")[1], "too_many_channels")

    def test_0_is_no_limit(self) -> None:
        """channels_per_connection = 0 turns the limit off."""
        registry = ServiceRegistry([PubSubService("pubsub")], limits=LimitsConfig(channels_per_connection=0))
        client = ClosableClient()
        registry.client_connected(client)
        pubsub = registry.registered_services["pubsub"]
        for index in range(300):
            call(pubsub, client, "subscribe", channel=index)


class IdentityLimitTests(unittest.TestCase):
    """On one node (the memory broker answers at once)."""

    def setUp(self) -> None:
        self.pubsub = PubSubService("pubsub")
        self.registry = ServiceRegistry([self.pubsub], limits=LimitsConfig(connections_per_identity=2))

    def connect(self, identity: str | None) -> ClosableClient:
        client = ClosableClient(identity)
        self.registry.client_connected(client)
        return client

    def test_one_more_is_closed_4005(self) -> None:
        """The third connection of an identity is closed with 4005; others are not counted with it."""
        self.connect("alice"), self.connect("alice"), self.connect("bob")
        with self.assertLogs("snorky.limits", "WARNING"):
            third = self.connect("alice")
        self.assertEqual(third.closed_with, CLOSE_TOO_MANY_CONNECTIONS)
        self.assertEqual(self.registry.limiter.hits["connections_per_identity"], 1)  # type: ignore[union-attr]

    def test_refused_connection_is_not_counted(self) -> None:
        """A refused connection does not hold a place: when one leaves, one more fits."""
        first = self.connect("alice")
        self.connect("alice")
        with self.assertLogs("snorky.limits", "WARNING"):
            self.connect("alice")
        self.registry.client_disconnected(first)
        self.assertIsNone(self.connect("alice").closed_with)

    def test_anonymous_connections_are_not_counted(self) -> None:
        """Connections without an identity are never refused by this limit."""
        self.assertEqual([self.connect(None).closed_with for _ in range(10)], [None] * 10)

    def test_identity_key_is_the_identity_json(self) -> None:
        """An identity is counted under its JSON: the number 7 and the string "7" apart."""
        limiter = self.registry.limiter
        assert limiter is not None
        number, text = ClosableClient(7), ClosableClient("7")  # type: ignore[arg-type]
        self.registry.client_connected(number)
        self.registry.client_connected(text)
        self.assertEqual(limiter._members[number][0], "snorky.identity:7")
        self.assertEqual(limiter._members[text][0], 'snorky.identity:"7"')


class AddressTests(unittest.TestCase):
    def test_untrusted_peer_headers_ignored(self) -> None:
        """Without trusted proxies, X-Forwarded-For and X-Real-IP change nothing."""
        headers = {"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.8"}
        self.assertEqual(limiter().client_address("198.51.100.1", headers.get), "198.51.100.1")

    def test_from_a_trusted_proxy(self) -> None:
        """From a trusted proxy, the last X-Forwarded-For hop that is not a trusted proxy."""
        lim = limiter(trusted_proxies=["10.0.0.0/8", "192.0.2.1"])
        chain = {"X-Forwarded-For": "203.0.113.7, 198.51.100.3, 10.1.2.3, 192.0.2.1"}
        self.assertEqual(lim.client_address("10.0.0.5", chain.get), "198.51.100.3")
        self.assertEqual(lim.client_address("198.51.100.2", chain.get), "198.51.100.2")  # not a proxy

    def test_x_real_ip(self) -> None:
        """Without X-Forwarded-For, X-Real-IP from a trusted proxy."""
        lim = limiter(trusted_proxies=["127.0.0.1"])
        self.assertEqual(lim.client_address("127.0.0.1", {"X-Real-IP": "203.0.113.4"}.get), "203.0.113.4")
        self.assertEqual(lim.client_address("127.0.0.1", {"X-Real-IP": "garbage"}.get), "127.0.0.1")
        self.assertEqual(lim.client_address("127.0.0.1", {}.get), "127.0.0.1")

    def test_garbage_in_the_chain_stops_the_walk(self) -> None:
        """A hop that is not an address is where trust ends: the peer counts."""
        lim = limiter(trusted_proxies=["127.0.0.1"])
        self.assertEqual(lim.client_address("127.0.0.1", {"X-Forwarded-For": "203.0.113.1, nonsense"}.get), "127.0.0.1")

    def test_every_hop_a_proxy(self) -> None:
        """A chain of trusted proxies only: the first hop."""
        lim = limiter(trusted_proxies=["10.0.0.0/8"])
        self.assertEqual(lim.client_address("10.0.0.1", {"X-Forwarded-For": "10.0.0.9, 10.0.0.8"}.get), "10.0.0.9")

    def test_ipv4_mapped_peer(self) -> None:
        """An IPv4 peer seen through an IPv6 socket matches IPv4 networks."""
        lim = limiter(trusted_proxies=["127.0.0.1"])
        self.assertEqual(lim.client_address("::ffff:127.0.0.1", {"X-Real-IP": "203.0.113.4"}.get), "203.0.113.4")


class NewConnectionTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.limiter = limiter(self.clock, connections_per_second_per_ip=2.0, connections_burst_per_ip=3)

    def test_burst_then_wait(self) -> None:
        """An address opens its burst at once, then waits 1/rate seconds per connection."""
        with self.assertLogs("snorky.limits", "WARNING") as logs:
            waits = [self.limiter.new_connection("203.0.113.1") for _ in range(5)]
        self.assertEqual(waits[:3], [0.0, 0.0, 0.0])
        self.assertAlmostEqual(waits[3], 0.5)
        self.assertEqual(len(logs.records), 1)  # once per episode
        self.assertEqual(self.limiter.new_connection("203.0.113.2"), 0.0)  # another address
        self.clock.now += 0.5
        self.assertEqual(self.limiter.new_connection("203.0.113.1"), 0.0)
        self.assertEqual(self.limiter.hits["connections_per_ip"], 2)

    def test_exempt_addresses(self) -> None:
        """Loopback (the default exemption) is never limited; nor is an unknown address."""
        self.assertEqual({self.limiter.new_connection("127.0.0.1") for _ in range(50)}, {0.0})
        self.assertEqual({self.limiter.new_connection("::1") for _ in range(50)}, {0.0})
        self.assertEqual(self.limiter.new_connection(None), 0.0)

    def test_forgets_addresses_that_would_be_full(self) -> None:
        """The table keeps only addresses seen within burst/rate seconds: it stays small."""
        for index in range(1000):
            self.limiter.new_connection(f"10.0.{index // 250}.{index % 250}")
            self.clock.now += 0.01
        self.assertLessEqual(len(self.limiter._addresses), 151)


class HeldMessagesTests(unittest.TestCase):
    def test_held_until_released(self) -> None:
        """Messages of a client whose identity is being counted wait, in order."""
        lim = limiter()
        client = ClosableClient()
        lim.connected(client)
        lim.hold(client)
        self.assertEqual([lim.command(client, m) for m in ("a", "b")], [HELD, HELD])
        self.assertEqual(lim.release(client), ["a", "b"])
        self.assertEqual(lim.command(client, "c"), ALLOWED)
        self.assertEqual(lim.release(client), [])

    def test_held_without_a_command_limit(self) -> None:
        """With commands_per_second = 0 the hold still works and leaves nothing behind."""
        lim = limiter(commands_per_second=0.0)
        client = ClosableClient()
        lim.connected(client)
        lim.hold(client)
        self.assertEqual(lim.command(client, "a"), HELD)
        self.assertEqual(lim.release(client), ["a"])
        self.assertEqual(lim._buckets, {})


class ConfigTests(unittest.TestCase):
    def test_defaults(self) -> None:
        """snorky serve's defaults: every limit on."""
        limits = Config().limits
        self.assertEqual(
            (limits.channels_per_connection, limits.connections_per_identity, limits.commands_per_second),
            (128, 32, 100.0),
        )

    def test_from_a_file(self) -> None:
        """[limits] keys are read with their types."""
        config = Config.from_dict({"limits": {"commands_per_second": 5, "trusted_proxies": ["10.0.0.0/8"]}})
        self.assertEqual(config.limits.commands_per_second, 5)
        self.assertEqual(config.limits.trusted_proxies, ["10.0.0.0/8"])

    def test_unknown_key(self) -> None:
        """An unknown key names the section and the closest key."""
        with self.assertRaisesRegex(ConfigError, r"\[limits\]: unknown key 'channels_per_conection'; did you mean"):
            Config.from_dict({"limits": {"channels_per_conection": 5}})

    def test_bad_network(self) -> None:
        """An address that is not one is an error naming the key."""
        with self.assertRaisesRegex(ConfigError, r"\[limits\] trusted_proxies: 'proxy.local' is not an address"):
            Config.from_dict({"limits": {"trusted_proxies": ["proxy.local"]}})
        with self.assertRaisesRegex(ConfigError, r"\[limits\] exempt_addresses: 5 is not an address"):
            Config.from_dict({"limits": {"exempt_addresses": [5]}})

    def test_negative(self) -> None:
        """A negative limit is refused."""
        with self.assertRaisesRegex(ConfigError, r"\[limits\] commands_burst: must not be negative"):
            Config.from_dict({"limits": {"commands_burst": -1}})


class ErrorTests(unittest.TestCase):
    def test_channel_refusal_is_an_rpc_error(self) -> None:
        """check_channels raises the RPCError services answer with."""
        lim = limiter(channels_per_connection=1)
        pubsub = PubSubService("pubsub")
        client = ClosableClient()
        pubsub.map.add(client, "a")
        with self.assertRaises(RPCError) as caught:
            lim.check_channels(client, [pubsub])
        self.assertEqual(caught.exception.code, "too_many_channels")


class LateBroker(MemoryBroker):
    """A memory broker whose presence answers come when the test lets them (as Redis's would)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    def presence_list(self, key: str) -> Any:
        found = super().presence_list(key)

        async def later() -> dict[str, bytes]:
            await self.gate.wait()
            return found

        return later()


class WaitingClient(ClosableClient):
    """A client a test can wait on until it has received some messages."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()

    def send(self, msg: Any) -> None:
        super().send(msg)
        self.arrived.set()

    async def received(self, count: int) -> None:
        while len(self.sent) < count:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 5)


class CountedLaterTests(unittest.IsolatedAsyncioTestCase):
    """A networked broker counts an identity's connections later: the client's messages wait."""

    async def asyncSetUp(self) -> None:
        self.broker = LateBroker()
        self.pubsub = PubSubService("pubsub")
        self.auth = AuthService("auth", secret=SECRET)
        limits = LimitsConfig(connections_per_identity=1)
        self.registry = ServiceRegistry([self.pubsub, self.auth], broker=self.broker, limits=limits)
        self.connected = ClosableClient("alice")
        self.registry.client_connected(self.connected)
        self.broker.gate.set()
        await self.settled()
        self.broker.gate.clear()

    async def settled(self) -> None:
        await asyncio.gather(*self.registry._deciding, *self.pubsub._tasks, *self.auth._tasks)

    async def test_held_then_answered_in_order(self) -> None:
        """Messages sent before the count is known are answered once it is, in order."""
        bob = ClosableClient("bob")
        self.registry.client_connected(bob)
        for call_id in (1, 2):
            self.registry.process_message_raw(bob, rpc_frame("pubsub", "subscribe", call_id, channel=call_id))
        self.assertEqual(bob.sent, [])
        self.broker.gate.set()
        await self.settled()
        self.assertEqual([m["message"]["callId"] for m in bob.sent], [1, 2])
        self.assertIsNone(bob.closed_with)

    async def test_refused_later_drops_what_waited(self) -> None:
        """A connection found over the limit is closed with 4005; what it sent meanwhile is not run."""
        again = ClosableClient("alice")
        self.registry.client_connected(again)
        self.registry.process_message_raw(again, rpc_frame("pubsub", "subscribe", 1, channel="a"))
        self.broker.gate.set()
        with self.assertLogs("snorky.limits", "WARNING"):
            await self.settled()
        self.assertEqual(again.closed_with, CLOSE_TOO_MANY_CONNECTIONS)
        self.assertEqual(again.sent, [])
        self.assertEqual(self.pubsub.map.channels_of(again), [])

    async def test_gone_before_the_count(self) -> None:
        """A connection that leaves while it is counted is forgotten, its count with it."""
        bob = ClosableClient("bob")
        self.registry.client_connected(bob)
        self.registry.client_disconnected(bob)
        self.broker.gate.set()
        await self.settled()
        self.assertNotIn('snorky.identity:"bob"', self.broker.presence)

    async def test_authenticate_command_counts(self) -> None:
        """An anonymous connection that authenticates as an identity at its limit is answered
        too_many_connections and closed with 4005."""
        anonymous = ClosableClient()
        self.registry.client_connected(anonymous)
        self.registry.process_message_raw(
            anonymous, rpc_frame("auth", "authenticate", 1, token=sign_token("alice", SECRET))
        )
        self.broker.gate.set()
        with self.assertLogs("snorky.limits", "WARNING"):
            await self.settled()
        self.assertEqual(anonymous.sent[-1]["message"]["code"], "too_many_connections")
        self.assertEqual(anonymous.closed_with, CLOSE_TOO_MANY_CONNECTIONS)

    async def test_authenticate_answered_before_what_followed(self) -> None:
        """An admitted authenticate is answered first, then the messages that waited behind it."""
        anonymous = WaitingClient()
        self.registry.client_connected(anonymous)
        self.registry.process_message_raw(
            anonymous, rpc_frame("auth", "authenticate", 1, token=sign_token("bob", SECRET))
        )
        self.registry.process_message_raw(anonymous, rpc_frame("pubsub", "subscribe", 2, channel="a"))
        self.broker.gate.set()
        await anonymous.received(2)
        self.assertEqual(
            [(m["message"]["callId"], m["message"]["type"]) for m in anonymous.sent], [(1, "response"), (2, "response")]
        )


if __name__ == "__main__":
    unittest.main()
