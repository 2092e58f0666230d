"""Check that every benchmark server speaks the protocol, with Tornado's own WebSocket client.

    python benchmarks/check_servers.py [floor snorky tornado]

For each server: subscribe (and a second subscribe, which must fail with
``already_subscribed``), publish messages of 5, 200 (non-ASCII) and 60,000
characters and compare what the subscriber gets, call ``echo`` (service
``echo``, workload W2) with 100 and 200 (non-ASCII) characters and compare the
replies, ping. Exits 1 on a mismatch.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tornado.websocket import websocket_connect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import SERVERS, free_port, stop, wait_port  # noqa: E402


def rpc(command: str, params: dict[str, Any], call_id: int, service: str = "pubsub") -> str:
    return json.dumps({"service": service, "message": {"command": command, "params": params, "callId": call_id}})


async def check(name: str) -> list[str]:
    problems = []
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(SERVERS[name]), "--port", str(port)], stdin=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        url = f"ws://127.0.0.1:{port}/ws"
        sub = await websocket_connect(url)
        pub = await websocket_connect(url)

        async def call(conn: Any, text: str) -> Any:
            conn.write_message(text)
            raw = await asyncio.wait_for(conn.read_message(), 5)
            return None if raw is None else json.loads(raw)["message"]

        reply = await call(sub, rpc("subscribe", {"channel": "bench"}, 1))
        if reply != {"type": "response", "callId": 1, "data": None}:
            problems.append(f"subscribe: {reply}")
        reply = await call(sub, rpc("subscribe", {"channel": "bench"}, 2))
        if not reply or reply.get("type") != "error" or reply.get("code") != "already_subscribed":
            problems.append(f"second subscribe: {reply}")
        for call_id, text in enumerate(("hello", "é" * 200, "a" * 60000), 10):
            reply = await call(pub, rpc("publish", {"channel": "bench", "message": text}, call_id))
            if reply != {"type": "response", "callId": call_id, "data": None}:
                problems.append(f"publish {len(text)}: {reply}")
            got = json.loads(await asyncio.wait_for(sub.read_message(), 5))
            if got != {"service": "pubsub", "message": {"type": "message", "channel": "bench", "message": text}}:
                problems.append(f"delivery {len(text)}: {str(got)[:200]}")
        for call_id, text in enumerate(("x" * 100, "é" * 200), 20):
            pub.write_message(rpc("echo", {"message": text}, call_id, "echo"))
            raw = await asyncio.wait_for(pub.read_message(), 5)
            got = None if raw is None else json.loads(raw)
            if got != {"service": "echo", "message": {"type": "response", "callId": call_id, "data": text}}:
                problems.append(f"echo {len(text)}: {str(got)[:200]}")
        sub.ping(b"ping")
        await asyncio.sleep(0.2)
        if sub.protocol is None:
            problems.append("closed after a ping")
        sub.close()
        pub.close()
    except Exception as exc:  # noqa: BLE001 - reported
        problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        stop(proc)
    return problems


async def main(names: list[str]) -> int:
    failed = 0
    for name in names:
        problems = await check(name)
        print(f"{name}: {'ok' if not problems else '; '.join(problems)}")
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:] or list(SERVERS))))
