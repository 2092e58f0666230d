"""Django's background sender: what each kind of failure counts, and a process's life (exit, fork)."""

import json
import subprocess
import sys
import unittest

from django.test import override_settings

from tests.backend.test_connector import SilentServer
from tests.contrib.django.harness import ROOT, TIMEOUT, BackendRecorder, SnorkyProcess, flush_sender, setup_django

setup_django()

from snorky.backend.django import sender, stats  # noqa: E402

DELTA = {"type": "insert", "model": "Todo", "data": {"id": 1, "list": 1, "title": "t", "done": False}}

snorky = recorder = None


def setUpModule():
    global snorky, recorder
    snorky = SnorkyProcess()
    recorder = BackendRecorder(snorky.backend_url)


def tearDownModule():
    recorder.stop()
    snorky.stop()


def run(*args):
    result = subprocess.run(
        [sys.executable, "-m", "tests.contrib.django.sender_process", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
    )
    if result.returncode != 0:
        raise AssertionError(result.stdout + result.stderr)
    return json.loads(result.stdout.splitlines()[-1])


class ProcessTests(unittest.TestCase):
    def setUp(self):
        recorder.clear()

    def test_exit_publishes_what_is_queued(self):
        """A process that exits right after a commit still publishes its deltas on the way out."""
        counters = run("exit", recorder.url)
        self.assertEqual(counters["queued_deltas"] + counters["deltas"], 1)
        [(_, command, params)] = recorder.calls()
        self.assertEqual((command, params["deltas"][0]["data"]["title"]), ("publishDeltas", "from a process"))

    def test_forked_child_has_a_queue_of_its_own(self):
        """After a fork the child starts with an empty queue and a thread of its own."""
        with SilentServer() as silent:
            counters = run("fork", recorder.url, silent.url)
        self.assertEqual((counters["queued_at_fork"], counters["flushed"], counters["deltas"]), (0, True, 1))
        self.assertEqual(len(recorder.calls("publishDeltas")), 1)


class OutcomeTests(unittest.TestCase):
    """Each way a call can end, counted once, against real servers."""

    def setUp(self):
        flush_sender()
        stats.reset()

    def publish(self, url, **settings):
        with override_settings(SNORKY_BACKEND_URL=url, **settings), self.assertLogs("snorky.backend.django") as logs:
            sender.submit([DELTA, DELTA])
            flush_sender()
        return logs.output

    def test_accepted(self):
        """Snorky's answer: the deltas are counted as published."""
        with override_settings(SNORKY_BACKEND_URL=snorky.backend_url):
            sender.submit([DELTA, DELTA])
            flush_sender()
        self.assertEqual((stats.requests, stats.deltas, stats.lost_deltas, stats.unknown_deltas), (1, 2, 0, 0))

    def test_refused_key_is_lost(self):
        """Snorky refusing the API key (HTTP 401) is an answer: the deltas are lost, not unknown."""
        output = self.publish(snorky.backend_url, SNORKY_API_KEY="not-the-key")
        self.assertIn("HTTP 401", output[0])
        self.assertEqual((stats.lost_deltas, stats.unknown_deltas, stats.deltas), (2, 0, 0))

    def test_connection_closed_after_sending_is_unknown(self):
        """A server that reads the call and hangs up without answering: the outcome is unknown."""
        with SilentServer(hang_up=True) as server:
            self.publish(server.url)
        self.assertEqual((stats.unknown_deltas, stats.lost_deltas, stats.deltas), (2, 0, 0))

    def test_no_answer_in_time_is_unknown(self):
        """A server that never answers: after SNORKY_TIMEOUT the outcome is unknown."""
        with SilentServer() as server:
            output = self.publish(server.url, SNORKY_TIMEOUT=0.2)
        self.assertIn("timed out", output[0])
        self.assertEqual((stats.unknown_deltas, stats.lost_deltas), (2, 0))
