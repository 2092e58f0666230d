"""The exception tree and the error codes that reach peers.

::

    SnorkyError                 root: every error Snorky raises on purpose
    ├── RPCError                a command refused a call; its text goes to the caller
    │   ├── BrokerUnavailable   the broker cannot be reached now (code ``unavailable``)
    │   └── AuthError           a token was refused (``invalid_token``, ``token_expired``)
    ├── ProtocolError           a peer sent something that is not a Snorky message
    │   └── InvalidMessage      a message to an RPC service is not a call (0.1's name)
    ├── BadQuery                a DataSync dealer cannot accept a subscription's query
    ├── UnknownDealer           no DataSync dealer has this name (``no_such_dealer``)
    ├── UnknownModelClass       no DataSync dealer serves a delta's model
    ├── ConfigError             a configuration file or option is wrong
    ├── ListenError             a listening address cannot be bound
    └── TransportError          the backend port could not be reached (snorky.backend)

Each is importable from here and, for code written for Snorky 0.1, from the
module that defined it then (``snorky.auth``, ``snorky.services.base``,
``snorky.services.datasync.dealers``, ``...managers.dealer``, ``snorky.backend``).

Every error that reaches a peer keeps Snorky 0.1's human ``message`` (for example
``"Unknown command"``) and adds a stable machine ``code`` (``"unknown_command"``).
Programs should test the code; people read the message.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# The codes RFC 6455 defines are declared with the WebSocket protocol, the layer below
# this one (it knows nothing of Snorky); the codes Snorky chose are declared here.
from snorky.websocket.frames import (
    CLOSE_ABNORMAL,
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL_ERROR,
    CLOSE_INVALID_DATA,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
)

__all__ = [
    "ERROR_CODES",
    "CLOSE_CODES",
    "CLOSE_TABLE",
    "CloseCode",
    "CLOSE_ABNORMAL",
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_INVALID_DATA",
    "CLOSE_NORMAL",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_SERVICE_RESTART",
    "CLOSE_TRY_AGAIN_LATER",
    "SnorkyError",
    "RPCError",
    "ProtocolError",
    "ConfigError",
    "ListenError",
    "AuthError",
    "InvalidMessage",
    "BadQuery",
    "UnknownDealer",
    "UnknownModelClass",
    "TransportError",
    "BrokerUnavailable",
    "code_for_message",
    "error_body",
    "CLOSE_GOING_AWAY",
    "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_SLOW_CLIENT",
    "CLOSE_FORBIDDEN_ORIGIN",
    "CLOSE_INVALID_TOKEN",
    "CLOSE_TOKEN_EXPIRED",
    "CLOSE_DISCONNECTED",
    "CLOSE_TOO_MANY_CONNECTIONS",
    "CLOSE_TOO_MANY_REQUESTS",
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
    # Limits (see snorky.limits)
    "too_many_channels": "Too many channels",
    "too_many_requests": "Too many requests",
    "too_many_connections": "Too many connections",
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
    # The backend port's HTTP errors (besides invalid_json, invalid_message,
    # unknown_service, message_too_large and internal_error)
    "unauthorized": "Invalid API key",
    "method_not_allowed": "Use POST",
    "timeout": "The service did not answer in time",
}
"""Every error code a peer can receive, with the message text sent beside it."""

_CODE_BY_MESSAGE = {message: code for code, message in ERROR_CODES.items()}


class CloseCode(NamedTuple):
    """A close code Snorky sends: its number, the reason text sent with it, and what
    the client should do next."""

    code: int
    reason: str
    reconnect: str
    """``"no"``: stay closed (the server meant it, or nothing would change);
    ``"backoff"``: reconnect with the usual growing delay; ``"now"``: reconnect at
    once, without counting it as a failure (this node is going away, another will
    take the connection); ``"new token"``: reconnect only with a new token."""
    meaning: str


CLOSE_SERVICE_RESTART = 1012
"""Close code sent while a node drains before it stops: reconnect now (to another node)."""
CLOSE_TRY_AGAIN_LATER = 1013
"""Close code for a connection made to a node that drains: try again later (elsewhere)."""
CLOSE_INVALID_TOKEN = 4001
"""Close code for a connection whose token is forged, malformed or revoked."""
CLOSE_TOKEN_EXPIRED = 4002
"""Close code for a connection whose token expired without a refresh."""
CLOSE_FORBIDDEN_ORIGIN = 4003
"""SockJS close code for a session opened from an origin that is not allowed.

(A WebSocket handshake from such an origin is refused with HTTP 403 instead.)"""
CLOSE_DISCONNECTED = 4004
"""Close code for a connection the server disconnected on purpose (server control)."""
CLOSE_SLOW_CLIENT = 4008
"""Close code for a client whose unsent bytes passed ``max_unsent_bytes``."""
CLOSE_TOO_MANY_CONNECTIONS = 4005
"""Close code for a connection over ``connections_per_identity``: do not reconnect."""
CLOSE_TOO_MANY_REQUESTS = 4029
"""Close code for a client over a rate limit (commands, or SockJS sessions per address):
reconnect later, with backoff."""

CLOSE_TABLE: dict[int, CloseCode] = {
    c.code: c
    for c in (
        CloseCode(CLOSE_NORMAL, "", "backoff", "the peer closed normally (the server echoes the peer's code)"),
        CloseCode(CLOSE_GOING_AWAY, "server shutting down", "backoff", "the server stopped at once (not a drain)"),
        CloseCode(CLOSE_PROTOCOL_ERROR, "protocol error", "backoff", "the peer broke RFC 6455"),
        CloseCode(CLOSE_INVALID_DATA, "invalid data", "backoff", "a text message or a close reason that is not UTF-8"),
        CloseCode(CLOSE_MESSAGE_TOO_BIG, "message too big", "backoff", "an incoming message was over max_message_size"),
        CloseCode(CLOSE_INTERNAL_ERROR, "internal error", "backoff", "the server failed while handling the connection"),
        CloseCode(
            CLOSE_SERVICE_RESTART,
            "server restarting",
            "now",
            "the node is draining before it stops: reconnect now, elsewhere",
        ),
        CloseCode(
            CLOSE_TRY_AGAIN_LATER, "try again later", "backoff", "the node is draining and takes no new connection"
        ),
        CloseCode(
            CLOSE_INVALID_TOKEN,
            "invalid token",
            "new token",
            "the token given at connect is forged, malformed or revoked",
        ),
        CloseCode(CLOSE_TOKEN_EXPIRED, "token expired", "new token", "the token expired and was not refreshed in time"),
        CloseCode(CLOSE_FORBIDDEN_ORIGIN, "origin not allowed", "no", "SockJS: the page's origin is not allowed"),
        CloseCode(
            CLOSE_DISCONNECTED, "disconnected by the server", "no", "the server disconnected the client on purpose"
        ),
        CloseCode(
            CLOSE_TOO_MANY_CONNECTIONS,
            "too many connections",
            "no",
            "the identity already holds connections_per_identity connections (on any node)",
        ),
        CloseCode(CLOSE_SLOW_CLIENT, "slow client", "backoff", "more than max_unsent_bytes were waiting to be sent"),
        CloseCode(
            CLOSE_TOO_MANY_REQUESTS,
            "too many requests",
            "backoff",
            "the client went on sending past commands_per_second while refused, or (SockJS) opened "
            "sessions from its address faster than connections_per_second_per_ip",
        ),
    )
}
"""Every close code Snorky sends, as centrifuge lists its disconnect codes: the
protocol reference and ``snorky.js`` follow this table."""

CLOSE_CODES: dict[int, str] = {code: entry.reason for code, entry in CLOSE_TABLE.items()}
"""Close codes Snorky sends, with the reason text sent beside them."""


def code_for_message(message: str) -> str:
    """Return the stable code for an error text; ``rpc_error`` for a service's own text."""
    return _CODE_BY_MESSAGE.get(message, "rpc_error")


def error_body(
    code: str, call_id: Any = None, message: str | None = None, detail: str | None = None, *, http: bool = False
) -> dict[str, Any]:
    """Build an error reply body: ``{"type": "error", "callId", "message", "code"}``.

    ``message`` defaults to the code's 0.1 text; ``detail``, when given, says more
    (which field, which item) in a key of its own, so that ``message`` stays the
    text Snorky 0.1 sent.

    With ``http``, the body of a refused request on the backend port instead:
    ``{"type": "error", "code", "message"}`` (no call is answered, and the code
    comes first, as it always has there).
    """
    if http:
        return {"type": "error", "code": code, "message": ERROR_CODES[code] if message is None else message}
    body = {
        "type": "error",
        "callId": call_id,
        "message": ERROR_CODES[code] if message is None else message,
        "code": code,
    }
    if detail is not None:
        body["detail"] = detail
    return body


class SnorkyError(Exception):
    """Root of Snorky's exceptions.

    Attributes:
        message: human-readable text, as Snorky 0.1 sent it.
        code: stable machine-readable code (see :data:`ERROR_CODES`).
        detail: more about this case (which field, which item), or ``None``; sent
            to the peer in the error's ``detail`` key.
    """

    def __init__(self, message: str = "Internal error", code: str | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else code_for_message(message)
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class RPCError(SnorkyError):
    """Raised by an RPC command to refuse a call; ``message`` is sent to the caller.

    ``raise RPCError("Not authorized")`` answers ``{"type": "error", "message":
    "Not authorized", "code": "forbidden"}``. A text of the service's own gets the
    code ``rpc_error`` unless one is given.
    """

    def __init__(self, message: str = "Exception", code: str | None = None, detail: str | None = None) -> None:
        super().__init__(message, code, detail)


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


class ListenError(SnorkyError):
    """A listening address cannot be bound (taken, or not this host's); the text names it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "listen_error")


class ConfigError(SnorkyError):
    """A configuration file or option is invalid; the text says which and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "config_error")


class AuthError(RPCError):
    """A token was refused: ``code`` is ``invalid_token`` or ``token_expired``."""

    @property
    def close_code(self) -> int:
        """The close code a connection refused for this token gets (4002 or 4001)."""
        return CLOSE_TOKEN_EXPIRED if self.code == "token_expired" else CLOSE_INVALID_TOKEN


class InvalidMessage(ProtocolError):
    """A message to an RPC service is not a call (kept from Snorky 0.1, where it was a bare Exception)."""

    def __init__(self, message: str = "Invalid message", code: str = "invalid_message") -> None:
        super().__init__(message, code)


class BadQuery(SnorkyError):
    """A subscription query a dealer cannot accept; the text says why.

    Raised by :meth:`Dealer.validate_query
    <snorky.services.datasync.dealers.Dealer.validate_query>` and by
    :func:`~snorky.services.datasync.filters.compile_filter`; answered to the
    backend as ``invalid_query``.
    """

    def __init__(self, message: str = "Invalid query", code: str = "invalid_query") -> None:
        super().__init__(message, code)


class UnknownDealer(SnorkyError):
    """No dealer has this name (answered to the backend as ``no_such_dealer``)."""

    def __init__(self, dealer_name: object) -> None:
        shown = dealer_name if isinstance(dealer_name, str) else type(dealer_name).__name__
        super().__init__("No such dealer", "no_such_dealer", f'No dealer is named "{shown:.60}"')
        self.dealer_name = dealer_name
        """The name asked for."""


class UnknownModelClass(SnorkyError):
    """No dealer serves this model (a delta for it reaches nobody)."""

    def __init__(self, model: str) -> None:
        super().__init__(f'No dealer serves the model "{model:.60}"', "unknown_model")
        self.model = model
        """The model asked for."""


class TransportError(SnorkyError):
    """The backend port could not be reached or answered with an HTTP error.

    Attributes:
        url: the URL called.
        status: the HTTP status (``None`` if no response came).
        outcome_unknown: the request may have reached Snorky, but no answer
            came (it timed out, or the connection broke after it was sent):
            Snorky may have acted on it. ``False`` when it certainly did not
            arrive (the connection was refused) or Snorky answered.

    .. versionchanged:: 0.2
       ``outcome_unknown``.
    """

    def __init__(self, url: str, status: int | None, detail: str, *, outcome_unknown: bool = False) -> None:
        where = f"{url}: HTTP {status}" if status is not None else url
        super().__init__(f"Snorky backend {where}: {detail}", "transport_error")
        self.url = url
        self.status = status
        self.outcome_unknown = outcome_unknown
