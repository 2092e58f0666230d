"""A chat room with presence, on signed tokens, and a page on the browser's WebSocket.

Run ``python examples/chat/server.py --port 8000`` and open http://127.0.0.1:8000/
in two windows with two names. ``/token?name=...`` stands in for your
application's login: it signs a token for whatever name it is given, which a
real application would only do for a user who proved who they are.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
from pathlib import Path

from tornado.web import Application, HTTPError, RedirectHandler, RequestHandler, StaticFileHandler

from snorky import ServiceRegistry
from snorky.backend import sign_token
from snorky.request_handlers.websocket import SnorkyWebSocketHandler
from snorky.services.auth import AuthService
from snorky.services.chat import ChatService

STATIC = Path(__file__).parent / "static"


class DemoTokenHandler(RequestHandler):
    """Signs a one-hour token for ``?name=`` (a demo stand-in for a real login)."""

    def initialize(self, secret: str) -> None:
        self.secret = secret

    def get(self) -> None:
        name = self.get_query_argument("name", "").strip()
        if not name or len(name) > 40:
            raise HTTPError(400, "name must be 1 to 40 characters")
        self.finish({"token": sign_token(name, self.secret, ttl=3600, info={"name": name})})


def make_app(secret: str | None = None) -> Application:
    """The example's application: page at ``/``, tokens at ``/token``, WebSocket at ``/ws``."""
    secret = secret or secrets.token_urlsafe(32)
    registry = ServiceRegistry([AuthService("auth", secret=secret), ChatService("chat", history_size=20)])
    return Application(
        [
            SnorkyWebSocketHandler.get_route(registry, "/ws"),
            (r"/token", DemoTokenHandler, {"secret": secret}),
            (r"/", RedirectHandler, {"url": "/static/index.html"}),
            (r"/static/(.*)", StaticFileHandler, {"path": STATIC}),
        ]
    )


async def main(port: int) -> None:
    make_app().listen(port, "127.0.0.1")
    print(f"Open http://127.0.0.1:{port}/", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    logging.basicConfig(level=logging.INFO)
    try:
        asyncio.run(main(parser.parse_args().port))
    except KeyboardInterrupt:
        pass
