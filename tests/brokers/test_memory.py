"""The broker contract on MemoryBroker: every "node" is the same in-process broker."""

import unittest

from snorky.brokers.memory import MemoryBroker
from tests.brokers.contract import BrokerContract


class MemoryBrokerContractTests(BrokerContract, unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.broker = MemoryBroker()

    async def make_node(self):
        return self.broker

    def test_kv_expiry(self):
        """Key-value entries expire after their ttl."""
        now = [100.0]
        broker = MemoryBroker(clock=lambda: now[0])
        broker.kv_set("k", b"v", ttl=5)
        now[0] += 6
        self.assertIsNone(broker.kv_get("k"))
        self.assertTrue(broker.kv_set("k", b"w", ttl=5, only_if_absent=True))
