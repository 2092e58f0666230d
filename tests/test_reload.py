"""SIGHUP reloads the configuration file: a real `snorky serve`, a real signal, real clients.

And :meth:`SnorkyServer.reload` in-process, for what the subprocess test does not reach.
"""

import asyncio
import json
import logging
import os
import re
import signal
import sys
import tempfile
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.testing import AsyncTestCase, gen_test
from tornado.websocket import websocket_connect

from snorky.auth import sign_token
from snorky.config import Config
from snorky.errors import ConfigError
from snorky.server import SnorkyServer

TIMEOUT = 20
SNORKY = [sys.executable, "-m", "snorky"]

CONFIG = """\
log_level = "{log_level}"
log_format = "{log_format}"

[frontend]
address = "127.0.0.1"
port = {port}
max_message_size = {max_message_size}

[backend]
port = 0
api_key = "{api_key}"

[namespaces]
allow_publish = "anyone"
"""


def frame(command, call_id, **params):
    return json.dumps({"service": "pubsub", "message": {"command": command, "params": params, "callId": call_id}})


class SighupTests(AsyncTestCase):
    def setUp(self):
        super().setUp()
        self.folder = tempfile.TemporaryDirectory()
        self.path = Path(self.folder.name) / "snorky.toml"
        self.lines = []

    def tearDown(self):
        self.folder.cleanup()
        super().tearDown()

    def write(self, **values):
        options = {
            "log_level": "info",
            "log_format": "text",
            "port": 0,
            "max_message_size": 65536,
            "api_key": "key-one",
            **values,
        }
        self.path.write_text(CONFIG.format(**options))

    async def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SNORKY_")}
        self.process = await asyncio.create_subprocess_exec(
            *SNORKY,
            "serve",
            "--config",
            str(self.path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        line = (await asyncio.wait_for(self.process.stdout.readline(), TIMEOUT)).decode()
        match = re.search(r"serving on http://127\.0\.0\.1:(\d+), backend on port (\d+)", line)
        self.assertIsNotNone(match, line)
        return int(match[1]), int(match[2])

    async def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.assertEqual(await asyncio.wait_for(self.process.wait(), TIMEOUT), 0)

    async def log_line(self, pattern):
        """Read stderr up to the first line matching ``pattern``; return it (every line read is kept)."""
        while True:
            line = (await asyncio.wait_for(self.process.stderr.readline(), TIMEOUT)).decode()
            self.assertTrue(line, f"stderr ended before a line matching {pattern!r}")
            self.lines.append(line)
            if re.search(pattern, line):
                return line

    async def read(self, ws):
        return json.loads(await asyncio.wait_for(ws.read_message(), TIMEOUT))["message"]

    async def publish(self, backend, key, message):
        body = json.dumps(
            {
                "service": "pubsub",
                "message": {"command": "publish", "params": {"channel": "c", "message": message}, "callId": 1},
            }
        )
        return await AsyncHTTPClient().fetch(
            f"http://127.0.0.1:{backend}/backend",
            method="POST",
            body=body,
            headers={"X-Backend-Key": key},
            raise_error=False,
        )

    @gen_test(timeout=90)
    async def test_sighup_applies_what_it_can_and_names_what_it_cannot(self):
        """Log level and format, API key and transport limits change; clients stay; a port change is logged
        and kept."""
        self.write()
        port, backend = await self.start()
        ws = await websocket_connect(f"ws://127.0.0.1:{port}/ws")
        try:
            ws.write_message(frame("subscribe", 1, channel="c"))
            self.assertEqual((await self.read(ws))["type"], "response")
            await AsyncHTTPClient().fetch(f"http://127.0.0.1:{backend}/health")  # info level: not logged

            self.write(log_level="debug", log_format="json", api_key="key-two", max_message_size=100, port=5999)
            self.process.send_signal(signal.SIGHUP)
            await self.log_line(r"INFO snorky.cli: = SIGHUP: reloading")  # still text
            applied = json.loads(await self.log_line(r"configuration reloaded"))  # JSON from now on
            self.assertEqual((applied["level"], applied["logger"]), ("info", "snorky.reload"))
            self.assertIn("log_level ('info' -> 'debug')", applied["event"])
            self.assertIn("log_format ('text' -> 'json')", applied["event"])
            self.assertIn("backend.api_key (changed)", applied["event"])
            self.assertIn("frontend.max_message_size (65536 -> 100)", applied["event"])
            skipped = json.loads(await self.log_line(r"frontend\.port changed"))
            self.assertEqual(skipped["level"], "warning")
            self.assertIn("(0 -> 5999) but was not reloaded: restart to apply; still using 0", skipped["event"])
            self.assertFalse([line for line in self.lines if "GET /health" in line])

            # The debug level is in effect: the access log shows the next request.
            await AsyncHTTPClient().fetch(f"http://127.0.0.1:{backend}/health")
            self.assertIn("200 GET /health", json.loads(await self.log_line(r"200 GET /health"))["event"])

            # The new key is required; the old one is refused. The client connected before gets the message.
            refused = await self.publish(backend, "key-one", "old key")
            self.assertEqual(refused.code, 401)
            accepted = await self.publish(backend, "key-two", "x" * 150)
            self.assertEqual(accepted.code, 200, accepted.body)
            self.assertEqual((await self.read(ws))["message"], "x" * 150)

            # A connection opened now has the new message limit; the one opened before keeps its own.
            fresh = await websocket_connect(f"ws://127.0.0.1:{port}/ws")
            fresh.write_message(frame("publish", 2, channel="c", message="y" * 150))
            self.assertIsNone(await asyncio.wait_for(fresh.read_message(), TIMEOUT))
            self.assertEqual(fresh.close_code, 1009)
            fresh.close()
            ws.write_message(frame("publish", 3, channel="c", message="z" * 150))
            answers = [await self.read(ws), await self.read(ws)]
            self.assertEqual(sorted(a["type"] for a in answers), ["message", "response"])
        finally:
            ws.close()
            await self.stop()
        stderr = "".join(self.lines) + (await self.process.stderr.read()).decode()
        self.assertNotIn("key-two", stderr)
        self.assertNotIn("key-one", stderr)
        self.assertEqual(stderr.count("frontend.port changed"), 1)

    @gen_test(timeout=60)
    async def test_invalid_file_changes_nothing(self):
        """A file that does not parse (or could not start a server) is logged, and the server goes on as it was."""
        self.write()
        port, backend = await self.start()
        ws = await websocket_connect(f"ws://127.0.0.1:{port}/ws")
        try:
            ws.write_message(frame("subscribe", 1, channel="c"))
            self.assertEqual((await self.read(ws))["type"], "response")
            self.path.write_text('log_level = "debug"\n[frontend\n')
            self.process.send_signal(signal.SIGHUP)
            line = await self.log_line(r"SIGHUP: .*invalid TOML")
            self.assertIn("configuration unchanged", line)
            self.path.write_text('log_level = "debug"\n[services.extra]\nclass = "pubsub"\nnope = 1\n')
            self.process.send_signal(signal.SIGHUP)
            line = await self.log_line(r"SIGHUP: .*has no option 'nope'")
            self.assertIn("configuration unchanged", line)
            response = await self.publish(backend, "key-one", "still here")
            self.assertEqual(response.code, 200)
            self.assertEqual((await self.read(ws))["message"], "still here")
            await AsyncHTTPClient().fetch(f"http://127.0.0.1:{backend}/health")
        finally:
            ws.close()
            await self.stop()
        self.assertFalse([line for line in self.lines if "GET /health" in line])  # still at info


class ReloadTests(AsyncTestCase):
    """SnorkyServer.reload in-process."""

    def config(self, **sections):
        data = {
            "frontend": {"port": 0, "drain_window": 0},
            "backend": {"port": 0, "api_key": "k"},
            "namespaces": {"allow_publish": "anyone"},
        }
        for name, values in sections.items():
            data.setdefault(name, {}).update(values)
        return Config.from_dict(data, "test.toml")

    @gen_test(timeout=30)
    async def test_auth_secret_reloads(self):
        """A new token secret verifies the next connection's token; one signed with the old secret is refused."""
        old, new = "s" * 32, "t" * 32
        server = SnorkyServer(self.config(auth={"secret": old}))
        await server.start()
        try:
            url = f"ws://127.0.0.1:{server.frontend_port}/ws?token="
            first = await websocket_connect(url + sign_token("alice", old))
            with self.assertLogs("snorky.reload", logging.INFO) as logs:
                report = server.reload(self.config(auth={"secret": new}))
            self.assertEqual(list(report.applied), ["auth.secret"])
            self.assertNotIn(new, "\n".join(logs.output))
            refused = await websocket_connect(url + sign_token("bob", old))
            error = json.loads(await asyncio.wait_for(refused.read_message(), TIMEOUT))["message"]
            self.assertEqual(error["code"], "invalid_token")
            self.assertIsNone(await asyncio.wait_for(refused.read_message(), TIMEOUT))
            self.assertEqual(refused.close_code, 4001)
            refused.close()
            accepted = await websocket_connect(url + sign_token("carol", new))
            accepted.write_message(frame("subscribe", 1, channel="c"))
            self.assertEqual(
                json.loads(await asyncio.wait_for(accepted.read_message(), TIMEOUT))["message"]["type"], "response"
            )
            first.write_message(frame("subscribe", 1, channel="c"))  # connected before: still there
            self.assertEqual(
                json.loads(await asyncio.wait_for(first.read_message(), TIMEOUT))["message"]["type"], "response"
            )
            for ws in (first, accepted):
                ws.close()
        finally:
            await server.stop(grace=1)

    @gen_test(timeout=30)
    async def test_sockjs_origins_reload(self):
        """allowed_origins changes SockJS's WebSocket handshake too (sockjs-tornado's own origin check)."""
        server = SnorkyServer(self.config())
        await server.start()
        try:
            url = f"ws://127.0.0.1:{server.frontend_port}/sockjs/000/abcdefgh/websocket"
            origin = {"Origin": "https://app.example.com"}
            with self.assertRaises(HTTPClientError) as refused:
                await websocket_connect(HTTPRequest(url, headers=origin))
            self.assertEqual(refused.exception.code, 403)
            report = server.reload(self.config(frontend={"allowed_origins": ["https://app.example.com"]}))
            self.assertEqual(list(report.applied), ["frontend.allowed_origins"])
            ws = await websocket_connect(HTTPRequest(url, headers=origin))
            self.assertEqual(await asyncio.wait_for(ws.read_message(), TIMEOUT), "o")
            ws.close()
        finally:
            await server.stop(grace=1)

    @gen_test(timeout=30)
    async def test_namespaces_reload(self):
        """New namespace rules apply to the next publish and subscribe; a subscription made before stays."""
        server = SnorkyServer(
            self.config(namespaces={"allow_publish": "nobody", "news": {"allow_subscribe": "anyone"}})
        )
        await server.start()
        ws = await websocket_connect(f"ws://127.0.0.1:{server.frontend_port}/ws")
        try:

            async def call(command, call_id, **params):
                ws.write_message(frame(command, call_id, **params))
                while True:
                    message = json.loads(await asyncio.wait_for(ws.read_message(), TIMEOUT))["message"]
                    if message.get("callId") == call_id:
                        return message

            self.assertEqual((await call("subscribe", 1, channel="news:a"))["type"], "response")
            self.assertEqual((await call("publish", 2, channel="plain", message=1))["code"], "forbidden")
            with self.assertLogs("snorky.reload", logging.INFO) as logs:
                report = server.reload(self.config(namespaces={"allow_publish": "anyone", "sports": {}}))
            self.assertEqual(list(report.applied), ["namespaces"])
            self.assertIn("namespaces ((default) changed; sports added; news removed)", logs.output[0])
            self.assertEqual((await call("publish", 3, channel="plain", message=1))["type"], "response")
            self.assertEqual((await call("subscribe", 4, channel="news:b"))["code"], "forbidden")
            self.assertEqual((await call("subscribe", 5, channel="sports:x"))["type"], "response")
            server.registry.registered_services["pubsub"].do_publish("news:a", "still subscribed")  # from the server
            while (message := json.loads(await asyncio.wait_for(ws.read_message(), TIMEOUT))["message"]).get(
                "type"
            ) != "message":
                pass
            self.assertEqual(message["message"], "still subscribed")
        finally:
            ws.close()
            await server.stop(grace=1)

    def test_report_and_skips(self):
        """The report names what applied and what needs a restart, with the reason; the server keeps the old values."""
        server = SnorkyServer(self.config())
        new = self.config(frontend={"port": 7777, "drain_window": 2.5}, backend={"timeout": 3.0}, redis={"prefix": "x"})
        new.log_level = "debug"
        new.services = Config.from_dict({"services": {"chat": {"class": "chat"}}}).services
        with self.assertLogs("snorky.reload", logging.INFO) as logs:
            report = server.reload(new)
        self.assertEqual(sorted(report.applied), ["backend.timeout", "frontend.drain_window"])
        self.assertEqual(sorted(report.skipped), ["frontend.port", "log_level", "redis.prefix", "services"])
        self.assertEqual(report.reasons["log_level"], "the application sets up logging, not Snorky")
        self.assertEqual((server.config.frontend.port, server.config.frontend.drain_window), (0, 2.5))
        self.assertEqual(server.config.backend.timeout, 3.0)
        self.assertEqual(list(server.registry.registered_services), ["pubsub"])
        self.assertEqual(len([line for line in logs.output if "was not reloaded" in line]), 4)
        with self.assertLogs("snorky.reload", logging.INFO) as logs:
            self.assertFalse(
                server.reload(self.config(frontend={"drain_window": 2.5}, backend={"timeout": 3.0})).applied
            )
        self.assertIn("nothing changed", logs.output[0])

    def test_limits_reload(self):
        """[limits] applies at once: the next subscribe meets the new channels_per_connection."""
        from tests.utils import ClosableClient, call, call_error

        server = SnorkyServer(self.config())
        client = ClosableClient("alice")
        server.registry.client_connected(client)
        pubsub = server.registry.registered_services["pubsub"]
        call(pubsub, client, "subscribe", channel="a")
        with self.assertLogs("snorky.reload", logging.INFO):
            report = server.reload(self.config(limits={"channels_per_connection": 1, "commands_burst": 5}))
        self.assertEqual(sorted(report.applied), ["limits.channels_per_connection", "limits.commands_burst"])
        with self.assertLogs("snorky", logging.INFO):
            self.assertEqual(call_error(pubsub, client, "subscribe", channel="b")[1], "too_many_channels")
        self.assertEqual(server.registry.limiter._burst, 5)

    def test_invalid_config_changes_nothing(self):
        """A configuration that could not start a server raises ConfigError before anything changes."""
        server = SnorkyServer(self.config())
        new = self.config(frontend={"drain_window": 9.0, "compression_level": 12})
        with self.assertRaises(ConfigError):
            server.reload(new)
        self.assertEqual(server.config.frontend.drain_window, 0)

    def test_api_key_without_backend_port(self):
        """A key given to a server whose backend port was not opened needs a restart."""
        server = SnorkyServer(Config.from_dict({"frontend": {"port": 0}}))
        report = server.reload(self.config())
        self.assertIn("backend.api_key", report.skipped)
        self.assertIn("restart to open it", report.reasons["backend.api_key"])
