"""Load generator for W3: many idle subscribed connections, and what they cost the server.

Run as its own process (``run.py --workload w3`` starts it pinned to a CPU of
its own), against a server started afresh:

1. reads the server's resident memory (``VmRSS`` in ``/proc/PID/status``);
2. opens N connections (TCP connect and WebSocket handshake, the minimal client
   of ``loadgen.py``, then the protocol's own handshake: none for Snorky's,
   the Engine.IO open packet and the namespace connection for ``--protocol
   socketio``), at most ``--connect-concurrency`` (100) under way at a time, and
   times it: connections/s;
3. subscribes each to channel ``bench`` (``--channels one``, the default) or
   each to a channel of its own (``--channels distinct``), as many at a time,
   and times it;
4. waits ``--settle`` seconds (the server has nothing left to do), reads the
   server's VmRSS again: (after - before) / N is the memory per connection;
5. closes them.

The server's and its own CPU seconds (``/proc/PID/stat``) are read around
steps 2 and 3; the other processes' CPU (``/proc/stat``) too.

It prints one JSON object.

Usage: python benchmarks/loadgen_conns.py --port 8000 --n 5000 --server-pid PID
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import (  # noqa: E402
    PROTOCOLS,
    Client,
    connect,
    cpu_stat,
    cpu_stat_delta,
    kernel_threads,
    proc_cpu,
    proc_times,
    raise_nofile,
    steady_malloc,
)


def status_kb(pid: int, field: str = "VmRSS") -> int:
    """A ``kB`` field of /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class Window:
    """CPU of the server, the generator, ksoftirqd and everything (from /proc) over a step."""

    def __init__(self, server_pid: int | None, softirqd: dict[str, int]) -> None:
        self.pid = server_pid
        self.softirqd = softirqd
        self.server = proc_times(server_pid) if server_pid else None
        self.gen = proc_times()
        self.stat = cpu_stat()
        self.soft = {name: proc_cpu(pid) for name, pid in softirqd.items()}
        self.t0 = time.perf_counter()

    def close(self, count: int) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        server = proc_times(self.pid) if self.pid else None
        gen = proc_times()
        stat = cpu_stat_delta(self.stat, cpu_stat())
        soft = sum(proc_cpu(pid) - self.soft[name] for name, pid in self.softirqd.items())
        out: dict[str, Any] = {"count": count, "wall_s": wall, "per_s": count / wall if wall > 0 else None}
        if server is not None and self.server is not None:
            out["server_cpu_s"] = sum(server) - sum(self.server)
            out["server_user_s"] = server[0] - self.server[0]
            out["server_sys_s"] = server[1] - self.server[1]
            out["server_cpu_util"] = out["server_cpu_s"] / wall
            out["server_us_each"] = out["server_cpu_s"] / max(1, count) * 1e6
        out["gen_cpu_s"] = sum(gen) - sum(self.gen)
        out["gen_cpu_util"] = out["gen_cpu_s"] / wall
        out["gen_us_each"] = out["gen_cpu_s"] / max(1, count) * 1e6
        out["ksoftirqd_cpu_s"] = soft
        total = stat.get("cpu", {})
        busy = sum(total.get(k, 0.0) for k in ("user", "nice", "system", "irq", "softirq"))
        out["other_cpu_s"] = busy - out["gen_cpu_s"] - out.get("server_cpu_s", 0.0) - soft
        return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    protocol = PROTOCOLS[args.protocol]
    limit = asyncio.Semaphore(args.connect_concurrency)
    softirqd = kernel_threads()
    failures: list[str] = []
    clients: list[Client] = []

    async def open_client() -> None:
        async with limit:
            try:
                client = await connect(args.host, args.port, protocol, args.path)
            except Exception as exc:  # noqa: BLE001 - reported below
                failures.append(f"{type(exc).__name__}: {exc}")
                return
            clients.append(client)

    async def subscribe(index: int, client: Client) -> None:
        channel = f"idle-{index}" if args.channels == "distinct" else "bench"
        async with limit:
            try:
                reply = await client.call(protocol.subscribe_frame(channel, 1), raw=True, timeout=60.0)
                if protocol.reply_id(reply) != 1:
                    raise RuntimeError(f"subscribe refused: {reply[:200]!r}")
            except Exception as exc:  # noqa: BLE001 - reported below
                failures.append(f"{type(exc).__name__}: {exc}")

    gc.collect()
    rss_before = status_kb(args.server_pid)
    window = Window(args.server_pid, softirqd)
    await asyncio.gather(*(open_client() for _ in range(args.n)))
    opened = window.close(len(clients))
    if failures:
        raise SystemExit(f"{len(failures)} of {args.n} connections failed, first: {failures[0]}")
    rss_connected = status_kb(args.server_pid)
    window = Window(args.server_pid, softirqd)
    await asyncio.gather(*(subscribe(i, c) for i, c in enumerate(clients)))
    subscribed = window.close(len(clients))
    if failures:
        raise SystemExit(f"{len(failures)} of {args.n} subscriptions failed, first: {failures[0]}")
    await asyncio.sleep(args.settle)
    rss_after = status_kb(args.server_pid)
    alive = sum(not c.closed for c in clients)
    for client in clients:
        client.transport.close()  # type: ignore[union-attr]
    await asyncio.sleep(0.2)
    n = len(clients)
    return {
        "n": n,
        "protocol": protocol.name,
        "channels": args.channels,
        "connect_concurrency": args.connect_concurrency,
        "rss_before_kb": rss_before,
        "rss_connected_kb": rss_connected,
        "rss_after_kb": rss_after,
        "rss_per_connection_kb": (rss_after - rss_before) / n,
        "rss_per_connection_unsubscribed_kb": (rss_connected - rss_before) / n,
        "connect": opened,
        "subscribe": subscribed,
        "alive_at_end": alive,
        "keepalives": sum(c.pings for c in clients),  # protocol pings answered while idle
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="snorky", help="the server's protocol")
    parser.add_argument("--path", help="the WebSocket request path (default: the protocol's, /ws for snorky)")
    parser.add_argument("--n", type=int, default=5000, help="connections")
    parser.add_argument(
        "--channels",
        choices=("one", "distinct"),
        default="one",
        help="all connections on one channel, or each on a channel of its own",
    )
    parser.add_argument("--connect-concurrency", type=int, default=100, help="connections (subscriptions) under way")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds between the last subscription and the RSS")
    parser.add_argument("--server-pid", type=int, required=True, help="server process measured")
    parser.add_argument("--cpu", type=int, help="pin this process to this CPU")
    args = parser.parse_args()
    steady_malloc()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    nofile = raise_nofile()
    if args.n + 50 > nofile:
        raise SystemExit(f"open-files limit {nofile} is too low for {args.n} connections")
    result = asyncio.run(run(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
