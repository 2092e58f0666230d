"""The floor: Snorky's pubsub protocol on raw asyncio, as cheap as Python gets.

A minimal RFC 6455 server (handshake, masked client frames, fragmentation, ping
and close) on ``asyncio.Protocol``. A publish is encoded and framed ONCE and the
same bytes are written to every subscriber's transport. Only the commands the
benchmarks use are implemented: ``subscribe`` and ``publish`` of service
``pubsub``, and ``echo`` (answers its ``message`` parameter) of service ``echo``.

Usage: python benchmarks/servers/floor.py --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import logging
import resource
import socket
import struct

SERVICE = "pubsub"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_MESSAGE = 64 * 1024
NODELAY = False  # --nodelay: keep asyncio's TCP_NODELAY (Nagle off)
channels: dict[str, set[asyncio.Transport]] = {}


def dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One final, unmasked server frame."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x80 | opcode, n) + payload
    if n < 0x10000:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


def unmask(mask: bytes, data: bytes) -> bytes:
    n = len(data)
    if not n:
        return data
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
    return (int.from_bytes(data, "little") ^ key).to_bytes(n, "little")


class WebSocket(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.upgraded = False
        self.fragments: list[bytes] = []
        self.channels: set[str] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not NODELAY:
            # asyncio turns Nagle's algorithm off; Tornado leaves it on for WebSockets.
            transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)

    def connection_lost(self, exc: Exception | None) -> None:
        for channel in self.channels:
            subscribers = channels.get(channel)
            if subscribers is not None:
                subscribers.discard(self.transport)  # type: ignore[arg-type]
                if not subscribers:
                    del channels[channel]
        self.channels.clear()

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 16384:
                    self.transport.close()  # type: ignore[union-attr]
                self.buf = buf
                return
            if not self.handshake(buf[:end]):
                return
            buf = buf[end + 4 :]
        self.buf = self.frames(buf)

    def handshake(self, head: bytes) -> bool:
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        key = headers.get("sec-websocket-key")
        if not lines[0].startswith("GET ") or headers.get("upgrade", "").lower() != "websocket" or not key:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")  # type: ignore[union-attr]
            self.transport.close()  # type: ignore[union-attr]
            return False
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest())
        self.transport.write(  # type: ignore[union-attr]
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.upgraded = True
        return True

    def frames(self, buf: bytes) -> bytes:
        """Handle every complete frame in ``buf``; return the incomplete rest."""
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            head = pos + 2
            if length == 126:
                if size - head < 2:
                    break
                length = int.from_bytes(buf[head : head + 2], "big")
                head += 2
            elif length == 127:
                if size - head < 8:
                    break
                length = int.from_bytes(buf[head : head + 8], "big")
                head += 8
            if not b1 & 0x80 or length > MAX_MESSAGE:  # client frames must be masked
                self.close(1002 if not b1 & 0x80 else 1009)
                return b""
            if size - head < 4 + length:
                break
            payload = unmask(buf[head : head + 4], buf[head + 4 : head + 4 + length])
            pos = head + 4 + length
            opcode = b0 & 0x0F
            if opcode >= 0x8:  # control frame
                if opcode == 0x8:
                    self.close(1000)
                    return b""
                if opcode == 0x9:
                    self.transport.write(frame(payload, 0xA))  # type: ignore[union-attr]
                continue
            self.fragments.append(payload)
            if len(self.fragments) > 1 and sum(map(len, self.fragments)) > MAX_MESSAGE:
                self.close(1009)
                return b""
            if b0 & 0x80:
                message = b"".join(self.fragments) if len(self.fragments) > 1 else payload
                self.fragments = []
                self.on_message(message)
        return buf[pos:]

    def close(self, code: int) -> None:
        self.transport.write(frame(struct.pack("!H", code), 0x8))  # type: ignore[union-attr]
        self.transport.close()  # type: ignore[union-attr]

    def send(self, value: object, service: str = SERVICE) -> None:
        self.transport.write(frame(dumps({"service": service, "message": value})))  # type: ignore[union-attr]

    def on_message(self, raw: bytes) -> None:
        try:
            envelope = json.loads(raw)
            service = envelope.get("service")
            msg = envelope["message"]
            command = msg["command"]
            params = msg.get("params", {})
            call_id = msg.get("callId")
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        if service == "echo":
            if command == "echo" and "message" in params:
                self.send({"type": "response", "callId": call_id, "data": params["message"]}, service)
            else:
                self.send(
                    {"type": "error", "callId": call_id, "message": "Unknown command", "code": "unknown_command"},
                    service,
                )
            return
        if command == "subscribe":
            channel = params["channel"]
            if channel in self.channels:
                self.send(
                    {"type": "error", "callId": call_id, "message": "Already subscribed", "code": "already_subscribed"}
                )
                return
            self.channels.add(channel)
            channels.setdefault(channel, set()).add(self.transport)  # type: ignore[arg-type]
        elif command == "publish":
            channel = params["channel"]
            out = frame(
                dumps(
                    {
                        "service": SERVICE,
                        "message": {"type": "message", "channel": channel, "message": params["message"]},
                    }
                )
            )
            for transport in channels.get(channel, ()):
                transport.write(out)
        else:
            self.send({"type": "error", "callId": call_id, "message": "Unknown command", "code": "unknown_command"})
            return
        self.send({"type": "response", "callId": call_id, "data": None})


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def main(port: int, host: str) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(WebSocket, host, port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--nodelay", action="store_true", help="keep TCP_NODELAY on (asyncio's default)")
    args = parser.parse_args()
    NODELAY = args.nodelay
    logging.basicConfig(level=logging.WARNING)
    raise_nofile()
    try:
        asyncio.run(main(args.port, args.host))
    except KeyboardInterrupt:
        pass
