"""The demos' configurations load, and their small services do what the pages rely on.

The pages themselves run in headless Chromium in ``tests/test_js_client.py``.
"""

import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from tornado.testing import AsyncTestCase

from snorky.auth import TokenVerifier
from snorky.services.auth import AuthService
from snorky.services.datasync import DataSyncService
from snorky.services.progress import ProgressService
from snorky.services.pubsub import PubSubService
from tests.utils import RecordingClient, call, call_error

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEMOS = ["demo_chat", "demo_cursors", "demo_progress", "demo_live_list"]

sys.path[:0] = [str(EXAMPLES / demo) for demo in DEMOS]

import chat_demo  # noqa: E402
import cursors_demo  # noqa: E402
import live_list_demo  # noqa: E402
import progress_demo  # noqa: E402

from snorky import ServiceRegistry  # noqa: E402

SECRET = "demo-tests-secret-long-enough-for-hs256"


class ConfigTests(unittest.TestCase):
    def test_every_demo_config_is_valid(self):
        """`snorky check-config` accepts each demo's snorky.toml, its service module included."""
        for demo in DEMOS:
            with self.subTest(demo=demo):
                result = subprocess.run(
                    [sys.executable, "-m", "snorky", "check-config", str(EXAMPLES / demo / "snorky.toml")],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
                self.assertTrue((EXAMPLES / demo / "static" / "index.html").is_file())
                self.assertTrue((EXAMPLES / demo / "README.md").is_file())


class LoginTests(unittest.TestCase):
    def test_sign_in_signs_a_token_the_auth_service_accepts(self):
        """signIn(name) answers a token for that name, with its name and color as info."""
        for module in (chat_demo, cursors_demo):
            with self.subTest(module=module.__name__):
                login = module.DemoLogin("login")
                ServiceRegistry([AuthService("auth", TokenVerifier(SECRET)), login])
                token = call(login, RecordingClient(), "signIn", name=" alice ")
                claims = TokenVerifier(SECRET).verify(token)
                self.assertEqual(claims["sub"], "alice")
                self.assertEqual(claims["info"]["name"], "alice")
                self.assertTrue(claims["info"]["color"].startswith("#"))

    def test_sign_in_refuses_odd_names(self):
        """A name that is empty, too long or not a string is refused with invalid_params."""
        login = chat_demo.DemoLogin("login")
        ServiceRegistry([AuthService("auth", TokenVerifier(SECRET)), login])
        for name in ["", "x" * 25, 5, "<script>"]:
            with self.subTest(name=name):
                self.assertEqual(call_error(login, RecordingClient(), "signIn", name=name)[1], "invalid_params")


class SharedTextTests(unittest.TestCase):
    def test_edit_reaches_the_other_readers(self):
        """An edit is pushed to every other client that loaded the text, with its version."""
        text = cursors_demo.SharedText("text")
        ServiceRegistry([text])
        alice, bob = RecordingClient("alice"), RecordingClient("bob")
        self.assertEqual(call(text, alice, "load")["version"], 0)
        call(text, bob, "load")
        self.assertEqual(call(text, alice, "edit", text="new"), {"version": 1})
        self.assertEqual(bob.notifications(), [{"type": "text", "text": "new", "version": 1, "from": "alice"}])
        self.assertEqual(alice.notifications(), [])


class ListServiceTests(AsyncTestCase):
    """On an IOLoop of their own: snapshot() starts the DataSync token's expiry timer on the current one."""

    def setUp(self):
        super().setUp()
        folder = tempfile.TemporaryDirectory()
        self.addCleanup(folder.cleanup)
        self.path = os.path.join(folder.name, "items.sqlite3")

    def test_store_returns_the_deltas_of_its_changes(self):
        """Adding, ticking and removing an item return its insert, update and delete deltas."""
        store = live_list_demo.ItemStore(self.path)
        insert = store.add("Milk")
        item = insert["data"]
        self.assertEqual(
            insert, {"type": "insert", "model": "Item", "data": {"id": item["id"], "text": "Milk", "done": False}}
        )
        update = store.set_done(item["id"], True)
        self.assertEqual(update["newData"]["done"], True)
        self.assertEqual(update["oldData"]["done"], False)
        self.assertEqual(store.remove(item["id"])["type"], "delete")
        self.assertIsNone(store.remove(item["id"]))
        self.assertEqual(store.all(), [])

    def test_snapshot_authorizes_then_lists(self):
        """snapshot() answers a token a client can acquire, and the items."""
        datasync = DataSyncService("datasync", dealers=[live_list_demo.Items])
        service = live_list_demo.ListService("list", path=self.path)
        ServiceRegistry([datasync, service])
        page = RecordingClient()
        call(service, page, "add", text="Bread")
        snapshot = call(service, page, "snapshot")
        self.assertEqual([item["text"] for item in snapshot["items"]], ["Bread"])
        self.assertIsNone(call(datasync, page, "acquireSubscription", token=snapshot["token"]))


class JobsTests(unittest.TestCase):
    def test_start_refuses_bad_steps(self):
        """start() refuses a step count that is not a whole number from 1 to 200."""
        jobs = progress_demo.DemoJobs("jobs")
        ServiceRegistry([ProgressService("progress"), PubSubService("pubsub"), jobs])
        for steps in [0, 201, 2.5, True, "3"]:
            with self.subTest(steps=steps):
                self.assertEqual(
                    call_error(jobs, RecordingClient(), "start", name="Job", steps=steps)[1], "invalid_params"
                )
