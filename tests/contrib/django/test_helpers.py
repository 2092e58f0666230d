"""The helpers against a live Snorky: publish, authorize, progress (sync and async), settings, checks, 0.1 names."""

import asyncio
import datetime
import decimal
import json
import os
import subprocess
import sys
import unittest

from tests.contrib.django.harness import ROOT, Browser, LiveEnvironment, flush_sender, free_port, setup_django

setup_django()

from django.core.management import call_command  # noqa: E402
from django.core.serializers.json import DjangoJSONEncoder  # noqa: E402
from django.test import SimpleTestCase, override_settings  # noqa: E402

from snorky.backend import TransportError  # noqa: E402
from snorky.backend.django import (  # noqa: E402
    ProgressTask,
    aauthorize_subscription,
    acreate_task,
    apublish,
    apublish_deltas,
    authorize_subscription,
    create_task,
    publish,
    publish_deltas,
    stats,
)
from snorky.backend.django.apps import check_settings  # noqa: E402
from snorky.errors import SnorkyError  # noqa: E402

env = LiveEnvironment()


def setUpModule():
    env.start()


def tearDownModule():
    env.stop()


def down():
    """Settings pointing at a port nobody listens on."""
    return override_settings(SNORKY_BACKEND_URL=f"http://127.0.0.1:{free_port()}/backend")


class UpperEncoder(json.JSONEncoder):
    """Encodes sets as sorted lists (a custom SNORKY_JSON_ENCODER)."""

    def default(self, o):
        if isinstance(o, set):
            return sorted(o)
        return super().default(o)


class HelperTestCase(SimpleTestCase):
    def setUp(self):
        env.recorder.clear()
        stats.reset()
        self.browser = Browser(env.snorky.websocket_url)

    def tearDown(self):
        self.browser.close()


class PublishTests(HelperTestCase):
    def test_publish_encodes_with_django_json(self):
        """publish() reaches channel subscribers; dates and decimals are encoded as Django does."""
        self.browser.call("pubsub", "subscribe", channel="news")
        when = datetime.datetime(2026, 5, 1, 12, 30, tzinfo=datetime.timezone.utc)
        self.assertTrue(publish("news", {"when": when, "price": decimal.Decimal("1.50")}))
        message = self.browser.next("pubsub")
        self.assertEqual(message["message"], {"when": "2026-05-01T12:30:00Z", "price": "1.50"})

    @override_settings(SNORKY_JSON_ENCODER="tests.contrib.django.test_helpers.UpperEncoder")
    def test_custom_encoder(self):
        """SNORKY_JSON_ENCODER names the encoder by dotted path."""
        self.browser.call("pubsub", "subscribe", channel="sets")
        publish("sets", {3, 1, 2})
        self.assertEqual(self.browser.next("pubsub")["message"], [1, 2, 3])

    def test_apublish(self):
        """apublish() is the async twin."""
        self.browser.call("pubsub", "subscribe", channel="async")
        self.assertTrue(asyncio.run(apublish("async", "hello")))
        self.assertEqual(self.browser.next("pubsub")["message"], "hello")

    def test_publish_when_down(self):
        """Unreachable: publish() raises TransportError, or returns False with fail_silently."""
        with down():
            with self.assertRaises(TransportError):
                publish("news", "x")
            with self.assertLogs("snorky.backend.django", "ERROR"):
                self.assertFalse(publish("news", "x", fail_silently=True))
                self.assertFalse(asyncio.run(apublish("news", "x", fail_silently=True)))
            with self.assertRaises(TransportError):
                asyncio.run(apublish("news", "x"))
        self.assertEqual(stats.failures, 2)

    @override_settings(SNORKY_PUBSUB_SERVICE="nothing-here")
    def test_service_names_come_from_settings(self):
        """SNORKY_PUBSUB_SERVICE names the backend service called."""
        with self.assertRaises(SnorkyError):
            publish("news", "x")
        self.assertEqual(env.recorder.calls()[0][0], "nothing-here")


class DataSyncHelperTests(HelperTestCase):
    def test_authorize_and_publish_deltas(self):
        """authorize_subscription() and publish_deltas() (0.1's functions) call DataSync directly."""
        token = authorize_subscription([{"dealer": "todos", "query": ["==", "list", 1]}])
        self.browser.subscribe(token)
        delta = {"type": "insert", "model": "Todo", "data": {"id": 9, "list": 1}}
        publish_deltas([delta])
        self.assertEqual(self.browser.next_delta(), delta)

    def test_async_twins(self):
        """aauthorize_subscription() and apublish_deltas() are the async twins."""
        token = asyncio.run(aauthorize_subscription([{"dealer": "notes", "query": None}]))
        self.browser.subscribe(token)
        delta = {"type": "delete", "model": "Note", "data": {"id": 1}}
        asyncio.run(apublish_deltas([delta]))
        self.assertEqual(self.browser.next_delta(), delta)

    def test_refused_items_raise(self):
        """Snorky's refusal of a subscription raises SnorkyError with its code."""
        with self.assertRaises(SnorkyError) as raised:
            authorize_subscription([{"dealer": "no-such-dealer", "query": None}])
        self.assertEqual(raised.exception.code, "no_such_dealer")


class ProgressTests(HelperTestCase):
    def test_a_job_reports_progress(self):
        """A view creates the task, a job moves it; a watching page sees init, updates and done."""
        task = create_task("Import", max=3)
        state = self.browser.call("progress", "subscribe", task=task.id)
        self.assertEqual((state["name"], state["value"], state["max"]), ("Import", 0, 3))
        self.assertEqual(self.browser.next("progress")["type"], "init")
        with ProgressTask(task.id) as job:
            job.update(1, label="row 1")
            job.tick(label="row 2")
        updates = [self.browser.next("progress") for _ in range(3)]
        self.assertEqual(
            [(u["type"], u.get("value"), u["label"]) for u in updates[:2]],
            [("update", 1, "row 1"), ("update", 2, "row 2")],
        )
        self.assertEqual((updates[2]["type"], updates[2]["status"]), ("done", "completed"))

    def test_a_failing_job_fails_its_task(self):
        """An exception leaving the block fails the task with its text, and goes on."""
        task = create_task("Import")
        self.browser.call("progress", "subscribe", task=task.id)
        self.browser.next("progress")
        with self.assertRaises(ValueError), ProgressTask(task.id):
            raise ValueError("row 7 is broken")
        done = self.browser.next("progress")
        self.assertEqual((done["status"], done["error"]), ("failed", "row 7 is broken"))

    def test_async_job(self):
        """acreate_task() and the a-methods, with async with."""
        task = asyncio.run(acreate_task("Async", max=2, task_id="async-task"))
        self.assertEqual(task.id, "async-task")
        self.browser.call("progress", "subscribe", task="async-task")
        self.browser.next("progress")

        async def job():
            async with ProgressTask("async-task") as progress:
                await progress.atick()
                await progress.aupdate(2, label="all")

        asyncio.run(job())
        kinds = [self.browser.next("progress")["type"] for _ in range(3)]
        self.assertEqual(kinds, ["update", "update", "done"])

    def test_snorky_down_disables_the_task(self):
        """Unreachable: the job runs on, one failure is counted and logged, later calls are skipped."""
        with down(), self.assertLogs("snorky.backend.django", "ERROR") as logs:
            task = create_task("Offline", max=100)
            with task:
                for value in range(50):
                    task.update(value)
        self.assertTrue(task.disabled)
        self.assertEqual((stats.failures, len(logs.records)), (1, 1))

    def test_fail_loudly(self):
        """fail_silently=False raises Snorky's errors."""
        task = ProgressTask("never-created", fail_silently=False)
        with self.assertRaises(SnorkyError) as raised:
            task.update(3)
        self.assertEqual(raised.exception.code, "no_such_task")


class SettingsTests(SimpleTestCase):
    def test_system_checks(self):
        """The checks flag a missing API key, a bad encoder and a bad SNORKY; the test project passes."""
        call_command("check", verbosity=0)
        saved = os.environ.pop("SNORKY_API_KEY", None)
        try:
            with override_settings(SNORKY_API_KEY=None, SNORKY_JSON_ENCODER="json.nothing", SNORKY={"color": 1}):
                ids = [message.id for message in check_settings()]
        finally:
            if saved is not None:
                os.environ["SNORKY_API_KEY"] = saved
        self.assertEqual(ids, ["snorky.W001", "snorky.E002", "snorky.E003"])

    @override_settings(SNORKY_API_KEY=None)
    def test_api_key_from_the_environment(self):
        """Without the setting, the SNORKY_API_KEY environment variable is the key."""
        from snorky.backend.django import conf

        os.environ["SNORKY_API_KEY"] = "from-env"
        try:
            self.assertEqual(conf.api_key(), "from-env")
        finally:
            del os.environ["SNORKY_API_KEY"]

    def test_snorky_01_names(self):
        """0.1's module attributes are still there, built from the settings on access."""
        import snorky.backend.django as module
        from snorky.backend.django import SNORKY_DATASYNC_SERVICE, SNORKY_JSON_ENCODER, http_transport, snorky_backend

        self.assertEqual(SNORKY_DATASYNC_SERVICE, "datasync")
        self.assertIs(SNORKY_JSON_ENCODER, DjangoJSONEncoder)
        self.assertIs(http_transport, snorky_backend.transport)
        self.assertEqual(http_transport.key, "django-tests-api-key")
        with self.assertRaises(AttributeError):
            module.no_such_name  # noqa: B018

    def test_stats_as_dict(self):
        """stats.as_dict() gives the counters for a health check."""
        flush_sender()
        stats.reset()
        self.assertEqual(
            stats.as_dict(),
            {
                "requests": 0,
                "deltas": 0,
                "failures": 0,
                "lost_deltas": 0,
                "unknown_deltas": 0,
                "dropped_deltas": 0,
                "queued_deltas": 0,
                "last_error": "",
            },
        )


class ImportTests(unittest.TestCase):
    def test_modules_import_without_settings(self):
        """Every module imports in a process without Django settings (the docs build does this)."""
        code = (
            "import snorky.backend.django, snorky.backend.django.apps, snorky.backend.django.conf,"
            " snorky.backend.django.progress, snorky.backend.django.rest_framework,"
            " snorky.backend.django.management.commands.runsnorky\n"
            "from snorky.backend.django import subscribable, publish_deltas, authorize_subscription,"
            " rest_framework_jsonify\n"
            "from snorky.backend.django.rest_framework import SubscribeModelMixin, ListSubscribeModelMixin,"
            " subscription_in_response\n"
            "from django.conf import settings\n"
            "assert not settings.configured\n"
        )
        environ = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stderr)
