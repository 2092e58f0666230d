"""Each example starts on a free loopback port and answers one round trip."""

import asyncio
import importlib.util
import json
import re
import sys
from pathlib import Path

from tornado.testing import AsyncHTTPTestCase, AsyncTestCase, gen_test
from tornado.websocket import websocket_connect

from tests.utils import ClosesSockets

EXAMPLES = Path(__file__).parent.parent / "examples"


def load_example(name):
    """Import examples/NAME/server.py under a module name of its own."""
    spec = importlib.util.spec_from_file_location(f"example_{name}_server", EXAMPLES / name / "server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pubsub_example = load_example("pubsub")


class PubSubExampleTests(AsyncHTTPTestCase):
    def get_app(self):
        return pubsub_example.make_app()

    def test_page_is_served(self):
        """The page is served and opens a WebSocket to /ws."""
        response = self.fetch("/static/index.html")
        self.assertEqual(response.code, 200)
        self.assertIn(b"new WebSocket", response.body)

    @gen_test
    async def test_round_trip(self):
        """What one page publishes, another receives."""
        url = self.get_url("/ws").replace("http", "ws")
        a, b = await websocket_connect(url), await websocket_connect(url)
        for ws in (a, b):
            ws.write_message(
                json.dumps(
                    {
                        "service": "pubsub",
                        "message": {"command": "subscribe", "params": {"channel": "chat"}, "callId": 1},
                    }
                )
            )
            self.assertEqual(json.loads(await ws.read_message())["message"]["type"], "response")
        a.write_message(
            json.dumps(
                {
                    "service": "pubsub",
                    "message": {"command": "publish", "params": {"channel": "chat", "message": "hello"}},
                }
            )
        )
        self.assertEqual(json.loads(await b.read_message())["message"]["message"], "hello")
        a.close()
        b.close()


class PubSubExampleProcessTests(AsyncTestCase):
    @gen_test(timeout=30)
    async def test_runs_as_a_script(self):
        """python examples/pubsub/server.py --port 0 serves the page and publishes the clock."""
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLES / "pubsub" / "server.py"), "--port", str(port), stdout=asyncio.subprocess.PIPE
        )
        try:
            line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
            self.assertTrue(re.search(rf"127\.0\.0\.1:{port}/", line), line)
            ws = await websocket_connect(f"ws://127.0.0.1:{port}/ws")
            ws.write_message(
                json.dumps(
                    {
                        "service": "pubsub",
                        "message": {"command": "subscribe", "params": {"channel": "clock"}, "callId": 1},
                    }
                )
            )
            self.assertEqual(json.loads(await ws.read_message())["message"]["type"], "response")
            tick = json.loads(await asyncio.wait_for(ws.read_message(), 10))["message"]
            self.assertEqual(tick["channel"], "clock")
            ws.close()
        finally:
            process.terminate()
            await process.wait()


chat_example = load_example("chat")


class ChatExampleTests(ClosesSockets, AsyncHTTPTestCase):
    def get_app(self):
        return chat_example.make_app("chat-example-secret-long-enough-for-hs256")

    async def join(self, name):
        response = await self.http_client.fetch(self.get_url(f"/token?name={name}"))
        token = json.loads(response.body)["token"]
        ws = await self.open_ws(self.get_url(f"/ws?token={token}").replace("http", "ws"))
        ws.write_message(
            json.dumps({"service": "chat", "message": {"command": "join", "params": {"channel": "lobby"}, "callId": 1}})
        )
        return ws, json.loads(await ws.read_message())["message"]["data"]

    def test_page_is_served(self):
        """The page is served and connects with a token."""
        body = self.fetch("/static/index.html").body
        self.assertIn(b"/ws?token=", body)

    def test_token_needs_a_name(self):
        """The demo sign-in refuses an empty name."""
        self.assertEqual(self.fetch("/token?name=").code, 400)

    @gen_test
    async def test_two_people_chat(self):
        """Two names join the lobby, see each other, chat, and see a leave."""
        ann, _ = await self.join("Ann")
        ben, joined = await self.join("Ben")
        self.assertEqual(sorted(joined["members"]), ["Ann", "Ben"])
        self.assertEqual(json.loads(await ann.read_message())["message"]["from"], "Ben")
        ben.write_message(
            json.dumps(
                {"service": "chat", "message": {"command": "send", "params": {"channel": "lobby", "body": "hello"}}}
            )
        )
        message = json.loads(await ann.read_message())["message"]
        self.assertEqual((message["from"], message["body"]), ("Ben", "hello"))
        ben.close()
        while True:
            note = json.loads(await ann.read_message())["message"]
            if note["type"] == "presence":
                break
        self.assertEqual((note["from"], note["status"]), ("Ben", "left"))
