"""The background sender: a commit hands its deltas over and returns; a thread publishes them.

A committed transaction's deltas go to :func:`submit`, which queues them and
returns at once, so a slow or unreachable Snorky never delays a request. One
thread per process (started on first use, and anew in a forked child)
publishes the queue in the order it was filled; when transactions queue up
behind a slow call, the next ``publishDeltas`` call carries several of them,
up to ``SNORKY_BATCH_SIZE`` deltas (a transaction is split only when it is
larger by itself).

The queue holds at most ``SNORKY_QUEUE_SIZE`` deltas (10 000 by default). When
a commit's deltas do not fit, they are dropped, counted in
:attr:`~snorky.backend.django.Stats.dropped_deltas` and logged once, with one
more line when the queue has room again; an empty queue takes a transaction of
any size. ``SNORKY_QUEUE_SIZE = 0`` publishes in the committing thread instead
(the request then waits for Snorky, up to ``SNORKY_TIMEOUT`` per call).

:func:`flush` waits until what was committed before it has been sent, for
tests and scripts; the process does the same when it exits, for at most
``SNORKY_TIMEOUT`` seconds.

.. versionadded:: 0.2
"""

from __future__ import annotations

import atexit
import http.client
import json as stdlib_json
import logging
import os
import select
import threading
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from snorky.backend import SnorkyBackend, TransportError
from snorky.backend.django import client, conf

__all__ = ["DeltaSender", "submit", "flush", "publish"]

logger = logging.getLogger(__name__)


class _KeepAliveTransport:
    """POSTs to the backend port over one persistent ``http.client`` connection.

    The sender's own transport: a call costs about a sixth of the CPU time of
    ``requests``, which matters in a thread that competes for the GIL with the
    request threads. Errors are :class:`~snorky.backend.TransportError`, with
    ``outcome_unknown`` set once the request may have been sent.
    """

    def __init__(self, url: str, key: str, timeout: float) -> None:
        parts = urlsplit(url)
        self.url = url
        self.timeout = timeout
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.headers = {"X-Backend-Key": key, "Content-Type": "application/json", "Accept": "application/json"}
        self.connection: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        connection = self.connection
        if connection is not None and connection.sock is not None:
            if not select.select([connection.sock], [], [], 0)[0]:
                return connection
            connection.close()  # readable while idle: the server closed it
        kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        connection = kind(self.host, self.port, timeout=self.timeout)
        try:
            connection.connect()
        except OSError as error:  # refused, unreachable, timed out: nothing was sent
            raise TransportError(self.url, None, str(error)) from None
        self.connection = connection
        return connection

    def close(self) -> None:
        """Close the connection (a later call opens another)."""
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def send(self, message: Any, json: Any = stdlib_json) -> Any:
        """POST ``message`` and return the decoded answer.

        Raises:
            TransportError: the port is unreachable, answered an HTTP error or
                not JSON, or no answer came (``outcome_unknown``).
        """
        body = json.dumps(message).encode("utf-8")
        connection = self._connect()
        try:
            connection.request("POST", self.path, body, self.headers)
            response = connection.getresponse()
            content = response.read()
        except (OSError, http.client.HTTPException) as error:
            self.close()
            detail = str(error) or type(error).__name__
            raise TransportError(self.url, None, detail, outcome_unknown=True) from None
        if response.status != 200:
            raise TransportError(self.url, response.status, _error_detail(content, response.reason))
        try:
            return json.loads(content.decode("utf-8"))
        except ValueError:
            raise TransportError(self.url, 200, "the answer is not JSON") from None


def _error_detail(body: bytes, reason: str) -> str:
    try:
        return str(stdlib_json.loads(body)["message"])
    except (ValueError, KeyError, TypeError):
        return reason or "error"


_backends = threading.local()


def _backend(key: tuple[Any, ...]) -> SnorkyBackend:
    """The sender thread's backend for the settings ``key`` (one connection, kept)."""
    cached = getattr(_backends, "cached", None)
    if cached is None or cached[0] != key:
        if cached is not None:
            cached[1].transport.close()
        url, api_key, timeout, encoder = key
        backend = SnorkyBackend(_KeepAliveTransport(url, api_key, timeout), json=client.JSONModule(encoder))  # type: ignore[arg-type]
        cached = _backends.cached = (key, backend)
    return cached[1]


def publish(deltas: list[dict[str, Any]], target: tuple[Any, ...]) -> None:
    """Publish ``deltas`` to ``target`` now (see :func:`~snorky.backend.django.client.deltas_target`).

    Never raises: each call's outcome is counted in
    :data:`~snorky.backend.django.stats`. After a failed call the rest of
    ``deltas`` is not sent, and counted as lost.
    """
    key, service, size = target
    for start in range(0, len(deltas), size):
        chunk = deltas[start : start + size]
        action = f"publishing {len(chunk)} delta(s)"
        try:
            _backend(key).call(service, "publishDeltas", deltas=chunk)
        except TransportError as error:
            unknown = len(chunk) if error.outcome_unknown else 0
            client.report_failure(action, error, lost_deltas=len(deltas) - start - unknown, unknown_deltas=unknown)
            return
        except Exception as error:
            client.report_failure(action, error, lost_deltas=len(deltas) - start)
            return
        client.report_success(requests=1, deltas=len(chunk))


class DeltaSender:
    """A bounded queue of committed deltas and the thread that publishes it.

    Args:
        capacity: the most deltas the queue holds.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        """The most deltas the queue holds."""
        self._items: deque[tuple[tuple[Any, ...], list[dict[str, Any]]]] = deque()
        self._queued = 0
        self._submitted = 0
        self._finished = 0
        self._dropping = 0
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, deltas: list[dict[str, Any]], target: tuple[Any, ...]) -> bool:
        """Queue ``deltas`` for ``target``; return whether they fit (else they are dropped and counted)."""
        with self._changed:
            fits = not self._queued or self._queued + len(deltas) <= self.capacity
            if fits:
                recovered, self._dropping = self._dropping, 0
                self._items.append((target, deltas))
                self._queued += len(deltas)
                self._submitted += 1
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="snorky-deltas", daemon=True)
                    self._thread.start()
                self._changed.notify_all()
            else:
                first = not self._dropping
                self._dropping += len(deltas)
            with client.stats._lock:
                if fits:
                    client.stats.queued_deltas += len(deltas)
                else:
                    client.stats.dropped_deltas += len(deltas)
        if fits and recovered:
            logger.warning("= the queue of deltas to publish has room again, after %d dropped delta(s)", recovered)
        elif not fits and first:
            logger.error(
                "! the queue of deltas to publish is full (%d deltas, SNORKY_QUEUE_SIZE): the deltas of new commits "
                "are dropped until it drains (Snorky is slow or unreachable); they are counted in "
                "snorky.backend.django.stats",
                self.capacity,
            )
        return fits

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted before this call is published (or failed); whether it was in time."""
        with self._changed:
            goal = self._submitted
            return self._changed.wait_for(lambda: self._finished >= goal, timeout)

    @property
    def queued(self) -> int:
        """Deltas waiting to be published."""
        return self._queued

    def _take(self) -> tuple[tuple[Any, ...], list[dict[str, Any]], int]:
        """The next call: the first waiting transaction and those behind it that fit with it."""
        with self._changed:
            self._changed.wait_for(lambda: self._items)
            target, deltas = self._items.popleft()
            batch, taken, size = list(deltas), 1, target[2]
            while self._items and self._items[0][0] == target and len(batch) + len(self._items[0][1]) <= size:
                batch += self._items.popleft()[1]
                taken += 1
            self._queued -= len(batch)
            with client.stats._lock:
                client.stats.queued_deltas -= len(batch)
            return target, batch, taken

    def _run(self) -> None:
        while True:
            target, batch, taken = self._take()
            try:
                publish(batch, target)
            finally:
                with self._changed:
                    self._finished += taken
                    self._changed.notify_all()


_sender: DeltaSender | None = None
_sender_lock = threading.Lock()


def _get_sender(capacity: int) -> DeltaSender:
    global _sender
    with _sender_lock:
        if _sender is None:
            _sender = DeltaSender(capacity)
        _sender.capacity = capacity
        return _sender


def submit(deltas: list[dict[str, Any]]) -> None:
    """Publish the deltas of a committed transaction, off the request path; never raises.

    The destination is taken from the settings now; see the module's text for
    the queue and what happens when it is full.
    """
    try:
        target = client.deltas_target()
        capacity = int(conf.get("SNORKY_QUEUE_SIZE"))
    except Exception as error:
        client.report_failure(f"publishing {len(deltas)} delta(s)", error, lost_deltas=len(deltas))
        return
    if capacity <= 0:
        publish(deltas, target)
    else:
        _get_sender(capacity).submit(deltas, target)


def flush(timeout: float | None = None) -> bool:
    """Wait until the deltas committed before this call have been published, or have failed.

    For tests and scripts: after ``flush()``, the counters of
    :data:`~snorky.backend.django.stats` include every earlier commit.

    Args:
        timeout: the most seconds to wait (default: as long as it takes).

    Returns:
        Whether everything was sent (or failed) in time.
    """
    sender = _sender
    return True if sender is None else sender.flush(timeout)


def _at_exit() -> None:
    sender = _sender
    if sender is None or sender.flush(0):
        return
    try:
        timeout = float(conf.get("SNORKY_TIMEOUT"))
    except Exception:
        timeout = 5.0
    if not sender.flush(timeout):
        logger.error("! exiting with %d delta(s) not published", sender.queued)


def _forget_in_child() -> None:
    """In a forked child: the parent's queue and thread are the parent's."""
    global _sender, _sender_lock
    _sender, _sender_lock = None, threading.Lock()
    client.stats._lock = threading.Lock()  # another thread may have held it
    client.stats.queued_deltas = 0


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
