"""Several `snorky serve` processes sharing a real redis-server: a cluster on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import tempfile
from typing import Any

from tornado.websocket import websocket_connect

from snorky.auth import sign_token
from snorky.backend import AsyncSnorkyBackend, AsyncSnorkyHTTPTransport

SECRET = "cluster-token-secret-long-enough-for-hs256"
API_KEY = "cluster-api-key"
TIMEOUT = 15.0


class Node:
    """One `snorky serve` process; its log lines are collected as they come."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, backend_port: int, name: str) -> None:
        self.process = process
        self.port = port
        self.backend_port = backend_port
        self.name = name
        self.backend = AsyncSnorkyBackend(AsyncSnorkyHTTPTransport(f"http://127.0.0.1:{backend_port}/backend", API_KEY))
        self.lines: list[str] = []
        """Its log (stderr), line by line."""
        self._new_line = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read_log())

    async def _read_log(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.lines.append(line.decode())
            self._new_line.set()
        self._new_line.set()

    async def logged(self, text: str, count: int = 1, timeout: float = TIMEOUT) -> None:
        """Wait until ``text`` is in ``count`` lines of the log."""

        async def wait() -> None:
            while sum(text in line for line in self.lines) < count:
                if self._reader.done():
                    raise AssertionError(f"node {self.name} exited before logging {text!r}")
                self._new_line.clear()
                await self._new_line.wait()

        await asyncio.wait_for(wait(), timeout)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def pause(self) -> None:
        """Stop the process (SIGSTOP), as a stalled machine would."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    async def connect(self, identity: str | None = None) -> Page:
        query = f"?token={sign_token(identity, SECRET)}" if identity else ""
        return Page(await websocket_connect(f"ws://127.0.0.1:{self.port}/ws{query}"))

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signum)
        code = await asyncio.wait_for(self.process.wait(), TIMEOUT)
        await asyncio.wait_for(self._reader, TIMEOUT)
        return code


class Page:
    """A browser page: RPC calls and a queue of notifications, over a real WebSocket."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0
        self.answers: dict[int, asyncio.Future[Any]] = {}
        self.notifications: asyncio.Queue[Any] = asyncio.Queue()
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            raw = await self.ws.read_message()
            if raw is None:
                self.notifications.put_nowait(None)
                return
            envelope = json.loads(raw)
            message = envelope["message"]
            waiter = self.answers.pop(message.get("callId"), None) if isinstance(message, dict) else None
            if waiter is not None and message.get("type") in ("response", "error"):
                waiter.set_result(message)
            else:
                self.notifications.put_nowait((envelope["service"], message))

    async def call(self, service: str, command: str, **params: Any) -> Any:
        self.next_id += 1
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.answers[self.next_id] = answer
        self.ws.write_message(
            json.dumps({"service": service, "message": {"command": command, "params": params, "callId": self.next_id}})
        )
        message = await asyncio.wait_for(answer, TIMEOUT)
        assert message["type"] == "response", message
        return message["data"]

    async def next(self, service: str | None = None, kind: str | None = None, timeout: float = TIMEOUT) -> Any:
        while True:
            item = await asyncio.wait_for(self.notifications.get(), timeout)
            if item is None:
                return None
            if (service is None or item[0] == service) and (kind is None or item[1].get("type") == kind):
                return item[1]

    def close(self) -> None:
        self.reader.cancel()
        self.ws.close()


class Cluster:
    """Start nodes with one configuration (a TOML text) on a shared Redis."""

    def __init__(
        self,
        redis_url: str,
        config: str,
        prefix: str,
        heartbeat: float = 0.2,
        presence_ttl: float = 2.0,
        timeout: float = 3.0,
    ) -> None:
        self.folder = tempfile.TemporaryDirectory(prefix="snorky-cluster-")
        self.path = os.path.join(self.folder.name, "snorky.toml")
        self.prefix = prefix
        self.presence_ttl = presence_ttl
        with open(self.path, "w") as f:
            f.write(
                f'broker = "{redis_url}"\nlog_level = "info"\n[redis]\nprefix = "{prefix}"\n'
                f"heartbeat = {heartbeat}\npresence_ttl = {presence_ttl}\ntimeout = {timeout}\n"
                # The clients of these tests publish, which a configuration file must allow.
                '[namespaces]\nallow_publish = "anyone"\n' + config
            )
        self.nodes: list[Node] = []
        self.pages: list[Page] = []

    async def start_node(self, name: str = "node", port: int = 0) -> Node:
        env = dict(os.environ, SNORKY_API_KEY=API_KEY, SNORKY_TOKEN_SECRET=SECRET)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "snorky",
            "serve",
            "--config",
            self.path,
            "--port",
            str(port),
            "--backend-port",
            "0",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        line = (await asyncio.wait_for(process.stdout.readline(), TIMEOUT)).decode()
        match = re.search(r"serving on http://127\.0\.0\.1:(\d+), backend on port (\d+)", line)
        if not match:
            await process.wait()
            raise AssertionError(f"node {name} did not start: {(await process.stderr.read()).decode()}")
        node = Node(process, int(match.group(1)), int(match.group(2)), name)
        self.nodes.append(node)
        return node

    async def start_nodes(self, *names: str) -> list[Node]:
        """Start several nodes at once."""
        return list(await asyncio.gather(*(self.start_node(name) for name in names)))

    async def page(self, node: Node, identity: str | None = None) -> Page:
        page = await node.connect(identity)
        self.pages.append(page)
        return page

    async def close(self) -> list[str]:
        """Stop everything; return each node's stderr (its log)."""
        for page in self.pages:
            page.close()
        logs = []
        for node in self.nodes:
            await node.stop(signal.SIGKILL if node.process.returncode is None else signal.SIGTERM)
            logs.append(node.log)
        self.folder.cleanup()
        return logs
