"""ChatService, pure: commands, errors, presence by identity, read receipts, history, hooks, cleanup."""

import itertools
import unittest
from collections import deque
from datetime import datetime, timedelta, timezone

from snorky import ServiceRegistry
from snorky.brokers.memory import MemoryBroker
from snorky.services.chat import ChatService
from tests.utils import InFlightBroker, RecordingClient, call, call_error, expect_log

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
TS = "2026-01-02T03:04:05+00:00"


def fixed_clock():
    return T0


def make_client(identity, info=None):
    client = RecordingClient(identity)
    client.info = info
    return client


def leftovers(service):
    """The service's containers that still hold something."""
    return {
        name: value for name, value in vars(service).items() if isinstance(value, (dict, set, list, deque)) and value
    }


class OldStyleClient:
    """A 0.1-style client double: an identity and send(dict), no info attribute."""

    def __init__(self, identity):
        self.identity = identity
        self.sent = []

    def send(self, msg):
        self.sent.append(msg)


class Restricted(ChatService):
    def can_join(self, client, channel):
        return not channel.startswith("staff-") or client.identity == "boss"

    def can_send(self, client, channel):
        return channel != "announcements" or client.identity == "boss"


class ChatTestCase(unittest.TestCase):
    service_class = ChatService
    options = {}

    def setUp(self):
        self.chat = self.service_class("chat", clock=fixed_clock, **self.options)
        self.registry = ServiceRegistry([self.chat])
        self.alice = make_client("alice", {"name": "Alice"})
        self.alice_laptop = make_client("alice", {"name": "Alice (laptop)"})
        self.bob = make_client("bob", {"name": "Bob"})

    def presence(self, identity, status, info, channel="lobby"):
        push = {"type": "presence", "from": identity, "channel": channel, "status": status, "timestamp": TS}
        if info is not None:
            push["info"] = info
        return push

    def message(self, identity, body, channel="lobby"):
        return {"type": "message", "from": identity, "channel": channel, "body": body, "timestamp": TS}

    def clear(self, *clients):
        for client in clients:
            client.sent.clear()


class JoinTests(ChatTestCase):
    def test_join_lists_members(self):
        """Joining a channel replies with its members, the newcomer included."""
        call(self.chat, self.alice, "join", channel="lobby")
        reply = call(self.chat, self.bob, "join", channel="lobby")
        self.assertEqual(reply["members"], ["alice", "bob"])

    def test_join_lists_presence_with_info(self):
        """The join reply lists each member's identity and public info."""
        call(self.chat, self.alice, "join", channel="lobby")
        reply = call(self.chat, self.bob, "join", channel="lobby")
        self.assertEqual(
            reply["presence"],
            [{"identity": "alice", "info": {"name": "Alice"}}, {"identity": "bob", "info": {"name": "Bob"}}],
        )

    def test_join_without_history_has_no_history_key(self):
        """With history_size 0 the reply has only members and presence."""
        self.assertEqual(set(call(self.chat, self.alice, "join", channel="lobby")), {"members", "presence"})

    def test_client_without_info_attribute(self):
        """A 0.1-style client double without info joins with info null."""
        old = OldStyleClient("carol")
        reply = call(self.chat, old, "join", channel="lobby")
        self.assertEqual(reply["presence"], [{"identity": "carol", "info": None}])

    def test_join_twice(self):
        """Joining a channel twice answers Already joined."""
        call(self.chat, self.alice, "join", channel="lobby")
        with expect_log(self, "Already joined", "INFO"):
            self.assertEqual(
                call_error(self.chat, self.alice, "join", channel="lobby"), ("Already joined", "already_joined")
            )

    def test_anonymous_join_refused(self):
        """An anonymous client cannot join by default: Not authenticated."""
        anonymous = RecordingClient(None)
        self.assertEqual(
            call_error(self.chat, anonymous, "join", channel="lobby"), ("Not authenticated", "not_authenticated")
        )
        self.assertEqual(leftovers(self.chat), {})

    def test_join_without_channel(self):
        """join without a channel answers Invalid params."""
        with expect_log(self, "Invalid params"):
            self.assertEqual(call_error(self.chat, self.alice, "join")[1], "invalid_params")

    def test_object_channels(self):
        """A JSON object is a channel, matched by value whatever the key order."""
        call(self.chat, self.alice, "join", channel={"room": 1, "kind": "chat"})
        call(self.chat, self.alice, "send", channel={"kind": "chat", "room": 1}, body="hi")
        self.assertEqual(self.alice.notifications()[0]["body"], "hi")


class PresenceTests(ChatTestCase):
    def test_joined_goes_to_existing_members_only(self):
        """A newcomer's joined presence reaches the members already there, not the newcomer."""
        call(self.chat, self.alice, "join", channel="lobby")
        call(self.chat, self.bob, "join", channel="lobby")
        self.assertEqual(self.alice.notifications(), [self.presence("bob", "joined", {"name": "Bob"})])
        self.assertEqual(self.bob.notifications(), [])

    def test_joined_reaches_every_tab_of_a_member(self):
        """Both tabs of a member receive a newcomer's joined presence."""
        call(self.chat, self.alice, "join", channel="lobby")
        call(self.chat, self.alice_laptop, "join", channel="lobby")
        call(self.chat, self.bob, "join", channel="lobby")
        expected = [self.presence("bob", "joined", {"name": "Bob"})]
        self.assertEqual((self.alice.notifications(), self.alice_laptop.notifications()), (expected, expected))

    def test_second_tab_is_not_announced(self):
        """A second tab of a member joins silently and the member is listed once."""
        call(self.chat, self.alice, "join", channel="lobby")
        call(self.chat, self.bob, "join", channel="lobby")
        self.clear(self.alice, self.bob)
        reply = call(self.chat, self.alice_laptop, "join", channel="lobby")
        self.assertEqual(reply["members"], ["alice", "bob"])
        self.assertEqual(
            (self.alice.notifications(), self.alice_laptop.notifications(), self.bob.notifications()), ([], [], [])
        )

    def test_member_info_is_the_first_tabs(self):
        """A member's info is the one of its first connection in the channel."""
        call(self.chat, self.alice, "join", channel="lobby")
        reply = call(self.chat, self.alice_laptop, "join", channel="lobby")
        self.assertEqual(reply["presence"], [{"identity": "alice", "info": {"name": "Alice"}}])

    def test_newcomers_other_tab_outside_channel_gets_nothing(self):
        """A member's tab that is not in the channel receives nothing about it."""
        call(self.chat, self.bob, "join", channel="lobby")
        call(self.chat, self.alice_laptop, "join", channel="elsewhere")
        call(self.chat, self.alice, "join", channel="lobby")
        self.assertEqual(self.alice_laptop.notifications(), [])

    def test_leave_sends_left_to_the_others(self):
        """Leaving sends left, with info, to the remaining members, not to the leaver."""
        call(self.chat, self.alice, "join", channel="lobby")
        call(self.chat, self.bob, "join", channel="lobby")
        self.clear(self.alice, self.bob)
        self.assertIsNone(call(self.chat, self.alice, "leave", channel="lobby"))
        self.assertEqual(self.bob.notifications(), [self.presence("alice", "left", {"name": "Alice"})])
        self.assertEqual(self.alice.notifications(), [])

    def test_left_only_when_last_tab_leaves(self):
        """A member is announced left only when its last tab leaves, with that tab's info.

        (Membership is cluster-wide: the node that sees the last tab go knows only that tab.)
        """
        for client in (self.alice, self.alice_laptop, self.bob):
            call(self.chat, client, "join", channel="lobby")
        self.clear(self.alice, self.alice_laptop, self.bob)
        call(self.chat, self.alice, "leave", channel="lobby")
        self.assertEqual(self.bob.notifications(), [])
        call(self.chat, self.alice_laptop, "leave", channel="lobby")
        self.assertEqual(self.bob.notifications(), [self.presence("alice", "left", {"name": "Alice (laptop)"})])

    def test_disconnect_of_one_tab_keeps_membership(self):
        """A tab disconnecting leaves the member in, reachable on its other tab."""
        for client in (self.alice, self.alice_laptop, self.bob):
            call(self.chat, client, "join", channel="lobby")
        self.clear(self.alice, self.alice_laptop, self.bob)
        self.registry.client_disconnected(self.alice)
        call(self.chat, self.bob, "send", channel="lobby", body="hi")
        self.assertEqual(self.alice_laptop.notifications(), [self.message("bob", "hi")])
        self.assertEqual(self.alice.notifications(), [])
        self.assertEqual(self.bob.notifications(), [self.message("bob", "hi")])

    def test_disconnect_leaves_every_channel(self):
        """A disconnect sends left in each channel where it was the member's last tab."""
        call(self.chat, self.alice, "join", channel="cats")
        call(self.chat, self.alice_laptop, "join", channel="cats")
        call(self.chat, self.alice, "join", channel="dogs")
        call(self.chat, self.bob, "join", channel="cats")
        call(self.chat, self.bob, "join", channel="dogs")
        self.clear(self.alice, self.alice_laptop, self.bob)
        self.registry.client_disconnected(self.alice)
        self.assertEqual(self.bob.notifications(), [self.presence("alice", "left", {"name": "Alice"}, "dogs")])
        self.registry.client_disconnected(self.alice_laptop)
        self.assertEqual(
            self.bob.notifications()[1:], [self.presence("alice", "left", {"name": "Alice (laptop)"}, "cats")]
        )

    def test_leave_not_joined(self):
        """Leaving a channel not joined answers Not joined."""
        call(self.chat, self.alice, "join", channel="other")
        self.assertEqual(call_error(self.chat, self.alice, "leave", channel="lobby"), ("Not joined", "not_joined"))


class AnonymousTests(ChatTestCase):
    options = {"allow_anonymous": True}

    def test_anonymous_connections_are_separate_members(self):
        """With allow_anonymous, each anonymous connection is a member of its own."""
        one, two = RecordingClient(None), RecordingClient(None)
        call(self.chat, one, "join", channel="lobby")
        reply = call(self.chat, two, "join", channel="lobby")
        self.assertEqual(reply["members"], [None, None])
        self.assertEqual(one.notifications(), [self.presence(None, "joined", None)])
        call(self.chat, two, "leave", channel="lobby")
        self.assertEqual(one.notifications()[1:], [self.presence(None, "left", None)])

    def test_presence_without_info_has_no_info_key(self):
        """A member with no info is announced without an info key, as Snorky 0.1 sent it."""
        one, two = RecordingClient("dana"), RecordingClient("erin")
        call(self.chat, one, "join", channel="lobby")
        call(self.chat, two, "join", channel="lobby")
        self.assertNotIn("info", one.notifications()[0])

    def test_anonymous_send(self):
        """An anonymous member's messages come from null."""
        anonymous = RecordingClient(None)
        call(self.chat, anonymous, "join", channel="lobby")
        call(self.chat, anonymous, "send", channel="lobby", body="hi")
        self.assertEqual(anonymous.notifications(), [self.message(None, "hi")])

    def test_anonymous_read_sends_nothing(self):
        """An anonymous read has no other connections to notify."""
        one, two = RecordingClient(None), RecordingClient(None)
        call(self.chat, one, "join", channel="lobby")
        call(self.chat, two, "join", channel="lobby")
        self.clear(one, two)
        self.assertIsNone(call(self.chat, one, "read", channel="lobby"))
        self.assertEqual((one.notifications(), two.notifications()), ([], []))


class SendTests(ChatTestCase):
    def test_send_reaches_every_connection(self):
        """A message reaches every connection in the channel, the sender's included."""
        for client in (self.alice, self.alice_laptop, self.bob):
            call(self.chat, client, "join", channel="lobby")
        self.clear(self.alice, self.alice_laptop, self.bob)
        self.assertIsNone(call(self.chat, self.alice, "send", channel="lobby", body={"text": "hi"}))
        expected = [self.message("alice", {"text": "hi"})]
        for client in (self.alice, self.alice_laptop, self.bob):
            self.assertEqual(client.notifications(), expected)

    def test_send_not_joined(self):
        """Sending to a channel not joined answers Not joined and sends nothing."""
        call(self.chat, self.bob, "join", channel="operators")
        call(self.chat, self.alice, "join", channel="lobby")
        self.clear(self.bob)
        with expect_log(self, "Not joined", "INFO"):
            self.assertEqual(
                call_error(self.chat, self.alice, "send", channel="operators", body="spam"),
                ("Not joined", "not_joined"),
            )
        self.assertEqual(self.bob.notifications(), [])

    def test_other_channels_do_not_receive(self):
        """A member of another channel gets nothing."""
        call(self.chat, self.alice, "join", channel="lobby")
        call(self.chat, self.bob, "join", channel="other")
        call(self.chat, self.alice, "send", channel="lobby", body="hi")
        self.assertEqual(self.bob.notifications(), [])

    def test_nothing_after_leave(self):
        """After leaving, a client receives no more messages of the channel."""
        call(self.chat, self.alice, "join", channel="lobby")
        call(self.chat, self.bob, "join", channel="lobby")
        call(self.chat, self.alice, "leave", channel="lobby")
        self.clear(self.alice)
        call(self.chat, self.bob, "send", channel="lobby", body="hi")
        self.assertEqual(self.alice.notifications(), [])


class ReadTests(ChatTestCase):
    def test_read_goes_to_other_tabs_only(self):
        """read notifies the reader's other tabs in the channel, not the reader nor others."""
        for client in (self.alice, self.alice_laptop, self.bob):
            call(self.chat, client, "join", channel="lobby")
        self.clear(self.alice, self.alice_laptop, self.bob)
        self.assertIsNone(call(self.chat, self.alice, "read", channel="lobby"))
        self.assertEqual(self.alice_laptop.notifications(), [{"type": "read", "channel": "lobby", "timestamp": TS}])
        self.assertEqual((self.alice.notifications(), self.bob.notifications()), ([], []))

    def test_read_skips_tabs_in_other_channels(self):
        """A tab of the reader that is not in the channel gets no read receipt."""
        call(self.chat, self.alice, "join", channel="lobby")
        call(self.chat, self.alice_laptop, "join", channel="other")
        call(self.chat, self.alice, "read", channel="lobby")
        self.assertEqual(self.alice_laptop.notifications(), [])

    def test_read_topic_cannot_be_joined_as_a_channel(self):
        """No channel name shares a broker topic with someone's read receipts."""
        call(self.chat, self.alice, "join", channel="lobby")
        call(self.chat, self.alice_laptop, "join", channel="lobby")
        for channel in (["read", "alice", "lobby"], ["alice", "lobby"], 'read:["alice","lobby"]'):
            call(self.chat, self.bob, "join", channel=channel)
        self.clear(self.bob)
        call(self.chat, self.alice, "read", channel="lobby")
        self.assertEqual(self.bob.notifications(), [])
        self.assertEqual(len(self.alice_laptop.notifications()), 1)


class HistoryTests(ChatTestCase):
    options = {"history_size": 2}

    def test_join_replies_with_last_messages(self):
        """join replies with the channel's last history_size messages, oldest first."""
        call(self.chat, self.alice, "join", channel="lobby")
        for body in ("one", "two", "three"):
            call(self.chat, self.alice, "send", channel="lobby", body=body)
        reply = call(self.chat, self.bob, "join", channel="lobby")
        self.assertEqual(reply["history"], [self.message("alice", "two"), self.message("alice", "three")])

    def test_history_holds_only_messages(self):
        """Presence is not part of the history."""
        call(self.chat, self.alice, "join", channel="lobby")
        call(self.chat, self.bob, "join", channel="lobby")
        call(self.chat, self.bob, "leave", channel="lobby")
        self.assertEqual(call(self.chat, self.alice_laptop, "join", channel="lobby")["history"], [])

    def test_history_is_per_channel(self):
        """Another channel's messages are not in a channel's history."""
        call(self.chat, self.alice, "join", channel="lobby")
        call(self.chat, self.alice, "send", channel="lobby", body="hi")
        self.assertEqual(call(self.chat, self.bob, "join", channel="other")["history"], [])

    def test_history_dropped_when_channel_empties(self):
        """A channel's history goes when its last member leaves."""
        call(self.chat, self.alice, "join", channel="lobby")
        call(self.chat, self.alice, "send", channel="lobby", body="hi")
        call(self.chat, self.alice, "leave", channel="lobby")
        self.assertEqual(call(self.chat, self.bob, "join", channel="lobby")["history"], [])

    def test_negative_history_size(self):
        """A negative history_size is a ValueError."""
        with self.assertRaises(ValueError):
            ChatService("chat", history_size=-1)


class TimestampTests(unittest.TestCase):
    def test_default_clock_is_aware_iso_8601(self):
        """Without a clock, timestamps are ISO-8601 with a time zone."""
        stamp = datetime.fromisoformat(ChatService("chat").get_time())
        self.assertIsNotNone(stamp.tzinfo)
        self.assertLess(abs(datetime.now(timezone.utc) - stamp), timedelta(minutes=1))

    def test_clock_drives_timestamps(self):
        """Each notification is stamped with the injected clock's time."""
        ticks = (T0 + timedelta(seconds=n) for n in itertools.count())
        chat, alice = ChatService("chat", clock=lambda: next(ticks)), RecordingClient("alice")
        call(chat, alice, "join", channel="lobby")  # stamps its joined presence with tick 0
        call(chat, alice, "send", channel="lobby", body=1)
        call(chat, alice, "send", channel="lobby", body=2)
        stamps = [body["timestamp"] for body in alice.notifications()]
        self.assertEqual(stamps, ["2026-01-02T03:04:06+00:00", "2026-01-02T03:04:07+00:00"])

    def test_get_time_override(self):
        """A 0.1-style subclass overriding get_time stamps with it."""

        class Fake(ChatService):
            def get_time(self):
                return "fake"

        chat, alice = Fake("chat"), RecordingClient("alice")
        call(chat, alice, "join", channel="lobby")
        call(chat, alice, "send", channel="lobby", body=1)
        self.assertEqual(alice.notifications()[0]["timestamp"], "fake")


class HookTests(ChatTestCase):
    service_class = Restricted

    def test_can_join_refuses(self):
        """can_join refusing answers Not authorized and joins nothing."""
        with expect_log(self, "Not authorized", "INFO"):
            self.assertEqual(
                call_error(self.chat, self.alice, "join", channel="staff-room"), ("Not authorized", "forbidden")
            )
        self.assertEqual(leftovers(self.chat), {})
        self.assertEqual(self.chat.broker.handlers, {})

    def test_can_join_allows(self):
        """can_join accepting lets the client in."""
        self.assertEqual(call(self.chat, make_client("boss"), "join", channel="staff-room")["members"], ["boss"])

    def test_can_send_refuses(self):
        """can_send refusing answers Not authorized and sends nothing."""
        call(self.chat, self.alice, "join", channel="announcements")
        self.assertEqual(
            call_error(self.chat, self.alice, "send", channel="announcements", body="x"),
            ("Not authorized", "forbidden"),
        )
        self.assertEqual(self.alice.notifications(), [])


class BrokerTests(unittest.TestCase):
    def setUp(self):
        broker = MemoryBroker()
        self.node_a, self.node_b = ChatService("chat", clock=fixed_clock), ChatService("chat", clock=fixed_clock)
        ServiceRegistry([self.node_a], broker=broker)
        ServiceRegistry([self.node_b], broker=broker)
        self.broker = broker

    def test_messages_reach_other_nodes(self):
        """A message sent on one node reaches the channel's members on another."""
        alice, bob = RecordingClient("alice"), RecordingClient("bob")
        call(self.node_a, alice, "join", channel="lobby")
        call(self.node_b, bob, "join", channel="lobby")
        call(self.node_a, alice, "send", channel="lobby", body="hi")
        self.assertEqual(bob.notifications()[-1]["body"], "hi")
        self.assertEqual(alice.notifications()[-1]["body"], "hi")

    def test_presence_reaches_other_nodes(self):
        """A join on one node is announced to members on another."""
        alice, bob = RecordingClient("alice"), RecordingClient("bob")
        call(self.node_a, alice, "join", channel="lobby")
        call(self.node_b, bob, "join", channel="lobby")
        self.assertEqual([(b["from"], b["status"]) for b in alice.notifications()], [("bob", "joined")])

    def test_read_receipts_reach_other_nodes(self):
        """A read on one node reaches the reader's tab on another node only."""
        alice, alice_laptop, bob = RecordingClient("alice"), RecordingClient("alice"), RecordingClient("bob")
        call(self.node_a, alice, "join", channel="lobby")
        call(self.node_b, alice_laptop, "join", channel="lobby")
        call(self.node_b, bob, "join", channel="lobby")
        bob.sent.clear()
        call(self.node_a, alice, "read", channel="lobby")
        self.assertEqual(alice_laptop.notifications()[-1]["type"], "read")
        self.assertEqual((bob.notifications(), [b for b in alice.notifications() if b["type"] == "read"]), ([], []))

    def test_topics_follow_local_members(self):
        """A node is subscribed to a channel's topics only while it has clients in it."""
        alice = RecordingClient("alice")
        call(self.node_a, alice, "join", channel="lobby")
        self.assertEqual(set(self.broker.handlers), {'chat:"lobby"', 'chat:read:["alice","lobby"]'})
        call(self.node_a, alice, "leave", channel="lobby")
        self.assertEqual(self.broker.handlers, {})


class LateDeliveryTests(unittest.TestCase):
    def setUp(self):
        self.broker = InFlightBroker()
        self.chat = ChatService("chat", clock=fixed_clock)
        ServiceRegistry([self.chat], broker=self.broker)
        self.alice, self.bob = RecordingClient("alice"), RecordingClient("bob")

    def test_newcomer_never_gets_its_own_joined(self):
        """A joined presence delivered late still skips its newcomer.

        Bob may get Alice's earlier "joined" late although his join reply listed her:
        clients treat presence as a set (documented).
        """
        call(self.chat, self.alice, "join", channel="lobby")
        call(self.chat, self.bob, "join", channel="lobby")
        self.broker.flush()
        self.assertEqual([(b["from"], b["status"]) for b in self.alice.notifications()], [("bob", "joined")])
        self.assertNotIn("bob", [b["from"] for b in self.bob.notifications()])

    def test_messages_after_last_leave_are_dropped(self):
        """Messages and read receipts arriving after the node's last client left are dropped."""
        tab = RecordingClient("alice")
        call(self.chat, self.alice, "join", channel="lobby")
        call(self.chat, tab, "join", channel="lobby")
        call(self.chat, self.alice, "send", channel="lobby", body="hi")
        call(self.chat, self.alice, "read", channel="lobby")
        self.chat.client_disconnected(self.alice)
        self.chat.client_disconnected(tab)
        self.broker.flush()
        self.assertEqual((self.alice.notifications(), tab.notifications()), ([], []))
        self.assertEqual(leftovers(self.chat), {})


class CleanupTests(ChatTestCase):
    options = {"history_size": 5}

    def test_thousand_cycles_leave_nothing_behind(self):
        """After 1000 join/send/read/leave/disconnect cycles no state or broker topic remains."""
        for n in range(1000):
            tab1, tab2, other = make_client(f"u{n % 7}"), make_client(f"u{n % 7}"), make_client("x")
            channel = f"c{n % 13}"
            call(self.chat, tab1, "join", channel=channel)
            call(self.chat, tab2, "join", channel=channel)
            call(self.chat, other, "join", channel=channel)
            call(self.chat, tab1, "join", channel={"n": n})
            call(self.chat, tab1, "send", channel=channel, body=n)
            call(self.chat, tab2, "read", channel=channel)
            call(self.chat, tab2, "leave", channel=channel)
            self.registry.client_disconnected(tab1)
            self.registry.client_disconnected(tab2)
            self.registry.client_disconnected(other)
        self.assertEqual(leftovers(self.chat), {})
        self.assertEqual(self.registry.broker.handlers, {})


class RegistryTests(ChatTestCase):
    def test_wired_through_a_registry(self):
        """Raw JSON frames reach the chat through a ServiceRegistry and answers come back."""
        self.registry.process_message_raw(
            self.alice,
            b'{"service": "chat", "message": {"command": "join", "params": {"channel": "lobby"}, "callId": 1}}',
        )
        self.registry.process_message_raw(
            self.alice,
            '{"service": "chat", "message": {"command": "send", "params": {"channel": "lobby", "body": "hi"}}}',
        )
        self.assertEqual(
            self.alice.sent,
            [
                {
                    "service": "chat",
                    "message": {
                        "type": "response",
                        "callId": 1,
                        "data": {"members": ["alice"], "presence": [{"identity": "alice", "info": {"name": "Alice"}}]},
                    },
                },
                {"service": "chat", "message": self.message("alice", "hi")},
                {"service": "chat", "message": {"type": "response", "data": None}},
            ],
        )

    def test_unknown_command(self):
        """A command the chat does not have answers Unknown command."""
        with expect_log(self, "unknown command", "INFO"):
            self.assertEqual(
                call_error(self.chat, self.alice, "publish", channel="x"), ("Unknown command", "unknown_command")
            )
