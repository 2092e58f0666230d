"""SubscriptionManager: the subscriptions of one node, by token and by client.

The token registry lives here alone, so that sharing tokens between nodes
means changing this class only.

.. versionadded:: 0.1
"""

from __future__ import annotations

import secrets
from typing import Any

from snorky.services.datasync.subscription import Subscription
from snorky.types import MultiDict

__all__ = ["SubscriptionManager", "TOKEN_BYTES"]

TOKEN_BYTES = 24
"""Random bytes in a token (192 bits, 32 URL-safe characters)."""


class SubscriptionManager:
    """Registered subscriptions: by their secret token, and by the client that acquired them."""

    __slots__ = ("subscriptions_by_token", "subscriptions_by_client")

    def __init__(self) -> None:
        self.subscriptions_by_token: dict[str, Subscription] = {}
        """Token -> subscription, acquired or not."""
        self.subscriptions_by_client = MultiDict()
        """Client -> the subscriptions it acquired."""

    @staticmethod
    def generate_token() -> str:
        """Return a new unguessable token (from :mod:`secrets`)."""
        return secrets.token_urlsafe(TOKEN_BYTES)

    def register_subscription(self, subscription: Subscription, token: str | None = None) -> str:
        """Give ``subscription`` a new token (or ``token``, one another node made) and keep it under it.

        Returns:
            The token.

        Raises:
            RuntimeError: it has a token already, or ``token`` is taken.
        """
        if subscription.token is not None:
            raise RuntimeError("This subscription already has a token")
        if token is not None and token in self.subscriptions_by_token:
            raise RuntimeError("This token is taken")
        if token is None:
            token = self.generate_token()
        while token in self.subscriptions_by_token:  # pragma: no cover - 2**-192
            token = self.generate_token()
        subscription.token = token
        self.subscriptions_by_token[token] = subscription
        return token

    def unregister_subscription(self, subscription: Subscription) -> None:
        """Forget ``subscription``'s token (its items stay with their dealers)."""
        if subscription.token is not None:
            self.subscriptions_by_token.pop(subscription.token, None)
            subscription.token = None

    def get_subscription_with_token(self, token: str) -> Subscription | None:
        """Return the subscription with ``token``, or ``None``."""
        return self.subscriptions_by_token.get(token)

    def link_subscription_to_client(self, subscription: Subscription, client: Any) -> None:
        """Let ``client`` acquire ``subscription``; buffered deltas are sent to it now."""
        self.subscriptions_by_client.add(client, subscription)
        subscription.got_client(client)

    def unlink_subscription_from_client(self, subscription: Subscription) -> None:
        """Take ``subscription`` away from its client."""
        client = subscription.client
        subscription.lost_client()
        if self.subscriptions_by_client.in_set(client, subscription):
            self.subscriptions_by_client.remove(client, subscription)

    def subscriptions_of(self, client: Any) -> list[Subscription]:
        """Return the subscriptions ``client`` acquired (a copy)."""
        return list(self.subscriptions_by_client.get_set(client))
