"""Configuration for ``snorky serve``: embedded defaults, overridden by a TOML file.

Every key is optional; an unknown key is an error that names it. See
``docs/topics/configuration.rst`` for the whole file.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from snorky.errors import ConfigError
from snorky.limits import LimitsConfig
from snorky.logs import LOG_FORMATS
from snorky.namespaces import Namespace, Namespaces
from snorky.options import TransportOptions, fill_options, pop_option, suggest, unknown_key

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "Config",
    "FrontendConfig",
    "BackendConfig",
    "AuthConfig",
    "RedisConfig",
    "MetricsConfig",
    "LimitsConfig",
    "AdminConfig",
    "EMBEDDED",
    "ServiceSpec",
    "BUILTIN_SERVICES",
    "load_class",
]

BUILTIN_SERVICES: dict[str, str] = {
    "pubsub": "snorky.services.pubsub.PubSubService",
    "pubsub_backend": "snorky.services.pubsub.PubSubBackend",
    "chat": "snorky.services.chat.ChatService",
    "messaging": "snorky.services.messaging.MessagingService",
    "cursors": "snorky.services.cursors.CursorsService",
    "datasync": "snorky.services.datasync.DataSyncService",
    "datasync_backend": "snorky.services.datasync.DataSyncBackend",
    "progress": "snorky.services.progress.ProgressService",
    "progress_backend": "snorky.services.progress.ProgressBackend",
}
"""Short names accepted for ``class`` in service tables."""

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

EMBEDDED = "(embedded defaults)"
"""The ``source`` of a configuration read from no file."""


def embedded_namespaces() -> Namespaces:
    """The namespaces of the embedded defaults: anyone may subscribe and publish, so that the
    README's first example works with no file. A configuration file starts from
    :class:`~snorky.namespaces.Namespaces` instead, where clients publish nowhere."""
    return Namespaces(Namespace(allow_publish="anyone"))


@dataclass
class FrontendConfig:
    """The public port browsers connect to."""

    address: str = "127.0.0.1"
    """The address to listen on ("0.0.0.0" for every interface)."""
    port: int = 5001
    """The port to listen on; 0 picks a free one."""
    websocket_path: str = "/ws"
    """URL path of the WebSocket endpoint."""
    sockjs_prefix: str = "/sockjs"
    """URL prefix of the SockJS endpoint; an empty string disables SockJS."""
    status_page: bool = True
    """Serve a small status page (at ``/``, or at ``/status`` when ``static_dir`` is set)."""
    static_dir: str = ""
    """A folder of files served at ``/`` (``index.html`` for folders), relative to the
    configuration file; for pages that use Snorky, such as the demos."""
    drain_window: float = 5.0
    """Seconds over which a stopping node (SIGTERM) sends its clients elsewhere, each at a
    random moment, so that the other nodes are not hit all at once; 0 sends them at once."""
    header_timeout: float = 10.0
    """Seconds an HTTP connection may take to send a complete request header, counted from
    when it opens or its previous response ends (idle keep-alive connections and slow
    senders are closed after it). WebSocket connections are kept by pings instead."""
    body_timeout: float = 60.0
    """Seconds a request may take to send its body."""
    transport: TransportOptions = field(default_factory=TransportOptions)


@dataclass
class BackendConfig:
    """The private port trusted application servers call."""

    address: str = "127.0.0.1"
    """The address to listen on; keep it private (loopback or an internal network)."""
    port: int = 5002
    """The port to listen on; 0 picks a free one."""
    path: str = "/backend"
    """URL path application servers POST to."""
    api_key: str | None = None
    """The key clients must send in ``X-Backend-Key``; ``SNORKY_API_KEY`` overrides it.

    Without a key the backend port is not opened at all."""
    max_message_size: int = 1024 * 1024
    """Largest request body in bytes; a bigger one is answered 413."""
    timeout: float = 30.0
    """Seconds a service may take to answer before the request is answered 504."""
    header_timeout: float = 60.0
    """As ``[frontend] header_timeout``; longer, for application servers' pooled connections."""
    body_timeout: float = 60.0
    """Seconds a request may take to send its body."""


@dataclass
class MetricsConfig:
    """Prometheus metrics (see the metrics page)."""

    enabled: bool = True
    """Count what happens and serve it at /metrics on the backend port."""
    address: str = "127.0.0.1"
    """The address of the metrics port of its own (with port)."""
    port: int = 0
    """A port of its own for /metrics (and /health, /ready), for a scraper that must not reach
    the backend port; 0: none (the backend port serves them)."""


@dataclass
class AdminConfig:
    """The admin page at /admin on the backend port (see the admin page)."""

    password: str | None = None
    """The password of the admin page; ``SNORKY_ADMIN_PASSWORD`` overrides it.

    Without one the page is not served (/admin answers 404)."""


@dataclass
class AuthConfig:
    """How client tokens are verified; with neither key, tokens are refused."""

    secret: str | None = None
    """The HS256 shared secret; ``SNORKY_TOKEN_SECRET`` overrides it."""
    public_key_file: str | None = None
    """A PEM public key file, for RS256/ES256 tokens."""
    algorithms: list[str] = field(default_factory=list)
    """Accepted algorithms (default: HS256 with a secret, RS256 and ES256 with a key)."""
    leeway: float = 0.0
    """Seconds of clock difference tolerated on ``exp``."""

    @property
    def enabled(self) -> bool:
        """Whether tokens can be verified at all."""
        return bool(self.secret or self.public_key_file)


@dataclass
class RedisConfig:
    """Options of the Redis broker (``broker = "redis://..."``)."""

    prefix: str = "snorky"
    """Prefix of every key and channel; clusters sharing a Redis need different ones."""
    node_id: str = ""
    """This node's id (default: host name, process id and random bits)."""
    heartbeat: float = 1.0
    """Seconds between heartbeats (liveness, presence refresh, subscription check)."""
    presence_ttl: float = 30.0
    """Seconds after which a dead node's presence entries expire (and leave notifications go out)."""
    max_pending: int = 100_000
    """Publishes kept while Redis is unreachable; beyond that, publishes are refused (and counted)."""
    timeout: float = 5.0
    """Seconds a command waits for Redis before answering ``unavailable``; a publish is answered within it."""


@dataclass
class ServiceSpec:
    """One service to create: its name, class and constructor options."""

    name: str
    class_path: str
    options: dict[str, Any] = field(default_factory=dict)
    where: str = ""
    """Where it was configured (``"snorky.toml: [services.chat]"``), for error messages."""


def _default_services() -> list[ServiceSpec]:
    return [ServiceSpec("pubsub", BUILTIN_SERVICES["pubsub"])]


@dataclass
class Config:
    """Everything ``snorky serve`` needs; :meth:`load` reads it from a file."""

    log_level: str = "info"
    """The lowest level logged: debug, info, warning, error or critical."""
    log_format: str = "text"
    """``"text"`` (for people) or ``"json"`` (one object per line, for log pipelines)."""
    broker: str = "memory"
    """Where fan-outs go: "memory" (one process), "redis://host:6379/0", or
    "redis+sentinel://host:26379,host2:26379/mymaster" (several nodes as one server)."""
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    namespaces: Namespaces = field(default_factory=embedded_namespaces)
    """Who may subscribe, publish, and see presence and history, by channel namespace
    (``[namespaces]``); applied to every PubSub service."""
    services: list[ServiceSpec] = field(default_factory=_default_services)
    backend_services: list[ServiceSpec] | None = None
    """Backend services; ``None`` (not configured): one backend for each frontend
    service that has one (PubSub, DataSync, Progress), under the same name."""
    source: str = EMBEDDED

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Config:
        """Read ``path`` (TOML) over the defaults, then apply ``SNORKY_API_KEY``,
        ``SNORKY_TOKEN_SECRET`` and ``SNORKY_ADMIN_PASSWORD`` from ``env``.

        Raises:
            ConfigError: the file cannot be read or parsed, or a value is wrong.
        """
        env = dict(os.environ) if env is None else env
        data: dict[str, Any] = {}
        source = EMBEDDED
        if path is not None:
            source = str(path)
            try:
                data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
            except OSError as error:
                raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
            except tomllib.TOMLDecodeError as error:
                raise ConfigError(f"{path}: invalid TOML: {error}") from None
        config = cls.from_dict(data, source)
        if path is not None and config.frontend.static_dir:
            config.frontend.static_dir = str(Path(path).resolve().parent / config.frontend.static_dir)
        if env.get("SNORKY_API_KEY"):
            config.backend.api_key = env["SNORKY_API_KEY"]
        if env.get("SNORKY_TOKEN_SECRET"):
            config.auth.secret = env["SNORKY_TOKEN_SECRET"]
        if env.get("SNORKY_ADMIN_PASSWORD"):
            config.admin.password = env["SNORKY_ADMIN_PASSWORD"]
        return config

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "(dict)") -> Config:
        """Build a configuration from parsed TOML data, checking every key."""
        data = dict(data)
        config = cls(source=source)
        config.log_level = pop_option(data, "log_level", str, config.log_level, source).lower()
        if config.log_level not in LOG_LEVELS:
            raise ConfigError(f"{source}: log_level must be one of {', '.join(LOG_LEVELS)}, not {config.log_level!r}")
        config.log_format = pop_option(data, "log_format", str, config.log_format, source).lower()
        if config.log_format not in LOG_FORMATS:
            raise ConfigError(
                f"{source}: log_format must be one of {', '.join(LOG_FORMATS)}, not {config.log_format!r}"
            )
        config.broker = pop_option(data, "broker", str, config.broker, source)
        if config.broker != "memory" and urlsplit(config.broker).scheme not in ("redis", "rediss", "redis+sentinel"):
            raise ConfigError(
                f'{source}: broker must be "memory", "redis://host:port/db" or "redis+sentinel://host:port/service"'
            )
        fill_options(config.redis, dict(pop_option(data, "redis", dict, {}, source)), f"{source}: [redis]")

        frontend = dict(pop_option(data, "frontend", dict, {}, source))
        transport_keys = {f.name for f in fields(TransportOptions)}
        transport = {key: frontend.pop(key) for key in list(frontend) if key in transport_keys}
        fill_options(config.frontend, frontend, f"{source}: [frontend]", transport_keys)
        fill_options(config.frontend.transport, transport, f"{source}: [frontend]")
        fill_options(config.backend, dict(pop_option(data, "backend", dict, {}, source)), f"{source}: [backend]")
        fill_options(config.auth, dict(pop_option(data, "auth", dict, {}, source)), f"{source}: [auth]")
        fill_options(config.metrics, dict(pop_option(data, "metrics", dict, {}, source)), f"{source}: [metrics]")
        fill_options(config.limits, dict(pop_option(data, "limits", dict, {}, source)), f"{source}: [limits]")
        try:
            config.limits.__post_init__()
        except ValueError as error:
            raise ConfigError(f"{source}: [limits] {error}") from None
        fill_options(config.admin, dict(pop_option(data, "admin", dict, {}, source)), f"{source}: [admin]")
        if source != EMBEDDED:  # a file says who may publish; saying nothing allows no client
            table = dict(pop_option(data, "namespaces", dict, {}, source))
            config.namespaces = Namespaces.from_config(table, f"{source}: [namespaces]")

        if "services" in data:
            config.services = _specs(pop_option(data, "services", dict, {}, source), f"{source}: [services]")
        if "backend_services" in data:
            config.backend_services = _specs(
                pop_option(data, "backend_services", dict, {}, source), f"{source}: [backend_services]"
            )
        if data:
            top = [f.name for f in fields(cls) if f.name != "source"]
            raise unknown_key(source, sorted(data)[0], top)
        return config


def _specs(table: dict[str, Any], where: str) -> list[ServiceSpec]:
    specs = []
    for name, options in table.items():
        section = f"{where[:-1]}.{name}]"
        if not isinstance(options, dict):
            raise ConfigError(f"{section}: must be a table")
        options = dict(options)
        class_path = options.pop("class", None)
        if not isinstance(class_path, str):
            raise ConfigError(f'{section}: needs class = "..." (a built-in name or a dotted path)')
        if class_path not in BUILTIN_SERVICES and "." not in class_path:
            raise ConfigError(
                f"{section} class: unknown service {class_path!r}{suggest(class_path, BUILTIN_SERVICES)} "
                f"(built-in: {', '.join(BUILTIN_SERVICES)}; or a dotted path package.module.Class)"
            )
        specs.append(ServiceSpec(name, BUILTIN_SERVICES.get(class_path, class_path), options, section))
    return specs


def load_class(path: str) -> type:
    """Import ``package.module.ClassName``.

    Raises:
        ConfigError: the module or class cannot be imported.
    """
    module_name, _, class_name = path.rpartition(".")
    if not module_name:
        raise ConfigError(f"{path!r} is not a dotted path (package.module.Class)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"cannot import {module_name}: {error}") from None
    try:
        cls: type = getattr(module, class_name)
    except AttributeError:
        raise ConfigError(f"{module_name} has no {class_name}") from None
    return cls
