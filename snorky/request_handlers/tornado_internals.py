"""Every use of Tornado's undocumented parts, in one place, each checked by :func:`check`.

The direct WebSocket path (:mod:`snorky.request_handlers.ws_direct`) takes a
connection over from Tornado once the handshake is written. That needs a few of
Tornado's attributes that are not part of its documented API; they are read or
written here and nowhere else. :data:`REQUIRED` names each of them with what it is
used for, and :func:`check` (run by the test suite, and by hand with
``python -m snorky.request_handlers.tornado_internals``) says which one changed in
the installed Tornado.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from tornado.httputil import HTTPHeaders
from tornado.iostream import IOStream
from tornado.web import RequestHandler
from tornado.websocket import WebSocketProtocol13

from snorky.websocket.frames import CLOSE_MESSAGE_TOO_BIG

__all__ = [
    "REQUIRED",
    "check",
    "read_leftover",
    "detach_socket",
    "release_request",
    "end_frame_loop",
    "end_protocol",
    "websocket_stream",
    "LoggingProtocol13",
]

logger = logging.getLogger(__name__)

REQUIRED: list[tuple[str, str, str]] = [
    ("tornado.iostream.IOStream", "_read_buffer", "the bytes read past the handshake (a bytearray)"),
    ("tornado.iostream.IOStream", "_read_buffer_size", "how many of them are valid (an int)"),
    ("tornado.iostream.IOStream", "_state", "whether the stream is registered with the IOLoop (int or None)"),
    ("tornado.web.RequestHandler", "_headers", "the response headers, replaced once they are sent (HTTPHeaders)"),
    ("tornado.websocket.WebSocketProtocol13", "stream", "the handshake's stream, taken over"),
    ("tornado.websocket.WebSocketProtocol13", "client_terminated", "set to stop Tornado's frame loop"),
    ("tornado.websocket.WebSocketProtocol13", "on_connection_close", "ends Tornado's side of the connection"),
    ("tornado.websocket.WebSocketProtocol13", "server_terminated", "whether Tornado already sent its close frame"),
    ("tornado.websocket.WebSocketProtocol13", "handler", "the handler, for the peer's address in log lines"),
]
"""``(class, attribute, what Snorky uses it for)`` for each undocumented attribute used."""

_SENT_HEADERS = HTTPHeaders()
"""Stands for a handshake's response headers once sent (Tornado forbids setting more then)."""


def check() -> list[str]:
    """Look for each attribute of :data:`REQUIRED` on real Tornado objects.

    Returns:
        One line per attribute that is missing or changed kind, saying what changed
        and what depends on it; an empty list when all is as expected.
    """
    problems: list[str] = []
    left, right = socket.socketpair()
    try:
        stream = IOStream(left)
        samples: dict[str, Any] = {
            "tornado.iostream.IOStream": stream,
            "tornado.web.RequestHandler": RequestHandler,
            "tornado.websocket.WebSocketProtocol13": WebSocketProtocol13,
        }
        expected_types: dict[str, Any] = {
            "_read_buffer": bytearray,
            "_read_buffer_size": int,
            "_headers": None,
        }
        for owner, name, use in REQUIRED:
            target = samples[owner]
            if owner == "tornado.web.RequestHandler":
                present = name in RequestHandler.clear.__code__.co_names
            elif owner == "tornado.websocket.WebSocketProtocol13" and not hasattr(target, name):
                present = name in _assigned_names(WebSocketProtocol13)
            else:
                present = hasattr(target, name)
            if not present:
                problems.append(f"{owner}.{name} is gone from this Tornado; Snorky used it for {use}")
                continue
            kind = expected_types.get(name)
            if kind is not None and not isinstance(getattr(target, name), kind):
                problems.append(
                    f"{owner}.{name} is now a {type(getattr(target, name)).__name__}, not a {kind.__name__};"
                    f" Snorky used it for {use}"
                )
        if not problems and stream._state is not None:
            problems.append("tornado.iostream.IOStream._state is set on a new stream; it used to start as None")
        stream.close()
    finally:
        left.close()
        right.close()
    return problems


def _assigned_names(cls: type) -> set[str]:
    """Attribute names that ``cls`` and its bases assign on ``self`` in their methods."""
    names: set[str] = set()
    for klass in cls.__mro__:
        for value in vars(klass).values():
            code = getattr(value, "__code__", None)
            if code is not None:
                names.update(code.co_names)
    return names


def read_leftover(stream: IOStream) -> bytes:
    """The bytes Tornado read from ``stream`` beyond the request (a client may send its
    first frame in the same segment as the handshake)."""
    return bytes(stream._read_buffer[: stream._read_buffer_size])


def detach_socket(stream: IOStream) -> socket.socket:
    """Unregister ``stream`` from its IOLoop and return its socket, which the stream
    then no longer reads or writes (it must have nothing left to write)."""
    original = stream.socket
    assert original is not None and not stream.writing()
    if stream._state is not None:
        stream.io_loop.remove_handler(original)
        stream._state = None
    return original


def release_request(handler: RequestHandler) -> None:
    """Drop what a handler keeps of an HTTP exchange that is over: the server connection
    (and through it Tornado's emptied stream) and the response headers already sent.
    The request keeps its headers, cookies and address."""
    handler.request.server_connection = None
    handler._headers = _SENT_HEADERS


def websocket_stream(protocol: Any) -> IOStream | None:
    """The stream of a Tornado WebSocket protocol object, once its handshake is written."""
    stream: IOStream | None = getattr(protocol, "stream", None)
    return stream


def end_frame_loop(protocol: Any) -> None:
    """Make Tornado's frame loop for ``protocol`` stop at its next turn."""
    protocol.client_terminated = True


def end_protocol(protocol: Any) -> None:
    """End Tornado's side of a connection whose socket was taken over."""
    protocol.on_connection_close()


class LoggingProtocol13(WebSocketProtocol13):
    """Tornado's RFC 6455 protocol (TLS connections, ``direct_io = False``), logging the
    closes Tornado decides on its own (a message over the size limit)."""

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if code == CLOSE_MESSAGE_TOO_BIG and not self.server_terminated:
            handler: Any = self.handler
            logger.warning("! closing %s: %s", handler.request.remote_ip, reason)
        super().close(code, reason)


if __name__ == "__main__":  # pragma: no cover
    found = check()
    print("\n".join(found) if found else "Tornado's internals used by Snorky are all there.")
    raise SystemExit(1 if found else 0)
