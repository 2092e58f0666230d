"""Prometheus metrics of one node, served at ``/metrics`` on the backend port.

Two kinds, chosen so that the fan-out costs nothing per delivery:

- *events*, counted where they happen, once per connection, message, command
  or publish (never once per recipient: a publish to 4,000 subscribers adds
  4,000 to ``snorky_deliveries_total`` in one step);
- *state*, read when Prometheus scrapes: connections, subscriptions, channels,
  the broker's counters (outages, dropped messages, ...) and sizes.

Events are counted in plain Python dictionaries and :class:`~snorky.histogram.Histogram`
objects, on the event loop's thread, and turned into Prometheus families only when
scraped: ``prometheus_client``'s own counters and histograms take a lock on every
increment, which a message that makes two or three of them would feel. The
library still gives the registry, the families and the text format.

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

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample

from snorky.histogram import LATENCY_BUCKETS, Histogram, Timings

__all__ = ["Metrics", "CONTENT_TYPE", "LATENCY_BUCKETS"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The Content-Type of ``/metrics`` (Prometheus' text format)."""

_perf_counter = time.perf_counter


class Metrics:
    """The metrics of one node.

    Count from the event loop's thread only (the counts are plain Python).

    Args:
        node: the node's id, written as the ``node`` label of every series.
        state: called at each scrape; returns the state gauges and counters (see
            :meth:`collect_state`).
    """

    def __init__(self, node: str, state: Callable[[], dict[str, Any]] | None = None) -> None:
        self.node = node
        self.state = state
        self.registry = CollectorRegistry(auto_describe=False)  # everything is read at scrapes, never before
        """This node's own registry (not prometheus_client's global one)."""
        self.connects: dict[str, int] = {}
        """Connections opened, by transport."""
        self.disconnects: dict[tuple[str, str], int] = {}
        """Connections closed, by transport and close code."""
        self.received_by: dict[str, int] = {}
        """Messages received, by service (``""``: no valid service); the registry counts
        them itself as it routes each message (``ServiceRegistry.resolve``)."""
        self.fanouts: dict[str, list[int]] = {}
        """By service: messages sent out, deliveries, bytes written."""
        self.succeeded: dict[str, Timings] = {}
        """Latencies of the commands answered with success, by service and command
        (each service times its own, see :meth:`timings_for`)."""
        self.failed: dict[tuple[str, str], Histogram] = {}
        """Latencies of the commands answered with an error, by service and command."""
        self.errors: dict[tuple[str, str], int] = {}
        """Error replies, by service and code."""
        self.limits: dict[str, int] = {}
        """Requests refused, by limit."""
        self.registry.register(_Collector(self))

    # Events ---------------------------------------------------------------------

    def connected(self, transport: str) -> None:
        """A connection of ``transport`` opened."""
        self.connects[transport] = self.connects.get(transport, 0) + 1

    def disconnected(self, transport: str, code: int | str | None) -> None:
        """A connection closed with ``code``."""
        key = (transport, str(code))
        self.disconnects[key] = self.disconnects.get(key, 0) + 1

    def timings_for(self, service: str) -> Timings:
        """The latencies of ``service``'s successful commands, which it fills itself
        (``Service.command_timings``: the hot path of every call)."""
        timings = self.succeeded.get(service)
        if timings is None:
            timings = self.succeeded[service] = Timings()
        return timings

    def command_done(self, service: str, command: str, started: float, outcome: str) -> None:
        """A command that arrived at ``started`` (``time.perf_counter()``) was answered
        (``outcome`` is ``"ok"`` or the error code)."""
        if outcome == "ok":
            self.timings_for(service).since(command, started)
            return
        elapsed = _perf_counter() - started
        key = (service, command)
        histogram = self.failed.get(key)
        if histogram is None:
            histogram = self.failed[key] = Histogram(LATENCY_BUCKETS)
        histogram.observe(elapsed)

    def error(self, service: str | None, code: str) -> None:
        """An error reply went out."""
        key = (service or "", str(code))  # an app's RPCError may carry any code
        self.errors[key] = self.errors.get(key, 0) + 1

    def limit_hit(self, limit: str) -> None:
        """A request was refused by ``limit`` (a ``[limits]`` option's name)."""
        self.limits[limit] = self.limits.get(limit, 0) + 1

    def fanout(self, service: str, recipients: int, size: int) -> None:
        """One message of ``size`` bytes went to ``recipients`` local clients."""
        counts = self.fanouts.get(service)
        if counts is None:
            counts = self.fanouts[service] = [0, 0, 0]
        counts[0] += 1
        if recipients:
            counts[1] += recipients
            counts[2] += recipients * size

    def totals(self) -> dict[str, float]:
        """The event counters summed over their labels (the admin page's rates come from them)."""
        fanouts = self.fanouts.values()
        return {
            "connects": sum(self.connects.values()),
            "disconnects": sum(self.disconnects.values()),
            "received": sum(self.received_by.values()),
            "sent": sum(counts[0] for counts in fanouts),
            "deliveries": sum(counts[1] for counts in fanouts),
            "bytes_written": sum(counts[2] for counts in fanouts),
            "errors": sum(self.errors.values()),
        }

    # Exposition -------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text Prometheus scrapes, every series labelled with this node."""
        return generate_latest(_Labelled(self.registry, self.node))

    def collect_events(self) -> Iterator[Metric]:
        """The event counters and histograms as they stand."""
        fanouts = sorted(self.fanouts.items())
        yield _counter("snorky_connects", "Connections opened, by transport", ["transport"], self.connects)
        yield _counter(
            "snorky_disconnects",
            "Connections closed, by transport and close code",
            ["transport", "code"],
            self.disconnects,
        )
        yield _counter(
            "snorky_messages_received", "Messages received from clients, by service", ["service"], self.received_by
        )
        yield _counter(
            "snorky_messages_sent",
            "Messages sent out (a publish or push counts once, whatever the number of recipients), by service",
            ["service"],
            {service: counts[0] for service, counts in fanouts},
        )
        yield _counter(
            "snorky_deliveries",
            "Messages delivered to local clients (one per recipient), by service",
            ["service"],
            {service: counts[1] for service, counts in fanouts},
        )
        yield _counter(
            "snorky_bytes_written",
            "Bytes of messages handed to clients' connections, by service",
            ["service"],
            {service: counts[2] for service, counts in fanouts},
        )
        commands = HistogramMetricFamily(
            "snorky_command_duration_seconds",
            "Commands answered, by service, command and outcome, and how long the answer took",
            labels=["service", "command", "outcome"],
        )
        done = [
            ((service, command, "ok"), histogram)
            for service, timings in self.succeeded.items()
            for command, histogram in timings.items()
        ]
        done += [((service, command, "error"), histogram) for (service, command), histogram in self.failed.items()]
        for labels, histogram in sorted(done, key=lambda item: item[0]):
            _add_histogram(commands, list(labels), histogram)
        yield commands
        yield _counter(
            "snorky_errors",
            "Error replies sent to clients, by service and error code",
            ["service", "code"],
            self.errors,
        )
        yield _counter("snorky_limits_hit", "Requests refused by a limit, by limit", ["limit"], self.limits)

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
        publishes = HistogramMetricFamily(
            "snorky_broker_publish_duration_seconds",
            "Time from a publish to the broker's acknowledgement (a networked broker's; none in memory)",
        )
        latency = state.get("publish_latency")
        if latency is not None:
            _add_histogram(publishes, [], latency)
        yield publishes
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


def _counter(name: str, help_text: str, labels: list[str], counts: dict[Any, int]) -> CounterMetricFamily:
    """A counter family from counts keyed by label value (a string) or values (a tuple)."""
    family = CounterMetricFamily(name, help_text, labels=labels)
    for key, value in sorted(counts.items()):
        family.add_metric(key if isinstance(key, tuple) else (key,), value)
    return family


def _bound(bound: float) -> str:
    """A bucket's ``le`` label as Prometheus writes it (``+Inf``, ``0.0005``, ``10.0``)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _add_histogram(family: HistogramMetricFamily, labels: list[str], histogram: Histogram) -> None:
    buckets = [(_bound(bound), float(count)) for bound, count in histogram.cumulative()]
    family.add_metric(labels, buckets, histogram.sum)


class _Collector:
    """The registry's one collector: events, then state."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        yield from self.metrics.collect_events()
        yield from self.metrics.collect_state()


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
