"""Serving a WebSocket connection with Snorky's own frame handling, after Tornado's handshake.

Tornado reads every incoming frame through a chain of coroutines and futures, and
registers and unregisters the socket with the event loop around each read. That costs
more than the rest of an RPC call put together, and the chain stays in memory for as
long as the connection lives. For plain TCP connections, :class:`SnorkyWebSocketHandler
<snorky.request_handlers.websocket.SnorkyWebSocketHandler>` therefore lets Tornado do
the HTTP handshake, then moves the socket from Tornado's stream to
:class:`DirectConnection`, on the same IOLoop.

:class:`DirectConnection` only moves bytes: it reads the socket when the loop says it
is readable and feeds a :class:`~snorky.websocket.connection.ServerConnection`, which
parses frames, checks every rule of RFC 6455 and runs the close handshake; it writes
what that object asks, and frames built once for many connections, at once, queueing
only what the kernel does not take. The socket stays registered with the IOLoop until
it is closed, so ``IOLoop.close(all_fds=True)`` still closes it. What it needs of
Tornado's internals is in :mod:`snorky.request_handlers.tornado_internals`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import socket
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from tornado.ioloop import IOLoop
from tornado.iostream import IOStream

from snorky.request_handlers.tornado_internals import detach_socket, read_leftover
from snorky.websocket.connection import OPEN, SEND_EOF, Pong, ServerConnection
from snorky.websocket.deflate import DeflateParams
from snorky.websocket.frames import CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR, CLOSE_NORMAL, OP_BINARY, OP_TEXT

__all__ = ["DirectConnection", "can_take_over", "take_over", "CLOSE_TIMEOUT"]

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT = 5.0
"""Seconds a peer has, once the closing handshake started, to answer it and close its
side; then the server drops the connection. A well-behaved peer takes one round trip."""

_READ, _WRITE, _ERROR = IOLoop.READ, IOLoop.WRITE, IOLoop.ERROR
# Timers run in one shared, empty context instead of a copy of the current one per timer.
_TIMER_CONTEXT = contextvars.Context()
_RECV_SIZE = 64 * 1024  # larger reads would allocate (mmap) a large buffer for every small message


class _Batch:
    """The unit of write batching on one event loop: the handling of one read (several
    publishes that arrived together, say), or else one turn of the loop (a broker's task
    delivering what it received at once). Frames written to a connection after its first
    in a batch are held, and leave together when the batch ends."""

    __slots__ = ("number", "depth", "scheduled", "held")

    def __init__(self) -> None:
        self.number = 0
        self.depth = 0  # > 0 while a read is handled
        self.scheduled = False  # an end of turn is scheduled (for writes outside reads)
        self.held: list[DirectConnection] = []

    def end_turn(self) -> None:
        self.scheduled = False
        self.number += 1
        self.release()

    def release(self) -> None:
        held, self.held = self.held, []
        for connection in held:
            connection._release()


_NO_BATCH = _Batch()  # until attached
_BATCHES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Batch] = weakref.WeakKeyDictionary()


def _batch_of(loop: asyncio.AbstractEventLoop) -> _Batch:
    batch = _BATCHES.get(loop)
    if batch is None:
        batch = _BATCHES[loop] = _Batch()
    return batch


class DirectConnection:
    """The server side of one WebSocket connection, on a socket registered with the IOLoop.

    Args:
        on_message: called with each complete message (``str`` for text, ``bytes`` for binary).
        on_closed: called once, as soon as the connection stops carrying messages: when
            either side starts the closing handshake, or the socket is lost; with the close
            code and reason the peer sent (``None`` if it sent none yet). The TCP
            connection is then closed in the background.
        max_message_size: largest message accepted; a bigger one closes with 1009.
        ping_interval, ping_timeout: seconds between pings, and to wait for a pong (0: no pings).
        describe: the peer's address, for log lines.
        max_unsent, on_too_slow: ``on_too_slow()`` is called when more than ``max_unsent``
            bytes wait for the kernel to take them (0: no limit).
        deflate: the permessage-deflate parameters negotiated, if any.
        compression_level, compression_min_size: how this connection compresses (see
            :class:`~snorky.websocket.connection.ServerConnection`).
    """

    # Many thousands of these live at once: slots keep each one small.
    __slots__ = (
        "on_message",
        "on_closed",
        "ping_interval",
        "ping_timeout",
        "describe",
        "max_unsent",
        "on_too_slow",
        "protocol",
        "sock",
        "io_loop",
        "open",
        "finished",
        "_notified",
        "_pending",
        "_pending_size",
        "_eof_when_sent",
        "_held_frames",
        "_batch_number",
        "_batch",
        "_eof_sent",
        "_timer",
        "_close_timer",
        "_pong_due",
        "_held",
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
        deflate: DeflateParams | None = None,
        compression_level: int = 6,
        compression_min_size: int = 0,
    ) -> None:
        self.on_message = on_message
        self.on_closed = on_closed
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.describe = describe
        self.max_unsent = max_unsent
        self.on_too_slow = on_too_slow
        self.protocol = ServerConnection(max_message_size, deflate, compression_level, compression_min_size)
        """The connection's RFC 6455 state and parser."""
        self.sock: socket.socket | None = None
        self.io_loop: IOLoop | None = None
        self.open = False
        """True while messages may be written (attached, and no close frame sent or received)."""
        self.finished = False
        """True once the socket is closed."""
        self._notified = False  # on_closed was called
        self._pending: deque[bytes] | None = None  # frames (or their ends) the kernel did not take yet
        self._pending_size = 0
        self._eof_when_sent = False
        self._held_frames: list[bytes] | None = None  # frames held until the current batch ends
        self._batch_number = -1  # the batch during which the last frame was sent at once
        self._batch = _NO_BATCH
        self._eof_sent = False
        self._timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._pong_due = 0.0  # while a ping awaits its pong: when it is overdue
        self._held: list[str | bytes] | None = []  # messages that arrive before start()

    @property
    def deflate(self) -> DeflateParams | None:
        """The permessage-deflate parameters negotiated, if any."""
        return self.protocol.deflate

    def start(self) -> None:
        """Deliver messages from now on (and those that arrived before)."""
        held, self._held = self._held, None
        for message in held or ():
            if not self.open:
                return
            self._deliver(message)

    # Socket ------------------------------------------------------------------------------

    def attach(self, sock: socket.socket, io_loop: IOLoop) -> None:
        """Start serving ``sock`` (non-blocking) on ``io_loop``."""
        self.sock, self.io_loop = sock, io_loop
        self._batch = _batch_of(asyncio.get_running_loop())
        self.open = True
        io_loop.add_handler(sock, self._events, _READ)
        if self.ping_interval:
            self._timer = asyncio.get_running_loop().call_later(self.ping_interval, self._tick, context=_TIMER_CONTEXT)

    def _events(self, fd: Any, events: int) -> None:
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

    def data_received(self, data: bytes) -> None:
        """Feed bytes read from the socket; deliver the messages, write the answers."""
        batch = self._batch
        if batch.depth:
            self._received(data)
            return
        batch.depth = 1
        batch.number += 1
        try:
            self._received(data)
        finally:
            batch.depth = 0
            batch.number += 1
            if batch.held:
                batch.release()

    def _received(self, data: bytes) -> None:
        protocol = self.protocol
        protocol.receive_data(data)
        if protocol.writes:
            # Answers of the protocol's own (pongs, close frames) go out in turn with
            # what the messages before and after them cause.
            for is_write, item in protocol.take_in_order():
                if is_write:
                    self._send_out([item])
                else:
                    self._dispatch([item])
        else:
            events = protocol.events
            if events:
                protocol.events = ()  # events_received(), without the call
                self._dispatch(events)
        if protocol.state != OPEN and self.open:
            failure = protocol.failure
            if failure is not None:
                logger.warning("! closing %s with %d: %s", self.describe, failure.code, failure.why)
            self._closing()

    def _dispatch(self, events: list[Any]) -> None:
        for event in events:
            kind = type(event)
            if kind is str or kind is bytes:
                if not self.open:
                    return
                if self._held is not None:
                    self._held.append(event)
                else:
                    self._deliver(event)
            elif kind is Pong:
                self._pong_due = 0.0

    def _deliver(self, message: str | bytes) -> None:
        try:
            self.on_message(message)
        except Exception:
            logger.exception("! message handler failed for %s", self.describe)
            self.close(CLOSE_INTERNAL_ERROR)

    def write(self, frame: bytes) -> None:
        """Send ``frame`` at once if it is the connection's first in the current batch
        (see :class:`_Batch`); later ones leave together when the batch ends. What the
        kernel refuses is queued (frames never interleave). Nothing is sent once the
        closing handshake has started."""
        if self.open:
            self._send(frame)

    def _send(self, data: bytes) -> None:
        held = self._held_frames
        if held is not None:
            held.append(data)
            return
        if self._pending is None:
            batch = self._batch
            if self._batch_number == batch.number:
                # A second frame in this batch: with TCP_NODELAY every send is a TCP
                # segment, so this one and those after it leave in one piece at its end.
                self._held_frames = [data]
                batch.held.append(self)
                return
            self._batch_number = batch.number
            if not batch.depth and not batch.scheduled:
                batch.scheduled = True  # outside a read, the batch is the loop's turn
                asyncio.get_running_loop().call_soon(batch.end_turn, context=_TIMER_CONTEXT)
        self._send_now(data)

    def _send_now(self, data: bytes) -> None:
        if self._pending is None:
            try:
                sent = self.sock.send(data)  # type: ignore[union-attr]  # attached: sock is set
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._lost()
                return
            if sent == len(data):
                return
            data = data[sent:]
            self.io_loop.update_handler(self.sock, _READ | _WRITE)  # type: ignore[union-attr, arg-type]  # attached
            self._pending = deque()  # made only when needed: an empty deque is over 600 bytes
        self._pending.append(data)
        self._pending_size += len(data)
        if self.max_unsent and self._pending_size > self.max_unsent and self.on_too_slow is not None:
            self.on_too_slow()

    def _release(self) -> None:
        """The batch ended: send the frames held during it, in one piece."""
        held, self._held_frames = self._held_frames, None
        if held and self.sock is not None:
            self._send_now(held[0] if len(held) == 1 else b"".join(held))
            if self._eof_when_sent and self._pending is None:
                self._shutdown()

    def send_message(self, data: bytes, binary: bool = False) -> None:
        """Send one message of this connection's own (compressed if negotiated)."""
        if self.open:
            self._send(self.protocol.message_frame(data, OP_BINARY if binary else OP_TEXT))

    def _send_out(self, writes: list[bytes]) -> None:
        """Write what the protocol asks, even once closing (its close frame)."""
        for data in writes:
            if self.sock is None or self._eof_when_sent:
                return
            if data is SEND_EOF or not data:
                self._eof_when_sent = True
                if self._pending is None and self._held_frames is None:
                    self._shutdown()
                return
            self._send(data)

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
        self.io_loop.update_handler(sock, _READ)  # type: ignore[union-attr]  # attached with sock
        if self._eof_when_sent:
            self._shutdown()

    def _shutdown(self) -> None:
        """Everything is written: end our side of TCP (the peer sees the end of the
        stream after our close frame), and wait for the peer to close its side."""
        sock = self.sock
        if sock is None or self._eof_sent:
            return
        self._eof_sent = True
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._lost()

    def _closing(self) -> None:
        """The closing handshake started: no more messages either way; tell the owner now,
        and give the peer :data:`CLOSE_TIMEOUT` seconds to finish."""
        self.open = False
        self.on_too_slow = None  # closing anyway: a full queue no longer matters
        if self.sock is not None and self._close_timer is None:
            self._close_timer = asyncio.get_running_loop().call_later(
                CLOSE_TIMEOUT, self._close_timed_out, context=_TIMER_CONTEXT
            )
        self._notify()

    def _close_timed_out(self) -> None:
        self._close_timer = None
        if self.sock is not None:
            logger.info("= dropping %s: the closing handshake did not end within %.1f s", self.describe, CLOSE_TIMEOUT)
            self._lost()

    def _notify(self) -> None:
        """Call ``on_closed`` once, soon: not from inside the write or the fan-out that
        closed the connection (the owner's cleanup may change what is being iterated)."""
        if self._notified:
            return
        self._notified = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - closed from outside the loop
            self._notify_now()
        else:
            loop.call_soon(self._notify_now, context=_TIMER_CONTEXT)

    def _notify_now(self) -> None:
        rcvd = self.protocol.close_rcvd
        code, reason = rcvd if rcvd is not None else (None, None)
        self.on_closed(code, reason or None)

    def _lost(self) -> None:
        """The socket is gone (or dropped now): close it, once, and tell ``on_closed``."""
        sock = self.sock
        if sock is None:
            return
        self.sock = None
        self.open = False
        self.io_loop.remove_handler(sock)  # type: ignore[union-attr]  # attached with sock
        sock.close()
        self._pending = None
        self._pending_size = 0
        self._held_frames = None
        for timer in (self._timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._close_timer = None
        self.finished = True
        self.protocol.receive_eof()
        self._notify()

    # Keepalive ---------------------------------------------------------------------------

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._pong_due and now >= self._pong_due:
            logger.info("= closing %s: no pong within %.1f s", self.describe, self.ping_timeout)
            self._timer = None
            self.close(CLOSE_GOING_AWAY, "ping timed out")
            self._lost()  # a dead peer will not answer: no waiting for its close frame
            return
        if not self._pong_due:
            self.protocol.send_ping()
            self._send_out(self.protocol.data_to_send())
            self._pong_due = now + self.ping_timeout
        # Check again at the pong deadline or at the next ping, whichever comes first.
        delay = min(self.ping_interval, self.ping_timeout) if self._pong_due else self.ping_interval
        self._timer = loop.call_later(delay, self._tick, context=_TIMER_CONTEXT)

    # Closing -----------------------------------------------------------------------------

    def close(self, code: int | None = CLOSE_NORMAL, reason: str | None = None) -> None:
        """Start the closing handshake (once): send a close frame; the socket is closed
        when the peer answers, or after :data:`CLOSE_TIMEOUT` seconds."""
        if self.sock is None or self.protocol.state != OPEN:
            return
        self.protocol.send_close(code, reason or "")
        self._send_out(self.protocol.data_to_send())
        self._closing()

    def abort(self) -> None:
        """Drop the socket at once."""
        self._lost()


def can_take_over(stream: Any) -> bool:
    """Whether a Tornado stream is plain TCP (not TLS), whose socket can be taken over."""
    return type(stream) is IOStream and stream.socket is not None and not stream.closed()


def take_over(stream: IOStream, connection: DirectConnection, nodelay: bool = True) -> None:
    """Move ``stream``'s connection to ``connection``; ``stream`` must have nothing left to
    write (see :func:`can_take_over`).

    The stream is unregistered from the IOLoop, ``connection`` gets a duplicate of its
    socket, and the stream's own socket is closed, so that Tornado can close the stream
    later without ending the connection. Bytes Tornado had already read past the
    handshake are fed to ``connection`` first. ``nodelay`` turns Nagle's algorithm off
    (``TCP_NODELAY``), so that a small frame written while an earlier one waits for its
    acknowledgement leaves at once instead of waiting for it (up to the peer's delayed
    ACK, 40 ms on Linux).
    """
    leftover = read_leftover(stream)
    original = detach_socket(stream)
    sock = original.dup()
    sock.setblocking(False)
    original.close()  # the connection lives on in the duplicate
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if nodelay else 0)
    connection.attach(sock, stream.io_loop)
    if leftover:
        connection.data_received(leftover)
