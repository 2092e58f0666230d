"""The tutorial's three files (examples/tutorial/), run as a reader runs them.

Each script is started as a subprocess from its own folder on a free port; the
page is driven in headless Chromium against the step-3 server.
"""

import asyncio
import contextlib
import json
import re
import socket
import sys
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient
from tornado.testing import AsyncTestCase, gen_test
from tornado.websocket import websocket_connect

from tests.chromium import Chromium, find_chromium

TUTORIAL = Path(__file__).parent.parent / "examples" / "tutorial"
TIMEOUT = 20


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def frame(command, call_id, **params):
    return json.dumps({"service": "pubsub", "message": {"command": command, "params": params, "callId": call_id}})


@contextlib.asynccontextmanager
async def running(script):
    """Run ``script`` as the tutorial says (``python script --port N``, from its folder); yield the port."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, script, "--port", str(port), cwd=TUTORIAL, stdout=asyncio.subprocess.PIPE
    )
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), TIMEOUT)).decode()
        assert line.strip() == f"Open http://127.0.0.1:{port}/", line
        yield port
    finally:
        process.kill()
        await process.wait()


class TutorialTests(AsyncTestCase):
    async def read(self, ws):
        return json.loads(await asyncio.wait_for(ws.read_message(), TIMEOUT))["message"]

    @gen_test(timeout=60)
    async def test_step_1_server_serves_the_page_and_pubsub(self):
        """server.py serves the page at / and relays a publish between two WebSocket clients."""
        async with running("server.py") as port:
            await self.round_trip(port)

    async def round_trip(self, port):
        page = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/")
        self.assertIn(b"new WebSocket", page.body)
        a = await websocket_connect(f"ws://127.0.0.1:{port}/ws")
        b = await websocket_connect(f"ws://127.0.0.1:{port}/ws")
        for ws in (a, b):
            ws.write_message(frame("subscribe", 1, channel="chat"))
            self.assertEqual((await self.read(ws))["type"], "response")
        a.write_message(frame("publish", 2, channel="chat", message="hello"))
        self.assertEqual((await self.read(b))["message"], "hello")
        a.close()
        b.close()

    @gen_test(timeout=60)
    async def test_step_3_clock_publishes_from_python(self):
        """clock.py publishes the time on "clock" every second."""
        async with running("clock.py") as port:
            await self.tick(port)

    async def tick(self, port):
        ws = await websocket_connect(f"ws://127.0.0.1:{port}/ws")
        ws.write_message(frame("subscribe", 1, channel="clock"))
        self.assertEqual((await self.read(ws))["type"], "response")
        tick = await self.read(ws)
        self.assertEqual(tick["channel"], "clock")
        self.assertRegex(tick["message"], r"^\d\d:\d\d:\d\d$")
        ws.close()

    @gen_test(timeout=90)
    async def test_step_2_page_in_chromium(self):
        """Two tabs of the page: the clock shows, and what one tab publishes appears in both."""
        executable = find_chromium()
        self.assertIsNotNone(executable, "Chromium is missing: apt-get install -y chromium")
        async with running("clock.py") as port:
            await self.two_tabs(executable, port)

    async def two_tabs(self, executable, port):
        browser = await Chromium.launch(executable)
        try:
            first = await browser.new_page(f"http://127.0.0.1:{port}/")
            second = await browser.new_page(f"http://127.0.0.1:{port}/")
            for page in (first, second):
                await page.wait_for(r"/^\d\d:\d\d:\d\d$/.test(document.getElementById('clock').textContent)")
            await first.type("#text", "hello from the first tab")
            await first.press_enter()
            for page in (first, second):
                await page.wait_for("document.querySelectorAll('#log li').length === 1")
                self.assertEqual(
                    await page.evaluate("document.querySelector('#log li').textContent"), "hello from the first tab"
                )
        finally:
            await browser.close()


class TutorialDocTests(AsyncTestCase):
    def test_every_block_comes_from_the_example(self):
        """The tutorial page shows code only through literalinclude of examples/tutorial/ files."""
        text = (Path(__file__).parent.parent / "docs" / "intro" / "tutorial.rst").read_text()
        self.assertNotIn("code-block", text)
        included = re.findall(r"literalinclude:: \.\./\.\./examples/tutorial/(\S+)", text)
        self.assertEqual(included, ["server.py", "static/index.html", "clock.py"])
