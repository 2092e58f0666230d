"""Where an idle connection's memory goes: tracemalloc in a benchmark server, by line.

Starts ``servers/snorky_server.py`` (or ``--server tornado``) in a child process
with ``tracemalloc`` on, takes a snapshot, opens N connections (each subscribed
to ``bench`` unless ``--no-subscribe``), takes a second snapshot, and prints the
difference per connection: by file, then the top lines. tracemalloc counts
Python's own allocations; RSS (what W3 measures) also has the allocator's
overhead and fragmentation on top.

Usage: python benchmarks/profile_memory.py --n 1000 [--server tornado] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import runpy
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SCRIPTS = {"snorky": HERE / "servers" / "snorky_server.py", "tornado": HERE / "servers" / "tornado_plain.py"}


def serve(script: str, port: int, report: str) -> None:
    """The child: run the server script with tracemalloc; SIGUSR1 takes a snapshot, the
    second one writes the comparison to ``report``."""
    import gc

    tracemalloc.start(1)
    snapshots: list[tracemalloc.Snapshot] = []

    def snap(*_: object) -> None:
        gc.collect()
        snapshots.append(tracemalloc.take_snapshot())
        if len(snapshots) == 2:
            stats = snapshots[1].compare_to(snapshots[0], "lineno")
            Path(report).write_text(
                "\n".join(f"{s.size_diff}\t{s.count_diff}\t{s.traceback[0]}" for s in stats if s.size_diff > 0)
            )

    signal.signal(signal.SIGUSR1, snap)
    sys.argv = [script, "--port", str(port)]
    runpy.run_path(script, run_name="__main__")


async def connect(port: int, n: int, subscribe: bool, pid: int) -> None:
    from loadgen import PROTOCOLS, connect

    protocol = PROTOCOLS["snorky"]
    os.kill(pid, signal.SIGUSR1)
    await asyncio.sleep(1)
    limit = asyncio.Semaphore(100)
    clients = []

    async def one() -> None:
        async with limit:
            client = await connect("127.0.0.1", port, protocol)
            if subscribe:
                await client.call(protocol.subscribe_frame("bench", 1), raw=True)
            clients.append(client)

    await asyncio.gather(*(one() for _ in range(n)))
    await asyncio.sleep(1)
    os.kill(pid, signal.SIGUSR1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", choices=sorted(SCRIPTS), default="snorky")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--no-subscribe", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", help="also write the report to this markdown file")
    parser.add_argument("--child", nargs=3, metavar=("SCRIPT", "PORT", "REPORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        serve(args.child[0], int(args.child[1]), args.child[2])
        return

    from run import free_port, wait_port

    port = free_port()
    report = Path(f"/tmp/snorky-profile-memory-{os.getpid()}.tsv")
    child = subprocess.Popen([sys.executable, __file__, "--child", str(SCRIPTS[args.server]), str(port), str(report)])
    try:
        wait_port(port, child, timeout=60)
        asyncio.run(connect(port, args.n, not args.no_subscribe, child.pid))
        deadline = time.monotonic() + 120
        while not report.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1)
        rows = [line.split("\t") for line in report.read_text().splitlines()]
    finally:
        child.terminate()
        child.wait()
        report.unlink(missing_ok=True)

    site = str(Path(collections.__file__).parent.parent)
    by_file: collections.Counter[str] = collections.Counter()
    for size, _count, where in rows:
        by_file[where.rsplit(":", 1)[0].replace(site, "…")] += int(size)
    total = sum(int(size) for size, _, _ in rows)
    lines = [
        f"# Memory per idle connection: {args.server}, N = {args.n}{'' if args.no_subscribe else ', each subscribed'}",
        "",
        f"Command: `python benchmarks/profile_memory.py --server {args.server} --n {args.n}"
        f"{' --no-subscribe' if args.no_subscribe else ''}`. Python allocations traced by tracemalloc, "
        f"after − before, per connection: **{total / args.n / 1024:.2f} KiB** in all.",
        "",
        "| file | KiB / connection |",
        "|---|---:|",
    ]
    lines += [f"| `{name}` | {size / args.n / 1024:.2f} |" for name, size in by_file.most_common(args.top)]
    lines += ["", "| line | KiB / connection | objects / connection |", "|---|---:|---:|"]
    for size, count, where in rows[: args.top]:
        lines.append(f"| `{where.replace(site, '…')}` | {int(size) / args.n / 1024:.2f} | {int(count) / args.n:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
