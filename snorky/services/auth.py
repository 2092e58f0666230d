"""AuthService: clients prove who they are with a signed token.

Register it (``snorky serve`` does when ``[auth]`` is configured) and clients
authenticate either at connect, with ``?token=...`` in the WebSocket or SockJS
URL, or with the ``authenticate`` command. ``refresh`` replaces the token before
it expires; a connection whose token expires is closed with code 4002.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from snorky.auth import AuthError, TokenVerifier
from snorky.brokers.base import then
from snorky.client import Client
from snorky.errors import CLOSE_TOKEN_EXPIRED, CLOSE_TOO_MANY_CONNECTIONS
from snorky.services.rpc import Request, RPCService, rpc_command
from snorky.timeout import TornadoTimeoutFactory

__all__ = ["AuthService"]

logger = logging.getLogger(__name__)


class AuthService(RPCService):
    """Verifies tokens and sets ``client.identity``, ``client.info`` and ``client.claims``.

    Args:
        name: the service name clients use (default ``auth``).
        verifier: checks tokens; or give ``secret`` for an HS256 verifier.
        secret: shortcut for ``TokenVerifier(secret)``.
        timeout_factory: schedules expiry (default: the running IOLoop).
        clock: returns the current time in seconds (for tests).
    """

    def __init__(
        self,
        name: str = "auth",
        verifier: TokenVerifier | None = None,
        *,
        secret: str | None = None,
        timeout_factory: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name)
        if verifier is None:
            verifier = TokenVerifier(secret)
        self.verifier = verifier
        self.timeout_factory = timeout_factory or TornadoTimeoutFactory
        self.clock = clock
        self.expiry_timers: dict[Any, Any] = {}
        """Client -> the timer that closes it when its token expires."""

    def authenticate_client(self, client: Any, token: Any) -> dict[str, Any]:
        """Verify ``token`` and give its identity to ``client``; return the claims.

        A connection keeps one identity: a token for another ``sub`` is refused.

        Raises:
            AuthError: ``invalid_token`` or ``token_expired``.
        """
        claims = self.verifier.verify(token)
        if "channel" in claims:  # signed for one subscription, not for a connection
            raise AuthError("Invalid token", "invalid_token")
        if client.identity is not None and client.identity != claims["sub"]:
            raise AuthError("Token is for another identity", "invalid_token")
        client.identity = claims["sub"]
        client.info = claims.get("info")
        client.claims = claims
        self._schedule_expiry(client, float(claims["exp"]))
        logger.debug("= %r authenticated as %r until %s", client, client.identity, claims["exp"])
        return claims

    def _schedule_expiry(self, client: Any, expires_at: float) -> None:
        old = self.expiry_timers.pop(client, None)
        if old is not None:
            old.cancel()
        delay = max(0.0, expires_at - self.clock())
        self.expiry_timers[client] = self.timeout_factory.call_later(delay, self._expired, client)

    def _expired(self, client: Any) -> None:
        self.expiry_timers.pop(client, None)
        logger.info("! token of %r expired without a refresh: closing", client)
        if isinstance(client, Client):
            client.close(CLOSE_TOKEN_EXPIRED)

    @staticmethod
    def close_code(error: AuthError) -> int:
        """The close code for a connection refused with ``error`` (see :attr:`AuthError.close_code`)."""
        return error.close_code

    @rpc_command
    def authenticate(self, req: Request, token: Any) -> Any:
        """Prove the caller's identity with ``token``; reply ``{"identity", "info", "expiresAt"}``.

        Where the registry limits ``connections_per_identity`` and the identity holds
        that many connections already, the call is answered ``too_many_connections``
        and the connection closed with 4005.
        """
        client = req.client
        fresh = getattr(client, "identity", None) is None
        claims = self.authenticate_client(client, token)
        answer = {"identity": claims["sub"], "info": claims.get("info"), "expiresAt": claims["exp"]}
        registry = self.registry
        if not fresh or registry is None:
            return answer

        def decided(admitted: bool) -> dict[str, Any] | None:
            if admitted:
                if hasattr(registry, "client_identified"):
                    registry.client_identified(client)
                return answer
            req.error("Too many connections", "too_many_connections")
            if isinstance(client, Client):
                client.close(CLOSE_TOO_MANY_CONNECTIONS)
            return None

        return then(registry.identified(client), decided)

    @rpc_command
    def refresh(self, req: Request, token: Any) -> Any:
        """Replace the caller's token with a newer one for the same identity."""
        return self.authenticate(req, token)

    def client_disconnected(self, client: Any) -> None:
        timer = self.expiry_timers.pop(client, None)
        if timer is not None:
            timer.cancel()
