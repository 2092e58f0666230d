"""ProgressService: progress bars of background jobs, live in every subscribed page.

Server code (or an application server, through :class:`ProgressBackend`) creates a
task, moves it forward with a label, and completes or fails it. Clients
``subscribe`` to a task and receive::

    {"type": "init", "task", "name", "min", "max", "value", "label", "indeterminate", "status", "error"}
    {"type": "update", "task", "value", "label"}
    {"type": "done", "task", "status": "completed" | "failed", "value", "label", "error"}

A client that subscribes late gets ``init`` with the current state at once (and
``done`` if the task already finished). Finished tasks are kept for
``keep_finished`` seconds so that late pages still see how they ended.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from snorky.brokers.base import then
from snorky.channels import ChannelMap
from snorky.errors import RPCError
from snorky.protocol import decode, encode
from snorky.services.rpc import Request, RPCService, rpc_command
from snorky.timeout import TornadoTimeoutFactory

__all__ = ["ProgressService", "ProgressBackend", "ProgressTask"]

logger = logging.getLogger(__name__)

RUNNING_TASK_TTL = 24 * 3600.0
"""Seconds a running task's shared state lasts without news (a crashed job's task disappears)."""


class ProgressTask:
    """One task's state, and the handle server code uses to move it forward."""

    def __init__(
        self, service: ProgressService, task_id: str, name: str, minimum: float, maximum: float, indeterminate: bool
    ) -> None:
        self.service = service
        self.id = task_id
        self.name = name
        self.min = minimum
        self.max = maximum
        self.indeterminate = indeterminate
        self.value = minimum
        self.label: str | None = None
        self.status = "running"
        """``running``, ``completed`` or ``failed``."""
        self.error: str | None = None

    @classmethod
    def from_state(cls, service: ProgressService, state: dict[str, Any]) -> ProgressTask:
        """A handle on a task another node created, from its shared state."""
        task = cls(service, state["task"], state["name"], state["min"], state["max"], state["indeterminate"])
        task.value, task.label = state["value"], state["label"]
        task.status, task.error = state["status"], state["error"]
        return task

    def state(self) -> dict[str, Any]:
        """The task as an ``init`` notification."""
        return {
            "type": "init",
            "task": self.id,
            "name": self.name,
            "min": self.min,
            "max": self.max,
            "value": self.value,
            "label": self.label,
            "indeterminate": self.indeterminate,
            "status": self.status,
            "error": self.error,
        }

    def _check_running(self) -> None:
        if self.status != "running":
            raise RPCError("Task already finished", "task_finished")

    def update(self, value: float, label: str | None = None) -> None:
        """Set the progress to ``value`` (kept between min and max), with an optional label."""
        self._check_running()
        self.value = min(max(value, self.min), self.max)
        if label is not None:
            self.label = label
        self.service._notify(self, {"type": "update", "task": self.id, "value": self.value, "label": self.label})

    def tick(self, step: float = 1, label: str | None = None) -> None:
        """Move the progress forward by ``step``."""
        self.update(self.value + step, label)

    def complete(self, label: str | None = None) -> None:
        """Finish the task successfully (the value goes to max)."""
        self._check_running()
        self.value = self.max
        self._finish("completed", label, None)

    def fail(self, error: str, label: str | None = None) -> None:
        """Finish the task with an error message shown to its subscribers."""
        self._check_running()
        self._finish("failed", label, error)

    def _finish(self, status: str, label: str | None, error: str | None) -> None:
        self.status = status
        self.error = error
        if label is not None:
            self.label = label
        self.service._notify(self, self.done_notification())
        self.service._finished(self)

    def done_notification(self) -> dict[str, Any]:
        """The task's ``done`` notification."""
        return {
            "type": "done",
            "task": self.id,
            "status": self.status,
            "value": self.value,
            "label": self.label,
            "error": self.error,
        }


class ProgressService(RPCService):
    """Tasks with progress that clients watch (commands: ``subscribe``, ``unsubscribe``).

    Args:
        name: the service name.
        keep_finished: seconds a finished task stays visible to late subscribers.
        timeout_factory: schedules the removal of finished tasks (default: the IOLoop).
    """

    def __init__(self, name: str = "progress", keep_finished: float = 60.0, timeout_factory: Any = None) -> None:
        super().__init__(name)
        self.keep_finished = keep_finished
        self.timeout_factory = timeout_factory or TornadoTimeoutFactory
        self.tasks: dict[str, ProgressTask] = {}
        """Task id -> task, running or recently finished."""
        self.map = self.channel_map = ChannelMap(self, field="task", gaps=False)
        """The tasks with local watchers."""
        self.subscribers = self.map.clients
        """Task id -> local clients watching it."""
        self.tasks_by_client = self.map.channels
        """Client -> task ids it watches."""
        self._removals: dict[str, Any] = {}

    # Python API ------------------------------------------------------------------

    def create_task(
        self,
        name: str = "",
        min: float = 0,
        max: float = 100,
        indeterminate: bool = False,
        task_id: str | None = None,
    ) -> ProgressTask:
        """Create a task and tell its subscribers (``init``); return its handle.

        Raises:
            RPCError: ``task_exists`` if ``task_id`` is taken; ``invalid_params``
                if ``min`` is not below ``max``.
        """
        if task_id is None:
            task_id = secrets.token_urlsafe(12)
        if task_id in self.tasks:
            raise RPCError("Task already exists", "task_exists")
        if not isinstance(min, (int, float)) or not isinstance(max, (int, float)) or not min < max:
            raise RPCError("Invalid params", "invalid_params")
        task = ProgressTask(self, task_id, name, min, max, bool(indeterminate))
        self.tasks[task_id] = task
        self._notify(task, task.state())
        return task

    def get_task(self, task_id: str) -> Any:
        """The task with that id, created on this node or another.

        Returns:
            The :class:`ProgressTask`, or (with a networked broker, for a task of
            another node) an awaitable of it.

        Raises:
            RPCError: ``no_such_task``.
        """
        if not isinstance(task_id, str):
            raise RPCError("No such task", "no_such_task")
        task = self.tasks.get(task_id)
        if task is not None:
            return task
        return then(self.broker.kv_get(self.state_key(task_id)), self._from_shared)

    def _from_shared(self, data: bytes | None) -> ProgressTask:
        if data is None:
            raise RPCError("No such task", "no_such_task")
        return ProgressTask.from_state(self, decode(data))

    def can_subscribe(self, client: Any, task_id: Any) -> bool:
        """Whether ``client`` may watch ``task_id`` (default: yes)."""
        return True

    # Delivery ---------------------------------------------------------------------

    def state_key(self, task_id: str) -> str:
        """The broker key of a task's shared state."""
        return f"{self.name}:task:{task_id}"

    def _notify(self, task: ProgressTask, body: dict[str, Any]) -> None:
        """Save the task's state for every node, then tell its subscribers."""
        ttl = self.keep_finished if task.status != "running" else RUNNING_TASK_TTL
        self.in_background(self.broker.kv_set(self.state_key(task.id), encode(task.state()), ttl))
        self.broker.publish(self.map.topic(task.id), self.outbound(body))

    def _finished(self, task: ProgressTask) -> None:
        self._removals[task.id] = self.timeout_factory.call_later(self.keep_finished, self._remove, task.id)

    def _remove(self, task_id: str) -> None:
        self._removals.pop(task_id, None)
        self.tasks.pop(task_id, None)

    # Commands ---------------------------------------------------------------------

    @rpc_command
    def subscribe(self, req: Request, task: Any) -> Any:
        """Watch ``task``; reply with its state (``null`` if it does not exist yet).

        A task that exists also sends its ``init`` (and ``done``) notification now.
        """
        if not isinstance(task, str):
            raise RPCError("Invalid params", "invalid_params")
        client = req.client
        if self.map.has(client, task):
            raise RPCError("Already subscribed", "already_subscribed")
        if not self.can_subscribe(client, task):
            raise RPCError("Not authorized", "forbidden")
        self.map.add(client, task)
        current = self.tasks.get(task)
        if current is not None:
            return self._late(client, current)

        def shared(data: bytes | None) -> dict[str, Any] | None:
            return None if data is None else self._late(client, ProgressTask.from_state(self, decode(data)))

        return then(self.broker.kv_get(self.state_key(task)), shared)

    def _late(self, client: Any, current: ProgressTask) -> dict[str, Any]:
        """Bring a (late) subscriber up to date: ``init``, and ``done`` if it finished."""
        self.send_message_to(client, current.state())
        if current.status != "running":
            self.send_message_to(client, current.done_notification())
        return current.state()

    @rpc_command
    def unsubscribe(self, req: Request, task: Any) -> None:
        """Stop watching ``task``."""
        if not self.map.has(req.client, task):
            raise RPCError("Not subscribed", "not_subscribed")
        self.map.remove(req.client, task)

    def client_disconnected(self, client: Any) -> None:
        for task in self.map.channels_of(client):
            self.map.remove(client, task)


class ProgressBackend(RPCService):
    """Backend commands that drive a :class:`ProgressService` from an application server.

    Commands: ``createTask(name, min, max, indeterminate, task)`` → task id,
    ``update(task, value, label)``, ``tick(task, step, label)``,
    ``complete(task, label)``, ``fail(task, error, label)``.
    """

    def __init__(self, name: str, frontend: ProgressService) -> None:
        super().__init__(name)
        self.frontend = frontend

    @rpc_command
    def createTask(
        self,
        req: Request,
        name: str = "",
        min: float = 0,
        max: float = 100,
        indeterminate: bool = False,
        task: str | None = None,
    ) -> Any:
        """Create a task; reply with its id (an id given must be free on every node)."""
        if task is None:
            return self.frontend.create_task(name, min, max, indeterminate).id
        if not isinstance(task, str):
            raise RPCError("Invalid params", "invalid_params")
        if task in self.frontend.tasks:
            raise RPCError("Task already exists", "task_exists")

        def claimed(free: bool) -> str:
            if not free:
                raise RPCError("Task already exists", "task_exists")
            return self.frontend.create_task(name, min, max, indeterminate, task).id

        key = self.frontend.state_key(task)
        return then(self.frontend.broker.kv_set(key, b"{}", RUNNING_TASK_TTL, only_if_absent=True), claimed)

    @rpc_command
    def update(self, req: Request, task: Any, value: float, label: str | None = None) -> Any:
        """Set a task's value."""
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise RPCError("Invalid params", "invalid_params")
        return then(self.frontend.get_task(task), lambda found: found.update(value, label))

    @rpc_command
    def tick(self, req: Request, task: Any, step: float = 1, label: str | None = None) -> Any:
        """Move a task forward by ``step``."""
        if not isinstance(step, (int, float)) or isinstance(step, bool):
            raise RPCError("Invalid params", "invalid_params")
        return then(self.frontend.get_task(task), lambda found: found.tick(step, label))

    @rpc_command
    def complete(self, req: Request, task: Any, label: str | None = None) -> Any:
        """Finish a task successfully."""
        return then(self.frontend.get_task(task), lambda found: found.complete(label))

    @rpc_command
    def fail(self, req: Request, task: Any, error: str = "", label: str | None = None) -> Any:
        """Finish a task with an error."""
        return then(self.frontend.get_task(task), lambda found: found.fail(error, label))
