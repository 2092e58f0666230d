"""Log output for ``snorky serve``: text for people (the default), or one JSON object per line.

A JSON line has a stable set of fields::

    {"time": "2026-12-06T03:04:05.678Z", "level": "warning", "logger": "snorky",
     "node": "web-1-4242-a1b2c3", "event": "Invalid JSON from client ...",
     "client": "203.0.113.7", "identity": "alice"}

``client`` and ``identity`` are there when the line is about a connected peer
(a :class:`~snorky.client.Client` among the log call's arguments); ``exception``
holds the traceback of a line logged with one. Nothing else is added, so that
log pipelines can rely on the names.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

from snorky.client import Client

__all__ = ["JSONFormatter", "TEXT_FORMAT", "setup_logging", "formatter_for", "LOG_FORMATS"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""The text format: time, level, logger, message."""

LOG_FORMATS = ("text", "json")
"""The accepted values of ``log_format``."""


class JSONFormatter(logging.Formatter):
    """Formats each record as one JSON object on one line.

    Args:
        node: this node's id, written in every line (set later with :attr:`node`).
    """

    def __init__(self, node: str | None = None) -> None:
        super().__init__()
        self.node = node
        """The node id written in every line."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        line: dict[str, Any] = {
            "time": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "node": self.node,
            "event": record.getMessage(),
        }
        client = _client_of(record.args)
        if client is not None:
            line["client"] = client.remote_address
            if client.identity is not None:
                line["identity"] = client.identity
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=repr)


def _client_of(args: Any) -> Client | None:
    """The first connected peer among a log call's arguments, if any."""
    values = args.values() if isinstance(args, dict) else args or ()
    for value in values:
        if isinstance(value, Client):
            return value
    return None


def formatter_for(log_format: str, node: str | None = None) -> logging.Formatter:
    """The formatter of ``log_format`` (``"text"`` or ``"json"``)."""
    return JSONFormatter(node) if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def setup_logging(level: str, log_format: str = "text", node: str | None = None) -> logging.Handler:
    """Send log lines to standard error at ``level``, in ``log_format``; return the handler.

    Replaces any handler installed on the root logger before.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(formatter_for(log_format, node))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
