"""A node's link to Redis, which every part of the broker shares.

The link holds the command connection (standalone or Sentinel), runs the scripts
(loading them again when Redis forgot them), names the keys and channels, holds the
current outage (:class:`Outage`) and the events the parts wait on, and runs their
background tasks so that :meth:`~snorky.brokers.redis.RedisBroker.close` can stop them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as _RedisConnectionError
from redis.exceptions import NoScriptError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as _RedisTimeoutError

from snorky.brokers.redis.scripts import SCRIPTS, SHAS
from snorky.errors import BrokerUnavailable

__all__ = ["CONNECTION_ERRORS", "Link", "Outage", "jitter", "now_ms", "safe_url", "transient"]

logger = logging.getLogger("snorky.brokers.redis")  # one logger for every part of the broker

T = TypeVar("T")

POOL_SIZE = 50
"""Connections a node opens to Redis for commands, at most (the subscriber has its own)."""

CONNECTION_ERRORS = (_RedisConnectionError, _RedisTimeoutError, OSError, asyncio.TimeoutError)
"""Errors that mean Redis is unreachable (retried); anything else is a bug, logged."""

_TRANSIENT_REPLIES = ("OOM", "BUSY", "MASTERDOWN", "LOADING", "TRYAGAIN", "CLUSTERDOWN")
"""Error replies of a Redis that cannot take writes for now (counted as an outage, retried)."""


def transient(error: ResponseError) -> bool:
    return isinstance(error, ReadOnlyError) or str(error).startswith(_TRANSIENT_REPLIES)


def now_ms() -> int:
    return int(time.time() * 1000)


def jitter(backoff: float) -> float:
    """Full jitter: a random wait between 0 and ``backoff`` seconds."""
    return random.uniform(0, backoff)


def safe_url(url: str) -> str:
    parts = urlsplit(url)
    return url.replace(parts.password, "***") if parts.password else url


class Outage:
    """Episodes of this node not reaching Redis, or not hearing from it.

    An episode begins with the first failure (logged once, counted once) and ends
    when this node hears its own message through a rebuilt subscription and has
    settled every topic; then one line says how long it lasted and what it cost.
    """

    def __init__(self, counters: dict[str, int]) -> None:
        self.counters = counters
        self.since: float | None = None
        self.queued = 0
        self.refused = 0
        self.missed = 0
        self.channels: set[str] = set()

    @property
    def down(self) -> bool:
        return self.since is not None

    def begin(self, error: BaseException | str) -> bool:
        """Start an episode (nothing if one is going on); whether one started."""
        if self.since is not None:
            return False
        self.since = time.monotonic()
        self.queued = self.refused = self.missed = 0
        self.channels = set()
        self.counters["outages"] += 1
        cause = error if isinstance(error, str) else type(error).__name__
        logger.error("! Redis unreachable (%s): queueing publishes and reconnecting", cause)
        return True

    def end(self) -> None:
        if self.since is None:
            return
        logger.warning(
            "= Redis reachable again after %.1f s: %d publish(es) queued, %d refused (queue full), "
            "%d message(s) missed on %d topic(s)",
            time.monotonic() - self.since,
            self.queued,
            self.refused,
            self.missed,
            len(self.channels),
        )
        self.since = None


class Link:
    """The connection to Redis and the state every part of one node's broker shares."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        node_id: str,
        incarnation: str,
        heartbeat: float,
        timeout: float,
        reconnect_min: float,
        reconnect_max: float,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.node_id = node_id
        self.incarnation = incarnation
        self.heartbeat = heartbeat
        self.timeout = timeout
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.counters = dict.fromkeys(
            (
                "published",
                "resent",
                "delivered",
                "outages",
                "reconnects",
                "dropped",
                "missed",
                "gaps_filled",
                "gaps_lost",
                "stale",
                "presence_restored",
            ),
            0,
        )
        self.outage = Outage(self.counters)
        self.client: Any = None  # redis-py's asyncio client is untyped where it matters (pipelines)
        self.sentinel: Sentinel | None = None
        self.started = False
        self.closing = False
        self.wake = asyncio.Event()
        """Set when there is something to publish."""
        self.back = asyncio.Event()
        """Set while no outage is going on."""
        self.hurry = asyncio.Event()
        """Set when someone waits for the subscriber: it stops its backoff."""
        self.gate = False
        """Whether queued publishes wait for the other nodes to listen again (after an outage)."""
        self.peers: set[str] = set()
        """The other live nodes, as the last heartbeat found them (not updated during an outage)."""
        self.side_tasks: set[asyncio.Task[Any]] = set()

    # Naming -------------------------------------------------------------------------

    def channel(self, topic: str) -> str:
        return f"{self.prefix}:t:{topic}"

    def topic(self, channel: bytes) -> str:
        return channel.decode()[len(self.prefix) + 3 :]

    @property
    def node_channel(self) -> str:
        return f"{self.prefix}:node:{self.node_id}"

    def stream_keys(self, topic: str) -> list[str]:
        """The topic's stream and its meta (offset, epoch)."""
        return [f"{self.prefix}:h:{topic}", f"{self.prefix}:hm:{topic}"]

    # Lifecycle ----------------------------------------------------------------------

    def connect(self) -> None:
        """Make the client (it connects on first use) and fresh events."""
        self.client = self._make_client()
        self.wake = asyncio.Event()
        self.back = asyncio.Event()
        self.back.set()
        self.hurry = asyncio.Event()
        self.closing = False
        self.started = True

    def _make_client(self) -> Any:
        no_retry = Retry(NoBackoff(), 0)
        parts = urlsplit(self.url)
        wait = max(self.timeout, 1.0)
        if parts.scheme == "redis+sentinel":
            hosts = [(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1])) for h in parts.netloc.split("@")[-1].split(",")]
            path = [p for p in parts.path.split("/") if p]
            service, db = path[0], int(path[1]) if len(path) > 1 else 0
            self.sentinel = Sentinel(hosts, socket_timeout=wait, password=parts.password)
            return self.sentinel.master_for(
                service, db=db, retry=no_retry, socket_timeout=wait, password=parts.password
            )
        # A blocking pool: a burst of commands (hundreds of subscribes reading history at
        # once) waits for a free connection instead of failing with MaxConnectionsError,
        # which would look like an outage (redis-py 8 caps a plain pool at 100).
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=POOL_SIZE,
            timeout=self.timeout,
            retry=no_retry,
            socket_timeout=wait,
            socket_connect_timeout=wait,
        )
        return aioredis.Redis.from_pool(pool)  # the client owns the pool: closing it closes every connection

    async def disconnect(self) -> None:
        await self.client.aclose()
        if self.sentinel is not None:
            for sentinel in self.sentinel.sentinels:
                await sentinel.aclose()

    def background(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run a coroutine of the broker on its own; it is cancelled on close."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self.side_tasks.add(task)
        task.add_done_callback(self.side_tasks.discard)

    def begin_outage(self, error: BaseException | str) -> None:
        if self.closing:
            return
        if self.outage.begin(error):
            self.back.clear()
            self.gate = bool(self.peers)

    # Scripts: loaded once per connection (a restarted Redis has forgotten them). -----

    async def run_scripts(self, pipe: Any) -> list[Any]:
        """Run a pipeline; scripts Redis forgot (after a restart) are loaded and only they run again."""
        commands = [args for args, _options in pipe.command_stack]
        results: list[Any] = await pipe.execute(raise_on_error=False)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            for source in SCRIPTS:
                await self.client.script_load(source)
            retry = self.client.pipeline(transaction=False)
            for i in missing:
                retry.execute_command(*commands[i])
            for i, result in zip(missing, await retry.execute(raise_on_error=False), strict=True):
                results[i] = result
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    async def eval(self, source: str, keys: list[str], args: list[Any]) -> Any:
        async def run() -> Any:
            pipe = self.client.pipeline(transaction=False)
            pipe.evalsha(SHAS[source], len(keys), *keys, *args)
            return (await self.run_scripts(pipe))[0]

        return await self.query(run)

    async def query(self, run: Callable[[], Awaitable[T]]) -> T:
        """Run a query; retried once at once (a pooled connection from before an outage
        fails on first use), then :class:`~snorky.errors.BrokerUnavailable`."""
        try:
            return await run()
        except CONNECTION_ERRORS:
            try:
                return await run()
            except CONNECTION_ERRORS as error:
                self.begin_outage(error)
                raise BrokerUnavailable() from error
        except ResponseError as error:
            if not transient(error):
                raise
            self.begin_outage(str(error).split(" ")[0])
            raise BrokerUnavailable() from error
