"""Headless Chromium driven over the DevTools protocol, with Tornado's WebSocket client.

Enough for the example's browser test: open pages, run JavaScript, type, press
keys, wait for a condition in the page (a promise settled by a MutationObserver,
no polling), take a screenshot. Chromium comes from the system
(``apt-get install chromium``); nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile

from tornado.websocket import websocket_connect

TIMEOUT = 20

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
]


def find_chromium():
    """The Chromium executable (``SNORKY_TEST_CHROMIUM``, else chromium on the PATH), or None."""
    explicit = os.environ.get("SNORKY_TEST_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class PageError(AssertionError):
    """JavaScript in the page threw."""


class Chromium:
    """One headless browser process and its DevTools connection; ``await Chromium.launch()``."""

    def __init__(self, process, profile, ws):
        self.process = process
        self.profile = profile
        self.ws = ws
        self.ids = itertools.count(1)
        self.answers = {}
        self.events = []
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def launch(cls, executable):
        profile = tempfile.TemporaryDirectory()
        process = await asyncio.create_subprocess_exec(
            executable,
            *FLAGS,
            f"--user-data-dir={profile.name}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            while True:
                line = (await asyncio.wait_for(process.stderr.readline(), TIMEOUT)).decode()
                if not line:
                    raise RuntimeError("Chromium exited before DevTools listened")
                match = re.search(r"DevTools listening on (ws://\S+)", line)
                if match:
                    break
            ws = await websocket_connect(match[1], max_message_size=64 * 1024 * 1024)
        except BaseException:
            process.kill()
            await process.wait()
            profile.cleanup()
            raise
        # Keep reading Chromium's stderr so that it never blocks on a full pipe.
        browser = cls(process, profile, ws)
        browser.drain = asyncio.ensure_future(process.stderr.read())
        return browser

    async def _read(self):
        while True:
            raw = await self.ws.read_message()
            if raw is None:
                for answer in self.answers.values():
                    if not answer.done():
                        answer.set_exception(ConnectionError("DevTools connection closed"))
                return
            message = json.loads(raw)
            answer = self.answers.pop(message.get("id"), None)
            if answer is not None and not answer.done():
                answer.set_result(message)
            elif "method" in message:
                self.events.append(message)

    async def send(self, method, session=None, **params):
        """Call a DevTools method (in a page's session); return its result."""
        call_id = next(self.ids)
        answer = asyncio.get_running_loop().create_future()
        self.answers[call_id] = answer
        message = {"id": call_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        await self.ws.write_message(json.dumps(message))
        reply = await asyncio.wait_for(answer, TIMEOUT)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    async def new_page(self, url):
        """Open ``url`` in a new tab and wait for its load event."""
        target = await self.send("Target.createTarget", url="about:blank")
        session = (await self.send("Target.attachToTarget", targetId=target["targetId"], flatten=True))["sessionId"]
        page = Page(self, session)
        await self.send("Page.enable", session)
        await page.goto(url)
        return page

    async def close(self):
        try:
            await asyncio.wait_for(self.send("Browser.close"), 5)
        except (RuntimeError, ConnectionError, asyncio.TimeoutError):
            pass
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except asyncio.TimeoutError:
            self.process.kill()
            await self.process.wait()
        self.ws.close()
        await asyncio.wait_for(self.reader, 5)
        await self.drain
        self.profile.cleanup()


class Page:
    """One tab."""

    def __init__(self, browser, session):
        self.browser = browser
        self.session = session

    async def send(self, method, **params):
        return await self.browser.send(method, self.session, **params)

    async def goto(self, url):
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'")

    async def evaluate(self, expression):
        """The value of a JavaScript expression (awaited if it is a promise)."""
        result = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise PageError(details.get("exception", {}).get("description") or details.get("text"))
        return result["result"].get("value")

    async def wait_for(self, condition, timeout=TIMEOUT):
        """Wait until the JavaScript ``condition`` is true, re-checked on every change of the document."""
        script = f"""new Promise((resolve) => {{
            const check = () => {{
                try {{ if ({condition}) {{ observer.disconnect(); resolve(true); }} }} catch (e) {{}}
            }};
            const observer = new MutationObserver(check);
            observer.observe(document, {{subtree: true, childList: true, attributes: true, characterData: true}});
            document.addEventListener("readystatechange", check);
            check();
        }})"""
        try:
            await asyncio.wait_for(self.evaluate(script), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"timed out waiting for: {condition}") from None

    async def type(self, selector, text):
        """Focus ``selector`` and type ``text`` as a user would."""
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        await self.send("Input.insertText", text=text)

    async def press_enter(self):
        for kind in ("keyDown", "keyUp"):
            await self.send(
                "Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13, text="\r"
            )

    async def click(self, selector):
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")

    async def screenshot(self, path):
        data = (await self.send("Page.captureScreenshot", format="png"))["data"]
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(data))


def chromium_version(executable):
    """``Chromium 1xx...`` (for skip messages and reports)."""
    result = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=TIMEOUT)
    return result.stdout.strip()
