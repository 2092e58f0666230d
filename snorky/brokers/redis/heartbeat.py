"""The heartbeat: every ``heartbeat`` seconds a node marks itself alive (and listening,
when Redis sends it every topic it is subscribed to), learns the other live nodes,
checks that its subscription still delivers its own messages, and refreshes its
presence entries."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from redis.exceptions import ResponseError

from snorky.brokers.redis.link import CONNECTION_ERRORS, Link, transient
from snorky.brokers.redis.presence import Presence
from snorky.brokers.redis.scripts import BEAT, SHAS
from snorky.brokers.redis.subscriber import Subscriber
from snorky.errors import BrokerUnavailable

__all__ = ["Heartbeat"]

logger = logging.getLogger("snorky.brokers.redis")


class Heartbeat:
    """The heartbeat task of one node; see the module's docstring."""

    def __init__(
        self, link: Link, subscriber: Subscriber, presence: Presence, node_ttl: float, presence_ttl: float
    ) -> None:
        self.link = link
        self.subscriber = subscriber
        self.presence = presence
        self.node_ttl = node_ttl
        self.presence_ttl = presence_ttl
        self.count = 0
        """Heartbeats done."""

    async def run(self) -> None:
        link = self.link
        # Not ``while True``: redis-py may turn a cancellation into a connection error.
        while not link.closing:
            try:
                await self._beat()
                if self.subscriber.pubsub is None:
                    link.hurry.set()  # Redis answers again: the subscriber stops its backoff
            except (*CONNECTION_ERRORS, BrokerUnavailable) as error:
                link.begin_outage(error)
            except ResponseError as error:
                if not transient(error):
                    logger.exception("! heartbeat failed")
                link.begin_outage(str(error).split(" ")[0])
            await asyncio.sleep(link.heartbeat)

    async def _beat(self) -> None:
        link, subscriber, presence = self.link, self.subscriber, self.presence
        now = time.time()
        pipe = link.client.pipeline(transaction=False)
        keys = [f"{link.prefix}:nodes", f"{link.prefix}:listening"]
        refresh_every = max(1, int(self.presence_ttl / 3 / link.heartbeat))
        refreshed: list[tuple[str, list[Any]]] = []
        if self.count % refresh_every == 0:
            refreshed = presence.queue_refresh(pipe, now)
        learn_peers = not link.outage.down
        if learn_peers:
            pipe.zrangebyscore(keys[0], now - self.node_ttl, "+inf")
        pipe.evalsha(SHAS[BEAT], 2, *keys, link.node_id, now, int(subscriber.listening()), link.node_channel)
        # Redis's count of listeners says something only about a subscription it had confirmed before.
        subscription = subscriber.pubsub if subscriber.node_confirmed else None
        results = await (presence.run_refresh(pipe) if refreshed else link.run_scripts(pipe))
        self.count += 1
        if learn_peers:
            link.peers = {node.decode() for node in results[-2]} - {link.node_id}
        receivers = results[-1]
        if receivers == 0 and subscription is not None and subscription is subscriber.pubsub:
            subscriber.stale = True  # Redis says nobody listens on this node's channel
        elif receivers:
            subscriber.unechoed += 1
        presence.refreshed(refreshed, results)
        if presence.watched and self.count % 2 == 0:
            for key in list(presence.watched):
                await presence.members(key)
