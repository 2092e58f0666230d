"""Run the Autobahn|Testsuite fuzzing client against an echo on Snorky's direct WebSocket path.

The testsuite (``pip install autobahntestsuite``) needs Python 2.7, so it lives in a
virtualenv of its own, outside this repository; give its ``wstest`` with ``--wstest``::

    virtualenv -p python2.7 /tmp/ab/py27 && /tmp/ab/py27/bin/pip install autobahntestsuite
    python benchmarks/autobahn.py --wstest /tmp/ab/py27/bin/wstest

The echo server is :class:`~snorky.request_handlers.websocket.SnorkyWebSocketHandler`
with an ``on_message`` that sends each message back as it came (text or binary), on a
free loopback port, with ``compression`` on (cases 12 and 13 need permessage-deflate)
and ``max_message_size`` raised to 64 MiB (case 9 sends 16 MiB messages). Prints the
count of each behaviour (of the messages, and of the closing handshake) and every case
that FAILED or is UNIMPLEMENTED; exits 1 if there is any. The full report is written
to ``--out`` (HTML and JSON, by the testsuite).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from tornado.web import Application

from snorky import ServiceRegistry
from snorky.request_handlers.websocket import SnorkyWebSocketHandler


class EchoHandler(SnorkyWebSocketHandler):
    """Sends every message back, text as text and binary as binary."""

    def on_message(self, message: str | bytes) -> None:
        self.write_message(message, binary=isinstance(message, bytes))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run(wstest: str, out: Path, cases: list[str], exclude: list[str]) -> int:
    port = free_port()
    route = EchoHandler.get_route(
        ServiceRegistry(), "/", compression=True, max_message_size=64 << 20, ping_interval=0, max_unsent_bytes=1 << 30
    )
    app = Application([route])
    server = app.listen(port, "127.0.0.1")
    out.mkdir(parents=True, exist_ok=True)
    spec = {
        "outdir": str(out),
        "servers": [{"agent": "snorky-direct", "url": f"ws://127.0.0.1:{port}/"}],
        "cases": cases,
        "exclude-cases": exclude,
        "exclude-agent-cases": {},
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(spec, handle)
    process = await asyncio.create_subprocess_exec(
        wstest, "-m", "fuzzingclient", "-s", handle.name, stdout=asyncio.subprocess.DEVNULL, cwd=str(out)
    )
    await process.wait()
    server.stop()
    return summarize(out / "index.json")


def summarize(index: Path) -> int:
    results: dict[str, Any] = json.loads(index.read_text())["snorky-direct"]
    behaviour = collections.Counter(result["behavior"] for result in results.values())
    closing = collections.Counter(result["behaviorClose"] for result in results.values())
    print(f"{len(results)} cases; behaviour: {dict(behaviour)}; closing handshake: {dict(closing)}")
    bad = sorted(
        (
            case
            for case, result in results.items()
            if {result["behavior"], result["behaviorClose"]} & {"FAILED", "UNIMPLEMENTED"}
        ),
        key=lambda case: [int(part) for part in case.split(".")],
    )
    for case in bad:
        print(f"  {case}: {results[case]['behavior']} / {results[case]['behaviorClose']}")
    return 1 if bad else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wstest", required=True, help="the testsuite's wstest, in its Python 2.7 virtualenv")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "snorky-autobahn")
    parser.add_argument("--cases", default="*", help="comma-separated case patterns (default: all)")
    parser.add_argument("--exclude", default="", help="comma-separated case patterns to leave out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    cases = [c for c in args.cases.split(",") if c]
    exclude = [c for c in args.exclude.split(",") if c]
    sys.exit(asyncio.run(run(args.wstest, args.out, cases, exclude)))


if __name__ == "__main__":
    main()
