"""examples/todo_django as a user runs it (server.py, one process): API round trips and two Chromium pages.

The round trips run on SQLite and on PostgreSQL (the tests' own server, or
``SNORKY_TEST_POSTGRES_URL``), in a database created for them.
"""

import asyncio
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path
from urllib.parse import urlsplit

import requests

from tests.chromium import Chromium, chromium_version, find_chromium
from tests.contrib.django.harness import ROOT, TIMEOUT, Browser
from tests.postgres_server import postgres_url

EXAMPLE = ROOT / "examples" / "todo_django"


class ExampleServer:
    """``python examples/todo_django/server.py --port 0`` on a database of its own."""

    def __init__(self, database_url=None):
        self.folder = tempfile.TemporaryDirectory()
        env = dict(
            os.environ,
            TODO_DATABASE_URL=database_url or f"sqlite:///{Path(self.folder.name) / 'todo.sqlite3'}",
            SNORKY_API_KEY=secrets.token_urlsafe(16),
            DJANGO_DEBUG="1",
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),  # this tree's snorky
        )
        env.pop("DJANGO_SETTINGS_MODULE", None)
        self.process = subprocess.Popen(
            [sys.executable, str(EXAMPLE / "server.py"), "--port", "0"],
            cwd=EXAMPLE,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.process.stdout.readline()
        match = re.search(r"serving on (http://127\.0\.0\.1:(\d+)), backend on port \d+, with Django", line)
        if match is None:
            self.stop()
            raise AssertionError(f"the example did not start: {line!r}")
        self.url = match[1]
        self.websocket_url = f"ws://127.0.0.1:{match[2]}/ws"

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(TIMEOUT)
        self.process.stdout.close()
        self.folder.cleanup()


class ExampleTestCase(unittest.TestCase):
    database_url = None

    @classmethod
    def setUpClass(cls):
        cls.server = ExampleServer(cls.database_url)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def setUp(self):
        self.http = requests.Session()
        self.addCleanup(self.http.close)

    def api(self, method, path, **kwargs):
        response = self.http.request(method, f"{self.server.url}{path}", timeout=10, **kwargs)
        self.assertLess(response.status_code, 300, response.text)
        return response

    def new_list(self, name):
        return self.api("POST", "/api/lists/", json={"name": name}).json()["id"]

    def subscribed_page(self, list_id):
        """The page's first steps: the list with a token, then a WebSocket acquiring it."""
        response = self.api("GET", f"/api/lists/{list_id}/todos/", headers={"X-Snorky": "Subscribe"})
        browser = Browser(self.server.websocket_url)
        self.addCleanup(browser.close)
        browser.subscribe(response.headers["X-Subscription-Token"])
        return browser, response.json()


class RoundTripTests(ExampleTestCase):
    def test_home_page(self):
        """/ redirects to a list whose page loads the app and its realtime part."""
        page = self.api("GET", "/")
        self.assertRegex(page.url, r"/lists/\d+/$")
        self.assertIn('<script type="module" src="/static/todos/app.js">', page.text)
        script = self.api("GET", "/static/todos/app.js").text
        self.assertIn('"X-Snorky": "Subscribe"', script)
        self.assertIn("acquireSubscription", script)

    def test_crud_reaches_the_list_subscribers_only(self):
        """Create, edit and delete reach the pages of that list, in the API's own JSON, and no other list's."""
        groceries, chores = self.new_list("Groceries"), self.new_list("Chores")
        page, rows = self.subscribed_page(groceries)
        other_page, _ = self.subscribed_page(chores)
        self.assertEqual(rows, [])
        todo = self.api("POST", f"/api/lists/{groceries}/todos/", json={"title": "Milk"}).json()
        self.assertEqual(page.next_delta(), {"type": "insert", "model": "Todo", "data": todo})
        edited = self.api("PATCH", f"/api/todos/{todo['id']}/", json={"completed": True}).json()
        self.assertEqual(page.next_delta(), {"type": "update", "model": "Todo", "newData": edited, "oldData": todo})
        self.api("DELETE", f"/api/todos/{todo['id']}/")
        self.assertEqual(page.next_delta(), {"type": "delete", "model": "Todo", "data": edited})
        chore = self.api("POST", f"/api/lists/{chores}/todos/", json={"title": "Dishes"}).json()
        self.assertEqual(other_page.next_delta()["data"], chore)  # the first delta it ever got

    def test_toggle_all_and_clear_completed(self):
        """toggle-all (an UPDATE under track_changes) and clear-completed (a batched delete) reach the page."""
        list_id = self.new_list("Bulk")
        for title in ("a", "b"):
            self.api("POST", f"/api/lists/{list_id}/todos/", json={"title": title})
        page, rows = self.subscribed_page(list_id)
        self.assertEqual(
            self.api("POST", f"/api/lists/{list_id}/toggle-all/", json={"completed": True}).json(), {"updated": 2}
        )
        updates = [page.next_delta() for _ in rows]
        self.assertEqual([(d["type"], d["newData"]["completed"]) for d in updates], [("update", True)] * 2)
        self.assertEqual(self.api("POST", f"/api/lists/{list_id}/clear-completed/").json(), {"deleted": 2})
        self.assertEqual(sorted(page.next_delta()["data"]["title"] for _ in rows), ["a", "b"])


class PostgreSQLRoundTripTests(RoundTripTests):
    """The same round trips with the example on PostgreSQL."""

    @classmethod
    def setUpClass(cls):
        import psycopg

        server = urlsplit(postgres_url())
        cls.database_name = f"todo_example_{os.getpid()}"
        cls.admin_url = server.geturl()
        with psycopg.connect(cls.admin_url, autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {cls.database_name}")
        cls.database_url = server._replace(path=f"/{cls.database_name}").geturl()
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        import psycopg

        super().tearDownClass()
        with psycopg.connect(cls.admin_url, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE {cls.database_name} WITH (FORCE)")


CHROMIUM = find_chromium()


@unittest.skipUnless(CHROMIUM, "no Chromium: apt-get install chromium")
class BrowserTests(ExampleTestCase):
    def test_two_pages_see_each_others_changes(self):
        """In headless Chromium, what one page adds, ticks and clears appears in the other; another list stays apart."""
        list_id = self.new_list("Shared")
        other_list = self.new_list("Elsewhere")
        screenshots = os.environ.get("SNORKY_TEST_SCREENSHOTS")

        async def scenario():
            browser = await Chromium.launch(CHROMIUM)
            try:
                alice = await browser.new_page(f"{self.server.url}/lists/{list_id}/")
                bob = await browser.new_page(f"{self.server.url}/lists/{list_id}/")
                carol = await browser.new_page(f"{self.server.url}/lists/{other_list}/")
                for page in (alice, bob, carol):
                    await page.wait_for("document.querySelector('.status').dataset.status === 'live'")

                await alice.type(".new-todo", "Buy milk")
                await alice.press_enter()
                await bob.wait_for(
                    "[...document.querySelectorAll('.todo-list label')].map(l => l.textContent).join() === 'Buy milk'"
                )
                await bob.type(".new-todo", "Walk the dog")
                await bob.press_enter()
                await alice.wait_for("document.querySelectorAll('.todo-list li').length === 2")

                await bob.click(".todo-list li .toggle")
                await alice.wait_for("document.querySelector('.todo-list li').classList.contains('completed')")
                self.assertEqual(
                    await alice.evaluate("document.querySelector('.todo-count').textContent"), "1 item left"
                )
                if screenshots:
                    await alice.screenshot(os.path.join(screenshots, "alice.png"))

                await alice.click(".clear-completed")
                await bob.wait_for("document.querySelectorAll('.todo-list li').length === 1")
                self.assertEqual(await carol.evaluate("document.querySelectorAll('.todo-list li').length"), 0)
            finally:
                await browser.close()

        try:
            asyncio.run(scenario())
        except Exception as error:
            raise AssertionError(f"{chromium_version(CHROMIUM)}: {error}") from error
