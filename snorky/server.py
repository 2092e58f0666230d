"""SnorkyServer: the registries, services and listening ports that ``snorky serve`` runs.

It can be used from Python too::

    server = SnorkyServer(Config.load("snorky.toml"))
    await server.start()
    ...
    await server.stop()
"""

from __future__ import annotations

import asyncio
import html
import inspect
import logging
import random
import socket
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler, StaticFileHandler

from snorky.admin import admin_routes
from snorky.auth import TokenVerifier
from snorky.brokers.base import Broker
from snorky.brokers.memory import MemoryBroker
from snorky.client import Client, transport_of
from snorky.config import EMBEDDED, AuthConfig, Config, ServiceSpec, load_class
from snorky.errors import CLOSE_GOING_AWAY, CLOSE_SERVICE_RESTART, ConfigError, ListenError
from snorky.logs import formatter_for
from snorky.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from snorky.metrics import Metrics
from snorky.options import TransportOptions, suggest
from snorky.reload import ReloadReport, changed_options
from snorky.request_handlers.http import BackendHTTPHandler
from snorky.request_handlers.sockjs import SnorkySockJSHandler
from snorky.request_handlers.websocket import SnorkyWebSocketHandler
from snorky.service_registry import ServiceRegistry
from snorky.services.auth import AuthService
from snorky.services.control import ControlService
from snorky.services.pubsub import PubSubService
from snorky.services.service import Service
from snorky.version import __version__

__all__ = ["SnorkyServer", "build_services", "CLIENT_JS"]

_TRANSPORT_OPTIONS = frozenset(f.name for f in fields(TransportOptions))

CLIENT_JS = Path(__file__).parent / "static" / "snorky.js"
"""The JavaScript client shipped in the package, served at ``/snorky.js``."""

logger = logging.getLogger(__name__)


def build_services(specs: list[ServiceSpec], frontend: dict[str, Service] | None = None) -> list[Service]:
    """Create services from their specs.

    A backend service's ``frontend`` option names a frontend service and is
    replaced by that service object.

    Raises:
        ConfigError: a class cannot be imported or created with those options.
    """
    services: list[Service] = []
    for spec in specs:
        where = spec.where or f"service {spec.name!r}"
        try:
            cls = load_class(spec.class_path)
        except ConfigError as error:
            raise ConfigError(f"{where} class: {error}") from None
        if not (isinstance(cls, type) and issubclass(cls, Service)):
            raise ConfigError(f"{where} class: {spec.class_path} is not a snorky Service")
        options = dict(spec.options)
        _check_options(cls, options, where)
        if frontend is not None and "frontend" in options:
            target = frontend.get(options["frontend"])
            if target is None:
                raise ConfigError(f"{where} frontend: no frontend service named {options['frontend']!r}")
            options["frontend"] = target
        try:
            services.append(cls(spec.name, **options))
        except TypeError as error:
            raise ConfigError(f"{where}: {cls.__name__}: {error}") from None
    return services


def _check_options(cls: type, options: dict[str, Any], where: str) -> None:
    """Refuse an option the class does not take, naming the closest one it does."""
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # pragma: no cover - a signature Python cannot read
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = [
        name
        for name, p in parameters.items()
        if name != "name" and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    for key in options:
        if key not in accepted:
            valid = ", ".join(accepted) or "none"
            raise ConfigError(
                f"{where}: {cls.__name__} has no option {key!r}{suggest(key, accepted)} (its options: {valid})"
            )


def default_backend_services(frontend: dict[str, Service]) -> list[ServiceSpec]:
    """A backend service for each frontend service that has one, under the same name."""
    from snorky.services.datasync import DataSyncService
    from snorky.services.progress import ProgressService

    backends = {
        PubSubService: "snorky.services.pubsub.PubSubBackend",
        DataSyncService: "snorky.services.datasync.DataSyncBackend",
        ProgressService: "snorky.services.progress.ProgressBackend",
    }
    specs: list[ServiceSpec] = []
    for name, service in frontend.items():
        for kind, path in backends.items():
            if isinstance(service, kind):
                specs.append(ServiceSpec(name, path, {"frontend": name}))
                break
    return specs


def build_broker(config: Config) -> Broker:
    """The broker a configuration names: the in-memory one, or Redis.

    Raises:
        ConfigError: Redis is configured but redis-py is not installed.
    """
    if config.broker == "memory":
        return MemoryBroker()
    try:
        from snorky.brokers.redis import RedisBroker
    except ImportError as error:
        raise ConfigError(str(error)) from None
    options = config.redis
    return RedisBroker(
        config.broker,
        prefix=options.prefix,
        node_id=options.node_id or None,
        heartbeat=options.heartbeat,
        presence_ttl=options.presence_ttl,
        max_pending=options.max_pending,
        timeout=options.timeout,
    )


def build_verifier(auth: AuthConfig) -> TokenVerifier:
    """The token verifier an ``[auth]`` section describes.

    Raises:
        ConfigError: the public key file cannot be read, or the algorithms do not fit the key.
    """
    public_key = None
    if auth.public_key_file:
        try:
            with open(auth.public_key_file, "rb") as handle:
                public_key = handle.read()
        except OSError as error:
            raise ConfigError(f"[auth] public_key_file: cannot read {auth.public_key_file}: {error.strerror}") from None
    try:
        return TokenVerifier(
            None if public_key else auth.secret,
            public_key=public_key,
            algorithms=auth.algorithms or None,
            leeway=auth.leeway,
        )
    except ValueError as error:
        raise ConfigError(f"[auth]: {error}") from None


def _access_log(handler: RequestHandler) -> None:
    """Log requests at debug level, without query strings (they may hold tokens).

    Refusals are logged once, by the handlers themselves.
    """
    request = handler.request
    logging.getLogger("tornado.access").debug(
        "%d %s %s (%s) %.2fms",
        handler.get_status(),
        request.method,
        request.path,
        request.remote_ip,
        1000 * request.request_time(),
    )


class ClientFileHandler(StaticFileHandler):
    """Serves the JavaScript client; ``.d.ts`` is TypeScript (the system's table may say otherwise)."""

    def get_content_type(self) -> str:
        if self.absolute_path is not None and self.absolute_path.endswith(".d.ts"):
            return "application/typescript; charset=utf-8"
        return super().get_content_type()


class MetricsHandler(RequestHandler):
    """``/metrics``: this node's metrics in Prometheus' text format."""

    def initialize(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def get(self) -> None:
        self.set_header("Content-Type", METRICS_CONTENT_TYPE)
        self.set_header("Cache-Control", "no-store")
        self.finish(self.metrics.exposition())


class HealthHandler(RequestHandler):
    """``/health``: 200 while the process serves HTTP (a liveness probe)."""

    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.finish({"status": "ok"})


class ReadyHandler(RequestHandler):
    """``/ready``: 200 when this node should get traffic; 503 naming why not (a readiness probe)."""

    def initialize(self, server: SnorkyServer) -> None:
        self.server = server

    def get(self) -> None:
        reasons = self.server.unready_reasons()
        self.set_header("Cache-Control", "no-store")
        if reasons:
            self.set_status(503)
            self.finish({"status": "unready", "reasons": reasons})
        else:
            self.finish({"status": "ready"})


def health_routes(server: SnorkyServer) -> list[Any]:
    """The probe routes served on both ports."""
    return [(r"/health", HealthHandler), (r"/ready", ReadyHandler, {"server": server})]


class StatusHandler(RequestHandler):
    """A small HTML page at ``/``: version, connections, services."""

    def initialize(self, server: SnorkyServer) -> None:
        self.server = server

    def get(self) -> None:
        info = self.server.info()
        rows = "".join(
            f"<li><code>{html.escape(name)}</code>: {html.escape(kind)}</li>" for name, kind in info["services"].items()
        )
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            "<!doctype html><html><head><meta charset=utf-8><title>Snorky</title></head><body>"
            f"<h1>Snorky {html.escape(__version__)}</h1>"
            f"<p>{info['connections']} connected client(s). WebSocket at "
            f"<code>{html.escape(info['websocket'])}</code>"
            + (f", SockJS at <code>{html.escape(info['sockjs'])}</code>" if info["sockjs"] else "")
            + f".</p><h2>Services</h2><ul>{rows}</ul>"
            f"<p>Backend port: {html.escape(info['backend'])}.</p></body></html>"
        )


class SnorkyServer:
    """Builds everything a configuration describes and runs it on the current loop.

    Args:
        config: what to serve (default: the embedded defaults).
        broker: the broker to use (default: a :class:`MemoryBroker`).
    """

    def __init__(self, config: Config | None = None, broker: Broker | None = None) -> None:
        self.config = config if config is not None else Config()
        self.broker = broker if broker is not None else build_broker(self.config)
        self.metrics: Metrics | None = (
            Metrics(self.broker.node_id, self.metrics_state) if self.config.metrics.enabled else None
        )
        """This node's Prometheus metrics (``None`` when ``[metrics] enabled = false``)."""
        self.registry = ServiceRegistry(
            build_services(self.config.services), broker=self.broker, metrics=self.metrics, limits=self.config.limits
        )
        """The public registry browsers reach (with the ``[limits]``)."""
        for service in self.registry.registered_services.values():
            if isinstance(service, PubSubService) and service.namespaces is None:
                service.namespaces = self.config.namespaces
        self._auth: AuthService | None = None
        if self.config.auth.enabled and "auth" not in self.registry.registered_services:
            self._auth = AuthService("auth", build_verifier(self.config.auth))
            self.registry.register_service(self._auth)
        self.backend_registry = ServiceRegistry(
            build_services(
                self.config.backend_services
                if self.config.backend_services is not None
                else default_backend_services(self.registry.registered_services),
                self.registry.registered_services,
            ),
            broker=self.broker,
        )
        """The private registry on the backend port."""
        if "control" not in self.backend_registry.registered_services:
            self.backend_registry.register_service(ControlService("control", frontend=self.registry))
        self._servers: list[HTTPServer] = []
        self.frontend_port: int | None = None
        self.backend_port: int | None = None
        self.metrics_port: int | None = None
        self.draining = False
        """Set once the server starts to stop: ``/ready`` answers 503 from then on."""
        self.started_at: float | None = None
        """``time.monotonic()`` when :meth:`start` ended (for the admin page's uptime)."""
        self.log_handler: logging.Handler | None = None
        """The handler ``snorky serve`` logs through (see :func:`~snorky.logs.setup_logging`):
        :meth:`reload` changes its format and the root logger's level. ``None`` when the
        application sets up logging itself (then reload leaves logging alone)."""
        self._backend_route: tuple[str, type[BackendHTTPHandler], dict[str, Any]] | None = None

    def frontend_app(self) -> Application:
        """The Tornado application of the public port."""
        fe = self.config.frontend
        TransportOptions.from_kwargs(vars(fe.transport).copy())  # checks the values
        # Both transports read the configuration's own object: a reload changes it in place.
        options = {"transport_options": fe.transport}
        routes: list[Any] = [
            SnorkyWebSocketHandler.get_route(self.registry, fe.websocket_path, **options),
            *health_routes(self),
        ]
        if fe.sockjs_prefix:
            routes += SnorkySockJSHandler.get_routes(self.registry, fe.sockjs_prefix, **options)
        # The JavaScript client: classic script, ES module, type declarations.
        routes.append((r"/(snorky\.(?:js|mjs|d\.ts))", ClientFileHandler, {"path": str(CLIENT_JS.parent)}))
        if fe.status_page:
            routes.append((r"/status" if fe.static_dir else r"/", StatusHandler, {"server": self}))
        if fe.static_dir:
            if not Path(fe.static_dir).is_dir():
                raise ConfigError(f"[frontend] static_dir: {fe.static_dir} is not a folder")
            routes.append((r"/(.*)", StaticFileHandler, {"path": fe.static_dir, "default_filename": "index.html"}))
        return Application(routes, log_function=_access_log)

    def backend_app(self, api_key: str) -> Application:
        """The Tornado application of the backend port."""
        be = self.config.backend
        route = BackendHTTPHandler.get_route(
            self.backend_registry,
            be.path,
            api_key=api_key,
            max_message_size=be.max_message_size,
            timeout=be.timeout,
        )
        # Tornado hands each request this very dict: a reload changes the key and limits in it.
        self._backend_route = route
        routes = [route, *health_routes(self), *self.metrics_routes(), *admin_routes(self)]
        return Application(routes, log_function=_access_log)

    def metrics_routes(self) -> list[Any]:
        """``/metrics``, when metrics are on."""
        if self.metrics is None:
            return []
        return [(r"/metrics", MetricsHandler, {"metrics": self.metrics})]

    def metrics_state(self) -> dict[str, Any]:
        """What the metrics read at each scrape: connections, channels, broker counters."""
        connections: dict[str, int] = {}
        for client in self.registry.clients:
            transport = transport_of(client)
            connections[transport] = connections.get(transport, 0) + 1
        services = {}
        for name, service in self.registry.registered_services.items():
            if service.channel_map is not None:
                services[name] = {
                    "channels": service.channel_map.channel_count(),
                    "subscriptions": service.channel_map.subscription_count(),
                }
        return {
            "connections": connections,
            "services": services,
            "broker": self.broker.stats(),
            "publish_latency": self.broker.publish_latency,
            "draining": int(self.draining),
        }

    async def start(self) -> None:
        """Start the broker and listen on the configured ports (port 0 picks a free one).

        Every address is bound before any is served, so that a taken port stops
        the start with nothing half-up.

        Raises:
            ListenError: an address cannot be bound; its text names it.
        """
        fe, be = self.config.frontend, self.config.backend
        if not be.api_key:
            logger.warning("! no backend API key (set SNORKY_API_KEY or [backend] api_key): backend port not opened")
        mc = self.config.metrics
        wanted = [(fe.address, fe.port), (be.address, be.port) if be.api_key else None]
        wanted.append((mc.address, mc.port) if mc.enabled and mc.port else None)
        bound: list[list[socket.socket] | None] = []
        try:
            for address in wanted:
                bound.append(_bind(*address) if address is not None else None)
        except ListenError:
            for sockets in bound:
                _close(sockets or [])
            raise
        frontend, backend, own = bound
        assert frontend is not None
        if self.config.source == EMBEDDED and self.config.namespaces.default.allow_publish == "anyone":
            logger.warning(
                "! any client may publish to any channel (the embedded defaults); a configuration file "
                "allows it only where a namespace says so ([namespaces] allow_publish, see the security page)"
            )
        await self.broker.start()
        self.frontend_port = self._serve(
            self.frontend_app(), frontend, fe.transport.sockjs_body_limit, fe.header_timeout, fe.body_timeout
        )
        logger.info("= frontend on http://%s:%d (WebSocket %s)", fe.address, self.frontend_port, fe.websocket_path)
        if backend is not None and be.api_key:
            self.backend_port = self._serve(
                self.backend_app(be.api_key), backend, be.max_message_size, be.header_timeout, be.body_timeout
            )
            logger.info("= backend on http://%s:%d%s", be.address, self.backend_port, be.path)
        if own is not None:
            app = Application([*health_routes(self), *self.metrics_routes()], log_function=_access_log)
            self.metrics_port = self._serve(app, own, 0, be.header_timeout, be.body_timeout)
            logger.info("= metrics on http://%s:%d/metrics", mc.address, self.metrics_port)
        if self.config.admin.password:
            if self.backend_port is None:
                logger.warning("! [admin] password is set but the backend port is closed: no admin page")
            else:
                logger.info("= admin page on http://%s:%d/admin", be.address, self.backend_port)
        self.started_at = time.monotonic()

    def _serve(
        self,
        app: Application,
        sockets: list[socket.socket],
        max_body: int,
        header_timeout: float,
        body_timeout: float,
    ) -> int:
        # Handlers that take bodies check their own limits before reading (and may raise
        # Tornado's per request); max_body bounds what any other route reads.
        server = HTTPServer(
            app,
            max_body_size=max_body,
            idle_connection_timeout=header_timeout or None,
            body_timeout=body_timeout or None,
        )
        server.add_sockets(sockets)
        self._servers.append(server)
        return int(sockets[0].getsockname()[1])

    def unready_reasons(self) -> list[str]:
        """Why this node should not get new traffic now (empty when it is ready)."""
        reasons = []
        if self.draining:
            reasons.append("draining")
        if not self.broker.reachable:
            reasons.append("broker unreachable")
        return reasons

    async def drain(self, window: float | None = None, grace: float = 3.0) -> bool:
        """Send every client elsewhere, spread over ``window`` seconds, before the node stops.

        From the first moment ``/ready`` answers 503 and a client that connects is
        closed at once with 1013 (try again later). The clients already connected are closed with 1012
        (reconnect now, to another node) in a random order, at times spread evenly
        over ``window`` (default ``[frontend] drain_window``), so that the other
        nodes are not hit all at once. The backend port keeps serving meanwhile.
        Returns whether every client was gone within ``window + grace`` seconds.
        """
        window = self.config.frontend.drain_window if window is None else window
        self.draining = True
        self.registry.accepting = False
        clients = list(self.registry.clients)
        random.shuffle(clients)
        loop = asyncio.get_running_loop()
        start, count = loop.time(), len(clients)
        if count:
            logger.info("= draining %d connection(s) over %.1f s", count, window)
        timers = [
            loop.call_at(start + window * (index + random.random()) / count, self._send_away, client)
            for index, client in enumerate(clients)
        ]
        try:
            return await self.registry.until_empty(window + grace)
        finally:
            for timer in timers:
                timer.cancel()

    def _send_away(self, client: Client) -> None:
        if client in self.registry.clients:
            client.close(CLOSE_SERVICE_RESTART)

    async def stop(self, grace: float = 3.0, window: float | None = None) -> None:
        """Drain (see :meth:`drain`), then stop listening, close what is left with 1001 and stop the broker.

        ``window=0`` skips the spreading: every client is sent away at once.
        """
        await self.drain(window, grace)
        for server in self._servers:
            server.stop()
        for client in list(self.registry.clients):
            client.close(CLOSE_GOING_AWAY)
        await self.registry.until_empty(grace)
        for server in self._servers:
            await server.close_all_connections()
        self._servers.clear()
        await self.broker.close()

    def reload(self, config: Config) -> ReloadReport:
        """Apply ``config`` where it can change without dropping a connection; keep the rest.

        Applied at once: ``log_level`` and ``log_format`` (when :attr:`log_handler` is set),
        ``[backend] api_key``, ``max_message_size`` and ``timeout`` (the next request),
        ``[admin] password``, ``[auth]`` (the next token checked), ``[frontend]
        drain_window``, ``[namespaces]`` (the next subscribe or publish; subscriptions made
        before stay), ``[limits]`` (the next message, subscribe or connection) and the
        transport limits (``max_message_size``, ``ping_interval``, ``allowed_origins``, ... :
        connections opened from then on; a WebSocket connection keeps the limits it was
        opened with). Every other change (ports, addresses,
        paths, the broker, services, metrics) needs a restart: the old value is kept and a
        warning names it. The outcome is logged and returned.

        Raises:
            ConfigError: ``config`` could not start a server (a service that cannot be
                created, a key file that cannot be read...); nothing was changed.
        """
        changes = changed_options(self.config, config)
        if changes:  # would it start? (as check-config does)
            SnorkyServer(config, broker=MemoryBroker())
            TransportOptions.from_kwargs(vars(config.frontend.transport).copy())
        report = ReloadReport()
        for name, values in changes.items():
            reason = self._not_reloadable(name, values[1], config)
            if reason is None:
                report.applied[name] = values
            else:
                report.skipped[name] = values
                report.reasons[name] = reason
        verifier = None
        if any(name.startswith("auth.") for name in report.applied):
            verifier = build_verifier(config.auth)  # may raise: before anything changes
        for name, (_, new) in report.applied.items():
            self._set_option(name, new)
        if verifier is not None and self._auth is not None:
            self._auth.verifier = verifier
        report.log(config.source)
        return report

    def _not_reloadable(self, name: str, new: Any, config: Config) -> str | None:
        """Why the option ``name`` cannot change to ``new`` while serving (``None``: it can)."""
        section, _, key = name.rpartition(".")
        if name in ("log_level", "log_format"):
            return None if self.log_handler is not None else "the application sets up logging, not Snorky"
        if section == "frontend" and (key in _TRANSPORT_OPTIONS or key == "drain_window"):
            return None
        if name == "backend.api_key":
            if self.backend_port is None:
                return "the backend port was not opened at start (no API key then): restart to open it"
            return None if new else "removing the key would close the backend port: restart to close it"
        if name in ("backend.max_message_size", "backend.timeout", "admin.password"):
            return None
        if section == "auth":
            if self._auth is None or not config.auth.enabled:
                return "tokens are turned on or off only at start"
            return None
        if name == "namespaces" or section == "limits":
            return None
        return "restart to apply"

    def _set_option(self, name: str, value: Any) -> None:
        """Make one reloadable option take effect, and record it in :attr:`config`."""
        if name == "namespaces":  # the PubSub services that took the configuration's take the new ones
            for service in self.registry.registered_services.values():
                if isinstance(service, PubSubService) and service.namespaces is self.config.namespaces:
                    service.namespaces = value
            self.config.namespaces = value
            return
        section, _, key = name.rpartition(".")
        if section == "frontend" and key in _TRANSPORT_OPTIONS:
            target: Any = self.config.frontend.transport
        else:
            target = getattr(self.config, section) if section else self.config
        setattr(target, key, value)
        if name == "log_level" and self.log_handler is not None:
            logging.getLogger().setLevel(value.upper())
        elif name == "log_format" and self.log_handler is not None:
            self.log_handler.setFormatter(formatter_for(value, self.broker.node_id))
        elif section == "backend" and self._backend_route is not None:
            self._backend_route[2][key] = value
        elif section == "limits" and self.registry.limiter is not None:
            self.registry.limiter.reconfigured()

    def info(self) -> dict[str, Any]:
        """Server facts for the status page: version, connections, services, endpoints, and
        how many times each limit refused something (``limits``: limit name -> count)."""
        fe = self.config.frontend
        return {
            "version": __version__,
            "connections": len(self.registry.clients),
            "services": {name: type(s).__name__ for name, s in self.registry.registered_services.items()},
            "websocket": fe.websocket_path,
            "sockjs": fe.sockjs_prefix,
            "backend": (
                f"{self.config.backend.address}:{self.backend_port}{self.config.backend.path}"
                if self.backend_port
                else "closed (no API key)"
            ),
            "broker": self.broker.stats(),
            "limits": dict(self.registry.limiter.hits) if self.registry.limiter is not None else {},
        }


def _bind(address: str, port: int) -> list[socket.socket]:
    """Listening sockets for ``address:port``, or a :class:`ListenError` in one line."""
    try:
        return bind_sockets(port, address)
    except OSError as error:
        reason = error.strerror or str(error)
        raise ListenError(f"cannot listen on {address}:{port}: {reason.lower()}") from None


def _close(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()
