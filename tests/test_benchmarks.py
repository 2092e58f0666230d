"""The benchmark tooling: Snorky's benchmark server on this tree and on an older commit
(``run.py --baseline``), and the same-run comparisons of the report."""

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import unittest
from pathlib import Path

from tornado.testing import AsyncTestCase, gen_test
from tornado.websocket import websocket_connect

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SERVER = BENCHMARKS / "servers" / "snorky_server.py"
TIMEOUT = 20
OLD = "50269c3"
"""main before the metrics and channel-rules work: no ServiceRegistry(metrics=), no
PubSubService(namespaces=)."""

sys.path.insert(0, str(BENCHMARKS))
import instructions  # noqa: E402
import run  # noqa: E402


def has_commit(ref):
    if shutil.which("git") is None:
        return False
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        cwd=BENCHMARKS.parent,
        capture_output=True,
    )
    return found.returncode == 0


def call(service, command, call_id, **params):
    return json.dumps({"service": service, "message": {"command": command, "params": params, "callId": call_id}})


class BenchmarkServer(AsyncTestCase):
    """Starts ``snorky_server.py`` on a free port, on this tree or on ``source``."""

    def setUp(self):
        super().setUp()
        self.processes = []
        self.sockets = []

    def tearDown(self):
        for ws in self.sockets:
            ws.close()
        for process in self.processes:
            if process.returncode is None:
                process.terminate()
            self.io_loop.run_sync(lambda process=process: asyncio.wait_for(process.communicate(), TIMEOUT))
        super().tearDown()

    async def start(self, *options, source=None):
        env = run.server_env(source) or dict(os.environ)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SERVER),
            "--port",
            "0",
            *options,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        self.processes.append(process)
        line = (await asyncio.wait_for(process.stdout.readline(), TIMEOUT)).decode()
        match = re.search(r"listening on port (\d+)", line)
        if match is None:
            stderr = (await asyncio.wait_for(process.stderr.read(), TIMEOUT)).decode()
            self.fail(f"no port in {line!r}: {stderr}")
        ws = await websocket_connect(f"ws://127.0.0.1:{match.group(1)}/ws")
        self.sockets.append(ws)
        return ws

    async def ask(self, ws, message):
        ws.write_message(message)
        return json.loads(await asyncio.wait_for(ws.read_message(), TIMEOUT))["message"]


class NamespacesSetupTests(BenchmarkServer):
    @gen_test(timeout=60)
    async def test_namespaces_check_every_channel(self):
        """With --namespaces, a channel outside the default namespace is refused: the rules run."""
        ws = await self.start("--namespaces")
        reply = await self.ask(ws, call("pubsub", "subscribe", 1, channel="elsewhere:bench"))
        self.assertEqual((reply["type"], reply["code"]), ("error", "forbidden"))

    @gen_test(timeout=60)
    async def test_namespaces_let_anyone_subscribe_and_publish(self):
        """With --namespaces, W1's subscribe and publish on channel bench are answered and delivered."""
        ws = await self.start("--namespaces")
        self.assertEqual((await self.ask(ws, call("pubsub", "subscribe", 1, channel="bench")))["type"], "response")
        ws.write_message(call("pubsub", "publish", 2, channel="bench", message="hello"))
        received = [json.loads(await asyncio.wait_for(ws.read_message(), TIMEOUT))["message"] for _ in range(2)]
        self.assertIn({"type": "message", "channel": "bench", "message": "hello"}, received)
        self.assertIn({"type": "response", "callId": 2, "data": None}, received)

    @gen_test(timeout=60)
    async def test_plain_server_has_no_rules(self):
        """Without --namespaces, any channel may be subscribed to (no rules to check)."""
        ws = await self.start()
        reply = await self.ask(ws, call("pubsub", "subscribe", 1, channel="elsewhere:bench"))
        self.assertEqual(reply["type"], "response")


@unittest.skipUnless(has_commit(OLD), f"needs the git history with {OLD}")
class BaselineSourceTests(BenchmarkServer):
    def setUp(self):
        super().setUp()
        self.source, self.commit = run.baseline_source(OLD)
        self.addCleanup(shutil.rmtree, self.source, True)

    def check(self, *options):
        return subprocess.run(
            [sys.executable, str(SERVER), "--check", *options],
            env=run.server_env(self.source),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )

    def test_extracts_the_commit(self):
        """--baseline extracts snorky/ at the commit, whose digest differs from the tree's."""
        self.assertTrue(self.commit.startswith(OLD))
        self.assertTrue((self.source / "snorky" / "service_registry.py").is_file())
        self.assertNotEqual(run.source_digest(self.source / "snorky"), run.source_digest())

    @gen_test(timeout=60)
    async def test_server_runs_on_the_old_source(self):
        """The current server script serves the old source: an echo call comes back."""
        ws = await self.start(source=self.source)
        reply = await self.ask(ws, call("echo", "echo", 1, message="hi"))
        self.assertEqual(reply, {"type": "response", "callId": 1, "data": "hi"})

    def test_check_refuses_namespaces(self):
        """--namespaces on a source whose PubSubService takes no namespaces ends with a message."""
        done = self.check("--namespaces")
        self.assertEqual(done.returncode, 1)
        self.assertIn("PubSubService takes no namespaces", done.stderr)

    def test_check_refuses_metrics(self):
        """--metrics on a source whose ServiceRegistry takes no metrics ends with a message."""
        done = self.check("--metrics")
        self.assertEqual(done.returncode, 1)
        self.assertIn("ServiceRegistry takes no metrics", done.stderr)

    def test_check_accepts_plain(self):
        """The plain setup has nothing to check: exit 0."""
        self.assertEqual(self.check().returncode, 0)

    def test_runner_stops_before_any_round(self):
        """run.py ends at once, naming the setup and the commit, when a setup cannot run on the baseline."""
        done = subprocess.run(
            [sys.executable, str(BENCHMARKS / "run.py"), "--servers", "snorky,snorky-namespaces@base"]
            + ["--baseline", OLD, "--out", str(self.source / "out")],
            capture_output=True,
            text=True,
            timeout=TIMEOUT * 3,
        )
        self.assertEqual(done.returncode, 1)
        self.assertIn(f"setup snorky-namespaces@base cannot run on snorky/ at {OLD}", done.stderr)
        self.assertFalse((self.source / "out.json").exists())


class BaselineOptionTests(unittest.TestCase):
    @unittest.skipUnless(has_commit("HEAD"), "needs a git checkout")
    def test_unknown_ref(self):
        """A ref that is no commit ends with a message."""
        with self.assertRaisesRegex(SystemExit, "no-such-ref: not a commit"):
            run.baseline_source("no-such-ref")

    def test_base_setups_need_baseline(self):
        """An @base setup without --baseline is a usage error."""
        done = subprocess.run(
            [sys.executable, str(BENCHMARKS / "run.py"), "--servers", "snorky,snorky@base"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        self.assertEqual(done.returncode, 2)
        self.assertIn("--baseline REF is needed by snorky@base", done.stderr)

    def test_base_setups_mirror_snorky_setups(self):
        """Every setup of Snorky's server script has an @base twin; the others do not."""
        self.assertEqual(run.SETUPS["snorky-namespaces@base"], run.Setup("snorky", namespaces=True, base=True))
        self.assertIn("redis-2nodes@base", run.SETUPS)
        self.assertNotIn("floor@base", run.SETUPS)


def w1_run(server, round_no, cpu, noisy=False):
    return {
        "server": server,
        "round": round_no,
        "server_cpu_s_per_million": cpu,
        "deliveries_per_s": 1e6 / cpu,
        "noisy": noisy,
    }


class ComparisonTests(unittest.TestCase):
    SERVERS = ["floor", "snorky@base", "snorky", "snorky-metrics", "snorky-namespaces"]

    def test_pairs(self):
        """Each setup against its @base twin; each variant against snorky and snorky@base."""
        self.assertEqual(
            run.comparison_pairs(self.SERVERS),
            [
                ("snorky", "snorky@base"),
                ("snorky-metrics", "snorky"),
                ("snorky-metrics", "snorky@base"),
                ("snorky-namespaces", "snorky"),
                ("snorky-namespaces", "snorky@base"),
            ],
        )

    def test_pairs_of_base_variants(self):
        """A variant on the baseline is compared with its twin and with snorky@base."""
        servers = ["snorky", "snorky-metrics", "snorky@base", "snorky-metrics@base"]
        self.assertEqual(
            run.comparison_pairs(servers),
            [
                ("snorky", "snorky@base"),
                ("snorky-metrics", "snorky-metrics@base"),
                ("snorky-metrics", "snorky"),
                ("snorky-metrics", "snorky@base"),
                ("snorky-metrics@base", "snorky@base"),
            ],
        )

    def test_no_pairs_without_snorky_setups(self):
        """Nothing to compare among the reference servers."""
        self.assertEqual(run.comparison_pairs(["floor", "tornado", "socketio"]), [])

    def test_ratios_per_round_without_noisy_runs(self):
        """Ratios pair the runs of the same round; a noisy run is left out when clean ones exist."""
        runs = [
            w1_run("snorky@base", 1, 2.0),
            w1_run("snorky", 1, 2.2),
            w1_run("snorky@base", 2, 2.0),
            w1_run("snorky", 2, 3.0, noisy=True),
            w1_run("snorky@base", 3, 2.5),
            w1_run("snorky", 3, 2.5),
        ]
        report = {"config": {"workload": "w1", "servers": ["snorky@base", "snorky"]}, "runs": runs}
        (cpu, deliveries) = run.comparisons(report)
        self.assertEqual(
            (cpu["setup"], cpu["against"], cpu["metric"]), ("snorky", "snorky@base", "server_cpu_s_per_million")
        )
        self.assertEqual([round(r, 3) for r in cpu["per_round"]], [1.1, 1.0])
        self.assertAlmostEqual(cpu["ratio"], 1.05)
        self.assertAlmostEqual(deliveries["ratio"], (1 / 1.1 + 1) / 2)
        report["comparisons"] = [cpu, deliveries]
        table = "\n".join(run.comparison_lines(report))
        self.assertIn("| snorky | snorky@base | × 1.050 (1.100, 1.000) | × 0.955 (0.909, 1.000) |", table)

    def test_w2_compares_both_phases(self):
        """W2 compares CPU per request and requests/s of each concurrency level."""
        report = {"config": {"workload": "w2", "concurrency": "1,50"}}
        self.assertEqual(
            [metric for metric, _title in run.compared_metrics(report)],
            ["c1_server_us_per_request", "c1_requests_per_s", "c50_server_us_per_request", "c50_requests_per_s"],
        )

    def test_baseline_changes_no_source_warning(self):
        """Two sources in one suite, the tree's and the baseline's, are not a source that changed."""
        runs = [{"server": "snorky", "snorky_source": "a"}, {"server": "snorky@base", "snorky_source": "b"}]
        self.assertEqual(run.source_notes({"runs": runs}), [])
        runs.append({"server": "snorky-metrics", "snorky_source": "c"})
        self.assertEqual(len(run.source_notes({"runs": runs})), 1)


class InstructionsTests(unittest.TestCase):
    """instructions.py: its workloads against the real server script (here without Valgrind,
    which the tests do not install), and its report."""

    def options(self, **changes):
        options = {
            "n": 5,
            "messages": 3,
            "calls": 21,
            "connections": 4,
            "warmup": 2,
            "payload": 10,
            "python": sys.executable,
            "keep": None,
            "rounds": 2,
            "workloads": ["w1", "w2"],
        }
        options.update(changes)
        return argparse.Namespace(**options)

    def test_workloads_run_and_check_every_reply(self):
        args = self.options()
        sources = {False: None, True: None}
        w1 = instructions.run_one("snorky", "w1", args, sources, counted=False)
        self.assertEqual((w1["messages"], w1["deliveries"], w1["instructions"]), (3, 15, 0))
        w2 = instructions.run_one("snorky-metrics", "w2", args, sources, counted=False)
        self.assertEqual((w2["calls"], w2["instructions"]), (21, 0))

    def test_report_gives_medians_and_ratios(self):
        runs = {
            "w1": {
                "snorky@base": [{"per_delivery": 100.0}, {"per_delivery": 100.0}],
                "snorky": [{"per_delivery": 90.0}, {"per_delivery": 110.0}],
                "snorky-metrics": [{"per_delivery": 103.0}, {"per_delivery": 101.0}],
            },
            "w2": {"snorky": [{"per_call": 1000.0}, {"per_call": 1000.0}]},
        }
        results = {"command": "x", "valgrind": "valgrind-3", "baseline": "b (b)", "runs": runs}
        text = instructions.report(results, self.options())
        self.assertIn("| snorky@base | 100 | 100 to 100 | 1.000 | 1.000 |", text)
        self.assertIn("| snorky | 100 | 90 to 110 | 1.000 | 1.000 |", text)
        self.assertIn("| snorky-metrics | 102 | 101 to 103 | 1.020 | 1.020 |", text)
        self.assertIn("| snorky | 1,000 | 1,000 to 1,000 | 1.000 |  |", text)
