"""python-socketio 5 on aiohttp: the same pubsub and echo as the other servers, as Socket.IO events.

What a typical python-socketio application does: an ``AsyncServer`` in aiohttp
mode attached to an aiohttp web application, one handler per event, rooms for
channels, and the handlers' return values as the acks:

- ``subscribe`` ``{"channel": name}``: ``enter_room``; acked with nothing (``43K[]``);
- ``publish`` ``{"channel": name, "message": text}``: ``emit("message", {"channel":
  name, "message": text}, room=name)`` to the channel's room, then acked with nothing;
- ``echo`` ``{"message": text}``: acked with ``text``.

Clients connect with the WebSocket transport only, at
``/socket.io/?EIO=4&transport=websocket`` (see ``SocketIOProtocol`` in
``loadgen.py``). The server pings each connection every ``PING_INTERVAL`` seconds
only, so that the benchmarks' idle connections (W3 holds thousands for up to a
minute) are neither pinged nor dropped during a run. It runs in the ``peers``
environment (``benchmarks/envs.py peers``), not Snorky's.

Usage: python benchmarks/servers/socketio_server.py --port 8005
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
from typing import Any

import socketio
from aiohttp import web

PING_INTERVAL = 3600  # seconds between the server's pings; Engine.IO's default is 25
PING_TIMEOUT = 600  # seconds a client has to answer one; the default is 20
MAX_MESSAGE = 1_000_000  # bytes in one incoming message (the check publishes 60,000 characters)

sio = socketio.AsyncServer(
    async_mode="aiohttp",
    transports=["websocket"],
    ping_interval=PING_INTERVAL,
    ping_timeout=PING_TIMEOUT,
    max_http_buffer_size=MAX_MESSAGE,
    logger=False,
    engineio_logger=False,
)


@sio.event
async def subscribe(sid: str, data: dict[str, Any]) -> None:
    await sio.enter_room(sid, data["channel"])


@sio.event
async def publish(sid: str, data: dict[str, Any]) -> None:
    channel = data["channel"]
    await sio.emit("message", {"channel": channel, "message": data["message"]}, room=channel)


@sio.event
async def echo(sid: str, data: dict[str, Any]) -> Any:
    return data["message"]


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def main(port: int, host: str) -> None:
    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=4096).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    raise_nofile()
    try:
        asyncio.run(main(args.port, args.host))
    except KeyboardInterrupt:
        pass
