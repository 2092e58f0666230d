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
``snorky-metrics`` setup); with ``--namespaces``, the PubSub service is given the namespaces
``snorky serve`` runs without a configuration file (anyone may subscribe and publish
everywhere), so that the permission checks run on every subscribe and publish (the
``snorky-namespaces`` setup); with ``--limits``, the registry enforces ``snorky serve``'s
default ``[limits]``, but for a command rate high enough that no message of the load
generator is refused (the ``snorky-limits`` setup: every message still takes a token).
``--no-pings`` turns WebSocket pings off (``instructions.py``: pings are work that grows
with time, not with the load counted).

The script also runs on older trees' ``snorky/`` (``run.py --baseline REF``): it
passes only what the source takes, and ``--metrics`` or ``--namespaces`` on a source
without them ends the script (exit code 1) with a message saying so. ``--check`` does
that check and exits (0 when the source has everything asked for), without serving.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import resource
import sys
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
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


def takes(callable_: Any, parameter: str) -> bool:
    return parameter in inspect.signature(callable_).parameters


def missing(metrics: bool, namespaces: bool, limits: bool = False) -> str | None:
    """What the Snorky source on the path lacks of what the options ask for, or ``None``."""
    if limits:
        try:
            import snorky.limits  # noqa: F401
        except ImportError:
            return "--limits: this Snorky source has no snorky.limits"
    if metrics and not takes(ServiceRegistry, "metrics"):
        return "--metrics: this Snorky source's ServiceRegistry takes no metrics (it has no Prometheus metrics)"
    if namespaces:
        try:
            import snorky.namespaces  # noqa: F401
        except ImportError:
            return "--namespaces: this Snorky source has no snorky.namespaces"
        if not takes(PubSubService, "namespaces"):
            return "--namespaces: this Snorky source's PubSubService takes no namespaces (no channel rules)"
    return None


def pubsub_options(namespaces: bool) -> dict[str, Any]:
    """PubSubService's keyword arguments: with ``namespaces``, the default namespace of
    ``snorky serve`` without a configuration file, where anyone may subscribe and publish."""
    if not namespaces:
        return {}
    from snorky.namespaces import Namespace, Namespaces

    return {"namespaces": Namespaces(Namespace(allow_subscribe="anyone", allow_publish="anyone"))}


def registry_options(metrics: bool) -> dict[str, Any]:
    """ServiceRegistry's keyword arguments: none without ``metrics``, so that sources from
    before the metrics work run too."""
    if not metrics:
        return {}
    from snorky.metrics import Metrics  # as snorky serve runs: every command, fan-out and connection counted

    return {"metrics": Metrics("bench")}


async def main(
    port: int,
    host: str,
    redis: str | None,
    prefix: str,
    compression: bool = False,
    metrics: bool = False,
    namespaces: bool = False,
    limits: bool = False,
    pings: bool = True,
) -> None:
    services = [PubSubService("pubsub", **pubsub_options(namespaces)), EchoService("echo")]
    options = registry_options(metrics)
    if redis:
        from snorky.brokers.redis import RedisBroker

        options["broker"] = RedisBroker(redis, prefix=prefix)
        await options["broker"].start()
    registry = ServiceRegistry(services, **options)
    if limits:  # as snorky serve runs, but W1's publisher and W2's callers are never refused
        from snorky.limits import Limiter, LimitsConfig

        config = LimitsConfig(commands_per_second=1e9, commands_burst=10**9)
        registry.limiter = Limiter(config, registry.broker, options.get("metrics"))
    route: dict[str, Any] = {"compression": True} if compression else {}
    if not pings:
        route["ping_interval"] = 0
    app = Application([SnorkyWebSocketHandler.get_route(registry, "/ws", **route)])
    sockets = bind_sockets(port, host, backlog=4096)
    HTTPServer(app).add_sockets(sockets)
    if not port:  # the tests: say which port was chosen
        print(f"listening on port {sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, help="required unless --check; 0: any free port, printed")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--redis", help="Redis URL: use a RedisBroker instead of the memory broker")
    parser.add_argument("--prefix", default="snorky-bench", help="the RedisBroker's key and channel prefix")
    parser.add_argument("--compression", action="store_true", help="accept permessage-deflate (W1 compressed)")
    parser.add_argument("--metrics", action="store_true", help="count in Prometheus metrics (snorky serve's default)")
    parser.add_argument(
        "--namespaces",
        action="store_true",
        help="give PubSub the namespaces of snorky serve without a configuration file (anyone subscribes, publishes)",
    )
    parser.add_argument("--limits", action="store_true", help="enforce snorky serve's [limits] (commands not refused)")
    parser.add_argument(
        "--no-pings",
        action="store_true",
        help="send no WebSocket pings (instructions.py: work that depends on time, not on the load)",
    )
    parser.add_argument(
        "--check", action="store_true", help="only check that the Snorky source has what the options ask for"
    )
    args = parser.parse_args()
    problem = missing(args.metrics, args.namespaces, args.limits)
    if problem:
        sys.exit(f"snorky_server.py: {problem}")
    if args.check:
        sys.exit(0)
    if args.port is None:
        parser.error("--port is required")
    logging.basicConfig(level=logging.WARNING)
    raise_nofile()
    try:
        asyncio.run(
            main(
                args.port,
                args.host,
                args.redis,
                args.prefix,
                args.compression,
                args.metrics,
                args.namespaces,
                args.limits,
                not args.no_pings,
            )
        )
    except KeyboardInterrupt:
        pass
