"""Presence helpers shared by services: who is in a channel, by identity."""

from __future__ import annotations

from typing import Any

import orjson

from snorky.hashable import make_hashable

__all__ = ["count_presence", "identities_of"]


def count_presence(entries: dict[str, bytes]) -> list[dict[str, Any]]:
    """Broker presence entries (info ``{"identity", "info"}``) -> ``[{"identity", "info", "connections"}]``.

    One item per identity, with how many entries (connections) it has; anonymous
    entries are left out, as in :func:`identities_of`.
    """
    members: dict[Any, dict[str, Any]] = {}
    for _member, info in sorted(entries.items()):
        entry = orjson.loads(info)
        if entry["identity"] is None:
            continue
        counted = members.setdefault(make_hashable(entry["identity"]), {**entry, "connections": 0})
        counted["connections"] += 1
    return list(members.values())


def identities_of(clients: Any) -> list[dict[str, Any]]:
    """Group clients by identity: ``[{"identity", "info", "connections"}]`` (anonymous ones left out)."""
    grouped: dict[Any, dict[str, Any]] = {}
    for client in clients:
        identity = getattr(client, "identity", None)
        if identity is None:
            continue
        entry = grouped.setdefault(identity, {"identity": identity, "info": None, "connections": 0})
        entry["connections"] += 1
        if entry["info"] is None:
            entry["info"] = getattr(client, "info", None)
    return list(grouped.values())
