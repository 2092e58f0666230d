"""Prometheus metrics of one node, served at ``/metrics`` on the backend port.

Two kinds, chosen so that the fan-out costs nothing per delivery:

- *events*, counted where they happen, once per connection, message, command
  or publish (never once per recipient: a publish to 4,000 subscribers adds
  4,000 to ``snorky_deliveries_total`` in one step);
- *state*, read when Prometheus scrapes: connections, subscriptions, channels,
  the broker's counters (outages, dropped messages, ...) and sizes.

Every series carries a ``node`` label with the node's id, so that the series of
several nodes behind one load balancer stay apart. Each server has its own
:class:`Metrics` (and its own ``prometheus_client`` registry), so several
servers in one process (tests) do not mix their numbers.

The names are listed in ``docs/topics/metrics.rst``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.samples import Sample

__all__ = ["Metrics", "CONTENT_TYPE", "LATENCY_BUCKETS"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The Content-Type of ``/metrics`` (Prometheus' text format)."""

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds: command and broker latencies, from half a millisecond to the timeouts."""


class Metrics:
    """The metrics of one node.

    Args:
        node: the node's id, written as the ``node`` label of every series.
        state: called at each scrape; returns the state gauges and counters (see
            :meth:`collect_state`).
    """

    def __init__(self, node: str, state: Callable[[], dict[str, Any]] | None = None) -> None:
        self.node = node
        self.state = state
        self.registry = CollectorRegistry(auto_describe=False)  # the state is read at scrapes, never before
        """This node's own registry (not prometheus_client's global one)."""
        r = self.registry
        self.connects = Counter("snorky_connects", "Connections opened, by transport", ["transport"], registry=r)
        self.disconnects = Counter(
            "snorky_disconnects", "Connections closed, by transport and close code", ["transport", "code"], registry=r
        )
        self.messages_received = Counter(
            "snorky_messages_received", "Messages received from clients, by service", ["service"], registry=r
        )
        self.messages_sent = Counter(
            "snorky_messages_sent",
            "Messages sent out (a publish or push counts once, whatever the number of recipients), by service",
            ["service"],
            registry=r,
        )
        self.deliveries = Counter(
            "snorky_deliveries",
            "Messages delivered to local clients (one per recipient), by service",
            ["service"],
            registry=r,
        )
        self.bytes_written = Counter(
            "snorky_bytes_written",
            "Bytes of messages handed to clients' connections, by service",
            ["service"],
            registry=r,
        )
        self.commands = Histogram(
            "snorky_command_duration_seconds",
            "Commands answered, by service, command and outcome, and how long the answer took",
            ["service", "command", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "snorky_errors", "Error replies sent to clients, by service and error code", ["service", "code"], registry=r
        )
        self.broker_publish = Histogram(
            "snorky_broker_publish_duration_seconds",
            "Time from a publish to the broker's acknowledgement",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.limits = Counter("snorky_limits_hit", "Requests refused by a limit, by limit", ["limit"], registry=r)
        self.registry.register(_State(self))
        self._received: dict[str, Any] = {}
        self._commands: dict[tuple[str, str, bool], Any] = {}
        self._fanout: dict[str, tuple[Any, Any, Any]] = {}

    # Events ---------------------------------------------------------------------

    def received(self, service: str) -> None:
        """A client's message for ``service`` arrived."""
        child = self._received.get(service)
        if child is None:
            child = self._received[service] = self.messages_received.labels(service)
        child.inc()

    def command_done(self, service: str, command: str, started: float, outcome: str) -> None:
        """A command was answered (``outcome`` is ``"ok"`` or the error code)."""
        key = (service, command, outcome == "ok")
        child = self._commands.get(key)
        if child is None:  # labels() takes a lock and builds a key: once per command, not per call
            child = self._commands[key] = self.commands.labels(service, command, "ok" if key[2] else "error")
        child.observe(time.perf_counter() - started)

    def error(self, service: str | None, code: str) -> None:
        """An error reply went out."""
        self.errors.labels(service or "", code).inc()

    def fanout(self, service: str, recipients: int, size: int) -> None:
        """One message of ``size`` bytes went to ``recipients`` local clients."""
        children = self._fanout.get(service)
        if children is None:
            children = self._fanout[service] = (
                self.messages_sent.labels(service),
                self.deliveries.labels(service),
                self.bytes_written.labels(service),
            )
        children[0].inc()
        if recipients:
            children[1].inc(recipients)
            children[2].inc(recipients * size)

    def totals(self) -> dict[str, float]:
        """The event counters summed over their labels (the admin page's rates come from them)."""
        counters = {
            "connects": self.connects,
            "disconnects": self.disconnects,
            "received": self.messages_received,
            "sent": self.messages_sent,
            "deliveries": self.deliveries,
            "bytes_written": self.bytes_written,
            "errors": self.errors,
        }
        return {
            name: sum(s.value for family in counter.collect() for s in family.samples if s.name.endswith("_total"))
            for name, counter in counters.items()
        }

    # Exposition -------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text Prometheus scrapes, every series labelled with this node."""
        return generate_latest(_Labelled(self.registry, self.node))

    def collect_state(self) -> Iterator[Metric]:
        """The gauges and counters read at each scrape from :attr:`state`."""
        state = self.state() if self.state is not None else {}
        connections = GaugeMetricFamily(
            "snorky_connections", "Connections open now, by transport", labels=["transport"]
        )
        for transport, count in sorted(state.get("connections", {}).items()):
            connections.add_metric([transport], count)
        yield connections
        channels = GaugeMetricFamily(
            "snorky_channels", "Channels with local subscribers, by service", labels=["service"]
        )
        subscriptions = GaugeMetricFamily(
            "snorky_subscriptions", "Subscriptions of local clients, by service", labels=["service"]
        )
        for service, counts in sorted(state.get("services", {}).items()):
            if "channels" in counts:
                channels.add_metric([service], counts["channels"])
            if "subscriptions" in counts:
                subscriptions.add_metric([service], counts["subscriptions"])
        yield channels
        yield subscriptions
        broker = state.get("broker", {})
        for name, help_text in _BROKER_COUNTERS.items():
            if name in broker:
                yield CounterMetricFamily(f"snorky_broker_{name}", help_text, value=broker[name])
        for name, help_text in _BROKER_GAUGES.items():
            if name in broker:
                yield GaugeMetricFamily(f"snorky_broker_{name}", help_text, value=float(broker[name]))
        yield GaugeMetricFamily(
            "snorky_draining", "1 while the node drains before it stops", value=state.get("draining", 0)
        )


_BROKER_COUNTERS = {
    "published": "Messages this node published to the broker",
    "delivered": "Messages the broker delivered to this node",
    "outages": "Times the broker became unreachable",
    "reconnects": "Reconnections to the broker",
    "dropped": "Messages dropped (queue full during an outage, refused by the broker); each also logged",
    "gaps_filled": "Gaps in a channel's stream filled from its history",
    "gaps_lost": "Gaps in a channel's stream that its history could not fill",
    "stale": "Subscriber connections rebuilt because they stopped delivering",
}
_BROKER_GAUGES = {
    "pending": "Publishes queued for the broker (waiting for it to be reachable)",
    "connected": "1 while the broker is reachable",
    "presence_entries": "Presence entries this node owns",
}


class _State:
    """The collector of :meth:`Metrics.collect_state`."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics.collect_state()


class _Labelled:
    """A registry seen with ``node="<id>"`` added to every sample."""

    def __init__(self, registry: CollectorRegistry, node: str) -> None:
        self.registry = registry
        self.node = node

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            family.samples = [
                Sample(s.name, {"node": self.node, **s.labels}, s.value, s.timestamp, s.exemplar)
                for s in family.samples
            ]
            yield family
