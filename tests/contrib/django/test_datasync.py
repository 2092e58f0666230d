"""@subscribable models on a real database (PostgreSQL, or SQLite) with a live Snorky: deltas, transactions, failures.

Saves run in this thread with real transactions; the recorder counts Django's
requests to the backend port on the wire; a Browser receives the deltas on a
real WebSocket after acquiring a subscription authorized through Snorky.
"""

import asyncio
import logging
import sys
from unittest import mock

from tests.contrib.django.harness import Browser, LiveEnvironment, database, flush_sender, free_port, setup_django

setup_django()

from asgiref.sync import sync_to_async  # noqa: E402
from django.db import connections, transaction  # noqa: E402
from django.test import TestCase, TransactionTestCase, override_settings  # noqa: E402

from snorky.backend.django import (  # noqa: E402
    Subscribable,
    authorize_subscription,
    queue_created,
    queue_deltas,
    stats,
    track_changes,
)
from tests.contrib.django.project.todos.models import Memo, Tag, Todo, TodoList, UrgentTodo  # noqa: E402

env = LiveEnvironment()


def setUpModule():
    env.start()


def tearDownModule():
    env.stop()


def todo_json(todo):
    return {"id": todo.pk, "list": todo.list_id, "title": todo.title, "done": todo.done}


class LiveTestCase(TransactionTestCase):
    """Each test starts with an empty database, no recorded request and fresh counters."""

    def setUp(self):
        self.inbox = TodoList.objects.create(name="Inbox")
        self.later = TodoList.objects.create(name="Later")
        self.browsers = []
        env.recorder.clear()
        stats.reset()

    def tearDown(self):
        for browser in self.browsers:
            browser.close()

    def browser(self, *queries, dealer="todos"):
        """A page subscribed to the todos matching each filter (after the earlier commits are published)."""
        flush_sender()
        token = authorize_subscription([{"dealer": dealer, "query": query} for query in queries])
        browser = Browser(env.snorky.websocket_url)
        self.browsers.append(browser)
        browser.subscribe(token)
        env.recorder.clear()
        return browser

    def published(self):
        """The deltas of each publishDeltas request made so far."""
        return [params["deltas"] for _, _, params in env.recorder.calls("publishDeltas")]


class DeltaTests(LiveTestCase):
    def test_insert(self):
        """Creating a row publishes its insert, serialized by DRF, to the pages subscribed to its list."""
        page = self.browser(["==", "list", self.inbox.pk])
        todo = Todo.objects.create(list=self.inbox, title="Buy milk")
        self.assertEqual(page.next_delta(), {"type": "insert", "model": "Todo", "data": todo_json(todo)})

    def test_update_carries_the_old_row(self):
        """An update carries the row as the database had it before, read in pre_save."""
        todo = Todo.objects.create(list=self.inbox, title="Buy milk")
        page = self.browser(["==", "list", self.inbox.pk])
        stale = Todo.objects.get(pk=todo.pk)
        Todo.objects.filter(pk=todo.pk).update(title="Buy oat milk")  # behind the instance's back
        stale.done = True
        stale.save()
        delta = page.next_delta()
        self.assertEqual(delta["oldData"]["title"], "Buy oat milk")
        self.assertEqual((delta["type"], delta["newData"]["done"]), ("update", True))

    def test_moving_a_row_between_lists(self):
        """Old and new rows let Snorky turn a move into a delete for one list and an insert for the other."""
        todo = Todo.objects.create(list=self.inbox, title="Call Bob")
        inbox_page = self.browser(["==", "list", self.inbox.pk])
        later_page = self.browser(["==", "list", self.later.pk])
        todo.list = self.later
        todo.save()
        self.assertEqual(inbox_page.next_delta()["type"], "delete")
        self.assertEqual(later_page.next_delta(), {"type": "insert", "model": "Todo", "data": todo_json(todo)})

    def test_delete(self):
        """Deleting a row publishes its last data, primary key included."""
        todo = Todo.objects.create(list=self.inbox, title="Old")
        page = self.browser(["==", "list", self.inbox.pk])
        data = todo_json(todo)
        todo.delete()
        self.assertEqual(page.next_delta(), {"type": "delete", "model": "Todo", "data": data})

    def test_save_without_change_publishes_nothing(self):
        """A save that changes nothing a subscriber sees is not published."""
        todo = Todo.objects.create(list=self.inbox, title="Same")
        env.recorder.clear()
        todo.save()
        self.assertEqual(self.published(), [])

    def test_update_fields_publish_the_stored_row(self):
        """save(update_fields=...) publishes the row as stored, not unsaved changes in memory."""
        todo = Todo.objects.create(list=self.inbox, title="Stored")
        page = self.browser(["==", "list", self.inbox.pk])
        todo.title = "Not saved"
        todo.done = True
        todo.save(update_fields=["done"])
        delta = page.next_delta()
        self.assertEqual((delta["newData"]["title"], delta["newData"]["done"]), ("Stored", True))

    def test_jsonify_and_delta_name(self):
        """A model's own jsonify() gives the data, and @subscribable(name=...) the delta's model."""
        page = self.browser(None, dealer="notes")
        memo = Memo.objects.create(text="hello")
        self.assertEqual(
            page.next_delta(), {"type": "insert", "model": "Note", "data": {"id": memo.pk, "text": "HELLO"}}
        )
        self.assertEqual(memo.jsonify(), {"id": memo.pk, "text": "HELLO"})

    def test_serializer_by_dotted_path(self):
        """@subscribable(serializer="module.Serializer") serializes with it."""
        page = self.browser(None, dealer="tags")
        tag = Tag.objects.create(label="home")
        self.assertEqual(page.next_delta()["data"], {"id": tag.pk, "label": "home"})
        self.assertEqual(tag.jsonify(), {"id": tag.pk, "label": "home"})

    def test_proxy_publishes_as_its_model(self):
        """A proxy model's saves publish as the model it proxies."""
        page = self.browser(["==", "list", self.inbox.pk])
        urgent = UrgentTodo.objects.create(list=self.inbox, title="Now")
        self.assertEqual(page.next_delta(), {"type": "insert", "model": "Todo", "data": todo_json(urgent)})

    def test_without_rest_framework(self):
        """Without Django REST framework (and no jsonify()), a row is its concrete fields by name."""
        todo = Todo.objects.create(list=self.inbox, title="plain")
        with mock.patch.dict(sys.modules, {"rest_framework": None}):
            self.assertEqual(Subscribable(Todo, "Todo").to_json(todo), todo_json(todo))

    def test_other_models_and_raw_saves_publish_nothing(self):
        """Models without @subscribable, and raw saves (fixture loading), publish nothing."""
        TodoList.objects.create(name="Quiet")
        Todo(list=self.inbox, title="Fixture").save_base(raw=True)
        self.assertEqual(self.published(), [])


class TransactionTests(LiveTestCase):
    def test_autocommit_publishes_each_save_at_once(self):
        """Outside a transaction each save is published before save() returns, one request each."""
        Todo.objects.create(list=self.inbox, title="a")
        self.assertEqual(len(self.published()), 1)
        Todo.objects.create(list=self.inbox, title="b")
        self.assertEqual(len(self.published()), 2)

    @override_settings(SNORKY_QUEUE_SIZE=0)
    def test_queue_size_zero_publishes_in_the_committing_thread(self):
        """With SNORKY_QUEUE_SIZE = 0 there is no background sender: the commit returns once Snorky answered."""
        with transaction.atomic():
            Todo.objects.create(list=self.inbox, title="inline")
        with env.recorder.changed:  # no flush: the request is on the wire already
            self.assertEqual(len(env.recorder.requests), 1)
        self.assertEqual((stats.requests, stats.deltas), (1, 1))

    def test_published_after_commit_in_one_request(self):
        """Twenty saves in one atomic block: nothing until it commits, then ONE request with every delta."""
        page = self.browser(["==", "list", self.inbox.pk])
        with transaction.atomic():
            todos = [Todo.objects.create(list=self.inbox, title=f"todo {n}") for n in range(20)]
            todos[0].done = True
            todos[0].save()
            self.assertEqual(self.published(), [])
        [deltas] = self.published()
        self.assertEqual([d["type"] for d in deltas], ["insert"] * 20 + ["update"])
        received = [page.next_delta() for _ in range(21)]
        self.assertEqual(
            [d.get("data", d.get("newData"))["title"] for d in received], [t.title for t in todos] + ["todo 0"]
        )

    def test_rollback_publishes_nothing(self):
        """A rolled-back transaction sends nothing: the page's next delta is a later committed one."""
        page = self.browser(["==", "list", self.inbox.pk])
        with self.assertRaises(KeyError), transaction.atomic():
            Todo.objects.create(list=self.inbox, title="Rolled back")
            raise KeyError
        self.assertEqual(self.published(), [])
        Todo.objects.create(list=self.inbox, title="Committed")
        self.assertEqual(page.next_delta()["data"]["title"], "Committed")
        self.assertFalse(Todo.objects.filter(title="Rolled back").exists())

    def test_rolled_back_savepoint_is_dropped(self):
        """Deltas of a rolled-back savepoint are dropped; the rest go in one request, in order."""
        with transaction.atomic():
            Todo.objects.create(list=self.inbox, title="before")
            with self.assertRaises(KeyError), transaction.atomic():
                Todo.objects.create(list=self.inbox, title="inside")
                raise KeyError
            Todo.objects.create(list=self.inbox, title="after")
        self.assertEqual([[d["data"]["title"] for d in ds] for ds in self.published()], [["before", "after"]])

    def test_savepoint_rolled_back_last(self):
        """A savepoint rolled back after the transaction's last save still drops its deltas."""
        with transaction.atomic():
            Todo.objects.create(list=self.inbox, title="kept")
            try:
                with transaction.atomic():
                    Todo.objects.create(list=self.inbox, title="first dropped")
                    with transaction.atomic():
                        Todo.objects.create(list=self.inbox, title="second dropped")
                    raise KeyError
            except KeyError:
                pass
        self.assertEqual([[d["data"]["title"] for d in ds] for ds in self.published()], [["kept"]])

    def test_only_savepoints_rolled_back(self):
        """A transaction whose every save was in a rolled-back savepoint sends nothing."""
        with transaction.atomic():
            with self.assertRaises(KeyError), transaction.atomic():
                Todo.objects.create(list=self.inbox, title="dropped")
                raise KeyError
        self.assertEqual(self.published(), [])

    def test_released_savepoints_and_get_or_create(self):
        """Released savepoints (and get_or_create's own) keep their deltas, in order, in one request."""
        with transaction.atomic():
            Todo.objects.create(list=self.inbox, title="one")
            with transaction.atomic():
                Todo.objects.create(list=self.inbox, title="two")
            Todo.objects.get_or_create(list=self.inbox, title="three")
            Todo.objects.create(list=self.inbox, title="four")
        self.assertEqual(
            [[d["data"]["title"] for d in ds] for ds in self.published()], [["one", "two", "three", "four"]]
        )

    def test_cascade_delete_is_one_request(self):
        """Deleting a list deletes its todos through Django's collector, published in one request."""
        for title in "abc":
            Todo.objects.create(list=self.inbox, title=title)
        env.recorder.clear()
        self.inbox.delete()
        [deltas] = self.published()
        self.assertEqual(sorted((d["type"], d["data"]["title"]) for d in deltas), [("delete", t) for t in "abc"])

    def test_queryset_delete_publishes(self):
        """QuerySet.delete() sends the model's signals: each row's deletion is published."""
        for title in "ab":
            Todo.objects.create(list=self.inbox, title=title)
        env.recorder.clear()
        Todo.objects.filter(list=self.inbox).delete()
        self.assertEqual([d["type"] for ds in self.published() for d in ds], ["delete", "delete"])

    def test_next_transaction_has_its_own_batch(self):
        """Two transactions, each published before the next commits, make two requests."""
        for title in ("first", "second"):
            with transaction.atomic():
                Todo.objects.create(list=self.inbox, title=title)
            flush_sender()
        self.assertEqual([[d["data"]["title"] for d in ds] for ds in self.published()], [["first"], ["second"]])

    @override_settings(SNORKY_BATCH_SIZE=3)
    def test_huge_transactions_are_split(self):
        """A batch larger than SNORKY_BATCH_SIZE is sent in several requests, in order."""
        with transaction.atomic():
            for n in range(7):
                Todo.objects.create(list=self.inbox, title=str(n))
        self.assertEqual(
            [[d["data"]["title"] for d in ds] for ds in self.published()], [["0", "1", "2"], ["3", "4", "5"], ["6"]]
        )

    def test_manual_transactions_drop_and_count(self):
        """With autocommit off and no atomic block there is no commit to wait for: counted, not raised."""
        connection = transaction.get_connection()
        connection.set_autocommit(False)
        try:
            with self.assertLogs("snorky.backend.django", "ERROR") as logs:
                Todo.objects.create(list=self.inbox, title="manual")
            connection.commit()
        finally:
            connection.set_autocommit(True)
        self.assertEqual(self.published(), [])
        self.assertEqual((stats.failures, stats.lost_deltas), (1, 1))
        self.assertIn("autocommit is off", logs.output[0])

    def test_async_save(self):
        """asave() publishes like save()."""
        page = self.browser(["==", "list", self.inbox.pk])

        async def create():
            todo = Todo(list=self.inbox, title="async")
            await todo.asave()
            # asave() ran in asgiref's thread: close its connection (PostgreSQL drops no database in use).
            await sync_to_async(connections.close_all)()
            return todo

        todo = asyncio.run(create())
        self.assertEqual(page.next_delta()["data"], todo_json(todo))


class BulkOperationTests(LiveTestCase):
    def test_queue_created_after_bulk_create(self):
        """bulk_create() skips signals; queue_created() publishes its rows on commit, in one request."""
        page = self.browser(["==", "list", self.inbox.pk])
        with transaction.atomic():
            todos = Todo.objects.bulk_create(Todo(list=self.inbox, title=t) for t in "xyz")
            queue_created(todos)
            self.assertEqual(self.published(), [])
        self.assertEqual(len(self.published()), 1)
        self.assertEqual([page.next_delta()["data"]["title"] for _ in range(3)], ["x", "y", "z"])

    def test_track_changes_of_update(self):
        """track_changes() around QuerySet.update() publishes an update per changed row."""
        first = Todo.objects.create(list=self.inbox, title="a")
        Todo.objects.create(list=self.inbox, title="b", done=True)
        page = self.browser(["==", "done", True])
        todos = Todo.objects.filter(list=self.inbox)
        with transaction.atomic(), track_changes(todos):
            todos.update(done=True)
        [deltas] = self.published()
        self.assertEqual([(d["type"], d["oldData"]["title"]) for d in deltas], [("update", "a")])
        # The row came into the page's filter: an insert for it.
        self.assertEqual(
            page.next_delta(), {"type": "insert", "model": "Todo", "data": todo_json(Todo.objects.get(pk=first.pk))}
        )

    def test_track_changes_sees_rows_leave_appear_and_go(self):
        """Rows moved out of the queryset are updates, new rows inserts, vanished rows deletions."""
        moved = Todo.objects.create(list=self.inbox, title="moved")
        gone = Todo.objects.create(list=self.inbox, title="gone")
        todos = Todo.objects.filter(list=self.inbox)
        env.recorder.clear()
        with track_changes(todos):
            Todo.objects.filter(pk=moved.pk).update(list=self.later)
            Todo.objects.filter(pk=gone.pk)._raw_delete(Todo.objects.db)
            Todo.objects.bulk_create([Todo(list=self.inbox, title="new")])
        deltas = [d for ds in self.published() for d in ds]
        summary = sorted((d["type"], d.get("data", d.get("newData"))["title"]) for d in deltas)
        self.assertEqual(summary, [("delete", "gone"), ("insert", "new"), ("update", "moved")])

    def test_track_changes_publishes_nothing_when_the_block_raises(self):
        """If the tracked block raises, nothing is published."""
        Todo.objects.create(list=self.inbox, title="a")
        env.recorder.clear()
        with self.assertRaises(KeyError), track_changes(Todo.objects.all()):
            Todo.objects.update(done=True)
            raise KeyError
        self.assertEqual(self.published(), [])

    def test_queue_deltas_outside_a_transaction(self):
        """queue_deltas() outside a transaction publishes at once (its caller's dict is left alone)."""
        delta = {"type": "insert", "model": "Todo", "data": {"id": 1, "list": 1}}
        queue_deltas([delta])
        [[published]] = self.published()
        self.assertEqual({name: published[name] for name in delta}, delta)
        self.assertEqual(list(delta), ["type", "model", "data"])

    def test_queue_created_needs_saved_rows(self):
        """queue_created() refuses rows without a primary key."""
        with self.assertRaises(ValueError):
            queue_created([Todo(list=self.inbox, title="unsaved")])


class FailureTests(LiveTestCase):
    def test_snorky_down_never_breaks_a_save(self):
        """With Snorky unreachable saves succeed; the failure is logged once, counted, and recovery logged."""
        with override_settings(SNORKY_BACKEND_URL=f"http://127.0.0.1:{free_port()}/backend"):
            with self.assertLogs("snorky.backend.django", "DEBUG") as logs:
                first = Todo.objects.create(list=self.inbox, title="while down")
                flush_sender()
                with transaction.atomic():
                    Todo.objects.create(list=self.inbox, title="also while down")
                    first.delete()
                flush_sender()
        self.assertEqual(Todo.objects.get().title, "also while down")
        errors = [r for r in logs.records if r.levelno >= logging.ERROR]
        self.assertEqual(len(errors), 1, logs.output)
        self.assertIn("Snorky backend http://127.0.0.1", errors[0].getMessage())
        self.assertEqual((stats.failures, stats.lost_deltas, stats.requests), (2, 3, 0))
        with self.assertLogs("snorky.backend.django", "WARNING") as logs:
            Todo.objects.create(list=self.inbox, title="back")
            flush_sender()
        self.assertIn("answers again, after 2 failed call(s)", logs.output[0])
        self.assertEqual((stats.requests, stats.deltas), (1, 1))

    def test_missing_api_key_never_breaks_a_save(self):
        """Without an API key saves succeed and the failure is counted."""
        with override_settings(SNORKY_API_KEY=None), self.assertLogs("snorky.backend.django", "ERROR"):
            Todo.objects.create(list=self.inbox, title="no key")
            flush_sender()
        self.assertEqual((stats.failures, stats.last_error[:20]), (1, "ImproperlyConfigured"))

    def test_a_serializer_bug_never_breaks_a_save(self):
        """A jsonify() that raises is logged with its traceback and counted; the row is saved."""
        with self.assertLogs("snorky.backend.django", "ERROR") as logs:
            Memo.objects.create(text="boom")  # jsonify() raises
        self.assertTrue(Memo.objects.exists())
        self.assertIsNotNone(logs.records[0].exc_info)
        self.assertEqual(stats.failures, 1)


class CaptureOnCommitTests(TestCase):
    """Users' own TestCase tests see the publication with captureOnCommitCallbacks()."""

    def setUp(self):
        env.recorder.clear()

    def test_capture_runs_the_publication(self):
        """Saves before the capture block do not hide those inside it."""
        inbox = TodoList.objects.create(name="Inbox")
        Todo.objects.create(list=inbox, title="before")
        with self.captureOnCommitCallbacks(execute=True):
            Todo.objects.create(list=inbox, title="inside")
        calls = env.recorder.calls("publishDeltas")
        self.assertEqual([[d["data"]["title"] for d in params["deltas"]] for _, _, params in calls], [["inside"]])


class DatabaseTests(TestCase):
    def test_engine(self):
        """The tests run on the database the harness chose (PostgreSQL unless SNORKY_TEST_DJANGO_DATABASE=sqlite)."""
        self.assertEqual(connections["default"].vendor, database())
