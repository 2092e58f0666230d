"""Brokers carry every fan-out between services, in one process (:mod:`snorky.brokers.memory`)
or between the nodes of a cluster (:mod:`snorky.brokers.redis`)."""

from snorky.brokers.base import Broker, topic_for
from snorky.brokers.memory import MemoryBroker

__all__ = ["Broker", "MemoryBroker", "topic_for"]
