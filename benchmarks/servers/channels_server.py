"""Django Channels 4 on daphne, with the in-memory channel layer, speaking Snorky's pubsub protocol.

What a typical Channels application does: one ``AsyncWebsocketConsumer`` at
``/ws`` (a ``ProtocolTypeRouter`` and a ``URLRouter``), channels as groups of
the channel layer, and a handler per event type:

- ``subscribe`` of service ``pubsub``: ``group_add`` of the consumer's channel
  to the channel's group, then the response;
- ``publish``: one ``group_send`` of a ``pubsub.message`` event to the group,
  then the response; each member's ``pubsub_message`` handler encodes the
  delivery and sends it (as in the Channels tutorial's chat room, so the
  delivery is encoded once per subscriber);
- ``echo`` of service ``echo``: answers its ``message`` parameter.

Every frame is encoded with ``json.dumps(..., separators=(",", ":"))`` with the
keys in the same order as ``tornado_plain.py``'s: the same bytes as the other
servers, errors (``already_subscribed``, ``unknown_command``) included. Group
names take ``pubsub.`` and the channel's name when that makes a valid Channels
group name (ASCII letters, digits, ``-_.``, under 100 characters), else a digest
of it.

The settings are a minimal Django configuration made here (no database, no
middleware stack), and daphne runs in this process (``daphne.server.Server``, as
the ``daphne`` command does), with its default WebSocket ping every 20 s, no
access log, and a listen backlog of 4096 like the other servers (Twisted's
default is 50). The channel layer is ``InMemoryChannelLayer``, one process:

- its default ``capacity`` is 100 messages per channel (each consumer has a
  channel of its own), and ``group_send`` silently drops a message for a member
  whose channel is full: under load (a publisher ahead of slow subscribers) the
  default loses deliveries. ``CAPACITY`` below (a million) is set so that
  nothing is dropped in the benchmarks; the price is that a backlog is bounded
  only by memory;
- a message still queued after its ``expiry`` (60 s by default) is dropped
  and its channel leaves every group. A delivery waits in its queue about
  (publishes in flight) / (publishes per second), over a second at N = 200
  already, and the rate falls as N grows: ``EXPIRY`` below (an hour) is set so
  that a large run does not lose messages to it either.

Channels' own per-message costs are kept as they are (a profile at N = 200
shows the last two as the largest): the layer deep-copies the event for each
member and ``group_send`` makes one task per member; every ``receive`` of the
in-memory layer (one per event a consumer gets) first sweeps every queued
channel and every group's members for expired entries, so its cost per delivery
grows with the number of subscribers; and every event a consumer dispatches (a
request or a delivery) first awaits ``aclose_old_connections()`` (Django's
``close_old_connections`` through ``sync_to_async``, a trip to a worker
thread).

It runs in the ``peers`` environment (``python benchmarks/envs.py peers``), not
Snorky's.

Usage: python benchmarks/servers/channels_server.py --port 8004
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import resource
from typing import Any

# daphne.server installs Twisted's asyncio reactor: it goes before anything that imports Twisted.
from daphne.server import Server  # isort: skip
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.conf import settings
from django.urls import path

SERVICE = "pubsub"
CAPACITY = 1_000_000  # messages per channel (the default, 100, drops deliveries under load)
EXPIRY = 3600  # seconds a message may wait in a channel (the default, 60, drops slow deliveries)
GROUP_NAME = re.compile(r"[a-zA-Z0-9_.-]{1,90}")


def dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def group_for(channel: str) -> str:
    """The channel layer's group for pubsub channel ``channel``."""
    if GROUP_NAME.fullmatch(channel):
        return f"pubsub.{channel}"
    return "pubsub.sha256." + hashlib.sha256(channel.encode()).hexdigest()


class PubSubConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.subscribed: set[str] = set()
        await self.accept()

    async def reply(self, call_id: object, data: object = None) -> None:
        await self.send(
            text_data=dumps({"service": SERVICE, "message": {"type": "response", "callId": call_id, "data": data}})
        )

    async def error(self, call_id: object, text: str, code: str) -> None:
        body = {"type": "error", "callId": call_id, "message": text, "code": code}
        await self.send(text_data=dumps({"service": SERVICE, "message": body}))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            envelope = json.loads(text_data if text_data is not None else bytes_data)
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
            await self.send(text_data=dumps({"service": "echo", "message": body}))
            return
        if command == "subscribe":
            channel = params["channel"]
            if channel in self.subscribed:
                await self.error(call_id, "Already subscribed", "already_subscribed")
                return
            self.subscribed.add(channel)
            await self.channel_layer.group_add(group_for(channel), self.channel_name)
            await self.reply(call_id)
        elif command == "publish":
            channel = params["channel"]
            event = {"type": "pubsub.message", "channel": channel, "message": params["message"]}
            await self.channel_layer.group_send(group_for(channel), event)
            await self.reply(call_id)
        else:
            await self.error(call_id, "Unknown command", "unknown_command")

    async def pubsub_message(self, event: dict[str, Any]) -> None:
        """A ``pubsub.message`` event of one of this consumer's groups: deliver it."""
        body = {"type": "message", "channel": event["channel"], "message": event["message"]}
        await self.send(text_data=dumps({"service": SERVICE, "message": body}))

    async def disconnect(self, code: int) -> None:
        for channel in getattr(self, "subscribed", ()):
            await self.channel_layer.group_discard(group_for(channel), self.channel_name)


def configure() -> None:
    """The Django settings of this one-file project."""
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["channels"],
        DATABASES={},
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "channels.layers.InMemoryChannelLayer",
                "CONFIG": {"capacity": CAPACITY, "expiry": EXPIRY},
            }
        },
        LOGGING_CONFIG=None,
    )
    import django

    django.setup()


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serve(port: int, host: str) -> None:
    configure()
    application = ProtocolTypeRouter({"websocket": URLRouter([path("ws", PubSubConsumer.as_asgi())])})
    interface = host.strip("[]").replace(":", r"\:")
    Server(application, endpoints=[f"tcp:port={port}:interface={interface}:backlog=4096"], verbosity=0).run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    raise_nofile()
    serve(args.port, args.host)
