"""A plain Tornado 6 WebSocketHandler speaking Snorky's pubsub protocol.

What a typical Tornado application does: decode each frame with the stdlib
``json``, encode each publish once, and call ``write_message(text)`` for every
subscriber. Only the commands the benchmarks use are implemented:
``subscribe`` and ``publish`` of service ``pubsub``, and ``echo`` (answers its
``message`` parameter) of service ``echo``.

Usage: python benchmarks/servers/tornado_plain.py --port 8002
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
from collections import defaultdict

from tornado.web import Application
from tornado.websocket import WebSocketClosedError, WebSocketHandler

SERVICE = "pubsub"
channels: defaultdict[str, set[PubSubHandler]] = defaultdict(set)


def dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


class PubSubHandler(WebSocketHandler):
    def open(self) -> None:
        self.channels: set[str] = set()

    def reply(self, call_id: object, data: object = None) -> None:
        self.write_message(
            dumps({"service": SERVICE, "message": {"type": "response", "callId": call_id, "data": data}})
        )

    def error(self, call_id: object, text: str, code: str) -> None:
        body = {"type": "error", "callId": call_id, "message": text, "code": code}
        self.write_message(dumps({"service": SERVICE, "message": body}))

    def on_message(self, message: str | bytes) -> None:
        try:
            envelope = json.loads(message)
            service = envelope.get("service")
            msg = envelope["message"]
            command = msg["command"]
            params = msg.get("params", {})
            call_id = msg.get("callId")
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        if service == "echo":
            if command == "echo" and "message" in params:
                body = {"type": "response", "callId": call_id, "data": params["message"]}
            else:
                body = {"type": "error", "callId": call_id, "message": "Unknown command", "code": "unknown_command"}
            self.write_message(dumps({"service": "echo", "message": body}))
            return
        if command == "subscribe":
            channel = params["channel"]
            if channel in self.channels:
                self.error(call_id, "Already subscribed", "already_subscribed")
                return
            self.channels.add(channel)
            channels[channel].add(self)
            self.reply(call_id)
        elif command == "publish":
            channel = params["channel"]
            text = dumps(
                {
                    "service": SERVICE,
                    "message": {"type": "message", "channel": channel, "message": params["message"]},
                }
            )
            for handler in list(channels.get(channel, ())):
                try:
                    handler.write_message(text)
                except WebSocketClosedError:
                    pass
            self.reply(call_id)
        else:
            self.error(call_id, "Unknown command", "unknown_command")

    def on_close(self) -> None:
        for channel in getattr(self, "channels", ()):
            subscribers = channels.get(channel)
            if subscribers is not None:
                subscribers.discard(self)
                if not subscribers:
                    del channels[channel]


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def main(port: int, host: str) -> None:
    app = Application([("/ws", PubSubHandler)])
    app.listen(port, host, backlog=4096)
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
