"""Tutorial, step 1: a Snorky server with one PubSub service, and the page of step 2.

Run ``python server.py --port 8000`` and open http://127.0.0.1:8000/ in two tabs.
"""

import argparse
import asyncio
from pathlib import Path

from tornado.web import Application, StaticFileHandler

from snorky import ServiceRegistry
from snorky.request_handlers.websocket import SnorkyWebSocketHandler
from snorky.services.pubsub import PubSubService

PAGE_FOLDER = Path(__file__).parent / "static"


def make_app(pubsub: PubSubService) -> Application:
    """WebSocket at /ws, and the page (static/index.html) at /."""
    registry = ServiceRegistry([pubsub])
    return Application(
        [
            SnorkyWebSocketHandler.get_route(registry, "/ws"),
            (r"/(.*)", StaticFileHandler, {"path": PAGE_FOLDER, "default_filename": "index.html"}),
        ]
    )


async def main(port: int) -> None:
    make_app(PubSubService("pubsub")).listen(port, "127.0.0.1")
    print(f"Open http://127.0.0.1:{port}/", flush=True)
    await asyncio.Event().wait()  # serve until interrupted


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    asyncio.run(main(parser.parse_args().port))
