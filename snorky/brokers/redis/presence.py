"""Presence: the entries this node owns in Redis, written in order, refreshed by the
heartbeat, and reported when they expire or come back.

A node refreshes only the entries it owns, writes each entry with a token and orders
the writes to one entry; a removal leaves a tombstone of the token, so a write that
arrives late (Redis paused) cannot bring the entry back. Entries that nobody refreshes
(their node died, or was paused) expire after ``presence_ttl``; whoever removes an
expired entry reports it, once, and a paused node that finds its entries gone adds
them again and reports them restored.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from snorky.brokers.base import PresenceHandler
from snorky.brokers.redis.link import Link, now_ms
from snorky.brokers.redis.scripts import (
    PRESENCE_ADD,
    PRESENCE_COUNT,
    PRESENCE_LIST,
    PRESENCE_REFRESH,
    PRESENCE_REMOVE,
    SHAS,
)
from snorky.errors import BrokerUnavailable

__all__ = ["Ledger", "Presence"]

logger = logging.getLogger("snorky.brokers.redis")

T = TypeVar("T")


def _info(value: bytes) -> bytes:
    """A presence value without the token of the write that made it."""
    return value.partition(b"\x00")[2]


def _pairs(flat: list[bytes]) -> dict[str, bytes]:
    return {m.decode(): _info(v) for m, v in zip(flat[::2], flat[1::2], strict=True)}


class Ledger:
    """The presence entries this node owns, and the order of its writes to each.

    Each write of an entry has a token (this node's incarnation and a number). The
    node refreshes only what it owns; a removal names the token it removes and
    leaves a tombstone of it in Redis, so that an earlier write of the same token
    arriving late is refused. Writes to one entry run one after the other, and a
    removal also waits for a refresh in flight.
    """

    def __init__(self, incarnation: str) -> None:
        self.incarnation = incarnation
        self.owned: dict[str, dict[str, tuple[str, bytes, bool]]] = {}
        """Key -> member -> (token, info, whether it is a claim)."""
        self.refreshing: asyncio.Future[None] | None = None
        """Done when the refresh in flight is."""
        self.leaving: dict[tuple[str, str, str], None] = {}
        """(key, member, token) of removals not done yet (waiting their turn, or for Redis)."""
        self._tails: dict[tuple[str, str], asyncio.Future[Any]] = {}
        self._numbers = itertools.count(1)

    def own(self, key: str, member: str, info: bytes, claim: bool) -> str:
        token = f"{self.incarnation}.{next(self._numbers)}"
        self.owned.setdefault(key, {})[member] = (token, info, claim)
        return token

    def disown(self, key: str, member: str, token: str | None = None) -> str | None:
        """Stop owning ``member`` (only if its token is ``token``, when given); its token."""
        members = self.owned.get(key)
        entry = members.get(member) if members is not None else None
        if members is None or entry is None or (token is not None and entry[0] != token):
            return None
        del members[member]
        if not members:
            del self.owned[key]
        return entry[0]

    def owns(self, key: str, member: str, token: str) -> bool:
        entry = self.owned.get(key, {}).get(member)
        return entry is not None and entry[0] == token

    def after(
        self, key: str, member: str, run: Callable[[], Awaitable[T]], removal: bool, patience: float
    ) -> asyncio.Task[T]:
        """Run ``run()`` once the earlier writes of ``member`` (and, for a removal, the
        refresh in flight) are done; a task, which need not be awaited.

        A removal waits as long as it takes; a write waits at most ``patience`` seconds
        (an earlier removal may be waiting for Redis), then fails with
        :class:`~snorky.errors.BrokerUnavailable` (the refresh makes the entry later).
        """
        earlier = [self._tails.get((key, member)), self.refreshing if removal else None]
        waits = [future for future in earlier if future is not None and not future.done()]

        async def ordered() -> T:
            if waits:
                _, pending = await asyncio.wait(waits, timeout=None if removal else patience)
                if pending:
                    raise BrokerUnavailable()
            return await run()

        task = asyncio.ensure_future(ordered())
        slot = (key, member)
        self._tails[slot] = task

        def done(finished: asyncio.Task[T]) -> None:
            if self._tails.get(slot) is finished:
                del self._tails[slot]
            if not finished.cancelled():
                finished.exception()  # retrieved: the caller may have let it run alone

        task.add_done_callback(done)
        return task

    def cancel(self) -> None:
        """Cancel the writes still waiting (the broker is closing)."""
        for task in list(self._tails.values()):
            task.cancel()

    def snapshot(self) -> list[tuple[str, list[Any]]]:
        """(key, [member, token, info, ...]) for every owned entry."""
        return [
            (key, [item for member, (token, info, _) in members.items() for item in (member, token, info)])
            for key, members in self.owned.items()
        ]


class Presence:
    """Presence entries of this node's clients, in Redis; see the module's docstring."""

    def __init__(self, link: Link, presence_ttl: float) -> None:
        self.link = link
        self.presence_ttl = presence_ttl
        self.ledger = Ledger(link.incarnation)
        self.watched: dict[str, PresenceHandler] = {}
        self._restore_watchers: dict[str, PresenceHandler] = {}

    def keys(self, key: str) -> list[str]:
        """Entries, their expiries, and tombstones of removed writes."""
        prefix = self.link.prefix
        return [f"{prefix}:p:{key}", f"{prefix}:pe:{key}", f"{prefix}:pt:{key}"]

    def args(self) -> list[int]:
        """The arguments every presence script starts with: now, tombstones' and entries' keep (ms)."""
        return [now_ms(), int(max(20 * self.presence_ttl, 600) * 1000), int(self.presence_ttl * 2000)]

    # Refresh (the heartbeat's) ---------------------------------------------------------

    def queue_refresh(self, pipe: Any, now: float) -> list[tuple[str, list[Any]]]:
        """Add a refresh of every owned presence entry to ``pipe``; the (key, entries) refreshed."""
        refreshed = self.ledger.snapshot()
        expires = int((now + self.presence_ttl) * 1000)
        for key, flat in refreshed:
            args = [*self.args(), expires, *flat]
            pipe.evalsha(SHAS[PRESENCE_REFRESH], 3, *self.keys(key), *args)
        return refreshed

    async def run_refresh(self, pipe: Any) -> list[Any]:
        """Run a pipeline holding a refresh; removals wait until it is done."""
        refreshing = self.ledger.refreshing = asyncio.get_running_loop().create_future()
        try:
            return await self.link.run_scripts(pipe)
        finally:
            refreshing.set_result(None)
            if self.ledger.refreshing is refreshing:
                self.ledger.refreshing = None

    def refreshed(self, refreshed: list[tuple[str, list[Any]]], results: list[Any]) -> None:
        """Report what a refresh found: entries that expired, and this node's own entries that
        were removed meanwhile (written again, see :meth:`_restore`)."""
        for (key, flat), (gone, remaining, refused) in zip(refreshed, results[: len(refreshed)], strict=True):
            if gone:
                self._expired(key, _pairs(gone), _pairs(remaining))
            if refused:
                tokens = dict(zip(flat[::3], flat[1::3], strict=True))
                self._restore(key, {member.decode(): tokens[member.decode()] for member in refused})

    def queue_removals(self, pipe: Any) -> None:
        """Add the removal of every entry this node owns or is removing to ``pipe`` (closing)."""
        owned = [(k, m, t) for k, members in self.ledger.owned.items() for m, (t, _, _) in members.items()]
        for key, member, token in [*owned, *self.ledger.leaving]:
            args = [*self.args(), member, token]
            pipe.evalsha(SHAS[PRESENCE_REMOVE], 3, *self.keys(key), *args)

    # Entries ------------------------------------------------------------------------

    def add(self, key: str, member: str, info: bytes, only_if_absent: bool = False) -> asyncio.Task[bool]:
        """Own ``member`` of ``key`` from now on and write it; a task telling whether it was added.

        The entry is this node's until :meth:`remove`: if the write fails (Redis
        unreachable, :class:`~snorky.errors.BrokerUnavailable`), the next refresh makes it.
        """
        token = self.ledger.own(key, member, info, only_if_absent)
        return self.ledger.after(
            key,
            member,
            lambda: self._write_presence(key, member, token, info, only_if_absent),
            removal=False,
            patience=self.link.timeout,
        )

    async def _write_presence(self, key: str, member: str, token: str, info: bytes, claim: bool) -> bool:
        if not self.ledger.owns(key, member, token):
            return False  # removed before it was written
        expires = int((time.time() + self.presence_ttl) * 1000)
        args = [*self.args(), member, token, info, int(claim), expires]
        added = await self.link.eval(PRESENCE_ADD, self.keys(key), args)
        if added != 1:
            self.ledger.disown(key, member, token)
        return bool(added == 1)

    def remove(self, key: str, member: str) -> Awaitable[bool]:
        """Stop owning ``member`` of ``key`` and remove it, once Redis answers (through outages).

        The task's result: whether the departure is the caller's to report (``True``:
        this call removed the entry, or Redis had lost it in a restart), not
        (``False``: it was removed as expired, and reported then, or it was not this
        node's).
        """
        token = self.ledger.disown(key, member)
        if token is None:
            done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            done.set_result(False)
            return done
        # Leaving from now on: a close before the removal is done (waiting its turn, or for
        # Redis) does it itself.
        self.ledger.leaving[key, member, token] = None
        return self.ledger.after(
            key, member, lambda: self._remove_presence(key, member, token), removal=True, patience=self.link.timeout
        )

    async def _remove_presence(self, key: str, member: str, token: str) -> bool:
        while True:
            try:
                args = [*self.args(), member, token]
                removed = bool(await self.link.eval(PRESENCE_REMOVE, self.keys(key), args) >= 0)
            except BrokerUnavailable:
                await self.link.back.wait()  # the outage ends when Redis answers again
            else:
                del self.ledger.leaving[key, member, token]
                return removed

    async def members(self, key: str) -> dict[str, bytes]:
        """The live members of ``key``; expired ones are removed and reported."""
        gone, current = await self.link.eval(PRESENCE_LIST, self.keys(key), self.args())
        remaining = _pairs(current)
        if gone:
            self._expired(key, _pairs(gone), remaining)
        return remaining

    async def count(self, key: str) -> int:
        """How many live members ``key`` has; expired ones are removed and reported."""
        gone, count = await self.link.eval(PRESENCE_COUNT, self.keys(key), self.args())
        if gone:
            self._expired(key, _pairs(gone), await self.members(key))
        return int(count)

    def _expired(self, key: str, expired: dict[str, bytes], remaining: dict[str, bytes]) -> None:
        callback = self.watched.get(key)
        if callback is not None:
            try:
                callback(key, expired, remaining)
            except Exception:
                logger.exception("! presence expiry handler failed for %s", key)

    def _restore(self, key: str, refused: dict[str, str]) -> None:
        """Entries this node owns (``refused`` maps them to the tokens refreshed) were removed
        as expired (this node was paused) or are held by another: write them again with new
        tokens, and report the ones written."""
        restored: dict[str, bytes] = {}

        async def write(member: str, info: bytes, claim: bool) -> None:
            if await self.add(key, member, info, only_if_absent=claim):
                restored[member] = info
            elif claim:
                logger.warning("! %s of %s is held by another node now", member, key)

        async def restore_all() -> None:
            owned = self.ledger.owned.get(key, {})
            writes = [(m, owned[m][1], owned[m][2]) for m, token in refused.items() if owned.get(m, ("",))[0] == token]
            results = await asyncio.gather(*(write(*w) for w in writes), return_exceptions=True)
            for result in results:
                if isinstance(result, Exception) and not isinstance(result, BrokerUnavailable):
                    logger.error("! could not restore a presence entry of %s: %r", key, result)
            if restored:
                self.link.counters["presence_restored"] += len(restored)
                callback = self._restore_watchers.get(key)
                if callback is not None:
                    try:
                        callback(key, restored, {})
                    except Exception:
                        logger.exception("! presence restore handler failed for %s", key)

        self.link.background(restore_all())

    def watch(self, key: str, on_expired: PresenceHandler | None, on_restored: PresenceHandler | None) -> None:
        if on_expired is None:
            self.watched.pop(key, None)
            self._restore_watchers.pop(key, None)
            return
        self.watched[key] = on_expired
        if on_restored is not None:
            self._restore_watchers[key] = on_restored
