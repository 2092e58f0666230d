"""The progress demo's background jobs: a page starts one, every page watches it.

``snorky serve`` imports this module because it sits next to the demo's
``snorky.toml``. :class:`DemoJobs` runs pretend jobs on the server's event loop
and moves their tasks of the ``progress`` service forward, as a real job would
(from a worker, through :class:`~snorky.services.progress.ProgressBackend` on
the backend port).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from snorky.errors import RPCError
from snorky.services.base import Request, RPCService, rpc_command

__all__ = ["DemoJobs"]

STEPS = ["Reading the files", "Checking the rows", "Importing contacts", "Building the index", "Cleaning up"]


class DemoJobs(RPCService):
    """Commands ``start(name, steps)`` and ``listJobs()``; announces jobs on PubSub.

    Args:
        name: the service's name.
        progress: the name of the progress service to report to.
        pubsub: the name of the PubSub service to announce jobs on.
        channel: the PubSub channel of the announcements.
        interval: seconds between two steps of a job.
        keep: how many recent jobs ``listJobs`` returns.
    """

    def __init__(
        self,
        name: str = "jobs",
        progress: str = "progress",
        pubsub: str = "pubsub",
        channel: str = "jobs",
        interval: float = 0.15,
        keep: int = 8,
    ) -> None:
        super().__init__(name)
        self.progress_name = progress
        self.pubsub_name = pubsub
        self.channel = channel
        self.interval = interval
        self.keep = keep
        self.jobs: list[dict[str, Any]] = []
        """The recent jobs, oldest first: ``{"task", "name", "startedBy", "startedAt"}``."""
        self._running: set[asyncio.Task[None]] = set()

    def _service(self, name: str) -> Any:
        service = self.registry.registered_services.get(name) if self.registry else None
        if service is None:
            raise RPCError(f"The demo needs a service named {name}", "not_configured")
        return service

    @rpc_command
    def start(self, req: Request, name: Any = "Import", steps: Any = 20) -> dict[str, Any]:
        """Start a job of ``steps`` steps; reply with its announcement (``task`` is the task id)."""
        if not isinstance(name, str) or not 0 < len(name) <= 40:
            raise RPCError("Invalid params", "invalid_params")
        if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 200:
            raise RPCError("Invalid params", "invalid_params")
        task = self._service(self.progress_name).create_task(name, min=0, max=steps)
        job = {"task": task.id, "name": name, "startedBy": req.client.identity, "startedAt": time.time()}
        self.jobs = (self.jobs + [job])[-self.keep :]
        self._service(self.pubsub_name).do_publish(self.channel, job)
        running = asyncio.ensure_future(self._run(task, steps))
        self._running.add(running)
        running.add_done_callback(self._running.discard)
        return job

    @rpc_command
    def listJobs(self, req: Request) -> list[dict[str, Any]]:
        """The recent jobs, oldest first."""
        return self.jobs

    async def _run(self, task: Any, steps: int) -> None:
        for step in range(steps):
            await asyncio.sleep(self.interval)
            task.tick(label=f"{STEPS[step * len(STEPS) // steps]} ({step + 1}/{steps})")
        task.complete("Done")
