"""SockJS transport on sockjs-tornado: ``SnorkySockJSHandler.get_routes(registry, "/sockjs")``.

Browsers on networks that break WebSocket fall back to streaming or polling
(xhr-streaming, xhr-polling, eventsource, ...); services see the same
:class:`~snorky.client.Client` either way. Each outgoing message is JSON-quoted
once for all its recipients (:attr:`snorky.protocol.Outbound.sockjs`).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any
from urllib.parse import urlsplit

with warnings.catch_warnings():
    # sockjs-tornado decorates its handlers with its own copy of Tornado's old
    # @asynchronous, which warns at import, and some of its regexes have escapes
    # that newer Pythons warn about when they compile it; nothing a user can act on.
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", SyntaxWarning)
    from sockjs.tornado import SockJSConnection, SockJSRouter
    from sockjs.tornado.session import CONNECTING, Session
    from sockjs.tornado.transports import JSONPSendHandler, XhrSendHandler

from tornado.web import stream_request_body

from snorky.client import Client
from snorky.errors import (
    CLOSE_CODES,
    CLOSE_FORBIDDEN_ORIGIN,
    CLOSE_GOING_AWAY,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_SLOW_CLIENT,
    CLOSE_TOO_MANY_REQUESTS,
    CLOSE_TRY_AGAIN_LATER,
)
from snorky.options import TransportOptions, origin_allowed
from snorky.protocol import Outbound
from snorky.request_handlers.body import LimitedBody
from snorky.service_registry import ServiceRegistry

__all__ = ["SnorkySockJSHandler", "SockJSClient"]

logger = logging.getLogger(__name__)


class SockJSClient(Client):
    """A peer connected over SockJS."""

    transport = "sockjs"

    def __init__(self, req_handler: SnorkySockJSHandler) -> None:
        super().__init__()
        self.req_handler = req_handler
        self.address: str | None = None
        self.closed = False
        """True once the session is closed; sends are dropped."""
        self.closed_with: int | None = None
        """The close code the server closed the session with (``None``: the peer went)."""

    @property
    def remote_address(self) -> str | None:
        """The peer's IP address."""
        return self.address

    def send(self, msg: Any) -> None:
        """Send one JSON value."""
        self.deliver(Outbound(msg))

    def deliver(self, out: Outbound) -> None:
        """Send a message quoted once for all its recipients."""
        if self.closed:
            return
        session = self.req_handler.session
        if not session.send_expects_json:
            # The raw WebSocket endpoint (``PREFIX/websocket``): plain JSON text
            # frames, no SockJS framing, nothing queued.
            session.send_message(out.json.decode("utf-8"))
            return
        session.send_jsonified(out.sockjs)
        if len(session.send_queue) > self.req_handler.transport_options.max_unsent_bytes:
            logger.warning("! closing slow SockJS client %s", self.address)
            self.close(CLOSE_SLOW_CLIENT)

    def close(self, code: int = CLOSE_GOING_AWAY, reason: str | None = None) -> None:
        """Close the session with a close code."""
        if self.closed:
            return
        self.closed = True
        self.closed_with = code
        self.req_handler.session.close(code, reason if reason is not None else CLOSE_CODES.get(code, ""))


def _too_large(message: str | bytes, limit: int) -> bool:
    """Whether ``message`` is over ``limit`` bytes in UTF-8 (encoded only if it may be)."""
    if len(message) > limit:
        return True
    if isinstance(message, bytes) or len(message) * 4 <= limit:
        return False
    return len(message.encode("utf-8", "surrogatepass")) > limit


class _SnorkySession(Session):  # type: ignore[misc]  # sockjs-tornado is untyped
    """A SockJS session that refuses a forbidden origin or a bad token before its open frame.

    sockjs-tornado sends the open frame ``o`` and only then calls ``on_open``; a
    close from ``on_open`` then writes a second frame to the same response, which
    on xhr-polling overflows the ``Content-Length`` already sent for ``o`` (the
    request fails and the client never hears why). Refused here, the close frame
    (its code and reason say why) is the first and only frame the client gets.
    """

    def verify_state(self) -> None:
        if self.state == CONNECTING:
            refusal = self.conn._admit(self.conn_info)
            if refusal is not None:
                self.close(refusal, CLOSE_CODES[refusal])
                return
        super().verify_state()

    def on_messages(self, msg_list: Any) -> None:
        """A send's payload must be a JSON array (of strings); anything else counts as one
        message, which the connection then refuses (sockjs-tornado would fail on it)."""
        super().on_messages(msg_list if type(msg_list) is list else [msg_list])


class _LimitedSend(LimitedBody):
    """A SockJS send whose body is held to the route's ``max_body_size`` before it is read.

    A larger body is answered 413 at once, and its session is closed with 1009."""

    server: Any
    path_kwargs: dict[str, Any]
    set_status: Any
    finish: Any

    def prepare(self) -> None:
        super().prepare()  # type: ignore[misc]  # sockjs-tornado is untyped
        options: TransportOptions = self.server.get_connection_class().transport_options
        self.body_limit = options.sockjs_body_limit
        if not self.start_body():
            self._too_large()

    def post(self, session_id: str) -> Any:
        if self.body_too_large:
            self._too_large()
            return None
        self.request.body = self.collected_body
        return super().post(session_id)  # type: ignore[misc]  # sockjs-tornado is untyped

    def _too_large(self) -> None:
        logger.warning("! SockJS send over %d bytes from %s refused", self.body_limit, self.request.remote_ip)
        session = self.server.get_session(self.path_kwargs.get("session_id"))
        if session is not None and not session.is_closed:
            session.conn.client.close(CLOSE_MESSAGE_TOO_BIG)
        self.set_status(413)
        self.finish("Payload too large.")


@stream_request_body
class _XhrSend(_LimitedSend, XhrSendHandler):  # type: ignore[misc]  # sockjs-tornado is untyped
    """sockjs-tornado's ``xhr_send``, with the body limit."""


@stream_request_body
class _JSONPSend(_LimitedSend, JSONPSendHandler):  # type: ignore[misc]  # sockjs-tornado is untyped
    """sockjs-tornado's ``jsonp_send``, with the body limit."""


_SEND_HANDLERS = {XhrSendHandler: _XhrSend, JSONPSendHandler: _JSONPSend}


class _LiveOrigins:
    """sockjs-tornado's ``websocket_allow_origin`` setting, read from the route's options
    at each handshake (so that a reload changes it): ``== "*"`` when every origin is
    allowed, else it contains the allowed hosts (``host:port``)."""

    def __init__(self, options: TransportOptions) -> None:
        self.options = options

    def __eq__(self, other: object) -> bool:
        return other == "*" and "*" in self.options.allowed_origins

    __hash__ = None  # type: ignore[assignment]  # equal to "*", so not hashable

    def __contains__(self, netloc: object) -> bool:
        return netloc in [urlsplit(o).netloc.lower() or o.lower() for o in self.options.allowed_origins]


class SnorkySockJSHandler(SockJSConnection):  # type: ignore[misc]  # sockjs-tornado is untyped
    """Serves one SockJS session for a :class:`~snorky.ServiceRegistry`."""

    service_registry: ServiceRegistry
    transport_options: TransportOptions

    def __init__(self, session: Any) -> None:
        super().__init__(session)
        self.client = SockJSClient(self)
        self.connected = False
        self.admitted = False

    @classmethod
    def get_routes(cls, service_registry: ServiceRegistry, prefix: str = "", **options: Any) -> list[tuple[Any, ...]]:
        """Return the routes of a SockJS endpoint at ``prefix``, for :class:`tornado.web.Application`.

        ``options`` are those of :class:`~snorky.options.TransportOptions`
        (or ``transport_options=`` an object to share, read live as with
        :meth:`SnorkyWebSocketHandler.get_route
        <snorky.request_handlers.websocket.SnorkyWebSocketHandler.get_route>`),
        plus ``sockjs_settings`` passed to sockjs-tornado's router.
        """
        settings = dict(options.pop("sockjs_settings", None) or {})
        shared = options.pop("transport_options", None)
        transport_options = shared if shared is not None else TransportOptions.from_kwargs(options)
        if options:
            raise TypeError(f"unknown SockJS options: {', '.join(sorted(options))}")
        settings.setdefault("websocket_allow_origin", _LiveOrigins(transport_options))
        # SockJS's WebSocket transport refuses a foreign origin at the handshake
        # (HTTP 403, like SnorkyWebSocketHandler); the streaming and polling
        # transports are refused by _SnorkySession with close code 4003.
        handler = type(
            cls.__name__,
            (cls,),
            {"service_registry": service_registry, "transport_options": transport_options},
        )
        router = SockJSRouter(handler, prefix, settings, session_kls=_SnorkySession)
        return [(route[0], _SEND_HANDLERS.get(route[1], route[1]), *route[2:]) for route in router.urls]

    def _admit(self, info: Any) -> int | None:
        """Check the session's origin, its address's rate of new sessions and its ``?token=``
        (once); return a close code to refuse it.

        A valid token gives the client its identity. Refusals are logged.
        """
        if self.admitted:
            return None
        if not self.service_registry.accepting:
            return CLOSE_TRY_AGAIN_LATER  # the server drains
        self.client.address = info.ip
        limiter = self.service_registry.limiter
        if limiter is not None and limiter.new_connection(limiter.client_address(info.ip, info.get_header)):
            return CLOSE_TOO_MANY_REQUESTS  # the address opens sessions too fast
        origin = info.get_header("origin")
        host = info.get_header("host") or ""
        if origin and not origin_allowed(origin, host, self.transport_options.allowed_origins):
            logger.warning("! refused SockJS session from origin %s (%s)", origin, info.ip)
            return CLOSE_FORBIDDEN_ORIGIN
        token = info.get_argument("token")
        if isinstance(token, bytes):
            token = token.decode("utf-8", "replace")
        refusal = self.service_registry.admit(self.client, token, answer=False)  # before the session opens
        if refusal is not None:
            return refusal
        self.admitted = True
        return None

    def on_open(self, info: Any) -> None:
        # Sessions are admitted in _SnorkySession before this; the raw WebSocket
        # endpoint's sessions are not of that class.
        refusal = self._admit(info)
        if refusal is not None:
            self.client.close(refusal)
            return
        self.connected = True
        self.service_registry.client_connected(self.client)

    def on_message(self, message: str | bytes) -> None:
        if not isinstance(message, (str, bytes)):
            logger.warning("! SockJS message that is not a string from %s: %.100r", self.client.address, message)
            self.service_registry.reject(self.client, "invalid_message")
            return
        if _too_large(message, self.transport_options.max_message_size):
            logger.warning(
                "! message over %d bytes from %s", self.transport_options.max_message_size, self.client.address
            )
            self.service_registry.reject(self.client, "message_too_large")
            return
        try:
            self.service_registry.process_message_raw(self.client, message)
        except Exception:
            # sockjs-tornado would drop the connection; one client's message must not.
            logger.exception("! failed to process a SockJS message from %s", self.client.address)

    def on_close(self) -> None:
        self.client.closed = True
        if self.connected:
            self.connected = False
            self.client.close_code = self.client.closed_with
            self.service_registry.client_disconnected(self.client)
