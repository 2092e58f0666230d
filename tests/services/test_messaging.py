"""MessagingService, pure: names, one-to-one messages, impersonation, hooks, cleanup."""

import unittest
from collections import deque

from snorky import ServiceRegistry
from snorky.services.messaging import MessagingService
from tests.utils import PlainClient, RecordingClient, call, call_error, expect_log


def leftovers(service):
    """The service's containers that still hold something."""
    return {
        name: value for name, value in vars(service).items() if isinstance(value, (dict, set, list, deque)) and value
    }


class NoDucks(MessagingService):
    def is_name_allowed(self, client, name):
        return isinstance(name, str) and "duck" not in name.lower()


class MessagingTestCase(unittest.TestCase):
    def setUp(self):
        self.messaging = MessagingService("messaging")
        self.registry = ServiceRegistry([self.messaging])
        self.alice, self.bob, self.carol = RecordingClient("a"), RecordingClient("b"), RecordingClient("c")

    def register(self, client, *names):
        for name in names:
            self.assertIsNone(call(self.messaging, client, "registerParticipant", name=name))


class RegisterTests(MessagingTestCase):
    def test_register_and_list(self):
        """Registered names are listed, sorted."""
        self.register(self.bob, "Bob")
        self.register(self.carol, "Carol")
        self.register(self.alice, "Alice")
        self.assertEqual(call(self.messaging, self.alice, "listParticipants"), ["Alice", "Bob", "Carol"])

    def test_name_taken_by_another(self):
        """A name another client holds answers Name already registered."""
        self.register(self.alice, "Alice")
        with expect_log(self, "Name already registered", "INFO"):
            self.assertEqual(
                call_error(self.messaging, self.bob, "registerParticipant", name="Alice"),
                ("Name already registered", "name_taken"),
            )

    def test_name_taken_by_the_caller(self):
        """Registering a name twice answers Name already registered, as in 0.1."""
        self.register(self.alice, "Alice")
        self.assertEqual(call_error(self.messaging, self.alice, "registerParticipant", name="Alice")[1], "name_taken")

    def test_several_names_per_client(self):
        """A client may hold several names."""
        self.register(self.alice, "Alice", "Support")
        self.assertEqual(self.messaging.client_participants, {self.alice: {"Alice", "Support"}})

    def test_mixed_name_types_list(self):
        """Names of several JSON types list without failing, text names first."""
        self.register(self.alice, "b", 2, "a", {"team": 1}, 10)
        self.assertEqual(call(self.messaging, self.alice, "listParticipants"), ["a", "b", 10, 2, {"team": 1}])

    def test_register_without_name(self):
        """registerParticipant without a name answers Invalid params."""
        with expect_log(self, "Invalid params"):
            self.assertEqual(call_error(self.messaging, self.alice, "registerParticipant")[1], "invalid_params")


class HookTests(unittest.TestCase):
    def test_is_name_allowed_refuses(self):
        """is_name_allowed refusing answers Name not allowed and registers nothing."""
        messaging, alice = NoDucks("messaging"), RecordingClient("a")
        self.assertEqual(
            call_error(messaging, alice, "registerParticipant", name="DrDuck"), ("Name not allowed", "name_not_allowed")
        )
        self.assertEqual(leftovers(messaging), {})

    def test_is_name_allowed_sees_the_client(self):
        """is_name_allowed receives the caller, so a name can be tied to an identity."""

        class OwnName(MessagingService):
            def is_name_allowed(self, client, name):
                return name == client.identity

        messaging, alice = OwnName("messaging"), RecordingClient("alice")
        call(messaging, alice, "registerParticipant", name="alice")
        self.assertEqual(call_error(messaging, alice, "registerParticipant", name="bob")[1], "name_not_allowed")

    def test_taken_checked_before_hook(self):
        """A taken name answers Name already registered even when the hook would refuse it."""
        messaging = NoDucks("messaging")
        messaging.participants["duck"] = RecordingClient("x")
        self.assertEqual(
            call_error(messaging, RecordingClient("a"), "registerParticipant", name="duck")[1], "name_taken"
        )

    def test_holder_of_is_the_only_lookup(self):
        """Overriding holder_of changes who a name reaches (the seam for a cluster-wide lookup)."""
        elsewhere = RecordingClient("z")

        class Directory(MessagingService):
            def holder_of(self, name):
                return elsewhere if name == "Zed" else super().holder_of(name)

        messaging, alice = Directory("messaging"), RecordingClient("a")
        call(messaging, alice, "registerParticipant", name="Alice")
        call(messaging, alice, "send", sender="Alice", dest="Zed", body="hi")
        self.assertEqual(
            elsewhere.notifications(), [{"type": "message", "sender": "Alice", "dest": "Zed", "body": "hi"}]
        )


class SendTests(MessagingTestCase):
    def test_send_reaches_dest_only(self):
        """A message reaches the destination, and only it, with sender and dest."""
        self.register(self.alice, "Alice")
        self.register(self.bob, "Bob")
        self.register(self.carol, "Carol")
        self.bob.sent.clear()
        self.assertIsNone(call(self.messaging, self.alice, "send", sender="Alice", dest="Bob", body={"text": "Hi"}))
        self.assertEqual(
            self.bob.sent,
            [
                {
                    "service": "messaging",
                    "message": {"type": "message", "sender": "Alice", "dest": "Bob", "body": {"text": "Hi"}},
                }
            ],
        )
        self.assertEqual((self.alice.notifications(), self.carol.notifications()), ([], []))

    def test_send_to_oneself(self):
        """A client may send from one of its names to another of its names."""
        self.register(self.alice, "Alice", "Support")
        call(self.messaging, self.alice, "send", sender="Alice", dest="Support", body=1)
        self.assertEqual(
            self.alice.notifications(), [{"type": "message", "sender": "Alice", "dest": "Support", "body": 1}]
        )

    def test_impersonation_refused(self):
        """Sending as a name another client holds answers Invalid sender and sends nothing."""
        self.register(self.alice, "Alice")
        self.register(self.bob, "Bob")
        self.register(self.carol, "Carol")
        with expect_log(self, "Invalid sender", "INFO"):
            self.assertEqual(
                call_error(self.messaging, self.alice, "send", sender="Carol", dest="Bob", body="x"),
                ("Invalid sender", "invalid_sender"),
            )
        self.assertEqual(self.bob.notifications(), [])

    def test_unknown_sender(self):
        """Sending as a name nobody holds answers Invalid sender."""
        self.register(self.bob, "Bob")
        self.assertEqual(
            call_error(self.messaging, self.alice, "send", sender="Alice", dest="Bob", body="x"),
            ("Invalid sender", "invalid_sender"),
        )

    def test_unknown_destination(self):
        """Sending to a name nobody holds answers Unknown destination."""
        self.register(self.alice, "Alice")
        self.assertEqual(
            call_error(self.messaging, self.alice, "send", sender="Alice", dest="Charlie", body="x"),
            ("Unknown destination", "unknown_destination"),
        )

    def test_plain_clients(self):
        """0.1-style clients that only implement send(dict) register and receive."""
        plain_a, plain_b = PlainClient(), PlainClient()
        for client, name in ((plain_a, "A"), (plain_b, "B")):
            self.messaging.process_message_from(client, {"command": "registerParticipant", "params": {"name": name}})
        self.messaging.process_message_from(
            plain_a, {"command": "send", "params": {"sender": "A", "dest": "B", "body": "x"}}
        )
        self.assertEqual(plain_b.sent[-1]["message"], {"type": "message", "sender": "A", "dest": "B", "body": "x"})


class UnregisterTests(MessagingTestCase):
    def test_unregister_frees_the_name(self):
        """After unregistering, the name is unknown, unlisted and free to take."""
        self.register(self.alice, "Alice")
        self.register(self.bob, "Bob")
        self.assertIsNone(call(self.messaging, self.bob, "unregisterParticipant", name="Bob"))
        self.assertEqual(
            call_error(self.messaging, self.alice, "send", sender="Alice", dest="Bob", body="x")[1],
            "unknown_destination",
        )
        self.assertEqual(call(self.messaging, self.alice, "listParticipants"), ["Alice"])
        self.register(self.carol, "Bob")

    def test_unregister_unknown(self):
        """Unregistering a name nobody holds answers Unknown participant."""
        self.assertEqual(
            call_error(self.messaging, self.bob, "unregisterParticipant", name="Charlie"),
            ("Unknown participant", "unknown_participant"),
        )

    def test_unregister_anothers_name(self):
        """Unregistering another client's name answers Invalid participant and keeps it."""
        self.register(self.alice, "Alice")
        self.assertEqual(
            call_error(self.messaging, self.bob, "unregisterParticipant", name="Alice"),
            ("Invalid participant", "invalid_participant"),
        )
        self.assertEqual(call(self.messaging, self.bob, "listParticipants"), ["Alice"])


class CleanupTests(MessagingTestCase):
    def test_disconnect_frees_every_name(self):
        """A disconnect frees all the client's names and no one else's."""
        self.register(self.alice, "Alice", "Support")
        self.register(self.bob, "Bob")
        self.registry.client_disconnected(self.alice)
        self.assertEqual(self.messaging.participants, {"Bob": self.bob})
        self.assertEqual(self.messaging.client_participants, {self.bob: {"Bob"}})

    def test_disconnect_unknown_client(self):
        """Disconnecting a client that held no name is harmless."""
        self.registry.client_disconnected(self.alice)
        self.assertEqual(leftovers(self.messaging), {})

    def test_thousand_cycles_leave_nothing_behind(self):
        """After 1000 register/send/unregister/disconnect cycles no state or broker topic remains."""
        for n in range(1000):
            one, two = RecordingClient("one"), RecordingClient("two")
            self.register(one, f"one{n}", "shared")
            self.register(two, f"two{n}")
            call(self.messaging, one, "send", sender="shared", dest=f"two{n}", body=n)
            call(self.messaging, two, "unregisterParticipant", name=f"two{n}")
            self.registry.client_disconnected(one)
            self.registry.client_disconnected(two)
        self.assertEqual(leftovers(self.messaging), {})
        self.assertEqual(self.registry.broker.handlers, {})


class RegistryTests(MessagingTestCase):
    def test_wired_through_a_registry(self):
        """Raw JSON frames reach the service through a ServiceRegistry and answers come back."""
        frames = [
            b'{"service": "messaging", "message": {"command": "registerParticipant", "params": {"name": "A"}}}',
            b'{"service": "messaging", "message": {"command": "listParticipants", "callId": 7}}',
        ]
        for frame in frames:
            self.registry.process_message_raw(self.alice, frame)
        self.assertEqual(
            self.alice.sent,
            [
                {"service": "messaging", "message": {"type": "response", "data": None}},
                {"service": "messaging", "message": {"type": "response", "callId": 7, "data": ["A"]}},
            ],
        )
