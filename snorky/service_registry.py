"""ServiceRegistry: service names -> services; routes each decoded message."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, Any

from snorky.brokers.base import Broker
from snorky.brokers.memory import MemoryBroker
from snorky.client import Client, deliver, transport_of
from snorky.errors import (
    CLOSE_TOO_MANY_CONNECTIONS,
    CLOSE_TOO_MANY_REQUESTS,
    CLOSE_TRY_AGAIN_LATER,
    ERROR_CODES,
    AuthError,
    ProtocolError,
    error_body,
)
from snorky.limits import CLOSE, HELD, Limiter, LimitsConfig
from snorky.protocol import Outbound, decode, parse_envelope
from snorky.services.service import Service

if TYPE_CHECKING:
    from snorky.metrics import Metrics

__all__ = ["ServiceRegistry"]

logger = logging.getLogger(__name__)
compat_log = logging.getLogger("snorky")
"""Where the lines Snorky 0.1 logged go, in 0.1's words (apps and tests match them)."""

_PEEK_LIMIT = 64 * 1024
"""A message refused for the client's rate is read for its service and ``callId`` (so that the
refusal can name them) only up to this size."""


class ServiceRegistry:
    """A set of services, each under its name, and the clients connected to them.

    One process may hold several registries, for example a public one served to
    browsers and a private one on the backend port; give them the same broker so
    that both reach the same subscribers.

    Args:
        services: services to register at once.
        broker: the broker fan-outs go through (default: a new :class:`MemoryBroker`).
        metrics: where connections, messages, errors and limits are counted (default: nowhere).
        limits: the limits enforced on clients (see :mod:`snorky.limits`); default: none,
            as in Snorky 0.1 (``snorky serve`` always gives its ``[limits]``).

    .. versionchanged:: 0.2
       ``metrics`` and ``limits``.
    """

    def __init__(
        self,
        services: Iterable[Service] | None = None,
        broker: Broker | None = None,
        metrics: Metrics | None = None,
        limits: LimitsConfig | None = None,
    ) -> None:
        self.registered_services: dict[str, Service] = {}
        """Service name -> service."""
        self.broker: Broker = broker if broker is not None else MemoryBroker()
        """The broker shared by this registry's services."""
        self.clients: set[Any] = set()
        """Clients currently connected through a long-lived transport."""
        self.auth_service: Any = None
        """The registered service that verifies tokens (an AuthService), if any."""
        self._metrics = metrics
        self.accepting = True
        """Whether new clients are admitted; a draining server turns it off, and a client
        that connects then is closed at once with 1013 (try again later, with backoff)."""
        self.limiter: Limiter | None = Limiter(limits, self.broker, metrics) if limits is not None else None
        """Enforces the limits and keeps their state (``None``: no limits); it may also be set
        after the registry is made (clients already connected are then not limited)."""
        self._emptied: asyncio.Event | None = None
        self._deciding: set[asyncio.Future[Any]] = set()
        for service in services or ():
            self.register_service(service)

    @property
    def metrics(self) -> Metrics | None:
        """Where connections, messages, commands and errors are counted (``None``: nowhere).

        Setting it later also times the commands of the services already registered.
        """
        return self._metrics

    @metrics.setter
    def metrics(self, metrics: Metrics | None) -> None:
        self._metrics = metrics
        for service in self.registered_services.values():
            service.command_timings = metrics.timings_for(service.name) if metrics is not None else None

    def register_service(self, service: Service) -> None:
        """Add ``service`` under its name (replacing any service of that name)."""
        self.registered_services[service.name] = service
        if hasattr(service, "authenticate_client"):  # a service that verifies tokens (AuthService, or one's own)
            self.auth_service = service
        service.attach_to(self)

    def unregister_service(self, service: Service) -> None:
        """Remove ``service``.

        Raises:
            KeyError: if no service of that name is registered.
        """
        del self.registered_services[service.name]
        if self.auth_service is service:
            self.auth_service = None

    def authenticate(self, client: Any, token: Any) -> dict[str, Any]:
        """Verify a token and give its identity to ``client``; return the token's claims.

        Raises:
            AuthError: the token is refused, or no AuthService is registered.
        """
        if self.auth_service is None:
            raise AuthError("Invalid token", "invalid_token")
        claims: dict[str, Any] = self.auth_service.authenticate_client(client, token)
        return claims

    def admit(self, client: Any, token: str | None, answer: bool = True) -> int | None:
        """Identity at connect, for every transport: check the token given with the connection.

        Without a token the client is anonymous. A valid one gives the client its
        identity. A refused one is logged once and, with ``answer`` (a transport that
        can send before it closes), answered with an error message (``invalid_token``
        or ``token_expired``); the close code to close the connection with is returned
        (``None``: admitted).
        """
        if token is None:
            return None
        try:
            self.authenticate(client, token)
        except AuthError as error:
            logger.warning("! refused token from %r: %s", client, error.message)
            if answer:
                self.reject(client, error.code, self.auth_service.name if self.auth_service is not None else None)
            return error.close_code
        return None

    def refuse_token(self, client: Any, error: AuthError) -> None:
        """Tell ``client`` why its connect-time token was refused, then close it."""
        logger.warning("! refused token from %r: %s", client, error.message)
        self.reject(client, error.code, self.auth_service.name if self.auth_service is not None else None)
        client.close(error.close_code)

    def process_message_raw(self, client: Any, msg: bytes | str) -> None:
        """Decode one frame of JSON text and route it; answer it if it is malformed.

        With limits, each message first takes a token of the client's command bucket.
        """
        limiter = self.limiter
        if limiter is not None:
            verdict = limiter.command(client, msg)
            if verdict:
                self._over_rate(limiter, client, msg, verdict)
                return
        try:
            decoded = decode(msg)
        except ProtocolError as error:
            if error.code == "invalid_json":
                compat_log.warning("Invalid JSON from client %r: %.200r", client, msg)
            else:
                logger.warning("! %s from %r: %.200r", error.detail or error.message, client, msg)
            self.reject(client, error.code, error.service, error.content)
            return
        self.process_message_from(client, decoded)

    def resolve(self, msg: Any) -> tuple[Service, Any]:
        """The service a decoded message ``{"service", "message"}`` is for, and its content
        (counted in the metrics as received, when the envelope is valid).

        Every transport routes through here: long-lived ones by
        :meth:`process_message_from`, the backend HTTP port by itself (it answers
        refusals with an HTTP status).

        Raises:
            ProtocolError: ``invalid_message`` if ``msg`` is not an envelope;
                ``unknown_service`` if no service has its name (the error's
                ``service`` and ``content`` are the envelope's).
        """
        name, content = parse_envelope(msg)
        service = self.registered_services.get(name)
        metrics = self._metrics
        if metrics is not None:  # counted here, with no call: every message passes this way
            counts = metrics.received_by
            key = name if service is not None else ""
            counts[key] = counts.get(key, 0) + 1
        if service is None:
            error = ProtocolError(ERROR_CODES["unknown_service"], "unknown_service")
            error.service, error.content = name, content
            raise error
        return service, content

    def process_message_from(self, client: Any, msg: Any) -> None:
        """Route one decoded message ``{"service", "message"}`` to its service."""
        try:
            service, content = self.resolve(msg)
        except ProtocolError as error:
            if error.code == "unknown_service":
                compat_log.warning('Message for non existing service "%.100s" from client %r', error.service, client)
                self.reject(client, error.code, error.service, error.content)
            else:
                compat_log.warning("Malformed message from client %r: %.200r", client, msg)
                self.reject(client, error.code, None, msg)
            return
        service.process_message_from(client, content)

    def _over_rate(self, limiter: Limiter, client: Any, msg: bytes | str, verdict: int) -> None:
        """A message the command bucket did not let through: held, refused, or the last straw."""
        if verdict == HELD:
            return
        if verdict == CLOSE:
            limiter.hit("commands_per_second")
            logger.warning("! closing %r: it went on sending while refused (commands_per_second)", client)
            client.close(CLOSE_TOO_MANY_REQUESTS)
            return
        if limiter.refusing(client):
            logger.warning(
                "! commands from %r refused: over %g per second (commands_per_second)",
                client,
                limiter.config.commands_per_second,
            )
        service = content = None
        if len(msg) <= _PEEK_LIMIT:  # a flood of large messages is not decoded only to be refused
            try:
                service, content = parse_envelope(decode(msg))
            except ProtocolError:
                pass
        self.reject(client, "too_many_requests", service if service in self.registered_services else None, content)

    def reject(self, client: Any, code: str, service: str | None = None, content: Any = None) -> None:
        """Answer ``client`` with the error ``code`` (see :data:`snorky.errors.ERROR_CODES`).

        ``content`` is the message being refused, if decoded; its ``callId`` is echoed.
        """
        call_id = content.get("callId") if isinstance(content, dict) else None
        if self._metrics is not None:
            self._metrics.error(service, code)
        deliver(client, Outbound({"service": service, "message": error_body(code, call_id)}))

    def client_connected(self, client: Any) -> None:
        """Tell every service that ``client`` connected (or, while not accepting, close it with 1013)."""
        if not self.accepting:
            logger.info("= %r connected while the server drains: closed with 1013", client)
            client.close(CLOSE_TRY_AGAIN_LATER)
            return
        self.clients.add(client)
        if self._metrics is not None:
            self._metrics.connected(transport_of(client))
        limiter = self.limiter
        if limiter is not None:
            admitted = limiter.connected(client)
            if not isinstance(admitted, bool):
                self._decide_later(client, admitted, at_connect=True)
                return
            if not admitted:
                client.close(CLOSE_TOO_MANY_CONNECTIONS)
                return
        self._welcome(client)

    def _welcome(self, client: Any) -> None:
        for service in tuple(self.registered_services.values()):
            service.client_connected(client)

    def identified(self, client: Any) -> bool | Awaitable[bool]:
        """``client`` gained an identity after it connected (the ``authenticate`` command):
        whether the identity may have one more connection (see ``connections_per_identity``).

        While a networked broker counts, the client's further messages wait; they go on
        once it is admitted. The caller closes a client that is not.
        """
        limiter = self.limiter
        if limiter is None:
            return True
        admitted = limiter.identified(client)
        if isinstance(admitted, bool):
            return admitted
        return self._decide_later(client, admitted, at_connect=False)

    def _decide_later(self, client: Any, admitted: Awaitable[bool], at_connect: bool) -> Awaitable[bool]:
        """Admit or refuse ``client`` once the broker has counted its identity's connections;
        its messages are held until then."""
        limiter = self.limiter
        assert limiter is not None

        async def decide() -> bool:
            verdict = await admitted
            if client not in self.clients:
                return verdict  # it left meanwhile
            if not verdict:
                if at_connect:
                    client.close(CLOSE_TOO_MANY_CONNECTIONS)
                return False
            if at_connect:
                self._welcome(client)
                self._release(limiter, client)
            else:
                # After the reply to the command that gave the identity, which is sent
                # when this returns.
                asyncio.get_running_loop().call_soon(self._release, limiter, client)
            return True

        task = asyncio.ensure_future(decide())
        self._deciding.add(task)
        task.add_done_callback(self._deciding.discard)
        return task

    def _release(self, limiter: Limiter, client: Any) -> None:
        for message in limiter.release(client):
            if client not in self.clients:
                return
            self.process_message_raw(client, message)

    def client_identified(self, client: Any) -> None:
        """Tell every service that a connected ``client`` has proved an identity."""
        if client in self.clients:
            for service in tuple(self.registered_services.values()):
                service.client_identified(client)

    def client_disconnected(self, client: Any) -> None:
        """Tell every service that ``client`` left; each one drops its state for it."""
        if client in self.clients:
            self.clients.discard(client)
            if self._metrics is not None:
                code = client.close_code if isinstance(client, Client) else None
                self._metrics.disconnected(transport_of(client), code)
        if self.limiter is not None:
            self.limiter.disconnected(client)
        for service in tuple(self.registered_services.values()):
            try:
                service.client_disconnected(client)
            except Exception:
                logger.exception("! %r failed to clean up after %r", service, client)
        if not self.clients and self._emptied is not None:
            self._emptied.set()

    async def until_empty(self, timeout: float) -> bool:
        """Wait until no client is connected, at most ``timeout`` seconds; return whether none is."""
        if self.clients:
            if self._emptied is None:
                self._emptied = asyncio.Event()
            self._emptied.clear()
            try:
                await asyncio.wait_for(self._emptied.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        return not self.clients
