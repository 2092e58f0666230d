"""First-delivery latency: how long the first message to a new subscriber takes, against the tenth.

A subscriber connects, subscribes and reads the reply; a publisher (one connection for
the whole run) then publishes ten messages to the channel, one at a time, each when
the subscriber has received the previous one. The latency of a delivery is the time
from the publisher's write to the subscriber's read of the frame, both in this
process, over loopback. One round per new subscriber; figures over ``--rounds``.

Without ``TCP_NODELAY`` on the server's socket, the first delivery can wait for the
subscriber's delayed ACK of the subscribe reply (Nagle's algorithm holds a small
segment while an earlier one is unacknowledged): about 40 ms on Linux. With it, the
first delivery is as quick as the tenth.

Usage: python benchmarks/first_delivery.py                     # starts servers/snorky_server.py
       python benchmarks/first_delivery.py --port 8001         # an already running server
       python benchmarks/first_delivery.py --source /other/tree  # that tree's snorky/

Writes ``results/first-delivery.md`` and ``results/first-delivery.json`` (``--out``).
A benchmark, not a test: it measures, and checks only that every message arrived.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def client_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, 0x80 | length)
    else:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, length)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Conn:
    """A blocking WebSocket client connection, enough for this benchmark."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.split(b"\r\n")[0].decode())

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        self.buffer += data

    def send(self, value: Any) -> None:
        self.sock.sendall(client_frame(json.dumps(value, separators=(",", ":")).encode()))

    def read(self) -> Any:
        while True:
            while len(self.buffer) < 2:
                self._more()
            length = self.buffer[1] & 0x7F
            head = 2
            if length == 126:
                while len(self.buffer) < 4:
                    self._more()
                length, head = struct.unpack("!H", self.buffer[2:4])[0], 4
            while len(self.buffer) < head + length:
                self._more()
            opcode = self.buffer[0] & 0x0F
            payload, self.buffer = self.buffer[head : head + length], self.buffer[head + length :]
            if opcode == 0x1:
                return json.loads(payload)

    def close(self) -> None:
        self.sock.close()


def rpc(command: str, call_id: int, **params: Any) -> dict[str, Any]:
    return {"service": "pubsub", "message": {"command": command, "params": params, "callId": call_id}}


def measure(port: int, rounds: int, deliveries: int) -> list[list[float]]:
    """Per round, the latency (ms) of each delivery to a new subscriber."""
    publisher = Conn(port)
    call_id = 0
    results = []
    for round_index in range(rounds):
        subscriber = Conn(port)
        channel = f"first-{round_index}"
        subscriber.send(rpc("subscribe", 1, channel=channel))
        assert subscriber.read()["message"]["type"] == "response"
        latencies = []
        for seq in range(deliveries):
            call_id += 1
            start = time.perf_counter()
            publisher.send(rpc("publish", call_id, channel=channel, message=seq))
            message = subscriber.read()
            latencies.append((time.perf_counter() - start) * 1000)
            assert message["message"]["message"] == seq, message
            assert publisher.read()["message"]["callId"] == call_id
        subscriber.close()
        results.append(latencies)
    publisher.close()
    return results


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(source: Path, extra: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(source))
    process = subprocess.Popen(
        [sys.executable, str(HERE / "servers" / "snorky_server.py"), "--port", str(port), *extra], env=env
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the server did not start")


def summarize(results: list[list[float]]) -> dict[str, Any]:
    columns = list(zip(*results, strict=True))

    def figures(values: tuple[float, ...]) -> dict[str, float]:
        ordered = sorted(values)
        return {
            "median_ms": statistics.median(ordered),
            "p90_ms": ordered[int(0.9 * (len(ordered) - 1))],
            "max_ms": ordered[-1],
        }

    return {"first": figures(columns[0]), "tenth": figures(columns[-1]), "rounds": len(results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, help="an already running server (default: start one)")
    parser.add_argument("--source", type=Path, default=HERE.parent, help="the tree whose snorky/ the server runs")
    parser.add_argument("--server-args", default="", help="extra arguments for servers/snorky_server.py")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "first-delivery")
    args = parser.parse_args()
    process = None
    port = args.port
    if port is None:
        process, port = start_server(args.source, args.server_args.split())
    try:
        results = measure(port, args.rounds, 10)
    finally:
        if process is not None:
            process.terminate()
            process.wait()
    summary = summarize(results)
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "config": {"rounds": args.rounds, "source": str(args.source)},
        "summary": summary,
        "runs": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    lines = [
        "# First delivery to a new subscriber",
        "",
        f"{summary['rounds']} subscribers, each sent 10 messages one at a time; latency from the publisher's write "
        "to the subscriber's read, in ms.",
        "",
        "| delivery | median | p90 | max |",
        "|---|---:|---:|---:|",
    ]
    for name in ("first", "tenth"):
        row = summary[name]
        lines.append(f"| {name} | {row['median_ms']:.2f} | {row['p90_ms']:.2f} | {row['max_ms']:.2f} |")
    text = "\n".join(lines) + "\n"
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
