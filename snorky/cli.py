"""The ``snorky`` command: serve, publish, token, check-config, genconfig (also ``python -m snorky``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from snorky.config import Config
from snorky.errors import ConfigError, ListenError, SnorkyError
from snorky.logs import LOG_FORMATS, JSONFormatter, setup_logging
from snorky.version import __version__

if TYPE_CHECKING:
    from snorky.server import SnorkyServer

__all__ = ["main"]

logger = logging.getLogger("snorky.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="snorky", description="Snorky realtime server.")
    parser.add_argument("--version", action="version", version=f"snorky {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server (embedded defaults, or a TOML file)")
    serve.add_argument("-c", "--config", metavar="FILE", help="TOML configuration file")
    serve.add_argument("--address", help="frontend address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="frontend port (default 5001; 0 picks a free one)")
    serve.add_argument("--backend-port", type=int, help="backend port (default 5002; 0 picks a free one)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-format", choices=list(LOG_FORMATS), help="text (default) or json, one object per line")

    publish = commands.add_parser("publish", help="publish a message through the backend port")
    publish.add_argument("channel")
    publish.add_argument("message", help="JSON, or else sent as a string")
    publish.add_argument("--service", default="pubsub", help="backend PubSub service (default pubsub)")
    publish.add_argument("--url", help="backend URL (default from the config file, else http://127.0.0.1:5002/backend)")
    publish.add_argument("-c", "--config", metavar="FILE", help="read the URL and API key from this file")
    publish.add_argument("--api-key", help="API key (default: SNORKY_API_KEY, else the config file)")

    token = commands.add_parser(
        "token", help="sign a client token (JWT) for an identity, or with --channel a subscription token"
    )
    token.add_argument("--sub", required=True, help="the identity")
    token.add_argument("--secret", help="HS256 secret (default: SNORKY_TOKEN_SECRET, else the config file)")
    token.add_argument("--ttl", type=float, default=3600, help="lifetime in seconds (default 3600)")
    token.add_argument("--info", help="public user data, as JSON")
    token.add_argument(
        "--grant", action="append", dest="channels", help="a channel grant, name or prefix* (repeatable)"
    )
    token.add_argument(
        "--subscribe", action="append", dest="subscriptions", help="a channel subscribed at connect (repeatable)"
    )
    token.add_argument("--channel", help="sign a subscription token for this one channel instead")
    token.add_argument("--algorithm", default="HS256", help="HS256 (default), RS256 or ES256")
    token.add_argument("--private-key", metavar="FILE", help="PEM private key for RS256/ES256")
    token.add_argument("-c", "--config", metavar="FILE", help="read [auth] secret from this file")

    check = commands.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("file")

    generate = commands.add_parser("genconfig", help="write a configuration file with every option and its default")
    generate.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: standard output)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``snorky`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "publish":
            return _publish(args)
        if args.command == "token":
            return _token(args)
        if args.command == "genconfig":
            return _genconfig(args.output)
        return _check_config(args.file)
    except ConfigError as error:
        print(f"snorky: configuration error: {error}", file=sys.stderr)
        return 2
    except ListenError as error:
        print(f"snorky: {error}", file=sys.stderr)
        return 2


def _importable_config_folder(path: str | None) -> None:
    """Let a configuration file name classes from modules beside it (demos, small apps)."""
    if path:
        folder = os.path.dirname(os.path.abspath(path))
        if folder not in sys.path:
            sys.path.insert(0, folder)


def _serve(args: argparse.Namespace) -> int:
    _importable_config_folder(args.config)
    config = _serve_config(args)
    handler = setup_logging(config.log_level, config.log_format)
    asyncio.run(_run_server(config, handler, args))
    return 0


def _serve_config(args: argparse.Namespace) -> Config:
    """The configuration file (or the defaults), with the command line's options over it."""
    config = Config.load(args.config)
    if args.address is not None:
        config.frontend.address = args.address
    if args.port is not None:
        config.frontend.port = args.port
    if args.backend_port is not None:
        config.backend.port = args.backend_port
    if args.log_level is not None:
        config.log_level = args.log_level
    if args.log_format is not None:
        config.log_format = args.log_format
    return config


async def _run_server(config: Config, log_handler: logging.Handler, args: argparse.Namespace) -> None:
    from snorky.server import SnorkyServer

    server = SnorkyServer(config)
    server.log_handler = log_handler
    if isinstance(log_handler.formatter, JSONFormatter):
        log_handler.formatter.node = server.broker.node_id
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _on_hangup, server, args)
    await server.start()
    print(
        f"Snorky {__version__} serving on http://{config.frontend.address}:{server.frontend_port}"
        + (f", backend on port {server.backend_port}" if server.backend_port else ""),
        flush=True,
    )
    await stop.wait()
    stop.clear()
    logger.info(
        "= stopping: sending clients elsewhere over %.1f s (signal again to stop at once)", config.frontend.drain_window
    )
    stopping = asyncio.ensure_future(server.stop())
    hurried = asyncio.ensure_future(stop.wait())
    await asyncio.wait([stopping, hurried], return_when=asyncio.FIRST_COMPLETED)
    if not stopping.done():
        logger.info("= stopping at once")
        stopping.cancel()
        await asyncio.gather(stopping, return_exceptions=True)
        await server.stop(grace=1.0, window=0)
    hurried.cancel()
    logger.info("= stopped")


def _on_hangup(server: SnorkyServer, args: argparse.Namespace) -> None:
    """SIGHUP: read the configuration file again and apply what can change while serving."""
    if args.config is None:
        logger.info("= SIGHUP: no configuration file (--config) to reload")
        return
    logger.info("= SIGHUP: reloading %s", args.config)
    try:
        server.reload(_serve_config(args))
    except ConfigError as error:
        logger.error("! SIGHUP: %s; configuration unchanged", error)
    except Exception:
        logger.exception("! SIGHUP: reload failed; configuration unchanged")


def _publish(args: argparse.Namespace) -> int:
    from snorky.backend import SnorkyBackend, SnorkyHTTPTransport

    config = Config.load(args.config)
    key = args.api_key or config.backend.api_key
    if not key:
        print("snorky: no API key: use --api-key, SNORKY_API_KEY or a config file", file=sys.stderr)
        return 2
    url = args.url or f"http://{config.backend.address}:{config.backend.port}{config.backend.path}"
    try:
        message = json.loads(args.message)
    except ValueError:
        message = args.message
    backend = SnorkyBackend(SnorkyHTTPTransport(url, key))
    try:
        backend.call(args.service, "publish", channel=args.channel, message=message)
    except SnorkyError as error:
        print(f"snorky: {error} ({error.code})", file=sys.stderr)
        return 1
    return 0


def _token(args: argparse.Namespace) -> int:
    from snorky.auth import sign_subscription_token, sign_token, weak_secret

    config = Config.load(args.config)
    info = None
    if args.info is not None:
        try:
            info = json.loads(args.info)
        except ValueError:
            print("snorky: --info must be JSON", file=sys.stderr)
            return 2
    private_key = None
    if args.private_key:
        with open(args.private_key, "rb") as handle:
            private_key = handle.read()
    secret = args.secret or config.auth.secret
    weak = None if private_key else weak_secret(secret, args.algorithm)
    if weak is not None:
        print(f"snorky: warning: {weak}", file=sys.stderr)
    if args.channel is not None and (args.channels or args.subscriptions or info is not None):
        print("snorky: --channel signs a subscription token: no --grant, --subscribe or --info", file=sys.stderr)
        return 2
    extra = {"subscriptions": args.subscriptions} if args.subscriptions else {}
    try:
        if args.channel is not None:
            token = sign_subscription_token(
                args.sub, args.channel, secret, ttl=args.ttl, algorithm=args.algorithm, private_key=private_key
            )
        else:
            token = sign_token(
                args.sub,
                secret,
                ttl=args.ttl,
                info=info,
                channels=args.channels,
                algorithm=args.algorithm,
                private_key=private_key,
                **extra,
            )
    except (ValueError, NotImplementedError) as error:
        print(f"snorky: cannot sign: {error}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _genconfig(output: str | None) -> int:
    from snorky.genconfig import generate

    text = generate()
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            with open(output, "x", encoding="utf-8") as handle:  # never overwrite a configuration
                handle.write(text)
        except OSError as error:
            print(f"snorky: cannot write {output}: {error.strerror}", file=sys.stderr)
            return 2
        print(f"wrote {output}; check it with: snorky check-config {output}", file=sys.stderr)
    return 0


def _check_config(path: str) -> int:
    from snorky.brokers.memory import MemoryBroker
    from snorky.server import SnorkyServer, build_broker

    _importable_config_folder(path)
    config = Config.load(path, env={})
    build_broker(config)  # the broker's options and library, without connecting to it
    server = SnorkyServer(config, broker=MemoryBroker())
    services = ", ".join(f"{name} ({type(s).__name__})" for name, s in server.registry.registered_services.items())
    backend = ", ".join(server.backend_registry.registered_services) or "none"
    print(f"{path}: OK. Services: {services or 'none'}. Backend services: {backend}.")
    if not (config.backend.api_key or os.environ.get("SNORKY_API_KEY")):
        print("note: no backend API key: the backend port will not be opened.")
    return 0
