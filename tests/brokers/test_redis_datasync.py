"""DataSync's row order across Snorky nodes on a real Redis: a delta's key and version survive the broker."""

import asyncio

from snorky import ServiceRegistry
from snorky.services.datasync import DataSyncService
from tests.brokers.contract import WAIT
from tests.brokers.test_redis import RedisBrokerTestCase
from tests.services.test_datasync import AllPlayers


def update(level, version):
    return {
        "type": "update",
        "model": "Player",
        "key": 7,
        "version": version,
        "oldData": {"id": 7, "level": 0},
        "newData": {"id": 7, "level": level},
    }


class RedisOrderTests(RedisBrokerTestCase):
    async def node(self):
        datasync = DataSyncService("datasync", [AllPlayers])
        ServiceRegistry([datasync], broker=await self.make_node())
        return datasync

    async def test_older_delta_from_any_node_is_dropped_on_every_node(self):
        """Deltas published on two nodes reach a third in one order; the older one is dropped there, and counted."""
        first, second, watching = await self.node(), await self.node(), await self.node()
        token = watching.authorize_subscription([{"dealer": "all_players", "query": None}])
        await self.subscribed(watching.broker)
        first.publish_deltas([update(3, version=30)])
        await self.published(first.broker)
        second.publish_deltas([update(2, version=20)])  # committed earlier, published later
        first.publish_deltas([update(4, version=40)])
        buffered = watching.sm.get_subscription_with_token(token)._awaited_client_buffer
        deadline = asyncio.get_running_loop().time() + WAIT
        while len(buffered) + watching.versions.stale < 3:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"deltas did not arrive: {buffered}")
            await asyncio.sleep(0.01)
        self.assertEqual([delta.for_json()["newData"]["level"] for delta in buffered], [3, 4])
        self.assertEqual([delta.for_json()["oldData"]["level"] for delta in buffered], [0, 3])
        self.assertEqual(watching.stats()["stale_deltas"], 1)
