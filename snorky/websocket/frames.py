"""WebSocket frames as a server writes them, and the rules of close frames (RFC 6455, 5 and 7).

Pure functions on bytes. A server's frames are never masked (RFC 6455, 5.1), so a
frame built once can be written to any number of connections.
"""

from __future__ import annotations

import struct

__all__ = [
    "OP_CONTINUATION",
    "OP_TEXT",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "CLOSE_NORMAL",
    "CLOSE_GOING_AWAY",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_INVALID_DATA",
    "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_ABNORMAL",
    "FrameError",
    "websocket_frame",
    "close_payload",
    "parse_close",
    "close_code_allowed",
    "unmask",
]

OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA

CLOSE_NORMAL = 1000
"""The closing handshake's default code: nothing went wrong."""
CLOSE_GOING_AWAY = 1001
"""Sent when the endpoint goes away: the server stops, or the peer stopped answering pings."""
CLOSE_PROTOCOL_ERROR = 1002
"""Sent when the peer breaks RFC 6455: bad framing, a bad close frame, an unknown opcode."""
CLOSE_INVALID_DATA = 1007
"""Sent for a text message, or a close reason, that is not UTF-8."""
CLOSE_MESSAGE_TOO_BIG = 1009
"""Sent for a message over the size limit."""
CLOSE_INTERNAL_ERROR = 1011
"""Sent when the server itself failed (a bug), never for a peer's mistake."""
CLOSE_ABNORMAL = 1006
"""Never sent: what a connection that dropped without a close frame is recorded as."""

# Close codes a peer may put in a close frame (RFC 6455, 7.4.1 and 7.4.2; 1012-1014
# are registered with IANA since). 1004, 1005, 1006 and 1015 are reserved: they must
# never be sent. 3000-4999 belong to libraries and applications.
_ALLOWED_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


class FrameError(Exception):
    """The peer broke the protocol; the connection fails with :attr:`code`.

    Attributes:
        code: the close code to send (1002, 1007 or 1009).
        why: what was wrong, for the log (never sent: the close reason stays short).
    """

    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code
        self.why = why


def websocket_frame(payload: bytes, opcode: int = OP_TEXT, rsv1: bool = False) -> bytes:
    """Frame ``payload`` as one unmasked, final frame (RFC 6455, 5.2, server side).

    Args:
        payload: the frame's payload (already compressed when ``rsv1``).
        opcode: :data:`OP_TEXT` by default.
        rsv1: set the RSV1 bit, which marks a compressed message (RFC 7692, 6).
    """
    length = len(payload)
    first = (0xC0 if rsv1 else 0x80) | opcode
    if length < 126:
        header = struct.pack("!BB", first, length)
    elif length < 0x10000:
        header = struct.pack("!BBH", first, 126, length)
    else:
        header = struct.pack("!BBQ", first, 127, length)
    return header + payload


def close_code_allowed(code: int) -> bool:
    """Whether ``code`` may appear in a close frame (RFC 6455, 7.4)."""
    return code in _ALLOWED_CLOSE_CODES or 3000 <= code <= 4999


def close_payload(code: int | None, reason: str = "") -> bytes:
    """The payload of a close frame: the code, then the reason in UTF-8, within 125 bytes.

    A reason too long is cut at a character boundary. ``code=None`` makes an empty
    payload (a close frame without a code).
    """
    if code is None:
        return b""
    data = reason.encode("utf-8")
    if len(data) > 123:
        data = data[:123].decode("utf-8", "ignore").encode("utf-8")
    return struct.pack("!H", code) + data


def parse_close(payload: bytes) -> tuple[int | None, str]:
    """Read a received close frame's payload into ``(code, reason)`` (RFC 6455, 5.5.1).

    An empty payload has no code (``None``).

    Raises:
        FrameError: 1002 for a payload of one byte or a code that may not be sent,
            1007 for a reason that is not UTF-8.
    """
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise FrameError(CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload")
    (code,) = struct.unpack("!H", payload[:2])
    if not close_code_allowed(code):
        raise FrameError(CLOSE_PROTOCOL_ERROR, f"close frame with code {code}, which may not be sent")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(CLOSE_INVALID_DATA, "close reason that is not UTF-8") from None
    return code, reason


def unmask(mask: bytes, data: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask``, repeated (as one big integer: fast in CPython)."""
    size = len(data)
    if not size:
        return data
    key = int.from_bytes((mask * (size // 4 + 1))[:size], "little")
    return (int.from_bytes(data, "little") ^ key).to_bytes(size, "little")
