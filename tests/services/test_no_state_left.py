"""10,000 clients connect, use every service, and disconnect: no state is left behind."""

import collections
import time
import unittest

from snorky import ServiceRegistry
from snorky.auth import sign_token
from snorky.services.auth import AuthService
from snorky.services.chat import ChatService
from snorky.services.cursors import CursorsService
from snorky.services.datasync import DataSyncBackend, DataSyncService
from snorky.services.datasync.dealers import FilterDealer
from snorky.services.messaging import MessagingService
from snorky.services.progress import ProgressService
from snorky.services.pubsub import PubSubService
from tests.utils import ClosableClient, FakeTimeoutFactory, call

SECRET = "cycles-secret-long-enough-for-hs256-tokens"
CYCLES = 10_000
CONTAINERS = (dict, set, list, collections.deque, frozenset)


class Rows(FilterDealer):
    name = "rows"
    model = "Row"


def state_sizes(root):
    """The size of every container reachable from ``root`` through snorky objects, by path."""
    sizes, seen = {}, set()

    def walk(value, path):
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, CONTAINERS):
            sizes[path] = len(value)
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in list(items)[:50]:
                walk(item, f"{path}[{key!r}]")
        elif type(value).__module__.startswith("snorky.") and hasattr(value, "__dict__"):
            for name, attribute in vars(value).items():
                if name not in ("registry", "frontend", "verifier", "timeout_factory"):
                    walk(attribute, f"{path}.{name}")
        elif hasattr(type(value), "__slots__") and type(value).__module__.startswith("snorky."):
            for name in type(value).__slots__:
                walk(getattr(value, name, None), f"{path}.{name}")

    walk(root, "registry")
    return sizes


class NoStateLeftTests(unittest.TestCase):
    def test_ten_thousand_connect_disconnect_cycles(self):
        """After 10,000 clients used every service and left, every structure is back to its size."""
        timers = FakeTimeoutFactory()
        datasync = DataSyncService("datasync", [Rows])
        progress = ProgressService("progress", timeout_factory=timers)
        services = [
            AuthService("auth", secret=SECRET, timeout_factory=timers),
            PubSubService("pubsub"),
            ChatService("chat", history_size=3),
            CursorsService("cursors"),
            MessagingService("messaging"),
            datasync,
            progress,
        ]
        registry = ServiceRegistry(services)
        backend = DataSyncBackend("datasync", datasync, timeout_factory=timers)
        progress.create_task("kept", task_id="job")
        app_server = ClosableClient("app")
        before = state_sizes(registry)
        now = time.time()
        tokens = {f"user{i}": sign_token(f"user{i}", SECRET, now=now) for i in range(100)}

        for i in range(CYCLES):
            client = ClosableClient()
            registry.authenticate(client, tokens[f"user{i % 100}"])
            registry.client_connected(client)
            room = f"room{i % 7}"
            call(services[1], client, "subscribe", channel=room)
            call(services[2], client, "join", channel=room)
            call(services[2], client, "send", channel=room, body=i)
            call(services[3], client, "join", document=room)
            call(services[3], client, "createCursor", privateHandle=1, document=room, position=i, status=None)
            call(services[4], client, "registerParticipant", name=f"p{i}")
            token = call(
                backend, app_server, "authorizeSubscription", items=[{"dealer": "rows", "query": ["==", "room", room]}]
            )
            call(datasync, client, "acquireSubscription", token=token)
            call(progress, client, "subscribe", task="job")
            if i % 2:
                call(services[2], client, "leave", channel=room)
            registry.client_disconnected(client)

        self.assertEqual(timers.pending, [], "timers left behind")
        after = state_sizes(registry)
        grown = {path: (before.get(path), size) for path, size in after.items() if size != before.get(path, 0)}
        self.assertEqual(grown, {})
        self.assertEqual(set(registry.broker.handlers), {'datasync:"__tokens__"'})  # listened to from the start
