"""Backend HTTP transport: trusted application servers POST one message, get one reply.

Route: ``(path, BackendHTTPHandler, {"service_registry": registry, "api_key": key})``
or :meth:`BackendHTTPHandler.get_route`. Every request carries the key in the
``X-Backend-Key`` header (compared in constant time). The body is one envelope
``{"service", "message"}``; the response body is the service's answer envelope.
Failures answer a JSON body ``{"type": "error", "code", "message"}`` with:

====  =====================================================================
400   ``invalid_json`` or ``invalid_message`` (the body is not an envelope)
401   ``unauthorized``: the key is missing or wrong
404   ``unknown_service``
413   ``message_too_large``: the body is over ``max_message_size`` (checked before it is
      read: a body up to 16 times the limit is read and thrown away before the answer,
      so that clients that send the whole body first get it; a larger one is answered
      at once and the connection closed)
504   ``timeout``: the service did not answer within ``timeout`` seconds
====  =====================================================================
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any, NoReturn

from tornado.web import HTTPError, RequestHandler, stream_request_body

from snorky.client import Client
from snorky.errors import ProtocolError, error_body
from snorky.protocol import Outbound, decode, encode
from snorky.request_handlers.body import LimitedBody
from snorky.service_registry import ServiceRegistry

__all__ = ["BackendHTTPHandler", "HTTPClient"]

logger = logging.getLogger(__name__)

_STATUS_CODES = {405: "method_not_allowed", 413: "message_too_large"}
"""The error code of a failure Tornado answers by itself (other 4xx are ``invalid_message``)."""


class _Refused(HTTPError):
    """A request refused with an HTTP status, a Snorky error code and a message."""

    def __init__(self, status: int, code: str, message: str | None) -> None:
        super().__init__(status)
        self.body = error_body(code, message=message, http=True)


class HTTPClient(Client):
    """The backend peer of one HTTP request; its first message becomes the response."""

    transport = "http"

    def __init__(self, req_handler: BackendHTTPHandler) -> None:
        super().__init__()
        self.req_handler = req_handler
        self.answer: asyncio.Future[Outbound] = asyncio.get_running_loop().create_future()
        """Resolved with the first message a service sends to this client."""

    @property
    def remote_address(self) -> str | None:
        """The IP address of the application server."""
        return self.req_handler.request.remote_ip

    def send(self, msg: Any) -> None:
        """Answer the request with ``msg`` (later messages are dropped)."""
        self.deliver(Outbound(msg))

    def deliver(self, out: Outbound) -> None:
        if not self.answer.done():
            self.answer.set_result(out)


@stream_request_body
class BackendHTTPHandler(LimitedBody, RequestHandler):
    """Serves the backend registry over HTTP POST (see the module docs)."""

    service_registry: ServiceRegistry

    def initialize(
        self,
        service_registry: ServiceRegistry,
        api_key: str,
        max_message_size: int = 1024 * 1024,
        timeout: float = 30.0,
    ) -> None:
        if not api_key:
            raise ValueError("BackendHTTPHandler needs a non-empty api_key")
        self.service_registry = service_registry
        self.api_key = api_key
        self.max_message_size = max_message_size
        self.timeout = timeout
        self.body_limit = max_message_size
        self.drain_limit = 16 * max_message_size

    @classmethod
    def get_route(
        cls, service_registry: ServiceRegistry, path: str = "/backend", **options: Any
    ) -> tuple[str, type[BackendHTTPHandler], dict[str, Any]]:
        """Return a ``(path, handler, kwargs)`` route; ``api_key`` is required."""
        return (path, cls, dict(options, service_registry=service_registry))

    def check_xsrf_cookie(self) -> None:
        """The API key authenticates; there are no cookies to protect."""

    def check_api_key(self) -> None:
        """Refuse the request with 401 unless ``X-Backend-Key`` matches the key."""
        key = self.request.headers.get("X-Backend-Key")
        if key is None:
            self._fail(401, "unauthorized", "Missing X-Backend-Key header")
        if not hmac.compare_digest(key.encode("utf-8"), self.api_key.encode("utf-8")):
            self._fail(401, "unauthorized", "Invalid API key")

    def _fail(self, status: int, code: str, message: str | None = None) -> NoReturn:
        raise _Refused(status, code, message)

    def prepare(self) -> None:
        """Check the key, then the body's announced size, before the body is read."""
        self.check_api_key()
        if not self.start_body():
            self._fail(413, "message_too_large")

    async def post(self) -> None:
        if self.body_too_large:
            self._fail(413, "message_too_large")
        body = self.collected_body
        try:
            service, content = self.service_registry.resolve(decode(body))
        except ProtocolError as error:
            if error.code == "unknown_service":
                self._fail(404, error.code, f'Unknown service "{error.service}"')
            self._fail(400, error.code, error.message)
        client = HTTPClient(self)
        service.process_message_from(client, content)
        try:
            out = await asyncio.wait_for(asyncio.shield(client.answer), self.timeout)
        except asyncio.TimeoutError:
            self._fail(504, "timeout")
        self.set_header("Content-Type", "application/json")
        self.finish(out.json)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Answer every failure with a JSON body ``{"type": "error", "code", "message"}``."""
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, _Refused):
            body = error.body
        elif status_code in _STATUS_CODES:
            body = error_body(_STATUS_CODES[status_code], http=True)
        elif status_code < 500:
            body = error_body("invalid_message", message=self._reason, http=True)
        else:
            body = error_body("internal_error", http=True)
        self.set_header("Content-Type", "application/json")
        self.finish(encode(body))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, _Refused):
            logger.warning(
                "! backend request from %s refused: %d %s",
                self.request.remote_ip,
                value.status_code,
                value.body["message"],
            )
        else:
            super().log_exception(typ, value, tb)
