"""A minimal raw WebSocket client for tests that need control Tornado's client hides.

It can refuse to read (a slow client), ignore pings (a dead peer) and see close
frames byte for byte. Built on a plain non-blocking socket and the running loop.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct


def frame(text: str | bytes, opcode: int = 0x1, final: bool = True, masked: bool = True) -> bytes:
    """One client frame; ``final=False`` for all but the last of a fragmented message."""
    payload = text.encode() if isinstance(text, str) else text
    length = len(payload)
    first = (0x80 if final else 0) | opcode
    flag = 0x80 if masked else 0
    if length < 126:
        header = struct.pack("!BB", first, flag | length)
    elif length < 0x10000:
        header = struct.pack("!BBH", first, flag | 126, length)
    else:
        header = struct.pack("!BBQ", first, flag | 127, length)
    if not masked:
        return header + payload
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawWebSocket:
    """One client connection; ``await RawWebSocket.connect(port, path)``."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.buffer = b""
        self.response_head = b""
        """The handshake's response: status line and headers."""

    @classmethod
    async def connect(
        cls,
        port: int,
        path: str = "/ws",
        rcvbuf: int | None = None,
        origin: str | None = None,
        then: bytes = b"",
        extensions: str | None = None,
    ) -> RawWebSocket:
        """Open a connection; ``then`` is sent in the same write as the handshake request;
        ``extensions`` is offered in ``Sec-WebSocket-Extensions``."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            + (f"Origin: {origin}\r\n" if origin else "")
            + (f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else "")
            + "\r\n"
        )
        await loop.sock_sendall(sock, request.encode() + then)
        ws = cls(sock)
        head = await ws._read_until(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            sock.close()
            raise ConnectionError(head.split(b"\r\n")[0].decode())
        ws.response_head = head
        return ws

    def response_header(self, name: str) -> str | None:
        """A header of the handshake's response, or None."""
        for line in self.response_head.decode().split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None

    async def _recv_more(self) -> None:
        data = await self.loop.sock_recv(self.sock, 65536)
        if not data:
            raise ConnectionError("connection closed")
        self.buffer += data

    async def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            await self._recv_more()
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    async def _read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            await self._recv_more()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    async def read_frame(self) -> tuple[int, bytes]:
        """Read one (unfragmented) server frame: ``(opcode, payload)``."""
        _rsv1, opcode, payload = await self.read_frame_rsv()
        return opcode, payload

    async def read_frame_rsv(self) -> tuple[bool, int, bytes]:
        """Read one server frame: ``(rsv1, opcode, payload)``, the payload as sent."""
        first, second = await self._read_exactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self._read_exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self._read_exactly(8))
        return bool(first & 0x40), first & 0x0F, await self._read_exactly(length)

    async def read_eof(self) -> bytes:
        """Read until the server closes the connection; return what came before."""
        while True:
            try:
                data = await self.loop.sock_recv(self.sock, 65536)
            except ConnectionResetError:
                data = b""
            if not data:
                rest, self.buffer = self.buffer, b""
                return rest
            self.buffer += data

    async def read_until_close(self) -> tuple[int | None, int]:
        """Read frames until a close frame; return its code and how many text frames came first."""
        texts = 0
        while True:
            opcode, payload = await self.read_frame()
            if opcode == 0x8:
                return (struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None), texts
            if opcode == 0x1:
                texts += 1

    async def send_text(self, text: str | bytes, opcode: int = 0x1) -> None:
        """Send one masked frame."""
        await self.send_raw(frame(text, opcode))

    async def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (frames built with :func:`frame`)."""
        await self.loop.sock_sendall(self.sock, data)

    def close(self) -> None:
        self.sock.close()
