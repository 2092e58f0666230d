"""ControlService: server control for the backend port, as Centrifugo's server API offers.

Register it in the *backend* registry, pointing at the public one::

    backend.register_service(ControlService("control", frontend=registry))

Commands: ``disconnect(identity)``, ``unsubscribe(identity, service, channel)``,
``presence(service, channel)`` and ``info()``. A service takes part in
``unsubscribe`` and ``presence`` by implementing ``unsubscribe_identity(identity,
channel) -> int`` and ``presence(channel) -> list`` (or ``channel_presence(channel)``,
for a service whose ``presence`` is a client command, as PubSub's is);
``channel_count() -> int`` adds it to ``info``, and so does ``stats() -> dict`` (a
service's counters).
"""

from __future__ import annotations

import logging
from typing import Any

from snorky.brokers.base import then, topic_for
from snorky.errors import CLOSE_DISCONNECTED, RPCError
from snorky.protocol import Outbound
from snorky.services.rpc import Request, RPCService, rpc_command
from snorky.services.service import Registry
from snorky.version import __version__

__all__ = ["ControlService"]

logger = logging.getLogger(__name__)


class ControlService(RPCService):
    """Acts on the clients and services of the ``frontend`` registry.

    Args:
        name: this service's name in the backend registry.
        frontend: the public registry to control.
    """

    def __init__(self, name: str = "control", frontend: Registry | None = None) -> None:
        super().__init__(name)
        if frontend is None:
            raise ValueError("ControlService needs the frontend registry")
        self.frontend = frontend
        self.broker = frontend.broker

    def _service(self, name: Any, method: str) -> Any:
        service = self.frontend.registered_services.get(name) if isinstance(name, str) else None
        if service is None:
            raise RPCError("Unknown service", "unknown_service")
        function = getattr(service, method, None)
        if function is None:
            raise RPCError(f"Service {name} does not support {method}", "unsupported")
        return function

    # Acting on every node: each command acts here and is announced to the others. ----

    @property
    def topic(self) -> str:
        """The broker topic that carries control actions to every node."""
        return topic_for(self.name, "__control__")

    def registered(self, registry: Any) -> None:
        """Listen for actions taken on other nodes."""
        self.broker.subscribe(self.topic, self._on_action)

    def _announce(self, action: dict[str, Any]) -> None:
        action["node"] = self.broker.node_id
        self.broker.publish(self.topic, Outbound({"service": self.name, "message": action}))

    def _on_action(self, topic: str, out: Outbound) -> None:
        action = out.value["message"]
        if action.get("node") == self.broker.node_id:
            return
        if action.get("action") == "disconnect":
            self._disconnect_here(action["identity"])
        elif action.get("action") == "unsubscribe":
            service = self.frontend.registered_services.get(action["service"])
            if service is not None and hasattr(service, "unsubscribe_identity"):
                self.in_background(service.unsubscribe_identity(action["identity"], action["channel"]))

    def _disconnect_here(self, identity: Any) -> int:
        clients = [c for c in self.frontend.clients if c.identity == identity]
        for client in clients:
            client.close(CLOSE_DISCONNECTED)
        if clients:
            logger.info("= disconnected %d connection(s) of %r", len(clients), identity)
        return len(clients)

    def disconnect_identity(self, identity: Any) -> int:
        """Close every connection of ``identity``, on every node, with code 4004.

        Returns how many connections this node closed (the other nodes close theirs
        as the action reaches them through the broker).
        """
        count = self._disconnect_here(identity)
        self._announce({"action": "disconnect", "identity": identity})
        return count

    @rpc_command
    def disconnect(self, req: Request, identity: Any) -> dict[str, int]:
        """Close every connection of ``identity``, on every node, with code 4004.

        Replies ``{"disconnected": n}``: how many connections this node closed
        (the other nodes close theirs as the action reaches them).
        """
        return {"disconnected": self.disconnect_identity(identity)}

    @rpc_command
    def unsubscribe(self, req: Request, identity: Any, service: str, channel: Any) -> dict[str, int]:
        """Remove ``identity`` from ``channel`` of ``service`` on every node.

        Replies ``{"unsubscribed": n}``: this node's connections that left it.
        """
        count = self._service(service, "unsubscribe_identity")(identity, channel)
        self._announce({"action": "unsubscribe", "identity": identity, "service": service, "channel": channel})
        return {"unsubscribed": count}

    @rpc_command
    def presence(self, req: Request, service: str, channel: Any) -> list[dict[str, Any]]:
        """Who is in ``channel`` of ``service``: ``[{"identity", "info", "connections"}]``."""
        found = self.frontend.registered_services.get(service) if isinstance(service, str) else None
        method = "channel_presence" if hasattr(found, "channel_presence") else "presence"
        result: list[dict[str, Any]] = self._service(service, method)(channel)
        return result

    @rpc_command
    def info(self, req: Request) -> Any:
        """Server facts: version, the live nodes, and this node's connections, identities,
        services with their channel counts, broker counters and, with limits, how many
        times each limit refused something."""
        services = {}
        for name, service in self.frontend.registered_services.items():
            entry: dict[str, Any] = {"class": type(service).__name__}
            count = service.channel_count()
            if count is not None:
                entry["channels"] = count
            stats = service.stats()
            if stats is not None:
                entry["stats"] = stats
            services[name] = entry
        clients = self.frontend.clients
        facts: dict[str, Any] = {
            "version": __version__,
            "node": self.broker.node_id,
            "connections": len(clients),
            "identities": len({c.identity for c in clients if c.identity is not None}),
            "services": services,
            "broker": self.frontend.broker.stats(),
        }
        limiter = self.frontend.limiter
        if limiter is not None:
            facts["limits"] = dict(limiter.hits)
        return then(self.broker.nodes(), lambda nodes: {**facts, "nodes": nodes})
