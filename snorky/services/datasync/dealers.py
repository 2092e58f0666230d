"""Dealers: they decide which subscription items each delta reaches.

A dealer serves one model (``model``) under one name (``name``). The backend
authorizes subscription *items*, each naming a dealer and giving it a *query*;
the dealer keeps its items and, for every delta of its model, finds the items
whose query matches the row.

Three dealers are built in: :class:`BroadcastDealer` (every item gets every
delta), :class:`SimpleDealer` (the query equals a key computed from the row)
and :class:`FilterDealer` (the query is a filter, see
:mod:`snorky.services.datasync.filters`). Write your own by subclassing
:class:`SimpleDealer`, or :class:`Dealer` for full control.

.. versionadded:: 0.1
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from snorky.services.datasync.delta import DeletionDelta, Delta, InsertionDelta, UpdateDelta
from snorky.services.datasync.filters import BadQuery, Predicate, compile_filter, filter_matches, get_field
from snorky.types import MultiDict

if TYPE_CHECKING:
    from snorky.services.datasync.subscription import SubscriptionItem

__all__ = [
    "Dealer",
    "BroadcastDealer",
    "SimpleDealer",
    "FilterDealer",
    "BadQuery",
    "filter_matches",
    "get_field",
]

logger = logging.getLogger(__name__)


class Dealer(abc.ABC):
    """Matches the rows of deltas with the subscription items that want them.

    Subclasses define :attr:`model` (a class attribute is enough), optionally
    :attr:`name`, and the three item methods. :meth:`deliver_delta` does the
    rest, including turning updates into insertions or deletions.
    """

    @property
    def name(self) -> str:
        """The name subscription items use to pick this dealer (default: the class name)."""
        return type(self).__name__

    @property
    def model(self) -> str:
        """The name of the model whose deltas this dealer receives.

        Subclasses set it (a class attribute is enough). It is not abstract, so
        that a dealer without it can still be built, as in Snorky 0.1; registering
        one raises :exc:`NotImplementedError`.
        """
        raise NotImplementedError(f"{type(self).__name__} does not say which model it serves (set model)")

    def validate_query(self, query: Any) -> None:  # noqa: B027 - optional hook, not abstract
        """Refuse a query before any subscription is created (default: accept any).

        Raises:
            BadQuery: the query is malformed; its text is sent to the backend.

        .. versionadded:: 0.2
        """

    @abc.abstractmethod
    def add_subscription_item(self, item: SubscriptionItem) -> None:
        """Start matching deltas with ``item`` (called once it is authorized)."""

    @abc.abstractmethod
    def remove_subscription_item(self, item: SubscriptionItem) -> None:
        """Stop matching deltas with ``item`` (its subscription was cancelled)."""

    @abc.abstractmethod
    def get_subscription_items_for_model(self, model: Any) -> Iterable[SubscriptionItem]:
        """Return the items whose query matches the row ``model``.

        For an update it is called twice, with the old and the new row.
        """

    def deliver_delta(self, delta: Delta) -> None:
        """Send ``delta`` to the subscriptions of the items that match it.

        An insertion or a deletion goes to the items matching its row. An update
        goes, for each item, as an **insertion** of the new row if only the new
        row matches (the row came into view), as the **update** itself if both
        rows match, and as a **deletion** of the old row if only the old row
        matches (the row left the view); an item matching neither gets nothing.
        """
        if isinstance(delta, UpdateDelta):
            before = set(self.get_subscription_items_for_model(delta.old_data))
            after = set(self.get_subscription_items_for_model(delta.new_data))
            if not before and not after:
                return
            if after - before:
                insertion = InsertionDelta(delta.model, delta.new_data)
                for item in after - before:
                    item.subscription.deliver_delta(insertion)
            for item in before & after:
                item.subscription.deliver_delta(delta)
            if before - after:
                deletion = DeletionDelta(delta.model, delta.old_data)
                for item in before - after:
                    item.subscription.deliver_delta(deletion)
        else:
            for item in tuple(self.get_subscription_items_for_model(delta.data)):  # type: ignore[attr-defined]  # insertions and deletions (0.1: any delta but an update) have data
                item.subscription.deliver_delta(delta)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} model={self.model!r}>"


class BroadcastDealer(Dealer):
    """Every item receives every delta of the model; the query is ignored."""

    def __init__(self) -> None:
        self.items: set[SubscriptionItem] = set()
        """The items subscribed."""

    def add_subscription_item(self, item: SubscriptionItem) -> None:
        self.items.add(item)

    def remove_subscription_item(self, item: SubscriptionItem) -> None:
        self.items.discard(item)

    def get_subscription_items_for_model(self, model: Any) -> Iterable[SubscriptionItem]:
        return self.items


class SimpleDealer(Dealer):
    """An item receives the rows whose key equals its query.

    Subclasses define :meth:`get_key_for_model`, usually returning one field::

        class PlayersByColor(SimpleDealer):
            name = "players_by_color"
            model = "Player"

            def get_key_for_model(self, model):
                return model["color"]

    A row the key function cannot read (a ``KeyError``, ``IndexError`` or
    ``TypeError``, or an unhashable key) matches no item.
    """

    def __init__(self) -> None:
        self.items_by_model_key = MultiDict()
        """Query (a key value) -> the items with that query."""

    @abc.abstractmethod
    def get_key_for_model(self, model: Any) -> Any:
        """Return the key of the row ``model``; items whose query equals it match."""

    def validate_query(self, query: Any) -> None:
        """Refuse queries that could never equal a key (lists and objects are fine)."""
        try:
            hash(query)
        except TypeError:
            raise BadQuery(f"query must be a JSON value usable as a key, not {type(query).__name__}") from None

    def add_subscription_item(self, item: SubscriptionItem) -> None:
        self.items_by_model_key.add(item.query, item)

    def remove_subscription_item(self, item: SubscriptionItem) -> None:
        if self.items_by_model_key.in_set(item.query, item):
            self.items_by_model_key.remove(item.query, item)

    def get_subscription_items_for_model(self, model: Any) -> Iterable[SubscriptionItem]:
        try:
            return self.items_by_model_key.get_set(self.get_key_for_model(model))
        except (LookupError, TypeError):
            logger.debug("= %r: no key for a row of %r, it matches nothing", self, self.model)
            return ()


class FilterDealer(Dealer):
    """An item's query is a filter; it receives the rows the filter matches.

    Filters are checked once, when the item is added (see
    :mod:`snorky.services.datasync.filters`), so matching never fails.
    """

    def __init__(self) -> None:
        self.filters_by_item: dict[SubscriptionItem, Predicate] = {}
        """Item -> its compiled filter."""

    def validate_query(self, query: Any) -> None:
        """Refuse a malformed filter.

        Raises:
            BadQuery: naming the problem and where it is in the filter.
        """
        compile_filter(query)

    def add_subscription_item(self, item: SubscriptionItem) -> None:
        """Compile the item's filter and keep it.

        Raises:
            BadQuery: the filter is malformed; the item is not added.
        """
        self.filters_by_item[item] = compile_filter(item.query)

    def remove_subscription_item(self, item: SubscriptionItem) -> None:
        self.filters_by_item.pop(item, None)

    def get_subscription_items_for_model(self, model: Any) -> Iterable[SubscriptionItem]:
        return [item for item, matches in self.filters_by_item.items() if matches(model)]
