"""Commit order and faults on PostgreSQL, with a real ``snorky serve`` and real WebSocket pages.

Concurrent transactions on the same rows, from threads and from a second
process, are checked delta by delta: each delta a page receives must apply to
the row the page shows, each row's values must only grow, the page must end
equal to the table, and every committed delta is either received or counted by
Snorky as stale. Then Snorky is frozen (SIGSTOP) or stopped during commits made
through Django's own HTTP server: requests do not wait for it, and the counters
say what happened to each delta.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import unittest

from tests.contrib.django.commit_worker import add_one
from tests.contrib.django.harness import (
    API_KEY,
    ROOT,
    TIMEOUT,
    Browser,
    DjangoServer,
    LiveEnvironment,
    SnorkyProcess,
    database,
    flush_sender,
    setup_django,
)

setup_django()

import requests  # noqa: E402
from django.db import connection, connections  # noqa: E402
from django.test import TransactionTestCase, override_settings  # noqa: E402

from snorky.backend import SnorkyBackend, SnorkyHTTPTransport  # noqa: E402
from snorky.backend.django import authorize_subscription, flush, stats  # noqa: E402
from tests.contrib.django.project.todos.models import Todo, TodoList  # noqa: E402

env = LiveEnvironment()


def setUpModule():
    if database() != "postgresql":
        raise unittest.SkipTest("versions come from PostgreSQL")
    env.start()


def tearDownModule():
    env.stop()


def todo_json(todo):
    return {"id": todo.pk, "list": todo.list_id, "title": todo.title, "done": todo.done}


class Page:
    """A page showing one list: it applies each delta as snorky.js does, checking it against what it shows."""

    def __init__(self, websocket_url, todo_list):
        token = authorize_subscription([{"dealer": "todos", "query": ["==", "list", todo_list.pk]}])
        self.rows = {todo.pk: todo_json(todo) for todo in Todo.objects.filter(list=todo_list)}  # read after authorizing
        self.browser = Browser(websocket_url)
        self.browser.subscribe(token)
        self.applied = []

    def apply(self, delta):
        if delta["type"] == "insert":
            assert delta["data"]["id"] not in self.rows, f"insert of a row shown already: {delta}"
            row = delta["data"]
        else:
            shown = self.rows.get(delta["data" if delta["type"] == "delete" else "oldData"]["id"])
            old = delta["data"] if delta["type"] == "delete" else delta["oldData"]
            assert old == shown, f"{delta['type']} from {old}, but the page shows {shown}"
            row = delta.get("newData")
        if row is None:
            del self.rows[old["id"]]
        else:
            self.rows[row["id"]] = row
        self.applied.append(delta)

    def until(self, rows):
        """Apply deltas until the page shows ``rows``."""
        while self.rows != rows:
            self.apply(self.browser.next_delta())

    def close(self):
        if self.browser is not None:
            self.browser.close()
            self.browser = None


def table(todo_list):
    return {todo.pk: todo_json(todo) for todo in Todo.objects.filter(list=todo_list)}


def stale_deltas(snorky):
    """Snorky's count of deltas dropped for being older than one delivered (the control service's info)."""
    backend = SnorkyBackend(SnorkyHTTPTransport(snorky.backend_url, API_KEY))
    return backend.call("control", "info")["services"]["datasync"]["stats"]["stale_deltas"]


def in_threads(count, work):
    """Run ``work(number)`` in ``count`` threads; return what they returned, in one list."""
    results, errors = [[] for _ in range(count)], []

    def run(number):
        try:
            results[number] = work(number)
        except Exception as error:  # raised below, in the test's thread
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(number,)) for number in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 3)
    if errors:
        raise errors[0]
    return [item for result in results for item in result]


class CommitOrderTests(TransactionTestCase):
    """Several writers on three rows; one page shows them all."""

    rows = 3

    def setUp(self):
        settings = override_settings(SNORKY_BACKEND_URL=env.snorky.backend_url)  # no recorder in between
        settings.enable()
        self.addCleanup(settings.disable)
        self.todo_list = TodoList.objects.create(name="Counters")
        self.pks = [Todo.objects.create(list=self.todo_list, title="0").pk for _ in range(self.rows)]
        flush_sender()
        self.page = Page(env.snorky.websocket_url, self.todo_list)
        self.addCleanup(self.page.close)
        # One change of each row first: Snorky then knows the row the page shows, and routes every later
        # delta of it from there (the first delta of a row it never saw is routed by its own oldData).
        for todo in Todo.objects.filter(pk__in=self.pks):
            todo.done = True
            todo.save()
        flush_sender()
        self.page.until(table(self.todo_list))
        self.page.applied.clear()
        stats.reset()
        self.stale_before = stale_deltas(env.snorky)

    def check(self, committed, here):
        """The page ends equal to the table; each row's values grew; every committed delta is received or stale.

        ``here`` is how many of the ``committed`` transactions this process made.
        """
        flush_sender()
        self.page.until(table(self.todo_list))
        # A last change, then: whatever was delivered before it has been read.
        marker = add_one(self.pks[0])
        flush_sender()
        self.page.until(table(self.todo_list))
        received = self.page.applied[:-1]
        self.assertEqual(self.page.applied[-1]["newData"]["title"], str(marker[1]))
        last = {}
        for delta in received:
            row = delta["newData"]
            self.assertGreater(int(row["title"]), last.get(row["id"], 0), f"out of order: {delta}")
            last[row["id"]] = int(row["title"])
            self.assertIn((row["id"], int(row["title"])), committed)
        stale = stale_deltas(env.snorky) - self.stale_before
        self.assertEqual(len(received) + stale, len(committed))
        self.assertEqual((stats.deltas, stats.lost_deltas, stats.unknown_deltas), (here + 1, 0, 0))

    def test_threads_on_the_same_rows(self):
        """Six threads, 120 transactions on three rows: the page gets each row's changes in commit order."""

        def work(number):
            return [add_one(self.pks[(number + n) % self.rows]) for n in range(20)]

        committed = in_threads(6, work)
        self.assertEqual(sorted(committed), sorted((pk, v) for pk in self.pks for v in range(1, 41)))
        self.check(set(committed), len(committed))

    def test_two_processes_on_the_same_rows(self):
        """Another process writes the same rows at the same time: the page still gets commit order."""
        settings = connection.settings_dict
        url = f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"
        worker = subprocess.Popen(
            [sys.executable, "-m", "tests.contrib.django.commit_worker"]
            + [env.snorky.backend_url, ",".join(map(str, self.pks)), "60", "4"],
            cwd=ROOT,
            env=dict(os.environ, SNORKY_TEST_POSTGRES_URL=url, SNORKY_TEST_DJANGO_DATABASE="postgresql"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.addCleanup(worker.wait, TIMEOUT)
        self.assertEqual(worker.stdout.readline(), "ready\n")
        worker.stdin.write("go\n")
        worker.stdin.flush()
        ours = in_threads(4, lambda number: [add_one(self.pks[(number + n) % self.rows]) for n in range(15)])
        out, _ = worker.communicate(timeout=TIMEOUT * 3)
        self.assertEqual(worker.returncode, 0)
        theirs = [tuple(item) for item in json.loads(out)]
        self.assertEqual(len(theirs), 60)
        self.assertEqual(sorted(ours + theirs), sorted((pk, v) for pk in self.pks for v in range(1, 41)))
        self.check(set(ours + theirs), len(ours))

    def test_autocommit_saves_on_the_same_rows(self):
        """Saves outside transactions racing on three rows: each delta applies to what the page shows; it ends equal."""
        titles = set()

        def work(number):
            saved = []
            for n in range(15):
                todo = Todo.objects.get(pk=self.pks[(number + n) % self.rows])
                todo.title = f"{number}-{n}"
                todo.save()
                saved.append(todo.title)
            return saved

        titles.update(in_threads(6, work))
        self.assertEqual(len(titles), 90)
        flush_sender()
        self.page.until(table(self.todo_list))
        for delta in self.page.applied:
            self.assertIn(delta["newData"]["title"], titles)
        self.assertEqual((stats.deltas, stats.lost_deltas), (90, 0))


def process_state(process):
    """The state letter of a process: ``T`` when stopped by a signal."""
    with open(f"/proc/{process.pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def wait_until(condition, what):
    """Wait until ``condition()`` holds (it observes another thread or process)."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.005)


class FaultTests(TransactionTestCase):
    """Snorky frozen or stopped while Django, served over HTTP, commits."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.django = DjangoServer()

    @classmethod
    def tearDownClass(cls):
        cls.django.stop()
        super().tearDownClass()

    def setUp(self):
        self.snorky = SnorkyProcess()
        self.addCleanup(self.snorky.stop)
        settings = override_settings(SNORKY_BACKEND_URL=self.snorky.backend_url, SNORKY_TIMEOUT=TIMEOUT)
        settings.enable()
        self.addCleanup(settings.disable)
        self.todo_list = TodoList.objects.create(name="Faults")
        self.http = requests.Session()
        self.addCleanup(self.http.close)
        flush_sender()
        stats.reset()
        self.page = Page(self.snorky.websocket_url, self.todo_list)
        self.addCleanup(self.page.close)
        self.addCleanup(self.resume)  # first of all, if the test failed with Snorky frozen

    def freeze(self):
        self.snorky.process.send_signal(signal.SIGSTOP)
        wait_until(lambda: process_state(self.snorky.process) == "T", "Snorky is stopped")

    def resume(self):
        if self.snorky.process.poll() is None:
            self.snorky.process.send_signal(signal.SIGCONT)

    def create(self, title):
        """POST a todo through Django's HTTP server; return the todo and how long the request took."""
        start = time.monotonic()
        response = self.http.post(
            f"{self.django.url}/lists/{self.todo_list.pk}/todos/", json={"title": title}, timeout=TIMEOUT * 2
        )
        took = time.monotonic() - start
        self.assertEqual(response.status_code, 201, response.text)
        return response.json(), took

    def test_frozen_snorky_delays_no_request(self):
        """With Snorky frozen, requests that commit return without waiting for it; the deltas follow when it resumes."""
        self.freeze()
        created, times = zip(*(self.create(f"while frozen {n}") for n in range(5)), strict=True)
        # Snorky answered nothing, yet every request is done: none waited for it (SNORKY_TIMEOUT is 20 s).
        self.assertEqual(process_state(self.snorky.process), "T")
        self.assertEqual(stats.deltas, 0)
        self.assertLess(max(times), TIMEOUT / 4)
        self.resume()
        self.page.until(table(self.todo_list))
        self.assertEqual([d["data"]["title"] for d in self.page.applied], [t["title"] for t in created])
        flush_sender()
        self.assertEqual((stats.deltas, stats.lost_deltas, stats.unknown_deltas, stats.dropped_deltas), (5, 0, 0, 0))

    def test_timed_out_publish_is_unknown_and_never_applied_over_a_newer_one(self):
        """Publishes that time out count as unknown; delivered when Snorky resumes, none applied over a newer one."""
        todo, _ = self.create("0")
        flush_sender()
        self.page.until(table(self.todo_list))
        stale_before = stale_deltas(self.snorky)
        self.freeze()
        with override_settings(SNORKY_TIMEOUT=0.3), self.assertLogs("snorky.backend.django", "ERROR") as logs:
            committed = [add_one(todo["id"]) for _ in range(4)]
            flush_sender()
        self.assertIn("timed out", logs.output[0])
        self.assertEqual((stats.unknown_deltas, stats.lost_deltas, stats.deltas), (4, 0, 1))
        self.resume()
        self.page.until(table(self.todo_list))  # the calls that timed out were delivered after all
        marker = add_one(todo["id"])
        flush_sender()
        self.page.until(table(self.todo_list))
        values = [int(d["newData"]["title"]) for d in self.page.applied[1:-1]]
        self.assertEqual(values, sorted(set(values)))
        self.assertEqual(values[-1], committed[-1][1])
        self.assertEqual(len(values) + stale_deltas(self.snorky) - stale_before, 4)
        self.assertEqual(int(self.page.applied[-1]["newData"]["title"]), marker[1])

    def test_stopped_snorky_loses_deltas_and_delays_no_request(self):
        """With Snorky gone, requests return at once; the deltas are counted as lost, the failure logged once."""
        self.page.close()
        self.snorky.process.terminate()
        self.snorky.process.wait(TIMEOUT)
        with self.assertLogs("snorky.backend.django", "ERROR") as logs:
            times = [self.create(f"while stopped {n}")[1] for n in range(3)]
            flush_sender()
        self.assertLess(max(times), TIMEOUT / 4)
        self.assertEqual(len(logs.records), 1)
        self.assertEqual((stats.lost_deltas, stats.unknown_deltas, stats.deltas), (3, 0, 0))

    def test_snorky_killed_during_commits(self):
        """Snorky killed while three threads commit through HTTP: no request waits, every delta is counted once."""
        times, titles = [], []

        def work(number):
            with requests.Session() as http:
                for n in range(15):
                    start = time.monotonic()
                    url = f"{self.django.url}/lists/{self.todo_list.pk}/todos/"
                    response = http.post(url, json={"title": f"{number}-{n}"}, timeout=TIMEOUT)
                    times.append(time.monotonic() - start)
                    self.assertEqual(response.status_code, 201)
                    titles.append(f"{number}-{n}")
            return []

        killer = threading.Thread(target=self.kill_after, args=(10,))
        killer.start()
        with self.assertLogs("snorky.backend.django", "ERROR"):
            in_threads(3, work)
            killer.join(TIMEOUT)
            flush_sender()
        self.assertIsNotNone(self.snorky.process.poll())
        self.assertLess(max(times), TIMEOUT / 4)
        self.assertEqual(stats.deltas + stats.lost_deltas + stats.unknown_deltas, 45)
        self.assertGreater(stats.lost_deltas, 0)
        with self.assertRaises(ConnectionError):  # what the page got before Snorky died
            while True:
                self.page.apply(self.page.browser.next_delta())
        received = [delta["data"]["title"] for delta in self.page.applied]
        self.assertTrue(set(received) <= set(titles))
        # Each delta Snorky accepted reached the page; of the unknown ones, some may have.
        self.assertGreaterEqual(len(received), stats.deltas)
        self.assertLessEqual(len(received), stats.deltas + stats.unknown_deltas)

    def kill_after(self, deltas):
        wait_until(lambda: stats.deltas >= deltas, f"{deltas} deltas were published")
        self.snorky.process.kill()
        self.snorky.process.wait(TIMEOUT)

    @override_settings(SNORKY_QUEUE_SIZE=2)
    def test_full_queue_drops_and_counts(self):
        """When the sender's queue is full the deltas of new commits are dropped, counted and logged once."""
        self.freeze()
        self.create("in flight")
        wait_until(lambda: stats.queued_deltas == 0, "the sender took the first commit")  # its call hangs
        self.create("queued 1")
        self.create("queued 2")
        with self.assertLogs("snorky.backend.django", "ERROR") as logs:
            self.create("dropped 1")
            self.create("dropped 2")
        self.assertEqual(len(logs.records), 1)
        self.assertIn("queue of deltas to publish is full", logs.output[0])
        self.assertEqual((stats.queued_deltas, stats.dropped_deltas), (2, 2))
        self.assertFalse(flush(timeout=0.01))  # the first call still hangs
        self.resume()
        flush_sender()
        with self.assertLogs("snorky.backend.django", "WARNING") as logs:
            self.create("after")
        self.assertIn("has room again, after 2 dropped delta(s)", logs.output[0])
        flush_sender()
        self.page.until(
            {pk: row for pk, row in table(self.todo_list).items() if not row["title"].startswith("dropped")}
        )
        self.assertEqual(
            [d["data"]["title"] for d in self.page.applied], ["in flight", "queued 1", "queued 2", "after"]
        )
        self.assertEqual((stats.deltas, stats.dropped_deltas, stats.lost_deltas, stats.unknown_deltas), (4, 2, 0, 0))
