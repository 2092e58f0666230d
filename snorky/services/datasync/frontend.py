"""DataSyncService: browsers acquire subscriptions and receive deltas.

Commands: ``acquireSubscription(token)``, ``cancelSubscription(token)``.
Acquired subscriptions receive ``{"type": "delta", "delta": {...}}``.

The application server authorizes subscriptions and publishes deltas through
:class:`~snorky.services.datasync.backend.DataSyncBackend` on the backend port;
code in the same process calls :meth:`DataSyncService.authorize_subscription`
and :meth:`DataSyncService.publish_deltas` directly.

Deltas travel through the broker: a publish on any node is one broker message
on :attr:`DataSyncService.deltas_topic`, and every node that holds
subscriptions runs its own dealers on it. A delta that carries its row's
``key`` and ``version`` is delivered only if no newer one of its row was
(:mod:`snorky.services.datasync.ordering`). Subscription tokens are still local to
the node that authorized them (see
:class:`~snorky.services.datasync.managers.subscription.SubscriptionManager`).

.. versionadded:: 0.1
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from snorky.brokers.base import then, topic_for
from snorky.errors import RPCError
from snorky.hashable import make_hashable
from snorky.protocol import Outbound
from snorky.services.datasync.dealers import BadQuery, Dealer
from snorky.services.datasync.delta import Delta, parse_deltas
from snorky.services.datasync.managers.dealer import DealerManager, UnknownDealer, UnknownModelClass
from snorky.services.datasync.managers.subscription import SubscriptionManager
from snorky.services.datasync.ordering import DEFAULT_CAPACITY, RowVersions
from snorky.services.datasync.subscription import Subscription, SubscriptionItem
from snorky.services.rpc import Request, RPCService, rpc_asynchronous, rpc_command
from snorky.timeout import TornadoTimeoutFactory

__all__ = ["DataSyncService", "DEFAULT_TIMEOUT_INTERVAL"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_INTERVAL = 120.0
"""Seconds an authorized subscription waits to be acquired before it is cancelled."""


def _check_token(token: Any) -> str:
    if not isinstance(token, str):
        raise RPCError("token must be string", "invalid_params")
    return token


def _parse_items(items: Any) -> list[tuple[str, Any]]:
    """Check the shape of authorized items; return ``(dealer name, query)`` pairs.

    The error texts are Snorky 0.1's; ``detail`` says which item.
    """
    if not isinstance(items, (list, tuple)):
        raise RPCError("Invalid params", "invalid_params", 'Field "items" must be a list')
    parsed = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise RPCError("Invalid params", "invalid_params", f"Item {index} must be an object")
        for field in ("dealer", "query"):
            if field not in item:
                raise RPCError(f"Missing field '{field}'", "invalid_params", f'Item {index} has no "{field}"')
        if not isinstance(item["dealer"], str):
            detail = f'Field "dealer" of item {index} must be a dealer name (a string)'
            raise RPCError("dealer should be a dealer name", "invalid_params", detail)
        parsed.append((item["dealer"], make_hashable(item["query"])))
    return parsed


class DataSyncService(RPCService):
    """Sends each client the deltas its subscriptions' dealers select.

    Args:
        name: the service's name.
        dealers: dealers to register, as classes (instantiated without
            arguments) or instances.
        remembered_rows: how many rows' last delivered version is kept, to
            drop a delta older than one delivered (``remembered_rows`` in
            the service's configuration).

    .. versionchanged:: 0.2
       ``remembered_rows``.
    """

    def __init__(
        self,
        name: str = "datasync",
        dealers: Iterable[Dealer | type[Dealer]] = (),
        remembered_rows: int = DEFAULT_CAPACITY,
    ) -> None:
        super().__init__(name)
        self.dm = DealerManager()
        """The dealers, by name and by model."""
        self.sm = SubscriptionManager()
        """The subscriptions, by token and by client."""
        self.versions = RowVersions(remembered_rows)
        """The last version delivered of recently changed rows (see :mod:`~snorky.services.datasync.ordering`)."""
        self._listening = False
        self._outbound_memo: dict[int, tuple[Delta, Outbound]] | None = None
        for dealer in dealers:
            self.register_dealer(dealer)

    @property
    def deltas_topic(self) -> str:
        """The broker topic deltas for this service travel on, shared by every node."""
        return topic_for(self.name, "__deltas__")

    @property
    def tokens_topic(self) -> str:
        """The broker topic where nodes tell one another of authorized and acquired tokens."""
        return topic_for(self.name, "__tokens__")

    def claim_key(self, token: str) -> str:
        """The broker key whose first setter acquires ``token``, cluster-wide."""
        return f"{self.name}:claim:{token}"

    def registered(self, registry: Any) -> None:
        """Listen for tokens authorized on other nodes, so that any node can hand them out."""
        self.broker.subscribe(self.tokens_topic, self._on_token_event)

    # Dealers -------------------------------------------------------------------

    def register_dealer(self, dealer: Dealer | type[Dealer] | str) -> Dealer:
        """Accept subscriptions for ``dealer``; return the instance.

        ``dealer`` is an instance, a class (instantiated here) or the dotted path
        of a class (as configuration files name them).

        Raises:
            RuntimeError: a dealer with the same name is registered already.
            ConfigError: a dotted path cannot be imported.
        """
        if isinstance(dealer, str):
            from snorky.config import load_class

            dealer = load_class(dealer)
        instance = dealer() if isinstance(dealer, type) else dealer
        self.dm.register_dealer(instance)
        logger.debug("= %r registered %r", self, instance)
        return instance

    def unregister_dealer(self, dealer: Dealer) -> None:
        """Stop accepting subscriptions for ``dealer`` (an instance, not a class).

        Subscriptions using it stay, but receive nothing more from it.
        """
        self.dm.unregister_dealer(dealer)

    # Python API ----------------------------------------------------------------

    def authorize_subscription(
        self,
        items: Any,
        timeout_interval: float = DEFAULT_TIMEOUT_INTERVAL,
        timeout_factory: Any = None,
    ) -> str:
        """Create a subscription for ``items`` and return the token a client acquires it with.

        Args:
            items: a list of ``{"dealer": name, "query": query}``.
            timeout_interval: seconds to wait for a client before cancelling it.
            timeout_factory: schedules the expiry (default:
                :data:`snorky.timeout.TornadoTimeoutFactory`).

        Raises:
            RPCError: ``invalid_params`` (a malformed item, naming the field),
                ``no_such_dealer`` or ``invalid_query``; nothing is created then.
        """
        token = self._create(items, timeout_interval, timeout_factory)
        event = {"event": "authorized", "token": token, "items": items, "timeout": timeout_interval}
        self._announce(event)
        return token

    def _create(self, items: Any, timeout_interval: float, timeout_factory: Any, token: str | None = None) -> str:
        """Validate ``items`` and create the subscription waiting for a client; return its token."""
        parsed = _parse_items(items)
        for index, (dealer_name, query) in enumerate(parsed):
            try:
                self.dm.get_dealer(dealer_name).validate_query(query)
            except UnknownDealer as error:
                raise RPCError(error.message, error.code, f"{error.detail} (item {index})") from None
            except BadQuery as error:
                raise RPCError("Invalid query", "invalid_query", f"Item {index}: {error.message}") from None

        subscription = Subscription([SubscriptionItem(name, query) for name, query in parsed], self)
        try:
            self.dm.connect_subscription(subscription)
        except BadQuery as error:  # raised by add_subscription_item, as 0.1 dealers do
            detail = None if error.message == "Invalid query" else error.message
            raise RPCError("Invalid query", "invalid_query", detail) from None
        token = self.sm.register_subscription(subscription, token)
        self._listen()
        factory = TornadoTimeoutFactory if timeout_factory is None else timeout_factory
        subscription._awaited_client_timeout = factory.call_later(timeout_interval, self._expire, subscription)
        logger.debug("= %r authorized %r", self, subscription)
        return token

    def _announce(self, event: dict[str, Any]) -> None:
        event["node"] = self.broker.node_id
        self.broker.publish(self.tokens_topic, Outbound({"service": self.name, "message": event}))

    def _on_token_event(self, topic: str, out: Outbound) -> None:
        """Another node authorized a token (keep a copy, buffering deltas) or a client acquired one."""
        event = out.value["message"]
        if event.get("node") == self.broker.node_id:
            return
        token = event.get("token")
        if event.get("event") == "authorized" and self.sm.get_subscription_with_token(token) is None:
            try:
                self._create(make_hashable(event["items"]), event["timeout"], None, token)
            except (RPCError, RuntimeError, KeyError, TypeError):
                logger.warning("! %r could not keep a copy of a token authorized elsewhere", self)
        elif event.get("event") == "acquired":
            subscription = self.sm.get_subscription_with_token(token)
            if subscription is not None and subscription.client is None:
                self.do_cancel_subscription(subscription)

    def publish_deltas(self, deltas: Any) -> None:
        """Check every delta, then send them all to their subscribers on every node.

        Args:
            deltas: a list of ``{"type": "insert" | "delete", "model", "data"}``
                and ``{"type": "update", "model", "newData", "oldData"}``,
                each optionally with its row's ``key`` and ``version``.

        Raises:
            RPCError: ``invalid_params`` or ``invalid_delta`` naming the bad
                delta and field; nothing is sent then.
        """
        parsed = parse_deltas(deltas)
        if not parsed:
            return
        body = {"type": "deltas", "deltas": [delta.for_broker() for delta in parsed]}
        self.broker.publish(self.deltas_topic, Outbound({"service": self.name, "message": body}))

    # Commands ------------------------------------------------------------------

    @rpc_command
    @rpc_asynchronous
    def acquireSubscription(self, req: Request, token: Any) -> Any:
        """Take the subscription of ``token``; deltas buffered for it follow the reply."""
        subscription = self.sm.get_subscription_with_token(_check_token(token))
        if subscription is None:
            raise RPCError("No such subscription", "no_such_subscription")
        if subscription.client is req.client:
            raise RPCError("Already subscribed", "already_subscribed")
        if subscription.client is not None:
            raise RPCError("No such subscription", "no_such_subscription")
        token = subscription.token

        def claimed(won: bool) -> None:
            if not won or subscription.token != token or subscription.client is not None:
                if subscription.token == token and subscription.client is None:
                    self.do_cancel_subscription(subscription)  # another node's client has it
                raise RPCError("No such subscription", "no_such_subscription")
            req.reply(None)
            logger.debug("= %r acquired %r", req.client, subscription)
            self.sm.link_subscription_to_client(subscription, req.client)
            self._announce({"event": "acquired", "token": token})

        claim = self.broker.kv_set(self.claim_key(token), self.broker.node_id.encode(), 3600, only_if_absent=True)
        return then(claim, claimed)

    @rpc_command
    def cancelSubscription(self, req: Request, token: Any) -> None:
        """Cancel a subscription the caller acquired."""
        subscription = self.sm.get_subscription_with_token(_check_token(token))
        if subscription is None or subscription.client is not req.client:
            raise RPCError("No such subscription", "no_such_subscription")
        self.do_cancel_subscription(subscription)

    # State -----------------------------------------------------------------------

    def do_cancel_subscription(self, subscription: Subscription) -> None:
        """Remove ``subscription`` everywhere: dealers, token, client, timeout, buffer."""
        subscription.cancel_timeout()
        self.dm.disconnect_subscription(subscription)
        if subscription.client is not None:
            if subscription.token is not None:
                self.in_background(self.broker.kv_delete(self.claim_key(subscription.token)))
            self.sm.unlink_subscription_from_client(subscription)
        self.sm.unregister_subscription(subscription)
        subscription._awaited_client_buffer.clear()
        if not self.sm.subscriptions_by_token:
            self._unlisten()

    def _expire(self, subscription: Subscription) -> None:
        subscription._awaited_client_timeout = None
        if subscription.client is None and subscription.token is not None:
            logger.info("= %r: a subscription expired before a client acquired it", self)
            self.do_cancel_subscription(subscription)

    def client_disconnected(self, client: Any) -> None:
        """Cancel every subscription ``client`` acquired."""
        for subscription in self.sm.subscriptions_of(client):
            self.do_cancel_subscription(subscription)

    # Delivery --------------------------------------------------------------------

    def _listen(self) -> None:
        if not self._listening:
            self._listening = True
            self.broker.subscribe(self.deltas_topic, self._on_deltas)

    def _unlisten(self) -> None:
        self._listening = False
        self.broker.unsubscribe(self.deltas_topic, self._on_deltas)
        self.versions.clear()  # deltas pass by unseen from now on

    def _on_deltas(self, topic: str, out: Outbound) -> None:
        try:
            deltas = parse_deltas(make_hashable(out.value["message"]["deltas"]))
        except (RPCError, KeyError, TypeError):
            logger.warning("! %r dropped a malformed deltas message from the broker", self)
            return
        logger.debug("< %d deltas for %r", len(deltas), self)
        self._outbound_memo = {}
        try:
            for delta in deltas:
                admitted = self.versions.admit(delta)
                if admitted is None:
                    continue
                try:
                    self.dm.deliver_delta(admitted)
                except UnknownModelClass:
                    pass  # no dealer serves its model here: nobody can want it
        finally:
            self._outbound_memo = None

    def stats(self) -> dict[str, int]:
        """This node's ordering counters: ``stale_deltas`` dropped, rows remembered and forgotten.

        .. versionadded:: 0.2
        """
        versions = self.versions
        return {
            "stale_deltas": versions.stale,
            "remembered_rows": len(versions.rows),
            "forgotten_rows": versions.forgotten,
        }

    def deliver_delta(self, client: Any, delta: Delta) -> None:
        """Send ``delta`` to ``client``; each delta is encoded once for all its receivers."""
        memo = self._outbound_memo
        if memo is None:
            out = self.outbound({"type": "delta", "delta": delta.for_json()})
        else:
            cached = memo.get(id(delta))
            if cached is None:
                out = self.outbound({"type": "delta", "delta": delta.for_json()})
                memo[id(delta)] = (delta, out)
            else:
                out = cached[1]
        self.deliver(client, out)
