"""CursorsService, pure: documents, cursors, public handles, limits, hooks, cleanup."""

import unittest
from collections import deque

from snorky import ServiceRegistry
from snorky.brokers.memory import MemoryBroker
from snorky.services.cursors import Cursor, CursorsService
from tests.utils import InFlightBroker, RecordingClient, call, call_error, expect_log


def leftovers(service):
    """The service's containers that still hold something."""
    return {
        name: value for name, value in vars(service).items() if isinstance(value, (dict, set, list, deque)) and value
    }


class ScriptedRandom:
    """Stands in for random.Random: getrandbits returns the scripted values in turn."""

    def __init__(self, *values):
        self.values = list(values)

    def getrandbits(self, bits):
        return self.values.pop(0)


class Restricted(CursorsService):
    def can_join(self, client, document):
        return document != "secret"


class CursorsTestCase(unittest.TestCase):
    def setUp(self):
        self.cursors = CursorsService("cursors")
        self.registry = ServiceRegistry([self.cursors])
        self.alice, self.alice_laptop = RecordingClient("alice"), RecordingClient("alice")
        self.bob, self.charlie = RecordingClient("bob"), RecordingClient("charlie")
        for client in (self.alice, self.alice_laptop, self.bob):
            call(self.cursors, client, "join", document="Sheet1")
        call(self.cursors, self.charlie, "join", document="Sheet2")

    def create(self, client=None, handle=1, document="Sheet1", position=12, status="focused"):
        client = client or self.alice
        return call(
            self.cursors,
            client,
            "createCursor",
            privateHandle=handle,
            document=document,
            position=position,
            status=status,
        )

    def cursor(self, public, position=12, status="focused", owner="alice", document="Sheet1"):
        return {"publicHandle": public, "document": document, "position": position, "status": status, "owner": owner}

    def clear(self):
        for client in (self.alice, self.alice_laptop, self.bob, self.charlie):
            client.sent.clear()


class JoinTests(CursorsTestCase):
    def test_join_empty_document(self):
        """Joining a document without cursors replies with an empty list."""
        self.assertEqual(call(self.cursors, self.bob, "join", document="Sheet3"), {"cursors": []})

    def test_join_lists_existing_cursors(self):
        """Joining a document replies with the cursors already in it."""
        public = self.create()
        self.assertEqual(
            call(self.cursors, self.charlie, "join", document="Sheet1"), {"cursors": [self.cursor(public)]}
        )

    def test_join_twice(self):
        """Joining a document twice answers Already joined."""
        with expect_log(self, "Already joined", "INFO"):
            self.assertEqual(
                call_error(self.cursors, self.alice, "join", document="Sheet1"), ("Already joined", "already_joined")
            )

    def test_anonymous_join(self):
        """An anonymous client cannot join: Not authenticated."""
        self.assertEqual(
            call_error(self.cursors, RecordingClient(None), "join", document="Sheet1"),
            ("Not authenticated", "not_authenticated"),
        )

    def test_can_join_refuses(self):
        """can_join refusing answers Not authorized and joins nothing."""
        cursors = Restricted("cursors")
        self.assertEqual(call_error(cursors, self.alice, "join", document="secret"), ("Not authorized", "forbidden"))
        self.assertEqual(leftovers(cursors), {})
        self.assertEqual(cursors.broker.handlers, {})

    def test_can_join_allows(self):
        """can_join accepting lets the client in."""
        self.assertEqual(call(Restricted("cursors"), self.alice, "join", document="public"), {"cursors": []})


class CreateTests(CursorsTestCase):
    def test_create_notifies_the_others(self):
        """A new cursor is announced to every other client in the document, the owner's other tabs too."""
        public = self.create()
        self.assertIsInstance(public, int)
        expected = [{"type": "cursorAdded", "cursor": self.cursor(public)}]
        self.assertEqual((self.bob.notifications(), self.alice_laptop.notifications()), (expected, expected))
        self.assertEqual((self.alice.notifications(), self.charlie.notifications()), ([], []))

    def test_create_not_joined(self):
        """Creating a cursor in a document not joined answers Not joined."""
        self.assertEqual(
            call_error(
                self.cursors, self.alice, "createCursor", privateHandle=1, document="Sheet2", position=0, status=None
            ),
            ("Not joined", "not_joined"),
        )
        self.assertEqual(self.charlie.notifications(), [])

    def test_reused_handle(self):
        """Creating a cursor with a private handle in use answers Reused handle."""
        self.create()
        call(self.cursors, self.alice, "join", document="Sheet2")
        self.assertEqual(
            call_error(
                self.cursors, self.alice, "createCursor", privateHandle=1, document="Sheet2", position=0, status=None
            ),
            ("Reused handle", "reused_handle"),
        )

    def test_private_handles_are_per_client(self):
        """Two clients may use the same private handle."""
        self.create(self.alice, 1)
        self.create(self.bob, 1)
        self.assertEqual(len(self.cursors.cursors_by_document["Sheet1"]), 2)

    def test_too_many_cursors(self):
        """A client's 17th cursor answers Too many cursors; its other tab may still create."""
        for handle in range(16):
            self.create(handle=handle)
        with expect_log(self, "Too many cursors", "INFO"):
            self.assertEqual(
                call_error(
                    self.cursors, self.alice, "createCursor", privateHandle=16, document="Sheet1", position=0, status=0
                ),
                ("Too many cursors", "too_many_cursors"),
            )
        self.create(self.alice_laptop, handle=1)

    def test_max_cursors_counts_every_document(self):
        """max_cursors limits a client's cursors over all documents."""
        cursors, alice = CursorsService("cursors", max_cursors=2), RecordingClient("alice")
        for document in ("a", "b"):
            call(cursors, alice, "join", document=document)
        call(cursors, alice, "createCursor", privateHandle=1, document="a", position=0, status=0)
        call(cursors, alice, "createCursor", privateHandle=2, document="b", position=0, status=0)
        self.assertEqual(
            call_error(cursors, alice, "createCursor", privateHandle=3, document="b", position=0, status=0)[1],
            "too_many_cursors",
        )

    def test_negative_max_cursors(self):
        """A negative max_cursors is a ValueError."""
        with self.assertRaises(ValueError):
            CursorsService("cursors", max_cursors=-1)

    def test_public_handles_unique_per_document(self):
        """A public handle already used in the document is drawn again (0.1 checked private handles)."""
        self.cursors.random = ScriptedRandom(5, 5, 9)
        self.assertEqual(self.create(self.alice, handle=5), 5)
        self.assertEqual(self.create(self.bob, handle=1), 9)

    def test_public_handles_may_repeat_across_documents(self):
        """Cursors in different documents may share a public handle."""
        self.cursors.random = ScriptedRandom(5, 5)
        call(self.cursors, self.alice, "join", document="Sheet2")
        self.assertEqual(self.create(handle=1), 5)
        self.assertEqual(self.create(handle=2, document="Sheet2"), 5)

    def test_public_handles_fit_an_int32(self):
        """Real public handles are non-negative numbers below 2**31."""
        handles = [self.create(handle=n) for n in range(16)]
        self.assertTrue(all(0 <= handle < 2**31 for handle in handles))
        self.assertEqual(len(set(handles)), 16)

    def test_create_without_status(self):
        """createCursor without every parameter answers Invalid params."""
        with expect_log(self, "Invalid params"):
            self.assertEqual(
                call_error(self.cursors, self.alice, "createCursor", privateHandle=1, document="Sheet1", position=0)[1],
                "invalid_params",
            )


class UpdateTests(CursorsTestCase):
    def test_update_position_and_status(self):
        """updateCursor changes both fields and announces cursorUpdated to the others."""
        public = self.create()
        self.clear()
        self.assertIsNone(
            call(
                self.cursors, self.alice, "updateCursor", privateHandle=1, newData={"position": 13, "status": "writing"}
            )
        )
        expected = [{"type": "cursorUpdated", "cursor": self.cursor(public, 13, "writing")}]
        self.assertEqual((self.bob.notifications(), self.alice_laptop.notifications()), (expected, expected))
        self.assertEqual((self.alice.notifications(), self.charlie.notifications()), ([], []))

    def test_update_position_only(self):
        """A newData with only position keeps the status."""
        public = self.create()
        call(self.cursors, self.alice, "updateCursor", privateHandle=1, newData={"position": 40})
        self.assertEqual(self.bob.notifications()[-1]["cursor"], self.cursor(public, 40, "focused"))

    def test_update_status_only(self):
        """A newData with only status keeps the position; other keys are ignored."""
        public = self.create()
        call(self.cursors, self.alice, "updateCursor", privateHandle=1, newData={"status": "idle", "owner": "eve"})
        self.assertEqual(self.bob.notifications()[-1]["cursor"], self.cursor(public, 12, "idle"))

    def test_update_unknown(self):
        """Updating a cursor the caller does not have answers No such cursor."""
        self.create(self.bob, handle=15)
        self.assertEqual(
            call_error(self.cursors, self.alice, "updateCursor", privateHandle=15, newData={"position": 2}),
            ("No such cursor", "no_such_cursor"),
        )

    def test_update_with_non_object(self):
        """A newData that is not an object answers Invalid params."""
        self.create()
        self.assertEqual(
            call_error(self.cursors, self.alice, "updateCursor", privateHandle=1, newData="position"),
            ("Invalid params", "invalid_params"),
        )


class RemoveTests(CursorsTestCase):
    def test_remove_notifies_the_others(self):
        """removeCursor announces cursorRemoved with its public handle and document."""
        public = self.create()
        self.clear()
        self.assertIsNone(call(self.cursors, self.alice, "removeCursor", privateHandle=1))
        expected = [{"type": "cursorRemoved", "cursor": {"publicHandle": public, "document": "Sheet1"}}]
        self.assertEqual((self.bob.notifications(), self.alice_laptop.notifications()), (expected, expected))
        self.assertEqual((self.alice.notifications(), self.charlie.notifications()), ([], []))
        self.assertEqual(call(self.cursors, self.charlie, "join", document="Sheet1"), {"cursors": []})

    def test_remove_unknown(self):
        """Removing a cursor the caller does not have answers No such cursor."""
        with expect_log(self, "No such cursor", "INFO"):
            self.assertEqual(
                call_error(self.cursors, self.alice, "removeCursor", privateHandle=15),
                ("No such cursor", "no_such_cursor"),
            )

    def test_removed_handle_can_be_reused(self):
        """A private handle is free again once its cursor is removed."""
        self.create()
        call(self.cursors, self.alice, "removeCursor", privateHandle=1)
        self.create()


class LeaveTests(CursorsTestCase):
    def setUp(self):
        super().setUp()
        call(self.cursors, self.alice, "join", document="Sheet2")
        self.public1 = self.create(handle=1)
        self.public2 = self.create(handle=2, document="Sheet2")
        self.clear()

    def removed(self, public, document):
        return {"type": "cursorRemoved", "cursor": {"publicHandle": public, "document": document}}

    def test_leave_removes_cursors_in_that_document(self):
        """Leaving a document removes the caller's cursors there, and only there."""
        self.assertIsNone(call(self.cursors, self.alice, "leave", document="Sheet1"))
        expected = [self.removed(self.public1, "Sheet1")]
        self.assertEqual((self.bob.notifications(), self.alice_laptop.notifications()), (expected, expected))
        self.assertEqual((self.alice.notifications(), self.charlie.notifications()), ([], []))
        self.assertEqual(list(self.cursors.cursors_by_client[self.alice]), [2])

    def test_nothing_after_leave(self):
        """After leaving, a client receives no more notifications of the document."""
        call(self.cursors, self.bob, "leave", document="Sheet1")
        call(self.cursors, self.alice, "updateCursor", privateHandle=1, newData={"position": 1})
        self.assertEqual(self.bob.notifications(), [])

    def test_leave_not_joined(self):
        """Leaving a document not joined answers Not joined."""
        self.assertEqual(call_error(self.cursors, self.alice, "leave", document="Sheet3"), ("Not joined", "not_joined"))

    def test_disconnect_removes_every_cursor(self):
        """A disconnect removes the client's cursors in every document, with notifications."""
        self.registry.client_disconnected(self.alice)
        self.assertEqual(self.bob.notifications(), [self.removed(self.public1, "Sheet1")])
        self.assertEqual(self.alice_laptop.notifications(), [self.removed(self.public1, "Sheet1")])
        self.assertEqual(self.charlie.notifications(), [self.removed(self.public2, "Sheet2")])
        self.assertEqual(self.alice.notifications(), [])
        self.assertNotIn(self.alice, self.cursors.cursors_by_client)
        self.assertNotIn(self.alice, self.cursors.documents_by_client)

    def test_everyone_gone_leaves_nothing(self):
        """Once every client disconnected, no state or broker topic remains."""
        for client in (self.alice, self.alice_laptop, self.bob, self.charlie, RecordingClient(None)):
            self.registry.client_disconnected(client)
        self.assertEqual(leftovers(self.cursors), {})
        self.assertEqual(self.registry.broker.handlers, {})


class CursorTests(unittest.TestCase):
    def test_for_json(self):
        """A Cursor's JSON form names its owner by identity, as in 0.1."""
        cursor = Cursor(1, 7, "doc", 3, "idle", RecordingClient("alice"))
        self.assertEqual(
            cursor.for_json(), {"publicHandle": 7, "document": "doc", "position": 3, "status": "idle", "owner": "alice"}
        )
        self.assertEqual(repr(cursor), "<Cursor 7 in 'doc'>")


class BrokerTests(unittest.TestCase):
    def test_notifications_reach_other_nodes(self):
        """Cursor notifications reach a document's clients on another node."""
        broker = MemoryBroker()
        node_a, node_b = CursorsService("cursors"), CursorsService("cursors")
        ServiceRegistry([node_a], broker=broker)
        ServiceRegistry([node_b], broker=broker)
        alice, bob = RecordingClient("alice"), RecordingClient("bob")
        call(node_a, alice, "join", document="doc")
        call(node_b, bob, "join", document="doc")
        public = call(node_a, alice, "createCursor", privateHandle=1, document="doc", position=0, status=0)
        node_a.client_disconnected(alice)
        self.assertEqual([body["type"] for body in bob.notifications()], ["cursorAdded", "cursorRemoved"])
        self.assertEqual(bob.notifications()[1]["cursor"]["publicHandle"], public)
        self.assertEqual(set(broker.handlers), {'cursors:"doc"'})


class LateDeliveryTests(unittest.TestCase):
    def test_notifications_after_last_leave_are_dropped(self):
        """Notifications arriving after the node's last client left the document are dropped."""
        broker = InFlightBroker()
        cursors, alice, bob = CursorsService("cursors"), RecordingClient("alice"), RecordingClient("bob")
        ServiceRegistry([cursors], broker=broker)
        call(cursors, alice, "join", document="doc")
        call(cursors, bob, "join", document="doc")
        call(cursors, alice, "createCursor", privateHandle=1, document="doc", position=0, status=0)
        cursors.client_disconnected(bob)
        cursors.client_disconnected(alice)
        broker.flush()
        self.assertEqual((alice.notifications(), bob.notifications()), ([], []))
        self.assertEqual(leftovers(cursors), {})


class CleanupTests(unittest.TestCase):
    def test_thousand_cycles_leave_nothing_behind(self):
        """After 1000 join/create/update/leave/disconnect cycles no state or broker topic remains."""
        cursors = CursorsService("cursors")
        registry = ServiceRegistry([cursors])
        for n in range(1000):
            one, two = RecordingClient(f"u{n % 5}"), RecordingClient("other")
            document = f"doc{n % 11}"
            for client in (one, two):
                call(cursors, client, "join", document=document)
            call(cursors, one, "join", document={"n": n})
            call(cursors, one, "createCursor", privateHandle=1, document=document, position=n, status="a")
            call(cursors, one, "createCursor", privateHandle=2, document={"n": n}, position=n, status="b")
            call(cursors, two, "createCursor", privateHandle=1, document=document, position=n, status="c")
            call(cursors, one, "updateCursor", privateHandle=1, newData={"position": -n})
            call(cursors, two, "removeCursor", privateHandle=1)
            call(cursors, two, "createCursor", privateHandle=3, document=document, position=0, status=0)
            call(cursors, two, "leave", document=document)
            registry.client_disconnected(one)
            registry.client_disconnected(two)
        self.assertEqual(leftovers(cursors), {})
        self.assertEqual(registry.broker.handlers, {})


class RegistryTests(CursorsTestCase):
    def test_wired_through_a_registry(self):
        """Raw JSON frames reach the service through a ServiceRegistry and notifications come back."""
        self.cursors.random = ScriptedRandom(42)
        self.registry.process_message_raw(
            self.alice,
            b'{"service": "cursors", "message": {"command": "createCursor", "callId": "c1",'
            b' "params": {"privateHandle": 1, "document": "Sheet1", "position": [1, 2], "status": null}}}',
        )
        self.assertEqual(
            self.alice.sent[-1], {"service": "cursors", "message": {"type": "response", "callId": "c1", "data": 42}}
        )
        self.assertEqual(
            self.bob.sent[-1],
            {"service": "cursors", "message": {"type": "cursorAdded", "cursor": self.cursor(42, [1, 2], None)}},
        )
