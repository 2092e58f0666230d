"""Snorky for Django: live query results, publishing and progress bars from a Django project.

::

    # settings.py
    INSTALLED_APPS = [..., "snorky.backend.django"]    # for runsnorky and the checks
    SNORKY_API_KEY = os.environ["SNORKY_API_KEY"]
    SNORKY_DEALERS = ["todos.dealers.TodosByList"]

    # models.py
    from snorky.backend.django import subscribable

    @subscribable
    class Todo(models.Model): ...

Every committed insert, update and delete of a ``Todo`` then reaches the
browsers subscribed to it; :mod:`snorky.backend.django.rest_framework` lets a
list view authorize those subscriptions. Nothing here reads the settings at
import time.

.. versionadded:: 0.1
.. versionchanged:: 0.2
   Deltas are published after commit, by a background sender, each
   transaction's together; on PostgreSQL they carry versions that keep each
   row's changes in commit order; Snorky's failures are logged and counted,
   never raised into ``save()``; publishing, progress helpers and their async
   twins; ``runsnorky``.
"""

from __future__ import annotations

from typing import Any

from snorky.backend.django.client import (
    JSONModule,
    Stats,
    aauthorize_subscription,
    apublish,
    apublish_deltas,
    authorize_subscription,
    get_async_backend,
    get_backend,
    publish,
    publish_deltas,
    stats,
)
from snorky.backend.django.datasync import (
    Subscribable,
    get_subscribable,
    queue_created,
    queue_deltas,
    rest_framework_jsonify,
    subscribable,
    track_changes,
)
from snorky.backend.django.progress import ProgressTask, acreate_task, create_task
from snorky.backend.django.sender import flush

__all__ = [
    "subscribable",
    "Subscribable",
    "get_subscribable",
    "queue_deltas",
    "queue_created",
    "track_changes",
    "authorize_subscription",
    "aauthorize_subscription",
    "publish_deltas",
    "apublish_deltas",
    "publish",
    "apublish",
    "ProgressTask",
    "create_task",
    "acreate_task",
    "get_backend",
    "get_async_backend",
    "stats",
    "Stats",
    "flush",
    "JSONModule",
    "rest_framework_jsonify",
]


def __getattr__(name: str) -> Any:
    """Snorky 0.1's module attributes, built from the settings on access (0.1 built them at import)."""
    if name == "snorky_backend":
        return get_backend()
    if name == "http_transport":
        return get_backend().transport
    if name == "SNORKY_DATASYNC_SERVICE":
        from snorky.backend.django import conf

        return conf.get("SNORKY_DATASYNC_SERVICE")
    if name == "SNORKY_JSON_ENCODER":
        from snorky.backend.django import conf

        return conf.json_encoder()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
