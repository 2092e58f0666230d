"""RFC 6455 WebSocket, server side, without I/O: frames, the connection, permessage-deflate.

:class:`~snorky.websocket.connection.ServerConnection` is fed the bytes read from a
socket and tells what to deliver and what to write back; the transport in
:mod:`snorky.request_handlers.ws_direct` only moves bytes. Nothing here imports
Tornado or touches a socket, so every rule of the RFC is tested by feeding bytes.

- :mod:`snorky.websocket.frames`: building server frames, close codes and payloads.
- :mod:`snorky.websocket.deflate`: permessage-deflate (RFC 7692) negotiation and codecs.
- :mod:`snorky.websocket.connection`: the connection: parsing, messages, the close handshake.
"""

from __future__ import annotations

from snorky.websocket.connection import CLOSED, CLOSING, OPEN, SEND_EOF, Ping, Pong, ServerConnection
from snorky.websocket.deflate import DeflateParams, negotiate_deflate
from snorky.websocket.frames import close_code_allowed, websocket_frame

__all__ = [
    "CLOSED",
    "CLOSING",
    "OPEN",
    "SEND_EOF",
    "DeflateParams",
    "Ping",
    "Pong",
    "ServerConnection",
    "close_code_allowed",
    "negotiate_deflate",
    "websocket_frame",
]
