"""/metrics: scraped with a real HTTP client while real WebSocket clients work, the counters
move by exactly what was done."""

import asyncio
import json
import time
import unittest

from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient
from tornado.testing import AsyncTestCase, gen_test
from tornado.websocket import websocket_connect

from snorky.config import Config
from snorky.histogram import Histogram
from snorky.metrics import Metrics
from snorky.server import SnorkyServer
from tests.redis_server import RedisServer

TIMEOUT = 20


def frame(command, call_id, **params):
    return json.dumps({"service": "pubsub", "message": {"command": command, "params": params, "callId": call_id}})


class MetricsTests(AsyncTestCase):
    async def scrape(self, port):
        response = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/metrics")
        self.assertTrue(response.headers["Content-Type"].startswith("text/plain"))
        samples = {}
        for family in text_string_to_metric_families(response.body.decode()):
            for sample in family.samples:
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "node"))
                samples[sample.name, labels] = sample.value
                self.assertEqual(sample.labels["node"], self.server.broker.node_id)
        return samples

    async def start_server(self, **options):
        """A server with a backend port (where /metrics is) and publishing open to anyone."""
        config = Config.from_dict(
            {
                "frontend": {"port": 0, "drain_window": 0},
                "backend": {"port": 0, "api_key": "metrics-key"},
                "namespaces": {"allow_publish": "anyone"},
                **options,
            }
        )
        self.server = SnorkyServer(config)
        await self.server.start()
        return self.server

    def moved(self, before, after, name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    async def read(self, ws):
        return json.loads(await asyncio.wait_for(ws.read_message(), TIMEOUT))["message"]

    @gen_test(timeout=60)
    async def test_counters_move_by_what_was_done(self):
        """Connections, messages, commands, deliveries, errors and disconnects, counted exactly."""
        server = await self.start_server()
        try:
            port = server.backend_port
            before = await self.scrape(port)
            url = f"ws://127.0.0.1:{server.frontend_port}/ws"
            alice, bob, carol = [await websocket_connect(url) for _ in range(3)]
            for ws in (alice, bob):
                ws.write_message(frame("subscribe", 1, channel="news"))
                self.assertEqual((await self.read(ws))["type"], "response")
            for i in range(5):
                carol.write_message(frame("publish", 10 + i, channel="news", message=i))
            for _ in range(5):
                self.assertEqual((await self.read(carol))["type"], "response")
            for ws in (alice, bob):
                for i in range(5):
                    self.assertEqual((await self.read(ws))["message"], i)
            carol.write_message("{not json")
            self.assertEqual((await self.read(carol))["code"], "invalid_json")
            carol.write_message(frame("nope", 20))
            self.assertEqual((await self.read(carol))["code"], "unknown_command")
            gauges = await self.scrape(port)
            self.assertEqual(gauges["snorky_connections", (("transport", "websocket"),)], 3)
            self.assertEqual(gauges["snorky_channels", (("service", "pubsub"),)], 1)
            carol.close(1000)
            while len(server.registry.clients) > 2:
                await asyncio.sleep(0.01)
            after = await self.scrape(port)
        finally:
            for ws in (alice, bob):
                ws.close()
            await server.stop(grace=1)

        def count(name, **labels):
            return self.moved(before, after, name, **labels)

        self.assertEqual(count("snorky_connects_total", transport="websocket"), 3)
        self.assertEqual(count("snorky_disconnects_total", transport="websocket", code="1000"), 1)
        self.assertEqual(count("snorky_messages_received_total", service="pubsub"), 2 + 5 + 1)
        self.assertEqual(count("snorky_messages_received_total", service=""), 0)  # the bad JSON has no service
        self.assertEqual(count("snorky_messages_sent_total", service="pubsub"), 5)
        self.assertEqual(count("snorky_deliveries_total", service="pubsub"), 10)
        ok = {"service": "pubsub", "outcome": "ok"}
        self.assertEqual(count("snorky_command_duration_seconds_count", command="subscribe", **ok), 2)
        self.assertEqual(count("snorky_command_duration_seconds_count", command="publish", **ok), 5)
        self.assertEqual(
            count("snorky_command_duration_seconds_count", service="pubsub", command="nope", outcome="error"), 1
        )
        self.assertEqual(count("snorky_errors_total", service="", code="invalid_json"), 1)
        self.assertEqual(count("snorky_errors_total", service="pubsub", code="unknown_command"), 1)
        self.assertGreater(count("snorky_bytes_written_total", service="pubsub"), 0)
        self.assertEqual(after["snorky_connections", (("transport", "websocket"),)], 2)

    @gen_test(timeout=60)
    async def test_broker_publish_latency_on_redis(self):
        """On a real Redis, each publish a client makes is timed once, to Redis's answer."""
        redis = RedisServer().start()
        server = await self.start_server(broker=redis.url, redis={"prefix": "metrics-latency"})
        try:
            before = await self.scrape(server.backend_port)
            ws = await websocket_connect(f"ws://127.0.0.1:{server.frontend_port}/ws")
            for i in range(4):
                ws.write_message(frame("publish", i, channel="news", message=i))
            for _ in range(4):
                self.assertEqual((await self.read(ws))["type"], "response")
            ws.close()
            after = await self.scrape(server.backend_port)
        finally:
            await server.stop(grace=1)
            redis.close()
        name = "snorky_broker_publish_duration_seconds"
        self.assertEqual(self.moved(before, after, name + "_count"), 4)
        self.assertEqual(self.moved(before, after, "snorky_broker_published_total"), 4)
        self.assertGreater(self.moved(before, after, name + "_sum"), 0)
        self.assertEqual(after[name + "_bucket", (("le", "+Inf"),)], after[name + "_count", ()])


class HistogramTests(unittest.TestCase):
    def test_buckets_hold_what_is_at_or_under_their_bound(self):
        histogram = Histogram((0.1, 1.0))
        for value in (0.05, 0.1, 0.5, 1.0, 3.0):
            histogram.observe(value)
        self.assertEqual(histogram.cumulative(), [(0.1, 2), (1.0, 4), (float("inf"), 5)])
        self.assertEqual(histogram.count, 5)
        self.assertAlmostEqual(histogram.sum, 4.65)

    def test_exposed_as_a_prometheus_histogram(self):
        """The plain counts come out as _bucket (cumulative, le as Prometheus writes it), _count and _sum."""
        metrics = Metrics("n1")
        for started_ago in (0.0, 0.0, 20.0):
            metrics.command_done("echo", "echo", time.perf_counter() - started_ago, "ok")
        metrics.command_done("echo", "echo", time.perf_counter(), "unknown_command")
        samples = {}
        for family in text_string_to_metric_families(metrics.exposition().decode()):
            for sample in family.samples:
                samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
        ok = (("command", "echo"), ("node", "n1"), ("outcome", "ok"), ("service", "echo"))
        self.assertEqual(samples["snorky_command_duration_seconds_count", ok], 3)
        self.assertEqual(samples["snorky_command_duration_seconds_bucket", (*ok[:1], ("le", "10.0"), *ok[1:])], 2)
        self.assertEqual(samples["snorky_command_duration_seconds_bucket", (*ok[:1], ("le", "+Inf"), *ok[1:])], 3)
        self.assertGreaterEqual(samples["snorky_command_duration_seconds_sum", ok], 20.0)
        error = (("command", "echo"), ("node", "n1"), ("outcome", "error"), ("service", "echo"))
        self.assertEqual(samples["snorky_command_duration_seconds_count", error], 1)


class MetricsEdgeTests(unittest.TestCase):
    """Cases an app can bring about: metrics given late, calls from before, codes of its own."""

    def test_a_call_that_arrived_untimed_is_not_timed(self):
        """A call made before its service had metrics (registered later) counts its error but
        no duration: its arrival time was never read."""
        from snorky import ServiceRegistry
        from snorky.services.rpc import Request, RPCService

        class Echo(RPCService):
            pass

        class Recorder:
            def send(self, message):
                pass

        echo = Echo("echo")
        early_ok = Request(echo, Recorder(), {"command": "x", "callId": 1})
        early_error = Request(echo, Recorder(), {"command": "x", "callId": 2})
        metrics = Metrics("n1")
        ServiceRegistry([echo], metrics=metrics)
        early_ok.reply(1)
        early_error.error("Unknown command", "unknown_command")
        timed = Request(echo, Recorder(), {"command": "x", "callId": 3})
        timed.reply(2)
        self.assertEqual(metrics.succeeded["echo"]["x"].count, 1)
        self.assertEqual(metrics.failed, {})
        self.assertEqual(metrics.errors, {("echo", "unknown_command"): 1})

    def test_metrics_given_after_registration_time_the_commands(self):
        """registry.metrics set after the services are registered: their commands are timed too."""
        from snorky import ServiceRegistry
        from snorky.services.rpc import RPCService, rpc_command

        class Echo(RPCService):
            @rpc_command
            def echo(self, req, message):
                return message

        class Recorder:
            def send(self, message):
                pass

        echo = Echo("echo")
        registry = ServiceRegistry([echo])
        registry.metrics = metrics = Metrics("n1")
        registry.process_message_from(
            Recorder(), {"service": "echo", "message": {"command": "echo", "params": {"message": 1}}}
        )
        registry.process_message_from(Recorder(), {"service": "echo", "message": {"command": "nope"}})
        self.assertEqual(metrics.succeeded["echo"]["echo"].count, 1)
        self.assertEqual(metrics.failed[("echo", "nope")].count, 1)
        registry.metrics = None
        self.assertIsNone(echo.command_timings)

    def test_an_error_code_that_is_not_text_is_exposed_as_text(self):
        """An app's RPCError(code=409) is labelled "409" and does not break the scrape."""
        from snorky import ServiceRegistry
        from snorky.services.rpc import RPCError, RPCService, rpc_command

        class Strict(RPCService):
            @rpc_command
            def conflict(self, req):
                raise RPCError("Conflict", code=409)

        class Recorder:
            def send(self, message):
                pass

        metrics = Metrics("n1")
        registry = ServiceRegistry([Strict("strict")], metrics=metrics)
        for command in ("conflict", "nope"):
            registry.process_message_from(Recorder(), {"service": "strict", "message": {"command": command}})
        families = {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())}
        codes = {s.labels["code"]: s.value for s in families["snorky_errors"].samples if s.name.endswith("_total")}
        self.assertEqual(codes, {"409": 1, "unknown_command": 1})
