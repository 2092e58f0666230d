"""permessage-deflate (RFC 7692) for a server that shares each compressed frame.

The server always answers ``server_no_context_takeover``: every message it sends is
compressed on its own, so the compressed frame of a message depends only on the
message and the window size, and one frame built for a publish serves every
recipient that negotiated the same window. What clients send is decompressed with
their own parameters (with or without context takeover).

Python's zlib cannot compress with an 8-bit window, so a client that asks for
``server_max_window_bits=8`` is accepted and sent its messages uncompressed, which
RFC 7692 allows (section 6: the RSV1 bit marks a compressed message; a message
without it is not compressed).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable

from snorky.websocket.frames import CLOSE_MESSAGE_TOO_BIG, CLOSE_PROTOCOL_ERROR, FrameError, websocket_frame

__all__ = [
    "DeflateParams",
    "Inflater",
    "SharedDeflater",
    "negotiate_deflate",
    "parse_extensions",
    "compress_message",
    "window_bits_for",
]

_TAIL = b"\x00\x00\xff\xff"  # the empty stored block a sync flush ends with (RFC 7692, 7.2.1)

_PARAM_NAMES = frozenset(
    {"server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits", "client_max_window_bits"}
)
_BITS = re.compile(r"[1-9][0-9]?\Z")
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SCANNER = re.compile(rf'\s*(?:({_TOKEN})|"((?:[^"\\]|\\.)*)"|([;,=]))')


class DeflateParams:
    """The permessage-deflate parameters one connection agreed on.

    Attributes:
        server_max_window_bits: the largest window this server may compress with (8-15).
        client_max_window_bits: the largest window the client compresses with (8-15).
        client_no_context_takeover: the client compresses each message on its own.
        response: the ``Sec-WebSocket-Extensions`` value that accepts the offer.
    """

    __slots__ = ("server_max_window_bits", "client_max_window_bits", "client_no_context_takeover", "response")

    def __init__(
        self,
        server_max_window_bits: int = 15,
        client_max_window_bits: int = 15,
        client_no_context_takeover: bool = False,
        response: str = "permessage-deflate; server_no_context_takeover",
    ) -> None:
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.client_no_context_takeover = client_no_context_takeover
        self.response = response

    def __repr__(self) -> str:
        return f"<DeflateParams {self.response!r}>"


def parse_extensions(values: Iterable[str]) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Parse ``Sec-WebSocket-Extensions`` header values (RFC 6455, 9.1) into
    ``[(name, [(param, value or None), ...]), ...]``, in the order offered.

    Raises:
        ValueError: the header does not follow the grammar.
    """
    extensions: list[tuple[str, list[tuple[str, str | None]]]] = []
    for value in values:
        tokens: list[tuple[str, str]] = []  # ("t", token) or ("s", separator)
        pos = 0
        while pos < len(value):
            if not value[pos:].strip():
                break
            match = _SCANNER.match(value, pos)
            if match is None:
                raise ValueError(f"bad Sec-WebSocket-Extensions: {value!r}")
            pos = match.end()
            token, quoted, separator = match.groups()
            if token is not None:
                tokens.append(("t", token))
            elif quoted is not None:
                tokens.append(("q", re.sub(r"\\(.)", r"\1", quoted)))
            else:
                tokens.append(("s", separator))
        index = 0
        while index < len(tokens):
            kind, name = tokens[index]
            if kind != "t":
                if (kind, name) == ("s", ","):  # empty list elements are allowed
                    index += 1
                    continue
                raise ValueError(f"bad Sec-WebSocket-Extensions: {value!r}")
            index += 1
            params: list[tuple[str, str | None]] = []
            while index < len(tokens) and tokens[index] == ("s", ";"):
                if index + 1 >= len(tokens) or tokens[index + 1][0] != "t":
                    raise ValueError(f"bad Sec-WebSocket-Extensions: {value!r}")
                param, param_value = tokens[index + 1][1], None
                index += 2
                if index < len(tokens) and tokens[index] == ("s", "="):
                    if index + 1 >= len(tokens) or tokens[index + 1][0] == "s":
                        raise ValueError(f"bad Sec-WebSocket-Extensions: {value!r}")
                    param_value = tokens[index + 1][1]
                    index += 2
                params.append((param, param_value))
            if index < len(tokens) and tokens[index] != ("s", ","):
                raise ValueError(f"bad Sec-WebSocket-Extensions: {value!r}")
            extensions.append((name, params))
    return extensions


def _accept(params: list[tuple[str, str | None]]) -> DeflateParams | None:
    """The parameters accepting one permessage-deflate offer, or None to decline it."""
    seen: dict[str, str | None] = {}
    for name, value in params:
        if name not in _PARAM_NAMES or name in seen:
            return None
        seen[name] = value
    for name in ("server_no_context_takeover", "client_no_context_takeover"):
        if name in seen and seen[name] is not None:
            return None
    response = ["permessage-deflate", "server_no_context_takeover"]
    accepted = DeflateParams()
    if "client_no_context_takeover" in seen:
        accepted.client_no_context_takeover = True
        response.append("client_no_context_takeover")
    if "server_max_window_bits" in seen:
        bits = seen["server_max_window_bits"]
        if bits is None or not _BITS.match(bits) or not 8 <= int(bits) <= 15:
            return None
        accepted.server_max_window_bits = int(bits)
        response.append(f"server_max_window_bits={bits}")
    if "client_max_window_bits" in seen:
        bits = seen["client_max_window_bits"]
        if bits is not None:
            if not _BITS.match(bits) or not 8 <= int(bits) <= 15:
                return None
            accepted.client_max_window_bits = int(bits)
            response.append(f"client_max_window_bits={bits}")
    accepted.response = "; ".join(response)
    return accepted


def negotiate_deflate(header_values: Iterable[str]) -> DeflateParams | None:
    """Accept the first acceptable permessage-deflate offer among the client's
    ``Sec-WebSocket-Extensions`` values (RFC 7692, 5 and 7.1), or None.

    An offer with an unknown or repeated parameter, or a bad value, is declined and
    the next one considered. A header that cannot be parsed declines them all.
    """
    try:
        extensions = parse_extensions(header_values)
    except ValueError:
        return None
    for name, params in extensions:
        if name.lower() == "permessage-deflate":
            accepted = _accept(params)
            if accepted is not None:
                return accepted
    return None


def window_bits_for(size: int, max_window_bits: int) -> int:
    """The window to compress a ``size``-byte message with: no larger than the message
    needs (a smaller window is cheaper to set up) nor than ``max_window_bits``; 0 when
    Python's zlib cannot honour ``max_window_bits`` (8)."""
    if max_window_bits < 9:
        return 0
    return max(9, min(max_window_bits, size.bit_length()))


def compress_message(payload: bytes, window_bits: int, level: int) -> bytes | None:
    """Compress one message on its own (RFC 7692, 7.2.1), or None if that does not
    make it smaller (it is then sent as it is)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -window_bits, max(1, min(8, window_bits - 6)))
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    data = data[:-4]  # the sync flush's empty block, which the receiver adds back
    if len(data) >= len(payload):
        return None
    return data


class SharedDeflater:
    """Turns the plain frames of a fan-out into compressed frames, once per frame: every
    connection with the same window, level and minimum size shares one of these, and
    all of them are handed the same plain frame object for one message.

    Only the last frame is remembered (by identity: it is kept alive, so a new frame
    cannot take its place)."""

    __slots__ = ("max_window_bits", "level", "min_size", "plain", "deflated")

    def __init__(self, max_window_bits: int, level: int, min_size: int) -> None:
        self.max_window_bits = max_window_bits
        self.level = level
        self.min_size = min_size
        self.plain = b""
        self.deflated = b""

    def frame_for(self, plain: bytes) -> bytes:
        """The compressed frame for the unfragmented, unmasked text or binary frame ``plain``
        (``plain`` itself when compressing does not pay)."""
        if plain is self.plain:
            return self.deflated
        length = plain[1] & 0x7F
        head = 2 if length < 126 else 4 if length == 126 else 10
        payload = plain[head:]
        bits = window_bits_for(len(payload), self.max_window_bits) if len(payload) >= self.min_size else 0
        compressed = compress_message(payload, bits, self.level) if bits else None
        self.plain = plain
        self.deflated = plain if compressed is None else websocket_frame(compressed, plain[0] & 0x0F, rsv1=True)
        return self.deflated


class Inflater:
    """Decompresses the messages of one client, with the window and context takeover
    it negotiated, never producing more than a given size."""

    __slots__ = ("_decompressor", "_window_bits", "_reset_each_message")

    def __init__(self, params: DeflateParams) -> None:
        self._window_bits = params.client_max_window_bits
        self._reset_each_message = params.client_no_context_takeover
        self._decompressor: zlib._Decompress | None = None  # made when first needed

    def inflate(self, data: bytes, final: bool, max_size: int) -> bytes:
        """Decompress the next piece of a message (``final`` for its last frame).

        Raises:
            FrameError: 1009 when the output would be over ``max_size`` bytes, 1002 when
                ``data`` is not valid DEFLATE data.
        """
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = zlib.decompressobj(-self._window_bits)
        if final:
            data += _TAIL
        try:
            out = decompressor.decompress(data, max_size + 1)
        except zlib.error as error:
            self._decompressor = None
            raise FrameError(CLOSE_PROTOCOL_ERROR, f"compressed data is invalid: {error}") from None
        if len(out) > max_size:
            raise FrameError(CLOSE_MESSAGE_TOO_BIG, "message too big once decompressed")
        if final and self._reset_each_message:
            self._decompressor = None
        return out
