"""DataSync row order, pure: versioned deltas older than one delivered are dropped and counted."""

import unittest

from snorky.services.datasync import DataSyncBackend, DataSyncService
from snorky.services.datasync.delta import InsertionDelta
from snorky.services.datasync.ordering import RowVersions
from tests.services.test_datasync import AllPlayers, PlayersByColor, PlayersFilter, deltas_of
from tests.utils import RecordingClient, call, call_error, call_refused


def player(color, level=1, id=1):
    return {"id": id, "color": color, "level": level}


def versioned(delta, version, key=1):
    return {**delta, "key": key, "version": version}


def insert(data, version=None, key=1):
    delta = {"type": "insert", "model": "Player", "data": data}
    return delta if version is None else versioned(delta, version, key)


def update(old, new, version=None, key=1):
    delta = {"type": "update", "model": "Player", "oldData": old, "newData": new}
    return delta if version is None else versioned(delta, version, key)


def delete(data, version=None, key=1):
    delta = {"type": "delete", "model": "Player", "data": data}
    return delta if version is None else versioned(delta, version, key)


class OrderingTestCase(unittest.TestCase):
    def setUp(self):
        self.frontend = DataSyncService("datasync", [PlayersByColor, PlayersFilter, AllPlayers])
        self.backend = DataSyncBackend("datasync", self.frontend)
        self.server = RecordingClient("app-server")

    def subscribe(self, *items):
        client = RecordingClient(f"client{len(items)}")
        token = call(self.backend, self.server, "authorizeSubscription", items=list(items))
        call(self.frontend, client, "acquireSubscription", token=token)
        return client

    def everything(self):
        return self.subscribe({"dealer": "all_players", "query": None})

    def color(self, color):
        return self.subscribe({"dealer": "players_by_color", "query": color})

    def publish(self, *deltas):
        call(self.backend, self.server, "publishDeltas", deltas=list(deltas))


class StaleDeltaTests(OrderingTestCase):
    def test_older_delta_is_dropped_and_counted(self):
        """An update older than one delivered for the same row is not applied over it."""
        page = self.everything()
        self.publish(update(player("red", 1), player("red", 3), version=30))
        self.publish(update(player("red", 1), player("red", 2), version=20))
        self.assertEqual([d["newData"]["level"] for d in deltas_of(page)], [3])
        self.assertEqual(self.frontend.stats(), {"stale_deltas": 1, "remembered_rows": 1, "forgotten_rows": 0})

    def test_rows_are_ordered_apart(self):
        """A version only orders the deltas of its own model and key."""
        page = self.everything()
        self.publish(update(player("red", 1, id=1), player("red", 2, id=1), version=30, key=1))
        self.publish(update(player("red", 1, id=2), player("red", 2, id=2), version=20, key=2))
        self.assertEqual(len(deltas_of(page)), 2)
        self.assertEqual(self.frontend.stats()["stale_deltas"], 0)

    def test_equal_version_is_delivered(self):
        """Two deltas of one row with the same version (one transaction) are both delivered, in order."""
        page = self.everything()
        self.publish(insert(player("red"), version=7), update(player("red"), player("red", 2), version=7))
        self.assertEqual([d["type"] for d in deltas_of(page)], ["insert", "update"])

    def test_newer_versions_are_delivered(self):
        """Deltas arriving in version order are delivered as they are."""
        page = self.everything()
        deltas = [
            insert(player("red"), version=1),
            update(player("red"), player("red", 2), version=2),
            delete(player("red", 2), version=3),
        ]
        self.publish(*deltas)
        self.assertEqual(deltas_of(page), [{k: v for k, v in d.items() if k not in ("key", "version")} for d in deltas])

    def test_unversioned_deltas_are_delivered_as_they_come(self):
        """Deltas without a version (Snorky 0.1's) are neither ordered nor remembered."""
        page = self.everything()
        self.publish(update(player("red", 1), player("red", 3)), update(player("red", 1), player("red", 2)))
        self.assertEqual([d["newData"]["level"] for d in deltas_of(page)], [3, 2])
        self.assertEqual(self.frontend.stats()["remembered_rows"], 0)

    def test_clients_never_see_key_and_version(self):
        """The delta a client receives has only the fields of Snorky 0.1."""
        page = self.everything()
        self.publish(insert(player("red"), version=5))
        self.assertEqual(deltas_of(page), [insert(player("red"))])

    def test_keys_may_be_any_json_value(self):
        """A key may be a string, a number or a JSON object (a composite key)."""
        page = self.everything()
        key = {"shard": 1, "id": [2, 3]}
        self.publish(insert(player("red"), version=9, key=key), insert(player("blue"), version=8, key=key))
        self.assertEqual([d["data"]["color"] for d in deltas_of(page)], ["red"])


class RoutingTests(OrderingTestCase):
    def test_late_move_out_still_leaves(self):
        """A row moved out of a query by a late delta leaves it: the newer delta is routed from what was sent."""
        red, blue, green = self.color("red"), self.color("blue"), self.color("green")
        self.publish(insert(player("red"), version=10))
        # v20 moved the row from red to blue, v30 from blue to green; v30 arrives first.
        self.publish(update(player("blue"), player("green"), version=30))
        self.publish(update(player("red"), player("blue"), version=20))
        self.assertEqual([d["type"] for d in deltas_of(red)], ["insert", "delete"])
        self.assertEqual(deltas_of(blue), [])
        self.assertEqual(deltas_of(green), [insert(player("green"))])

    def test_deletion_leaves_from_what_was_sent(self):
        """A deletion is routed by the row last delivered, not by the row it carries."""
        red = self.color("red")
        self.publish(insert(player("red"), version=10))
        self.publish(delete(player("blue"), version=30))  # an update to blue, v20, is still on its way
        self.publish(update(player("red"), player("blue"), version=20))
        self.assertEqual(deltas_of(red), [insert(player("red")), delete(player("red"))])

    def test_update_after_a_deletion_is_an_insertion(self):
        """A newer change of a row whose deletion was delivered arrives as an insertion (a key used again)."""
        page = self.everything()
        self.publish(delete(player("red"), version=10), update(player("red"), player("blue"), version=20))
        self.assertEqual(deltas_of(page), [delete(player("red")), insert(player("blue"))])

    def test_insertion_over_a_delivered_row_is_an_update(self):
        """A newer insertion of a delivered row is routed as an update from it."""
        red, blue = self.color("red"), self.color("blue")
        self.publish(insert(player("red"), version=10), insert(player("blue"), version=20))
        self.assertEqual(deltas_of(red), [insert(player("red")), delete(player("red"))])
        self.assertEqual(deltas_of(blue), [insert(player("blue"))])

    def test_deletion_after_a_deletion_is_delivered(self):
        """A second deletion of a row is delivered as it is."""
        page = self.everything()
        self.publish(delete(player("red"), version=10), delete(player("red"), version=11))
        self.assertEqual(len(deltas_of(page)), 2)


class MemoryTests(OrderingTestCase):
    def test_capacity_forgets_the_least_recently_changed_row(self):
        """Beyond its capacity the oldest row is forgotten (counted); its late deltas are delivered as they come."""
        self.frontend.versions.capacity = 2
        page = self.everything()
        for key in (1, 2, 3):
            self.publish(insert(player("red", id=key), version=10, key=key))
        self.assertEqual(self.frontend.stats(), {"stale_deltas": 0, "remembered_rows": 2, "forgotten_rows": 1})
        self.publish(insert(player("red", id=3), version=5, key=3))  # remembered: stale
        self.publish(insert(player("red", id=1), version=5, key=1))  # forgotten: delivered
        self.assertEqual([d["data"]["id"] for d in deltas_of(page)], [1, 2, 3, 1])
        self.assertEqual(self.frontend.stats()["stale_deltas"], 1)

    def test_forgets_rows_when_nobody_listens(self):
        """When the last subscription goes, deltas pass by unseen: the rows are forgotten."""
        page = self.everything()
        self.publish(insert(player("red"), version=10))
        self.frontend.client_disconnected(page)
        self.assertEqual(self.frontend.stats()["remembered_rows"], 0)

    def test_capacity_must_be_positive(self):
        """A capacity below one is refused."""
        with self.assertRaises(ValueError):
            RowVersions(0)

    def test_capacity_from_the_constructor(self):
        """DataSyncService(remembered_rows=...) sets the capacity (a configuration option)."""
        self.assertEqual(DataSyncService("datasync", remembered_rows=50).versions.capacity, 50)

    def test_admit_without_version(self):
        """RowVersions passes unversioned deltas through untouched."""
        delta = InsertionDelta("Player", player("red"))
        self.assertIs(RowVersions().admit(delta), delta)


class ValidationTests(OrderingTestCase):
    def test_version_must_be_a_non_negative_integer(self):
        """A version that is not a non-negative integer is invalid_delta, and nothing is delivered."""
        page = self.everything()
        for version in (-1, 1.5, "7", True, None):
            with self.subTest(version=version):
                error = call_error(
                    self.backend,
                    self.server,
                    "publishDeltas",
                    deltas=[insert(player("red")), versioned(insert(player("red")), version)],
                )
                self.assertEqual(error, ('Field "version" must be a non-negative integer in delta 1', "invalid_delta"))
        self.assertEqual(deltas_of(page), [])

    def test_version_needs_a_key(self):
        """A version without a key is invalid_delta."""
        delta = {**insert(player("red")), "version": 3}
        error = call_refused(self.backend, self.server, "publishDeltas", deltas=[delta])
        self.assertEqual(error, ("Missing field", "invalid_delta", 'Delta 0 has no "key"'))

    def test_a_key_without_version_is_ignored(self):
        """A key alone orders nothing."""
        page = self.everything()
        self.publish({**update(player("red"), player("blue")), "key": 1}, update(player("blue"), player("red")))
        self.assertEqual(len(deltas_of(page)), 2)
