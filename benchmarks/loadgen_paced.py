"""Load generator of W1 paced: publish-to-receive latency at a fixed publish rate.

N subscribers on channel ``bench`` (as in ``loadgen.py``) and one publisher that
publishes ``--rate`` messages per second (10 by default) for ``--seconds``, after
``--warmup`` publishes at the same rate that are not measured. Unlike W1's
throughput run, the server is mostly idle here: what is measured is how long a
message takes to reach its subscribers, the first and the last of them.

**What the latency is.** Each subscriber socket has ``SO_TIMESTAMPNS`` set: the
kernel stamps each segment with the wall-clock time it was queued on the socket,
and ``recvmsg`` hands that stamp over. A delivery's latency is that stamp minus
the wall-clock time just before the publish frame was written. The generator's
own reading delay is therefore not in the figure (it reads 4000 sockets per
publish, which takes it longer than a fast server takes to write them); what is
in it is the server's work from reading the publish to writing that subscriber's
frame, plus loopback TCP. At 10 publishes per second each subscriber receives one
frame at a time; a read that returns several frames (counted as
``multi_frame_reads``) gives them all the first one's stamp.

It prints one JSON object: latency of every delivery (p50, p90, p99, max, in
ms), of each publish's last delivery (the time to reach every subscriber: p50,
p99, max), deliveries expected and received, the server's CPU over the window,
and the checks (every subscriber got every message once, in order).

Usage: python benchmarks/loadgen_paced.py --port 8000 --n 4000 --server-pid PID
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import select
import socket
import struct
import sys
import time
from typing import Any

from loadgen import (
    CHANNEL,
    PROTOCOLS,
    READ_SIZE,
    Client,
    client_frame,
    cpu_stat,
    cpu_stat_delta,
    kernel_threads,
    message_text,
    proc_cpu,
    proc_times,
    raise_nofile,
    steady_malloc,
)

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux asm-generic/socket.h; SCM_ has the same value
ANCILLARY_SIZE = socket.CMSG_SPACE(16)  # one struct timespec


class Subscriber:
    """One subscriber during the paced window: a dup of its socket for ``recvmsg``."""

    __slots__ = ("client", "sock", "next_seq", "out_of_order")

    def __init__(self, client: Client) -> None:
        self.client = client
        self.sock = socket.socket(fileno=os.dup(client.fd))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.next_seq = 0
        self.out_of_order = 0


def stamp_ns(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, raw in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
            seconds, nanoseconds = struct.unpack("qq", raw[:16])
            return seconds * 1_000_000_000 + nanoseconds
    return None


def percentile(ordered: list[int], q: float) -> float | None:
    """The ``q`` quantile of sorted nanoseconds, in milliseconds."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


async def run(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    protocol = PROTOCOLS[args.protocol]
    limit = asyncio.Semaphore(args.connect_concurrency)
    clients: list[Client] = []
    failures: list[str] = []

    async def open_client() -> Client:
        _, client = await loop.create_connection(
            lambda: Client(args.host, args.port, protocol.path, protocol=protocol), args.host, args.port
        )
        await client.opened
        await protocol.handshake(client)
        return client  # type: ignore[return-value]

    async def subscriber(index: int) -> None:
        async with limit:
            try:
                client = await open_client()
                reply = await client.call(protocol.subscribe_frame(CHANNEL, 1), raw=True)
                if protocol.reply_id(reply) != 1:
                    raise RuntimeError(f"subscribe refused: {reply[:200]!r}")
            except Exception as exc:  # noqa: BLE001 - reported below
                failures.append(f"{type(exc).__name__}: {exc}")
                return
            clients.append(client)

    await asyncio.gather(*(subscriber(i) for i in range(args.n)))
    if failures:
        raise SystemExit(f"{len(failures)} of {args.n} subscribers failed, first: {failures[0]}")
    publisher = await open_client()
    n, total = len(clients), args.warmup + int(args.rate * args.seconds)

    subscribers: dict[int, Subscriber] = {}
    for client in clients:
        client.transport.pause_reading()  # type: ignore[union-attr]
        client.raw = True
        client.keep = True  # payloads are decoded below
        subscribers[client.fd] = Subscriber(client)
    publisher.transport.pause_reading()  # type: ignore[union-attr]
    publisher.raw = True
    publisher.keep = True
    poll = select.epoll(n + 1)
    for fd in subscribers:
        poll.register(fd, select.EPOLLIN)
    poll.register(publisher.fd, select.EPOLLIN)

    sent_ns: list[int] = []
    latencies: list[int] = []  # every measured delivery, ns
    last_ns = [0] * total  # per publish: the latest delivery's latency
    received = [0] * total
    errors: list[bytes] = []
    replies = multi_frame_reads = unexpected = 0
    period = 1.0 / args.rate
    gc.collect()
    gc.disable()
    softirqd = kernel_threads()
    server0 = [proc_times(pid) for pid in args.server_pid]
    gen0 = proc_times()
    stat0 = cpu_stat()
    softirqd0 = {name: proc_cpu(pid) for name, pid in softirqd.items()}
    t_start = time.perf_counter()
    window_start = t_start + args.warmup * period
    deadline = t_start + total * period + args.timeout
    window_end = 0.0
    expected = n * total
    got = 0
    try:
        while got < expected or replies < len(sent_ns):
            now = time.perf_counter()
            if len(sent_ns) < total:
                due = t_start + len(sent_ns) * period
                if now >= due:
                    seq = len(sent_ns)
                    frame = client_frame(protocol.publish_frame(CHANNEL, message_text(seq, args.payload), 100 + seq))
                    sent_ns.append(time.time_ns())
                    publisher.write(frame)
                    continue
                wait = due - now
            elif now >= deadline:
                break
            else:
                wait = min(deadline - now, 0.5)
            for fd, _ in poll.poll(wait):
                if fd == publisher.fd:
                    data = os.read(fd, READ_SIZE)
                    if not data:
                        raise ConnectionError("the server closed the publisher connection")
                    publisher.feed(data)
                    for payload in publisher.kept:
                        if protocol.reply_id(payload) is None:
                            errors.append(payload[:200])
                        replies += 1
                    publisher.kept.clear()
                    continue
                sub = subscribers[fd]
                data, ancillary, _, _ = sub.sock.recvmsg(READ_SIZE, ANCILLARY_SIZE)
                if not data:
                    poll.unregister(fd)
                    sub.client.closed = True
                    continue
                stamp = stamp_ns(ancillary)
                client = sub.client
                client.feed(data)
                if len(client.kept) > 1:
                    multi_frame_reads += 1
                for payload in client.kept:
                    text = protocol.delivery_text(payload)
                    if text is None:
                        unexpected += 1
                        continue
                    seq = int(text[:8])
                    if seq != sub.next_seq:
                        sub.out_of_order += 1
                    sub.next_seq = seq + 1
                    got += 1
                    received[seq] += 1
                    if seq >= args.warmup and stamp is not None:
                        latency = stamp - sent_ns[seq]
                        latencies.append(latency)
                        if latency > last_ns[seq]:
                            last_ns[seq] = latency
                client.kept.clear()
        window_end = time.perf_counter()
        server1 = [proc_times(pid) for pid in args.server_pid]
        gen1 = proc_times()
        stat1 = cpu_stat()
        softirqd1 = {name: proc_cpu(pid) for name, pid in softirqd.items()}
    finally:
        gc.enable()
        poll.close()
        for sub in subscribers.values():
            sub.sock.close()

    measured = total - args.warmup
    latencies.sort()
    last = sorted(last_ns[args.warmup :])
    wall = window_end - window_start
    server_cpu = sum(sum(b) - sum(a) for a, b in zip(server0, server1, strict=True)) if server0 else None
    gen_cpu = sum(gen1) - sum(gen0)
    # CPU time of everything but the server, the generator and ksoftirqd, since the first publish.
    total_cpu = cpu_stat_delta(stat0, stat1).get("cpu", {})
    busy = sum(total_cpu.get(k, 0.0) for k in ("user", "nice", "system", "irq", "softirq"))
    softirq_s = sum(softirqd1[name] - softirqd0[name] for name in softirqd)
    other_cpu_s = busy - gen_cpu - (server_cpu or 0.0) - softirq_s
    since_start = window_end - t_start
    result: dict[str, Any] = {
        "n": n,
        "rate": args.rate,
        "messages": measured,
        "warmup": args.warmup,
        "payload_chars": args.payload,
        "protocol": args.protocol,
        "expected_deliveries": n * measured,
        "deliveries": len(latencies),
        "lost": n * total - got,
        "duplicates_or_misses": sum(1 for count in received if count != n),
        "out_of_order": sum(sub.out_of_order for sub in subscribers.values()),
        "unexpected_frames": unexpected,
        "publish_errors": [e.decode(errors="replace") for e in errors[:3]],
        "replies": replies,
        "multi_frame_reads": multi_frame_reads,
        "latency_ms": {
            "p50": percentile(latencies, 0.50),
            "p90": percentile(latencies, 0.90),
            "p99": percentile(latencies, 0.99),
            "max": percentile(latencies, 1.0),
        },
        "last_delivery_ms": {
            "p50": percentile(last, 0.50),
            "p99": percentile(last, 0.99),
            "max": percentile(last, 1.0),
        },
        "wall_s": wall,
        "server_cpu_s": server_cpu,
        "server_cpu_util": server_cpu / since_start if server_cpu is not None and since_start > 0 else None,
        "gen_cpu_util": gen_cpu / since_start if since_start > 0 else None,
        "other_cpu_s": other_cpu_s,
        "other_wall_s": since_start,
    }
    for client in clients + [publisher]:
        client.raw = False
        client.transport.close()  # type: ignore[union-attr]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="snorky")
    parser.add_argument("--n", type=int, default=4000, help="subscriber connections")
    parser.add_argument("--rate", type=float, default=10.0, help="publishes per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the measured window")
    parser.add_argument("--warmup", type=int, default=10, help="publishes before the window, not measured")
    parser.add_argument("--payload", type=int, default=100, help="characters in each published message")
    parser.add_argument("--server-pid", type=int, action="append", default=[], help="server process (CPU measured)")
    parser.add_argument("--cpu", type=int, help="pin this process to this CPU")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the last deliveries")
    parser.add_argument("--connect-concurrency", type=int, default=100)
    args = parser.parse_args()
    steady_malloc()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.n + 50 > raise_nofile():
        raise SystemExit(f"open-files limit too low for {args.n} connections")
    json.dump(asyncio.run(run(args)), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
