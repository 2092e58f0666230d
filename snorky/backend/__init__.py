"""The Python connector for Snorky's backend HTTP port.

Synchronous, as in Snorky 0.1 (``requests``)::

    backend = SnorkyBackend(SnorkyHTTPTransport("http://127.0.0.1:5002/backend", key))
    backend.call("pubsub", "publish", channel="news", message={"title": "Hi"})

Asynchronous, for Tornado and asyncio applications::

    backend = AsyncSnorkyBackend(AsyncSnorkyHTTPTransport(url, key))
    await backend.call("pubsub", "publish", channel="news", message="Hi")

Application servers give each browser a token proving who it is::

    token = sign_token(str(user.id), settings.SNORKY_TOKEN_SECRET, info={"name": user.name})

``call`` returns the command's data or raises :class:`SnorkyError` with the
service's ``message`` and ``code``; a failure to reach the port or an HTTP
error raises :class:`TransportError`, naming the URL and the status.
"""

from __future__ import annotations

import json as stdlib_json
import logging
from typing import Any

import requests
from urllib3.exceptions import ConnectTimeoutError

from snorky.auth import sign_subscription_token, sign_token
from snorky.errors import SnorkyError, TransportError

__all__ = [
    "sign_token",
    "sign_subscription_token",
    "SnorkyError",
    "TransportError",
    "SnorkyHTTPTransport",
    "SnorkyBackend",
    "AsyncSnorkyHTTPTransport",
    "AsyncSnorkyBackend",
]

logger = logging.getLogger(__name__)


def _may_have_arrived(error: requests.RequestException) -> bool:
    """Whether a request that got no answer may have reached the server."""
    if isinstance(error, requests.ConnectTimeout):
        return False
    if isinstance(error, requests.Timeout):
        return True  # sent, then no answer in time
    if isinstance(error, requests.ConnectionError):
        reason = getattr(error.args[0], "reason", None) if error.args else None
        return not isinstance(reason, ConnectTimeoutError)  # refused or unreachable: never sent
    return False


def _error_detail(body: bytes, reason: str | None) -> str:
    """The ``message`` of a JSON error body, else the HTTP reason."""
    try:
        parsed = stdlib_json.loads(body.decode("utf-8"))
        return str(parsed["message"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return reason or "error"


def _request(service: str, command: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"service": service, "message": {"command": command, "params": params}}


def _unwrap(response: Any) -> Any:
    """The data of an RPC answer envelope, or raise its error."""
    try:
        message = response["message"]
        kind = message["type"]
    except (KeyError, TypeError):
        raise SnorkyError(f"Unexpected answer from Snorky: {response!r:.200}", "invalid_message") from None
    if kind == "response":
        return message.get("data")
    if kind == "error":
        raise SnorkyError(message.get("message", "Error"), message.get("code"))
    raise SnorkyError(f"Unexpected answer type from Snorky: {kind!r}", "invalid_message")


class SnorkyHTTPTransport:
    """Sends one message to the backend port and returns the decoded answer.

    Args:
        url: the backend endpoint, e.g. ``http://127.0.0.1:5002/backend``.
        key: the API key sent as ``X-Backend-Key``.
        timeout: seconds to wait for the answer.
    """

    def __init__(self, url: str, key: str, timeout: float = 10.0) -> None:
        self.url = url
        self.key = key
        self.timeout = timeout
        self.session = requests.Session()

    def headers(self) -> dict[str, str]:
        """Headers of every request."""
        return {"X-Backend-Key": self.key, "Content-Type": "application/json", "Accept": "application/json"}

    def send(self, message: Any, json: Any = stdlib_json) -> Any:
        """POST ``message`` (encoded with ``json.dumps``) and return the decoded answer.

        Raises:
            TransportError: the port is unreachable, answered an HTTP error, or not JSON.
        """
        try:
            response = self.session.post(
                self.url, data=json.dumps(message).encode("utf-8"), headers=self.headers(), timeout=self.timeout
            )
        except requests.RequestException as error:
            raise TransportError(self.url, None, str(error), outcome_unknown=_may_have_arrived(error)) from None
        if response.status_code != 200:
            raise TransportError(self.url, response.status_code, _error_detail(response.content, response.reason))
        try:
            return json.loads(response.content.decode("utf-8"))
        except ValueError:
            raise TransportError(self.url, 200, "the answer is not JSON") from None


class SnorkyBackend:
    """Calls commands of the services on Snorky's backend port.

    Args:
        transport: how to reach the port (a :class:`SnorkyHTTPTransport`).
        json: the module used to encode and decode (default: :mod:`json`).
    """

    def __init__(self, transport: SnorkyHTTPTransport, json: Any = stdlib_json) -> None:
        self.transport = transport
        self.json = json

    def send(self, message: Any) -> Any:
        """Send a raw envelope and return the raw answer."""
        return self.transport.send(message, json=self.json)

    def call(self, service: str, command: str, /, **params: Any) -> Any:
        """Call ``command`` of ``service`` with ``params``; return its data.

        Raises:
            SnorkyError: the service answered an error (``message`` and ``code`` set).
            TransportError: the port could not be reached.
        """
        logger.debug("> %s.%s %r", service, command, params)
        return _unwrap(self.send(_request(service, command, params)))


class AsyncSnorkyHTTPTransport:
    """The asyncio twin of :class:`SnorkyHTTPTransport`, on Tornado's HTTP client."""

    def __init__(self, url: str, key: str, timeout: float = 10.0) -> None:
        self.url = url
        self.key = key
        self.timeout = timeout

    async def send(self, message: Any, json: Any = stdlib_json) -> Any:
        """POST ``message`` and return the decoded answer (see :meth:`SnorkyHTTPTransport.send`)."""
        from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
        from tornado.simple_httpclient import HTTPTimeoutError

        request = HTTPRequest(
            self.url,
            method="POST",
            body=json.dumps(message).encode("utf-8"),
            headers={"X-Backend-Key": self.key, "Content-Type": "application/json"},
            request_timeout=self.timeout,
        )
        try:
            response = await AsyncHTTPClient().fetch(request)
        except HTTPTimeoutError as error:  # while connecting or waiting for the answer: it may have arrived
            raise TransportError(self.url, None, error.message, outcome_unknown=True) from None
        except HTTPClientError as error:
            body = error.response.body if error.response is not None else b""
            status = error.code if error.code != 599 else None
            raise TransportError(self.url, status, _error_detail(body or b"", error.message)) from None
        except OSError as error:
            raise TransportError(self.url, None, str(error)) from None
        try:
            return json.loads(response.body.decode("utf-8"))
        except ValueError:
            raise TransportError(self.url, 200, "the answer is not JSON") from None


class AsyncSnorkyBackend:
    """The asyncio twin of :class:`SnorkyBackend`: ``await backend.call(...)``."""

    def __init__(self, transport: AsyncSnorkyHTTPTransport, json: Any = stdlib_json) -> None:
        self.transport = transport
        self.json = json

    async def send(self, message: Any) -> Any:
        """Send a raw envelope and return the raw answer."""
        return await self.transport.send(message, json=self.json)

    async def call(self, service: str, command: str, /, **params: Any) -> Any:
        """Call ``command`` of ``service``; see :meth:`SnorkyBackend.call`."""
        logger.debug("> %s.%s %r", service, command, params)
        return _unwrap(await self.send(_request(service, command, params)))
