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

``--protocol`` chooses what is spoken over WebSocket: ``snorky`` (the default,
Snorky's JSON protocol at ``/ws``) or ``socketio`` (Socket.IO 5 events with acks,
WebSocket transport only); the differences are in ``PROTOCOLS`` below, which
other generators import with ``Client``. Every data frame a subscriber receives
after subscribing is a delivery, except the protocol's keep-alives (Engine.IO
pings, answered and counted apart).

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
       python benchmarks/loadgen.py --protocol socketio --port 8005 --n 1000 --server-pid PID
       python benchmarks/loadgen.py --ports 8000,8001 --n 1000 --server-pid PID1 --server-pid PID2
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ctypes
import gc
import hashlib
import json
import os
import resource
import select
import struct
import sys
import time
import zlib
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


def steady_malloc() -> None:
    """Fix glibc malloc's thresholds, so that large reads cost no system calls, in every run alike.

    ``os.read(fd, READ_SIZE)`` allocates READ_SIZE (256 KiB) and shrinks the bytes
    to what was read. Above glibc's mmap threshold (128 KiB at first, raised
    dynamically only by some frees) that is an mmap, an mremap and a munmap per
    read, unless a free block of the heap happens to fit: whether it does depends
    on what the process allocated before (a small unrelated change to the
    generator doubled its system time per W2 call). With the mmap threshold above
    READ_SIZE and a high trim threshold, reads come from the heap and its top is
    not given back after each one. Nothing happens where there is no ``mallopt``.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(-3, 4 * READ_SIZE)  # M_MMAP_THRESHOLD (malloc.h)
    mallopt(-1, 64 * 1024 * 1024)  # M_TRIM_THRESHOLD


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


# Protocols ----------------------------------------------------------------------


class WireProtocol:
    """What differs between the servers' protocols, in one place; ``PROTOCOLS`` maps names to them.

    The generators (and anything importing ``PROTOCOLS`` and ``Client`` from here)
    use only this interface:

    - ``name``, ``path``: the protocol's name and its WebSocket request path (the
      default of the generators' ``--path``);
    - ``greets``: the server speaks first after the upgrade; a new ``Client`` then
      keeps its first data frames for ``receive()`` instead of counting them;
    - ``control_size``: the longest payload that may be a keep-alive (-1: none);
      ``Client.feed`` asks ``control()`` about frames this short only, so the
      cost on the hot path is one comparison per frame;
    - ``async handshake(client)``: after the WebSocket upgrade (``await
      client.opened``), before anything else is sent;
    - ``subscribe_frame(channel, call_id)``, ``publish_frame(channel, text,
      call_id)``, ``echo_frame(text, call_id)`` -> bytes: the payloads of the calls
      (wrap them in ``client_frame()`` to send them); ``echo_reply(text,
      call_id)`` -> bytes: the echo reply expected, byte for byte;
    - ``reply_id(payload)`` -> int | None: the call id if the payload is a
      successful reply (Snorky: a ``response``; Socket.IO: an ack), else None;
      ``reply_data(payload)``: the data the reply carries (None for none);
    - ``delivery_text(payload, channel=CHANNEL)`` -> str | None: the published
      text if the payload is exactly a delivery on ``channel``, else None;
    - ``decode(payload)``: a value to compare payloads by (raises ValueError if
      it cannot be decoded);
    - ``control(payload)`` -> bytes | None: the answer to a protocol-level
      keep-alive (Engine.IO ping ``2`` -> ``3``; b"" when there is none to send),
      or None if the payload is not one. ``Client.feed`` answers them itself and
      counts them in ``Client.pings``, never as deliveries or replies.
    """

    name = ""
    path = "/ws"
    greets = False
    control_size = -1

    async def handshake(self, client: Client) -> None:
        """Nothing to do after the upgrade (by default)."""

    def subscribe_frame(self, channel: str, call_id: int) -> bytes:
        raise NotImplementedError

    def publish_frame(self, channel: str, text: str, call_id: int) -> bytes:
        raise NotImplementedError

    def echo_frame(self, text: str, call_id: int) -> bytes:
        raise NotImplementedError

    def echo_reply(self, text: str, call_id: int) -> bytes:
        raise NotImplementedError

    def decode(self, payload: bytes) -> Any:
        raise NotImplementedError

    def reply_id(self, payload: bytes) -> int | None:
        raise NotImplementedError

    def reply_data(self, payload: bytes) -> Any:
        raise NotImplementedError

    def delivery_text(self, payload: bytes, channel: str = CHANNEL) -> str | None:
        raise NotImplementedError

    def control(self, payload: bytes) -> bytes | None:
        """None: no keep-alives beyond WebSocket's own pings (answered by ``Client.feed``)."""
        return None


class SnorkyProtocol(WireProtocol):
    """Snorky's JSON protocol: ``{"service": S, "message": {...}}`` both ways, at ``/ws``."""

    name = "snorky"

    def subscribe_frame(self, channel: str, call_id: int) -> bytes:
        return rpc("subscribe", {"channel": channel}, call_id)

    def publish_frame(self, channel: str, text: str, call_id: int) -> bytes:
        return rpc("publish", {"channel": channel, "message": text}, call_id)

    def echo_frame(self, text: str, call_id: int) -> bytes:
        return dumps(
            {"service": "echo", "message": {"command": "echo", "params": {"message": text}, "callId": call_id}}
        )

    def echo_reply(self, text: str, call_id: int) -> bytes:
        return dumps({"service": "echo", "message": {"type": "response", "callId": call_id, "data": text}})

    def decode(self, payload: bytes) -> Any:
        return json.loads(payload)

    def reply_id(self, payload: bytes) -> int | None:
        try:
            body = json.loads(payload)["message"]
            if body["type"] == "response":
                return body["callId"]
        except (ValueError, KeyError, TypeError):
            pass
        return None

    def reply_data(self, payload: bytes) -> Any:
        try:
            return json.loads(payload)["message"].get("data")
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def delivery_text(self, payload: bytes, channel: str = CHANNEL) -> str | None:
        try:
            value = json.loads(payload)
            text = value["message"]["message"]
        except (ValueError, KeyError, TypeError):
            return None
        expected = {"service": SERVICE, "message": {"type": "message", "channel": channel, "message": text}}
        return text if isinstance(text, str) and value == expected else None


class Snorky01Protocol(SnorkyProtocol):
    """Snorky 0.1's frames: the same protocol, encoded by ``json.dumps`` with its default
    separators (a space after every ``:`` and ``,``)."""

    name = "snorky01"

    def echo_reply(self, text: str, call_id: int) -> bytes:
        body = {"service": "echo", "message": {"type": "response", "callId": call_id, "data": text}}
        return json.dumps(body).encode()


class SocketIOProtocol(WireProtocol):
    """Socket.IO 5 (Engine.IO 4) over WebSocket only, namespace ``/``, events with acks.

    After the upgrade the server sends the Engine.IO open packet ``0{...}``; the
    client connects to the namespace with ``40`` and the server answers
    ``40{"sid":...}``. A call is an event with an ack id, ``42<id>["event",{...}]``,
    answered ``43<id>[...]`` (the handler's return value: ``[]`` for None); a
    delivery is an event without one, ``42["message",{"channel":...,"message":...}]``.
    The server pings with ``2``, the client answers ``3``.
    """

    name = "socketio"
    path = "/socket.io/?EIO=4&transport=websocket"
    greets = True
    control_size = 1  # "2" (ping), "6" (noop)
    timeout = 10.0  # seconds for each step of the handshake

    async def handshake(self, client: Client) -> None:
        """Read the Engine.IO open packet, connect to namespace ``/``, wait for its answer."""
        opening = await client.receive(self.timeout)
        if not opening.startswith(b"0{"):
            raise ConnectionError(f"no Engine.IO open packet: {opening[:200]!r}")
        client.session = json.loads(opening[1:])
        client.write(client_frame(b"40"))
        reply = await client.receive(self.timeout)
        if not reply.startswith(b"40"):
            raise ConnectionError(f"namespace connection refused: {reply[:200]!r}")

    def event(self, name: str, data: Any, call_id: int) -> bytes:
        return b"42%d" % call_id + dumps([name, data])

    def subscribe_frame(self, channel: str, call_id: int) -> bytes:
        return self.event("subscribe", {"channel": channel}, call_id)

    def publish_frame(self, channel: str, text: str, call_id: int) -> bytes:
        return self.event("publish", {"channel": channel, "message": text}, call_id)

    def echo_frame(self, text: str, call_id: int) -> bytes:
        return self.event("echo", {"message": text}, call_id)

    def echo_reply(self, text: str, call_id: int) -> bytes:
        return b"43%d" % call_id + dumps([text])

    def decode(self, payload: bytes) -> tuple[str, int | None, Any]:
        """(packet types, ack id or None, JSON data or None): ``b'431["x"]'`` is ``("43", 1, ["x"])``."""
        end = 2
        while end < len(payload) and 0x30 <= payload[end] <= 0x39:
            end += 1
        ack = int(payload[2:end]) if end > 2 else None
        return payload[:2].decode(), ack, json.loads(payload[end:]) if end < len(payload) else None

    def reply_id(self, payload: bytes) -> int | None:
        if not payload.startswith(b"43"):
            return None
        end = payload.find(b"[", 2)
        digits = payload[2:end]
        return int(digits) if end > 2 and digits.isdigit() else None

    def reply_data(self, payload: bytes) -> Any:
        try:
            data = self.decode(payload)[2]
        except ValueError:
            return None
        return data[0] if isinstance(data, list) and data else None

    def delivery_text(self, payload: bytes, channel: str = CHANNEL) -> str | None:
        if not payload.startswith(b'42["'):
            return None
        try:
            value = json.loads(payload[2:])
            text = value[1]["message"]
        except (ValueError, KeyError, TypeError, IndexError):
            return None
        return text if isinstance(text, str) and value == ["message", {"channel": channel, "message": text}] else None

    def control(self, payload: bytes) -> bytes | None:
        if payload == b"2":
            return b"3"
        if payload == b"6":
            return b""
        return None


PROTOCOLS: dict[str, WireProtocol] = {
    "snorky": SnorkyProtocol(),
    "snorky01": Snorky01Protocol(),
    "socketio": SocketIOProtocol(),
}


class Counter:
    """Deliveries counted by all subscribers; ``done_at`` is when ``target`` was reached."""

    def __init__(self) -> None:
        self.total = 0
        self.target = 0
        self.done_at = 0.0

    def expect(self, target: int) -> None:
        self.target = target
        self.done_at = time.perf_counter() if self.total >= target else 0.0


DEFLATE = False
"""--deflate: offer permessage-deflate; compressed frames are decompressed when kept or
queued (deliveries that are only counted are not: the generator's cost stays that of
reading them)."""


def inflate(b0: int, payload: bytes) -> bytes:
    """A data frame's payload, decompressed if its RSV1 bit says it is compressed."""
    if b0 & 0x40:
        return zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
    return payload


class Client(asyncio.Protocol):
    """A minimal WebSocket client: handshake, unmasked server frames, ping and close.

    ``Client(host, port, path, keep=False, protocol=PROTOCOLS["snorky"])``, made by
    ``loop.create_connection``; then ``await client.opened`` (the WebSocket
    upgrade) and ``await protocol.handshake(client)`` (or both with
    ``await connect(...)``). Data frames are deliveries, counted (``count``, and
    ``counter.total``) and, if ``keep`` is true, appended to ``kept``; except:

    - replies: while ``receive()`` (or ``call()``) waits, and from the start until
      the first ``receive()`` for a protocol whose server ``greets``, data frames are
      queued for it instead;
    - keep-alives of the protocol (``protocol.control``), answered at once and
      counted in ``pings``; WebSocket pings are answered with a pong.

    The payload is only sliced out of the read buffer when it is kept or queued.
    """

    def __init__(
        self, host: str, port: int, path: str, keep: bool = False, protocol: WireProtocol | None = None
    ) -> None:
        self.protocol = protocol = protocol or PROTOCOLS["snorky"]
        self.control_size = protocol.control_size
        self.replies: list[bytes] | None = [] if protocol.greets else None  # frames kept for receive()
        self.pings = 0
        self.session: dict[str, Any] = {}  # what the protocol's handshake learnt (Socket.IO's open packet)
        key = base64.b64encode(os.urandom(16))
        self.accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            + ("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if DEFLATE else "")
            + "\r\n"
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
        self.waiter: asyncio.Future[None] | None = None
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

    async def receive(self, timeout: float | None = None) -> bytes:
        """The next data frame that is not a delivery (a reply, or what the server sends first)."""
        if self.replies is None:
            self.replies = []
        while not self.replies:
            if self.closed:
                raise ConnectionError("connection closed")
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self.waiter, timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no reply within {timeout} s") from None
            finally:
                self.waiter = None
        payload = self.replies.pop(0)
        if not self.replies:
            self.replies = None  # frames are deliveries again
        return payload

    async def call(self, payload: bytes, raw: bool = False, timeout: float | None = None) -> Any:
        """Send one frame (a payload, framed here) and return the next data frame received:
        its payload if ``raw``, else decoded as JSON (Snorky's protocol)."""
        if self.replies is None:
            self.replies = []  # before writing: the reply may come in the same read as anything else
        self.write(client_frame(payload))
        reply = await self.receive(timeout)
        return reply if raw else json.loads(reply)

    def control(self, payload: bytes) -> bool:
        """Answer ``payload`` if it is a keep-alive of the protocol (True), else False."""
        answer = self.protocol.control(payload)
        if answer is None:
            return False
        if answer:
            self.write(client_frame(answer))
        self.pings += 1
        return True

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
        control_size = self.control_size
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
                if length <= control_size and self.control(data[head:end]):
                    pass  # a keep-alive, answered
                elif self.replies is not None:
                    self.replies.append(inflate(b0, data[head:end]))  # a reply, not counted
                    waiter = self.waiter
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
                else:
                    n += 1
                    if self.keep:
                        self.kept.append(inflate(b0, data[head:end]))
            elif opcode == 0x9:
                self.write(client_frame(data[head:end], 0xA))
            elif opcode == 0x8:
                self.closed = True
                if self.waiter is not None and not self.waiter.done():
                    self.waiter.set_exception(ConnectionError("closed by the server"))
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


async def connect(
    host: str,
    port: int,
    protocol: WireProtocol,
    path: str | None = None,
    keep: bool = False,
    cls: type[Client] = Client,
) -> Client:
    """A ``cls`` connected to ``host:port`` at ``path`` (the protocol's by default), upgraded to
    WebSocket and through the protocol's handshake."""
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: cls(host, port, path or protocol.path, keep, protocol), host, port)
    await client.opened  # type: ignore[attr-defined]
    await protocol.handshake(client)  # type: ignore[arg-type]
    return client  # type: ignore[return-value]


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
        return client_frame(self.protocol.publish_frame(CHANNEL, message_text(seq, self.payload), 100 + seq))

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
        reply_id = self.protocol.reply_id
        for raw in replies:
            call_id = reply_id(raw)
            if call_id is None:
                self.errors.append(raw[:200].decode(errors="replace"))
            sent = self.sent_at.pop(call_id, None)
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
    protocol = PROTOCOLS[args.protocol]
    subscribe = protocol.subscribe_frame(CHANNEL, 1)
    limit = asyncio.Semaphore(args.connect_concurrency)
    subscribers: list[Client] = []
    failures: list[str] = []

    ports: list[int] = args.ports

    async def open_client(port: int, cls: type[Client] = Client, keep: bool = False) -> Client:
        return await connect(args.host, port, protocol, args.path, keep, cls)

    async def subscriber(index: int) -> None:
        async with limit:
            try:
                # The first subscriber on each port keeps its messages, to be checked.
                client = await open_client(ports[index % len(ports)], keep=index < len(ports))
                reply = await client.call(subscribe, raw=True, timeout=args.timeout)
                if protocol.reply_id(reply) != 1:
                    raise RuntimeError(f"subscribe refused: {reply[:200]!r}")
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
        "protocol": protocol.name,
        "path": args.path or protocol.path,
        "subscriber_reads": pump.reads - reads0 if pump else None,
        "cpu_stat_s": cpu_stat_delta(stat0, stat1),
        "ksoftirqd_cpu_s": {name: softirqd1[name] - softirqd0[name] for name in softirqd},
        "acks": publisher.acks,
        "reply_ms": latency_summary(publisher.latencies),
        "publish_errors": publisher.errors[:3],
        "per_subscriber_min": min(counts) - args.warmup,
        "per_subscriber_max": max(counts) - args.warmup,
        "fragmented_frames": sum(c.fragmented for c in subscribers),
        "keepalives": sum(c.pings for c in subscribers) + publisher.pings,  # protocol pings answered, not counted
        "closed_subscribers": sum(c.closed for c in subscribers),
        "verified_subscriber0": verify_messages(subscribers[0].kept, args.warmup + messages, args.payload, protocol),
        "verified_by_port": {
            str(c.port): verify_messages(c.kept, args.warmup + messages, args.payload, protocol) for c in kept
        },
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


def verify_messages(kept: list[bytes], total: int, payload: int, protocol: WireProtocol | None = None) -> str:
    """Check subscriber 0 received exactly the published messages, in order (decoded by ``protocol``)."""
    if len(kept) != total:
        return f"subscriber 0 got {len(kept)} messages, expected {total}"
    delivery_text = (protocol or PROTOCOLS["snorky"]).delivery_text
    for seq, raw in enumerate(kept):
        if delivery_text(raw, CHANNEL) != message_text(seq, payload):
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
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="snorky", help="the servers' protocol")
    parser.add_argument("--path", help="the WebSocket request path (default: the protocol's, /ws for snorky)")
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
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate (see DEFLATE)")
    args = parser.parse_args()
    global DEFLATE
    DEFLATE = args.deflate
    steady_malloc()
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
