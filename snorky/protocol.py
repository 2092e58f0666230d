"""The wire format: JSON envelopes, encoded once and framed once per transport.

Every frame in either direction is a JSON object ``{"service": NAME, "message":
BODY}``. RPC bodies are ``{"command", "params", "callId"}`` on the way in and
``{"type": "response" | "error", "callId", ...}`` on the way out; any other
``type`` is a notification. See ``docs/topics/protocol.rst``.

This module is pure: no Tornado, no I/O. Its :class:`Outbound` carries one
outgoing message and computes each wire form (JSON bytes, a WebSocket frame, a
SockJS string) at most once, however many clients receive it.
"""

from __future__ import annotations

from typing import Any

import orjson

from snorky.errors import ProtocolError, error_body
from snorky.hashable import MAX_DEPTH, NestingTooDeep, make_hashable
from snorky.websocket.deflate import compress_message, window_bits_for
from snorky.websocket.frames import websocket_frame

__all__ = [
    "Outbound",
    "decode",
    "encode",
    "error_body",
    "parse_envelope",
]


def encode(value: Any) -> bytes:
    """Encode a JSON value to UTF-8 bytes (compact, like ``json.dumps`` with no spaces)."""
    return orjson.dumps(value)


def decode(raw: bytes | str) -> Any:
    """Decode one incoming frame into a hashable JSON value.

    Raises:
        ProtocolError: ``invalid_json`` if ``raw`` is not JSON (or is nested deeper than
            the parser goes, 1024 levels); ``invalid_params`` if lists and objects are
            nested deeper than :data:`~snorky.hashable.MAX_DEPTH`, with the service and
            message set when the envelope can be read, so that the reply names them.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError("Invalid JSON", "invalid_json") from None
    try:
        return make_hashable(value)
    except NestingTooDeep:
        raise _too_deep(value) from None


_SCALARS = (str, int, float, bool, type(None))


def _too_deep(value: Any) -> ProtocolError:
    """The error for a message nested too deep, naming its service and callId if it has them."""
    error = ProtocolError("Invalid params", "invalid_params")
    error.detail = f"message nested more than {MAX_DEPTH} levels deep"
    if type(value) is dict and isinstance(value.get("service"), str):
        error.service = value["service"]
        body = value.get("message")
        if type(body) is dict and isinstance(body.get("callId"), _SCALARS):
            error.content = {"callId": body["callId"]}
    return error


def parse_envelope(value: Any) -> tuple[str, Any]:
    """Split a decoded frame into its service name and message.

    Raises:
        ProtocolError: ``invalid_message`` if it is not ``{"service": str, "message": ...}``.
    """
    if type(value) is not dict and not isinstance(value, dict):
        raise ProtocolError("Invalid message", "invalid_message")
    try:
        service = value["service"]
        message = value["message"]
    except KeyError:
        raise ProtocolError("Invalid message", "invalid_message") from None
    if not isinstance(service, str):
        raise ProtocolError("Invalid message", "invalid_message")
    return service, message


class Outbound:
    """One outgoing envelope, encoded lazily and at most once per wire form.

    Build it from a Python value (``Outbound(value)``) or from JSON bytes that came
    through a broker (:meth:`from_json`). Transports read the form they need;
    clients that only implement ``send(dict)`` get :attr:`value`.
    """

    __slots__ = ("_value", "_json", "_ws_frame", "_ws_deflated", "_sockjs", "exclude")

    def __init__(self, value: Any = None, json: bytes | None = None, exclude: Any = None) -> None:
        self._value = value
        self._json = json
        self._ws_frame: bytes | None = None
        self._ws_deflated: dict[int, bytes] | None = None
        self._sockjs: str | None = None
        self.exclude = exclude
        """A local client that must not receive this message (usually its sender).

        It is not part of the message: a networked broker does not carry it,
        and on other nodes the sender is not a local client anyway."""

    @classmethod
    def from_json(cls, json: bytes) -> Outbound:
        """Wrap JSON bytes that are already encoded (for example, from a broker)."""
        return cls(None, json)

    @property
    def value(self) -> Any:
        """The message as Python data (decoded once if it arrived as bytes)."""
        if self._value is None and self._json is not None:
            self._value = orjson.loads(self._json)
        return self._value

    @property
    def json(self) -> bytes:
        """The message as compact UTF-8 JSON."""
        data = self._json
        if data is None:
            data = self._json = orjson.dumps(self._value)
        return data

    @property
    def ws_frame(self) -> bytes:
        """The message as a complete WebSocket text frame."""
        frame = self._ws_frame
        if frame is None:
            frame = self._ws_frame = websocket_frame(self.json)
        return frame

    def ws_frame_deflated(self, max_window_bits: int, level: int = 6, min_size: int = 0) -> bytes:
        """The message as a WebSocket text frame compressed with permessage-deflate and no
        context takeover, for a connection whose window is at most ``max_window_bits``.

        The frame is built once per window size, with the ``level`` and ``min_size`` of
        the first connection that asks, and shared by every connection with that window
        (almost all of them ask for the largest, 15 bits). A message shorter than
        ``min_size``, or that does not get smaller, is the plain frame (:attr:`ws_frame`),
        which RFC 7692 allows on a compressing connection too.
        """
        frames = self._ws_deflated
        if frames is not None:
            frame = frames.get(max_window_bits)
            if frame is not None:
                return frame
        else:
            frames = self._ws_deflated = {}
        data = self.json
        bits = window_bits_for(len(data), max_window_bits) if len(data) >= min_size else 0
        compressed = compress_message(data, bits, level) if bits else None
        frame = frames[max_window_bits] = (
            self.ws_frame if compressed is None else websocket_frame(compressed, rsv1=True)
        )
        return frame

    @property
    def sockjs(self) -> str:
        """The message as a SockJS array element: the JSON text, quoted as a JSON string."""
        text = self._sockjs
        if text is None:
            text = self._sockjs = orjson.dumps(self.json.decode("utf-8")).decode("utf-8")
        return text
