"""Run the benchmark suite: a workload against each server (or setup), and write the results.

    python benchmarks/run.py --servers floor,snorky,tornado --n 1000 --rounds 3
    python benchmarks/run.py --workload w4 --n 1000 --out benchmarks/results/w4

Workloads:

- ``w1`` (default), fan-out: N subscribers of one channel on one server, one
  publisher; servers ``floor``, ``snorky``, ``tornado``; ratios to ``floor``.
- ``w2``, echo RPC; ``w3``, idle connections; ``w1p``, W1 paced (latency).
- ``w4``, cluster fan-out: W1 through Snorky nodes sharing a Redis (a
  redis-server that the runner starts for the suite on a free loopback port,
  without persistence, and stops at the end). Setups ``snorky`` (one node, the
  memory broker: W1's Snorky), ``redis-1node`` (one node on the Redis broker)
  and ``redis-2nodes`` (two nodes on the same Redis, N/2 subscribers on each,
  the publisher on the first); ratios to ``redis-1node``.

Each round starts every server (every node) afresh, pinned to ``--server-cpu``
(node i to the i-th CPU of the list), waits until its ports accept
connections, runs ``loadgen.py`` against it as a separate process (pinned to
``--gen-cpu``), and stops it. The servers take turns in a different order each
round. A run in which other processes on the machine used more than
``--max-noise`` of a CPU is run again (``--retries``) and flagged.

Writes ``OUT.md`` (tables) and ``OUT.json`` (configuration, machine, every run,
summary); OUT defaults to ``benchmarks/results/latest``. Figures are medians
over the rounds; each "x floor" ("x 1 node") is the median over the rounds of
the ratio to the floor server's (the one Redis node's) figure in the same
round. See README.md.

``--baseline REF`` (a git ref or commit) extracts ``snorky/`` at REF, and the setups
named ``SETUP@base`` (``snorky@base``, ``snorky-metrics@base``, ...) run the same
server script, from the current tree, on that source, in the same rounds as the
others: the report then compares each Snorky setup with its ``@base`` twin and
each variant (``snorky-metrics``, ``snorky-namespaces``, ...) with plain ``snorky``
and ``snorky@base``, per round (section "Same run comparisons").
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import envs

HERE = Path(__file__).resolve().parent
SERVERS = {
    "floor": HERE / "servers" / "floor.py",
    "snorky": HERE / "servers" / "snorky_server.py",
    "tornado": HERE / "servers" / "tornado_plain.py",
    "socketio": HERE / "servers" / "socketio_server.py",
    "channels": HERE / "servers" / "channels_server.py",
    "snorky01": HERE / "servers" / "snorky01_server.py",
}
FLOOR = "floor"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Setup:
    """What one run starts: ``nodes`` processes of the server script ``server``,
    on the suite's Redis (through a RedisBroker) if ``redis``; with the interpreter of
    environment ``env`` (``envs.py``) if given, else the suite's; the generator speaks
    ``protocol`` to it."""

    server: str
    nodes: int = 1
    redis: bool = False
    env: str | None = None
    protocol: str = "snorky"
    messages: int = 0  # W1: publish exactly this many, whatever --messages says (0: as configured)
    deflate: bool = False  # the server accepts permessage-deflate and the W1 generator offers it
    metrics: bool = False  # the server counts everything in Prometheus metrics, as snorky serve does
    namespaces: bool = False  # PubSub checks every subscribe and publish against snorky serve's default namespaces
    limits: bool = False  # the registry enforces snorky serve's [limits] (its command rate raised: nothing refused)
    base: bool = False  # runs on snorky/ at --baseline REF instead of the current tree


SETUPS = {
    "floor": Setup("floor"),
    "snorky": Setup("snorky"),
    "snorky-deflate": Setup("snorky", deflate=True),
    "snorky-metrics": Setup("snorky", metrics=True),
    "snorky-limits": Setup("snorky", limits=True),
    "snorky-namespaces": Setup("snorky", namespaces=True),
    "tornado": Setup("tornado"),
    "redis-1node": Setup("snorky", 1, redis=True),
    "redis-2nodes": Setup("snorky", 2, redis=True),
    "socketio": Setup("socketio", env="peers", protocol="socketio"),
    # Channels answers a publish once group_send has queued it, long before the fan-out is
    # done, so publishing for --seconds would queue minutes of work: a fixed count instead.
    "channels": Setup("channels", env="peers", messages=30),
    "snorky01": Setup("snorky01", env="snorky01", protocol="snorky01"),
}
PEERS = "socketio,channels,snorky01"
BASE = "@base"
# Every setup of Snorky's server script, run on the --baseline source instead of the tree.
SETUPS.update({name + BASE: replace(s, base=True) for name, s in list(SETUPS.items()) if s.server == "snorky"})
PLAIN = "snorky"


@dataclass(frozen=True)
class Workload:
    title: str
    servers: str  # the default --servers
    baseline: str  # the setup the ratios are to
    ratio_suffix: str  # summary keys: METRIC + suffix
    server_cpu: str  # default --server-cpu
    gen_cpu: str  # default --gen-cpu
    window: int  # default --window
    n: int = 1000  # default --n
    generator: str = "loadgen.py"


ALL = f"floor,snorky,tornado,{PEERS}"
WORKLOADS = {
    "w1": Workload("W1 fan-out", ALL, FLOOR, "_x_floor", "0", "1", 50),
    "w1p": Workload("W1 paced latency", ALL, FLOOR, "_x_floor", "0", "1", 0, n=4000, generator="loadgen_paced.py"),
    "w2": Workload("W2 echo RPC", ALL, FLOOR, "_x_floor", "0", "1", 50, generator="loadgen_rpc.py"),
    "w3": Workload(
        "W3 idle connections",
        ALL,
        FLOOR,
        "_x_floor",
        "0",
        "1",
        50,
        n=5000,
        generator="loadgen_conns.py",
    ),
    "w4": Workload(
        "W4 cluster fan-out", "snorky,redis-1node,redis-2nodes", "redis-1node", "_x_1node", "0,1", "none", 200
    ),
}


# Machine ------------------------------------------------------------------------


def cpu_busy_fraction(seconds: float = 1.0) -> float:
    """Fraction of all CPUs busy over ``seconds`` (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
        idle = values[3] + values[4]
        return sum(values) - idle, idle

    busy0, idle0 = sample()
    time.sleep(seconds)
    busy1, idle1 = sample()
    total = (busy1 - busy0) + (idle1 - idle0)
    return (busy1 - busy0) / total if total else 0.0


def wait_quiet(limit_s: float, threshold: float = 0.10) -> float:
    """Wait (up to ``limit_s``) until other work leaves the machine idle; return its last load."""
    deadline = time.monotonic() + limit_s
    load = cpu_busy_fraction()
    while load > threshold and time.monotonic() < deadline:
        load = cpu_busy_fraction()
    return load


def source_digest(package: Path | None = None) -> str | None:
    """A short digest of Snorky's source (``snorky/`` beside this folder, by default)."""
    package = package or HERE.parent / "snorky"
    if not package.is_dir():
        return None
    digest = hashlib.sha1()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def environment() -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpu_model": None,
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    env["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for module in ("tornado", "snorky", "orjson"):
        try:
            env[module] = __import__(module).version if module == "tornado" else __import__(module).__version__
        except Exception:  # noqa: BLE001 - informational only
            env[module] = None
    try:
        repo = HERE.parent
        env["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        env["git_dirty"] = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=repo,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        env["git_commit"] = None
    env["snorky_source"] = source_digest()
    return env


# One run ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on port {port} within {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pinned(cpu: int | None) -> Any:
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def snapshot_source() -> Path | None:
    """Copy snorky/ to a temporary folder, so that every run of a suite runs the same code
    even if the tree is edited meanwhile; the servers import it through PYTHONPATH.
    """
    package = HERE.parent / "snorky"
    if not package.is_dir():
        return None
    folder = Path(tempfile.mkdtemp(prefix="snorky-bench-"))
    shutil.copytree(package, folder / "snorky", ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def baseline_source(ref: str) -> tuple[Path, str]:
    """Extract ``snorky/`` as it is at the git ``ref`` of this repository into a temporary
    folder (``git archive REF snorky | tar -x``); return the folder and the full commit id."""
    repo = HERE.parent
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=repo, capture_output=True, text=True
    )
    if found.returncode != 0:
        raise SystemExit(f"--baseline {ref}: not a commit of the repository at {repo}")
    commit = found.stdout.strip()
    folder = Path(tempfile.mkdtemp(prefix="snorky-bench-base-"))
    archive = subprocess.Popen(["git", "archive", "--format=tar", commit, "snorky"], cwd=repo, stdout=subprocess.PIPE)
    assert archive.stdout is not None
    untar = subprocess.run(["tar", "-x", "-C", str(folder)], stdin=archive.stdout, capture_output=True, text=True)
    archive.stdout.close()
    if archive.wait() != 0 or untar.returncode != 0 or not (folder / "snorky").is_dir():
        shutil.rmtree(folder, ignore_errors=True)
        raise SystemExit(f"--baseline {ref}: could not extract snorky/ at {commit[:12]}: {untar.stderr.strip()}")
    return folder, commit


def server_options(setup: Setup) -> list[str]:
    """The options of Snorky's server script that ``setup`` asks for (besides --redis)."""
    options = []
    if setup.deflate:
        options.append("--compression")
    if setup.metrics:
        options.append("--metrics")
    if setup.namespaces:
        options.append("--namespaces")
    if setup.limits:
        options.append("--limits")
    return options


def check_sources(servers: list[str], args: argparse.Namespace, source: Path | None) -> None:
    """Before any round: end the suite with a clear message if a Snorky setup asks its
    source for something it does not have (``--namespaces`` on a source from before the
    channel rules, say), or if that source does not import at all."""
    for name in servers:
        setup = SETUPS[name]
        if setup.server != "snorky":
            continue
        tree = args.base_source if setup.base else source
        done = subprocess.run(
            [args.python, str(SERVERS["snorky"]), "--check", *server_options(setup)],
            env=server_env(tree),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            where = f"snorky/ at {args.baseline} ({args.base_commit[:12]})" if setup.base else "the tree's snorky/"
            message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
            raise SystemExit(f"setup {name} cannot run on {where}: {message}")


def server_env(source: Path | None) -> dict[str, str] | None:
    if source is None:
        return None
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(source), env.get("PYTHONPATH")) if p)
    return env


def free_ports(count: int) -> list[int]:
    """``count`` different free ports (the sockets are held open together while choosing)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((HOST, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def parse_cpus(text: str | None) -> list[int] | None:
    """``"0,1"`` -> [0, 1]; ``"none"`` (or empty) -> None: not pinned."""
    if text is None or text.strip().lower() in ("", "none"):
        return None
    return [int(c) for c in text.split(",") if c.strip()]


class RedisServer:
    """The suite's own redis-server: a free loopback port, no persistence, a temporary folder."""

    def __init__(self, binary: str = "redis-server", cpu: int | None = None) -> None:
        found = shutil.which(binary)
        if found is None:
            raise SystemExit(f"{binary} is not on PATH (W4 needs a redis-server: apt-get install redis-server)")
        self.binary = found
        self.cpu = cpu
        self.port = free_port()
        self.folder = tempfile.TemporaryDirectory(prefix="snorky-bench-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def version(self) -> str | None:
        try:
            out = subprocess.run([self.binary, "--version"], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return None
        return next((w[2:] for w in out.split() if w.startswith("v=")), out.strip())

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.folder.name,
                "--logfile",
                "",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=pinned(self.cpu),
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.command(b"PING") == b"+PONG\r\n":
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def command(self, *parts: bytes) -> bytes:
        """One command over a plain socket; the raw reply."""
        with socket.create_connection((HOST, self.port), timeout=2) as sock:
            sock.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
            return sock.recv(65536)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None
        self.folder.cleanup()


def run_once(
    server: str,
    args: argparse.Namespace,
    messages: int,
    source: Path | None = None,
    redis: RedisServer | None = None,
) -> dict[str, Any]:
    """Start ``server`` (a setup: one or more processes), run the load generator against it,
    stop it; return the generator's result."""
    setup = SETUPS[server]
    if setup.base:
        source = args.base_source
        if source is None:
            raise RuntimeError(f"{server} needs --baseline REF")
    ports = free_ports(setup.nodes)
    digest = source_digest(source / "snorky" if source else None)
    extra: list[str] = []
    if setup.redis:
        if redis is None:
            raise RuntimeError(f"{server} needs the suite's redis-server")
        redis.command(b"FLUSHALL")
        extra = ["--redis", redis.url, "--prefix", f"bench-{os.getpid()}-{time.monotonic_ns()}"]
    extra += server_options(setup)
    cpus = args.server_cpus
    logs = [tempfile.TemporaryFile() for _ in ports]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        python = envs.ensure(setup.env) if setup.env else args.python
        for i, port in enumerate(ports):
            procs.append(
                subprocess.Popen(
                    [python, str(SERVERS[setup.server]), "--port", str(port), *extra],
                    stdin=subprocess.DEVNULL,
                    stdout=logs[i],
                    stderr=subprocess.STDOUT,
                    preexec_fn=pinned(cpus[i % len(cpus)] if cpus else None),
                    env=server_env(source),
                )
            )
        for i, (port, proc) in enumerate(zip(ports, procs, strict=True)):
            try:
                wait_port(port, proc)
            except RuntimeError as exc:
                logs[i].seek(0)
                raise RuntimeError(f"{exc}: {logs[i].read().decode(errors='replace').strip()[-1500:]}") from None
        generator = WORKLOADS[args.workload].generator
        command = [args.python, str(HERE / generator)]
        if generator == "loadgen_rpc.py":  # W2
            command += [
                "--port",
                str(ports[0]),
                "--concurrency",
                args.concurrency,
                "--seconds",
                str(args.seconds),
                "--warmup-s",
                str(args.warmup_s),
                "--payload",
                str(args.payload),
                "--timeout",
                str(args.timeout),
                "--server-pid",
                str(procs[0].pid),
            ]
        elif generator == "loadgen_paced.py":  # W1 paced
            command += [
                "--port",
                str(ports[0]),
                "--n",
                str(args.n),
                "--rate",
                str(args.rate),
                "--seconds",
                str(args.paced_seconds),
                "--payload",
                str(args.payload),
                "--server-pid",
                str(procs[0].pid),
            ]
        elif generator == "loadgen_conns.py":  # W3
            command += [
                "--port",
                str(ports[0]),
                "--n",
                str(args.n),
                "--channels",
                args.channels,
                "--server-pid",
                str(procs[0].pid),
            ]
        else:  # W1, W4
            command += [
                "--ports",
                ",".join(map(str, ports)),
                "--n",
                str(args.n),
                "--messages",
                str(setup.messages or messages),
                "--seconds",
                str(args.seconds),
                "--warmup",
                str(args.warmup),
                "--window",
                str(args.window),
                "--batch-ms",
                str(args.batch_ms),
                "--payload",
                str(args.payload),
                "--engine",
                args.engine,
                "--timeout",
                str(args.timeout),
            ]
            for proc in procs:
                command += ["--server-pid", str(proc.pid)]
            if redis is not None and redis.process is not None:
                command += ["--extra-pid", f"redis={redis.pid}"]
            if setup.deflate:
                command.append("--deflate")
        if setup.protocol != "snorky":
            command += ["--protocol", setup.protocol]
        if args.gen_cpu is not None:
            command += ["--cpu", str(args.gen_cpu)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout + args.n / 50 + 120)
        if done.returncode != 0:
            raise RuntimeError(f"load generator failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["snorky_source"] = digest
        result["server_exited"] = any(proc.poll() is not None for proc in procs)
        result["nodes"] = setup.nodes
    finally:
        for proc in procs:
            stop(proc)
        output = []
        for i, log in enumerate(logs):
            log.seek(0)
            text = log.read().decode(errors="replace").strip()
            log.close()
            if text:
                output.append(f"[node {i + 1}] {text[-2000:]}" if len(logs) > 1 else text[-2000:])
    if output:
        result["server_log_tail"] = "\n".join(output)
    return result


# Summary ------------------------------------------------------------------------

METRICS = (
    "deliveries_per_s",
    "server_cpu_s_per_million",
    "server_user_s_per_million",
    "server_sys_s_per_million",
    "server_cpu_util",
    "gen_cpu_s_per_million",
    "gen_cpu_util",
    "ksoftirqd_util",
    "wall_s",
    # W4 (several nodes and Redis)
    "node1_cpu_util",
    "node2_cpu_util",
    "redis_cpu_s_per_million",
    "redis_cpu_util",
    "machine_cpu_util",
)
RATIOS = ("deliveries_per_s", "server_cpu_s_per_million", "gen_cpu_s_per_million")


W2_PHASE_METRICS = (
    "requests_per_s",
    "server_us_per_request",
    "server_user_us_per_request",
    "server_sys_us_per_request",
    "server_cpu_util",
    "gen_cpu_util",
    "gen_us_per_request",
    "latency_p50_us",
    "latency_p99_us",
)
W2_RATIOS = ("requests_per_s", "server_us_per_request")
W3_METRICS = (
    "rss_before_kb",
    "rss_after_kb",
    "rss_per_connection_kb",
    "rss_per_connection_unsubscribed_kb",
    "connections_per_s",
    "connect_server_us",
    "connect_server_cpu_util",
    "connect_gen_cpu_util",
    "subscriptions_per_s",
    "subscribe_server_us",
    "subscribe_gen_cpu_util",
)
W1P_METRICS = (
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "last_p50_ms",
    "last_p99_ms",
    "server_cpu_util",
    "gen_cpu_util",
)
W1P_RATIOS = ("latency_p50_ms", "latency_p99_ms", "last_p50_ms", "last_p99_ms")
W3_RATIOS = ("rss_per_connection_kb", "connections_per_s", "connect_server_us", "subscribe_server_us")


def workload_metrics(report_or_args: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(metrics with medians, metrics with ratios) of a report's (or the arguments') workload."""
    if isinstance(report_or_args, dict):
        workload = report_or_args["config"].get("workload", "w1")
        concurrency = report_or_args["config"].get("concurrency", "1,50")
    else:
        workload, concurrency = report_or_args.workload, report_or_args.concurrency
    if workload == "w2":
        levels = [c.strip() for c in str(concurrency).split(",") if c.strip()]
        return (
            tuple(f"c{c}_{m}" for c in levels for m in W2_PHASE_METRICS),
            tuple(f"c{c}_{m}" for c in levels for m in W2_RATIOS),
        )
    if workload == "w3":
        return W3_METRICS, W3_RATIOS
    if workload == "w1p":
        return W1P_METRICS, W1P_RATIOS
    return METRICS, RATIOS


def add_derived_w2(result: dict[str, Any]) -> None:
    noise = []
    for level, phase in (result.get("phases") or {}).items():
        calls, wall = phase.get("calls") or 0, phase.get("wall_s")
        if calls and phase.get("server_user_s") is not None:
            phase["server_user_us_per_request"] = phase["server_user_s"] / calls * 1e6
            phase["server_sys_us_per_request"] = phase["server_sys_s"] / calls * 1e6
        for key in ("p50", "p99"):
            phase[f"latency_{key}_us"] = (phase.get("latency_us") or {}).get(key)
        for metric in W2_PHASE_METRICS:
            result[f"c{level}_{metric}"] = phase.get(metric)
        if wall:
            noise.append(phase["other_cpu_s"] / wall)
    result["noise"] = max(noise) if noise else None


def add_derived_w3(result: dict[str, Any]) -> None:
    connect, subscribe = result.get("connect") or {}, result.get("subscribe") or {}
    result["connections_per_s"] = connect.get("per_s")
    result["connect_server_us"] = connect.get("server_us_each")
    result["connect_server_cpu_util"] = connect.get("server_cpu_util")
    result["connect_gen_cpu_util"] = connect.get("gen_cpu_util")
    result["subscriptions_per_s"] = subscribe.get("per_s")
    result["subscribe_server_us"] = subscribe.get("server_us_each")
    result["subscribe_gen_cpu_util"] = subscribe.get("gen_cpu_util")
    noise = [step["other_cpu_s"] / step["wall_s"] for step in (connect, subscribe) if step.get("wall_s")]
    result["noise"] = max(noise) if noise else None


def add_derived_w1p(result: dict[str, Any]) -> None:
    for key, value in (result.get("latency_ms") or {}).items():
        result[f"latency_{key}_ms"] = value
    for key, value in (result.get("last_delivery_ms") or {}).items():
        result[f"last_{key}_ms"] = value
    wall = result.get("other_wall_s")
    result["noise"] = result["other_cpu_s"] / wall if wall else None


def add_derived(result: dict[str, Any]) -> None:
    if "latency_ms" in result:
        add_derived_w1p(result)
        return
    if "phases" in result:
        add_derived_w2(result)
        return
    if "rss_after_kb" in result:
        add_derived_w3(result)
        return
    delivered = result.get("deliveries") or 0
    wall = result.get("wall_s")
    if delivered and result.get("server_user_s") is not None:
        result["server_user_s_per_million"] = result["server_user_s"] / delivered * 1e6
        result["server_sys_s_per_million"] = result["server_sys_s"] / delivered * 1e6
    result["noise"] = result["other_cpu_s"] / wall if wall else None
    softirqd = sum((result.get("ksoftirqd_cpu_s") or {}).values())
    result["ksoftirqd_util"] = softirqd / wall if wall else None
    if not wall:
        return
    for i, cpu_s in enumerate(result.get("server_cpu_s_each") or ()):
        result[f"node{i + 1}_cpu_util"] = cpu_s / wall
    redis_s = (result.get("extra_cpu_s") or {}).get("redis")
    if redis_s is not None:
        result["redis_cpu_util"] = redis_s / wall
        if delivered:
            result["redis_cpu_s_per_million"] = redis_s / delivered * 1e6
    stat = (result.get("cpu_stat_s") or {}).get("cpu")
    cpus = len([k for k in (result.get("cpu_stat_s") or {}) if k != "cpu"]) or 1
    if stat:
        busy = sum(stat.get(k, 0.0) for k in ("user", "nice", "system", "irq", "softirq"))
        result["machine_cpu_util"] = busy / wall / cpus


def checks_ok(r: dict[str, Any]) -> bool:
    """Whether a run passed its generator's checks."""
    if "phases" in r:  # W2
        return all(not phase.get("errors") for phase in r["phases"].values())
    if "rss_after_kb" in r:  # W3
        return r.get("alive_at_end") == r.get("n")
    if "latency_ms" in r:  # W1 paced
        return bool(
            not r["lost"]
            and not r["duplicates_or_misses"]
            and not r["out_of_order"]
            and not r["unexpected_frames"]
            and not r["publish_errors"]
            and r["replies"] == r["messages"] + r["warmup"]
        )
    return bool(
        r["verified_subscriber0"] == "ok"
        and not r["lost"]
        and not r["fragmented_frames"]
        and all(v == "ok" for v in (r.get("verified_by_port") or {}).values())
        and r["per_subscriber_min"] == r["per_subscriber_max"] == r["messages"]
        and not r["publish_errors"]
    )


def summarize(
    runs: list[dict[str, Any]],
    servers: list[str],
    baseline: str = FLOOR,
    suffix: str = "_x_floor",
    metrics: tuple[str, ...] = METRICS,
    ratio_metrics: tuple[str, ...] = RATIOS,
) -> dict[str, Any]:
    """Medians per server over its clean runs (all its runs if none is clean), and ratios to
    ``baseline`` (the floor) in the same round."""
    valid = [r for r in runs if "error" not in r]
    used: dict[str, list[dict[str, Any]]] = {}
    for server in servers:
        mine = [r for r in valid if r["server"] == server]
        clean = [r for r in mine if not r.get("noisy")]
        used[server] = clean or mine
    floor_by_round = {r["round"]: r for r in used.get(baseline, [])}
    summary: dict[str, Any] = {}
    for server in servers:
        mine = [r for r in valid if r["server"] == server]
        entry: dict[str, Any] = {
            "rounds": len(mine),
            "rounds_in_medians": len(used[server]),
            "errors": [r["error"] for r in runs if r["server"] == server and "error" in r],
        }
        for metric in metrics:
            values = [r[metric] for r in used[server] if r.get(metric) is not None]
            entry[metric] = statistics.median(values) if values else None
        entry["lost"] = sum(r.get("lost", 0) for r in mine)
        entry["noisy_rounds"] = sum(1 for r in mine if r.get("noisy"))
        entry["checks_ok"] = all(checks_ok(r) for r in mine)
        for metric in ratio_metrics:
            ratios = [
                r[metric] / floor_by_round[r["round"]][metric]
                for r in used[server]
                if r["round"] in floor_by_round and r.get(metric) and floor_by_round[r["round"]].get(metric)
            ]
            entry[f"{metric}{suffix}"] = statistics.median(ratios) if ratios else None
        summary[server] = entry
    return summary


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def pct(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{100 * value:,.{digits}f} %"


def used_runs(report: dict[str, Any], server: str) -> dict[int, dict[str, Any]]:
    """A server's runs that count in the medians (its clean runs, all of them if none is), by round."""
    mine = [r for r in report["runs"] if r.get("server") == server and "error" not in r]
    clean = [r for r in mine if not r.get("noisy")]
    return {r["round"]: r for r in clean or mine}


def round_ratios(report: dict[str, Any], top: str, bottom: str, metric: str) -> list[float]:
    """Per round, ``top``'s ``metric`` over ``bottom``'s (rounds where both counted)."""
    a, b = used_runs(report, top), used_runs(report, bottom)
    return [a[n][metric] / b[n][metric] for n in sorted(a) if n in b and a[n].get(metric) and b[n].get(metric)]


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def source_notes(report: dict[str, Any]) -> list[str]:
    """A warning if the tree's source (or the baseline's) was not the same in every run."""
    notes = []
    for base in (False, True):
        digests = {
            r["snorky_source"]
            for r in report["runs"]
            if r.get("snorky_source") and r.get("server", "").endswith(BASE) == base
        }
        if len(digests) > 1:
            which = "the baseline's Snorky source" if base else "Snorky's source"
            notes.append(f"- {which} changed during the suite ({len(digests)} versions: see snorky_source).")
    return notes


def baseline_lines(report: dict[str, Any]) -> list[str]:
    """The header line saying what the ``@base`` setups ran, if any did."""
    base = report["config"].get("baseline")
    if not base:
        return []
    return [
        f"- `{BASE}` setups: the same server script (from the tree) on `snorky/` at `{base['ref']}` "
        f"(commit {base['commit'][:12]}, source digest {base['digest']}), extracted at the start."
    ]


def compared_metrics(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The figures that the same-run comparisons divide: (metric, column title)."""
    cfg = report["config"]
    workload = cfg.get("workload", "w1")
    if workload == "w2":
        levels = [c.strip() for c in str(cfg.get("concurrency", "1,50")).split(",") if c.strip()]
        return [
            item
            for c in levels
            for item in (
                (f"c{c}_server_us_per_request", f"{c} conn.: server CPU µs / request"),
                (f"c{c}_requests_per_s", f"{c} conn.: requests/s"),
            )
        ]
    if workload == "w3":
        return [
            ("rss_per_connection_kb", "RSS per connection"),
            ("connect_server_us", "server CPU µs / connection"),
            ("subscribe_server_us", "server CPU µs / subscription"),
        ]
    if workload == "w1p":
        return [("latency_p50_ms", "latency p50"), ("last_p99_ms", "last delivery p99")]
    return [("server_cpu_s_per_million", "server CPU s / 1M deliveries"), ("deliveries_per_s", "deliveries/s")]


def comparison_pairs(servers: list[str]) -> list[tuple[str, str]]:
    """(setup, against) pairs among ``servers``: each Snorky setup against its ``@base`` twin;
    each variant of one Snorky server (metrics, namespaces, ...) against plain ``snorky`` and
    ``snorky@base`` (an ``@base`` variant against ``snorky@base``)."""
    pairs: list[tuple[str, str]] = []

    def add(a: str, b: str) -> None:
        if a != b and b in servers and (a, b) not in pairs:
            pairs.append((a, b))

    for name in servers:
        setup = SETUPS.get(name)
        if setup is None or setup.server != "snorky":
            continue
        if not setup.base:
            add(name, name + BASE)
        if setup.redis or setup.nodes != 1:
            continue
        add(name, PLAIN + BASE if setup.base else PLAIN)
        if not setup.base:
            add(name, PLAIN + BASE)
    return pairs


def comparisons(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Same-run ratios of the pairs of :func:`comparison_pairs`: per round, one setup's
    figure over the other's (the runs that count in the medians), and their median."""
    out = []
    for a, b in comparison_pairs(report["config"]["servers"]):
        for metric, _title in compared_metrics(report):
            ratios = round_ratios(report, a, b, metric)
            out.append({"setup": a, "against": b, "metric": metric, "ratio": median(ratios), "per_round": ratios})
    return out


def comparison_lines(report: dict[str, Any]) -> list[str]:
    """The "Same run comparisons" section (nothing if there is nothing to compare)."""
    found = report.get("comparisons") or []
    if not found:
        return []
    columns = compared_metrics(report)
    by_pair: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for c in found:
        by_pair.setdefault((c["setup"], c["against"]), {})[c["metric"]] = c
    lines = [
        "## Same run comparisons",
        "",
        "Each cell: the setup's figure over the other setup's in the same round (runs that count in the "
        "medians), median over the rounds, then each round's ratio. For CPU, above 1 costs more; for "
        "requests or deliveries per second, above 1 is faster.",
        "",
        "| setup | against | " + " | ".join(title for _metric, title in columns) + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    for (a, b), cells in by_pair.items():
        row = []
        for metric, _title in columns:
            c = cells.get(metric)
            if not c or c["ratio"] is None:
                row.append("–")
                continue
            rounds = ", ".join(f"{r:.3f}" for r in c["per_round"])
            row.append(f"× {c['ratio']:.3f} ({rounds})")
        lines.append(f"| {a} | {b} | " + " | ".join(row) + " |")
    return [*lines, ""]


def markdown(report: dict[str, Any]) -> str:
    workload = report["config"].get("workload", "w1")
    if workload == "w4":
        return markdown_w4(report)
    if workload == "w2":
        return markdown_w2(report)
    if workload == "w3":
        return markdown_w3(report)
    if workload == "w1p":
        return markdown_w1p(report)
    cfg, env, summary = report["config"], report["environment"], report["summary"]
    lines = [
        f"# W1 fan-out: N = {cfg['n']} subscribers on one channel",
        "",
        f"- Date: {report['date']}; command: `{report['command']}`",
        f"- Machine: {env['cpus']} CPUs ({env['cpu_model']}), Linux {env['kernel']}, Python {env['python']}, "
        f"Tornado {env['tornado']}, Snorky {env['snorky']} (git {env.get('git_commit')}"
        f"{', with uncommitted changes' if env.get('git_dirty') else ''}; source digest "
        f"{env.get('snorky_source')})",
        f"- Server pinned to CPU {cfg['server_cpu']}, load generator to CPU {cfg['gen_cpu']}; "
        f"{cfg['rounds']} rounds, each server started afresh per round; figures are medians over the rounds.",
        "- Messages per run: "
        + (f"{cfg['messages']}" if cfg["messages"] else f"as many as the publisher sends in {cfg['seconds']} s")
        + f"; publisher window {cfg['window']} publishes; payload {cfg['payload']} characters; "
        f"warm-up {cfg['warmup']} messages; subscribers read every {cfg['batch_ms']} ms ({cfg['engine']} engine); "
        f"Snorky run from a {cfg.get('source', 'live tree')}.",
        *baseline_lines(report),
        "",
        "| server | deliveries/s | × floor | server CPU s / 1M deliveries (user + sys) | × floor "
        "| server CPU use | generator CPU use | generator CPU s / 1M | lost | checks |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for server, s in summary.items():
        checks = "ok" if s["checks_ok"] and not s["errors"] else "FAILED"
        if s["noisy_rounds"]:
            checks += f" ({s['noisy_rounds']} noisy run(s), {s['rounds_in_medians']} in the medians)"
        server_use = None if s["server_cpu_util"] is None else 100 * s["server_cpu_util"]
        gen_use = None if s["gen_cpu_util"] is None else 100 * s["gen_cpu_util"]
        lines.append(
            f"| {server} | {fmt(s['deliveries_per_s'], 0)} | {fmt(s['deliveries_per_s_x_floor'])} "
            f"| {fmt(s['server_cpu_s_per_million'])} ({fmt(s['server_user_s_per_million'])} + "
            f"{fmt(s['server_sys_s_per_million'])}) | {fmt(s['server_cpu_s_per_million_x_floor'])} "
            f"| {fmt(server_use, 0)} % | {fmt(gen_use, 0)} % | {fmt(s['gen_cpu_s_per_million'])} "
            f"| {s['lost']} | {checks} |"
        )
    notes = source_notes(report)
    for server, s in summary.items():
        if s["gen_cpu_util"] is not None and s["gen_cpu_util"] > 0.9:
            notes.append(f"- {server}: the load generator used over 90 % of its CPU: it may be the bottleneck.")
        elif s["server_cpu_util"] is not None and s["server_cpu_util"] < 0.8:
            notes.append(f"- {server}: the server used under 80 % of its CPU: it was not saturated.")
        for error in s["errors"]:
            notes.append(f"- {server}: error: {error}")
    if notes:
        lines += ["", "Warnings:", *notes]
    lines += [
        "",
        *comparison_lines(report),
        "## Every run",
        "",
        "| round | server | messages | deliveries/s | wall s | server CPU s | server CPU use | generator CPU use "
        "| ksoftirqd CPU use | other CPU use | lost | tries |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["runs"]:
        if "error" in r:
            lines.append(f"| {r['round']} | {r['server']} | error: {r['error'][:120]} | | | | | | | | | {r['tries']} |")
            continue
        lines.append(
            f"| {r['round']} | {r['server']} | {r['messages']} | {fmt(r['deliveries_per_s'], 0)} | {fmt(r['wall_s'])} "
            f"| {fmt(r['server_cpu_s'])} | {fmt(100 * r['server_cpu_util'], 0)} % "
            f"| {fmt(100 * r['gen_cpu_util'], 0)} % "
            f"| {fmt(100 * r['ksoftirqd_util'] if r.get('ksoftirqd_util') is not None else None, 0)} % "
            f"| {fmt(100 * r['noise'], 0)} % | {r['lost']} | {r['tries']} |"
        )
    lines += [
        "",
        "Server CPU: utime + stime of the server process (/proc/PID/stat) over the measured window, "
        "from the first publish to the last delivery. ksoftirqd CPU use: the kernel threads that take over "
        "network processing under load (work caused by the traffic, but charged to no process of the "
        "benchmark). Other CPU use: CPU time of everything else on the machine in that window (from "
        "/proc/stat), as a fraction of one CPU. See benchmarks/README.md.",
        "",
    ]
    return "\n".join(lines)


def header(report: dict[str, Any], title: str) -> list[str]:
    """The title and the lines every report starts with (date, command, machine, pinning)."""
    cfg, env = report["config"], report["environment"]
    return [
        f"# {title}",
        "",
        f"- Date: {report['date']}; command: `{report['command']}`",
        f"- Machine: {env['cpus']} CPUs ({env['cpu_model']}), Linux {env['kernel']}, Python {env['python']}, "
        f"Tornado {env['tornado']}, Snorky {env['snorky']} (git {env.get('git_commit')}"
        f"{', with uncommitted changes' if env.get('git_dirty') else ''}; source digest "
        f"{env.get('snorky_source')})",
        f"- Server pinned to CPU {cfg['server_cpu']}, load generator to CPU {cfg['gen_cpu']}; "
        f"{cfg['rounds']} rounds, each server started afresh per round, in a rotated order; figures are medians "
        f'over the rounds, "× floor" the median of the per-round ratios to the floor. Snorky run from a '
        f"{cfg.get('source', 'live tree')}.",
        *baseline_lines(report),
    ]


def checks_cell(s: dict[str, Any]) -> str:
    checks = "ok" if s["checks_ok"] and not s["errors"] else "FAILED"
    if s["noisy_rounds"]:
        checks += f" ({s['noisy_rounds']} noisy run(s), {s['rounds_in_medians']} in the medians)"
    return checks


def error_notes(report: dict[str, Any]) -> list[str]:
    notes = source_notes(report)
    for server, s in report["summary"].items():
        for error in s["errors"]:
            notes.append(f"- {server}: error: {error}")
    return notes


def markdown_w2(report: dict[str, Any]) -> str:
    cfg, summary = report["config"], report["summary"]
    levels = [c.strip() for c in str(cfg.get("concurrency", "1,50")).split(",") if c.strip()]
    lines = header(
        report,
        "W2 echo RPC: "
        + ", ".join("one connection, sequential" if c == "1" else f"{c} connections, concurrent" for c in levels),
    )
    lines += [
        f"- Each connection has one call in flight and sends the next as its reply arrives; the phases run one "
        f"after the other on the same server process, each on new connections: {cfg['warmup_s']} s of calls, "
        f"then a measured window of {cfg['seconds']} s of the same flow. Echoed message: {cfg['payload']} "
        f"characters; every reply compared with what was sent.",
        "",
    ]
    notes = error_notes(report)
    for c in levels:
        k = f"c{c}_"
        lines += [
            f"## {'1 connection (sequential)' if c == '1' else f'{c} connections'}",
            "",
            "| server | requests/s | × floor | server CPU µs / request (user + sys) | × floor | server CPU use "
            "| latency µs (median / 99 %) | generator CPU use | generator CPU µs / request | checks |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for server, s in summary.items():
            lines.append(
                f"| {server} | {fmt(s.get(k + 'requests_per_s'), 0)} | {fmt(s.get(k + 'requests_per_s_x_floor'))} "
                f"| {fmt(s.get(k + 'server_us_per_request'), 1)} ({fmt(s.get(k + 'server_user_us_per_request'), 1)}"
                f" + {fmt(s.get(k + 'server_sys_us_per_request'), 1)}) "
                f"| {fmt(s.get(k + 'server_us_per_request_x_floor'))} | {pct(s.get(k + 'server_cpu_util'))} "
                f"| {fmt(s.get(k + 'latency_p50_us'), 0)} / {fmt(s.get(k + 'latency_p99_us'), 0)} "
                f"| {pct(s.get(k + 'gen_cpu_util'))} | {fmt(s.get(k + 'gen_us_per_request'), 1)} | {checks_cell(s)} |"
            )
            gen = s.get(k + "gen_cpu_util")
            if gen is not None and gen > 0.9:
                notes.append(
                    f"- {server}, {c} connection(s): the load generator used over 90 % of its CPU: "
                    f"it may be the bottleneck."
                )
        lines.append("")
    if notes:
        lines += ["Warnings:", *notes, ""]
    lines += [
        *comparison_lines(report),
        "## Every run",
        "",
        "| round | server | connections | calls | requests/s | server CPU µs / request | server CPU use "
        "| generator CPU use | latency µs (median) | other CPU use | tries |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["runs"]:
        if "error" in r:
            lines.append(f"| {r['round']} | {r['server']} | error: {r['error'][:120]} | | | | | | | | {r['tries']} |")
            continue
        for c, phase in r["phases"].items():
            lines.append(
                f"| {r['round']} | {r['server']} | {c} | {phase['calls']} | {fmt(phase['requests_per_s'], 0)} "
                f"| {fmt(phase.get('server_us_per_request'), 1)} | {pct(phase.get('server_cpu_util'))} "
                f"| {pct(phase['gen_cpu_util'])} | {fmt(phase.get('latency_p50_us'), 0)} "
                f"| {pct(phase['other_cpu_s'] / phase['wall_s'])} | {r['tries']} |"
            )
    lines += [
        "",
        "Server CPU: utime + stime of the server process (/proc/PID/stat) over the window, per reply received "
        "in it. Latency: from writing a call to reading its reply, as the generator sees it (its own wake-up "
        "included). Other CPU use: everything else on the machine over the window, as a fraction of one CPU. "
        "See benchmarks/README.md.",
        "",
    ]
    return "\n".join(lines)


def markdown_w3(report: dict[str, Any]) -> str:
    cfg, summary = report["config"], report["summary"]
    lines = header(report, f"W3 idle connections: N = {cfg['n']} subscribed WebSocket connections")
    lines += [
        "- Per run: the server's VmRSS (/proc/PID/status) before; N connections opened (TCP and WebSocket "
        "handshake), 100 under way at a time (connections/s); each subscribed to "
        + ("one channel, `bench`" if cfg.get("channels", "one") == "one" else "a channel of its own")
        + ", 100 at a time (subscriptions/s); 1 s later, VmRSS again: RSS per connection = (after − before) / N.",
        "",
        "| server | RSS per connection kB | × floor | RSS before → after, MB | connections/s | × floor "
        "| server CPU µs / connection | × floor | server CPU use | generator CPU use | subscriptions/s "
        "| server CPU µs / subscription | × floor | checks |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    notes = error_notes(report)
    for server, s in summary.items():
        before, after = s.get("rss_before_kb"), s.get("rss_after_kb")
        lines.append(
            f"| {server} | {fmt(s.get('rss_per_connection_kb'), 1)} | {fmt(s.get('rss_per_connection_kb_x_floor'))} "
            f"| {fmt(before / 1024 if before else None, 1)} → {fmt(after / 1024 if after else None, 1)} "
            f"| {fmt(s.get('connections_per_s'), 0)} | {fmt(s.get('connections_per_s_x_floor'))} "
            f"| {fmt(s.get('connect_server_us'), 0)} | {fmt(s.get('connect_server_us_x_floor'))} "
            f"| {pct(s.get('connect_server_cpu_util'))} | {pct(s.get('connect_gen_cpu_util'))} "
            f"| {fmt(s.get('subscriptions_per_s'), 0)} | {fmt(s.get('subscribe_server_us'), 0)} "
            f"| {fmt(s.get('subscribe_server_us_x_floor'))} | {checks_cell(s)} |"
        )
        gen = s.get("connect_gen_cpu_util")
        if gen is not None and gen > 0.9:
            notes.append(
                f"- {server}: the load generator used over 90 % of its CPU while connecting: "
                f"connections/s is its limit, not the server's (compare the server CPU per connection)."
            )
    if notes:
        lines += ["", "Warnings:", *notes]
    lines += [
        "",
        *comparison_lines(report),
        "## Every run",
        "",
        "| round | server | RSS before kB | RSS connected kB | RSS subscribed kB | kB / connection "
        "| connections/s | server µs / connection | generator CPU use | subscriptions/s | server µs / subscription "
        "| other CPU use | tries |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["runs"]:
        if "error" in r:
            lines.append(
                f"| {r['round']} | {r['server']} | error: {r['error'][:120]} | | | | | | | | | | {r['tries']} |"
            )
            continue
        lines.append(
            f"| {r['round']} | {r['server']} | {r['rss_before_kb']:,} | {r['rss_connected_kb']:,} "
            f"| {r['rss_after_kb']:,} | {fmt(r['rss_per_connection_kb'])} | {fmt(r['connections_per_s'], 0)} "
            f"| {fmt(r['connect_server_us'], 0)} | {pct(r['connect_gen_cpu_util'])} "
            f"| {fmt(r['subscriptions_per_s'], 0)} | {fmt(r['subscribe_server_us'], 0)} | {pct(r['noise'])} "
            f"| {r['tries']} |"
        )
    lines += [
        "",
        "RSS: VmRSS of the server process (/proc/PID/status), in kB (1 kB = 1024 bytes). Server CPU: utime + "
        "stime (/proc/PID/stat) while connecting (subscribing), per connection (subscription); 10 ms ticks. "
        "Other CPU use: everything else on the machine in those steps (the larger of the two), as a fraction of "
        "one CPU. See benchmarks/README.md.",
        "",
    ]
    return "\n".join(lines)


def markdown_w1p(report: dict[str, Any]) -> str:
    cfg, summary = report["config"], report["summary"]
    title = f"W1 paced: publish-to-receive latency, N = {cfg['n']} subscribers, {cfg['rate']:g} publishes/s"
    lines = header(report, title)
    lines += [
        f"- Per run: N subscribers on one channel, one publisher publishing {cfg['rate']:g} messages of "
        f"{cfg['payload']} characters per second for {cfg['paced_seconds']:g} s after 10 unmeasured ones. "
        "Latency: the kernel's receive timestamp of each delivery (SO_TIMESTAMPNS on every subscriber socket) "
        'minus the time just before the publish was written; "last delivery": per publish, its slowest '
        "subscriber (the time to reach everyone).",
        "",
        "| server | latency p50 ms | × floor | p90 ms | p99 ms | × floor | max ms | last delivery p50 ms | × floor "
        "| last delivery p99 ms | × floor | server CPU use | checks |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for server, s in summary.items():
        lines.append(
            f"| {server} | {fmt(s.get('latency_p50_ms'))} | {fmt(s.get('latency_p50_ms_x_floor'))} "
            f"| {fmt(s.get('latency_p90_ms'))} | {fmt(s.get('latency_p99_ms'))} "
            f"| {fmt(s.get('latency_p99_ms_x_floor'))} | {fmt(s.get('latency_max_ms'))} "
            f"| {fmt(s.get('last_p50_ms'))} | {fmt(s.get('last_p50_ms_x_floor'))} | {fmt(s.get('last_p99_ms'))} "
            f"| {fmt(s.get('last_p99_ms_x_floor'))} | {pct(s.get('server_cpu_util'))} | {checks_cell(s)} |"
        )
    notes = error_notes(report)
    for r in report["runs"]:
        if r.get("lost"):
            notes.append(
                f"- {r['server']}, round {r['round']}: did not keep up with {cfg['rate']:g} publishes/s: "
                f"{r['lost']:,} of {r['expected_deliveries'] + r['n'] * r['warmup']:,} deliveries had not arrived "
                "30 s after the last publish; its latencies are those of the deliveries that did."
            )
    if notes:
        lines += ["", "Warnings:", *notes]
    lines += [
        "",
        *comparison_lines(report),
        "## Every run",
        "",
        "| round | server | latency p50 / p90 / p99 / max ms | last delivery p50 / p99 ms | server CPU use "
        "| generator CPU use | multi-frame reads | other CPU use | tries |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["runs"]:
        if "error" in r:
            lines.append(f"| {r['round']} | {r['server']} | error: {r['error'][:120]} | | | | | | {r['tries']} |")
            continue
        lines.append(
            f"| {r['round']} | {r['server']} | {fmt(r['latency_p50_ms'])} / {fmt(r['latency_p90_ms'])} / "
            f"{fmt(r['latency_p99_ms'])} / {fmt(r['latency_max_ms'])} | {fmt(r['last_p50_ms'])} / "
            f"{fmt(r['last_p99_ms'])} | {pct(r['server_cpu_util'])} | {pct(r['gen_cpu_util'])} "
            f"| {r['multi_frame_reads']:,} | {pct(r['noise'])} | {r['tries']} |"
        )
    lines += ["", "See benchmarks/README.md, W1 paced.", ""]
    return "\n".join(lines)


def markdown_w4(report: dict[str, Any]) -> str:
    cfg, env, summary = report["config"], report["environment"], report["summary"]
    cpus = parse_cpus(str(cfg["server_cpu"]))
    pins = "nodes not pinned" if not cpus else f"node 1 pinned to CPU {cpus[0]}, node 2 to CPU {cpus[1 % len(cpus)]}"
    lines = [
        f"# W4 cluster fan-out: N = {cfg['n']} subscribers on one channel, one Snorky node against two on Redis",
        "",
        f"- Date: {report['date']}; command: `{report['command']}`",
        f"- Machine: {env['cpus']} CPUs ({env['cpu_model']}), Linux {env['kernel']}, Python {env['python']}, "
        f"Tornado {env['tornado']}, Snorky {env['snorky']} (git {env.get('git_commit')}"
        f"{', with uncommitted changes' if env.get('git_dirty') else ''}; source digest "
        f"{env.get('snorky_source')}), redis-server {env.get('redis_server')}, redis-py {env.get('redis')}",
        f"- Pinning: {pins}; load generator "
        + (f"pinned to CPU {cfg['gen_cpu']}" if cfg["gen_cpu"] is not None else "not pinned")
        + "; redis-server "
        + (f"pinned to CPU {cfg['redis_cpu']}" if cfg.get("redis_cpu") is not None else "not pinned")
        + "; the runner "
        + (f"pinned to CPU {cfg['gen_cpu']}" if cfg["gen_cpu"] is not None else "not pinned")
        + " (it sleeps during the runs).",
        "- Setups: `snorky`: one node, memory broker (W1's Snorky server); `redis-1node`: one node with "
        "`RedisBroker`, all N subscribers and the publisher on it; `redis-2nodes`: two nodes on the same "
        "Redis, N/2 subscribers on each, the publisher on node 1 (every publish goes through Redis to both). "
        'One redis-server for the suite (started by the runner on a free loopback port, `--save "" '
        "--appendonly no`, emptied before each run); every node started afresh per run, with a fresh prefix.",
        f"- {cfg['rounds']} rounds, the setups in a rotated order each round; figures are medians over the rounds, "
        f"ratios medians of the per-round ratios. Messages per run: "
        + (f"{cfg['messages']}" if cfg["messages"] else f"as many as the publisher sends in {cfg['seconds']} s")
        + f"; publisher window {cfg['window']} publishes; payload {cfg['payload']} characters; "
        f"warm-up {cfg['warmup']} messages; subscribers read every {cfg['batch_ms']} ms ({cfg['engine']} engine); "
        f"Snorky run from a {cfg.get('source', 'live tree')}.",
        *baseline_lines(report),
        "",
    ]
    one, two, memory = "redis-1node", "redis-2nodes", "snorky"
    s1, s2 = summary.get(one), summary.get(two)
    if s1 and s2 and s1.get("deliveries_per_s") and s2.get("deliveries_per_s"):
        ratios = round_ratios(report, two, one, "deliveries_per_s")
        ratio = median(ratios)
        cpu_ratio = median(round_ratios(report, two, one, "server_cpu_s_per_million"))
        lines += [
            "## Two nodes against one",
            "",
            f"- **Deliveries/s: two nodes {fmt(s2['deliveries_per_s'], 0)}, one node "
            f"{fmt(s1['deliveries_per_s'], 0)}: × {fmt(ratio)}** (per round: "
            + ", ".join(fmt(r) for r in ratios)
            + f"). The target is × 1.6: {'reached' if ratio is not None and ratio >= 1.6 else 'not reached'} "
            f"on this machine.",
            f"- Nodes' CPU per million deliveries (the nodes' sum): two nodes {fmt(s2['server_cpu_s_per_million'])} s, "
            f"one node {fmt(s1['server_cpu_s_per_million'])} s: × {fmt(cpu_ratio)}. Redis: "
            f"{fmt(s2.get('redis_cpu_s_per_million'), 3)} s and {fmt(s1.get('redis_cpu_s_per_million'), 3)} s per "
            f"million deliveries ({pct(s2.get('redis_cpu_util'), 1)} and {pct(s1.get('redis_cpu_util'), 1)} of a CPU).",
        ]
        if cpu_ratio:
            lines.append(
                f"- With a CPU of its own for each node and the generator elsewhere, two nodes would deliver "
                f"about 2 / {fmt(cpu_ratio)} = **× {fmt(2 / cpu_ratio)}** what one node does, if each node "
                f"stayed as busy as the one node is here ({pct(s1.get('node1_cpu_util'))}): a projection from "
                f"the measured CPU per delivery, not a measurement."
            )
        total = sum(
            s2.get(k) or 0.0 for k in ("server_cpu_s_per_million", "redis_cpu_s_per_million", "gen_cpu_s_per_million")
        )
        if total and s2.get("deliveries_per_s") and s2.get("ksoftirqd_util") is not None:
            total += s2["ksoftirqd_util"] / s2["deliveries_per_s"] * 1e6
            bound = (env.get("cpus") or 2) / total * 1e6
            lines.append(
                f"- The whole machine: two nodes, Redis, the generator and ksoftirqd spend {fmt(total)} CPU s per "
                f"million deliveries in the two-node runs, so {env.get('cpus')} CPUs cannot deliver more than about "
                f"{fmt(bound, 0)}/s (× {fmt(bound / s1['deliveries_per_s'])} one node) whatever the pinning; "
                f"the machine was {pct(s2.get('machine_cpu_util'))} busy in the two-node runs."
            )
        if summary.get(memory) and summary[memory].get("deliveries_per_s"):
            sm = summary[memory]
            lines.append(
                f"- One node on Redis against the memory broker (`snorky`, {fmt(sm['deliveries_per_s'], 0)} "
                f"deliveries/s, {fmt(sm['server_cpu_s_per_million'])} CPU s / 1M): deliveries × "
                f"{fmt(median(round_ratios(report, one, memory, 'deliveries_per_s')))}, CPU per delivery × "
                f"{fmt(median(round_ratios(report, one, memory, 'server_cpu_s_per_million')))}; two nodes against "
                f"the memory broker: deliveries × {fmt(median(round_ratios(report, two, memory, 'deliveries_per_s')))}."
            )
        lines.append("")
    lines += [
        "## Medians",
        "",
        "| setup | deliveries/s | × 1 node | nodes' CPU s / 1M deliveries (user + sys) | × 1 node "
        "| node 1 CPU use | node 2 CPU use | Redis CPU s / 1M | Redis CPU use | generator CPU use "
        "| generator CPU s / 1M | ksoftirqd CPU use | machine CPU use | lost | checks |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for server, s in summary.items():
        checks = "ok" if s["checks_ok"] and not s["errors"] else "FAILED"
        if s["noisy_rounds"]:
            checks += f" ({s['noisy_rounds']} noisy run(s), {s['rounds_in_medians']} in the medians)"
        lines.append(
            f"| {server} | {fmt(s['deliveries_per_s'], 0)} | {fmt(s.get('deliveries_per_s_x_1node'))} "
            f"| {fmt(s['server_cpu_s_per_million'])} ({fmt(s['server_user_s_per_million'])} + "
            f"{fmt(s['server_sys_s_per_million'])}) | {fmt(s.get('server_cpu_s_per_million_x_1node'))} "
            f"| {pct(s.get('node1_cpu_util'))} | {pct(s.get('node2_cpu_util'))} "
            f"| {fmt(s.get('redis_cpu_s_per_million'), 3)} | {pct(s.get('redis_cpu_util'), 1)} "
            f"| {pct(s['gen_cpu_util'])} | {fmt(s['gen_cpu_s_per_million'])} | {pct(s.get('ksoftirqd_util'))} "
            f"| {pct(s.get('machine_cpu_util'))} | {s['lost']} | {checks} |"
        )
    notes = source_notes(report)
    for server, s in summary.items():
        for error in s["errors"]:
            notes.append(f"- {server}: error: {error}")
    if notes:
        lines += ["", "Warnings:", *notes]
    lines += [
        "",
        *comparison_lines(report),
        "## Every run",
        "",
        "| round | setup | messages | deliveries/s | wall s | nodes' CPU s | node 1 CPU use | node 2 CPU use "
        "| deliveries via node 2 | Redis CPU use | generator CPU use | ksoftirqd CPU use | other CPU use "
        "| machine CPU use | publish reply ms (median / max) | lost | tries |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["runs"]:
        if "error" in r:
            lines.append(
                f"| {r['round']} | {r['server']} | error: {r['error'][:120]} | | | | | | | | | | | | | | {r['tries']} |"
            )
            continue
        by_port = list((r.get("deliveries_by_port") or {}).values())
        via2 = f"{100 * by_port[1] / r['deliveries']:.0f} %" if len(by_port) > 1 and r["deliveries"] else "–"
        reply = r.get("reply_ms") or {}
        reply_ms = f"{fmt(reply.get('p50'), 0)} / {fmt(reply.get('max'), 0)}" if reply else "–"
        lines.append(
            f"| {r['round']} | {r['server']} | {r['messages']} | {fmt(r['deliveries_per_s'], 0)} | {fmt(r['wall_s'])} "
            f"| {fmt(r['server_cpu_s'])} | {pct(r.get('node1_cpu_util'))} | {pct(r.get('node2_cpu_util'))} | {via2} "
            f"| {pct(r.get('redis_cpu_util'), 1)} | {pct(r['gen_cpu_util'])} | {pct(r.get('ksoftirqd_util'))} "
            f"| {pct(r['noise'])} | {pct(r.get('machine_cpu_util'))} | {reply_ms} | {r['lost']} | {r['tries']} |"
        )
    lines += [
        "",
        "Nodes' CPU: utime + stime of the node processes (/proc/PID/stat), summed, over the measured window, "
        "from the first publish to the last delivery; node CPU use is each node's CPU seconds over the window's "
        "wall seconds (100 % = one CPU). Redis CPU: the redis-server process's threads' run time "
        "(/proc/PID/task/*/schedstat, in nanoseconds: finer than the 10 ms ticks of /proc/PID/stat). Machine CPU use: "
        "all CPUs' busy time (/proc/stat) as a fraction of all the CPUs. Publish reply: from the generator's writing a "
        "publish to its reading the reply (which it does at once, except during a pass over the subscribers). "
        "ksoftirqd CPU use: the kernel threads "
        "that take over network processing under load. Other CPU use: everything else on the machine, as a "
        "fraction of one CPU. See benchmarks/README.md.",
        "",
    ]
    return "\n".join(lines)


# Main ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--workload",
        choices=sorted(WORKLOADS),
        default="w1",
        help="w1: fan-out, one server; w4: cluster fan-out, Snorky nodes on Redis",
    )
    parser.add_argument(
        "--servers",
        help="comma-separated servers (setups), from: "
        + ", ".join(SETUPS)
        + "; default: "
        + "; ".join(f"{k}: {w.servers}" for k, w in WORKLOADS.items()),
    )
    parser.add_argument("--n", type=int, help="subscriber connections (default: w1, w4 1000; w3 5000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--messages",
        type=int,
        default=0,
        help="messages per run (default 0: as many as the publisher sends in --seconds)",
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to publish, with --messages 0")
    parser.add_argument(
        "--out",
        default=str(HERE / "results" / "latest"),
        help="path of the results without extension: writes OUT.md and OUT.json",
    )
    parser.add_argument("--window", type=int, help="publishes awaiting their reply at most (default: w1 50; w4 200)")
    parser.add_argument("--batch-ms", type=float, default=100.0, help="read each subscriber at most this often")
    parser.add_argument("--warmup", type=int, default=20, help="messages published before each measured window")
    parser.add_argument("--payload", type=int, default=100, help="characters in each published message")
    parser.add_argument("--engine", choices=("epoll", "asyncio"), default="epoll")
    parser.add_argument(
        "--concurrency",
        default="1,50",
        help="w2: comma-separated connections, each with one call in flight, one phase each",
    )
    parser.add_argument("--rate", type=float, default=10.0, help="w1p: publishes per second")
    parser.add_argument("--paced-seconds", type=float, default=10.0, help="w1p: length of the measured window")
    parser.add_argument("--warmup-s", type=float, default=0.5, help="w2: seconds of calls before each window")
    parser.add_argument(
        "--channels",
        choices=("one", "distinct"),
        default="one",
        help="w3: every connection subscribed to one channel, or each to its own",
    )
    parser.add_argument(
        "--server-cpu",
        help="CPU(s) for the server: node i on the i-th of a comma-separated list, or none (default: w1 0; w4 0,1)",
    )
    parser.add_argument("--gen-cpu", help="CPU for the load generator and the runner, or none (default: w1 1; w4 none)")
    parser.add_argument("--redis-cpu", default="none", help="CPU for the suite's redis-server (w4), or none")
    parser.add_argument("--redis-server", default="redis-server", help="the redis-server binary (w4)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a run may take to deliver all")
    parser.add_argument(
        "--max-noise",
        type=float,
        default=0.10,
        help="other processes' CPU use (fraction of a CPU) over which a run is repeated",
    )
    parser.add_argument("--retries", type=int, default=2, help="times a noisy run is repeated")
    parser.add_argument(
        "--quiet-wait", type=float, default=60.0, help="seconds to wait, before each run, for the machine to be idle"
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter for the servers and the generator")
    parser.add_argument(
        "--live-source",
        action="store_true",
        help="run the servers on snorky/ as it is at each run, not on a copy made at the start",
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help=f"a git ref or commit: run the setups named SETUP{BASE} (snorky{BASE}, snorky-metrics{BASE}, ...) "
        "on snorky/ as it is at REF, in the same rounds, and compare (see README.md)",
    )
    parser.add_argument(
        "--from-json", metavar="JSON", help="run nothing: summarize the runs of an earlier OUT.json again, into --out"
    )
    args = parser.parse_args()
    if args.from_json:
        report = json.loads(Path(args.from_json).read_text())
        for result in report["runs"]:
            if "error" not in result:
                add_derived(result)
        workload = WORKLOADS[report["config"].get("workload", "w1")]
        report["summary"] = summarize(
            report["runs"],
            report["config"]["servers"],
            workload.baseline,
            workload.ratio_suffix,
            *workload_metrics(report),
        )
        report["comparisons"] = comparisons(report)
        write(report, Path(args.out))
        return

    workload = WORKLOADS[args.workload]
    servers = [s.strip() for s in (args.servers or workload.servers).split(",") if s.strip()]
    unknown = [s for s in servers if s not in SETUPS]
    if unknown:
        parser.error(f"unknown servers: {', '.join(unknown)} (known: {', '.join(SETUPS)})")
    based = [s for s in servers if SETUPS[s].base]
    if based and not args.baseline:
        parser.error(f"--baseline REF is needed by {', '.join(based)}")
    if args.window is None:
        args.window = workload.window
    if args.n is None:
        args.n = workload.n
    args.server_cpus = parse_cpus(args.server_cpu if args.server_cpu is not None else workload.server_cpu)
    gen_cpus = parse_cpus(args.gen_cpu if args.gen_cpu is not None else workload.gen_cpu)
    args.gen_cpu = gen_cpus[0] if gen_cpus else None
    redis_cpus = parse_cpus(args.redis_cpu)
    args.redis_cpu = redis_cpus[0] if redis_cpus else None
    if (os.cpu_count() or 1) < 2:
        args.server_cpus = args.gen_cpu = args.redis_cpu = None
    messages = args.messages
    out = Path(args.out)
    if args.gen_cpu is not None:
        os.sched_setaffinity(0, {args.gen_cpu})  # keep the runner off the server's CPU

    report: dict[str, Any] = {
        "benchmark": workload.title,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "config": {
            "workload": args.workload,
            "servers": servers,
            "n": args.n,
            "messages": messages,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "window": args.window,
            "batch_ms": args.batch_ms,
            "warmup": args.warmup,
            "payload": args.payload,
            "engine": args.engine,
            "server_cpu": None if args.server_cpus is None else ",".join(map(str, args.server_cpus)),
            "gen_cpu": args.gen_cpu,
            "redis_cpu": args.redis_cpu,
            "max_noise": args.max_noise,
            "concurrency": args.concurrency,
            "warmup_s": args.warmup_s,
            "channels": args.channels,
            "rate": args.rate,
            "paced_seconds": args.paced_seconds,
            "baseline": None,
        },
        "environment": environment(),
        "runs": [],
    }
    args.base_source = args.base_commit = None
    if args.baseline:
        args.base_source, args.base_commit = baseline_source(args.baseline)
        report["config"]["baseline"] = {
            "ref": args.baseline,
            "commit": args.base_commit,
            "digest": source_digest(args.base_source / "snorky"),
        }
    source = None if args.live_source else snapshot_source()
    report["config"]["source"] = "live tree" if source is None else "copy of snorky/ made at the start"
    if source is not None:
        report["environment"]["snorky_source"] = source_digest(source / "snorky")
    try:
        check_sources(servers, args, source)
    except SystemExit:
        for folder in (source, args.base_source):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        raise
    redis = None
    if any(SETUPS[s].redis for s in servers):
        redis = RedisServer(args.redis_server, args.redis_cpu)
        report["environment"]["redis_server"] = redis.version()
        try:
            report["environment"]["redis"] = __import__("redis").__version__
        except ImportError:
            report["environment"]["redis"] = None
    started = time.monotonic()
    try:
        if redis is not None:
            redis.start()
        run_rounds(report, servers, args, messages, source, redis)
    finally:
        if redis is not None:
            redis.stop()
        for folder in (source, args.base_source):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
    report["elapsed_s"] = time.monotonic() - started
    report["summary"] = summarize(
        report["runs"], servers, workload.baseline, workload.ratio_suffix, *workload_metrics(args)
    )
    report["comparisons"] = comparisons(report)
    print()
    write(report, out)


def run_rounds(
    report: dict[str, Any],
    servers: list[str],
    args: argparse.Namespace,
    messages: int,
    source: Path | None,
    redis: RedisServer | None = None,
) -> None:
    for round_no in range(1, args.rounds + 1):
        order = servers[round_no - 1 :] + servers[: round_no - 1] if servers else []
        for server in order:
            for tries in range(1, args.retries + 2):
                load = wait_quiet(args.quiet_wait)
                try:
                    result = run_once(server, args, messages, source, redis)
                except Exception as exc:  # noqa: BLE001 - recorded (and tried again), the suite goes on
                    result = {"error": f"{type(exc).__name__}: {exc}"}
                    print(f"round {round_no} {server:>12}: try {tries}: {result['error']}", flush=True)
                    continue
                add_derived(result)
                result["noisy"] = result["noise"] is not None and result["noise"] > args.max_noise
                if not result["noisy"]:
                    break
            result.update(round=round_no, server=server, tries=tries, load_before=load)
            report["runs"].append(result)
            if "error" in result:
                line = result["error"]
            elif "phases" in result:  # W2
                line = (
                    ", ".join(
                        f"{level} conn.: {phase['requests_per_s']:>8,.0f} requests/s, server "
                        f"{phase.get('server_us_per_request', 0):.1f} µs/request "
                        f"({100 * phase['server_cpu_util']:.0f} %), "
                        f"generator {100 * phase['gen_cpu_util']:.0f} %"
                        for level, phase in result["phases"].items()
                    )
                    + f", other {100 * result['noise']:.0f} %"
                )
            elif "latency_ms" in result:  # W1 paced
                line = (
                    f"latency p50 {result['latency_p50_ms']:.2f} ms, p99 {result['latency_p99_ms']:.2f} ms, "
                    f"last delivery p50 {result['last_p50_ms']:.2f} ms, p99 {result['last_p99_ms']:.2f} ms, "
                    f"server {100 * result['server_cpu_util']:.0f} %, other {100 * result['noise']:.0f} %, "
                    f"lost {result['lost']}"
                )
            elif "rss_after_kb" in result:  # W3
                line = (
                    f"{result['rss_per_connection_kb']:.2f} kB/connection, {result['connections_per_s']:,.0f} "
                    f"connections/s (server {result['connect_server_us']:.0f} µs each, generator "
                    f"{100 * result['connect_gen_cpu_util']:.0f} %), {result['subscriptions_per_s']:,.0f} "
                    f"subscriptions/s, other {100 * result['noise']:.0f} %"
                )
            else:
                parts = [
                    f"{result['deliveries_per_s']:>10,.0f} deliveries/s",
                    f"server {result['server_cpu_s_per_million']:.2f} CPU s/1M "
                    f"({100 * result['server_cpu_util']:.0f} %)",
                ]
                if result.get("nodes", 1) > 1:
                    parts += [
                        f"node {i} {100 * result[f'node{i}_cpu_util']:.0f} %"
                        for i in (1, 2)
                        if result.get(f"node{i}_cpu_util") is not None
                    ]
                if result.get("redis_cpu_util") is not None:
                    parts.append(f"redis {100 * result['redis_cpu_util']:.1f} %")
                parts += [
                    f"generator {100 * result['gen_cpu_util']:.0f} %",
                    f"other {100 * result['noise']:.0f} %",
                    f"lost {result['lost']}",
                ]
                line = ", ".join(parts)
            print(f"round {round_no} {server:>12}: {line}", flush=True)


def write(report: dict[str, Any], out: Path) -> None:
    """Write OUT.json and OUT.md, and print the markdown."""
    if out.suffix in (".md", ".json"):
        out = out.with_suffix("")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
