"""runsnorky: the server configuration built from settings, and the command as a subprocess (with Django too)."""

import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import requests

from tests.contrib.django.harness import ROOT, TIMEOUT, Browser, setup_django

setup_django()

from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.test import SimpleTestCase, override_settings  # noqa: E402

from snorky.backend import SnorkyBackend, SnorkyHTTPTransport  # noqa: E402
from snorky.backend.django.conf import backend_url, snorky_config  # noqa: E402

SETTINGS = "tests.contrib.django.project.settings"


class ConfigTests(SimpleTestCase):
    def test_defaults(self):
        """Without SNORKY: PubSub, DataSync with SNORKY_DEALERS, Progress, and their backends."""
        config = snorky_config()
        self.assertEqual([s.name for s in config.services], ["pubsub", "datasync", "progress"])
        self.assertEqual(config.services[1].options["dealers"][0], "tests.contrib.django.dealers.TodosByFilter")
        self.assertEqual(
            [(s.name, s.class_path.rsplit(".", 1)[1]) for s in config.backend_services],
            [("pubsub", "PubSubBackend"), ("datasync", "DataSyncBackend"), ("progress", "ProgressBackend")],
        )
        self.assertEqual(config.backend.api_key, "django-tests-api-key")

    @override_settings(SNORKY_DATASYNC_SERVICE="datasync_backend", SNORKY_BACKEND_URL="http://10.0.0.5:6002/private")
    def test_names_and_port_follow_the_client_settings(self):
        """The backend services take the names, and the backend port the port and path, Django calls."""
        config = snorky_config()
        self.assertIn("datasync_backend", [s.name for s in config.backend_services])
        self.assertEqual(
            (config.backend.address, config.backend.port, config.backend.path), ("127.0.0.1", 6002, "/private")
        )

    @override_settings(
        SNORKY={
            "frontend": {"port": 7001, "allowed_origins": ["localhost"]},
            "backend": {"port": 7002},
            "services": {"chat": {"class": "chat"}},
        },
        SNORKY_TOKEN_SECRET="a-token-secret-long-enough-for-hs256",
    )
    def test_snorky_setting(self):
        """SNORKY is read like snorky.toml; Django's client then calls the port it sets."""
        config = snorky_config()
        self.assertEqual([s.name for s in config.services], ["chat"])
        self.assertEqual((config.frontend.port, config.frontend.transport.allowed_origins), (7001, ["localhost"]))
        self.assertEqual(config.auth.secret, "a-token-secret-long-enough-for-hs256")
        with override_settings(SNORKY_BACKEND_URL=None):
            self.assertEqual(backend_url(), "http://127.0.0.1:7002/backend")

    @override_settings(SNORKY={"frontend": {"port": "high"}})
    def test_bad_setting(self):
        """A bad SNORKY is ImproperlyConfigured, naming the key."""
        with self.assertRaisesRegex(ImproperlyConfigured, r"\[frontend\] port: must be an integer"):
            snorky_config()


class CommandTests(unittest.TestCase):
    """``python -m django runsnorky`` in a subprocess, on its own SQLite file."""

    @classmethod
    def setUpClass(cls):
        cls.folder = tempfile.TemporaryDirectory()
        cls.env = dict(
            os.environ,
            DJANGO_SETTINGS_MODULE=SETTINGS,
            SNORKY_TEST_DJANGO_DB=str(Path(cls.folder.name) / "db.sqlite3"),
            PYTHONPATH=str(ROOT),
        )
        cls.env.pop("SNORKY_TEST_POSTGRES_URL", None)  # this one runs on SQLite
        subprocess.run([sys.executable, "-m", "django", "migrate", "-v", "0"], cwd=ROOT, env=cls.env, check=True)
        with sqlite3.connect(cls.env["SNORKY_TEST_DJANGO_DB"]) as db:
            cls.list_id = db.execute("INSERT INTO todos_todolist (name) VALUES ('Inbox')").lastrowid
        db.close()

    @classmethod
    def tearDownClass(cls):
        cls.folder.cleanup()

    def start(self, *args):
        process = subprocess.Popen(
            [sys.executable, "-m", "django", "runsnorky", "127.0.0.1:0", "--backend-port", "0", *args],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.addCleanup(self.stop, process)
        line = process.stdout.readline()
        match = re.search(r"serving on http://127\.0\.0\.1:(\d+), backend on port (\d+)", line)
        self.assertIsNotNone(match, line + process.stderr.read() if not line else line)
        return process, line, int(match[1]), int(match[2])

    def stop(self, process):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(TIMEOUT)
        process.stdout.close()
        process.stderr.close()

    def test_snorky_alone(self):
        """runsnorky serves the services of the settings; the backend port takes the settings' API key."""
        process, line, port, backend_port = self.start()
        self.assertNotIn("Django", line)
        backend = SnorkyBackend(SnorkyHTTPTransport(f"http://127.0.0.1:{backend_port}/backend", "django-tests-api-key"))
        token = backend.call("datasync", "authorizeSubscription", items=[{"dealer": "todos", "query": ["==", "id", 1]}])
        browser = Browser(f"ws://127.0.0.1:{port}/ws")
        try:
            browser.subscribe(token)
        finally:
            browser.close()
        process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(TIMEOUT), 0)

    def test_with_django(self):
        """--with-django: the API, the WebSocket and the publication back to Snorky, all on one port."""
        _, line, port, _ = self.start("--with-django")
        self.assertIn("with Django (development only)", line)
        base = f"http://127.0.0.1:{port}"
        with requests.Session() as http:
            response = http.get(f"{base}/lists/{self.list_id}/todos/", headers={"X-Snorky": "Subscribe"}, timeout=10)
            self.assertEqual(response.status_code, 200)
            browser = Browser(f"ws://127.0.0.1:{port}/ws")
            try:
                browser.subscribe(response.headers["X-Subscription-Token"])
                created = http.post(f"{base}/lists/{self.list_id}/todos/", json={"title": "same port"}, timeout=10)
                self.assertEqual(browser.next_delta(), {"type": "insert", "model": "Todo", "data": created.json()})
            finally:
                browser.close()
            self.assertEqual(http.get(f"{base}/", timeout=10).status_code, 404)  # Django's, not the status page

    def test_bad_address(self):
        """A malformed address:port is a command error."""
        result = subprocess.run(
            [sys.executable, "-m", "django", "runsnorky", "here:there"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("is not a port or address:port", result.stderr)
