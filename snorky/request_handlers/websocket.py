"""WebSocket transport: ``SnorkyWebSocketHandler.get_route(registry, "/ws", **options)``.

Tornado does the HTTP handshake. A plain TCP connection is then served by
:mod:`snorky.request_handlers.ws_direct` (faster, and lighter per connection than
Tornado's frame loop), with permessage-deflate when the route enables compression and
the client offers it; a TLS connection stays with Tornado. Either way, each outgoing
message's frame is built once by :class:`~snorky.protocol.Outbound` for all its
recipients (once per window size for compressing connections). On Tornado's path it is
written straight to the socket when Tornado has nothing queued for it, or appended to
Tornado's write buffer otherwise (skipping ``write_message``, which creates a Task per
call), so frames never interleave.
"""

from __future__ import annotations

import logging
import math
from asyncio import Future
from typing import Any

from tornado.escape import json_encode
from tornado.iostream import IOStream, StreamClosedError
from tornado.websocket import WebSocketHandler, WebSocketProtocol13

from snorky.client import Client
from snorky.errors import CLOSE_ABNORMAL, CLOSE_CODES, CLOSE_GOING_AWAY, CLOSE_SLOW_CLIENT
from snorky.options import TransportOptions, origin_allowed
from snorky.protocol import Outbound
from snorky.request_handlers.tornado_internals import (
    LoggingProtocol13,
    end_frame_loop,
    end_protocol,
    release_request,
    websocket_stream,
)
from snorky.request_handlers.ws_direct import DirectConnection, can_take_over, take_over
from snorky.service_registry import ServiceRegistry
from snorky.websocket.deflate import DeflateParams, SharedDeflater, negotiate_deflate

__all__ = ["SnorkyWebSocketHandler", "WebSocketClient"]

logger = logging.getLogger(__name__)


class WebSocketClient(Client):
    """A peer connected over WebSocket."""

    transport = "websocket"

    def __init__(self, req_handler: SnorkyWebSocketHandler) -> None:
        super().__init__()
        self.req_handler = req_handler
        self._stream: Any = None
        self._socket: Any = None
        self._direct: DirectConnection | None = None
        self._deflate: tuple[int, int, int] | None = None  # window bits, level, min size
        self._unsent = 0
        self._cap = req_handler.transport_options.max_unsent_bytes
        self.closed = False
        """True once the connection is closed or closing; sends are dropped."""

    @property
    def remote_address(self) -> str | None:
        """The peer's IP address."""
        return self.req_handler.request.remote_ip

    def attach(self) -> None:
        """Bind to the connection once the handshake is done (called by the handler)."""
        self._direct = direct = self.req_handler.direct_connection
        if direct is not None:
            # Frames go straight to the connection, which drops them once it is closing
            # and calls _too_slow when too much waits for the kernel.
            self.write_frame = direct.write  # type: ignore[method-assign]
            deflate = direct.deflate
            if deflate is None:
                self.writer = direct.write  # fan-outs hand it the shared plain frame
            else:
                protocol = direct.protocol
                key = (deflate.server_max_window_bits, protocol.compression_level, protocol.compression_min_size)
                self._deflate = key
                deflater = _DEFLATERS.get(key)
                if deflater is None:
                    deflater = _DEFLATERS[key] = SharedDeflater(*key)
                frame_for, write = deflater.frame_for, direct.write

                def write_deflated(frame: bytes) -> None:
                    write(frame_for(frame))

                # Fan-outs hand every subscriber the same plain frame: compressed once,
                # by the first connection of each window size.
                self.writer = write_deflated
            return
        connection = self.req_handler.ws_connection
        stream = getattr(connection, "stream", None)
        self._stream = stream
        # Writing to the raw socket is only right for plain TCP (not TLS).
        self._socket = stream.socket if type(stream) is IOStream else None

    def send(self, msg: Any) -> None:
        """Send one JSON value."""
        self.deliver(Outbound(msg))

    def received(self, message: str | bytes) -> None:
        """Handle one incoming message (the direct path calls this for every message)."""
        self.req_handler.service_registry.process_message_raw(self, message)

    def deliver(self, out: Outbound) -> None:
        """Send a message encoded and framed once for all its recipients (compressed once
        for all those that negotiated the same window)."""
        deflate = self._deflate
        if deflate is None:
            self.write_frame(out.ws_frame)
        else:
            self.write_frame(out.ws_frame_deflated(*deflate))

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
        if self._direct is not None:
            self._direct.abort()
        else:
            self.req_handler.close()

    def close(self, code: int = CLOSE_GOING_AWAY, reason: str | None = None) -> None:
        """Close the connection with a WebSocket close code."""
        if self.closed:
            return
        self.closed = True
        reason = reason if reason is not None else CLOSE_CODES.get(code)
        if self._direct is not None:
            self._direct.close(code, reason)
        else:
            self.req_handler.close(code, reason)


_DEFLATERS: dict[tuple[int, int, int], SharedDeflater] = {}
"""One per (window bits, level, minimum size): the compressed frame of the last fan-out."""


def _no_compression() -> None:
    return None


class SnorkyWebSocketHandler(WebSocketHandler):
    """Serves one WebSocket connection for a :class:`~snorky.ServiceRegistry`.

    Route options (see :class:`~snorky.options.TransportOptions`):
    ``allowed_origins``, ``max_message_size``, ``ping_interval``, ``ping_timeout``,
    ``max_unsent_bytes``, ``compression``, ``compression_level``, ``compression_min_size``.
    """

    direct_io = True
    """Serve plain TCP connections with Snorky's own frame handling after the handshake
    (see :mod:`snorky.request_handlers.ws_direct`); False keeps Tornado's frame loop."""

    service_registry: ServiceRegistry
    transport_options: TransportOptions
    client: WebSocketClient
    direct_connection: DirectConnection | None = None
    _direct = False
    _direct_closed = False
    _deflate: DeflateParams | None = None

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
        Instead of spelling them out, ``transport_options=`` may give a
        :class:`~snorky.options.TransportOptions` object to share:
        connections opened after it changes get the new values
        (:meth:`SnorkyServer.reload <snorky.server.SnorkyServer.reload>` changes it).
        """
        remaining = dict(options)
        shared = remaining.pop("transport_options", None)
        transport_options = shared if shared is not None else TransportOptions.from_kwargs(remaining)
        if remaining:
            raise TypeError(f"unknown WebSocket options: {', '.join(sorted(remaining))}")
        return (path, cls, {"service_registry": service_registry, "transport_options": transport_options})

    # Tornado reads these three as its per-connection limits.
    @property
    def ping_interval(self) -> float | None:
        if self._direct:
            return None  # DirectConnection pings
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

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Refuse the handshake with 503 while the server drains, and with 429 when the
        client's address opens connections too fast; else upgrade as Tornado does."""
        if not self.service_registry.accepting:
            self.set_status(503)
            self.set_header("Retry-After", "1")
            self.finish("This node is shutting down: connect to another one.")
            return
        limiter = self.service_registry.limiter
        if limiter is not None:
            address = limiter.client_address(self.request.remote_ip, self.request.headers.get)
            wait = limiter.new_connection(address)
            if wait:
                self.set_status(429)
                self.set_header("Retry-After", str(max(1, math.ceil(wait))))
                self.finish("Too many new connections from this address: try again later.")
                return
        await super().get(*args, **kwargs)

    def get_compression_options(self) -> dict[str, Any] | None:
        """permessage-deflate settings when the route enables ``compression`` (Tornado's hook).

        A subclass that overrides it to return a dict (as Tornado's documentation shows)
        turns compression on too; its ``compression_level`` is used.
        """
        options = self.transport_options
        if not options.compression:
            return None
        return {"compression_level": options.compression_level}

    def check_origin(self, origin: str) -> bool:
        """Allow the server's own host and the configured ``allowed_origins``."""
        if origin_allowed(origin, self.request.host, self.transport_options.allowed_origins):
            return True
        logger.warning("! refused WebSocket from origin %s (%s)", origin, self.request.remote_ip)
        return False

    def open(self, *args: Any, **kwargs: Any) -> Any:
        if self._direct:
            return self._serve_directly()
        self._opened()
        return None

    def _serve_directly(self) -> Any:
        """Move the connection to a :class:`DirectConnection`.

        Tornado then finds the peer gone and ends its side: its stream, its frame loop and
        the coroutines of the handshake are released (see :meth:`on_connection_close`),
        while the connection goes on. Returns an awaitable only in the rare case where
        the handshake's response is still being written; Tornado waits for it first.
        """
        protocol = self.ws_connection
        stream = websocket_stream(protocol)
        assert stream is not None and protocol is not None
        if stream.writing():
            return self._serve_when_written(stream)
        options = self.transport_options
        compression_level = (self.get_compression_options() or {}).get("compression_level", options.compression_level)
        connection = DirectConnection(
            self._direct_message_handler(),
            self._closed_directly,
            options.max_message_size,
            options.ping_interval,
            min(options.ping_timeout, options.ping_interval or options.ping_timeout),
            describe=str(self.request.remote_ip),
            max_unsent=options.max_unsent_bytes,
            on_too_slow=self.client._too_slow,
            deflate=self._deflate,
            compression_level=compression_level,
            compression_min_size=options.compression_min_size,
        )
        self.direct_connection = connection
        take_over(stream, connection, nodelay=options.tcp_nodelay)
        release_request(self)
        self._opened()
        connection.start()
        end_frame_loop(protocol)  # Tornado's frame loop stops at once
        return None

    async def _serve_when_written(self, stream: IOStream) -> None:
        await stream.write(b"")  # resolves once everything queued before it is written
        self._serve_directly()

    def _direct_message_handler(self) -> Any:
        if type(self).on_message is SnorkyWebSocketHandler.on_message:
            return self.client.received  # not through the handler: one call less per message
        return self.on_message  # a subclass's own on_message

    def on_connection_close(self) -> None:
        if self.direct_connection is not None and not self._direct_closed:
            # Tornado's side ends (its stream gave the socket away); the connection goes on.
            if self.ws_connection is not None:
                end_protocol(self.ws_connection)
                self.ws_connection = None
            return
        super().on_connection_close()

    def _closed_directly(self, code: int | None, reason: str | None) -> None:
        """The direct connection is closing (or lost): no more messages; tell the services now."""
        self._direct_closed = True
        self.client.closed = True
        self.close_code, self.close_reason = code, reason
        self.on_connection_close()

    def write_message(self, message: str | bytes | dict[str, Any], binary: bool = False) -> Any:
        """Send one message (Tornado's API; Snorky itself sends through its client)."""
        if self.direct_connection is None:
            return super().write_message(message, binary)
        if isinstance(message, dict):
            message = json_encode(message)
        payload = message.encode("utf-8") if isinstance(message, str) else message
        self.direct_connection.send_message(payload, binary)
        done: Future[None] = Future()
        done.set_result(None)
        return done

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if self.direct_connection is not None:
            self.direct_connection.close(code, reason)
            return
        super().close(code, reason)

    def _opened(self) -> None:
        self.client.attach()
        refusal = self.service_registry.admit(self.client, self.get_query_argument("token", None))
        if refusal is not None:
            self.client.close(refusal)
            return
        self.service_registry.client_connected(self.client)

    def on_message(self, message: str | bytes) -> None:
        self.service_registry.process_message_raw(self.client, message)

    def get_websocket_protocol(self) -> WebSocketProtocol13 | None:
        connection = self.request.connection
        self._direct = bool(self.direct_io and can_take_over(getattr(connection, "stream", None)))
        compression = self.get_compression_options()
        if self._direct:
            if compression is not None:
                self._deflate = negotiate_deflate(self.request.headers.get_list("Sec-WebSocket-Extensions"))
                if self._deflate is not None:
                    self.set_header("Sec-WebSocket-Extensions", self._deflate.response)
            # Snorky negotiated permessage-deflate itself: Tornado must not.
            self.get_compression_options = _no_compression  # type: ignore[method-assign]
        try:
            protocol = super().get_websocket_protocol()
        finally:
            self.__dict__.pop("get_compression_options", None)
        if type(protocol) is WebSocketProtocol13:
            protocol.__class__ = LoggingProtocol13
        return protocol  # type: ignore[return-value]

    def on_close(self) -> None:
        self.client.closed = True
        # No close frame: the connection dropped.
        self.client.close_code = self.close_code if self.close_code is not None else CLOSE_ABNORMAL
        self.service_registry.client_disconnected(self.client)
