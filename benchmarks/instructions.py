"""Count the instructions Snorky's server runs per request (W2) and per delivery (W1), under
Valgrind's callgrind: figures that do not move with the machine's noise.

    python benchmarks/instructions.py --servers snorky@base,snorky,snorky-metrics --baseline 50269c3
    python benchmarks/instructions.py --workload w2 --calls 5000 --out benchmarks/results/instructions

On a shared two-CPU machine the time-based workloads of ``run.py`` swing by a tenth
or more between rounds, too much to see a cost of a few percent. Instructions
executed are counted exactly by Valgrind, whatever else runs, so a setup's cost
relative to another is seen to a fraction of a percent. They are not time (a cache
miss is one instruction, a system call's kernel work is none): this complements
``run.py``, it does not replace it.

For each setup (the names of ``run.py``: ``snorky``, ``snorky-metrics``,
``snorky-namespaces``, ``snorky-limits`` and their ``@base`` twins with
``--baseline REF``) and workload:

1. the setup's server script runs under ``valgrind --tool=callgrind`` on a free port;
2. a Tornado client process (this one) connects and warms up:

   - ``w2``: ``--connections`` connections each make ``--warmup`` echo calls;
   - ``w1``: ``--n`` subscribers of one channel, and one publisher that publishes
     ``--warmup`` messages, each received by every subscriber;

3. ``callgrind_control --zero`` clears the counts, the measured part runs
   (``--calls`` echo calls spread over the connections, each connection with one
   call in flight; or ``--messages`` publishes, one after the other, each waited for
   until every subscriber has it), and ``callgrind_control --dump`` writes the
   counts;
4. instructions per request (per delivery) = the dump's total over the calls
   (deliveries); the server is stopped.

Every reply and delivery is checked. Writes ``OUT.md`` and ``OUT.json`` (default
``benchmarks/results/instructions``). Needs ``valgrind`` (Debian's package).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tornado.websocket import WebSocketClientConnection, websocket_connect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import BASE, SERVERS, SETUPS, baseline_source, server_env, server_options, snapshot_source  # noqa: E402

HERE = Path(__file__).resolve().parent
CHANNEL = "bench"


def call(command: str, params: dict[str, Any], call_id: int, service: str) -> str:
    return json.dumps({"service": service, "message": {"command": command, "params": params, "callId": call_id}})


class Server:
    """One server script under callgrind, on a free port.

    With ``counted=False`` it runs without Valgrind and counts nothing (the tests
    check the workloads that way: every reply and delivery is still checked).
    """

    def __init__(
        self,
        setup_name: str,
        source: Path | None,
        folder: Path,
        python: str,
        prefix: str = "",
        counted: bool = True,
    ) -> None:
        setup = SETUPS[setup_name]
        self.counted = counted
        self.out = folder / f"{prefix}{setup_name.replace('@', '-at-')}.%p"
        valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={self.out}", "--dump-line=no"]
        command = [
            *(valgrind if counted else []),
            python,
            str(SERVERS["snorky"]),
            "--port",
            "0",
            "--no-pings",
            *server_options(setup),
        ]
        self.process = subprocess.Popen(
            command, env=server_env(source), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        found = re.search(r"listening on port (\d+)", line)
        if not found:
            self.stop()
            raise SystemExit(f"{setup_name}: the server did not start under valgrind ({line!r})")
        self.port = int(found[1])

    def control(self, option: str) -> None:
        if not self.counted:
            return
        subprocess.run(
            ["callgrind_control", option, str(self.process.pid)], check=True, capture_output=True, timeout=120
        )

    def dumped(self) -> int:
        """Dump the counts since the last zero; the instructions in them (0 uncounted)."""
        if not self.counted:
            return 0
        before = set(self.out.parent.glob(f"{self.out.name.replace('%p', str(self.process.pid))}*"))
        self.control("--dump")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            fresh = set(self.out.parent.glob(f"{self.out.name.replace('%p', str(self.process.pid))}*")) - before
            for path in fresh:
                text = path.read_text(errors="replace")
                total = re.search(r"(?m)^(?:summary|totals): (\d+)", text)
                if total:
                    return int(total[1])
            time.sleep(0.2)
        raise RuntimeError("callgrind wrote no dump")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


async def read(ws: WebSocketClientConnection) -> dict[str, Any]:
    text = await asyncio.wait_for(ws.read_message(), 120)
    if text is None:
        raise RuntimeError("the server closed a connection")
    return json.loads(text)  # type: ignore[no-any-return]


async def close_all(conns: list[WebSocketClientConnection]) -> None:
    """Close the connections and wait until each one has closed."""
    for ws in conns:
        ws.close()
    for ws in conns:
        while await asyncio.wait_for(ws.read_message(), 60) is not None:
            pass


async def w2(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{server.port}/ws"
    conns = [await websocket_connect(url) for _ in range(args.connections)]
    payload = "x" * args.payload

    async def calls(ws: WebSocketClientConnection, count: int, first: int) -> None:
        for k in range(first, first + count):
            ws.write_message(call("echo", {"message": payload}, k, "echo"))
            reply = await read(ws)
            if reply != {"service": "echo", "message": {"type": "response", "callId": k, "data": payload}}:
                raise RuntimeError(f"unexpected reply {reply!r}")

    await asyncio.gather(*(calls(ws, args.warmup, 1) for ws in conns))
    server.control("--zero")
    share, extra = divmod(args.calls, len(conns))
    counts = [share + (i < extra) for i in range(len(conns))]
    await asyncio.gather(*(calls(ws, count, 10**6) for ws, count in zip(conns, counts, strict=True)))
    instructions = server.dumped()
    await close_all(conns)
    return {"calls": args.calls, "instructions": instructions, "per_call": instructions / args.calls}


async def w1(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{server.port}/ws"
    subscribers = []
    for i in range(args.n):
        ws = await websocket_connect(url)
        ws.write_message(call("subscribe", {"channel": CHANNEL}, i, "pubsub"))
        subscribers.append(ws)
    for ws in subscribers:
        reply = await read(ws)
        if reply["message"].get("type") != "response":
            raise RuntimeError(f"subscribe refused: {reply!r}")
    publisher = await websocket_connect(url)
    payload = "x" * args.payload

    async def publish(seq: int) -> None:
        publisher.write_message(call("publish", {"channel": CHANNEL, "message": f"{seq}:{payload}"}, seq, "pubsub"))
        reply = await read(publisher)
        if reply["message"].get("type") != "response":
            raise RuntimeError(f"publish refused: {reply!r}")
        got = await asyncio.gather(*(read(ws) for ws in subscribers))
        for message in got:
            if message["message"].get("message") != f"{seq}:{payload}":
                raise RuntimeError(f"unexpected delivery {message!r}")

    for seq in range(args.warmup):
        await publish(seq)
    server.control("--zero")
    for seq in range(args.warmup, args.warmup + args.messages):
        await publish(seq)
    instructions = server.dumped()
    await close_all([*subscribers, publisher])
    deliveries = args.messages * args.n
    return {
        "messages": args.messages,
        "deliveries": deliveries,
        "instructions": instructions,
        "per_delivery": instructions / deliveries,
    }


WORKLOADS = {"w1": (w1, "per_delivery", "instructions / delivery"), "w2": (w2, "per_call", "instructions / call")}


def run_one(
    setup: str, workload: str, args: argparse.Namespace, sources: dict[bool, Path | None], counted: bool = True
) -> dict[str, Any]:
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="snorky-instructions-"))
    folder.mkdir(parents=True, exist_ok=True)
    server = Server(setup, sources[SETUPS[setup].base], folder, args.python, f"{workload}-", counted)
    try:
        result = asyncio.run(WORKLOADS[workload][0](server, args))
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return result


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "# Instructions per delivery (W1) and per call (W2), counted by callgrind",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; command: `{results['command']}`",
        f"- Python {platform.python_version()}, {results['valgrind']}; baseline: {results['baseline'] or 'none'}",
        f"- W1: {args.n} subscribers of one channel, {args.messages} publishes of {args.payload} characters "
        f"counted after {args.warmup}; W2: {args.calls} echo calls over {args.connections} connections "
        f"counted after {args.warmup} per connection. Counted: the server process's user-space instructions "
        f"in the measured part, WebSocket pings off. {args.rounds} round(s), each setup started afresh; "
        "the figure is the median, then the lowest and highest.",
        "",
    ]
    for workload in args.workloads:
        _, key, unit = WORKLOADS[workload]
        runs = results["runs"][workload]
        figures = {setup: median([row[key] for row in rows]) for setup, rows in runs.items()}
        lines += [f"## {workload.upper()}", "", f"| setup | {unit} | range | × snorky | × snorky@base |"]
        lines.append("|---|---:|---:|---:|---:|")
        for setup, rows in runs.items():
            values = [row[key] for row in rows]
            cells = [
                f"{figures[setup] / figures[against]:.3f}" if against in figures else ""
                for against in ("snorky", "snorky" + BASE)
            ]
            spread = f"{min(values):,.0f} to {max(values):,.0f}"
            lines.append(f"| {setup} | {figures[setup]:,.0f} | {spread} | {cells[0]} | {cells[1]} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="snorky,snorky-metrics", help="setups of run.py (Snorky's only)")
    parser.add_argument("--workload", default="w1,w2", help="w1, w2 or both")
    parser.add_argument("--baseline", help="a git ref: the @base setups run snorky/ as it is there")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each setup (the median is reported)")
    parser.add_argument("--n", type=int, default=1000, help="w1: subscribers")
    parser.add_argument("--messages", type=int, default=20, help="w1: publishes counted")
    parser.add_argument("--calls", type=int, default=4000, help="w2: calls counted")
    parser.add_argument("--connections", type=int, default=50, help="w2: connections")
    parser.add_argument("--warmup", type=int, default=10, help="publishes, or calls per connection, before counting")
    parser.add_argument("--payload", type=int, default=100, help="characters in each message")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--keep", help="keep callgrind's files in this folder (for callgrind_annotate)")
    parser.add_argument("--out", default=str(HERE / "results" / "instructions"))
    args = parser.parse_args()
    args.workloads = [w.strip() for w in args.workload.split(",") if w.strip()]
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for name in servers:
        if SETUPS.get(name) is None or SETUPS[name].server != "snorky" or SETUPS[name].redis:
            parser.error(f"{name}: not a setup of Snorky's server script on the memory broker")
    if any(SETUPS[s].base for s in servers) and not args.baseline:
        parser.error("@base setups need --baseline REF")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    sources: dict[bool, Path | None] = {False: snapshot_source(), True: None}
    commit = None
    if args.baseline:
        sources[True], commit = baseline_source(args.baseline)
    version = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()
    results: dict[str, Any] = {
        "command": "python benchmarks/instructions.py " + " ".join(sys.argv[1:]),
        "valgrind": version,
        "baseline": f"{args.baseline} ({commit[:12]})" if commit else None,
        "runs": {},
    }
    try:
        for workload in args.workloads:
            runs: dict[str, list[dict[str, Any]]] = {setup: [] for setup in servers}
            results["runs"][workload] = runs
            for round_ in range(args.rounds):
                shift = round_ % len(servers)  # a different order each round
                for setup in servers[shift:] + servers[:shift]:
                    row = run_one(setup, workload, args, sources)
                    runs[setup].append(row)
                    key, unit = WORKLOADS[workload][1:]
                    print(f"round {round_ + 1} {workload} {setup:>20}: {row[key]:,.0f} {unit}", flush=True)
    finally:
        for folder in sources.values():
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(report(results, args) + "\n")
    print(f"wrote {out.with_suffix('.md')}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
