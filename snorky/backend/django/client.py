"""Calls from a Django project to Snorky's backend port, configured by its settings.

Each call reads the settings (see :mod:`snorky.backend.django.conf`), so
``override_settings`` works in tests. Synchronous calls use
:class:`~snorky.backend.SnorkyBackend` (``requests``, one session per thread);
the ``a``-prefixed twins, for async views and tasks, use
:class:`~snorky.backend.AsyncSnorkyBackend`.

Calls made on behalf of something that must not fail (publishing a committed
transaction's deltas, a progress bar) never raise: the failure is counted in
:data:`stats` and logged, once while Snorky stays unreachable, with one more
line when it answers again. Committed deltas are published by a background
thread (:mod:`snorky.backend.django.sender`).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field, fields
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from snorky.backend import AsyncSnorkyBackend, AsyncSnorkyHTTPTransport, SnorkyBackend, SnorkyHTTPTransport
from snorky.backend.django import conf
from snorky.errors import SnorkyError

__all__ = [
    "JSONModule",
    "Stats",
    "stats",
    "deltas_target",
    "get_backend",
    "get_async_backend",
    "authorize_subscription",
    "aauthorize_subscription",
    "publish_deltas",
    "apublish_deltas",
    "publish",
    "apublish",
    "report_failure",
    "report_success",
]

logger = logging.getLogger(__name__)


class JSONModule:
    """A stand-in for :mod:`json` that encodes with ``SNORKY_JSON_ENCODER``.

    Args:
        encoder: the :class:`json.JSONEncoder` subclass to encode with.
    """

    def __init__(self, encoder: type[json.JSONEncoder]) -> None:
        self.encoder = encoder

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """``json.dumps`` with the encoder."""
        return json.dumps(obj, cls=self.encoder, **kwargs)

    @staticmethod
    def loads(text: str | bytes, **kwargs: Any) -> Any:
        """``json.loads``."""
        return json.loads(text, **kwargs)


@dataclass
class Stats:
    """What the project sent to Snorky since it started (or since :meth:`reset`).

    Every delta of a committed transaction ends in exactly one of ``deltas``
    (Snorky accepted it), ``lost_deltas``, ``unknown_deltas`` and
    ``dropped_deltas``, or is still waiting in ``queued_deltas``.

    .. versionchanged:: 0.2
       ``unknown_deltas``, ``dropped_deltas`` and ``queued_deltas``; a timed-out
       call counts its deltas as unknown, no longer as lost.
    """

    requests: int = 0
    """``publishDeltas`` calls made for committed transactions."""
    deltas: int = 0
    """Deltas those calls published."""
    failures: int = 0
    """Calls that failed without raising (deltas, progress, ``fail_silently``)."""
    lost_deltas: int = 0
    """Deltas of committed transactions that certainly did not reach Snorky: it
    was unreachable, refused them, or no API key was set."""
    unknown_deltas: int = 0
    """Deltas sent without an answer (the call timed out or its connection broke):
    Snorky may have delivered them, later."""
    dropped_deltas: int = 0
    """Deltas never sent because the queue of the background sender was full."""
    queued_deltas: int = 0
    """Deltas waiting in the background sender now (a level: :meth:`reset` leaves it)."""
    last_error: str = ""
    """The text of the latest failure."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _failing_since: int | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The counters as a dict (for a health check or a metrics exporter)."""
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}

    def reset(self) -> None:
        """Set every counter back to zero (not :attr:`queued_deltas`)."""
        with self._lock:
            self.requests = self.deltas = self.failures = 0
            self.lost_deltas = self.unknown_deltas = self.dropped_deltas = 0
            self.last_error = ""
            self._failing_since = None


stats = Stats()
"""The counters of this process: ``snorky.backend.django.stats``."""


def report_failure(action: str, error: BaseException, lost_deltas: int = 0, unknown_deltas: int = 0) -> None:
    """Count a failed call that was not raised, and log it.

    A :class:`~snorky.errors.SnorkyError` (Snorky unreachable or refusing) or
    a configuration error is logged once, then only counted until
    :func:`report_success`; anything else is a bug and is logged every time,
    with its traceback.

    Args:
        action: what failed, for the log (``"publishing 3 deltas"``).
        error: the exception.
        lost_deltas: how many deltas were lost with it.
        unknown_deltas: how many deltas it sent without an answer.
    """
    with stats._lock:
        stats.failures += 1
        stats.lost_deltas += lost_deltas
        stats.unknown_deltas += unknown_deltas
        stats.last_error = f"{type(error).__name__}: {error}"
        first = stats._failing_since is None
        if first:
            stats._failing_since = stats.failures - 1
    if not isinstance(error, (SnorkyError, ImproperlyConfigured)):
        logger.error("! %s failed", action, exc_info=error)
    elif first:
        logger.error(
            "! %s failed: %s (until Snorky answers again, failures are only counted in snorky.backend.django.stats)",
            action,
            error,
        )
    else:
        logger.debug("! %s failed: %s", action, error)


def report_success(requests: int = 0, deltas: int = 0) -> None:
    """Count a successful call; after failures, log that Snorky answers again."""
    with stats._lock:
        stats.requests += requests
        stats.deltas += deltas
        since, stats._failing_since = stats._failing_since, None
        failed = stats.failures - since if since is not None else 0
    if since is not None:
        logger.warning("= Snorky answers again, after %d failed call(s)", failed)


_local = threading.local()
_async_backends: dict[tuple[Any, ...], AsyncSnorkyBackend] = {}


def _settings_key() -> tuple[Any, ...]:
    key = conf.api_key()
    if not key:
        raise ImproperlyConfigured("SNORKY_API_KEY is not set (in the settings or the environment)")
    return (conf.backend_url(), key, float(conf.get("SNORKY_TIMEOUT")), conf.json_encoder())


def deltas_target() -> tuple[Any, ...]:
    """Where committed deltas go, as the settings say now: the backend's settings, service and batch size.

    Raises:
        ImproperlyConfigured: no API key, or a bad ``SNORKY_JSON_ENCODER``.
    """
    return (_settings_key(), conf.get("SNORKY_DATASYNC_SERVICE"), max(1, int(conf.get("SNORKY_BATCH_SIZE"))))


def get_backend() -> SnorkyBackend:
    """A :class:`~snorky.backend.SnorkyBackend` for the settings, one per thread.

    Raises:
        ImproperlyConfigured: no API key, or a bad ``SNORKY_JSON_ENCODER``.
    """
    key = _settings_key()
    cache: dict[tuple[Any, ...], SnorkyBackend] = _local.__dict__.setdefault("backends", {})
    backend = cache.get(key)
    if backend is None:
        url, api_key, timeout, encoder = key
        backend = SnorkyBackend(SnorkyHTTPTransport(url, api_key, timeout=timeout), json=JSONModule(encoder))
        cache.clear()
        cache[key] = backend
    return backend


def get_async_backend() -> AsyncSnorkyBackend:
    """An :class:`~snorky.backend.AsyncSnorkyBackend` for the settings.

    Raises:
        ImproperlyConfigured: no API key, or a bad ``SNORKY_JSON_ENCODER``.
    """
    key = _settings_key()
    backend = _async_backends.get(key)
    if backend is None:
        url, api_key, timeout, encoder = key
        backend = AsyncSnorkyBackend(AsyncSnorkyHTTPTransport(url, api_key, timeout=timeout), json=JSONModule(encoder))
        _async_backends.clear()
        _async_backends[key] = backend
    return backend


def authorize_subscription(items: list[dict[str, Any]]) -> str:
    """Authorize a DataSync subscription; return the token a browser acquires it with.

    Args:
        items: ``[{"dealer": name, "query": query}, ...]``.

    Raises:
        snorky.errors.SnorkyError: Snorky refused (``no_such_dealer``, ``invalid_query``...)
            or could not be reached (:class:`~snorky.backend.TransportError`).
    """
    token = get_backend().call(conf.get("SNORKY_DATASYNC_SERVICE"), "authorizeSubscription", items=items)
    return str(token)


async def aauthorize_subscription(items: list[dict[str, Any]]) -> str:
    """The async twin of :func:`authorize_subscription`."""
    token = await get_async_backend().call(conf.get("SNORKY_DATASYNC_SERVICE"), "authorizeSubscription", items=items)
    return str(token)


def publish_deltas(deltas: list[dict[str, Any]]) -> None:
    """Publish ``deltas`` now, in one call, whatever the state of any transaction.

    Saves of :func:`~snorky.backend.django.subscribable` models do not need
    this; see :func:`~snorky.backend.django.queue_deltas` to publish on commit.

    Raises:
        snorky.errors.SnorkyError: Snorky refused the deltas or could not be reached.
    """
    get_backend().call(conf.get("SNORKY_DATASYNC_SERVICE"), "publishDeltas", deltas=deltas)


async def apublish_deltas(deltas: list[dict[str, Any]]) -> None:
    """The async twin of :func:`publish_deltas`."""
    await get_async_backend().call(conf.get("SNORKY_DATASYNC_SERVICE"), "publishDeltas", deltas=deltas)


def publish(channel: Any, message: Any, *, fail_silently: bool = False) -> bool:
    """Publish ``message`` to the subscribers of a PubSub ``channel``.

    Args:
        channel: the channel name.
        message: any JSON value (encoded with ``SNORKY_JSON_ENCODER``).
        fail_silently: count and log a failure instead of raising it.

    Returns:
        Whether Snorky accepted the message.

    Raises:
        snorky.errors.SnorkyError: unless ``fail_silently``.
    """
    try:
        get_backend().call(conf.get("SNORKY_PUBSUB_SERVICE"), "publish", channel=channel, message=message)
    except (SnorkyError, ImproperlyConfigured) as error:
        if not fail_silently:
            raise
        report_failure(f"publishing to {channel!r}", error)
        return False
    report_success()
    return True


async def apublish(channel: Any, message: Any, *, fail_silently: bool = False) -> bool:
    """The async twin of :func:`publish`."""
    try:
        await get_async_backend().call(conf.get("SNORKY_PUBSUB_SERVICE"), "publish", channel=channel, message=message)
    except (SnorkyError, ImproperlyConfigured) as error:
        if not fail_silently:
            raise
        report_failure(f"publishing to {channel!r}", error)
        return False
    report_success()
    return True
