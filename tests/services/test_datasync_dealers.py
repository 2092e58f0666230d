"""DataSync dealers, filters and deltas, pure: matching, update transitions, validation, 0.1 names."""

import unittest

from snorky.services.datasync.dealers import (
    BadQuery,
    BroadcastDealer,
    Dealer,
    FilterDealer,
    SimpleDealer,
    filter_matches,
    get_field,
)
from snorky.services.datasync.delta import (
    DeletionDelta,
    Delta,
    InsertionDelta,
    UpdateDelta,
    parse_delta,
)
from snorky.services.datasync.filters import MAX_DEPTH, compile_filter
from snorky.services.datasync.managers.dealer import DealerManager, UnknownDealer, UnknownModelClass
from snorky.services.datasync.managers.subscription import SubscriptionManager
from snorky.services.datasync.subscription import Subscription, SubscriptionItem


class RecordingSubscription:
    """Stands where a Subscription is: records the deltas delivered to it."""

    def __init__(self):
        self.deltas = []

    def deliver_delta(self, delta):
        self.deltas.append(delta)


def item(query, dealer_name="d"):
    return SubscriptionItem(dealer_name, query, RecordingSubscription())


class PlayersByColor(SimpleDealer):
    name = "players_by_color"
    model = "Player"

    def get_key_for_model(self, model):
        return model["color"]


class PlayersFilter(FilterDealer):
    model = "Player"


class AllPlayers(BroadcastDealer):
    model = "Player"


class RedPlayers(Dealer):
    """A 0.1-style dealer implementing the three item methods itself."""

    model = "Player"

    def __init__(self):
        self.items = []

    def add_subscription_item(self, item):
        self.items.append(item)

    def remove_subscription_item(self, item):
        self.items.remove(item)

    def get_subscription_items_for_model(self, model):
        return (i for i in self.items if model.get("color") == "red")


ALICE_BLUE = {"id": 1, "name": "Alice", "color": "blue"}
ALICE_RED = {"id": 1, "name": "Alice", "color": "red"}
SUPERALICE_RED = {"id": 1, "name": "SuperAlice", "color": "red"}


class FilterOperatorTests(unittest.TestCase):
    def test_eq(self):
        """== matches an equal value only, with strict JSON types."""
        self.assertTrue(filter_matches({"color": "blue"}, ["==", "color", "blue"]))
        self.assertFalse(filter_matches({"color": "red"}, ["==", "color", "blue"]))
        self.assertFalse(filter_matches({"a": "1"}, ["==", "a", 1]))

    def test_eq_booleans_are_not_numbers(self):
        """true does not equal 1, nor false 0."""
        self.assertFalse(filter_matches({"a": True}, ["==", "a", 1]))
        self.assertFalse(filter_matches({"a": 0}, ["==", "a", False]))
        self.assertTrue(filter_matches({"a": True}, ["==", "a", True]))

    def test_eq_objects_and_null(self):
        """== compares objects, lists and null by value."""
        self.assertTrue(filter_matches({"a": {"x": [1]}}, ["==", "a", {"x": [1]}]))
        self.assertTrue(filter_matches({"a": None}, ["==", "a", None]))

    def test_ne(self):
        """!= matches a present field with another value, of any type."""
        self.assertTrue(filter_matches({"color": "red"}, ["!=", "color", "blue"]))
        self.assertFalse(filter_matches({"color": "blue"}, ["!=", "color", "blue"]))
        self.assertTrue(filter_matches({"a": "1"}, ["!=", "a", 1]))

    def test_ne_missing_field(self):
        """!= is false when the field is missing (unlike not ==)."""
        self.assertFalse(filter_matches({}, ["!=", "color", "blue"]))
        self.assertTrue(filter_matches({}, ["not", ["==", "color", "blue"]]))

    def test_lt(self):
        """< compares numbers."""
        self.assertEqual([filter_matches({"age": n}, ["<", "age", 21]) for n in (20, 21, 22)], [True, False, False])

    def test_lte(self):
        """<= compares numbers."""
        self.assertEqual([filter_matches({"age": n}, ["<=", "age", 21]) for n in (20, 21, 22)], [True, True, False])

    def test_gt(self):
        """> compares numbers."""
        self.assertEqual([filter_matches({"age": n}, [">", "age", 21]) for n in (20, 21, 22)], [False, False, True])

    def test_gte(self):
        """>= compares numbers, ints with floats too."""
        self.assertEqual([filter_matches({"age": n}, [">=", "age", 21]) for n in (20, 21.0, 22)], [False, True, True])

    def test_ordering_strings(self):
        """Orderings compare strings with strings."""
        self.assertTrue(filter_matches({"name": "alice"}, ["<", "name", "bob"]))
        self.assertFalse(filter_matches({"name": "carol"}, ["<=", "name", "bob"]))

    def test_ordering_type_mismatch_is_false(self):
        """A string compared with a number, or a boolean, or null, is false, not an error."""
        for op in ("<", "<=", ">", ">="):
            self.assertFalse(filter_matches({"age": "20"}, [op, "age", 21]))
            self.assertFalse(filter_matches({"age": 20}, [op, "age", "21"]))
            self.assertFalse(filter_matches({"age": True}, [op, "age", 0]))
            self.assertFalse(filter_matches({"age": None}, [op, "age", 0]))

    def test_missing_field_is_false(self):
        """Every comparison on a missing field is false."""
        for op in ("==", "!=", "<", "<=", ">", ">="):
            self.assertFalse(filter_matches({"other": 1}, [op, "age", 1]))

    def test_not(self):
        """not negates its filter."""
        self.assertFalse(filter_matches({"color": "blue"}, ["not", ["==", "color", "blue"]]))
        self.assertTrue(filter_matches({"color": "red"}, ["not", ["==", "color", "blue"]]))

    def test_and(self):
        """and matches when every filter matches."""
        f = ["and", [">=", "a", 3], ["<=", "a", 7]]
        self.assertEqual([filter_matches({"a": n}, f) for n in (2, 5, 8)], [False, True, False])

    def test_or(self):
        """or matches when any filter matches."""
        f = ["or", ["<", "a", 3], [">", "a", 7]]
        self.assertEqual([filter_matches({"a": n}, f) for n in (2, 5, 8)], [True, False, True])

    def test_nested(self):
        """Logical operators nest."""
        f = ["or", ["not", ["==", "service", "java"]], [">=", "severity", 3]]
        self.assertTrue(filter_matches({"service": "java", "severity": 3}, f))
        self.assertFalse(filter_matches({"service": "java", "severity": 1}, f))
        self.assertTrue(filter_matches({"service": "prosody", "severity": 1}, f))

    def test_dotted_path_walks_down(self):
        """A dotted field walks into nested objects (0.1 re-read the top level)."""
        f = ["==", "player.color", "blue"]
        self.assertTrue(filter_matches({"player": {"color": "blue"}}, f))
        self.assertFalse(filter_matches({"player": {"color": "red"}, "color": "blue"}, f))
        self.assertTrue(filter_matches({"a": {"b": {"c": 3}}}, [">", "a.b.c", 2]))

    def test_dotted_path_through_non_object(self):
        """A dotted path through a missing key, a string, a list or null is false."""
        f = ["==", "player.color", "blue"]
        for row in ({}, {"player": "blue"}, {"player": ["blue"]}, {"player": None}, "blue", None, [1]):
            self.assertFalse(filter_matches(row, f))


class FilterValidationTests(unittest.TestCase):
    def assertBad(self, query, text):
        with self.assertRaises(BadQuery) as caught:
            compile_filter(query)
        self.assertEqual(caught.exception.code, "invalid_query")
        self.assertIn(text, caught.exception.message)

    def test_not_a_list(self):
        """A filter that is not a list is refused."""
        self.assertBad("color", "must be a list, not str, at query")

    def test_empty(self):
        """An empty filter is refused."""
        self.assertBad([], "empty filter at query")

    def test_unknown_operator(self):
        """An unknown operator is refused, naming it and where it is."""
        self.assertBad(["and", ["=~", "a", "b"]], 'unknown operator "=~" at query[1][0]')

    def test_operator_not_a_string(self):
        """An operator that is not a string is refused."""
        self.assertBad([1, "a", 2], "unknown operator")

    def test_comparison_arity(self):
        """A comparison needs exactly a field and a value."""
        self.assertBad(["==", "a"], '"==" takes a field and a value, got 1 arguments')
        self.assertBad(["<", "a", 1, 2], '"<" takes a field and a value, got 3 arguments')

    def test_not_arity(self):
        """not takes exactly one filter."""
        self.assertBad(["not", ["==", "a", 1], ["==", "b", 1]], '"not" takes 1 filter, got 2')

    def test_and_or_arity(self):
        """and and or take at least one filter."""
        self.assertBad(["and"], '"and" takes at least 1 filter')
        self.assertBad(["or"], '"or" takes at least 1 filter')

    def test_field_not_a_string(self):
        """A field that is not a string is refused."""
        self.assertBad(["==", 3, 1], "field must be a string, not int, at query[1]")

    def test_field_with_empty_part(self):
        """A field with an empty dotted part is refused."""
        self.assertBad(["==", "a..b", 1], 'field "a..b" has an empty part')

    def test_ordering_value(self):
        """An ordering against something other than a number or a string is refused."""
        self.assertBad(["<", "a", None], '"<" compares with a number or a string, not null')
        self.assertBad([">=", "a", True], "not bool")

    def test_nested_subfilter_not_a_list(self):
        """A sub-filter of and that is not a list is refused with its position."""
        self.assertBad(["and", ["==", "a", 1], "b"], "must be a list, not str, at query[2]")

    def test_depth_limit(self):
        """Filters nested deeper than MAX_DEPTH are refused."""
        query = ["==", "a", 1]
        for _ in range(MAX_DEPTH):
            query = ["not", query]
        self.assertBad(query, "nested deeper")

    def test_compiled_filter_never_raises(self):
        """A compiled filter answers false on rows of any shape."""
        matches = compile_filter(["and", ["<", "a.b", 3], ["!=", "c", 1]])
        for row in (None, 1, "x", [], {"a": 1}, {"a": {"b": "z"}}, {"a": {"b": {}}}):
            self.assertFalse(matches(row))


class GetFieldTests(unittest.TestCase):
    def test_walks_dotted_path(self):
        """get_field follows a dotted path down the object."""
        self.assertEqual(get_field({"service": {"name": "x"}, "name": "y"}, "service.name"), "x")

    def test_missing_raises_key_error(self):
        """get_field raises KeyError for a missing step, as in 0.1."""
        with self.assertRaises(KeyError):
            get_field({"service": {}}, "service.name")


class UpdateTransitionTests(unittest.TestCase):
    """The 0.1 story: a client watching red players as Alice changes color and name."""

    def deliver(self, dealer, query, delta):
        watcher = item(query)
        dealer.add_subscription_item(watcher)
        dealer.deliver_delta(delta)
        return watcher.subscription.deltas

    def test_simple_insert_unrelated(self):
        """SimpleDealer: an insertion of another key reaches nobody."""
        self.assertEqual(self.deliver(PlayersByColor(), "red", InsertionDelta("Player", ALICE_BLUE)), [])

    def test_simple_update_becomes_insert(self):
        """SimpleDealer: blue -> red arrives as an insertion of the new row."""
        got = self.deliver(PlayersByColor(), "red", UpdateDelta("Player", ALICE_RED, ALICE_BLUE))
        self.assertEqual(got, [InsertionDelta("Player", ALICE_RED)])

    def test_simple_update_stays_update(self):
        """SimpleDealer: a rename while red arrives as the update."""
        delta = UpdateDelta("Player", SUPERALICE_RED, ALICE_RED)
        self.assertEqual(self.deliver(PlayersByColor(), "red", delta), [delta])

    def test_simple_update_becomes_delete(self):
        """SimpleDealer: red -> blue arrives as a deletion of the old row."""
        got = self.deliver(PlayersByColor(), "red", UpdateDelta("Player", ALICE_BLUE, ALICE_RED))
        self.assertEqual(got, [DeletionDelta("Player", ALICE_RED)])

    def test_simple_update_matching_neither(self):
        """SimpleDealer: blue -> green reaches nobody."""
        got = self.deliver(PlayersByColor(), "red", UpdateDelta("Player", {"color": "green"}, ALICE_BLUE))
        self.assertEqual(got, [])

    def test_simple_delete(self):
        """SimpleDealer: a deletion of a matching row arrives as the deletion."""
        delta = DeletionDelta("Player", ALICE_RED)
        self.assertEqual(self.deliver(PlayersByColor(), "red", delta), [delta])

    def test_filter_update_becomes_insert(self):
        """FilterDealer: a row entering the filter arrives as an insertion."""
        got = self.deliver(PlayersFilter(), ["==", "color", "red"], UpdateDelta("Player", ALICE_RED, ALICE_BLUE))
        self.assertEqual(got, [InsertionDelta("Player", ALICE_RED)])

    def test_filter_update_stays_update(self):
        """FilterDealer: a row staying in the filter arrives as the update."""
        delta = UpdateDelta("Player", SUPERALICE_RED, ALICE_RED)
        self.assertEqual(self.deliver(PlayersFilter(), ["==", "color", "red"], delta), [delta])

    def test_filter_update_becomes_delete(self):
        """FilterDealer: a row leaving the filter arrives as a deletion of the old row."""
        got = self.deliver(PlayersFilter(), ["==", "color", "red"], UpdateDelta("Player", ALICE_BLUE, ALICE_RED))
        self.assertEqual(got, [DeletionDelta("Player", ALICE_RED)])

    def test_filter_update_matching_neither(self):
        """FilterDealer: an update outside the filter reaches nobody."""
        delta = UpdateDelta("Player", {"color": "green"}, ALICE_BLUE)
        self.assertEqual(self.deliver(PlayersFilter(), ["==", "color", "red"], delta), [])

    def test_each_item_gets_its_own_transition(self):
        """Two items watching different colors see one update as a deletion and an insertion."""
        dealer = PlayersByColor()
        red, blue = item("red"), item("blue")
        dealer.add_subscription_item(red)
        dealer.add_subscription_item(blue)
        dealer.deliver_delta(UpdateDelta("Player", ALICE_BLUE, ALICE_RED))
        self.assertEqual(red.subscription.deltas, [DeletionDelta("Player", ALICE_RED)])
        self.assertEqual(blue.subscription.deltas, [InsertionDelta("Player", ALICE_BLUE)])

    def test_custom_dealer_returning_a_generator(self):
        """A Dealer subclass returning any iterable gets the same transitions."""
        got = self.deliver(RedPlayers(), None, UpdateDelta("Player", ALICE_BLUE, ALICE_RED))
        self.assertEqual(got, [DeletionDelta("Player", ALICE_RED)])


class DealerTests(unittest.TestCase):
    def test_name_defaults_to_class_name(self):
        """A dealer without a name is named after its class."""
        self.assertEqual(RedPlayers().name, "RedPlayers")

    def test_model_is_required_to_register(self):
        """A dealer without a model can be built, as in 0.1, but registering it says what is missing."""

        class NoModel(BroadcastDealer):
            pass

        dealer = NoModel()
        self.assertEqual(dealer.name, "NoModel")
        with self.assertRaisesRegex(NotImplementedError, "NoModel does not say which model"):
            DealerManager().register_dealer(dealer)

    def test_model_as_property(self):
        """model may be a property, as 0.1 allowed."""

        class Dynamic(BroadcastDealer):
            @property
            def model(self):
                return "Team"

        self.assertEqual(Dynamic().model, "Team")

    def test_broadcast_reaches_every_item(self):
        """BroadcastDealer hands every delta to every item, ignoring queries."""
        dealer = AllPlayers()
        items = [item(None), item("anything")]
        for i in items:
            dealer.add_subscription_item(i)
        dealer.deliver_delta(InsertionDelta("Player", ALICE_RED))
        self.assertEqual([len(i.subscription.deltas) for i in items], [1, 1])

    def test_broadcast_update_stays_update(self):
        """BroadcastDealer passes updates unchanged."""
        dealer, watcher = AllPlayers(), item(None)
        dealer.add_subscription_item(watcher)
        delta = UpdateDelta("Player", ALICE_RED, ALICE_BLUE)
        dealer.deliver_delta(delta)
        self.assertEqual(watcher.subscription.deltas, [delta])

    def test_simple_dealer_remove(self):
        """A removed item of a SimpleDealer gets nothing and leaves no key behind."""
        dealer, watcher = PlayersByColor(), item("red")
        dealer.add_subscription_item(watcher)
        dealer.remove_subscription_item(watcher)
        dealer.deliver_delta(InsertionDelta("Player", ALICE_RED))
        self.assertEqual((watcher.subscription.deltas, dealer.items_by_model_key), ([], {}))

    def test_removing_twice_is_harmless(self):
        """Removing an item that is not there again changes nothing."""
        for dealer, query in ((PlayersByColor(), "red"), (PlayersFilter(), ["==", "a", 1]), (AllPlayers(), None)):
            watcher = item(query)
            dealer.add_subscription_item(watcher)
            dealer.remove_subscription_item(watcher)
            dealer.remove_subscription_item(watcher)
            self.assertEqual(list(dealer.get_subscription_items_for_model({"color": "red", "a": 1})), [])

    def test_simple_dealer_refuses_unhashable_query(self):
        """SimpleDealer refuses a query that could never equal a key."""
        with self.assertRaises(BadQuery):
            PlayersByColor().validate_query({1, 2})

    def test_filter_dealer_refuses_bad_filter_on_add(self):
        """FilterDealer refuses a malformed filter when the item is added, keeping nothing."""
        dealer = PlayersFilter()
        with self.assertRaises(BadQuery):
            dealer.add_subscription_item(item(["==", "a"]))
        self.assertEqual(dealer.filters_by_item, {})

    def test_dealer_base_accepts_any_query(self):
        """The default validate_query accepts anything."""
        self.assertIsNone(RedPlayers().validate_query(object()))


class DealerManagerTests(unittest.TestCase):
    def test_unknown_dealer(self):
        """get_dealer raises UnknownDealer naming it, with code no_such_dealer."""
        with self.assertRaises(UnknownDealer) as caught:
            DealerManager().get_dealer("x")
        self.assertEqual((caught.exception.dealer_name, caught.exception.code), ("x", "no_such_dealer"))

    def test_dealers_for_model(self):
        """get_dealers_for_model_class returns the dealers serving a model."""
        manager, dealer = DealerManager(), PlayersByColor()
        manager.register_dealer(dealer)
        self.assertEqual(set(manager.get_dealers_for_model_class("Player")), {dealer})

    def test_disconnect_twice(self):
        """Disconnecting a subscription twice removes its items once."""
        manager, dealer = DealerManager(), PlayersByColor()
        manager.register_dealer(dealer)
        subscription = Subscription([item("red", "players_by_color")], None)
        manager.connect_subscription(subscription)
        manager.disconnect_subscription(subscription)
        manager.disconnect_subscription(subscription)
        self.assertEqual((dealer.items_by_model_key, subscription.items[0].dealer), ({}, None))

    def test_unknown_model(self):
        """get_dealers_for_model_class raises UnknownModelClass for a model nobody serves."""
        with self.assertRaises(UnknownModelClass):
            DealerManager().get_dealers_for_model_class("Team")

    def test_failing_dealer_does_not_stop_the_others(self):
        """A dealer that raises is logged; the other dealers of the model still deliver."""

        class Broken(BroadcastDealer):
            model = "Player"

            def get_subscription_items_for_model(self, model):
                raise RuntimeError("bug")

        class Working(BroadcastDealer):
            model = "Player"

        manager, watcher = DealerManager(), item(None, "Working")
        manager.register_dealer(Broken())
        manager.register_dealer(Working())
        manager.connect_subscription(Subscription([watcher], None))
        watcher.subscription = RecordingSubscription()
        with self.assertLogs("snorky", "ERROR"):
            manager.deliver_delta(InsertionDelta("Player", ALICE_RED))
        self.assertEqual(len(watcher.subscription.deltas), 1)

    def test_connect_rolls_back(self):
        """If one item is refused, the items already connected are removed."""
        manager = DealerManager()
        by_color = PlayersByColor()
        manager.register_dealer(by_color)
        manager.register_dealer(PlayersFilter())
        subscription = Subscription([item("red", "players_by_color"), item("bad", "PlayersFilter")], None)
        with self.assertRaises(BadQuery):
            manager.connect_subscription(subscription)
        self.assertEqual(by_color.items_by_model_key, {})


class DeltaTests(unittest.TestCase):
    def test_for_json(self):
        """Each delta type has 0.1's JSON form."""
        self.assertEqual(InsertionDelta("P", 1).for_json(), {"type": "insert", "model": "P", "data": 1})
        self.assertEqual(DeletionDelta("P", 1).for_json(), {"type": "delete", "model": "P", "data": 1})
        self.assertEqual(
            UpdateDelta("P", 2, 1).for_json(), {"type": "update", "model": "P", "newData": 2, "oldData": 1}
        )

    def test_parse_round_trip(self):
        """parse_delta reads back what for_json writes."""
        for delta in (InsertionDelta("P", {"a": 1}), UpdateDelta("P", {"a": 2}, {"a": 1}), DeletionDelta("P", [])):
            self.assertEqual(parse_delta(delta.for_json()), delta)

    def test_equality(self):
        """Deltas are equal when their JSON forms are."""
        self.assertEqual(InsertionDelta("P", 1), InsertionDelta("P", 1))
        self.assertNotEqual(InsertionDelta("P", 1), DeletionDelta("P", 1))
        self.assertNotEqual(InsertionDelta("P", 1), {"type": "insert", "model": "P", "data": 1})

    def test_base_class(self):
        """Delta is the common base and has no JSON form of its own."""
        self.assertTrue(issubclass(UpdateDelta, Delta))
        with self.assertRaises(NotImplementedError):
            Delta("P").for_json()


class SubscriptionManagerTests(unittest.TestCase):
    def test_register_twice(self):
        """A subscription that has a token cannot be registered again."""
        manager, subscription = SubscriptionManager(), Subscription([], None)
        manager.register_subscription(subscription)
        with self.assertRaises(RuntimeError):
            manager.register_subscription(subscription)

    def test_unregister_twice(self):
        """Unregistering twice forgets the token once and then does nothing."""
        manager, subscription = SubscriptionManager(), Subscription([], None)
        token = manager.register_subscription(subscription)
        manager.unregister_subscription(subscription)
        manager.unregister_subscription(subscription)
        self.assertEqual((manager.get_subscription_with_token(token), subscription.token), (None, None))

    def test_unlink_a_subscription_linked_elsewhere(self):
        """Unlinking a subscription whose client was set directly only forgets the client."""
        manager, subscription = SubscriptionManager(), Subscription([], None)
        subscription.got_client(object())
        manager.unlink_subscription_from_client(subscription)
        self.assertEqual((subscription.client, manager.subscriptions_by_client), (None, {}))


class SubscriptionTests(unittest.TestCase):
    def test_items_point_back(self):
        """A subscription's items refer to it."""
        items = [SubscriptionItem("d", 1), SubscriptionItem("d", 2)]
        subscription = Subscription(items, None)
        self.assertTrue(all(i.subscription is subscription for i in items))

    def test_got_client_twice(self):
        """A subscription cannot be given to a second client."""
        subscription = Subscription([], None)
        subscription.got_client(object())
        with self.assertRaises(RuntimeError):
            subscription.got_client(object())

    def test_reprs(self):
        """Items and subscriptions show their dealer, query and state."""
        subscription = Subscription([SubscriptionItem("players", ["==", "a", 1])], None)
        self.assertEqual(repr(subscription.items[0]), "<SubscriptionItem 'players' ['==', 'a', 1]>")
        self.assertEqual(repr(subscription), "<Subscription cancelled items=1>")
        subscription.token = "t"
        self.assertEqual(repr(subscription), "<Subscription awaiting items=1>")
        subscription.got_client(object())
        self.assertEqual(repr(subscription), "<Subscription acquired items=1>")

    def test_repr_hides_token(self):
        """The repr of a subscription does not show its secret token."""
        subscription = Subscription([], None)
        subscription.token = "secret-token"
        self.assertNotIn("secret", repr(subscription))
