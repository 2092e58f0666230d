"""DataSyncBackend: the application server authorizes subscriptions and publishes deltas.

Commands: ``authorizeSubscription(items)`` answers a token string;
``publishDeltas(deltas)`` sends deltas to the subscribers on every node. It is
registered in the backend registry, which only trusted servers reach.

.. versionadded:: 0.1
"""

from __future__ import annotations

from typing import Any

from snorky.services.datasync.frontend import DEFAULT_TIMEOUT_INTERVAL, DataSyncService
from snorky.services.rpc import Request, RPCService, rpc_command
from snorky.timeout import TornadoTimeoutFactory

__all__ = ["DataSyncBackend"]


class DataSyncBackend(RPCService):
    """The backend side of a :class:`~snorky.services.datasync.frontend.DataSyncService`.

    Args:
        name: this service's name in the backend registry.
        frontend: the service browsers acquire subscriptions from.
        timeout_interval: seconds an authorized subscription waits to be
            acquired before it is cancelled.
        timeout_factory: schedules that expiry (default:
            :data:`snorky.timeout.TornadoTimeoutFactory`); tests pass one they drive.
    """

    def __init__(
        self,
        name: str,
        frontend: DataSyncService,
        timeout_interval: float = DEFAULT_TIMEOUT_INTERVAL,
        timeout_factory: Any = None,
    ) -> None:
        super().__init__(name)
        self.frontend = frontend
        """The frontend service."""
        self.timeout_interval = timeout_interval
        """Seconds before an unacquired subscription is cancelled."""
        self.timeout_factory = timeout_factory if timeout_factory is not None else TornadoTimeoutFactory
        """What schedules the expiry."""

    @rpc_command
    def authorizeSubscription(self, req: Request, items: Any) -> str:
        """Authorize a subscription to ``items``; answer the token a browser acquires it with.

        ``items`` is a list of ``{"dealer": name, "query": query}``.
        """
        return self.frontend.authorize_subscription(items, self.timeout_interval, self.timeout_factory)

    @rpc_command
    def publishDeltas(self, req: Request, deltas: Any) -> None:
        """Check ``deltas`` (all or nothing), then send them to every matching subscription."""
        self.frontend.publish_deltas(deltas)
