"""Code written for Snorky 0.1 keeps working: import paths, names, helpers."""

import unittest

from tests.utils import RecordingClient


class ImportPathTests(unittest.TestCase):
    def test_01_import_paths(self):
        """Every name 0.1 apps and services imported is still there."""
        from snorky import ServiceRegistry, version  # noqa: F401
        from snorky.backend import SnorkyBackend, SnorkyError, SnorkyHTTPTransport  # noqa: F401
        from snorky.client import Client  # noqa: F401
        from snorky.hashable import HashableDict, HashableList, make_hashable  # noqa: F401
        from snorky.request_handlers.http import BackendHTTPHandler  # noqa: F401
        from snorky.request_handlers.sockjs import SnorkySockJSHandler  # noqa: F401
        from snorky.request_handlers.websocket import SnorkyWebSocketHandler  # noqa: F401
        from snorky.service_registry import ServiceRegistry as SR  # noqa: F401
        from snorky.services.base import (  # noqa: F401
            Request,
            RPCError,
            RPCService,
            Service,
            rpc_asynchronous,
            rpc_command,
        )
        from snorky.services.chat import ChatService  # noqa: F401
        from snorky.services.cursors import CursorsService  # noqa: F401
        from snorky.services.datasync import DataSyncBackend, DataSyncService  # noqa: F401
        from snorky.services.datasync.dealers import (  # noqa: F401
            BroadcastDealer,
            Dealer,
            FilterDealer,
            SimpleDealer,
        )
        from snorky.services.datasync.delta import DeletionDelta, InsertionDelta, UpdateDelta  # noqa: F401
        from snorky.services.datasync.managers.dealer import DealerManager  # noqa: F401
        from snorky.services.datasync.managers.subscription import SubscriptionManager  # noqa: F401
        from snorky.services.datasync.subscription import Subscription, SubscriptionItem  # noqa: F401
        from snorky.services.messaging import MessagingService  # noqa: F401
        from snorky.services.pubsub import PubSubBackend, PubSubService  # noqa: F401
        from snorky.timeout import TornadoTimeoutFactory  # noqa: F401
        from snorky.types import MultiDict  # noqa: F401

        self.assertIs(SR, ServiceRegistry)

    def test_rpc_error_is_a_snorky_error(self):
        """RPCError and the connector's SnorkyError share one root."""
        from snorky.backend import SnorkyError
        from snorky.services.base import RPCError

        self.assertTrue(issubclass(RPCError, SnorkyError))


class MultiDictTests(unittest.TestCase):
    def test_01_api(self):
        """add, remove, get_set, in_set and clear_set behave as in 0.1."""
        from snorky.types import MultiDict

        d = MultiDict()
        d.add("a", 1)
        d.add("a", 2)
        self.assertTrue(d.in_set("a", 1))
        self.assertFalse(d.in_set("b", 1))
        self.assertEqual(d.get_set("a"), {1, 2})
        self.assertEqual(d.get_set("b"), set())
        d.remove("a", 1)
        d.remove("a", 2)
        self.assertNotIn("a", d)
        with self.assertRaises(KeyError):
            d.remove("a", 1)
        d.add("c", 1)
        d.clear_set("c")
        d.clear_set("c")
        self.assertEqual(d, {})


class CustomServiceTests(unittest.TestCase):
    def test_01_style_custom_service(self):
        """A 0.1 service overriding process_message_from and using send_message_to works."""
        from snorky import ServiceRegistry
        from snorky.services.base import Service

        class Shout(Service):
            def process_message_from(self, client, msg):
                self.send_message_to(client, msg.upper())

        registry = ServiceRegistry()
        registry.register_service(Shout("shout"))
        client = RecordingClient()
        registry.process_message_from(client, {"service": "shout", "message": "hi"})
        self.assertEqual(client.sent, [{"service": "shout", "message": "HI"}])

    def test_01_test_request_double(self):
        """0.1's test pattern (a request object with reply/error passed to process_request) works."""
        from snorky.services.base import RPCService, rpc_command

        class Calc(RPCService):
            @rpc_command
            def sum(self, req, a, b):
                return a + b

        class TestRequest:
            def __init__(self, service, client, command, params):
                self.service, self.client, self.command, self.params = service, client, command, params
                self.debug, self.call_id, self.resolved, self.response = True, None, False, None

            def reply(self, data):
                self.resolved, self.response = True, data

            def error(self, msg):
                self.resolved, self.response = True, ("error", msg)

            def format_call(self):
                return self.command

        request = TestRequest(Calc("calc"), RecordingClient(), "sum", {"a": 1, "b": 2})
        request.service.process_request(request)
        self.assertEqual(request.response, 3)
        request = TestRequest(request.service, RecordingClient(), "nope", {})
        request.service.process_request(request)
        self.assertEqual(request.response, ("error", "Unknown command"))

    def test_timeout_factory(self):
        """TornadoTimeoutFactory schedules and cancels on the running loop."""
        import asyncio

        from snorky.timeout import TornadoTimeoutFactory

        async def scenario():
            fired = asyncio.Event()
            handle = TornadoTimeoutFactory.call_later(0, fired.set)
            cancelled = TornadoTimeoutFactory.call_later(0, self.fail, "cancelled timer ran")
            cancelled.cancel()
            with self.assertRaises(RuntimeError):
                cancelled.cancel()
            await asyncio.wait_for(fired.wait(), 5)
            return handle

        asyncio.run(scenario())


class ZeroOneBehaviourTests(unittest.TestCase):
    """The places where round one had drifted from 0.1, each pinned by its own test."""

    def test_client_subclass_without_init_call(self):
        """A 0.1 client class whose __init__ does not call Client's still has identity and info."""
        from snorky import ServiceRegistry
        from snorky.client import Client
        from snorky.services.pubsub import PubSubService

        class Old(Client):
            def __init__(self):
                self.sent = []

            def send(self, msg):
                self.sent.append(msg)

        client = Old()
        self.assertEqual((client.identity, client.info, client.claims), (None, None, None))
        registry = ServiceRegistry([PubSubService("pubsub")])
        with self.assertLogs("snorky", "WARNING"):
            registry.process_message_raw(client, "{broken")
        self.assertEqual(client.sent[0]["message"]["code"], "invalid_json")

    def test_format_call_spacing(self):
        """format_call shows parameters as 0.1 did: spaced JSON, sorted keys, text unescaped."""
        from snorky.services.base import format_call

        self.assertEqual(format_call("sum", {"b": 2, "a": 1}), 'sum({"a": 1, "b": 2})')
        self.assertEqual(format_call("length", {"string": "ñu"}), 'length({"string": "ñu"})')

    def test_unknown_model_class_raised(self):
        """DealerManager.deliver_delta raises UnknownModelClass when no dealer serves the model."""
        from snorky.services.datasync.delta import InsertionDelta
        from snorky.services.datasync.managers.dealer import DealerManager, UnknownModelClass

        with self.assertRaises(UnknownModelClass):
            DealerManager().deliver_delta(InsertionDelta("Nobody", {"id": 1}))

    def test_log_lines_in_01_words(self):
        """The lines 0.1 apps match are logged on the "snorky" logger, starting with 0.1's words."""
        from snorky import ServiceRegistry
        from snorky.services.base import RPCService, rpc_command

        class Calc(RPCService):
            @rpc_command
            def difference(self, req, a, b):
                return a - b

        registry, client = ServiceRegistry([Calc("calc")]), RecordingClient()
        sent = [
            ("{", "Invalid JSON"),
            ('{"cat": 42}', "Malformed message from client"),
            ('{"service": "bar", "message": 1}', 'Message for non existing service "bar" from client'),
            ('{"service": "calc", "message": {"command": ""}}', 'Invalid format in RPC service "calc". Message: '),
            (
                '{"service": "calc", "message": {"command": "difference", "params": {"a": 5}}}',
                'Invalid params in RPC service "calc": difference({"a": 5})',
            ),
        ]
        for raw, start in sent:
            with self.subTest(raw=raw), self.assertLogs("snorky", "WARNING") as logs:
                registry.process_message_raw(client, raw)
            self.assertEqual([r.name for r in logs.records], ["snorky"])
            self.assertTrue(logs.records[0].getMessage().startswith(start), logs.records[0].getMessage())


class ExceptionHomeTests(unittest.TestCase):
    def test_every_exception_lives_in_errors_and_at_its_01_path(self):
        """errors.py owns every exception; the modules that defined them in 0.1 re-export the same class."""
        import snorky.errors as errors
        from snorky.auth import AuthError
        from snorky.backend import SnorkyError, TransportError
        from snorky.services.base import InvalidMessage
        from snorky.services.datasync.dealers import BadQuery
        from snorky.services.datasync.managers.dealer import UnknownDealer, UnknownModelClass

        for name, cls in [
            ("AuthError", AuthError),
            ("TransportError", TransportError),
            ("SnorkyError", SnorkyError),
            ("InvalidMessage", InvalidMessage),
            ("BadQuery", BadQuery),
            ("UnknownDealer", UnknownDealer),
            ("UnknownModelClass", UnknownModelClass),
        ]:
            with self.subTest(name=name):
                self.assertIs(getattr(errors, name), cls)
                self.assertTrue(issubclass(cls, errors.SnorkyError))
