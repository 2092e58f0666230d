"""The machinery of the Django tests: the project's settings, a live Snorky, a recording proxy, browsers.

:func:`setup_django` configures the test project in this process (with
``settings.configure``, so no environment variable leaks into the other tests'
subprocesses). :class:`LiveEnvironment` holds what a test module needs: the
test database (Django's runner), a Snorky server as a subprocess, and a proxy
in front of its backend port that records every request Django makes.
"""

from __future__ import annotations

import asyncio
import collections
import http.server
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

from tornado.websocket import websocket_connect

from tests.postgres_server import postgres_url

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT = 20
API_KEY = "django-tests-api-key"


def setup_django():
    """Configure the test project's settings and apps, once per process.

    The database is PostgreSQL (:func:`tests.postgres_server.postgres_url`: the
    tests' own server, or ``SNORKY_TEST_POSTGRES_URL``), unless
    ``SNORKY_TEST_DJANGO_DATABASE=sqlite`` asks for SQLite.
    """
    import django
    from django.conf import settings

    if not settings.configured:
        from tests.contrib.django.project import settings as project

        values = {name: getattr(project, name) for name in dir(project) if name.isupper()}
        if database() == "postgresql":
            values["DATABASES"] = {"default": project.postgres_database(postgres_url())}
        settings.configure(**values)
        django.setup()


def database():
    """``"postgresql"`` or ``"sqlite"``: what the Django tests of this process run on."""
    name = os.environ.get("SNORKY_TEST_DJANGO_DATABASE", "postgresql")
    if name not in ("postgresql", "sqlite"):
        raise RuntimeError(f"SNORKY_TEST_DJANGO_DATABASE must be postgresql or sqlite, not {name!r}")
    return name


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SERVER_CONFIG = """
log_level = "warning"

[frontend]
sockjs_prefix = ""

[services.datasync]
class = "datasync"
dealers = [{dealers}]

[services.pubsub]
class = "pubsub"

[services.progress]
class = "progress"

[backend_services.datasync]
class = "datasync_backend"
frontend = "datasync"

[backend_services.pubsub]
class = "pubsub_backend"
frontend = "pubsub"

[backend_services.progress]
class = "progress_backend"
frontend = "progress"
"""


class SnorkyProcess:
    """``python -m snorky serve`` on free ports, with the test dealers."""

    def __init__(self):
        self.folder = tempfile.TemporaryDirectory()
        config = Path(self.folder.name) / "snorky.toml"
        from tests.contrib.django.project import settings as project

        config.write_text(SERVER_CONFIG.format(dealers=", ".join(f'"{d}"' for d in project.SNORKY_DEALERS)))
        env = dict(os.environ, SNORKY_API_KEY=API_KEY, PYTHONPATH=str(ROOT))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "snorky", "serve", "--config", str(config), "--port", "0", "--backend-port", "0"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        line = self.process.stdout.readline()
        match = re.search(r"serving on http://127\.0\.0\.1:(\d+), backend on port (\d+)", line)
        if match is None:
            self.stop()
            raise RuntimeError(f"snorky serve did not start: {line!r}")
        self.port, self.backend_port = int(match[1]), int(match[2])
        self.backend_url = f"http://127.0.0.1:{self.backend_port}/backend"
        self.websocket_url = f"ws://127.0.0.1:{self.port}/ws"

    def stop(self):
        self.process.terminate()
        self.process.wait(TIMEOUT)
        self.process.stdout.close()
        self.folder.cleanup()


def flush_sender():
    """Wait until Django's background sender has published every earlier commit."""
    from snorky.backend.django import flush

    if not flush(timeout=TIMEOUT):
        raise AssertionError(f"the background sender did not flush in {TIMEOUT} s")


class BackendRecorder:
    """An HTTP proxy in front of the backend port that records each request's body.

    Counting here, on the wire, is how the tests know how many calls Django made.
    """

    def __init__(self, upstream):
        self.upstream = upstream
        self.requests = []
        self.changed = threading.Condition()
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = urllib.request.Request(
                    recorder.upstream,
                    data=body,
                    headers={
                        "X-Backend-Key": self.headers.get("X-Backend-Key", ""),
                        "Content-Type": "application/json",
                    },
                )
                try:
                    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                        status, answer = response.status, response.read()
                except urllib.error.HTTPError as error:
                    status, answer = error.code, error.read()
                with recorder.changed:
                    recorder.requests.append(json.loads(body))
                    recorder.changed.notify_all()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/backend"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def calls(self, command=None):
        """The ``(service, command, params)`` of the recorded requests (of one command).

        The background sender is flushed first: every earlier commit's deltas are in.
        """
        flush_sender()
        with self.changed:
            found = [(r["service"], r["message"]["command"], r["message"]["params"]) for r in self.requests]
        return [call for call in found if command is None or call[1] == command]

    def clear(self):
        """Forget the requests made so far (the earlier commits' included)."""
        flush_sender()
        with self.changed:
            self.requests.clear()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(TIMEOUT)


class LiveEnvironment:
    """The test database, a Snorky subprocess and the recorder, for one test module."""

    def start(self):
        from django.conf import settings
        from django.test.runner import DiscoverRunner
        from django.test.utils import setup_test_environment

        setup_django()
        setup_test_environment()
        self.runner = DiscoverRunner(verbosity=0, interactive=False)
        self.old_config = self.runner.setup_databases()
        self.snorky = SnorkyProcess()
        self.recorder = BackendRecorder(self.snorky.backend_url)
        settings.SNORKY_BACKEND_URL = self.recorder.url
        return self

    def stop(self):
        from django.conf import settings
        from django.test.utils import teardown_test_environment

        del settings.SNORKY_BACKEND_URL
        self.recorder.stop()
        self.snorky.stop()
        self.runner.teardown_databases(self.old_config)
        teardown_test_environment()


class Browser:
    """A page's WebSocket to Snorky, driven synchronously from a test (its own event loop)."""

    def __init__(self, url):
        self.loop = asyncio.new_event_loop()
        self.pending = collections.deque()
        self.next_id = 0
        self.closed = False
        self.ws = self.run(lambda: websocket_connect(url))

    def run(self, start, timeout=TIMEOUT):
        """Run ``start()`` (which returns an awaitable) on this page's loop and wait for it."""

        async def inside():
            return await asyncio.wait_for(start(), timeout)

        return self.loop.run_until_complete(inside())

    def _read(self):
        raw = self.run(self.ws.read_message)
        if raw is None:
            self.closed = True
            raise ConnectionError("Snorky closed the WebSocket")
        return json.loads(raw)

    def call(self, service, command, **params):
        """Call a command and return its data (notifications read meanwhile are kept)."""
        self.next_id += 1
        message = {"service": service, "message": {"command": command, "params": params, "callId": self.next_id}}
        self.run(lambda: self.ws.write_message(json.dumps(message)))
        while True:
            envelope = self._read()
            message = envelope["message"]
            if message.get("callId") == self.next_id and message.get("type") in ("response", "error"):
                if message["type"] == "error":
                    raise AssertionError(f"{command} failed: {message}")
                return message.get("data")
            self.pending.append(envelope)

    def next(self, service=None):
        """The next notification (of a service)."""
        while True:
            envelope = self.pending.popleft() if self.pending else self._read()
            if service is None or envelope["service"] == service:
                return envelope["message"]

    def next_delta(self):
        return self.next("datasync")["delta"]

    def subscribe(self, token):
        self.call("datasync", "acquireSubscription", token=token)

    def close(self):
        async def closing():
            self.ws.close()
            while await self.ws.read_message() is not None:
                pass

        if self.closed:  # by Snorky: nothing to wait for
            self.run(lambda: asyncio.sleep(0, self.ws.close()))
        else:
            self.run(closing, timeout=5)
        self.loop.close()


class DjangoServer:
    """The test project served over HTTP by Django's threaded WSGI server, in this process, on a free port."""

    def __init__(self):
        from django.core.handlers.wsgi import WSGIHandler
        from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

        class QuietHandler(WSGIRequestHandler):
            def log_message(self, *args):
                pass

        self.server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler, allow_reuse_address=False)
        self.server.set_app(WSGIHandler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(TIMEOUT)
