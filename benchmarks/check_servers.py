"""Check that every benchmark server speaks the protocol, with Tornado's own WebSocket client.

    python benchmarks/check_servers.py [floor snorky tornado socketio channels snorky01]

Each server runs with the interpreter of its environment in ``run.py``'s
``SETUPS`` (``envs.py``), if it has one; by default every server is checked.
For each server: subscribe (and a second
subscribe, which must fail with ``already_subscribed``), publish messages of 5,
200 (non-ASCII) and 60,000 characters and compare what the subscriber gets,
call ``echo`` (service ``echo``, workload W2) with 100 and 200 (non-ASCII)
characters and compare the replies, ping. Exits 1 on a mismatch. Snorky 0.1
(``snorky01``) sends no error ``code``: its second subscribe must fail with the
message ``Already subscribed``.

``socketio`` (python-socketio, ``protocol="socketio"`` in ``SETUPS``) is checked
in its own protocol, Socket.IO 5 over WebSocket only: the Engine.IO open packet
(its ping interval must leave idle connections alone for at least a minute, as
W3 needs), the namespace connection, then the same subscribe, publishes, echoes
and ping as events with acks.
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

import envs  # noqa: E402
from run import SERVERS, SETUPS, free_port, stop, wait_port  # noqa: E402

NO_ERROR_CODES = {"snorky01"}  # servers whose errors carry a message but no code


def rpc(command: str, params: dict[str, Any], call_id: int, service: str = "pubsub") -> str:
    return json.dumps({"service": service, "message": {"command": command, "params": params, "callId": call_id}})


async def check(name: str) -> list[str]:
    problems = []
    port = free_port()
    env = SETUPS[name].env if name in SETUPS else None
    try:
        python = envs.ensure(env) if env else sys.executable
    except envs.EnvUnavailable as exc:
        return [f"environment {env}: {exc}"]
    proc = subprocess.Popen([python, str(SERVERS[name]), "--port", str(port)], stdin=subprocess.DEVNULL)
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
        wanted = ("message", "Already subscribed") if name in NO_ERROR_CODES else ("code", "already_subscribed")
        if not reply or reply.get("type") != "error" or reply.get(wanted[0]) != wanted[1]:
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


async def check_socketio(name: str) -> list[str]:
    """The checks of ``check`` as Socket.IO events: ``42K["event",{...}]``, acked ``43K[...]``."""
    problems: list[str] = []
    port = free_port()
    env = SETUPS[name].env
    try:
        python = envs.ensure(env) if env else sys.executable
    except envs.EnvUnavailable as exc:
        return [f"environment {env}: {exc}"]
    proc = subprocess.Popen([python, str(SERVERS[name]), "--port", str(port)], stdin=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"

        async def read(conn: Any) -> str:
            raw = await asyncio.wait_for(conn.read_message(), 5)
            if raw is None:
                raise ConnectionError("closed by the server")
            return raw

        async def connect() -> Any:
            conn = await websocket_connect(url)
            opening = await read(conn)
            if not opening.startswith("0{"):
                raise ConnectionError(f"no Engine.IO open packet: {opening[:200]}")
            if json.loads(opening[1:]).get("pingInterval", 0) < 60_000:
                problems.append(f"pingInterval under a minute: {opening[:200]}")
            conn.write_message("40")
            reply = await read(conn)
            if not reply.startswith("40{"):
                raise ConnectionError(f"namespace connection refused: {reply[:200]}")
            return conn

        async def call(conn: Any, call_id: int, event: str, data: dict[str, str]) -> Any:
            conn.write_message(f"42{call_id}" + json.dumps([event, data]))
            reply = await read(conn)
            prefix = f"43{call_id}["
            return json.loads(reply[len(prefix) - 1 :]) if reply.startswith(prefix) else reply[:200]

        sub = await connect()
        pub = await connect()
        reply = await call(sub, 1, "subscribe", {"channel": "bench"})
        if reply != []:
            problems.append(f"subscribe: {reply}")
        for call_id, text in enumerate(("hello", "é" * 200, "a" * 60000), 10):
            reply = await call(pub, call_id, "publish", {"channel": "bench", "message": text})
            if reply != []:
                problems.append(f"publish {len(text)}: {reply}")
            got = await read(sub)
            if not got.startswith("42[") or json.loads(got[2:]) != ["message", {"channel": "bench", "message": text}]:
                problems.append(f"delivery {len(text)}: {got[:200]}")
        for call_id, text in enumerate(("x" * 100, "é" * 200), 20):
            reply = await call(pub, call_id, "echo", {"message": text})
            if reply != [text]:
                problems.append(f"echo {len(text)}: {str(reply)[:200]}")
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


CHECKS = {"snorky": check, "socketio": check_socketio}  # by the protocol a server speaks


def protocol(name: str) -> str:
    return SETUPS[name].protocol if name in SETUPS else "snorky"


async def main(names: list[str]) -> int:
    failed = 0
    for name in names:
        problems = await CHECKS[protocol(name)](name)
        print(f"{name}: {'ok' if not problems else '; '.join(problems)}")
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    checked = [name for name in SERVERS if protocol(name) in CHECKS]
    sys.exit(asyncio.run(main(sys.argv[1:] or checked)))
