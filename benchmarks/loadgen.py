"""Load generator for the benchmarks: W1, fan-out to N subscribers of one channel.

Run as its own process (``run.py`` starts it pinned to a CPU of its own):

1. opens N subscriber WebSocket connections (a minimal RFC 6455 client, below)
   and subscribes each to channel ``bench``, on asyncio;
2. opens one publisher connection that does NOT subscribe;
3. warm-up: publishes ``--warmup`` messages and waits until all N * warmup
   deliveries have arrived;
4. measured window: publishes M messages, at most ``--window`` unacknowledged at
   a time (the next one is sent as each response arrives), and stops the clock
   when the N * M-th delivery has arrived (or at ``--timeout``: then it reports
   the losses). M is ``--messages``; by default (0) the publisher publishes
   for ``--seconds`` and M is how many it published.

Steps 3 and 4 leave asyncio for a plain ``epoll`` loop over the same sockets
(``os.read`` and a frame-header walk), cheaper per delivery than asyncio's
(``--engine asyncio`` keeps asyncio). It answers the publisher at once but
reads each subscriber at most once per ``--batch-ms`` (then everything at once
after the last reply), so that each read returns several frames: that keeps the
generator's CPU well below the server's, so that it is not the bottleneck.

With ``--ports P1,P2,...`` (workload W4: several server processes sharing a
broker) the subscribers are spread over the ports in turn (subscriber i on port
i mod the number of ports) and the publisher connects to the first port.

It prints one JSON object on stdout: wall time, deliveries/s, the CPU seconds
(utime + stime from /proc/PID/stat) of the server (``--server-pid``, once per
server process: the figures are their sum, and each is listed), of other
processes to watch (``--extra-pid redis=PID``, from the finer
/proc/PID/task/*/schedstat) and of the generator itself over
the measured window, the publish replies' latency (from writing a publish to
reading its reply: it includes the generator's own delay in reading, up to one
pass over the subscribers), and checks: every subscriber's count, and the messages of
the first subscriber on each port decoded and compared with what was
published, in order.

Usage: python benchmarks/loadgen.py --port 8000 --n 1000 --server-pid PID
       python benchmarks/loadgen.py --ports 8000,8001 --n 1000 --server-pid PID1 --server-pid PID2
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import hashlib
import json
import os
import resource
import select
import struct
import sys
import time
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
CHANNEL = "bench"
SERVICE = "pubsub"
READ_SIZE = 256 * 1024
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def proc_times(pid: int | str = "self") -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all its threads, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    # After "pid (comm)", fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_cpu(pid: int | str = "self") -> float:
    """CPU seconds (utime + stime) of a process, from /proc/PID/stat."""
    return sum(proc_times(pid))


def proc_run_s(pid: int | str) -> float:
    """Seconds a process's threads have run on a CPU, from /proc/PID/task/*/schedstat (nanoseconds):
    finer than /proc/PID/stat's clock ticks, for processes that use little CPU (Redis here).
    Falls back to /proc/PID/stat where schedstat is missing."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    except OSError:
        return proc_cpu(pid)
    return total / 1e9 if total else proc_cpu(pid)


def kernel_threads(prefix: str = "ksoftirqd/") -> dict[str, int]:
    """PIDs of the kernel threads whose name starts with ``prefix`` (name -> pid)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    name = f.read().strip()
            except OSError:
                continue
            if name.startswith(prefix):
                found[name] = int(entry)
    return found


def cpu_stat() -> dict[str, list[int]]:
    """Per-CPU time counters (clock ticks) from /proc/stat: user nice system idle iowait irq softirq steal."""
    stats = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu"):
                name, *values = line.split()
                stats[name] = [int(v) for v in values[:8]]
    return stats


def cpu_stat_delta(before: dict[str, list[int]], after: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    return {
        cpu: {name: (after[cpu][i] - before[cpu][i]) / CLK_TCK for i, name in enumerate(names)}
        for cpu in after
        if cpu in before
    }


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One final client frame, masked as RFC 6455 requires."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 0x10000:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    mask = os.urandom(4)
    if n:
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
        payload = (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")
    return head + mask + payload


def rpc(command: str, params: dict[str, Any], call_id: int) -> bytes:
    return dumps({"service": SERVICE, "message": {"command": command, "params": params, "callId": call_id}})


def message_text(seq: int, size: int) -> str:
    return f"{seq:08d}".ljust(size, "x")


class Counter:
    """Deliveries counted by all subscribers; ``done_at`` is when ``target`` was reached."""

    def __init__(self) -> None:
        self.total = 0
        self.target = 0
        self.done_at = 0.0

    def expect(self, target: int) -> None:
        self.target = target
        self.done_at = time.perf_counter() if self.total >= target else 0.0


class Client(asyncio.Protocol):
    """A minimal WebSocket client: handshake, unmasked server frames, ping and close.

    Data frames are counted (``count``, and ``counter.total``); the payload is only
    sliced out when ``waiter`` is set (the next one resolves it) or ``keep`` is true.
    """

    def __init__(self, host: str, port: int, path: str, keep: bool = False) -> None:
        key = base64.b64encode(os.urandom(16))
        self.accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.counter: Counter | None = None
        self.keep = keep
        self.kept: list[bytes] = []
        self.count = 0
        self.buf = b""
        self.upgraded = False
        self.closed = False
        self.fragmented = 0
        self.transport: asyncio.Transport | None = None
        self.fd = -1
        self.raw = False  # True while the epoll loop, not asyncio, drives this connection
        self.opened = asyncio.get_running_loop().create_future()
        self.waiter: asyncio.Future[bytes] | None = None
        self.port = port

    # asyncio side ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.fd = transport.get_extra_info("socket").fileno()
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for fut in (self.opened, self.waiter):
            if fut is not None and not fut.done():
                fut.set_exception(ConnectionError("connection closed"))

    async def call(self, payload: bytes) -> Any:
        """Send one frame and return the next data frame received, decoded."""
        self.waiter = asyncio.get_running_loop().create_future()
        self.write(client_frame(payload))
        try:
            return json.loads(await self.waiter)
        finally:
            self.waiter = None

    def data_received(self, data: bytes) -> None:
        if self.upgraded:
            self.feed(data)
            return
        data = self.buf + data
        end = data.find(b"\r\n\r\n")
        if end < 0:
            self.buf = data
            return
        status, *lines = data[:end].split(b"\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b" 101 " not in status + b" " or headers.get(b"sec-websocket-accept") != self.accept:
            self.opened.set_exception(ConnectionError(f"handshake refused or wrong: {data[:end]!r}"))
            self.transport.close()  # type: ignore[union-attr]
            return
        self.upgraded = True
        self.opened.set_result(None)
        self.buf = b""
        self.feed(data[end + 4 :])

    # both sides -----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.raw:
            self.transport.write(data)  # type: ignore[union-attr]
            return
        while data:  # the epoll loop does not run asyncio: write the socket directly
            try:
                data = data[os.write(self.fd, data) :]
            except BlockingIOError:
                select.select([], [self.fd], [], 1.0)

    def feed(self, data: bytes) -> None:
        """Handle the frames in ``data`` (after any incomplete frame kept from before)."""
        if self.buf:
            data = self.buf + data
        pos, size, n = 0, len(data), 0
        while size - pos >= 2:
            b0 = data[pos]
            length = data[pos + 1]
            if length < 126:
                head = pos + 2
            elif length == 126:
                if size - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                head = pos + 4
            else:  # 127, or a masked server frame: both are unexpected here
                if length & 0x80:
                    raise RuntimeError("masked frame from the server")
                if size - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                head = pos + 10
            end = head + length
            if end > size:
                break
            opcode = b0 & 0x0F
            if opcode < 0x8:
                if not b0 & 0x80 or opcode == 0:
                    self.fragmented += 1  # the servers here never fragment; counted as a check
                if self.waiter is not None and not self.waiter.done():
                    self.waiter.set_result(data[head:end])  # a reply, not counted
                else:
                    n += 1
                    if self.keep:
                        self.kept.append(data[head:end])
            elif opcode == 0x9:
                self.write(client_frame(data[head:end], 0xA))
            elif opcode == 0x8:
                self.closed = True
                break
            pos = end
        self.buf = data[pos:] if pos < size else b""
        if n:
            self.count += n
            counter = self.counter
            if counter is not None:
                counter.total += n
                if counter.total >= counter.target and not counter.done_at:
                    counter.done_at = time.perf_counter()


class Publisher(Client):
    """Publishes with at most ``window`` publishes awaiting their response.

    It publishes ``count`` messages, or, with ``count=None``, as many as it can
    until ``stop_at``; once it knows how many, it calls ``on_count(count)``.
    """

    first = next = acks = 0
    limit: int | None = 0
    errors: list[Any] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.payload = 100
        self.stop_at = 0.0
        self.on_count: Any = None
        self.sent_at: dict[int, float] = {}
        self.latencies: list[float] = []  # seconds from writing a publish to reading its reply

    def frame(self, seq: int) -> bytes:
        self.sent_at[100 + seq] = time.perf_counter()
        params = {"channel": CHANNEL, "message": message_text(seq, self.payload)}
        return client_frame(rpc("publish", params, 100 + seq))

    def start(self, first: int, count: int | None, window: int, stop_at: float = 0.0, on_count: Any = None) -> None:
        self.first = self.next = first
        self.limit = None if count is None else first + count
        self.stop_at = stop_at
        self.on_count = on_count
        self.acks = 0
        self.errors = []
        self.sent_at = {}
        self.latencies = []
        self.keep = True  # replies are decoded below
        if self.limit is not None and on_count is not None:
            on_count(count)
        burst = []
        while len(burst) < window and self.more():
            burst.append(self.frame(self.next))
            self.next += 1
        self.write(b"".join(burst))

    def more(self) -> bool:
        """Whether to publish one more message."""
        if self.limit is not None:
            return self.next < self.limit
        if time.perf_counter() < self.stop_at:
            return True
        self.limit = self.next
        if self.on_count is not None:
            self.on_count(self.limit - self.first)
        return False

    @property
    def sent(self) -> int:
        return self.next - self.first

    @property
    def finished(self) -> bool:
        return self.limit is not None and self.acks >= self.limit - self.first

    def feed(self, data: bytes) -> None:
        super().feed(data)
        replies, self.kept = self.kept, []
        now = time.perf_counter()
        for raw in replies:
            body = json.loads(raw).get("message", {})
            if body.get("type") != "response":
                self.errors.append(body)
            sent = self.sent_at.pop(body.get("callId"), None)
            if sent is not None:
                self.latencies.append(now - sent)
            self.acks += 1
            if self.more():
                self.write(self.frame(self.next))
                self.next += 1


class Pump:
    """Drives every connection with a plain epoll loop instead of asyncio's.

    While it is open, asyncio does not read the connections (their transports are
    paused) and the clients write their sockets directly.
    """

    def __init__(self, subscribers: list[Client], publisher: Publisher, batch_s: float) -> None:
        self.subscribers = subscribers
        self.publisher = publisher
        self.batch_s = batch_s
        self.by_fd = {}
        self.reads = 0
        self.sub_poll = select.epoll(len(subscribers) + 1)
        self.pub_poll = select.epoll(1)
        for client in subscribers + [publisher]:
            client.transport.pause_reading()  # type: ignore[union-attr]
            client.raw = True
        for client in subscribers:
            self.by_fd[client.fd] = client
            self.sub_poll.register(client.fd, select.EPOLLIN)
        self.pub_poll.register(publisher.fd, select.EPOLLIN)
        if not batch_s:  # one poll for all
            self.sub_poll.register(publisher.fd, select.EPOLLIN)

    def close(self) -> None:
        self.sub_poll.close()
        self.pub_poll.close()
        for client in self.subscribers + [self.publisher]:
            client.raw = False
            if not client.closed:
                client.transport.resume_reading()  # type: ignore[union-attr]

    def read_publisher(self) -> None:
        data = os.read(self.publisher.fd, READ_SIZE)
        if not data:
            raise ConnectionError("the server closed the publisher connection")
        self.publisher.feed(data)

    def run(self, counter: Counter, deadline: float) -> bool:
        """Read until ``counter`` reached its target and the publisher has all its
        replies (True), or until ``deadline`` (False).
        """
        publisher, by_fd, batch_s = self.publisher, self.by_fd, self.batch_s
        sub_poll, pub_poll, pub_fd = self.sub_poll, self.pub_poll, publisher.fd
        read, perf = os.read, time.perf_counter
        next_pass = 0.0
        while not (counter.done_at and publisher.finished):
            now = perf()
            if now >= deadline:
                return False
            if batch_s and not publisher.finished:
                # Serve the publisher at once; the subscribers once per batch_s
                # (and all at once as soon as every publish has its reply).
                if now < next_pass:
                    if pub_poll.poll(min(next_pass, deadline) - now):
                        self.read_publisher()
                    continue
                if pub_poll.poll(0):
                    self.read_publisher()
                next_pass = now + batch_s
                events = sub_poll.poll(0)
            else:
                if batch_s and pub_poll.poll(0):
                    self.read_publisher()
                events = sub_poll.poll(min(deadline - now, 1.0))
            for fd, _ in events:
                if fd == pub_fd:
                    self.read_publisher()
                    continue
                data = read(fd, READ_SIZE)
                self.reads += 1
                if data:
                    by_fd[fd].feed(data)
                else:
                    sub_poll.unregister(fd)
                    by_fd[fd].closed = True
        return True


async def run(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    subscribe = rpc("subscribe", {"channel": CHANNEL}, 1)
    limit = asyncio.Semaphore(args.connect_concurrency)
    subscribers: list[Client] = []
    failures: list[str] = []

    ports: list[int] = args.ports

    async def open_client(port: int, cls: type[Client] = Client, keep: bool = False) -> Client:
        _, client = await loop.create_connection(lambda: cls(args.host, port, args.path, keep), args.host, port)
        await client.opened
        return client  # type: ignore[return-value]

    async def subscriber(index: int) -> None:
        async with limit:
            try:
                # The first subscriber on each port keeps its messages, to be checked.
                client = await open_client(ports[index % len(ports)], keep=index < len(ports))
                reply = await client.call(subscribe)
                if reply.get("message", {}).get("type") != "response":
                    raise RuntimeError(f"subscribe refused: {reply}")
            except Exception as exc:  # noqa: BLE001 - reported below
                failures.append(f"{type(exc).__name__}: {exc}")
                return
            subscribers.append(client)

    t_connect = time.perf_counter()
    await asyncio.gather(*(subscriber(i) for i in range(args.n)))
    connect_s = time.perf_counter() - t_connect
    if failures:
        raise SystemExit(f"{len(failures)} of {args.n} subscribers failed, first: {failures[0]}")
    # Those that keep first (subscriber 0 on the first port, then one per other port).
    subscribers.sort(key=lambda c: (not c.keep, ports.index(c.port)))
    publisher: Publisher = await open_client(ports[0], Publisher)  # type: ignore[assignment]
    n = len(subscribers)
    counter = Counter()
    for client in subscribers:
        client.counter = counter

    publisher.payload = args.payload
    messages = args.messages or None  # None: as many as fit in --seconds
    softirqd = kernel_threads()
    if args.engine == "epoll":
        pump = Pump(subscribers, publisher, args.batch_ms / 1000)
        wait = lambda deadline: pump.run(counter, deadline)  # noqa: E731
    else:
        pump = None

        async def wait(deadline: float) -> bool:
            while not (counter.done_at and publisher.finished):
                if time.perf_counter() >= deadline:
                    return False
                await asyncio.sleep(0.002)
            return True

    async def until(deadline: float) -> bool:
        return await wait(deadline) if pump is None else wait(deadline)

    try:
        # Warm-up, not measured.
        if args.warmup:
            counter.expect(n * args.warmup)
            publisher.start(0, args.warmup, args.window)
            if not await until(time.perf_counter() + args.timeout):
                raise SystemExit(f"warm-up timed out: {counter.total} of {n * args.warmup} deliveries")

        # Measured window.
        counter.expect(sys.maxsize)  # until the publisher knows how many it sends
        gc.collect()
        gc.disable()
        servers0 = [proc_times(pid) for pid in args.server_pid]
        extra0 = {name: proc_run_s(pid) for name, pid in args.extra_pid}
        gen0 = proc_times()
        stat0 = cpu_stat()
        softirqd0 = {name: proc_cpu(pid) for name, pid in softirqd.items()}
        reads0 = pump.reads if pump else 0
        t0 = time.perf_counter()
        publisher.start(
            args.warmup,
            messages,
            args.window,
            t0 + args.seconds,
            lambda count: counter.expect(n * (args.warmup + count)),
        )
        finished = await until(t0 + args.timeout)
        messages = publisher.sent
        t1 = counter.done_at or time.perf_counter()
        servers1 = [proc_times(pid) for pid in args.server_pid]
        extra1 = {name: proc_run_s(pid) for name, pid in args.extra_pid}
        gen1 = proc_times()
        stat1 = cpu_stat()
        softirqd1 = {name: proc_cpu(pid) for name, pid in softirqd.items()}
        gc.enable()
    finally:
        if pump is not None:
            pump.close()
    await asyncio.sleep(0.2)  # let any duplicate or late delivery show in the counts

    expected = n * messages
    delivered = min(counter.total - n * args.warmup, expected)
    wall = t1 - t0
    counts = [c.count for c in subscribers]
    server0: tuple[float, float] | None = None
    server1: tuple[float, float] | None = None
    if servers0:
        server0 = (sum(t[0] for t in servers0), sum(t[1] for t in servers0))
        server1 = (sum(t[0] for t in servers1), sum(t[1] for t in servers1))
    kept = [c for c in subscribers if c.keep]
    by_port = {str(port): 0 for port in ports}
    for client in subscribers:
        by_port[str(client.port)] += client.count - args.warmup
    result: dict[str, Any] = {
        "n": n,
        "messages": messages,
        "messages_fixed": bool(args.messages),
        "warmup": args.warmup,
        "window": args.window,
        "batch_ms": args.batch_ms,
        "payload_chars": args.payload,
        "expected_deliveries": expected,
        "deliveries": delivered,
        "lost": expected - delivered,
        "timed_out": not finished,
        "wall_s": wall,
        "deliveries_per_s": delivered / wall if wall > 0 else None,
        "server_cpu_s": None if server0 is None else sum(server1) - sum(server0),  # type: ignore[arg-type]
        "server_user_s": None if server0 is None else server1[0] - server0[0],  # type: ignore[index]
        "server_sys_s": None if server0 is None else server1[1] - server0[1],  # type: ignore[index]
        "server_cpu_s_each": [sum(b) - sum(a) for a, b in zip(servers0, servers1, strict=True)],
        "extra_cpu_s": {name: extra1[name] - extra0[name] for name in extra0},
        "ports": ports,
        "deliveries_by_port": by_port,
        "gen_cpu_s": sum(gen1) - sum(gen0),
        "gen_user_s": gen1[0] - gen0[0],
        "gen_sys_s": gen1[1] - gen0[1],
        "connect_s": connect_s,
        "engine": args.engine,
        "subscriber_reads": pump.reads - reads0 if pump else None,
        "cpu_stat_s": cpu_stat_delta(stat0, stat1),
        "ksoftirqd_cpu_s": {name: softirqd1[name] - softirqd0[name] for name in softirqd},
        "acks": publisher.acks,
        "reply_ms": latency_summary(publisher.latencies),
        "publish_errors": publisher.errors[:3],
        "per_subscriber_min": min(counts) - args.warmup,
        "per_subscriber_max": max(counts) - args.warmup,
        "fragmented_frames": sum(c.fragmented for c in subscribers),
        "closed_subscribers": sum(c.closed for c in subscribers),
        "verified_subscriber0": verify_messages(subscribers[0].kept, args.warmup + messages, args.payload),
        "verified_by_port": {str(c.port): verify_messages(c.kept, args.warmup + messages, args.payload) for c in kept},
    }
    if any(v != "ok" for v in result["verified_by_port"].values()):
        # Subscriber 0 stands for all the checked subscribers (one per port) in the summaries.
        bad = next((port, v) for port, v in result["verified_by_port"].items() if v != "ok")
        result["verified_subscriber0"] = f"port {bad[0]}: {bad[1]}"
    if result["server_cpu_s"] is not None and delivered:
        result["server_cpu_s_per_million"] = result["server_cpu_s"] / delivered * 1e6
        result["server_cpu_util"] = result["server_cpu_s"] / wall
    result["gen_cpu_s_per_million"] = result["gen_cpu_s"] / max(1, delivered) * 1e6
    result["gen_cpu_util"] = result["gen_cpu_s"] / wall
    total = result["cpu_stat_s"].get("cpu", {})
    busy = sum(total.get(k, 0.0) for k in ("user", "nice", "system", "irq", "softirq"))
    # CPU time spent by anything but the server and the generator (noise from other work).
    softirq_threads = sum(result["ksoftirqd_cpu_s"].values())
    watched = sum(result["extra_cpu_s"].values())
    result["other_cpu_s"] = busy - result["gen_cpu_s"] - (result["server_cpu_s"] or 0.0) - softirq_threads - watched
    for client in subscribers + [publisher]:
        client.transport.close()  # type: ignore[union-attr]
    return result


def latency_summary(latencies: list[float]) -> dict[str, float] | None:
    """Median, 90th percentile and maximum, in milliseconds, of the publish replies' latencies."""
    if not latencies:
        return None
    ordered = sorted(latencies)
    at = lambda q: 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": at(0.5), "p90": at(0.9), "max": 1000 * ordered[-1]}


def verify_messages(kept: list[bytes], total: int, payload: int) -> str:
    """Check subscriber 0 received exactly the published messages, in order."""
    if len(kept) != total:
        return f"subscriber 0 got {len(kept)} messages, expected {total}"
    for seq, raw in enumerate(kept):
        expected = {
            "service": SERVICE,
            "message": {"type": "message", "channel": CHANNEL, "message": message_text(seq, payload)},
        }
        if json.loads(raw) != expected:
            return f"message {seq} differs: {raw[:200]!r}"
    return "ok"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="the server's port (or --ports)")
    parser.add_argument(
        "--ports",
        help="comma-separated ports of several servers: subscribers spread over them "
        "in turn, the publisher on the first",
    )
    parser.add_argument("--path", default="/ws")
    parser.add_argument("--n", type=int, default=1000, help="subscriber connections")
    parser.add_argument(
        "--messages", type=int, default=0, help="messages published in the measured window (0: publish for --seconds)"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="see --messages")
    parser.add_argument("--warmup", type=int, default=20, help="messages published before the window")
    parser.add_argument("--window", type=int, default=20, help="publishes awaiting their response at most")
    parser.add_argument(
        "--engine",
        choices=("epoll", "asyncio"),
        default="epoll",
        help="what reads the connections during the runs (see above)",
    )
    parser.add_argument("--batch-ms", type=float, default=0.0, help="read subscribers at most once per this")
    parser.add_argument("--payload", type=int, default=100, help="characters in each published message")
    parser.add_argument(
        "--server-pid",
        type=int,
        action="append",
        default=[],
        help="server process whose CPU is measured (once per server process: summed)",
    )
    parser.add_argument(
        "--extra-pid",
        action="append",
        default=[],
        metavar="NAME=PID",
        help="another process whose CPU is measured (from schedstat) and reported apart (e.g. redis=PID)",
    )
    parser.add_argument("--cpu", type=int, help="pin this process to this CPU")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for all deliveries")
    parser.add_argument("--connect-concurrency", type=int, default=100)
    args = parser.parse_args()
    if args.ports:
        args.ports = [int(p) for p in args.ports.split(",") if p.strip()]
    elif args.port:
        args.ports = [args.port]
    else:
        parser.error("give --port or --ports")
    args.extra_pid = [(name, int(pid)) for name, _, pid in (item.partition("=") for item in args.extra_pid)]
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
