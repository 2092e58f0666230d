"""The admin page: ``/admin`` on the backend port, behind its own password.

Served only when ``[admin] password`` (or ``SNORKY_ADMIN_PASSWORD``) is set;
without one every ``/admin`` address answers 404. The page itself
(``snorky/static/admin.html``, ``admin.css``, ``admin.js``) holds no data: its
script signs in and reads the JSON API below, every two seconds.

Signing in (``POST /admin/api/login`` with ``{"password"}``) sets a session
cookie (``HttpOnly``, ``SameSite=Strict``, path ``/admin``) signed with a key
that lives in this process and with the password: a restart or a password change
(a reload) ends every session. Nothing secret ever goes in a URL, and the
password is compared in constant time.

Requests that change something are POSTs with a JSON body; a browser sends
neither the cookie (``SameSite=Strict``) nor such a body (it would need a CORS
preflight, never granted) from another site, and an ``Origin`` that is not the
page's own is refused with 403 besides.

=====================================  ======================================================
``GET /admin/api/stats``               this node, the cluster's nodes, connections, services,
                                       broker counters, and the metrics' running totals
``GET /admin/api/channels``            ``?service=&q=&limit=``: channels with their local
                                       subscriber counts, most subscribed first
``GET /admin/api/presence``            ``?service=&channel=`` (JSON): who is in a channel
``POST /admin/api/publish``            ``{"service", "channel", "message"}`` (PubSub)
``POST /admin/api/disconnect``         ``{"identity"}``: close its connections, on every node
=====================================  ======================================================
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import inspect
import logging
import os
import time
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import urlsplit

from tornado.web import Finish, HTTPError, RequestHandler

from snorky.client import transport_of
from snorky.errors import CLOSE_DISCONNECTED, BrokerUnavailable, ProtocolError, SnorkyError
from snorky.protocol import decode, encode
from snorky.services.control import ControlService
from snorky.services.pubsub import PubSubService
from snorky.version import __version__

if TYPE_CHECKING:
    from snorky.server import SnorkyServer

__all__ = ["admin_routes", "AdminSessions", "STATIC"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

STATIC = Path(__file__).parent / "static"
"""Where the page's three files are."""

COOKIE = "snorky_admin"
"""The session cookie's name."""

SESSION_SECONDS = 12 * 3600
"""How long a session lasts."""

MAX_CHANNELS = 500
"""The most channels ``/admin/api/channels`` lists at once (``limit`` is capped to it)."""

_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_FILES = {
    "admin.html": "text/html; charset=utf-8",
    "admin.css": "text/css; charset=utf-8",
    "admin.js": "text/javascript; charset=utf-8",
}


class AdminSessions:
    """Signed session tokens: ``<expiry>.<signature>``, valid while the password is unchanged."""

    def __init__(self) -> None:
        self._key = os.urandom(32)

    def _sign(self, expires: int, password: str) -> str:
        message = f"{expires}.".encode() + hashlib.sha256(password.encode("utf-8")).digest()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def issue(self, password: str, now: float | None = None) -> str:
        """A new session token for ``password``."""
        expires = int((time.time() if now is None else now) + SESSION_SECONDS)
        return f"{expires}.{self._sign(expires, password)}"

    def valid(self, token: str | None, password: str) -> bool:
        """Whether ``token`` was issued for ``password`` and has not expired."""
        if not token:
            return False
        expires_text, _, signature = token.partition(".")
        try:
            expires = int(expires_text)
        except ValueError:
            return False
        if expires < time.time():
            return False
        return hmac.compare_digest(signature.encode(), self._sign(expires, password).encode())


def password_matches(given: str, password: str) -> bool:
    """Constant-time comparison (of digests, so that the length does not show either)."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode("utf-8")).digest(), hashlib.sha256(password.encode("utf-8")).digest()
    )


class _AdminHandler(RequestHandler):
    """Base of the admin routes: 404 without a password, security headers, JSON answers."""

    def initialize(self, server: SnorkyServer, sessions: AdminSessions) -> None:
        self.server = server
        self.sessions = sessions

    @property
    def password(self) -> str | None:
        """The configured password, read at each request (a reload may change it)."""
        return self.server.config.admin.password or None

    def prepare(self) -> None:
        if self.password is None:
            raise HTTPError(404)
        for name, value in _SECURITY_HEADERS.items():
            self.set_header(name, value)
        if self.request.method == "POST":
            self._check_same_origin()

    def check_xsrf_cookie(self) -> None:
        """Cross-site requests are refused by :meth:`_check_same_origin` and the cookie's SameSite."""

    def _check_same_origin(self) -> None:
        origin = self.request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc.lower() != self.request.host.lower():
            logger.warning("! admin request from another origin (%s) refused, from %s", origin, self.request.remote_ip)
            self.fail(403, "cross-origin request refused")
        content_type = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            self.fail(415, "send JSON (Content-Type: application/json)")

    def signed_in(self) -> bool:
        password = self.password
        return password is not None and self.sessions.valid(self.get_cookie(COOKIE), password)

    def require_session(self) -> None:
        if not self.signed_in():
            self.fail(401, "sign in first")

    def body_json(self) -> Any:
        try:
            value = decode(self.request.body)
        except ProtocolError:
            self.fail(400, "the body is not JSON")
        if not isinstance(value, dict):
            self.fail(400, "the body must be a JSON object")
        return value

    def answer(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(encode(value))

    def fail(self, status: int, message: str) -> NoReturn:
        """Answer ``{"error": message}`` with ``status`` and end the request."""
        self.answer({"error": message}, status)
        raise Finish()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if self.password is None or status_code == 404:
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish("Not found\n")
            return
        self.answer({"error": self._reason}, status_code)

    def service(self, name: Any) -> Any:
        service = self.server.registry.registered_services.get(name) if isinstance(name, str) else None
        if service is None:
            self.fail(404, f"no service named {name!r}")
        return service


class AdminFileHandler(_AdminHandler):
    """``/admin`` and its two other files."""

    def get(self, name: str = "admin.html") -> None:
        content_type = _FILES.get(name)
        if content_type is None:
            raise HTTPError(404)
        self.set_header("Content-Type", content_type)
        self.finish((STATIC / name).read_bytes())


class LoginHandler(_AdminHandler):
    async def post(self) -> None:
        given = self.body_json().get("password")
        password = self.password
        assert password is not None
        if not isinstance(given, str) or not password_matches(given, password):
            logger.warning("! admin sign-in refused (wrong password), from %s", self.request.remote_ip)
            self.fail(401, "wrong password")
        self.set_cookie(
            COOKIE,
            self.sessions.issue(password),
            path="/admin",
            httponly=True,
            samesite="Strict",
            secure=self.request.protocol == "https",
            expires_days=SESSION_SECONDS / 86400,
        )
        logger.info("= admin signed in from %s", self.request.remote_ip)
        self.answer({"signed_in": True})


class LogoutHandler(_AdminHandler):
    def post(self) -> None:
        self.clear_cookie(COOKIE, path="/admin")
        self.answer({"signed_in": False})


class StatsHandler(_AdminHandler):
    async def get(self) -> None:
        self.require_session()
        self.answer(await admin_stats(self.server))


class ChannelsHandler(_AdminHandler):
    def get(self) -> None:
        self.require_session()
        service = self.service(self.get_query_argument("service", "pubsub"))
        if service.channel_map is None:
            self.fail(400, f"{service.name} has no channels")
        query = self.get_query_argument("q", "").lower()
        try:
            limit = max(1, min(MAX_CHANNELS, int(self.get_query_argument("limit", "100"))))
        except ValueError:
            self.fail(400, "limit must be a number")
        members = service.channel_map.clients  # channel -> its clients here
        rows: Iterable[tuple[Any, int]]
        if query:
            rows = [(channel, len(clients)) for channel, clients in members.items() if query in _label(channel).lower()]
            matching = len(rows)
        else:  # counted only for the channels shown: 14 ms for the top 100 of 100,000
            rows = ((channel, len(clients)) for channel, clients in members.items())
            matching = len(members)
        top = heapq.nlargest(limit, rows, key=lambda row: row[1])
        top.sort(key=lambda row: (-row[1], _label(row[0])))
        self.answer(
            {
                "service": service.name,
                "total": len(members),
                "matching": matching,
                "channels": [{"channel": channel, "subscribers": count} for channel, count in top],
            }
        )


class PresenceHandler(_AdminHandler):
    async def get(self) -> None:
        self.require_session()
        service = self.service(self.get_query_argument("service", "pubsub"))
        presence = _presence_of(service)
        if presence is None:
            self.fail(400, f"{service.name} has no presence")
        try:
            channel = decode(self.get_query_argument("channel", ""))
        except ProtocolError:
            self.fail(400, "channel must be JSON (a string in quotes)")
        try:
            members: Any = await _resolved(presence(channel))
        except BrokerUnavailable:
            self.fail(503, "the broker cannot be reached")
        self.answer({"service": service.name, "channel": channel, "presence": members})


class PublishHandler(_AdminHandler):
    async def post(self) -> None:
        self.require_session()
        body = self.body_json()
        service = self.service(body.get("service", "pubsub"))
        if not isinstance(service, PubSubService):
            self.fail(400, f"{service.name} is not a PubSub service")
        if "channel" not in body or "message" not in body:
            self.fail(400, "give channel and message")
        try:
            await _resolved(service.do_publish(body["channel"], body["message"]))
        except SnorkyError as error:
            self.fail(503, str(error))
        logger.info("= admin published to %s %r, from %s", service.name, body["channel"], self.request.remote_ip)
        self.answer({"published": True})


class DisconnectHandler(_AdminHandler):
    def post(self) -> None:
        self.require_session()
        identity = self.body_json().get("identity")
        if identity is None or identity == "":
            self.fail(400, "give an identity")
        control = next(
            (s for s in self.server.backend_registry.registered_services.values() if isinstance(s, ControlService)),
            None,
        )
        if control is None:  # a backend registry without server control: this node only
            clients = [c for c in self.server.registry.clients if getattr(c, "identity", None) == identity]
            for client in clients:
                client.close(CLOSE_DISCONNECTED)
            count = len(clients)
        else:
            count = control.disconnect_identity(identity)
        logger.info("= admin disconnected %r, from %s", identity, self.request.remote_ip)
        self.answer({"disconnected": count, "cluster": control is not None})


def _presence_of(service: Any) -> Any:
    """A service's server-side presence method, ``channel -> [{"identity", "info", "connections"}]``,
    if it has one (``channel_presence`` where ``presence`` is a client command, as in PubSub)."""
    return getattr(service, "channel_presence", None) or getattr(service, "presence", None)


def _label(channel: Any) -> str:
    """A channel as the page shows it: a string as it is, anything else as JSON."""
    return channel if isinstance(channel, str) else encode(channel).decode()


async def admin_stats(server: SnorkyServer) -> dict[str, Any]:
    """What ``/admin/api/stats`` answers."""
    connections: dict[str, int] = {}
    identities = set()
    for client in server.registry.clients:
        transport = transport_of(client)
        connections[transport] = connections.get(transport, 0) + 1
        if getattr(client, "identity", None) is not None:
            identities.add(encode(client.identity))
    services = []
    for name, service in server.registry.registered_services.items():
        channel_map = service.channel_map
        services.append(
            {
                "name": name,
                "class": type(service).__name__,
                "channels": channel_map.channel_count() if channel_map is not None else None,
                "subscriptions": channel_map.subscription_count() if channel_map is not None else None,
                "publish": isinstance(service, PubSubService),
                "presence": _presence_of(service) is not None,
            }
        )
    nodes: list[str] | None
    try:
        nodes = await _resolved(server.broker.nodes())
    except SnorkyError:
        nodes = None
    reasons = server.unready_reasons()
    metrics = server.metrics
    return {
        "version": __version__,
        "node": server.broker.node_id,
        "uptime": time.monotonic() - server.started_at if server.started_at is not None else 0.0,
        "time": time.monotonic(),
        "ready": not reasons,
        "reasons": reasons,
        "nodes": nodes,
        "broker": server.broker.stats(),
        "connections": {"total": sum(connections.values()), **connections},
        "identities": len(identities),
        "services": services,
        "totals": metrics.totals() if metrics is not None else None,
    }


async def _resolved(result: T | Awaitable[T]) -> T:
    """The value of a broker answer that may be awaitable."""
    if inspect.isawaitable(result):
        value: T = await result
        return value
    return result


def admin_routes(server: SnorkyServer) -> list[Any]:
    """The admin page's routes (each answers 404 while no password is configured)."""
    options = {"server": server, "sessions": AdminSessions()}
    return [
        (r"/admin", AdminFileHandler, options),
        (r"/admin/(admin\.(?:css|js))", AdminFileHandler, options),
        (r"/admin/api/login", LoginHandler, options),
        (r"/admin/api/logout", LogoutHandler, options),
        (r"/admin/api/stats", StatsHandler, options),
        (r"/admin/api/channels", ChannelsHandler, options),
        (r"/admin/api/presence", PresenceHandler, options),
        (r"/admin/api/publish", PublishHandler, options),
        (r"/admin/api/disconnect", DisconnectHandler, options),
    ]
