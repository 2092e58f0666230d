"""DealerManager: the dealers of one DataSync service, by name and by model.

.. versionadded:: 0.1
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from snorky.errors import UnknownDealer, UnknownModelClass
from snorky.types import MultiDict

if TYPE_CHECKING:
    from snorky.services.datasync.dealers import Dealer
    from snorky.services.datasync.delta import Delta
    from snorky.services.datasync.subscription import Subscription

__all__ = ["UnknownDealer", "UnknownModelClass", "DealerManager"]

logger = logging.getLogger(__name__)


class DealerManager:
    """The dealers registered in a service, and the routing of deltas to them."""

    __slots__ = ("dealers_by_name", "dealers_by_model")

    def __init__(self) -> None:
        self.dealers_by_name: dict[str, Dealer] = {}
        """Dealer name -> dealer."""
        self.dealers_by_model = MultiDict()
        """Model name -> the dealers serving it."""

    def register_dealer(self, dealer: Dealer) -> None:
        """Add ``dealer``.

        Raises:
            RuntimeError: another dealer has the same name.
        """
        name = dealer.name
        if name in self.dealers_by_name:
            raise RuntimeError(f"A dealer named {name!r} is already registered")
        self.dealers_by_name[name] = dealer
        self.dealers_by_model.add(dealer.model, dealer)

    def unregister_dealer(self, dealer: Dealer) -> None:
        """Remove ``dealer``; its subscriptions stop receiving deltas.

        Raises:
            KeyError: it is not registered.
        """
        del self.dealers_by_name[dealer.name]
        self.dealers_by_model.remove(dealer.model, dealer)

    def get_dealer(self, name: str) -> Dealer:
        """Return the dealer called ``name``.

        Raises:
            UnknownDealer: there is none.
        """
        try:
            return self.dealers_by_name[name]
        except (KeyError, TypeError):
            raise UnknownDealer(name) from None

    def get_dealers_for_model_class(self, model: str) -> Iterable[Dealer]:
        """Return the dealers serving ``model``.

        Raises:
            UnknownModelClass: there are none.
        """
        try:
            dealers: set[Dealer] = self.dealers_by_model[model]
        except KeyError:
            raise UnknownModelClass(model) from None
        return dealers

    def deliver_delta(self, delta: Delta) -> None:
        """Give ``delta`` to every dealer of its model.

        A dealer that fails is logged with its traceback; the others still run.

        Raises:
            UnknownModelClass: no dealer serves the delta's model (as in 0.1; a
                DataSync service ignores such deltas, since no subscriber can want them).
        """
        for dealer in tuple(self.get_dealers_for_model_class(delta.model)):
            try:
                dealer.deliver_delta(delta)
            except Exception:
                logger.exception("! %r failed to deliver %r", dealer, delta)

    def connect_subscription(self, subscription: Subscription) -> None:
        """Hand each item of ``subscription`` to its dealer; all of them or none.

        Raises:
            UnknownDealer: an item names no registered dealer.
            BadQuery: a dealer refused an item's query.

        Whatever it raises, the items it had added are removed again.
        """
        connected = []
        try:
            for item in subscription.items:
                dealer = self.get_dealer(item.dealer_name)
                dealer.add_subscription_item(item)
                item.dealer = dealer
                connected.append(item)
        except BaseException:
            for item in connected:
                self._disconnect_item(item)
            raise

    def disconnect_subscription(self, subscription: Subscription) -> None:
        """Take each item of ``subscription`` back from its dealer."""
        for item in subscription.items:
            self._disconnect_item(item)

    @staticmethod
    def _disconnect_item(item: object) -> None:
        dealer = getattr(item, "dealer", None)
        if dealer is not None:
            item.dealer = None  # type: ignore[attr-defined]  # checked by getattr above
            dealer.remove_subscription_item(item)
