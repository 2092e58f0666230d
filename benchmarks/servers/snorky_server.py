"""Snorky's PubSubService (and an ``echo`` RPCService) over its WebSocket transport, for the benchmarks.

Usage: python benchmarks/servers/snorky_server.py --port 8001
       python benchmarks/servers/snorky_server.py --port 8001 --redis redis://127.0.0.1:6379/0 --prefix bench

With ``--redis``, the registry's broker is a :class:`~snorky.brokers.redis.RedisBroker`
(started before the server listens), so that several of these processes on
the same Redis and prefix behave as one server (workload W4); without it, the
default in-process memory broker (W1). The ``echo`` service's one command,
``echo``, answers its ``message`` parameter (workload W2). With ``--compression``,
clients that offer permessage-deflate get it (the ``snorky-deflate`` setup of W1); with
``--metrics``, everything is counted in Prometheus metrics as ``snorky serve`` does (the
``snorky-metrics`` setup); with ``--limits``, the registry enforces ``snorky serve``'s
default ``[limits]``, but for a command rate high enough that no message of the load
generator is refused (the ``snorky-limits`` setup: every message still takes a token).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource

from tornado.web import Application

from snorky import ServiceRegistry
from snorky.request_handlers.websocket import SnorkyWebSocketHandler
from snorky.services.base import Request, RPCService, rpc_command
from snorky.services.pubsub import PubSubService


class EchoService(RPCService):
    """One command, ``echo``: answers ``message``."""

    @rpc_command
    def echo(self, req: Request, message: object) -> object:
        return message


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def main(
    port: int,
    host: str,
    redis: str | None,
    prefix: str,
    compression: bool = False,
    metrics: bool = False,
    limits: bool = False,
) -> None:
    broker = None
    if redis:
        from snorky.brokers.redis import RedisBroker

        broker = RedisBroker(redis, prefix=prefix)
        await broker.start()
    counted = None
    if metrics:  # as snorky serve runs: every command, fan-out and connection counted
        from snorky.metrics import Metrics

        counted = Metrics("bench")
    registry = ServiceRegistry([PubSubService("pubsub"), EchoService("echo")], broker=broker, metrics=counted)
    if limits:  # as snorky serve runs, but W1's publisher and W2's callers are never refused
        from snorky.limits import Limiter, LimitsConfig

        config = LimitsConfig(commands_per_second=1e9, commands_burst=10**9)
        registry.limiter = Limiter(config, registry.broker, counted)
    options = {"compression": True} if compression else {}
    app = Application([SnorkyWebSocketHandler.get_route(registry, "/ws", **options)])
    app.listen(port, host, backlog=4096)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--redis", help="Redis URL: use a RedisBroker instead of the memory broker")
    parser.add_argument("--prefix", default="snorky-bench", help="the RedisBroker's key and channel prefix")
    parser.add_argument("--compression", action="store_true", help="accept permessage-deflate (W1 compressed)")
    parser.add_argument("--metrics", action="store_true", help="count in Prometheus metrics (snorky serve's default)")
    parser.add_argument("--limits", action="store_true", help="enforce snorky serve's [limits] (commands not refused)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    raise_nofile()
    try:
        asyncio.run(main(args.port, args.host, args.redis, args.prefix, args.compression, args.metrics, args.limits))
    except KeyboardInterrupt:
        pass
