"""The snorky command as a subprocess: serve, publish, check-config, signals."""

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import unittest
import urllib.request

from tornado.testing import AsyncTestCase, gen_test
from tornado.websocket import websocket_connect

TIMEOUT = 20
SNORKY = [sys.executable, "-m", "snorky"]


def run(*args, env=None, **kwargs):
    return subprocess.run(SNORKY + list(args), capture_output=True, text=True, timeout=TIMEOUT, env=env, **kwargs)


class ServeTests(AsyncTestCase):
    async def start(self, *args, api_key="cli-key"):
        env = dict(os.environ)
        env.pop("SNORKY_API_KEY", None)
        if api_key:
            env["SNORKY_API_KEY"] = api_key
        process = await asyncio.create_subprocess_exec(
            *SNORKY,
            "serve",
            "--port",
            "0",
            "--backend-port",
            "0",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        line = (await asyncio.wait_for(process.stdout.readline(), TIMEOUT)).decode()
        match = re.search(r"serving on http://127\.0\.0\.1:(\d+)(?:, backend on port (\d+))?", line)
        self.assertIsNotNone(match, line)
        self.process = process
        return int(match.group(1)), (int(match.group(2)) if match.group(2) else None)

    async def stop(self, signum=signal.SIGTERM):
        self.process.send_signal(signum)
        code = await asyncio.wait_for(self.process.wait(), TIMEOUT)
        self.stderr = (await self.process.stderr.read()).decode()
        return code

    async def read(self, ws):
        return json.loads(await asyncio.wait_for(ws.read_message(), TIMEOUT))

    @gen_test(timeout=60)
    async def test_serve_publish_and_sigterm(self):
        """serve runs on defaults; publish reaches a WebSocket client; SIGTERM sends it away with 1012 and exits 0."""
        port, backend_port = await self.start()
        ws = await websocket_connect(f"ws://127.0.0.1:{port}/ws")
        ws.write_message(
            json.dumps(
                {"service": "pubsub", "message": {"command": "subscribe", "params": {"channel": "news"}, "callId": 1}}
            )
        )
        self.assertEqual((await self.read(ws))["message"]["type"], "response")
        result = await asyncio.get_running_loop().run_in_executor(
            None,
            lambda: run(
                "publish",
                "news",
                '{"title": "hello"}',
                "--url",
                f"http://127.0.0.1:{backend_port}/backend",
                "--api-key",
                "cli-key",
            ),
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            (await self.read(ws))["message"], {"type": "message", "channel": "news", "message": {"title": "hello"}}
        )
        self.assertEqual(await self.stop(), 0)
        self.assertIsNone(await asyncio.wait_for(ws.read_message(), TIMEOUT))
        self.assertEqual(ws.close_code, 1012)
        ws.close()

    @gen_test(timeout=60)
    async def test_token_secret_enables_identity(self):
        """With SNORKY_TOKEN_SECRET, serve accepts ?token= and offers the auth service."""
        from snorky.auth import sign_token

        secret = "serve-token-secret-long-enough-for-hs256"
        os.environ["SNORKY_TOKEN_SECRET"] = secret
        try:
            port, _ = await self.start()
        finally:
            del os.environ["SNORKY_TOKEN_SECRET"]
        ws = await websocket_connect(f"ws://127.0.0.1:{port}/ws?token={sign_token('dana', secret)}")
        ws.write_message(
            json.dumps(
                {
                    "service": "auth",
                    "message": {"command": "refresh", "params": {"token": sign_token("dana", secret)}, "callId": 1},
                }
            )
        )
        self.assertEqual((await self.read(ws))["message"]["data"]["identity"], "dana")
        ws.close()
        await self.stop()

    @gen_test(timeout=60)
    async def test_tokens_stay_out_of_the_log(self):
        """At debug level the access log shows paths, never the query string with a token."""
        port, _ = await self.start("--log-level", "debug")
        ws = await websocket_connect(f"ws://127.0.0.1:{port}/ws?token=secret-token-value")
        ws.close()
        await self.stop()
        self.assertIn("GET /ws", self.stderr)
        self.assertNotIn("secret-token-value", self.stderr)

    @gen_test(timeout=60)
    async def test_sigint_exits_zero(self):
        """SIGINT stops the server cleanly too."""
        await self.start()
        self.assertEqual(await self.stop(signal.SIGINT), 0)

    @gen_test(timeout=60)
    async def test_json_log_lines(self):
        """--log-format json: every line is one JSON object with the stable fields, and client lines
        name the client's address and identity."""
        from snorky.auth import sign_token

        secret = "json-log-secret-long-enough-for-hs256"
        os.environ["SNORKY_TOKEN_SECRET"] = secret
        try:
            port, _ = await self.start("--log-format", "json")
        finally:
            del os.environ["SNORKY_TOKEN_SECRET"]
        ws = await websocket_connect(f"ws://127.0.0.1:{port}/ws?token={sign_token('erin', secret)}")
        ws.write_message("{not json")
        self.assertEqual((await self.read(ws))["message"]["code"], "invalid_json")
        ws.close()
        await self.stop()
        lines = [json.loads(line) for line in self.stderr.splitlines()]
        self.assertTrue(lines)
        for line in lines:
            self.assertLessEqual({"time", "level", "logger", "node", "event"}, set(line))
            self.assertRegex(line["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertTrue(line["node"])
        (refused,) = [line for line in lines if line["event"].startswith("Invalid JSON")]
        self.assertEqual(
            (refused["level"], refused["logger"], refused["client"], refused["identity"]),
            ("warning", "snorky", "127.0.0.1", "erin"),
        )

    @gen_test(timeout=60)
    async def test_sighup_is_logged_and_serving_goes_on(self):
        """SIGHUP does not end the server: it logs one line and a connected client stays connected."""
        port, _ = await self.start()
        ws = await websocket_connect(f"ws://127.0.0.1:{port}/ws")
        self.process.send_signal(signal.SIGHUP)
        line = ""
        while "SIGHUP" not in line:
            line = (await asyncio.wait_for(self.process.stderr.readline(), TIMEOUT)).decode()
            self.assertTrue(line, "stderr ended without a SIGHUP line")
        ws.write_message(
            json.dumps(
                {"service": "pubsub", "message": {"command": "subscribe", "params": {"channel": "c"}, "callId": 1}}
            )
        )
        self.assertEqual((await self.read(ws))["message"]["type"], "response")
        self.assertIsNone(self.process.returncode)
        self.assertEqual(await self.stop(), 0)
        ws.close()

    @gen_test(timeout=60)
    async def test_port_in_use_is_one_line(self):
        """A taken port: one line naming the address and port, exit 2, and nothing said to be up before it."""
        import socket

        for taken in ("frontend", "backend"):
            with self.subTest(taken=taken), socket.socket() as holder:
                holder.bind(("127.0.0.1", 0))
                holder.listen()
                port = holder.getsockname()[1]
                flags = ["--port", str(port)] if taken == "frontend" else ["--port", "0", "--backend-port", str(port)]
                env = {**os.environ, "SNORKY_API_KEY": "cli-key"}
                result = await asyncio.get_running_loop().run_in_executor(
                    None, lambda flags=flags, env=env: run("serve", *flags, env=env)
                )
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assertEqual(result.stdout, "")
                self.assertEqual(
                    result.stderr.strip().splitlines(),
                    [f"snorky: cannot listen on 127.0.0.1:{port}: address already in use"],
                )

    @gen_test(timeout=60)
    async def test_status_page_and_sockjs_info(self):
        """The status page and the SockJS info endpoint answer on the frontend port."""
        port, _ = await self.start()
        loop = asyncio.get_running_loop()
        page = await loop.run_in_executor(
            None, lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).read().decode()
        )
        self.assertIn("Snorky", page)
        self.assertIn("pubsub", page)
        info = await loop.run_in_executor(
            None,
            lambda: json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/sockjs/info", timeout=TIMEOUT).read()),
        )
        self.assertTrue(info["websocket"])
        await self.stop()

    @gen_test(timeout=60)
    async def test_without_api_key_backend_stays_closed(self):
        """Without an API key the backend port is not opened, and the log says how to open it."""
        _, backend_port = await self.start(api_key=None)
        self.assertIsNone(backend_port)
        await self.stop()
        self.assertIn("SNORKY_API_KEY", self.stderr)

    @gen_test(timeout=60)
    async def test_config_file_chooses_services(self):
        """A TOML file renames services and loads a user's class by dotted path."""
        path = os.path.join(self.get_tmpdir(), "snorky.toml")
        with open(path, "w") as f:
            f.write(
                textwrap.dedent("""
                log_level = "warning"
                [frontend]
                websocket_path = "/live"
                [services.news]
                class = "pubsub"
                [services.echo]
                class = "tests.test_cli.EchoService"
            """)
            )
        port, _ = await self.start("--config", path)
        ws = await websocket_connect(f"ws://127.0.0.1:{port}/live")
        ws.write_message(
            json.dumps({"service": "echo", "message": {"command": "echo", "params": {"value": 7}, "callId": 1}})
        )
        self.assertEqual((await self.read(ws))["message"]["data"], 7)
        ws.write_message(
            json.dumps(
                {"service": "news", "message": {"command": "subscribe", "params": {"channel": "x"}, "callId": 2}}
            )
        )
        self.assertEqual((await self.read(ws))["message"]["type"], "response")
        ws.close()
        await self.stop()

    def get_tmpdir(self):
        import tempfile

        directory = tempfile.mkdtemp()
        self.addCleanup(__import__("shutil").rmtree, directory)
        return directory


from snorky.services.base import RPCService, rpc_command  # noqa: E402


class EchoService(RPCService):
    """A user's service, loaded by the config test through its dotted path."""

    @rpc_command
    def echo(self, req, value):
        return value


class CommandLineTests(unittest.TestCase):
    def write(self, text):
        import tempfile

        handle = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
        handle.write(textwrap.dedent(text))
        handle.close()
        self.addCleanup(os.unlink, handle.name)
        return handle.name

    def test_check_config_ok(self):
        """check-config accepts a valid file and lists its services."""
        result = run("check-config", self.write('[services.chat]\nclass = "pubsub"\n'))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("chat (PubSubService)", result.stdout)

    def test_check_config_errors(self):
        """check-config names what is wrong and exits 2."""
        cases = [
            ("[frontend]\nport = 'x'\n", "[frontend] port: must be an integer, not the string 'x'"),
            ("[frontend]\nprot = 1\n", "[frontend]: unknown key 'prot'; did you mean 'port'?"),
            ("[frontend]\nmax_mesage_size = 1\n", "did you mean 'max_message_size'?"),
            ("bogus = 1\n", "unknown key 'bogus'"),
            ("[services.a]\nclass = 'no.such.Module'\n", "[services.a] class: cannot import no.such"),
            ("[services.a]\nclass = 'snorky.config.Config'\n", "is not a snorky Service"),
            ("[services.a]\nclass = 'pubsb'\n", "unknown service 'pubsb'; did you mean 'pubsub'? (built-in: pubsub,"),
            (
                "[services.a]\nclass = 'pubsub'\nhistroy = 1\n",
                "[services.a]: PubSubService has no option 'histroy'; did you mean 'history'?",
            ),
            (
                "[backend_services.b]\nclass = 'pubsub_backend'\nfrontend = 'missing'\n",
                "[backend_services.b] frontend: no frontend service named 'missing'",
            ),
            ("this is [not toml", "invalid TOML"),
            ("log_level = 'loud'\n", "log_level must be one of"),
        ]
        for text, expected in cases:
            with self.subTest(text=text):
                path = self.write(text)
                result = run("check-config", path)
                self.assertEqual(result.returncode, 2, result.stdout)
                self.assertIn(expected, result.stderr)
                self.assertTrue(result.stderr.startswith(f"snorky: configuration error: {path}"), result.stderr)
                self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)

    def test_modules_beside_the_config_file(self):
        """A class in a module next to the configuration file can be named."""
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            with open(os.path.join(folder, "demo_services.py"), "w") as f:
                f.write("from snorky.services.pubsub import PubSubService\n\nclass Shouts(PubSubService):\n    pass\n")
            path = os.path.join(folder, "demo.toml")
            with open(path, "w") as f:
                f.write('[services.shouts]\nclass = "demo_services.Shouts"\n')
            result = run("check-config", path)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("shouts (Shouts)", result.stdout)

    def test_check_config_missing_file(self):
        """A missing file is a clear error."""
        result = run("check-config", "/nonexistent/snorky.toml")
        self.assertEqual(result.returncode, 2)
        self.assertIn("cannot read", result.stderr)

    def test_publish_without_key(self):
        """publish without any key refuses before sending anything."""
        env = dict(os.environ)
        env.pop("SNORKY_API_KEY", None)
        result = run("publish", "c", "m", env=env)
        self.assertEqual(result.returncode, 2)
        self.assertIn("no API key", result.stderr)

    def test_publish_unreachable(self):
        """publish to a port where nothing listens exits 1 naming the URL."""
        result = run("publish", "c", "m", "--url", "http://127.0.0.1:9/backend", "--api-key", "k")
        self.assertEqual(result.returncode, 1)
        self.assertIn("http://127.0.0.1:9/backend", result.stderr)

    def test_token_command(self):
        """snorky token signs a token the server's verifier accepts, with info, grants and subscriptions."""
        from snorky.auth import TokenVerifier

        secret = "cli-token-secret-long-enough-for-hs256"
        result = run(
            "token", "--sub", "alice", "--secret", secret, "--info", '{"name": "Alice"}',
            "--grant", "lobby", "--grant", "team:*", "--subscribe", "news",
        )  # fmt: skip
        self.assertEqual(result.returncode, 0, result.stderr)
        claims = TokenVerifier(secret).verify(result.stdout.strip())
        self.assertEqual(
            (claims["sub"], claims["info"], claims["channels"], claims["subscriptions"]),
            ("alice", {"name": "Alice"}, ["lobby", "team:*"], ["news"]),
        )

    def test_subscription_token_command(self):
        """snorky token --channel signs a subscription token: one channel claim, refused for connecting."""
        from snorky.auth import TokenVerifier
        from snorky.services.auth import AuthService
        from tests.utils import RecordingClient

        secret = "cli-token-secret-long-enough-for-hs256"
        result = run("token", "--sub", "alice", "--secret", secret, "--channel", "private:x", "--ttl", "60")
        self.assertEqual(result.returncode, 0, result.stderr)
        token = result.stdout.strip()
        claims = TokenVerifier(secret).verify(token)
        self.assertEqual((claims["sub"], claims["channel"], claims["exp"] - claims["iat"]), ("alice", "private:x", 60))
        with self.assertRaises(Exception) as refused:
            AuthService("auth", secret=secret).authenticate_client(RecordingClient(), token)
        self.assertEqual(getattr(refused.exception, "code", None), "invalid_token")
        mixed = run("token", "--sub", "alice", "--secret", secret, "--channel", "x", "--grant", "y")
        self.assertEqual(mixed.returncode, 2)
        self.assertIn("--channel signs a subscription token", mixed.stderr)

    def test_token_with_a_short_secret(self):
        """A short HS256 secret still signs, with one warning in Snorky's words (not PyJWT's)."""
        result = run("token", "--sub", "alice", "--secret", "short")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.count("."), 2)
        self.assertEqual(
            result.stderr.splitlines(),
            [
                "snorky: warning: the HS256 secret is 5 bytes long; use at least 32 random bytes, for example "
                "the output of: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
            ],
        )

    def test_token_without_secret(self):
        """snorky token without a secret says so and exits 2."""
        env = dict(os.environ)
        env.pop("SNORKY_TOKEN_SECRET", None)
        result = run("token", "--sub", "alice", env=env)
        self.assertEqual(result.returncode, 2)
        self.assertIn("needs a secret", result.stderr)

    def test_version(self):
        """--version prints the version."""
        from snorky import __version__

        self.assertIn(__version__, run("--version").stdout)


class StaticFilesTests(AsyncTestCase):
    @gen_test(timeout=30)
    async def test_static_dir_and_client(self):
        """static_dir pages are served at /, the status page moves to /status, the client at /snorky.js."""
        import tempfile

        from tornado.httpclient import AsyncHTTPClient

        from snorky.config import Config
        from snorky.server import CLIENT_JS, SnorkyServer

        with tempfile.TemporaryDirectory() as folder:
            os.mkdir(os.path.join(folder, "site"))
            with open(os.path.join(folder, "site", "index.html"), "w") as f:
                f.write("<p>demo page</p>")
            path = os.path.join(folder, "demo.toml")
            with open(path, "w") as f:
                f.write('[frontend]\nport = 0\nstatic_dir = "site"\n')
            server = SnorkyServer(Config.load(path, env={}))
            await server.start()
            try:
                base = f"http://127.0.0.1:{server.frontend_port}"
                client = AsyncHTTPClient()
                self.assertIn(b"demo page", (await client.fetch(base + "/")).body)
                self.assertIn(b"Snorky", (await client.fetch(base + "/status")).body)
                response = await client.fetch(base + "/snorky.js", raise_error=False)
                self.assertEqual(response.code, 200 if CLIENT_JS.exists() else 404)
                types = await client.fetch(base + "/snorky.d.ts")
                self.assertEqual(types.headers["Content-Type"], "application/typescript; charset=utf-8")
                self.assertIn(b"declare", types.body)
                self.assertIn((await client.fetch(base + "/../setup.py", raise_error=False)).code, (403, 404))
            finally:
                await server.stop(grace=0.5)

    def test_missing_static_dir(self):
        """A static_dir that is not a folder is a configuration error."""
        from snorky.config import Config
        from snorky.errors import ConfigError
        from snorky.server import SnorkyServer

        config = Config.from_dict({"frontend": {"static_dir": "/nonexistent/site"}})
        with self.assertRaises(ConfigError):
            SnorkyServer(config).frontend_app()


class GenconfigTests(unittest.TestCase):
    def test_generated_file_is_valid_and_in_the_docs(self):
        """snorky genconfig writes a file check-config accepts, holding every option; the docs show it."""
        import tempfile
        from dataclasses import fields
        from pathlib import Path

        from snorky.genconfig import SECTIONS

        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "snorky.toml")
            result = run("genconfig", "-o", path)
            self.assertEqual(result.returncode, 0, result.stderr)
            checked = run("check-config", path)
            self.assertEqual(checked.returncode, 0, checked.stderr)
            text = Path(path).read_text()
            again = run("genconfig", "-o", path)
            self.assertEqual((again.returncode, Path(path).read_text()), (2, text))  # never overwritten
        for _section, classes, _heading in SECTIONS:
            for cls in classes:
                for field in fields(cls):
                    if field.name not in ("source", "services", "backend_services", "transport", "name"):
                        if not isinstance(getattr(cls(), field.name), (int, float, str, bool, list, type(None))):
                            continue
                        self.assertRegex(text, rf"(?m)^(# )?{field.name} = ", field.name)
        docs = Path(__file__).parent.parent / "docs" / "topics" / "snorky-defaults.toml"
        self.assertEqual(docs.read_text(), text, "regenerate it: snorky genconfig > docs/topics/snorky-defaults.toml")
