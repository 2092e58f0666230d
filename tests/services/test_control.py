"""ControlService, pure: disconnect, unsubscribe, presence and info on the frontend registry."""

import unittest

from snorky import ServiceRegistry, __version__
from snorky.services.base import Service
from snorky.services.control import ControlService
from snorky.services.datasync import DataSyncService
from snorky.services.pubsub import PubSubService
from tests.utils import ClosableClient, RecordingClient, call, call_error, expect_log


class ControlTests(unittest.TestCase):
    def setUp(self):
        self.pubsub = PubSubService("pubsub")
        self.frontend = ServiceRegistry([self.pubsub])
        self.control = ControlService("control", frontend=self.frontend)
        self.app = RecordingClient("app-server")
        self.alice1, self.alice2, self.bob = ClosableClient("alice"), ClosableClient("alice"), ClosableClient("bob")
        for client in (self.alice1, self.alice2, self.bob):
            self.frontend.client_connected(client)
        self.alice1.info = {"name": "Alice"}

    def test_disconnect_closes_every_connection_of_an_identity(self):
        """disconnect closes all of an identity's connections with 4004, and no one else's."""
        self.assertEqual(call(self.control, self.app, "disconnect", identity="alice"), {"disconnected": 2})
        self.assertEqual((self.alice1.closed_with, self.alice2.closed_with, self.bob.closed_with), (4004, 4004, None))

    def test_unsubscribe_identity(self):
        """unsubscribe removes an identity's connections from a channel; others stay."""
        for client in (self.alice1, self.alice2, self.bob):
            call(self.pubsub, client, "subscribe", channel="news")
        reply = call(self.control, self.app, "unsubscribe", identity="alice", service="pubsub", channel="news")
        self.assertEqual(reply, {"unsubscribed": 2})
        self.assertEqual(self.pubsub.subscriptions["news"], {self.bob})
        told = {"type": "unsubscribed", "channel": "news"}
        self.assertEqual((self.alice1.notifications(), self.alice2.notifications()), ([told], [told]))
        self.assertEqual(self.bob.notifications(), [])
        self.pubsub.do_publish("news", 1)
        self.assertEqual(self.alice1.notifications(), [told])

    def test_presence(self):
        """presence lists a channel's identities with their info and connection count."""
        for client in (self.alice1, self.alice2, self.bob, RecordingClient()):
            call(self.pubsub, client, "subscribe", channel="news")
        presence = call(self.control, self.app, "presence", service="pubsub", channel="news")
        self.assertEqual(
            sorted(presence, key=lambda p: p["identity"]),
            [
                {"identity": "alice", "info": {"name": "Alice"}, "connections": 2},
                {"identity": "bob", "info": None, "connections": 1},
            ],
        )

    def test_info(self):
        """info reports version, connections, identities, services and channels."""
        call(self.pubsub, self.bob, "subscribe", channel="a")
        info = call(self.control, self.app, "info")
        self.assertEqual((info["version"], info["connections"], info["identities"]), (__version__, 3, 2))
        self.assertEqual(info["services"]["pubsub"], {"class": "PubSubService", "channels": 1})

    def test_info_has_service_counters(self):
        """info carries the counters of a service that has stats(): DataSync's stale deltas."""
        self.frontend.register_service(DataSyncService("datasync"))
        info = call(self.control, self.app, "info")
        self.assertEqual(
            info["services"]["datasync"],
            {"class": "DataSyncService", "stats": {"stale_deltas": 0, "remembered_rows": 0, "forgotten_rows": 0}},
        )

    def test_unknown_and_unsupported_services(self):
        """An unknown service or one without presence answers its code."""
        self.frontend.register_service(Service("other"))
        with expect_log(self, "", "INFO"):
            self.assertEqual(
                call_error(self.control, self.app, "presence", service="nope", channel="x")[1], "unknown_service"
            )
            self.assertEqual(
                call_error(self.control, self.app, "presence", service="other", channel="x")[1], "unsupported"
            )

    def test_needs_a_frontend(self):
        """A ControlService without a frontend registry cannot be made."""
        with self.assertRaises(ValueError):
            ControlService("control")


class ControlChatCursorsTests(unittest.TestCase):
    def setUp(self):
        from snorky.services.chat import ChatService
        from snorky.services.cursors import CursorsService

        self.chat, self.cursors = ChatService("chat"), CursorsService("cursors")
        self.frontend = ServiceRegistry([self.chat, self.cursors])
        self.control = ControlService("control", frontend=self.frontend)
        self.app, self.alice, self.bob = RecordingClient("app"), ClosableClient("alice"), ClosableClient("bob")

    def test_chat_presence_and_unsubscribe(self):
        """Chat answers presence and lets the server remove an identity (with a left notification)."""
        call(self.chat, self.alice, "join", channel="lobby")
        call(self.chat, self.bob, "join", channel="lobby")
        presence = call(self.control, self.app, "presence", service="chat", channel="lobby")
        self.assertEqual(sorted(p["identity"] for p in presence), ["alice", "bob"])
        call(self.control, self.app, "unsubscribe", identity="bob", service="chat", channel="lobby")
        self.assertEqual(self.bob.notifications()[-1], {"type": "unsubscribed", "channel": "lobby"})
        left = self.alice.notifications()[-1]
        self.assertEqual((left["type"], left["from"], left["status"]), ("presence", "bob", "left"))
        self.assertEqual(call(self.control, self.app, "info")["services"]["chat"]["channels"], 1)

    def test_cursors_unsubscribe_removes_cursors(self):
        """Removing an identity from a document removes its cursors for the others."""
        call(self.cursors, self.alice, "join", document="doc")
        call(self.cursors, self.bob, "join", document="doc")
        call(self.cursors, self.bob, "createCursor", privateHandle=1, document="doc", position=3, status=None)
        call(self.control, self.app, "unsubscribe", identity="bob", service="cursors", channel="doc")
        self.assertEqual(self.alice.notifications()[-1]["type"], "cursorRemoved")
        self.assertEqual(self.bob.notifications()[-1], {"type": "unsubscribed", "document": "doc"})
        self.assertEqual(
            call(self.control, self.app, "presence", service="cursors", channel="doc")[0]["identity"], "alice"
        )
