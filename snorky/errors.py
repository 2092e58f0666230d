"""The exception tree and the error codes that reach peers.

::

    SnorkyError                 root: every error Snorky raises on purpose
    ├── RPCError                a command refused a call; its text goes to the caller
    │   └── BrokerUnavailable   the broker cannot be reached now (code ``unavailable``)
    ├── ProtocolError           a peer sent something that is not a Snorky message
    ├── ConfigError             a configuration file or option is wrong
    └── TransportError          (snorky.backend) the backend port could not be reached

Every error that reaches a peer keeps Snorky 0.1's human ``message`` (for example
``"Unknown command"``) and adds a stable machine ``code`` (``"unknown_command"``).
Programs should test the code; people read the message.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ERROR_CODES",
    "CLOSE_CODES",
    "SnorkyError",
    "RPCError",
    "ProtocolError",
    "ConfigError",
    "BrokerUnavailable",
    "code_for_message",
    "CLOSE_GOING_AWAY",
    "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_SLOW_CLIENT",
    "CLOSE_FORBIDDEN_ORIGIN",
    "CLOSE_INVALID_TOKEN",
    "CLOSE_TOKEN_EXPIRED",
    "CLOSE_DISCONNECTED",
]

ERROR_CODES: dict[str, str] = {
    # code: the 0.1-compatible message sent with it
    "invalid_json": "Invalid JSON",
    "invalid_message": "Invalid message",
    "unknown_service": "Unknown service",
    "unknown_command": "Unknown command",
    "invalid_params": "Invalid params",
    "forbidden": "Not authorized",
    "already_subscribed": "Already subscribed",
    "not_subscribed": "Not subscribed",
    "message_too_large": "Message too large",
    # Identity
    "not_authenticated": "Not authenticated",
    "invalid_token": "Invalid token",
    "token_expired": "Token expired",
    # Chat and Cursors (0.1 texts)
    "already_joined": "Already joined",
    "not_joined": "Not joined",
    # Messaging (0.1 texts)
    "name_taken": "Name already registered",
    "name_not_allowed": "Name not allowed",
    "invalid_participant": "Invalid participant",
    "unknown_participant": "Unknown participant",
    "invalid_sender": "Invalid sender",
    "unknown_destination": "Unknown destination",
    # Cursors (0.1 texts)
    "too_many_cursors": "Too many cursors",
    "reused_handle": "Reused handle",
    "no_such_cursor": "No such cursor",
    # DataSync (0.1 texts; errors about a field name it in their message)
    "no_such_subscription": "No such subscription",
    "no_such_dealer": "No such dealer",
    "invalid_delta": "Invalid delta type",
    "invalid_query": "Invalid query",
    # Progress
    "no_such_task": "No such task",
    "task_exists": "Task already exists",
    "task_finished": "Task already finished",
    "unsupported": "Not supported by this service",
    "unavailable": "Service unavailable",
    "internal_error": "Internal error",
    "rpc_error": "(the service's own text)",
}
"""Every error code a peer can receive, with the message text sent beside it."""

_CODE_BY_MESSAGE = {message: code for code, message in ERROR_CODES.items()}

CLOSE_INVALID_TOKEN = 4001
"""Close code for a connection whose token is forged, malformed or revoked."""
CLOSE_TOKEN_EXPIRED = 4002
"""Close code for a connection whose token expired without a refresh."""
CLOSE_DISCONNECTED = 4004
"""Close code for a connection the server disconnected on purpose (server control)."""
CLOSE_GOING_AWAY = 1001
"""WebSocket close code sent to every client when the server shuts down."""
CLOSE_MESSAGE_TOO_BIG = 1009
"""WebSocket close code for an incoming message over ``max_message_size``."""
CLOSE_FORBIDDEN_ORIGIN = 4003
"""SockJS close code for a session opened from an origin that is not allowed.

(A WebSocket handshake from such an origin is refused with HTTP 403 instead.)"""
CLOSE_SLOW_CLIENT = 4008
"""Close code for a client whose unsent bytes passed ``max_unsent_bytes``."""

CLOSE_CODES: dict[int, str] = {
    CLOSE_GOING_AWAY: "server shutting down",
    CLOSE_MESSAGE_TOO_BIG: "message too big",
    CLOSE_FORBIDDEN_ORIGIN: "origin not allowed",
    CLOSE_INVALID_TOKEN: "invalid token",
    CLOSE_TOKEN_EXPIRED: "token expired",
    CLOSE_DISCONNECTED: "disconnected by the server",
    CLOSE_SLOW_CLIENT: "slow client",
}
"""Close codes Snorky sends, with the reason text sent beside them."""


def code_for_message(message: str) -> str:
    """Return the stable code for an error text; ``rpc_error`` for a service's own text."""
    return _CODE_BY_MESSAGE.get(message, "rpc_error")


class SnorkyError(Exception):
    """Root of Snorky's exceptions.

    Attributes:
        message: human-readable text, as Snorky 0.1 sent it.
        code: stable machine-readable code (see :data:`ERROR_CODES`).
    """

    def __init__(self, message: str = "Internal error", code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else code_for_message(message)

    def __str__(self) -> str:
        return self.message


class RPCError(SnorkyError):
    """Raised by an RPC command to refuse a call; ``message`` is sent to the caller.

    ``raise RPCError("Not authorized")`` answers ``{"type": "error", "message":
    "Not authorized", "code": "forbidden"}``. A text of the service's own gets the
    code ``rpc_error`` unless one is given.
    """

    def __init__(self, message: str = "Exception", code: str | None = None) -> None:
        super().__init__(message, code)


class ProtocolError(SnorkyError):
    """A peer sent bytes that are not a valid Snorky message (its fault, not ours).

    Attributes:
        service: the service the refused message names, when it could be read (the
            error reply is sent in that service's envelope).
        content: the refused message's body, when it could be read (its ``callId``
            is echoed).
        detail: what was wrong, for the log line.
    """

    service: str | None = None
    content: Any = None
    detail: str | None = None


class BrokerUnavailable(RPCError):
    """The broker (Redis) cannot be reached now; the caller may try again later."""

    def __init__(self, message: str = "Service unavailable") -> None:
        super().__init__(message, "unavailable")


class ConfigError(SnorkyError):
    """A configuration file or option is invalid; the text says which and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "config_error")
