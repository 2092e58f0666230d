"""Load generator for W2: an echo RPC, request and reply, over WebSocket.

Run as its own process (``run.py --workload w2`` starts it pinned to a CPU of
its own). For each concurrency C of ``--concurrency`` (default ``1,50``), in turn,
on the same server:

1. opens C connections (the minimal client of ``loadgen.py``, on asyncio);
2. drives them with a plain ``epoll`` loop: each connection has exactly one call
   awaiting its reply, and sends the next as soon as the reply arrives (C = 1:
   one connection, strictly sequential);
3. warm-up for ``--warmup-s`` seconds, then the measured window of ``--seconds``
   (the loop runs on through both: the window is a slice of a steady flow);
   then it stops sending and waits for the last replies.

The call is ``{"service":"echo","message":{"command":"echo","params":{"message":
"<--payload characters>"},"callId":K}}``; the reply must be
``{"service":"echo","message":{"type":"response","callId":K,"data":"<the same>"}}``
(compared byte for byte, then, if the bytes differ, as JSON: a reply that
differs as JSON counts as an error). With ``--protocol socketio`` the call is the
event ``42K["echo",{"message":"..."}]`` and the reply its ack ``43K["..."]``
(``loadgen.PROTOCOLS``); the protocol's keep-alives (Engine.IO pings) are
answered and not counted as replies.

It prints one JSON object: per concurrency, the replies in the window,
requests/s, the server's and its own CPU seconds (``/proc/PID/stat``) over the
window, the other processes' CPU (``/proc/stat``), and the latency of the calls
in the window (median, 99th percentile).

Usage: python benchmarks/loadgen_rpc.py --port 8000 --server-pid PID
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import select
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import (  # noqa: E402
    PROTOCOLS,
    READ_SIZE,
    Client,
    WireProtocol,
    client_frame,
    connect,
    cpu_stat,
    cpu_stat_delta,
    kernel_threads,
    message_text,
    proc_cpu,
    proc_times,
    raise_nofile,
    steady_malloc,
)

RING = 256  # distinct call ids (and request frames, built once) per run


class Conn:
    """One connection in the epoll loop: its socket, unparsed bytes, and its call in flight."""

    __slots__ = ("client", "fd", "buf", "seq", "sent_at")

    def __init__(self, client: Client) -> None:
        self.client = client
        self.fd = client.fd
        self.buf = b""
        self.seq = 0
        self.sent_at = 0.0


def drive(clients: list[Client], args: argparse.Namespace, softirqd: dict[str, int]) -> dict[str, Any]:
    """Run the calls on ``clients`` (asyncio has paused them); measure a window of the flow."""
    protocol: WireProtocol = PROTOCOLS[args.protocol]
    texts = [message_text(k, args.payload) for k in range(RING)]
    frames = [client_frame(protocol.echo_frame(texts[k], k + 1)) for k in range(RING)]
    replies = [protocol.echo_reply(texts[k], k + 1) for k in range(RING)]
    control_size = protocol.control_size
    conns = {}
    poll = select.epoll(len(clients))
    for client in clients:
        client.transport.pause_reading()  # type: ignore[union-attr]
        client.raw = True
        conn = Conn(client)
        conns[conn.fd] = conn
        poll.register(conn.fd, select.EPOLLIN)
    read, write, perf = os.read, os.write, time.perf_counter
    errors: list[str] = []
    latencies: list[float] = []
    record = False
    answered = 0
    answered_in_window = 0
    other_bytes = 0  # replies equal as JSON but not byte for byte
    sent = 0

    def send(conn: Conn) -> None:
        nonlocal sent
        k = sent % RING
        conn.seq = k
        conn.sent_at = perf()
        data = frames[k]
        while data:
            try:
                data = data[write(conn.fd, data) :]
            except BlockingIOError:
                select.select([], [conn.fd], [], 1.0)
        sent += 1

    start = perf()
    t0 = start + args.warmup_s
    t1 = t0 + args.seconds
    marks: dict[str, Any] = {}
    for conn in conns.values():
        send(conn)
    in_flight = len(conns)
    stopping = False
    deadline = t1 + args.timeout
    while in_flight:
        now = perf()
        if not record and not stopping and now >= t0:
            gc.collect()
            gc.disable()
            marks["before"] = snapshot(args, softirqd)
            marks["t0"] = perf()
            answered_before = answered
            record = True
        elif record and now >= t1:
            marks["t1"] = perf()
            marks["after"] = snapshot(args, softirqd)
            gc.enable()
            answered_in_window = answered - answered_before
            record = False
            stopping = True
        if now >= deadline:
            errors.append(f"{in_flight} call(s) unanswered after the window")
            break
        for fd, _ in poll.poll(0.2):
            conn = conns[fd]
            data = read(fd, READ_SIZE)
            if not data:
                errors.append("the server closed a connection")
                poll.unregister(fd)
                in_flight -= 1
                continue
            buf = conn.buf + data if conn.buf else data
            pos, size = 0, len(buf)
            while size - pos >= 2:
                b0, length = buf[pos], buf[pos + 1]
                head = pos + 2
                if length == 126:
                    if size - pos < 4:
                        break
                    length = (buf[pos + 2] << 8) | buf[pos + 3]
                    head = pos + 4
                elif length > 126:
                    if length & 0x80:
                        raise RuntimeError("masked frame from the server")
                    if size - pos < 10:
                        break
                    length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                    head = pos + 10
                end = head + length
                if end > size:
                    break
                opcode = b0 & 0x0F
                if opcode == 0x9:
                    conn.client.write(client_frame(buf[head:end], 0xA))
                elif opcode == 0x8:
                    errors.append("the server closed a connection")
                elif opcode < 0x8:
                    payload = buf[head:end]
                    if payload == replies[conn.seq]:
                        reply = True
                    elif length <= control_size and conn.client.control(payload):
                        reply = False  # a keep-alive of the protocol, answered
                    else:
                        reply = True
                        other_bytes += 1
                        if len(errors) < 5:
                            check = check_reply(protocol, payload, conn.seq + 1, texts[conn.seq])
                            if check:
                                errors.append(check)
                    if reply:
                        answered += 1
                        if record:
                            latencies.append(perf() - conn.sent_at)
                        if stopping:
                            in_flight -= 1
                        else:
                            send(conn)
                pos = end
            conn.buf = buf[pos:] if pos < size else b""
    gc.enable()
    poll.close()
    for client in clients:
        client.raw = False
    if "after" not in marks:
        raise SystemExit(f"the window was not measured: {errors[:3]}")
    result = measure(marks, answered_in_window, latencies, errors, len(clients))
    result["replies_not_bytewise_equal"] = other_bytes
    result["keepalives"] = sum(client.pings for client in clients)  # protocol pings answered, not replies
    return result


def check_reply(protocol: WireProtocol, payload: bytes, call_id: int, text: str) -> str | None:
    """None if ``payload`` is the expected reply decoded (as JSON: keys in any order), else what is wrong."""
    try:
        got = protocol.decode(payload)
    except ValueError:
        return f"not decodable: {payload[:200]!r}"
    if got != protocol.decode(protocol.echo_reply(text, call_id)):
        return f"wrong reply: {payload[:200]!r}"
    return None


def snapshot(args: argparse.Namespace, softirqd: dict[str, int]) -> dict[str, Any]:
    return {
        "server": proc_times(args.server_pid) if args.server_pid else None,
        "gen": proc_times(),
        "stat": cpu_stat(),
        "softirqd": {name: proc_cpu(pid) for name, pid in softirqd.items()},
    }


def measure(
    marks: dict[str, Any], calls: int, latencies: list[float], errors: list[str], connections: int
) -> dict[str, Any]:
    before, after = marks["before"], marks["after"]
    wall = marks["t1"] - marks["t0"]
    result: dict[str, Any] = {"connections": connections, "calls": calls, "wall_s": wall, "errors": errors[:5]}
    result["requests_per_s"] = calls / wall if wall > 0 else None
    if before["server"] is not None:
        result["server_cpu_s"] = sum(after["server"]) - sum(before["server"])
        result["server_user_s"] = after["server"][0] - before["server"][0]
        result["server_sys_s"] = after["server"][1] - before["server"][1]
        result["server_cpu_util"] = result["server_cpu_s"] / wall
        if calls:
            result["server_us_per_request"] = result["server_cpu_s"] / calls * 1e6
    result["gen_cpu_s"] = sum(after["gen"]) - sum(before["gen"])
    result["gen_user_s"] = after["gen"][0] - before["gen"][0]
    result["gen_sys_s"] = after["gen"][1] - before["gen"][1]
    result["gen_cpu_util"] = result["gen_cpu_s"] / wall
    result["gen_us_per_request"] = result["gen_cpu_s"] / max(1, calls) * 1e6
    result["ksoftirqd_cpu_s"] = {k: after["softirqd"][k] - before["softirqd"][k] for k in before["softirqd"]}
    stat = cpu_stat_delta(before["stat"], after["stat"])
    total = stat.get("cpu", {})
    busy = sum(total.get(k, 0.0) for k in ("user", "nice", "system", "irq", "softirq"))
    result["other_cpu_s"] = (
        busy - result["gen_cpu_s"] - (result.get("server_cpu_s") or 0.0) - sum(result["ksoftirqd_cpu_s"].values())
    )
    if latencies:
        ordered = sorted(latencies)
        result["latency_us"] = {
            "p50": 1e6 * ordered[len(ordered) // 2],
            "p99": 1e6 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        }
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    protocol = PROTOCOLS[args.protocol]
    softirqd = kernel_threads()
    phases = {}
    for concurrency in args.concurrency:
        clients = list(
            await asyncio.gather(*(connect(args.host, args.port, protocol, args.path) for _ in range(concurrency)))
        )
        try:
            phases[str(concurrency)] = drive(clients, args, softirqd)
        finally:
            for client in clients:
                client.transport.close()  # type: ignore[union-attr]
        await asyncio.sleep(0.3)  # the server closes them before the next phase
    return {
        "protocol": protocol.name,
        "payload_chars": args.payload,
        "warmup_s": args.warmup_s,
        "seconds": args.seconds,
        "phases": phases,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="snorky", help="the server's protocol")
    parser.add_argument("--path", help="the WebSocket request path (default: the protocol's, /ws for snorky)")
    parser.add_argument(
        "--concurrency", default="1,50", help="comma-separated: connections, each with one call in flight, per phase"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="the measured window of each phase")
    parser.add_argument("--warmup-s", type=float, default=0.5, help="calls before each window, not measured")
    parser.add_argument("--payload", type=int, default=100, help="characters in each echoed message")
    parser.add_argument("--server-pid", type=int, help="server process whose CPU is measured")
    parser.add_argument("--cpu", type=int, help="pin this process to this CPU")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the last replies")
    args = parser.parse_args()
    steady_malloc()
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    raise_nofile()
    result = asyncio.run(run(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
