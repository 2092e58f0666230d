"""MemoryBroker: the embedded default, for a single process."""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from snorky.brokers.base import Broker, GapHandler, Handler, History, HistoryResult, with_position
from snorky.protocol import Outbound

__all__ = ["MemoryBroker"]

logger = logging.getLogger(__name__)


class _Stream:
    """A topic's recent messages: ``(offset, published_at, json)``, oldest first."""

    __slots__ = ("epoch", "offset", "entries", "touched", "ttl")

    def __init__(self, now: float, ttl: float) -> None:
        self.epoch = secrets.token_hex(4)
        self.offset = 0
        self.entries: deque[tuple[int, float, bytes]] = deque()
        self.touched = now
        self.ttl = ttl

    def expired(self, now: float) -> bool:
        """Whether the stream saw no publish and no reader for ``ttl`` seconds."""
        return now - self.touched > self.ttl


class MemoryBroker(Broker):
    """Delivers each publish synchronously to the handlers of this process.

    A handler that raises is logged and does not stop delivery to the others.

    Args:
        clock: returns the time in seconds (for history expiry; tests pass their own).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.handlers: dict[str, list[Handler]] = {}
        """Topic -> handlers, in subscription order."""
        self.published = 0
        """Messages published since start."""
        self.streams: dict[str, _Stream] = {}
        """Topic -> its history stream, for topics published with history."""
        self.clock = clock
        self._operations = 0
        self.presence: dict[str, dict[str, bytes]] = {}
        """Presence key -> member -> info."""
        self.kv: dict[str, tuple[bytes, float | None]] = {}
        """Key -> (value, expiry time or None)."""

    def subscribe(self, topic: str, handler: Handler, on_gap: GapHandler | None = None) -> None:
        handlers = self.handlers.setdefault(topic, [])
        if handler not in handlers:
            handlers.append(handler)

    def unsubscribe(self, topic: str, handler: Handler) -> None:
        handlers = self.handlers.get(topic)
        if handlers and handler in handlers:
            handlers.remove(handler)
            if not handlers:
                del self.handlers[topic]

    def publish(self, topic: str, out: Outbound, history: History | None = None) -> None:
        self.published += 1
        if history is not None:
            out = self._keep(topic, out, history)
        handlers = self.handlers.get(topic)
        if not handlers:
            return
        # A copy only when a handler could change the list under us (several).
        for handler in handlers if len(handlers) == 1 else tuple(handlers):
            try:
                handler(topic, out)
            except Exception:
                logger.exception("! handler %r failed for topic %s", handler, topic)

    def _stream(self, topic: str, ttl: float, now: float) -> _Stream:
        """The topic's live stream (a new one, with a new epoch, if it had expired)."""
        self._operations += 1
        if self._operations % 1024 == 0:
            self.sweep(now)
        stream = self.streams.get(topic)
        if stream is None or stream.expired(now):
            stream = self.streams[topic] = _Stream(now, ttl)
        stream.touched = now
        stream.ttl = ttl
        return stream

    def sweep(self, now: float | None = None) -> None:
        """Forget the streams that expired (it also happens every 1024 stream operations)."""
        now = self.clock() if now is None else now
        for topic in [t for t, stream in self.streams.items() if stream.expired(now)]:
            del self.streams[topic]

    def _keep(self, topic: str, out: Outbound, history: History) -> Outbound:
        now = self.clock()
        stream = self._stream(topic, history.ttl, now)
        stream.offset += 1
        data = with_position(out, stream.offset, stream.epoch)
        entries = stream.entries
        entries.append((stream.offset, now, data))
        while len(entries) > history.size or now - entries[0][1] > history.ttl:
            entries.popleft()
        return Outbound(json=data, exclude=out.exclude)

    def history(self, topic: str, since: tuple[int, str] | None = None, ttl: float = 300.0) -> HistoryResult:
        now = self.clock()
        stream = self._stream(topic, ttl, now)
        result = HistoryResult(stream.offset, stream.epoch)
        if since is None:
            return result
        offset, epoch = since
        if epoch != stream.epoch or offset > stream.offset:
            return result
        kept = [(o, data) for o, published, data in stream.entries if now - published <= ttl]
        missed = [data for o, data in kept if o > offset]
        first_kept = kept[0][0] if kept else stream.offset + 1
        if offset + 1 < first_kept and offset < stream.offset:
            return result  # the gap can no longer be filled
        result.recovered = True
        result.publications = missed
        return result

    # Presence and key-value entries: one node, so nothing expires behind our back. ----

    def presence_add(self, key: str, member: str, info: bytes, ttl: float = 30.0, only_if_absent: bool = False) -> bool:
        members = self.presence.setdefault(key, {})
        if only_if_absent and member in members:
            return False
        members[member] = info
        return True

    def presence_remove(self, key: str, member: str) -> bool:
        members = self.presence.get(key)
        if not members or member not in members:
            return False
        del members[member]
        if not members:
            del self.presence[key]
        return True

    def presence_list(self, key: str) -> dict[str, bytes]:
        return dict(self.presence.get(key, {}))

    def presence_count(self, key: str) -> int:
        return len(self.presence.get(key, ()))

    def kv_set(self, key: str, value: bytes, ttl: float | None = None, only_if_absent: bool = False) -> bool:
        now = self.clock()
        current = self.kv.get(key)
        if current is not None and current[1] is not None and current[1] <= now:
            current = None
        if only_if_absent and current is not None:
            return False
        self.kv[key] = (value, None if ttl is None else now + ttl)
        return True

    def kv_get(self, key: str) -> bytes | None:
        entry = self.kv.get(key)
        if entry is None:
            return None
        if entry[1] is not None and entry[1] <= self.clock():
            del self.kv[key]
            return None
        return entry[0]

    def kv_delete(self, key: str) -> bool:
        live = self.kv_get(key) is not None
        self.kv.pop(key, None)
        return live

    def stats(self) -> dict[str, Any]:
        return {
            "kind": "memory",
            "topics": len(self.handlers),
            "published": self.published,
            "history_streams": len(self.streams),
        }
