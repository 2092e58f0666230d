"""WebSocket transport: ``SnorkyWebSocketHandler.get_route(registry, "/ws", **options)``.

Outgoing messages skip Tornado's ``write_message`` (which creates an asyncio Task
per call): each message's frame is built once by :class:`~snorky.protocol.Outbound`
and written straight to the socket when Tornado has nothing queued for it, or
appended to Tornado's own write buffer otherwise, so frames never interleave.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from tornado.iostream import IOStream, StreamClosedError
from tornado.websocket import WebSocketHandler, WebSocketProtocol13

from snorky.auth import AuthError
from snorky.client import Client
from snorky.errors import CLOSE_CODES, CLOSE_GOING_AWAY, CLOSE_SLOW_CLIENT
from snorky.protocol import Outbound
from snorky.request_handlers.options import TransportOptions, origin_allowed
from snorky.service_registry import ServiceRegistry

__all__ = ["SnorkyWebSocketHandler", "WebSocketClient"]

logger = logging.getLogger(__name__)


class WebSocketClient(Client):
    """A peer connected over WebSocket."""

    def __init__(self, req_handler: SnorkyWebSocketHandler) -> None:
        super().__init__()
        self.req_handler = req_handler
        self._stream: Any = None
        self._socket: Any = None
        self._unsent = 0
        self._cap = req_handler.transport_options.max_unsent_bytes
        self.closed = False
        """True once the connection is closed or closing; sends are dropped."""

    @property
    def remote_address(self) -> str | None:
        """The peer's IP address."""
        return self.req_handler.request.remote_ip

    def attach(self) -> None:
        """Bind to the stream once the handshake is done (called by the handler)."""
        connection = self.req_handler.ws_connection
        stream = getattr(connection, "stream", None)
        self._stream = stream
        # Writing to the raw socket is only right for plain TCP (not TLS).
        self._socket = stream.socket if type(stream) is IOStream else None

    def send(self, msg: Any) -> None:
        """Send one JSON value."""
        self.write_frame(Outbound(msg).ws_frame)

    def deliver(self, out: Outbound) -> None:
        """Send a message encoded and framed once for all its recipients."""
        self.write_frame(out.ws_frame)

    def write_frame(self, frame: bytes) -> None:
        """Write one complete WebSocket frame, closing the peer if it reads too slowly."""
        if self.closed:
            return
        stream = self._stream
        sock = self._socket
        if sock is not None and not stream.writing():
            try:
                sent = sock.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._lost()
                return
            if sent == len(frame):
                return
            frame = frame[sent:]
        self._unsent += len(frame)
        if self._unsent > self._cap:
            self._too_slow()
            return
        try:
            future = stream.write(frame)
        except StreamClosedError:
            self._lost()
            return
        size = len(frame)
        future.add_done_callback(lambda _f: self._written(size))

    def _written(self, size: int) -> None:
        self._unsent -= size

    def _too_slow(self) -> None:
        logger.warning("! closing slow client %s: over %d unsent bytes", self.remote_address, self._cap)
        self.close(CLOSE_SLOW_CLIENT)

    def _lost(self) -> None:
        self.closed = True
        self.req_handler.close()

    def close(self, code: int = CLOSE_GOING_AWAY, reason: str | None = None) -> None:
        """Close the connection with a WebSocket close code."""
        if self.closed:
            return
        self.closed = True
        self.req_handler.close(code, reason if reason is not None else CLOSE_CODES.get(code))


class _Protocol13(WebSocketProtocol13):
    """Tornado's RFC 6455 protocol, logging the closes Tornado decides on its own."""

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if code == 1009 and not self.server_terminated:
            logger.warning("! closing %s: %s", cast(Any, self.handler).request.remote_ip, reason)
        super().close(code, reason)


class SnorkyWebSocketHandler(WebSocketHandler):
    """Serves one WebSocket connection for a :class:`~snorky.ServiceRegistry`.

    Route options (see :class:`~snorky.request_handlers.options.TransportOptions`):
    ``allowed_origins``, ``max_message_size``, ``ping_interval``, ``ping_timeout``,
    ``max_unsent_bytes``.
    """

    service_registry: ServiceRegistry
    transport_options: TransportOptions
    client: WebSocketClient

    def initialize(
        self, service_registry: ServiceRegistry, transport_options: TransportOptions | None = None, **kwargs: Any
    ) -> None:
        self.service_registry = service_registry
        if transport_options is None:  # a route written by hand, with the options spelled out
            transport_options = TransportOptions.from_kwargs(kwargs)
            if kwargs:
                raise TypeError(f"unknown WebSocket options: {', '.join(sorted(kwargs))}")
        self.transport_options = transport_options
        self.client = WebSocketClient(self)

    @classmethod
    def get_route(
        cls, service_registry: ServiceRegistry, path: str = "/", **options: Any
    ) -> tuple[str, type[SnorkyWebSocketHandler], dict[str, Any]]:
        """Return a ``(path, handler, kwargs)`` route for :class:`tornado.web.Application`.

        The options are checked here, once, and shared by every connection of the route.
        """
        remaining = dict(options)
        transport_options = TransportOptions.from_kwargs(remaining)
        if remaining:
            raise TypeError(f"unknown WebSocket options: {', '.join(sorted(remaining))}")
        return (path, cls, {"service_registry": service_registry, "transport_options": transport_options})

    # Tornado reads these three as its per-connection limits.
    @property
    def ping_interval(self) -> float | None:
        return self.transport_options.ping_interval or None

    @property
    def ping_timeout(self) -> float | None:
        return min(
            self.transport_options.ping_timeout,
            self.transport_options.ping_interval or self.transport_options.ping_timeout,
        )

    @property
    def max_message_size(self) -> int:
        return self.transport_options.max_message_size

    def check_origin(self, origin: str) -> bool:
        """Allow the server's own host and the configured ``allowed_origins``."""
        if origin_allowed(origin, self.request.host, self.transport_options.allowed_origins):
            return True
        logger.warning("! refused WebSocket from origin %s (%s)", origin, self.request.remote_ip)
        return False

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.client.attach()
        token = self.get_query_argument("token", None)
        if token is not None:
            try:
                self.service_registry.authenticate(self.client, token)
            except AuthError as error:
                self.service_registry.refuse_token(self.client, error)
                return
        self.service_registry.client_connected(self.client)

    def on_message(self, message: str | bytes) -> None:
        self.service_registry.process_message_raw(self.client, message)

    def get_websocket_protocol(self) -> WebSocketProtocol13 | None:
        protocol = super().get_websocket_protocol()
        if type(protocol) is WebSocketProtocol13:
            protocol.__class__ = _Protocol13
        return protocol  # type: ignore[return-value]

    def on_close(self) -> None:
        self.client.closed = True
        self.service_registry.client_disconnected(self.client)
