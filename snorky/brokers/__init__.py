"""Brokers carry every fan-out between services and, later, between nodes."""

from snorky.brokers.base import Broker, topic_for
from snorky.brokers.memory import MemoryBroker

__all__ = ["Broker", "MemoryBroker", "topic_for"]
