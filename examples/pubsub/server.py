"""A PubSub server and a page that uses it with the browser's own WebSocket.

Run ``python examples/pubsub/server.py --port 8000`` and open http://127.0.0.1:8000/
in two tabs: what one tab publishes, both see. A timer publishes the server's
clock to the ``clock`` channel every second, to show publishing from Python.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
from pathlib import Path

from tornado.web import Application, RedirectHandler, StaticFileHandler

from snorky import ServiceRegistry
from snorky.request_handlers.websocket import SnorkyWebSocketHandler
from snorky.services.pubsub import PubSubService

STATIC = Path(__file__).parent / "static"


def make_app(pubsub: PubSubService | None = None) -> Application:
    """The example's Tornado application: the page at ``/``, WebSocket at ``/ws``."""
    registry = ServiceRegistry([pubsub or PubSubService("pubsub")])
    return Application(
        [
            SnorkyWebSocketHandler.get_route(registry, "/ws"),
            (r"/", RedirectHandler, {"url": "/static/index.html"}),
            (r"/static/(.*)", StaticFileHandler, {"path": STATIC}),
        ]
    )


async def publish_clock(pubsub: PubSubService) -> None:
    """Publish the time every second: one call, from ordinary server code."""
    while True:
        pubsub.do_publish("clock", datetime.datetime.now(datetime.timezone.utc).isoformat())
        await asyncio.sleep(1)


async def main(port: int) -> None:
    pubsub = PubSubService("pubsub")
    make_app(pubsub).listen(port, "127.0.0.1")
    print(f"Open http://127.0.0.1:{port}/", flush=True)
    await publish_clock(pubsub)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    logging.basicConfig(level=logging.INFO)
    try:
        asyncio.run(main(parser.parse_args().port))
    except KeyboardInterrupt:
        pass
