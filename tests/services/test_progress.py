"""ProgressService and ProgressBackend, pure: tasks, notifications, late subscribers, errors."""

import unittest

from snorky import ServiceRegistry
from snorky.services.progress import ProgressBackend, ProgressService
from tests.utils import FakeTimeoutFactory, RecordingClient, call, call_error, expect_log


class ProgressTests(unittest.TestCase):
    def setUp(self):
        self.timers = FakeTimeoutFactory()
        self.progress = ProgressService("progress", keep_finished=30, timeout_factory=self.timers)
        self.backend = ProgressBackend("progress", self.progress)
        self.registry = ServiceRegistry([self.progress])
        self.page, self.app = RecordingClient("page"), RecordingClient("app")

    def test_subscriber_sees_init_update_done(self):
        """A subscriber receives init, update and done, in order."""
        call(self.progress, self.page, "subscribe", task="job")
        task = self.progress.create_task("Import", 0, 10, task_id="job")
        task.tick(3, "reading")
        task.complete("finished")
        kinds = [(n["type"], n.get("value"), n.get("label")) for n in self.page.notifications()]
        self.assertEqual(kinds, [("init", 0, None), ("update", 3, "reading"), ("done", 10, "finished")])
        self.assertEqual(self.page.notifications()[-1]["status"], "completed")

    def test_late_subscriber_gets_current_state(self):
        """Subscribing to a running task replies with and sends its current state at once."""
        task = self.progress.create_task("Export", 0, 4, task_id="t")
        task.update(2, "half")
        state = call(self.progress, self.page, "subscribe", task="t")
        self.assertEqual((state["value"], state["label"], state["status"]), (2, "half", "running"))
        self.assertEqual(self.page.notifications(), [state])

    def test_late_subscriber_to_finished_task(self):
        """A late subscriber to a failed task gets init and done with the error."""
        self.progress.create_task("Job", task_id="t").fail("disk full")
        call(self.progress, self.page, "subscribe", task="t")
        done = self.page.notifications()[-1]
        self.assertEqual((done["type"], done["status"], done["error"]), ("done", "failed", "disk full"))

    def test_finished_tasks_are_removed_later(self):
        """A finished task is kept for keep_finished seconds, then removed."""
        self.progress.create_task(task_id="t").complete()
        self.assertEqual([t.delay for t in self.timers.pending], [30])
        self.timers.fire_all()
        self.assertEqual(self.progress.tasks, {})

    def test_indeterminate_and_clamping(self):
        """Indeterminate tasks say so; values stay between min and max."""
        task = self.progress.create_task("Spin", 10, 20, indeterminate=True, task_id="t")
        task.update(99)
        state = call(self.progress, self.page, "subscribe", task="t")
        self.assertEqual((state["indeterminate"], state["value"]), (True, 20))
        task.update(-5)

    def test_backend_commands(self):
        """The backend creates, ticks, updates and completes tasks by id."""
        call(self.progress, self.page, "subscribe", task="b")
        self.assertEqual(call(self.backend, self.app, "createTask", name="Build", max=3, task="b"), "b")
        call(self.backend, self.app, "tick", task="b", label="compiling")
        call(self.backend, self.app, "update", task="b", value=2)
        call(self.backend, self.app, "complete", task="b")
        self.assertEqual([n["type"] for n in self.page.notifications()], ["init", "update", "update", "done"])

    def test_generated_ids_are_unique(self):
        """createTask without an id makes a fresh random one."""
        ids = {call(self.backend, self.app, "createTask", name="x") for _ in range(50)}
        self.assertEqual(len(ids), 50)

    def test_errors(self):
        """Unknown, duplicate and finished tasks and bad values answer their codes."""
        self.progress.create_task(task_id="t")
        cases = [
            ("update", {"task": "nope", "value": 1}, "no_such_task"),
            ("createTask", {"task": "t"}, "task_exists"),
            ("createTask", {"min": 5, "max": 5}, "invalid_params"),
            ("update", {"task": "t", "value": "x"}, "invalid_params"),
            ("tick", {"task": "t", "step": True}, "invalid_params"),
        ]
        for command, params, code in cases:
            with self.subTest(command=command, params=params), expect_log(self, "", "INFO"):
                self.assertEqual(call_error(self.backend, self.app, command, **params)[1], code)
        call(self.backend, self.app, "complete", task="t")
        with expect_log(self, "finished", "INFO"):
            self.assertEqual(call_error(self.backend, self.app, "tick", task="t")[1], "task_finished")

    def test_subscribe_errors(self):
        """Subscribing twice, to a non-string id, or unsubscribing when not subscribed are errors."""
        call(self.progress, self.page, "subscribe", task="t")
        with expect_log(self, "", "INFO"):
            self.assertEqual(call_error(self.progress, self.page, "subscribe", task="t")[1], "already_subscribed")
            self.assertEqual(call_error(self.progress, self.page, "subscribe", task=["t"])[1], "invalid_params")
            self.assertEqual(call_error(self.progress, self.app, "unsubscribe", task="t")[1], "not_subscribed")

    def test_can_subscribe_hook(self):
        """can_subscribe refusing answers Not authorized."""

        class Private(ProgressService):
            def can_subscribe(self, client, task_id):
                return task_id.startswith(f"{client.identity}-")

        private = Private("p", timeout_factory=self.timers)
        call(private, self.page, "subscribe", task="page-1")
        with expect_log(self, "Not authorized", "INFO"):
            self.assertEqual(call_error(private, self.page, "subscribe", task="other-1")[1], "forbidden")

    def test_unsubscribe_and_disconnect_leave_nothing(self):
        """Unsubscribe and disconnect leave no subscriber and no broker topic behind."""
        call(self.progress, self.page, "subscribe", task="a")
        call(self.progress, self.page, "subscribe", task="b")
        call(self.progress, self.page, "unsubscribe", task="a")
        self.progress.create_task(task_id="a").tick()
        self.assertEqual(self.page.notifications(), [])
        self.registry.client_disconnected(self.page)
        self.assertEqual((self.progress.subscribers, self.progress.tasks_by_client), ({}, {}))
        self.assertEqual(self.registry.broker.handlers, {})
