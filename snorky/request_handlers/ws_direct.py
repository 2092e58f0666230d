"""Serving a WebSocket connection with Snorky's own frame handling, after Tornado's handshake.

Tornado reads every incoming frame through a chain of coroutines and futures, and
registers and unregisters the socket with the event loop around each read. That costs
more than the rest of an RPC call put together, and the chain stays in memory for as
long as the connection lives. For plain TCP connections without compression,
:class:`SnorkyWebSocketHandler` therefore lets Tornado do the HTTP handshake, then moves
the socket from Tornado's stream to :class:`DirectConnection`, which speaks RFC 6455
itself on the same IOLoop: it reads the socket when the loop says it is readable, parses
frames in ``data_received``, and sends each frame at once, queueing only what the kernel
does not take. The socket stays registered with the IOLoop, so ``IOLoop.close(all_fds=True)``
still closes it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

from tornado.ioloop import IOLoop
from tornado.iostream import IOStream

from snorky.protocol import websocket_frame

__all__ = ["DirectConnection", "take_over"]

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT = 5.0
"""Seconds to wait for the peer's close frame after sending ours, before dropping the socket."""

_OP_CONTINUATION, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# Close codes (RFC 6455, section 7.4.1) this module sends on its own.
_PROTOCOL_ERROR, _INVALID_DATA, _TOO_BIG = 1002, 1007, 1009


def unmask(mask: bytes, data: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask``, repeated (as one big integer: fast in CPython)."""
    size = len(data)
    if not size:
        return data
    key = int.from_bytes((mask * (size // 4 + 1))[:size], "little")
    return (int.from_bytes(data, "little") ^ key).to_bytes(size, "little")


_READ, _WRITE, _ERROR = IOLoop.READ, IOLoop.WRITE, IOLoop.ERROR
# Ping timers run in one shared, empty context instead of a copy of the current one per timer.
_TIMER_CONTEXT = contextvars.Context()
_RECV_SIZE = 64 * 1024


class DirectConnection:
    """The server side of one WebSocket connection, on a socket registered with the IOLoop.

    Args:
        on_message: called with each complete message (``str`` for text, ``bytes`` for binary).
        on_closed: called once, when the connection is gone, with the close code and reason
            the peer sent (``None`` if it sent none).
        max_message_size: largest message accepted; a bigger one closes with 1009.
        ping_interval, ping_timeout: seconds between pings, and to wait for a pong (0: no pings).
        describe: the peer's address, for log lines.
        max_unsent, on_too_slow: ``on_too_slow()`` is called when more than ``max_unsent``
            bytes wait for the kernel to take them (0: no limit).
    """

    # Many thousands of these live at once: slots keep each one small.
    __slots__ = (
        "on_message",
        "on_closed",
        "max_message_size",
        "ping_interval",
        "ping_timeout",
        "describe",
        "sock",
        "io_loop",
        "finished",
        "close_sent",
        "peer_code",
        "peer_reason",
        "_pending",
        "_pending_size",
        "_close_when_sent",
        "_buffer",
        "_fragments",
        "_fragments_size",
        "_fragments_opcode",
        "_timer",
        "_pong_due",
        "_held",
        "max_unsent",
        "on_too_slow",
    )

    def __init__(
        self,
        on_message: Callable[[str | bytes], Any],
        on_closed: Callable[[int | None, str | None], Any],
        max_message_size: int,
        ping_interval: float = 0.0,
        ping_timeout: float = 0.0,
        describe: str = "peer",
        max_unsent: int = 0,
        on_too_slow: Callable[[], Any] | None = None,
    ) -> None:
        self.on_message = on_message
        self.on_closed = on_closed
        self.max_message_size = max_message_size
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.describe = describe
        self.max_unsent = max_unsent
        self.on_too_slow = on_too_slow
        self.sock: socket.socket | None = None
        self.io_loop: IOLoop | None = None
        self._pending: deque[bytes] | None = None  # frames (or their ends) the kernel did not take yet
        self._pending_size = 0
        self._close_when_sent = False
        self.finished = False  # True once the connection is gone
        self.close_sent = False
        self.peer_code: int | None = None
        self.peer_reason: str | None = None
        self._buffer = b""
        self._fragments: list[bytes] = []  # of the message being reassembled
        self._fragments_size = 0
        self._fragments_opcode = 0
        self._timer: asyncio.TimerHandle | None = None
        self._pong_due = 0.0  # while a ping awaits its pong: when it is overdue
        self._held: list[str | bytes] | None = []  # messages that arrive before start()

    def start(self) -> None:
        """Deliver messages from now on (and those that arrived before)."""
        held, self._held = self._held, None
        for message in held or ():
            if self.close_sent:
                return
            self._deliver(message)

    # Socket ------------------------------------------------------------------------------

    def attach(self, sock: socket.socket, io_loop: IOLoop) -> None:
        """Start serving ``sock`` (non-blocking) on ``io_loop``."""
        self.sock, self.io_loop = sock, io_loop
        io_loop.add_handler(sock, self._events, _READ)
        if self.ping_interval:
            self._timer = asyncio.get_running_loop().call_later(self.ping_interval, self._tick, context=_TIMER_CONTEXT)

    def _events(self, fd: int, events: int) -> None:
        if events & _WRITE:
            self._flush()
        if events & _READ and self.sock is not None:
            try:
                data = self.sock.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._lost()
                return
            if not data:
                self._lost()
                return
            self.data_received(data)
        elif events & _ERROR:
            self._lost()

    def write(self, frame: bytes) -> None:
        """Send ``frame`` now, or queue what the kernel does not take (frames never interleave).
        Nothing is sent after the close frame."""
        sock = self.sock
        if sock is None or self.close_sent:
            return
        if self._pending is None:
            try:
                sent = sock.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._lost()
                return
            if sent == len(frame):
                return
            frame = frame[sent:]
            self.io_loop.update_handler(sock, _READ | _WRITE)  # type: ignore[union-attr]
            self._pending = deque()  # made only when needed: an empty deque is over 600 bytes
        self._pending.append(frame)
        self._pending_size += len(frame)
        if self.max_unsent and self._pending_size > self.max_unsent and self.on_too_slow is not None:
            self.on_too_slow()

    def _flush(self) -> None:
        sock, pending = self.sock, self._pending
        while pending and sock is not None:
            chunk = pending[0]
            try:
                sent = sock.send(chunk)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._lost()
                return
            self._pending_size -= sent
            if sent < len(chunk):
                pending[0] = chunk[sent:]
                return
            pending.popleft()
        if sock is None:
            return
        self._pending = None
        if self._close_when_sent:
            self._lost()
        else:
            self.io_loop.update_handler(sock, _READ)  # type: ignore[union-attr]

    def _finish(self) -> None:
        """Close the socket once everything queued is sent."""
        if self._pending is not None:
            self._close_when_sent = True
        else:
            self._lost()

    def _lost(self) -> None:
        """The socket is gone (or dropped now): close it, once, and tell ``on_closed``."""
        sock = self.sock
        if sock is None:
            return
        self.sock = None
        self.io_loop.remove_handler(sock)  # type: ignore[union-attr]
        sock.close()
        self._pending = None
        self._pending_size = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.finished = True
        self.on_closed(self.peer_code, self.peer_reason)

    def data_received(self, data: bytes) -> None:
        if self._buffer:
            data = self._buffer + data
        pos, size = 0, len(data)
        while size - pos >= 2 and not self.close_sent:
            b0, b1 = data[pos], data[pos + 1]
            length = b1 & 0x7F
            head = pos + 2
            if length == 126:
                if size - head < 2:
                    break
                length = (data[head] << 8) | data[head + 1]
                head += 2
            elif length == 127:
                if size - head < 8:
                    break
                length = int.from_bytes(data[head : head + 8], "big")
                head += 8
            if not b1 & 0x80 or b0 & 0x70:
                self._fail(_PROTOCOL_ERROR, "unmasked frame or reserved bits set")
                return
            if length > self.max_message_size or self._fragments_size + length > self.max_message_size:
                self._too_big()
                return
            end = head + 4 + length
            if end > size:
                break
            payload = unmask(data[head : head + 4], data[head + 4 : end])
            pos = end
            self._frame(b0 & 0x80, b0 & 0x0F, payload)
        self._buffer = data[pos:] if pos < size and not self.close_sent else b""

    # Frames ------------------------------------------------------------------------------

    def _frame(self, final: int, opcode: int, payload: bytes) -> None:
        if opcode >= 0x8:  # control frames: never fragmented, at most 125 bytes
            if not final or len(payload) > 125:
                self._fail(_PROTOCOL_ERROR, "bad control frame")
            elif opcode == _OP_PING:
                self.write(websocket_frame(payload, _OP_PONG))
            elif opcode == _OP_PONG:
                self._pong_due = 0.0
            elif opcode == _OP_CLOSE:
                self._peer_closed(payload)
            else:
                self._fail(_PROTOCOL_ERROR, f"unknown opcode {opcode}")
            return
        if opcode == _OP_CONTINUATION:
            if not self._fragments_opcode:
                self._fail(_PROTOCOL_ERROR, "continuation of nothing")
                return
        elif opcode in (_OP_TEXT, _OP_BINARY):
            if self._fragments_opcode:
                self._fail(_PROTOCOL_ERROR, "new message inside a fragmented one")
                return
            if final:
                self._message(opcode, payload)
                return
            self._fragments_opcode = opcode
        else:
            self._fail(_PROTOCOL_ERROR, f"unknown opcode {opcode}")
            return
        self._fragments.append(payload)
        self._fragments_size += len(payload)
        if final:
            opcode, payload = self._fragments_opcode, b"".join(self._fragments)
            self._fragments, self._fragments_size, self._fragments_opcode = [], 0, 0
            self._message(opcode, payload)

    def _message(self, opcode: int, payload: bytes) -> None:
        if opcode == _OP_TEXT:
            try:
                message: str | bytes = payload.decode("utf-8")
            except UnicodeDecodeError:
                self._fail(_INVALID_DATA, "text message that is not UTF-8")
                return
        else:
            message = payload
        if self._held is not None:
            self._held.append(message)
            return
        self._deliver(message)

    def _deliver(self, message: str | bytes) -> None:
        try:
            self.on_message(message)
        except Exception:
            logger.exception("! message handler failed for %s", self.describe)
            self.close(1011)

    def _peer_closed(self, payload: bytes) -> None:
        if len(payload) >= 2:
            self.peer_code = struct.unpack("!H", payload[:2])[0]
            self.peer_reason = payload[2:].decode("utf-8", "replace") or None
        if not self.close_sent:
            self.on_too_slow = None  # closing anyway: a full queue no longer matters
            self.write(websocket_frame(payload[:2], _OP_CLOSE))
            self.close_sent = True
        self._finish()

    def _fail(self, code: int, why: str) -> None:
        logger.warning("! closing %s: %s", self.describe, why)
        self.close(code)

    def _too_big(self) -> None:
        logger.warning("! closing %s: message too big (over %d bytes)", self.describe, self.max_message_size)
        self.close(_TOO_BIG, "Message too big")

    # Keepalive ---------------------------------------------------------------------------

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._pong_due and now >= self._pong_due:
            logger.info("= closing %s: no pong within %.1f s", self.describe, self.ping_timeout)
            self._timer = None
            self.close(1001, "ping timed out")
            self._finish()  # a dead peer will not answer: no waiting for its close frame
            return
        if not self._pong_due:
            self.write(websocket_frame(b"", _OP_PING))
            self._pong_due = now + self.ping_timeout
        # Check again at the pong deadline or at the next ping, whichever comes first.
        delay = min(self.ping_interval, self.ping_timeout) if self._pong_due else self.ping_interval
        self._timer = loop.call_later(delay, self._tick, context=_TIMER_CONTEXT)

    # Sending and closing -----------------------------------------------------------------

    def close(self, code: int | None = 1000, reason: str | None = None) -> None:
        """Send a close frame (once) and drop the socket when the peer answers, or after
        :data:`CLOSE_TIMEOUT` seconds."""
        if self.close_sent or self.sock is None:
            return
        payload = b""
        if code is not None:
            payload = struct.pack("!H", code) + (reason or "").encode("utf-8")[:123]
        self.on_too_slow = None  # closing anyway: a full queue no longer matters
        self.write(websocket_frame(payload, _OP_CLOSE))
        self.close_sent = True
        asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.abort)

    def abort(self) -> None:
        """Drop the socket at once."""
        self._lost()


def can_take_over(stream: Any) -> bool:
    """Whether a Tornado stream is plain TCP (not TLS), whose socket can be taken over."""
    return type(stream) is IOStream and stream.socket is not None and not stream.closed()


def take_over(stream: IOStream, connection: DirectConnection, nodelay: bool = False) -> None:
    """Move ``stream``'s connection to ``connection``; ``stream`` must have nothing left to
    write (see :func:`can_take_over`).

    The stream is unregistered from the IOLoop, ``connection`` gets a duplicate of its
    socket, and the stream's own socket is closed, so that Tornado can close the stream
    later without ending the connection. Bytes Tornado had already read past the
    handshake are fed to ``connection`` first. Nagle's algorithm stays as Tornado left
    it (on) unless ``nodelay``.
    """
    assert not stream.writing()
    # Tornado keeps what it read beyond the handshake (a client may send its first frame
    # in the same segment) in its private read buffer.
    leftover = bytes(stream._read_buffer[: stream._read_buffer_size])  # type: ignore[attr-defined]
    original = stream.socket
    if stream._state is not None:  # type: ignore[attr-defined]
        stream.io_loop.remove_handler(original)
        stream._state = None  # type: ignore[attr-defined]
    sock = original.dup()
    sock.setblocking(False)
    original.close()  # the connection lives on in the duplicate
    if nodelay:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    connection.attach(sock, stream.io_loop)
    if leftover:
        connection.data_received(leftover)
