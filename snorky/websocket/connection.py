"""The server side of one WebSocket connection, without I/O (RFC 6455 after the handshake).

A :class:`ServerConnection` is fed what the socket reads (:meth:`~ServerConnection.receive_data`,
:meth:`~ServerConnection.receive_eof`), and is told what to send
(:meth:`~ServerConnection.send_text`, :meth:`~ServerConnection.send_close`, ...). It
answers with events (:meth:`~ServerConnection.events_received`: each text message as a
``str``, each binary message as ``bytes``, and :class:`Ping` and :class:`Pong`) and
with the bytes to write (:meth:`~ServerConnection.data_to_send`, where
:data:`SEND_EOF` asks to close the TCP connection once the rest is written).

It owns the close handshake (RFC 6455, 7):

- the peer closes: its close frame is checked and echoed, and the server closes TCP;
- the server closes (:meth:`~ServerConnection.send_close`): frames that still arrive
  are parsed but not delivered, until the peer's close frame, after which the server
  closes TCP (so the transport needs no timer unless the peer never answers);
- the peer breaks the protocol (:meth:`~ServerConnection.fail`): the server sends a
  close frame with the code that says why (1002, 1007, 1009) and closes TCP, reading
  nothing more.

Frames that a fan-out builds once for many connections
(:func:`~snorky.websocket.frames.websocket_frame`) are written by the transport
directly while :attr:`~ServerConnection.state` is :data:`OPEN`.
"""

from __future__ import annotations

import codecs
from typing import Any

from snorky.websocket.deflate import DeflateParams, Inflater, compress_message, window_bits_for
from snorky.websocket.frames import (
    CLOSE_INVALID_DATA,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameError,
    close_payload,
    parse_close,
    unmask,
    websocket_frame,
)

__all__ = ["OPEN", "CLOSING", "CLOSED", "SEND_EOF", "Ping", "Pong", "ServerConnection"]

OPEN = 1
"""The connection carries messages."""
CLOSING = 2
"""A close frame was sent or received; the TCP connection is not closed yet."""
CLOSED = 3
"""The TCP connection is closed (:meth:`ServerConnection.receive_eof`)."""

SEND_EOF = b""
"""In :meth:`ServerConnection.data_to_send`: close the TCP connection after what came before."""

_LARGE = 64 * 1024
"""A frame still missing more than this many bytes is collected in pieces, joined once
complete, instead of being joined again with every read (which is quadratic)."""


class Ping:
    """A ping the peer sent (already answered with a pong)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Ping({self.data!r})"


class Pong:
    """A pong the peer sent."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Pong({self.data!r})"


class ServerConnection:
    """One WebSocket connection after the handshake, as the server sees it (sans I/O).

    Args:
        max_message_size: largest message accepted (after decompression); a bigger one
            fails the connection with 1009 as soon as a frame header announces it.
        deflate: the permessage-deflate parameters negotiated at the handshake, if any.
        compression_level: zlib level for what :meth:`send_text` and
            :meth:`send_binary` compress.
        compression_min_size: messages shorter than this are sent uncompressed.
    """

    # Thousands of these live at once: slots keep each one small.
    __slots__ = (
        "max_message_size",
        "deflate",
        "compression_level",
        "compression_min_size",
        "state",
        "events",
        "writes",
        "_marks",
        "close_rcvd",
        "close_sent",
        "failure",
        "eof_sent",
        "_discard",
        "_buffer",
        "_parts",
        "_parts_size",
        "_need",
        "_opcode",
        "_compressed",
        "_wire_size",
        "_size",
        "_pieces",
        "_decoder",
        "_inflater",
    )

    def __init__(
        self,
        max_message_size: int,
        deflate: DeflateParams | None = None,
        compression_level: int = 6,
        compression_min_size: int = 0,
    ) -> None:
        self.max_message_size = max_message_size
        self.deflate = deflate
        self.compression_level = compression_level
        self.compression_min_size = compression_min_size
        self.state = OPEN
        # Each of these is an empty tuple while empty (a list for each of thousands of
        # idle connections would cost 56 bytes apiece).
        self.events: Any = ()
        """Received and not yet taken by :meth:`events_received`."""
        self.writes: Any = ()
        """To send, not yet taken by :meth:`data_to_send`."""
        self._marks: Any = ()  # for each of writes: how many events came before it
        self.close_rcvd: tuple[int | None, str] | None = None
        """The peer's close frame, ``(code or None, reason)``, once received."""
        self.close_sent: int | None = None
        """The code of the close frame sent (0 for one without a code), once sent."""
        self.failure: FrameError | None = None
        """Why the server failed the connection, if it did."""
        self.eof_sent = False
        self._discard = False  # nothing more is parsed (the peer closed, or we failed)
        self._buffer = b""  # the start of a frame (small)
        self._parts: list[bytes] | None = None  # the pieces of a large frame not complete yet
        self._parts_size = 0
        self._need = 0
        # The fragmented or compressed message being received.
        self._opcode = 0
        self._compressed = False
        self._wire_size = 0
        self._size = 0
        self._pieces: Any = ()
        self._decoder: Any = None
        self._inflater: Inflater | None = None if deflate is None else Inflater(deflate)

    # Receiving ---------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Take bytes read from the socket; then read :meth:`events_received` and write
        :meth:`data_to_send`."""
        if self._discard:
            return
        parts = self._parts
        if parts is not None:
            parts.append(data)
            self._parts_size += len(data)
            if self._parts_size < self._need:
                return
            data = b"".join(parts)
            self._parts = None
        elif self._buffer:
            data = self._buffer + data
            self._buffer = b""
        try:
            self._parse(data)
        except FrameError as error:
            self._fail(error)

    def receive_eof(self) -> None:
        """The peer closed the TCP connection (or it was lost): the connection is closed."""
        self.state = CLOSED
        self._discard = True
        self._parts = None
        self._buffer = b""

    def _parse(self, data: bytes) -> None:
        pos, size = 0, len(data)
        limit = self.max_message_size
        while size - pos >= 2:
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
                if length >> 63:
                    raise FrameError(CLOSE_PROTOCOL_ERROR, "frame length with its most significant bit set")
                head += 8
            if not b1 & 0x80:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "unmasked frame")
            opcode = b0 & 0x0F
            if b0 & 0x70 and (b0 & 0x70 != 0x40 or self.deflate is None or opcode in (OP_CONTINUATION, 8, 9, 10)):
                raise FrameError(CLOSE_PROTOCOL_ERROR, "reserved bits set")
            if opcode >= 0x8:
                if opcode > OP_PONG:
                    raise FrameError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
                if length > 125 or not b0 & 0x80:
                    raise FrameError(CLOSE_PROTOCOL_ERROR, "bad control frame (fragmented, or over 125 bytes)")
            elif opcode > OP_BINARY:
                raise FrameError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
            elif b0 & 0x40 or (opcode == OP_CONTINUATION and self._compressed):
                # Compressed: the size limit applies to the output (see _inflate); the
                # input may be a little larger than it when the data does not compress.
                if self._wire_size + length > limit + (limit >> 6) + 64:
                    raise FrameError(CLOSE_MESSAGE_TOO_BIG, f"message too big (over {limit} bytes)")
            elif self._size + length > limit:
                raise FrameError(CLOSE_MESSAGE_TOO_BIG, f"message too big (over {limit} bytes)")
            end = head + 4 + length
            if end > size:
                if end - pos > _LARGE:
                    self._parts = [data[pos:]]
                    self._parts_size = size - pos
                    self._need = end - pos
                    return
                break
            payload = unmask(data[head : head + 4], data[head + 4 : end]) if length else b""
            pos = end
            if opcode == OP_TEXT and b0 & 0xC0 == 0x80 and not self._opcode and self.state == OPEN:
                # The common case, inline: one unfragmented, uncompressed text message.
                try:
                    text = payload.decode("utf-8")
                except UnicodeDecodeError:
                    raise FrameError(CLOSE_INVALID_DATA, "text message that is not UTF-8") from None
                events = self.events
                if events:
                    events.append(text)
                else:
                    self.events = [text]
            else:
                self._frame(b0, opcode, payload)
                if self._discard:
                    return
        if pos < size:
            self._buffer = data[pos:]

    def _frame(self, b0: int, opcode: int, payload: bytes) -> None:
        final = b0 & 0x80
        if opcode >= 0x8:
            if opcode == OP_CLOSE:
                self._close_received(payload)
            elif opcode == OP_PING:
                if self.state == OPEN:
                    self._write(websocket_frame(payload, OP_PONG))
                    self._event(Ping(payload))
            else:
                self._event(Pong(payload))
            return
        if opcode == OP_CONTINUATION:
            if not self._opcode:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "continuation frame outside a fragmented message")
        else:
            if self._opcode:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
            self._opcode = opcode
            self._compressed = bool(b0 & 0x40)
        self._wire_size += len(payload)
        if self._compressed:
            assert self._inflater is not None
            payload = self._inflater.inflate(payload, bool(final), self.max_message_size - self._size)
        self._size += len(payload)
        if self._opcode == OP_TEXT:
            decoder = self._decoder
            if decoder is None:
                decoder = self._decoder = codecs.getincrementaldecoder("utf-8")()
            try:
                text = decoder.decode(payload, bool(final))
            except UnicodeDecodeError:
                raise FrameError(CLOSE_INVALID_DATA, "text message that is not UTF-8") from None
            if text:
                self._piece(text)
        elif payload:
            self._piece(payload)
        if not final:
            return
        pieces, kind = self._pieces, self._opcode
        self._opcode, self._compressed, self._wire_size, self._size = 0, False, 0, 0
        self._pieces, self._decoder = (), None
        if self.state != OPEN:
            return  # closing: the message is not delivered
        if kind == OP_TEXT:
            self._event(pieces[0] if len(pieces) == 1 else "".join(pieces))
        else:
            self._event(pieces[0] if len(pieces) == 1 else b"".join(pieces))

    def _close_received(self, payload: bytes) -> None:
        code, reason = parse_close(payload)
        self.close_rcvd = (code, reason)
        if self.state == OPEN:
            # Echo the code (RFC 6455, 5.5.1); the reason stays the peer's own.
            self._write(websocket_frame(close_payload(code), OP_CLOSE))
            self.close_sent = code or 0
            self.state = CLOSING
        # Both close frames are exchanged: the server closes TCP first (7.1.1), and
        # reads nothing more (1.4).
        self._send_eof()

    # Sending -----------------------------------------------------------------------------

    def send_text(self, data: bytes) -> None:
        """Send a text message (``data`` is its UTF-8), compressed if negotiated; nothing
        once closing."""
        if self.state == OPEN:
            self._write(self.message_frame(data, OP_TEXT))

    def send_binary(self, data: bytes) -> None:
        """Send a binary message, compressed if negotiated; nothing once closing."""
        if self.state == OPEN:
            self._write(self.message_frame(data, OP_BINARY))

    def message_frame(self, data: bytes, opcode: int = OP_TEXT) -> bytes:
        """The frame of one message for this connection (compressed if negotiated)."""
        deflate = self.deflate
        if deflate is not None and len(data) >= self.compression_min_size:
            bits = window_bits_for(len(data), deflate.server_max_window_bits)
            if bits:
                compressed = compress_message(data, bits, self.compression_level)
                if compressed is not None:
                    return websocket_frame(compressed, opcode, rsv1=True)
        return websocket_frame(data, opcode)

    def send_ping(self, data: bytes = b"") -> None:
        """Send a ping (nothing once closing)."""
        if self.state == OPEN:
            self._write(websocket_frame(data, OP_PING))

    def send_close(self, code: int | None = CLOSE_NORMAL, reason: str = "") -> None:
        """Start the closing handshake: send a close frame (once; nothing if closing
        already). Frames that still arrive are not delivered; the peer's close frame
        ends the connection."""
        if self.state != OPEN:
            return
        self._write(websocket_frame(close_payload(code, reason), OP_CLOSE))
        self.close_sent = code or 0
        self.state = CLOSING

    def fail(self, code: int, why: str) -> None:
        """Fail the connection (RFC 6455, 7.1.7): send a close frame with ``code``
        unless one was sent, close TCP, and read nothing more."""
        self._fail(FrameError(code, why))

    def _fail(self, error: FrameError) -> None:
        if self.failure is None:
            self.failure = error
        if self.state == OPEN:
            self._write(websocket_frame(close_payload(error.code), OP_CLOSE))
            self.close_sent = error.code
            self.state = CLOSING
        self._send_eof()

    def _send_eof(self) -> None:
        self._discard = True
        self._parts = None
        self._buffer = b""
        self._pieces = ()
        if not self.eof_sent and self.state != CLOSED:
            self.eof_sent = True
            self._write(SEND_EOF)

    # Output ------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.writes:
            self._marks.append(len(self.events))
            self.writes.append(data)
        else:
            self._marks, self.writes = [len(self.events)], [data]

    def _event(self, event: Any) -> None:
        if self.events:
            self.events.append(event)
        else:
            self.events = [event]

    def _piece(self, piece: Any) -> None:
        if self._pieces:
            self._pieces.append(piece)
        else:
            self._pieces = [piece]

    def events_received(self) -> list[Any]:
        """Take the events received since the last call: ``str`` (a text message),
        ``bytes`` (a binary message), :class:`Ping`, :class:`Pong`."""
        events, self.events = self.events, ()
        if self._marks:
            self._marks = [0] * len(self._marks)
        return list(events)

    def data_to_send(self) -> list[bytes]:
        """Take the bytes to write since the last call, in order; :data:`SEND_EOF`
        means: close the TCP connection once what came before is written."""
        writes, self.writes = self.writes, ()
        self._marks = ()
        return list(writes)

    def take_in_order(self) -> list[tuple[bool, Any]]:
        """Take events and bytes to write together, in the order the input caused them:
        ``(False, event)`` or ``(True, bytes)``.

        The order matters when one read holds, say, a message and then a ping: the
        answer to the message is written before the pong. :meth:`events_received` then
        :meth:`data_to_send` give the same items, but not their relative order.
        """
        events, writes, marks = self.events, self.writes, self._marks
        self.events, self.writes, self._marks = (), (), ()
        items: list[tuple[bool, Any]] = []
        taken = 0
        for mark, data in zip(marks, writes, strict=True):
            items.extend((False, event) for event in events[taken:mark])
            taken = max(taken, mark)
            items.append((True, data))
        items.extend((False, event) for event in events[taken:])
        return items

    def close_expected(self) -> bool:
        """Whether the TCP connection should close soon (the closing handshake started);
        a transport then gives the peer a little time before dropping it."""
        return self.state == CLOSING
