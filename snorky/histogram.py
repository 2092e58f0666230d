"""Latencies counted into buckets in plain Python, for the metrics.

``prometheus_client``'s own histogram takes a lock and walks its buckets on each
observation; a node counts its commands and publishes on one event loop's
thread, where a list index and an addition are enough. :mod:`snorky.metrics`
turns these into Prometheus histograms when it is scraped.
"""

from __future__ import annotations

import time
from bisect import bisect_left

__all__ = ["Histogram", "Timings", "LATENCY_BUCKETS"]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds: command and broker latencies, from half a millisecond to the timeouts."""


class Histogram:
    """Observations counted by bucket: ``counts[i]`` holds those in ``(bounds[i-1], bounds[i]]``
    and the last one those above every bound.

    Not thread-safe: observe from one thread (the event loop's).
    """

    __slots__ = ("bounds", "first", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        """The buckets' upper bounds, ascending."""
        self.first = bounds[0]
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        """The sum of every observation."""

    def observe(self, value: float) -> None:
        if value <= self.first:  # most commands: no search
            self.counts[0] += 1
        else:
            self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        """How many observations there were."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(bound, observations <= bound)`` for every bound, then ``(inf, count)``."""
        running = 0
        buckets = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            buckets.append((bound, running))
        return buckets


_perf_counter = time.perf_counter


class Timings(dict[str, Histogram]):
    """Latency histograms by name: one service's commands that succeeded.

    A service holds its own (``Service.command_timings``), so that timing a command
    is one call with a string key, no tuple to build and hash.
    """

    __slots__ = ()

    def since(self, name: str, started: float) -> None:
        """Observe, under ``name``, the seconds from ``started`` (``time.perf_counter()``) to now."""
        elapsed = _perf_counter() - started
        histogram = self.get(name)
        if histogram is None:
            histogram = self[name] = Histogram()
        histogram.observe(elapsed)
