"""PubSub history and recovery on the in-memory broker: offsets, epochs, gaps, expiry."""

import unittest

from snorky import ServiceRegistry
from snorky.brokers.base import with_position
from snorky.brokers.memory import MemoryBroker
from snorky.protocol import Outbound
from snorky.services.pubsub import HistoryRule, PubSubService
from tests.utils import RecordingClient, call, call_error, expect_log


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class HistoryTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.broker = MemoryBroker(clock=self.clock)
        self.pubsub = PubSubService("pubsub", history=[{"channel": "news*", "size": 3, "ttl": 60}])
        ServiceRegistry([self.pubsub], broker=self.broker)
        self.reader = RecordingClient("reader")

    def subscribe(self, client=None, **recover):
        params = {"recover": recover} if recover else {}
        return call(self.pubsub, client or RecordingClient(), "subscribe", channel="news", **params)

    def test_messages_carry_offset_and_epoch(self):
        """Messages of a history channel carry consecutive offsets and the stream's epoch."""
        position = self.subscribe(self.reader)
        self.assertEqual(position["offset"], 0)
        self.pubsub.do_publish("news", "a")
        self.pubsub.do_publish("news", "b")
        notes = self.reader.notifications()
        self.assertEqual(
            [(n["message"], n["offset"], n["epoch"]) for n in notes],
            [("a", 1, position["epoch"]), ("b", 2, position["epoch"])],
        )

    def test_channels_without_history_are_unchanged(self):
        """Other channels answer null and their messages have no offset, as in 0.1."""
        self.assertIsNone(call(self.pubsub, self.reader, "subscribe", channel="sports"))
        self.pubsub.do_publish("sports", 1)
        self.assertEqual(self.reader.notifications(), [{"type": "message", "channel": "sports", "message": 1}])

    def test_recover_what_was_missed(self):
        """A client resubscribing with its last offset gets the missed messages in order."""
        epoch = self.subscribe(self.reader)["epoch"]
        self.pubsub.do_publish("news", "seen")
        self.pubsub.registry.client_disconnected(self.reader)
        self.pubsub.do_publish("news", "missed 1")
        self.pubsub.do_publish("news", "missed 2")
        reply = self.subscribe(offset=1, epoch=epoch)
        self.assertTrue(reply["recovered"])
        self.assertEqual(
            [(p["message"], p["offset"]) for p in reply["publications"]], [("missed 1", 2), ("missed 2", 3)]
        )
        self.assertEqual(reply["offset"], 3)

    def test_nothing_missed(self):
        """Recovering at the newest offset is recovered with nothing to send."""
        epoch = self.subscribe(self.reader)["epoch"]
        self.pubsub.do_publish("news", "x")
        reply = self.subscribe(offset=1, epoch=epoch)
        self.assertEqual((reply["recovered"], reply["publications"]), (True, []))

    def test_quiet_channel_recovers(self):
        """A client that subscribed to a quiet channel recovers what came while it was away."""
        epoch = self.subscribe(self.reader)["epoch"]
        self.pubsub.do_publish("news", "first ever")
        reply = self.subscribe(offset=0, epoch=epoch)
        self.assertEqual((reply["recovered"], len(reply["publications"])), (True, 1))

    def test_gap_too_large(self):
        """When more messages were missed than the history keeps, recovered is false."""
        epoch = self.subscribe(self.reader)["epoch"]
        for i in range(5):
            self.pubsub.do_publish("news", i)
        reply = self.subscribe(offset=1, epoch=epoch)
        self.assertEqual((reply["recovered"], reply["publications"], reply["offset"]), (False, [], 5))

    def test_other_epoch(self):
        """An offset from another epoch is not recovered."""
        self.pubsub.do_publish("news", "x")
        reply = self.subscribe(offset=0, epoch="not-this-one")
        self.assertFalse(reply["recovered"])

    def test_offset_from_the_future(self):
        """An offset beyond the stream's newest is not recovered."""
        epoch = self.subscribe(self.reader)["epoch"]
        self.assertFalse(self.subscribe(offset=7, epoch=epoch)["recovered"])

    def test_messages_expire_after_ttl(self):
        """Messages older than the ttl can no longer be recovered."""
        epoch = self.subscribe(self.reader)["epoch"]
        self.pubsub.do_publish("news", "old")
        self.clock.now += 45
        self.pubsub.do_publish("news", "recent")
        self.clock.now += 30
        reply = self.subscribe(offset=0, epoch=epoch)
        self.assertEqual((reply["recovered"], reply["publications"]), (False, []))
        self.assertEqual([p["message"] for p in self.subscribe(offset=1, epoch=epoch)["publications"]], ["recent"])

    def test_expired_stream_gets_a_new_epoch(self):
        """A stream idle for longer than its ttl starts again with a new epoch."""
        epoch = self.subscribe(self.reader)["epoch"]
        self.pubsub.do_publish("news", "x")
        self.clock.now += 61
        reply = self.subscribe(offset=1, epoch=epoch)
        self.assertFalse(reply["recovered"])
        self.assertNotEqual(reply["epoch"], epoch)
        self.assertEqual(reply["offset"], 0)

    def test_sweep_forgets_expired_streams(self):
        """Expired streams are swept away, so idle channels hold no memory."""
        for i in range(10):
            self.pubsub.do_publish(f"news{i}", i)
        self.clock.now += 61
        self.broker.sweep()
        self.assertEqual(self.broker.streams, {})

    def test_invalid_recover(self):
        """A malformed recover answers Invalid params and subscribes nothing."""
        for recover in [
            {"offset": "1", "epoch": "e"},
            {"offset": -1, "epoch": "e"},
            {"offset": 1},
            "1",
            {"offset": True, "epoch": "e"},
        ]:
            with self.subTest(recover=recover), expect_log(self, "invalid|Invalid", "INFO"):
                self.assertEqual(
                    call_error(self.pubsub, self.reader, "subscribe", channel="news", recover=recover)[1],
                    "invalid_params",
                )
        self.assertEqual(self.pubsub.subscriptions, {})

    def test_join_recovers_too(self):
        """join accepts recover like subscribe."""
        epoch = self.subscribe(self.reader)["epoch"]
        self.pubsub.do_publish("news", "x")
        reply = call(self.pubsub, RecordingClient(), "join", channel="news", recover={"offset": 0, "epoch": epoch})
        self.assertTrue(reply["recovered"])

    def test_rules_in_order(self):
        """The first matching rule wins; object channels never keep history."""
        pubsub = PubSubService("p", history=[HistoryRule("a*", size=1), {"channel": "ab*", "size": 9}])
        self.assertEqual(pubsub.history_rule("abc").size, 1)
        self.assertIsNone(pubsub.history_rule({"room": "abc"}))
        self.assertIsNone(pubsub.history_rule("zzz"))

    def test_with_position_needs_an_object_message(self):
        """Only envelopes ending in an object message can carry a position."""
        self.assertEqual(
            with_position(Outbound({"service": "s", "message": {"a": 1}}), 3, "e"),
            b'{"service":"s","message":{"a":1,"offset":3,"epoch":"e"}}',
        )
        with self.assertRaises(ValueError):
            with_position(Outbound({"service": "s", "message": "text"}), 1, "e")
