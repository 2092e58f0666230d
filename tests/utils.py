"""Helpers shared by the tests: real clients that record, and one-call RPC."""

from __future__ import annotations

import contextlib
import itertools
import re
import unittest
from collections.abc import Iterator
from typing import Any

from snorky.brokers.memory import MemoryBroker
from snorky.client import Client
from snorky.hashable import make_hashable

MS = 0.001
"""One millisecond, the unit test timeouts are written in."""

_call_ids = itertools.count(1)


class RecordingClient(Client):
    """A real :class:`Client` whose ``send`` appends each message to :attr:`sent`."""

    def __init__(self, identity: Any = None) -> None:
        super().__init__()
        self.identity = identity
        self.sent: list[Any] = []

    @property
    def remote_address(self) -> str:
        return f"test:{self.identity}"

    def send(self, msg: Any) -> None:
        self.sent.append(msg)

    def bodies(self, service: str | None = None) -> list[Any]:
        """The ``message`` part of what was sent (optionally only from one service)."""
        return [m["message"] for m in self.sent if service is None or m["service"] == service]

    def notifications(self) -> list[Any]:
        """Bodies that are not RPC answers."""
        return [b for b in self.bodies() if b.get("type") not in ("response", "error")]


class PlainClient:
    """A Snorky 0.1-style client: any object with ``send(dict)``, not a ``Client``."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, msg: Any) -> None:
        self.sent.append(msg)


def call_raw(service: Any, client: Any, command: str, /, **params: Any) -> dict[str, Any]:
    """Call ``command`` through the service's message entry point; return the answer body."""
    call_id = next(_call_ids)
    before = len(client.sent)
    service.process_message_from(client, make_hashable({"command": command, "params": params, "callId": call_id}))
    answers = [
        m["message"]
        for m in client.sent[before:]
        if m["message"].get("callId") == call_id and m["message"].get("type") in ("response", "error")
    ]
    assert len(answers) == 1, f"expected one answer to {command}, got {answers}"
    return answers[0]


def call(service: Any, client: Any, command: str, /, **params: Any) -> Any:
    """Call ``command`` and return its data; fail the test if it answered an error."""
    answer = call_raw(service, client, command, **params)
    assert answer["type"] == "response", f"{command} failed: {answer}"
    return answer["data"]


def call_error(service: Any, client: Any, command: str, /, **params: Any) -> tuple[str, str]:
    """Call ``command`` expecting an error; return its ``(message, code)``."""
    answer = call_raw(service, client, command, **params)
    assert answer["type"] == "error", f"{command} should have failed: {answer}"
    return answer["message"], answer["code"]


def call_refused(service: Any, client: Any, command: str, /, **params: Any) -> tuple[str, str, str | None]:
    """Call ``command`` expecting an error; return its ``(message, code, detail)``."""
    answer = call_raw(service, client, command, **params)
    assert answer["type"] == "error", f"{command} should have failed: {answer}"
    return answer["message"], answer["code"], answer.get("detail")


@contextlib.contextmanager
def expect_log(test: unittest.TestCase, pattern: str, level: str = "WARNING") -> Iterator[None]:
    """Expect a ``snorky`` log line matching ``pattern`` (searched) at ``level`` or above.

    The lines are captured, so expected warnings do not clutter the output.
    """
    with test.assertLogs("snorky", level) as captured:
        yield
    messages = [record.getMessage() for record in captured.records]
    test.assertTrue(any(re.search(pattern, m) for m in messages), f"no log line matches {pattern!r}: {messages}")


class ClosesSockets:
    """Mixin for AsyncHTTPTestCase: WebSockets opened with :meth:`open_ws` are closed on tearDown.

    (``addCleanup`` would run after the test's event loop is closed.)
    """

    def setUp(self) -> None:
        super().setUp()  # type: ignore[misc]
        self.sockets: list[Any] = []

    def tearDown(self) -> None:
        for ws in self.sockets:
            ws.close()
        super().tearDown()  # type: ignore[misc]

    async def open_ws(self, request: Any) -> Any:
        from tornado.websocket import websocket_connect

        ws = await websocket_connect(request)
        self.sockets.append(ws)
        return ws


class FakeTimeoutFactory:
    """A stand-in for the IOLoop's timers (named as such): tests fire them by hand."""

    def __init__(self):
        self.pending = []

    def call_later(self, delay, callback, *args):
        handle = FakeTimeout(self, delay, callback, args)
        self.pending.append(handle)
        return handle

    def fire_all(self):
        pending, self.pending = self.pending, []
        for handle in pending:
            handle.callback(*handle.args)


class FakeTimeout:
    def __init__(self, factory, delay, callback, args):
        self.factory, self.delay, self.callback, self.args = factory, delay, callback, args

    def cancel(self):
        self.factory.pending.remove(self)


class ClosableClient(RecordingClient):
    """A RecordingClient that remembers the close code it was closed with."""

    def __init__(self, identity=None):
        super().__init__(identity)
        self.closed_with = None

    def close(self, code):
        self.closed_with = code


class InFlightBroker(MemoryBroker):
    """A broker whose messages arrive later, at flush(), to the handlers subscribed at publish time."""

    def __init__(self):
        super().__init__()
        self.in_flight = []

    def publish(self, topic, out):
        self.in_flight.append((topic, out, tuple(self.handlers.get(topic, ()))))

    def flush(self):
        while self.in_flight:
            topic, out, handlers = self.in_flight.pop(0)
            for handler in handlers:
                handler(topic, out)


def rpc_frame(service: str, command: str, call_id: Any = 1, **params: Any) -> str:
    """The JSON text of an RPC call, as a client sends it."""
    import json

    return json.dumps({"service": service, "message": {"command": command, "params": params, "callId": call_id}})
