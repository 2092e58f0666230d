"""Progress bars of background jobs, drawn live in the pages that watch them.

A view creates the task and hands its id to the job and to the page; the job
reports through a :class:`ProgressTask`; the page subscribes to the id on the
Progress service::

    # views.py
    def start_import(request):
        task = create_task("Import", max=len(rows))
        import_rows.delay(task.id, rows)               # a Celery task, a thread...
        return JsonResponse({"task": task.id})

    # tasks.py
    @shared_task
    def import_rows(task_id, rows):
        with ProgressTask(task_id) as progress:        # completes, or fails with the error
            for number, row in enumerate(rows, 1):
                save(row)
                progress.update(number, label=f"Row {number}")

A progress bar is never worth failing a job for: by default a failure of
Snorky is counted in :data:`~snorky.backend.django.stats` and logged, and after
one that says Snorky is unreachable the task stops trying, so that a job does
not wait on a timeout per row. Pass ``fail_silently=False`` to get the errors.

.. versionadded:: 0.2
"""

from __future__ import annotations

import logging
import secrets
from types import TracebackType
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from snorky.backend import TransportError
from snorky.backend.django import client, conf
from snorky.errors import SnorkyError

__all__ = ["ProgressTask", "create_task", "acreate_task"]

logger = logging.getLogger(__name__)


class ProgressTask:
    """A handle on one task of Snorky's Progress service.

    Create tasks with :func:`create_task`; in the job, wrap the id the view
    passed in a new handle. As a context manager (``with`` or ``async with``)
    the task completes when the block ends and fails, with the exception's
    text, when it raises (the exception goes on).

    Args:
        task_id: the task's id.
        fail_silently: count and log failures instead of raising them.
    """

    def __init__(self, task_id: str, *, fail_silently: bool = True) -> None:
        self.id = task_id
        """The task's id, which pages subscribe to."""
        self.fail_silently = fail_silently
        self.disabled = False
        """Whether reporting stopped after Snorky could not be reached."""

    def __repr__(self) -> str:
        return f"<ProgressTask {self.id!r}{' (disabled)' if self.disabled else ''}>"

    # Calls -----------------------------------------------------------------------

    def _failed(self, command: str, error: Exception) -> None:
        if not self.fail_silently:
            raise error
        if isinstance(error, (TransportError, ImproperlyConfigured)):
            self.disabled = True
        client.report_failure(f"progress {command} of task {self.id!r}", error)

    def _call(self, command: str, **params: Any) -> Any:
        if self.disabled:
            return None
        try:
            result = client.get_backend().call(conf.get("SNORKY_PROGRESS_SERVICE"), command, **params)
        except (SnorkyError, ImproperlyConfigured) as error:
            self._failed(command, error)
            return None
        client.report_success()
        return result

    async def _acall(self, command: str, **params: Any) -> Any:
        if self.disabled:
            return None
        try:
            result = await client.get_async_backend().call(conf.get("SNORKY_PROGRESS_SERVICE"), command, **params)
        except (SnorkyError, ImproperlyConfigured) as error:
            self._failed(command, error)
            return None
        client.report_success()
        return result

    # Commands ---------------------------------------------------------------------

    def update(self, value: float, label: str | None = None) -> None:
        """Set the progress to ``value`` (Snorky keeps it between min and max)."""
        self._call("update", task=self.id, value=value, label=label)

    def tick(self, step: float = 1, label: str | None = None) -> None:
        """Move the progress forward by ``step``."""
        self._call("tick", task=self.id, step=step, label=label)

    def complete(self, label: str | None = None) -> None:
        """Finish the task successfully."""
        self._call("complete", task=self.id, label=label)

    def fail(self, error: str, label: str | None = None) -> None:
        """Finish the task with an error message shown to its watchers."""
        self._call("fail", task=self.id, error=error, label=label)

    async def aupdate(self, value: float, label: str | None = None) -> None:
        """The async twin of :meth:`update`."""
        await self._acall("update", task=self.id, value=value, label=label)

    async def atick(self, step: float = 1, label: str | None = None) -> None:
        """The async twin of :meth:`tick`."""
        await self._acall("tick", task=self.id, step=step, label=label)

    async def acomplete(self, label: str | None = None) -> None:
        """The async twin of :meth:`complete`."""
        await self._acall("complete", task=self.id, label=label)

    async def afail(self, error: str, label: str | None = None) -> None:
        """The async twin of :meth:`fail`."""
        await self._acall("fail", task=self.id, error=error, label=label)

    # Context managers ----------------------------------------------------------------

    def __enter__(self) -> ProgressTask:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if error is None:
            self.complete()
        else:
            self.fail(_describe(error))

    async def __aenter__(self) -> ProgressTask:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if error is None:
            await self.acomplete()
        else:
            await self.afail(_describe(error))


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


def _create_params(name: str, min: float, max: float, indeterminate: bool, task_id: str | None) -> dict[str, Any]:
    return {
        "name": name,
        "min": min,
        "max": max,
        "indeterminate": indeterminate,
        "task": task_id or secrets.token_urlsafe(12),
    }


def create_task(
    name: str = "",
    min: float = 0,
    max: float = 100,
    indeterminate: bool = False,
    *,
    task_id: str | None = None,
    fail_silently: bool = True,
) -> ProgressTask:
    """Create a task on the Progress service and return its handle.

    The id is chosen here (random unless ``task_id`` is given), so the job can
    run even when Snorky is down: its handle then reports nothing.

    Args:
        name: what the task is, shown to its watchers.
        min: the value at the start.
        max: the value when complete.
        indeterminate: the page shows activity rather than a fraction.
        task_id: the id to use.
        fail_silently: count and log failures instead of raising them.
    """
    params = _create_params(name, min, max, indeterminate, task_id)
    task = ProgressTask(params["task"], fail_silently=fail_silently)
    task._call("createTask", **params)
    return task


async def acreate_task(
    name: str = "",
    min: float = 0,
    max: float = 100,
    indeterminate: bool = False,
    *,
    task_id: str | None = None,
    fail_silently: bool = True,
) -> ProgressTask:
    """The async twin of :func:`create_task`."""
    params = _create_params(name, min, max, indeterminate, task_id)
    task = ProgressTask(params["task"], fail_silently=fail_silently)
    await task._acall("createTask", **params)
    return task
