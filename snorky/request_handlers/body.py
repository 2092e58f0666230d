"""Request bodies held to a size limit before they are read.

Tornado reads a whole request body into memory before a handler sees it, up to the
server's ``max_body_size``. Handlers that accept bodies (the backend port, SockJS
sends) use :class:`LimitedBody` with :func:`tornado.web.stream_request_body` instead:
the limit is checked against ``Content-Length`` as soon as the headers arrive, and
against the bytes received for a chunked body, and nothing over it is kept.
"""

from __future__ import annotations

import logging
from typing import Any

from tornado.httputil import HTTPServerRequest

__all__ = ["LimitedBody"]

logger = logging.getLogger(__name__)


class LimitedBody:
    """Mixin for a ``@stream_request_body`` request handler that collects its body up to
    :attr:`body_limit` bytes.

    Call :meth:`start_body` from ``prepare()``; then :attr:`body_too_large` says whether the
    body was refused, and :attr:`collected_body` holds it otherwise.
    """

    body_limit: int = 1024 * 1024
    """The largest body kept."""
    drain_limit: int = 0
    """A body over :attr:`body_limit` but at most this large is read and thrown away before
    the handler answers, so that a client that sends its whole body before reading the
    answer (most do) gets it; a larger one is answered at once and the connection closed."""

    request: HTTPServerRequest
    send_error: Any

    def start_body(self) -> bool:
        """Check the announced size; False when the body must be refused at once (the
        handler answers, and Tornado closes the connection without reading the body)."""
        self._body_parts: list[bytes] = []
        self._body_size = 0
        self._body_answered = False
        self.body_too_large = False
        """Whether the body was over :attr:`body_limit` (and thrown away)."""
        announced = self.request.headers.get("Content-Length")
        connection: Any = self.request.connection
        if announced is None:
            # Chunked: counted as it comes (see data_received); Tornado itself stops at a
            # single chunk far larger than anything kept.
            connection.set_max_body_size(16 * max(self.body_limit, self.drain_limit))
            return True
        try:
            size = int(announced)
        except ValueError:
            return True  # Tornado refuses the request itself
        if size <= self.body_limit:
            connection.set_max_body_size(self.body_limit)
            return True
        self.body_too_large = True
        if size <= self.drain_limit:
            connection.set_max_body_size(size)
            return True
        return False

    def data_received(self, chunk: bytes) -> None:
        """Keep ``chunk`` while the body is within the limit; past it, keep nothing, and
        past the drain limit answer 413 at once."""
        self._body_size += len(chunk)
        if self._body_size > self.body_limit:
            self.body_too_large = True
            self._body_parts = []
            if self._body_size > self.drain_limit and not self._body_answered:
                self._body_answered = True  # Tornado delivers nothing more once it is answered
                logger.warning("! request body over %d bytes from %s refused", self.body_limit, self.request.remote_ip)
                self.send_error(413)
            return
        self._body_parts.append(chunk)

    @property
    def collected_body(self) -> bytes:
        """The body received, whole (empty if it was too large)."""
        return b"".join(self._body_parts)
