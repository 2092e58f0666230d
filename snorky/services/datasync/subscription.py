"""Subscriptions: what the backend authorizes and a client later acquires.

A :class:`Subscription` is a set of :class:`SubscriptionItem` objects (each a
dealer name and a query) behind a secret token. Until a client acquires it,
deltas for it are kept and sent on acquisition; if nobody acquires it in time
it is cancelled.

.. versionadded:: 0.1
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from snorky.services.datasync.delta import Delta

__all__ = ["Subscription", "SubscriptionItem"]

logger = logging.getLogger(__name__)


class SubscriptionItem:
    """One dealer and the query given to it, part of a :class:`Subscription`.

    Args:
        dealer_name: the name of the dealer that matches deltas for this item.
        query: what the dealer matches rows against (its meaning is the dealer's).
        subscription: the subscription it belongs to (set by :class:`Subscription`).
    """

    __slots__ = ("dealer_name", "query", "subscription", "dealer")

    def __init__(self, dealer_name: str, query: Any, subscription: Subscription | None = None) -> None:
        self.dealer_name = dealer_name
        """The dealer's name."""
        self.query = query
        """The query, as authorized."""
        self.subscription: Any = subscription
        """The subscription this item belongs to."""
        self.dealer: Any = None  # the Dealer serving it (dealers import this module, not the other way)
        """The dealer holding this item while it is connected, else ``None``."""

    def __repr__(self) -> str:
        return f"<SubscriptionItem {self.dealer_name!r} {self.query!r:.60}>"


class Subscription:
    """A group of items that one client receives deltas for.

    Its states: *awaiting a client* (deltas are buffered and an expiry timeout
    runs), *acquired* (deltas go to :attr:`client`), and cancelled (no token).

    Args:
        items: the subscription's items; each one's ``subscription`` is set to this.
        service: the :class:`~snorky.services.datasync.frontend.DataSyncService`
            that sends the deltas.
    """

    __slots__ = ("token", "client", "items", "service", "_awaited_client_buffer", "_awaited_client_timeout")

    def __init__(self, items: Iterable[SubscriptionItem], service: Any) -> None:
        self.token: str | None = None
        """The secret token, while registered."""
        self.client: Any = None
        """The client that acquired it, if any."""
        self.service = service
        """The service delivering its deltas."""
        self.items = list(items)
        """The subscription's items."""
        for item in self.items:
            item.subscription = self
        self._awaited_client_buffer: list[Delta] = []
        self._awaited_client_timeout: Any = None

    def got_client(self, client: Any) -> None:
        """Give the subscription to ``client``, stop its expiry and send what was buffered.

        Raises:
            RuntimeError: it was acquired already.
        """
        if self.client is not None:
            raise RuntimeError("Subscription already linked to a client")
        self.client = client
        self.cancel_timeout()
        self.flush_awaited_client_buffer()

    def lost_client(self) -> None:
        """Forget the client; later deltas would be buffered again."""
        self.client = None

    def deliver_delta(self, delta: Delta) -> None:
        """Send ``delta`` to the client, or keep it until one acquires the subscription."""
        if self.client is not None:
            self.service.deliver_delta(self.client, delta)
        else:
            self._awaited_client_buffer.append(delta)

    def flush_awaited_client_buffer(self) -> None:
        """Send the buffered deltas, in order, and empty the buffer."""
        buffered, self._awaited_client_buffer = self._awaited_client_buffer, []
        if buffered:
            logger.debug("= sending %d buffered deltas to %r", len(buffered), self.client)
        for delta in buffered:
            self.deliver_delta(delta)

    def cancel_timeout(self) -> None:
        """Stop the expiry timeout, if one is pending."""
        timeout, self._awaited_client_timeout = self._awaited_client_timeout, None
        if timeout is not None:
            timeout.cancel()

    def __repr__(self) -> str:
        state = "acquired" if self.client is not None else "awaiting" if self.token else "cancelled"
        return f"<Subscription {state} items={len(self.items)}>"
