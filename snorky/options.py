"""Options below every layer that uses them: :class:`TransportOptions` (the limits and
policies of the client-facing transports, which the configuration file sets), and the
checks of options as configuration files give them: names, types and values, with errors
that name the file, the section and the key, and suggest the closest valid name.

The helpers here fill the dataclasses that hold options (:mod:`snorky.config`,
:mod:`snorky.namespaces`); this module imports nothing of Snorky's but its errors.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from snorky.errors import ConfigError

__all__ = ["TransportOptions", "describe", "fill_options", "origin_allowed", "pop_option", "suggest", "unknown_key"]

KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
"""How an error names the kind of value an option wants."""

_NOUNS = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "table"}


def describe(value: Any) -> str:
    """A TOML value as errors describe it: ``the string 'x'`` (the value only when short)."""
    noun = _NOUNS.get(type(value), type(value).__name__)
    shown = repr(value)
    return f"the {noun} {shown}" if len(shown) <= 40 else f"a {noun}"


def suggest(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_key(where: str, key: str, known: Iterable[str]) -> ConfigError:
    """The error for a key nobody reads, with the closest valid one."""
    return ConfigError(f"{where}: unknown key {key!r}{suggest(key, known)}")


def pop_option(data: dict[str, Any], key: str, kind: type, default: Any, where: str) -> Any:
    """Take ``key`` out of ``data`` if it is there, checking that it is of ``kind``."""
    if key not in data:
        return default
    value = data.pop(key)
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: {key} must be {KINDS[kind]}, not {describe(value)}")
    return value


def fill_options(
    target: Any, values: dict[str, Any], where: str, also: Iterable[str] = (), skip: Iterable[str] = ()
) -> None:
    """Set each of ``values`` on the dataclass ``target``, checking names and types.

    The type an option wants is the type of its current (default) value; numbers
    must not be negative. ``also`` names keys valid in the same section but read
    elsewhere (for suggestions); ``skip`` names fields that are not options.

    Raises:
        ConfigError: an unknown key, a value of the wrong type or a negative number.
    """
    known = {f.name for f in fields(target)} - {"transport"} - set(skip)
    for key, value in values.items():
        if key not in known:
            raise unknown_key(where, key, known | set(also))
        current = getattr(target, key)
        expected: tuple[type, ...]
        if isinstance(current, bool):
            expected = (bool,)
        elif isinstance(current, float):
            expected = (int, float)
        elif isinstance(current, int):
            expected = (int,)
        elif isinstance(current, list):
            expected = (list,)
        else:
            expected = (str,)
        if not isinstance(value, expected) or (expected != (bool,) and isinstance(value, bool)):
            raise ConfigError(f"{where} {key}: must be {KINDS[expected[-1]]}, not {describe(value)}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise ConfigError(f"{where} {key}: must not be negative, not {value!r}")
        setattr(target, key, value)


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
