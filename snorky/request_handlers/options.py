"""Options shared by the client-facing transports (WebSocket and SockJS)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from snorky.errors import ConfigError

__all__ = ["TransportOptions", "origin_allowed"]


@dataclass
class TransportOptions:
    """Limits and policies of a client-facing transport.

    Attributes:
        allowed_origins: origins allowed besides the server's own host: full
            origins (``"https://app.example.com"``) or host names
            (``"app.example.com"``); ``"*"`` allows every origin.
        max_message_size: largest incoming message in bytes (1 MiB, as on the
            backend port; Snorky 0.1 had no limit); a bigger one closes the
            WebSocket with code 1009 (SockJS: a ``message_too_large`` error).
        ping_interval: seconds between WebSocket pings (0 disables them).
        ping_timeout: seconds to wait for the pong before the peer is taken for
            dead and disconnected (at most ``ping_interval``).
        max_unsent_bytes: unsent bytes a connection may queue before it is
            closed as a slow client (code 4008); keep it a few times
            ``max_message_size``, so that one large message is not taken for slowness.
        compression: accept permessage-deflate (RFC 7692) from WebSocket clients that
            offer it (browsers do). Each message a fan-out sends is compressed once for
            all such clients; clients that do not offer it get the plain frame.
        compression_level: zlib level (1 fastest, 9 smallest).
        compression_min_size: messages shorter than this many bytes are sent
            uncompressed (compressing them costs more than it saves).
        tcp_nodelay: send each WebSocket frame at once (``TCP_NODELAY``) rather than
            letting the kernel hold a small frame until the previous one is
            acknowledged, which can take the peer's delayed ACK (40 ms).
        max_body_size: SockJS: the largest HTTP request body (one ``xhr_send`` or
            ``jsonp_send``, which may carry several messages); a larger one is refused
            with HTTP 413 before it is read, and its session closed with 1009. It is
            never less than one message of ``max_message_size`` can need once quoted
            (six times it).
    """

    allowed_origins: list[str] = field(default_factory=list)
    max_message_size: int = 1024 * 1024
    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    max_unsent_bytes: int = 4 * 1024 * 1024
    compression: bool = False
    compression_level: int = 6
    compression_min_size: int = 128
    tcp_nodelay: bool = True
    max_body_size: int = 1024 * 1024

    @property
    def sockjs_body_limit(self) -> int:
        """The body size SockJS sends are held to: ``max_body_size``, or what one
        message of ``max_message_size`` can need once quoted, if more."""
        return max(self.max_body_size, 6 * self.max_message_size + 2)

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> TransportOptions:
        """Take this class's options out of ``kwargs`` (Snorky 0.1's ``ping_pong_interval`` too)."""
        if "ping_pong_interval" in kwargs:
            kwargs.setdefault("ping_interval", kwargs.pop("ping_pong_interval") or 0)
        names = {f.name for f in fields(cls)}
        options = cls(**{key: kwargs.pop(key) for key in list(kwargs) if key in names})
        options.allowed_origins = list(options.allowed_origins)
        if not 1 <= options.compression_level <= 9:
            raise ConfigError(f"compression_level must be between 1 and 9, not {options.compression_level}")
        return options


def origin_allowed(origin: str, host: str, allowed: list[str]) -> bool:
    """Whether a browser from ``origin`` may connect to a server reached as ``host``.

    Same-host origins are always allowed; others must be listed in ``allowed``.
    """
    if "*" in allowed:
        return True
    parts = urlsplit(origin.lower())
    netloc = parts.netloc
    if netloc and netloc == host.lower():
        return True
    for entry in allowed:
        entry = entry.lower().rstrip("/")
        if entry == origin.lower().rstrip("/") or entry == netloc or entry == parts.hostname:
            return True
    return False
