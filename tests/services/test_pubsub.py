"""PubSubService and PubSubBackend, pure: commands, hooks, errors, cleanup."""

import unittest

from snorky import ServiceRegistry
from snorky.services.pubsub import PubSubBackend, PubSubService
from tests.utils import PlainClient, RecordingClient, call, call_error, expect_log


class Restricted(PubSubService):
    def can_publish(self, client, channel):
        return channel != "operators"

    def can_subscribe(self, client, channel):
        return not str(channel).startswith("private")


class SubscribeTests(unittest.TestCase):
    def setUp(self):
        self.pubsub = PubSubService("pubsub")
        ServiceRegistry([self.pubsub])
        self.alice, self.bob = RecordingClient("alice"), RecordingClient("bob")

    def test_publish_reaches_every_subscriber_once(self):
        """A publish reaches each subscriber once, the publisher too if subscribed."""
        call(self.pubsub, self.alice, "subscribe", channel="news")
        call(self.pubsub, self.bob, "subscribe", channel="news")
        call(self.pubsub, self.bob, "publish", channel="news", message={"title": "hi"})
        expected = [{"type": "message", "channel": "news", "message": {"title": "hi"}}]
        self.assertEqual(self.alice.notifications(), expected)
        self.assertEqual(self.bob.notifications(), expected)

    def test_other_channels_do_not_receive(self):
        """A subscriber of another channel gets nothing."""
        call(self.pubsub, self.alice, "subscribe", channel="sports")
        call(self.pubsub, self.bob, "publish", channel="news", message=1)
        self.assertEqual(self.alice.notifications(), [])

    def test_join_and_leave_are_the_same_commands(self):
        """join and leave work as subscribe and unsubscribe."""
        call(self.pubsub, self.alice, "join", channel="c")
        self.assertEqual(call_error(self.pubsub, self.alice, "subscribe", channel="c")[1], "already_subscribed")
        call(self.pubsub, self.alice, "leave", channel="c")
        self.assertEqual(call_error(self.pubsub, self.alice, "unsubscribe", channel="c")[1], "not_subscribed")

    def test_object_channels(self):
        """A JSON object is a valid channel name, matched by value."""
        call(self.pubsub, self.alice, "subscribe", channel={"room": 1, "kind": "chat"})
        self.pubsub.process_message_from(
            self.bob,
            __import__("snorky.hashable").hashable.make_hashable(
                {"command": "publish", "params": {"channel": {"kind": "chat", "room": 1}, "message": "x"}}
            ),
        )
        self.assertEqual(self.alice.notifications()[0]["message"], "x")

    def test_errors_keep_01_texts(self):
        """Already subscribed and Not subscribed keep their 0.1 texts."""
        call(self.pubsub, self.alice, "subscribe", channel="c")
        with expect_log(self, "Already subscribed", "INFO"):
            self.assertEqual(
                call_error(self.pubsub, self.alice, "subscribe", channel="c"),
                ("Already subscribed", "already_subscribed"),
            )
        with expect_log(self, "Not subscribed", "INFO"):
            self.assertEqual(
                call_error(self.pubsub, self.bob, "unsubscribe", channel="c"), ("Not subscribed", "not_subscribed")
            )

    def test_unsubscribe_stops_delivery(self):
        """After unsubscribe nothing more arrives."""
        call(self.pubsub, self.alice, "subscribe", channel="c")
        call(self.pubsub, self.alice, "unsubscribe", channel="c")
        self.pubsub.do_publish("c", 1)
        self.assertEqual(self.alice.notifications(), [])
        self.assertEqual(self.pubsub.subscriptions, {})
        self.assertEqual(self.pubsub.broker.handlers, {})

    def test_disconnect_removes_every_subscription(self):
        """A client that leaves holds no subscription and no broker topic."""
        for channel in ("a", "b", "c"):
            call(self.pubsub, self.alice, "subscribe", channel=channel)
        call(self.pubsub, self.bob, "subscribe", channel="a")
        self.pubsub.registry.client_disconnected(self.alice)
        self.assertEqual(self.pubsub.subscriptions, {"a": {self.bob}})
        self.assertEqual(self.pubsub.subscriptions_by_client, {self.bob: {"a"}})
        self.assertEqual(set(self.pubsub.broker.handlers), {'pubsub:"a"'})

    def test_do_publish_from_python(self):
        """Server code publishes with one call and no client."""
        call(self.pubsub, self.alice, "subscribe", channel="c")
        self.pubsub.do_publish("c", [1, 2])
        self.assertEqual(self.alice.notifications(), [{"type": "message", "channel": "c", "message": [1, 2]}])

    def test_plain_send_subscribers(self):
        """Subscribers that only implement send(dict) receive dicts."""
        plain = PlainClient()
        self.pubsub.process_message_from(plain, {"command": "subscribe", "params": {"channel": "c"}})
        self.pubsub.do_publish("c", "x")
        self.assertEqual(
            plain.sent[-1], {"service": "pubsub", "message": {"type": "message", "channel": "c", "message": "x"}}
        )

    def test_invalid_params(self):
        """publish without a message answers Invalid params."""
        with expect_log(self, "Invalid params"):
            self.assertEqual(call_error(self.pubsub, self.alice, "publish", channel="c")[1], "invalid_params")


class HookTests(unittest.TestCase):
    def setUp(self):
        self.pubsub = Restricted("pubsub")
        self.alice = RecordingClient("alice")

    def test_can_publish(self):
        """can_publish refusing answers Not authorized and publishes nothing."""
        call(self.pubsub, self.alice, "subscribe", channel="operators")
        with expect_log(self, "Not authorized", "INFO"):
            self.assertEqual(
                call_error(self.pubsub, self.alice, "publish", channel="operators", message=1),
                ("Not authorized", "forbidden"),
            )
        self.assertEqual(self.alice.notifications(), [])

    def test_can_subscribe(self):
        """can_subscribe refusing answers Not authorized and subscribes nothing."""
        with expect_log(self, "Not authorized", "INFO"):
            self.assertEqual(call_error(self.pubsub, self.alice, "subscribe", channel="private-1")[1], "forbidden")
        self.assertEqual(self.pubsub.subscriptions, {})

    def test_backend_skips_can_publish(self):
        """PubSubBackend publishes even where can_publish would refuse."""
        call(self.pubsub, self.alice, "subscribe", channel="operators")
        call(PubSubBackend("pubsub", self.pubsub), RecordingClient("server"), "publish", channel="operators", message=2)
        self.assertEqual(self.alice.notifications()[0]["message"], 2)


class DeliverManyTests(unittest.TestCase):
    def test_excluded_client_is_skipped(self):
        """deliver_many skips the Outbound's excluded client and reaches the others."""
        service, sender, other = PubSubService("p"), RecordingClient("s"), RecordingClient("o")
        service.deliver_many([sender, other], service.outbound({"type": "ping"}, exclude=sender))
        self.assertEqual((sender.sent, other.notifications()), ([], [{"type": "ping"}]))
