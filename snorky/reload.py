"""What changed between two configurations, for a reload (``SIGHUP``).

:meth:`SnorkyServer.reload <snorky.server.SnorkyServer.reload>` applies what can
change while clients stay connected and keeps the rest; this module compares the
configurations, names each option as the file does (``log_level``,
``frontend.max_message_size``, ``admin.password``) and reports the outcome.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from snorky.config import Config, ServiceSpec

__all__ = ["ReloadReport", "changed_options", "SECRET_OPTIONS"]

logger = logging.getLogger(__name__)

SECRET_OPTIONS = frozenset({"backend.api_key", "auth.secret", "admin.password"})
"""Options whose values are never logged (a change is logged as ``changed``)."""


@dataclass
class ReloadReport:
    """The outcome of a reload."""

    applied: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    """Option -> (old, new) value, for each option that changed and now applies."""
    skipped: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    """Option -> (old, new) value, for each option that changed but needs a restart;
    the server keeps the old value."""
    reasons: dict[str, str] = field(default_factory=dict)
    """Option -> why it was not reloaded, for each skipped option."""

    def log(self, source: str) -> None:
        """Log what was applied in one line, and each option not reloaded in a line of its own."""
        if not self.applied and not self.skipped:
            logger.info("= configuration reloaded from %s: nothing changed", source)
        if self.applied:
            logger.info(
                "= configuration reloaded from %s: %s",
                source,
                ", ".join(f"{name} ({_change(name, *values)})" for name, values in self.applied.items()),
            )
        for name, (old, new) in self.skipped.items():
            kept = "the old value" if name in SECRET_OPTIONS else repr(old)
            logger.warning(
                "! %s changed in %s (%s) but was not reloaded: %s; still using %s",
                name,
                source,
                _change(name, old, new),
                self.reasons[name],
                kept,
            )


def _change(name: str, old: Any, new: Any) -> str:
    if name in SECRET_OPTIONS:
        return "changed" if old and new else ("set" if new else "removed")
    if name == "namespaces":
        return _namespaces_change(old, new)
    return f"{old!r} -> {new!r}"


def _namespaces_change(old: Any, new: Any) -> str:
    """``default, chat changed; news added; old removed``: which namespaces differ."""
    before = {"(default)": old.default, **old.named}
    after = {"(default)": new.default, **new.named}
    parts = []
    changed = [name for name in before if name in after and before[name] != after[name]]
    added = [name for name in after if name not in before]
    removed = [name for name in before if name not in after]
    for names, verb in ((changed, "changed"), (added, "added"), (removed, "removed")):
        if names:
            parts.append(f"{', '.join(names)} {verb}")
    return "; ".join(parts)


def changed_options(old: Config, new: Config) -> dict[str, tuple[Any, Any]]:
    """Option name -> (old, new) for every option that differs, in the file's order.

    Names are dotted as in the file: ``log_level``, ``frontend.port``;
    the transport limits are in ``[frontend]`` (``frontend.max_message_size``); the
    service tables are compared whole (``services``, ``backend_services``).
    """
    before, after = _flatten(old), _flatten(new)
    return {
        name: (before.get(name), after.get(name)) for name in {**before, **after} if before.get(name) != after.get(name)
    }


def _flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in fields(config):
        if f.name == "source":
            continue
        value = getattr(config, f.name)
        if f.name == "namespaces" and not prefix:  # reloaded as a whole
            values["namespaces"] = value
        elif f.name == "transport" and prefix:  # the transport limits live in [frontend]
            values.update(_flatten(value, prefix))
        elif is_dataclass(value) and not isinstance(value, type) and not isinstance(value, ServiceSpec):
            values.update(_flatten(value, f"{prefix}{f.name}."))
        elif isinstance(value, list) and value and all(isinstance(item, ServiceSpec) for item in value):
            values[prefix + f.name] = [(spec.name, spec.class_path, spec.options) for spec in value]
        else:
            values[prefix + f.name] = value
    return values
