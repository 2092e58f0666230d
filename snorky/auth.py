"""Identity: tokens that application servers sign and clients present.

A token is a JWT (PyJWT) with these claims:

``sub``
    the identity services see as ``client.identity`` (required);
``exp``
    expiry time (required); a connection whose token expires without a refresh
    is closed with code 4002;
``info``
    optional public data about the user, shown in presence (``client.info``);
``channels``
    optional list of channel grants (exact names and ``prefix*`` patterns): the
    namespaces that say ``allow_subscribe = "granted"`` admit them, and
    authorization hooks read them through :func:`granted`;
``subscriptions``
    optional list of PubSub channels the connection is subscribed to as soon as
    it connects (without any rule checked: the application signed it).

A *subscription token* (:func:`sign_subscription_token`) has a ``channel`` claim
instead: it admits its ``sub`` to that one channel, sent with ``subscribe``; it
is refused as a connection token.

HS256 with a shared secret is the default; RS256 and ES256 public keys are
accepted when configured. :func:`sign_token` makes tokens (also as
``snorky token`` on the command line and :func:`snorky.backend.sign_token`).
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import jwt

from snorky.errors import AuthError

__all__ = [
    "AuthError",
    "TokenVerifier",
    "sign_token",
    "sign_subscription_token",
    "granted",
    "weak_secret",
    "ASYMMETRIC_ALGORITHMS",
    "MIN_SECRET_BYTES",
]

logger = logging.getLogger(__name__)

ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
"""Algorithms verified with a public key (the others use the shared secret)."""

MIN_SECRET_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
"""The shortest shared secret worth its algorithm: the hash's size (RFC 7518, section 3.2)."""

try:  # PyJWT 2.10 and later warn about short HMAC keys; Snorky says it in its own words
    from jwt.warnings import InsecureKeyLengthWarning as _PyJWTShortKey
except ImportError:  # pragma: no cover - older PyJWT
    _PyJWTShortKey = None


def weak_secret(secret: str | bytes | None, algorithm: str = "HS256") -> str | None:
    """Say why ``secret`` is too short for ``algorithm``, or ``None`` if it is long enough."""
    needed = MIN_SECRET_BYTES.get(algorithm)
    if needed is None or not secret:
        return None
    length = len(secret.encode("utf-8") if isinstance(secret, str) else secret)
    if length >= needed:
        return None
    return (
        f"the {algorithm} secret is {length} bytes long; use at least {needed} random bytes, "
        f"for example the output of: python3 -c 'import secrets; print(secrets.token_urlsafe({needed}))'"
    )


@contextlib.contextmanager
def _short_key_said() -> Iterator[None]:
    """Silence PyJWT's own short-key warning: Snorky has said it already, once."""
    with warnings.catch_warnings():
        if _PyJWTShortKey is not None:
            warnings.simplefilter("ignore", _PyJWTShortKey)
        yield


class TokenVerifier:
    """Checks tokens against a shared secret or a public key.

    Args:
        secret: the HS256 shared secret.
        public_key: a PEM public key, for RS256/ES256 tokens.
        algorithms: the algorithms accepted (default: HS256 with a secret,
            RS256 and ES256 with a public key).
        leeway: seconds of clock difference tolerated on ``exp``.
        audience: if set, the ``aud`` claim must match it.
    """

    def __init__(
        self,
        secret: str | None = None,
        *,
        public_key: str | bytes | None = None,
        algorithms: Sequence[str] | None = None,
        leeway: float = 0.0,
        audience: str | None = None,
    ) -> None:
        if not secret and not public_key:
            raise ValueError("TokenVerifier needs a secret or a public key")
        if algorithms is None:
            algorithms = ("RS256", "ES256") if public_key else ("HS256",)
        for name in algorithms:
            if (name in ASYMMETRIC_ALGORITHMS) != bool(public_key):
                raise ValueError(f"algorithm {name} does not fit a {'public key' if public_key else 'secret'}")
        self.key: str | bytes = public_key or secret or ""
        self.algorithms = list(algorithms)
        self.leeway = leeway
        self.audience = audience
        self._weak = None if public_key else next(filter(None, (weak_secret(secret, a) for a in self.algorithms)), None)
        if self._weak is not None:
            logger.warning("! weak token secret: %s", self._weak)

    def verify(self, token: Any) -> dict[str, Any]:
        """Return the claims of a valid token.

        Raises:
            AuthError: ``token_expired`` if ``exp`` has passed, ``invalid_token``
                for anything else (bad signature, malformed, missing claims).
        """
        if not isinstance(token, str) or not token:
            raise AuthError("Invalid token", "invalid_token")
        try:
            with _short_key_said() if self._weak is not None else contextlib.nullcontext():
                claims: dict[str, Any] = jwt.decode(
                    token,
                    self.key,
                    algorithms=self.algorithms,
                    leeway=self.leeway,
                    audience=self.audience,
                    options={"require": ["sub", "exp"]},
                )
        except jwt.ExpiredSignatureError:
            raise AuthError("Token expired", "token_expired") from None
        except jwt.PyJWTError:
            raise AuthError("Invalid token", "invalid_token") from None
        for claim in ("channels", "subscriptions"):
            names = claims.get(claim)
            if names is not None and not (isinstance(names, list) and all(isinstance(c, str) for c in names)):
                raise AuthError("Invalid token", "invalid_token")
        return claims


def sign_token(
    sub: Any,
    secret: str | None = None,
    *,
    ttl: float = 3600,
    info: Any = None,
    channels: Iterable[str] | None = None,
    algorithm: str = "HS256",
    private_key: str | bytes | None = None,
    now: float | None = None,
    **extra: Any,
) -> str:
    """Sign a token for identity ``sub``, valid for ``ttl`` seconds.

    Args:
        sub: the identity (a string, as JWT requires).
        secret: the shared secret (HS256).
        ttl: lifetime in seconds.
        info: public data about the user, shown in presence.
        channels: channel grants for authorization hooks.
        algorithm: ``HS256`` (default), or ``RS256``/``ES256`` with ``private_key``.
        private_key: the PEM private key for asymmetric algorithms.
        now: the issue time (default: the current time).
        extra: further claims.

    A shared secret shorter than :data:`MIN_SECRET_BYTES` still signs; say so with
    :func:`weak_secret` (``snorky token`` does).
    """
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {"sub": sub, "iat": int(issued), "exp": int(issued + ttl), **extra}
    if info is not None:
        claims["info"] = info
    if channels is not None:
        claims["channels"] = list(channels)
    key = private_key if algorithm in ASYMMETRIC_ALGORITHMS else secret
    if not key:
        raise ValueError(f"{algorithm} needs {'a private key' if algorithm in ASYMMETRIC_ALGORITHMS else 'a secret'}")
    with _short_key_said():
        return jwt.encode(claims, key, algorithm=algorithm)


def sign_subscription_token(
    sub: Any,
    channel: str,
    secret: str | None = None,
    *,
    ttl: float = 300,
    algorithm: str = "HS256",
    private_key: str | bytes | None = None,
    now: float | None = None,
) -> str:
    """Sign a token that lets identity ``sub`` subscribe to ``channel``, for ``ttl`` seconds.

    The client sends it with ``subscribe`` (``token``); a namespace whose rules would
    refuse the subscription admits it. ``sub`` is the connection's identity, ``""``
    for an anonymous connection. Other arguments as :func:`sign_token`.
    """
    if not isinstance(channel, str) or not channel:
        raise ValueError("a subscription token needs a channel name")
    return sign_token(sub, secret, ttl=ttl, algorithm=algorithm, private_key=private_key, now=now, channel=channel)


def granted(client: Any, channel: Any) -> bool:
    """Whether ``client``'s token grants ``channel`` in its ``channels`` claim."""
    claims = getattr(client, "claims", None)
    if not claims:
        return False
    return channel in (claims.get("channels") or ())
