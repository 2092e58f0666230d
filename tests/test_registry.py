"""ServiceRegistry: routing, malformed input, connect and disconnect events."""

import unittest

from snorky import ServiceRegistry
from snorky.brokers.memory import MemoryBroker
from snorky.services.base import Service
from snorky.services.pubsub import PubSubBackend, PubSubService
from tests.utils import PlainClient, RecordingClient, call, expect_log


class Echo(Service):
    def __init__(self, name):
        super().__init__(name)
        self.events = []

    def process_message_from(self, client, msg):
        self.send_message_to(client, msg)

    def client_connected(self, client):
        self.events.append(("connected", client))

    def client_disconnected(self, client):
        self.events.append(("disconnected", client))


class RoutingTests(unittest.TestCase):
    def setUp(self):
        self.echo = Echo("echo")
        self.registry = ServiceRegistry([self.echo])
        self.client = RecordingClient()

    def test_raw_message_reaches_service(self):
        """A JSON frame reaches the named service, decoded."""
        self.registry.process_message_raw(self.client, '{"service": "echo", "message": {"a": [1]}}')
        self.assertEqual(self.client.sent, [{"service": "echo", "message": {"a": [1]}}])

    def test_invalid_json_is_answered(self):
        """A frame that is not JSON gets an invalid_json error, not silence."""
        with expect_log(self, "Invalid JSON"):
            self.registry.process_message_raw(self.client, "{oops")
        self.assertEqual(
            self.client.sent,
            [
                {
                    "service": None,
                    "message": {"type": "error", "callId": None, "message": "Invalid JSON", "code": "invalid_json"},
                }
            ],
        )

    def test_malformed_envelope_is_answered(self):
        """JSON that is not an envelope gets invalid_message."""
        for raw in ['"hello"', "[1, 2]", '{"service": "echo"}', '{"message": {}}', '{"service": [1], "message": 1}']:
            client = RecordingClient()
            with self.subTest(raw=raw), expect_log(self, "Malformed message"):
                self.registry.process_message_raw(client, raw)
            self.assertEqual(client.sent[0]["message"]["code"], "invalid_message")

    def test_unknown_service_is_answered_with_call_id(self):
        """A message for a service that does not exist gets unknown_service and its callId."""
        with expect_log(self, "non existing service"):
            self.registry.process_message_raw(
                self.client, '{"service": "nope", "message": {"command": "x", "callId": 3}}'
            )
        self.assertEqual(
            self.client.sent,
            [
                {
                    "service": "nope",
                    "message": {"type": "error", "callId": 3, "message": "Unknown service", "code": "unknown_service"},
                }
            ],
        )

    def test_plain_clients_get_errors_as_dicts(self):
        """A 0.1-style client with only send() gets error replies too."""
        client = PlainClient()
        with expect_log(self, "Invalid JSON"):
            self.registry.process_message_raw(client, b"\xff")
        self.assertEqual(client.sent[0]["message"]["code"], "invalid_json")

    def test_connect_and_disconnect_reach_services(self):
        """client_connected and client_disconnected reach every service and track clients."""
        self.registry.client_connected(self.client)
        self.assertIn(self.client, self.registry.clients)
        self.registry.client_disconnected(self.client)
        self.assertEqual(self.echo.events, [("connected", self.client), ("disconnected", self.client)])
        self.assertEqual(self.registry.clients, set())

    def test_unregister(self):
        """An unregistered service no longer receives messages."""
        self.registry.unregister_service(self.echo)
        with expect_log(self, "non existing service"):
            self.registry.process_message_raw(self.client, '{"service": "echo", "message": 1}')
        self.assertEqual(self.client.sent[0]["message"]["code"], "unknown_service")

    def test_failing_cleanup_does_not_stop_others(self):
        """One service failing on disconnect does not keep the others from cleaning up."""

        class Broken(Service):
            def client_disconnected(self, client):
                raise RuntimeError("bug")

        registry = ServiceRegistry([Broken("a"), self.echo])
        with expect_log(self, "failed to clean up", "ERROR"):
            registry.client_disconnected(self.client)
        self.assertEqual(self.echo.events, [("disconnected", self.client)])


class SeveralRegistriesTests(unittest.TestCase):
    def test_public_and_private_registries_share_a_broker(self):
        """A backend registry's PubSubBackend publishes to the public registry's subscribers."""
        broker = MemoryBroker()
        pubsub = PubSubService("pubsub")
        public = ServiceRegistry([pubsub], broker=broker)
        private = ServiceRegistry([PubSubBackend("pubsub", pubsub)], broker=broker)
        browser, app_server = RecordingClient("browser"), RecordingClient("app")
        public.process_message_raw(
            browser, '{"service": "pubsub", "message": {"command": "subscribe", "params": {"channel": "news"}}}'
        )
        private.process_message_raw(
            app_server,
            '{"service": "pubsub", "message": {"command": "publish", '
            '"params": {"channel": "news", "message": 1}, "callId": 1}}',
        )
        self.assertEqual(browser.notifications(), [{"type": "message", "channel": "news", "message": 1}])
        self.assertEqual(app_server.sent[0]["message"]["type"], "response")

    def test_service_used_before_registration_joins_the_registry_broker(self):
        """Subscriptions made on a service before it was registered move to the registry's broker."""
        pubsub, listener = PubSubService("pubsub"), RecordingClient()
        call(pubsub, listener, "subscribe", channel="x")
        broker = MemoryBroker()
        ServiceRegistry([pubsub], broker=broker)
        self.assertIs(pubsub.broker, broker)
        PubSubBackend("pubsub", pubsub).frontend.do_publish("x", 1)
        self.assertEqual(listener.notifications()[0]["message"], 1)
        self.assertIn('pubsub:"x"', broker.handlers)

    def test_registries_without_a_shared_broker_are_separate(self):
        """Two registries with their own brokers do not leak messages into each other."""
        a, b = PubSubService("pubsub"), PubSubService("pubsub")
        ServiceRegistry([a]), ServiceRegistry([b])
        listener = RecordingClient()
        call(b, listener, "subscribe", channel="x")
        a.do_publish("x", 1)
        self.assertEqual(listener.notifications(), [])
