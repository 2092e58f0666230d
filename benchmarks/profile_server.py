"""Profile one server with py-spy while the load generator drives W1 (fan-out) or W2
(echo RPC, ``--workload w2``: 50 connections, one call in flight each) at it.

    pip install py-spy
    python benchmarks/profile_server.py --server snorky --n 1000 --seconds 15
    python benchmarks/profile_server.py --server snorky --workload w2 --seconds 10

Starts the server (pinned to CPU 0) and the load generator (pinned to CPU 1,
with more messages than it can deliver in the time), waits ``--delay`` seconds
for the subscribers to connect, records the server with ``py-spy record
--format raw`` for ``--seconds``, then stops both. Writes the raw stacks (for
flame-graph tools) to OUT.txt and prints, and writes to OUT.md, the functions
with the most samples as the innermost Python frame ("self") and anywhere in
the stack ("total"), as a share of the samples in which the server was not idle.
py-spy sees Python frames only (``--native`` adds C frames where it can unwind
them): time spent inside a C call such as ``socket.send`` counts as self time
of the Python function that made the call.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import HERE, SERVERS, free_port, pinned, stop, wait_port  # noqa: E402

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``func (file.py)``: lines merged, paths shortened."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    for marker in ("site-packages/", "lib/python3", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match.group('func')} ({path})"


def line_of(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``file.py:12 func``."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{Path(match.group('file')).name}:{match.group('line')} {match.group('func')}"


def summarize(raw: str, top: int) -> str:
    line_counts: collections.Counter[str] = collections.Counter()
    self_counts: collections.Counter[str] = collections.Counter()
    total_counts: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        # py-spy prints the thread first ("process 1:..." / "thread (0x..)") when asked to.
        full = [f for f in stack.split(";") if f.strip() and not f.startswith(("process ", "thread "))]
        frames = [short(f) for f in full]
        if not frames:
            continue
        samples += n
        line_counts[line_of(full[-1])] += n
        self_counts[frames[-1]] += n
        for frame in set(frames):
            total_counts[frame] += n
    out = [f"{samples} samples (server not idle)", "", "| self % | total % | function (file) |", "|---:|---:|---|"]
    for frame, n in self_counts.most_common(top):
        out.append(f"| {100 * n / samples:.1f} | {100 * total_counts[frame] / samples:.1f} | `{frame}` |")
    out += ["", "By total (inclusive):", "", "| total % | self % | function (file) |", "|---:|---:|---|"]
    for frame, n in total_counts.most_common(top):
        out.append(f"| {100 * n / samples:.1f} | {100 * self_counts[frame] / samples:.1f} | `{frame}` |")
    out += ["", "Self samples by line:", "", "| self % | line |", "|---:|---|"]
    for where, n in line_counts.most_common(top):
        out.append(f"| {100 * n / samples:.1f} | `{where}` |")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="snorky", choices=sorted(SERVERS))
    parser.add_argument("--workload", choices=("w1", "w2"), default="w1")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=100_000, help="more than can be sent in the time")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long py-spy records")
    parser.add_argument("--delay", type=float, help="seconds before recording (default 2 + N/1000)")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--native", action="store_true", help="ask py-spy for C frames too")
    parser.add_argument(
        "--blocking", action="store_true", help="let py-spy pause the server for each sample (default: --nonblocking)"
    )
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", help="path without extension (default benchmarks/results/profile-SERVER)")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")))
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    default = f"profile-{args.server}" + ("-w2" if args.workload == "w2" else "")
    out = Path(args.out or HERE / "results" / default)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.sched_setaffinity(0, {1})

    port = free_port()
    server = subprocess.Popen(
        [args.python, str(SERVERS[args.server]), "--port", str(port)],
        stdin=subprocess.DEVNULL,
        preexec_fn=pinned(0),
    )
    loadgen = None
    try:
        wait_port(port, server)
        if args.workload == "w2":
            generator = [
                args.python,
                str(HERE / "loadgen_rpc.py"),
                "--port",
                str(port),
                "--concurrency",
                "50",
                "--seconds",
                str(args.seconds + 30),
                "--cpu",
                "1",
                "--server-pid",
                str(server.pid),
            ]
        else:
            generator = [
                args.python,
                str(HERE / "loadgen.py"),
                "--port",
                str(port),
                "--n",
                str(args.n),
                "--messages",
                str(args.messages),
                "--timeout",
                str(args.seconds + 60),
                "--cpu",
                "1",
                "--window",
                "50",
                "--batch-ms",
                "100",
                "--server-pid",
                str(server.pid),
            ]
        loadgen = subprocess.Popen(generator, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        time.sleep(args.delay if args.delay is not None else 2 + args.n / 1000)
        command = [
            args.py_spy,
            "record",
            "--pid",
            str(server.pid),
            "--format",
            "raw",
            "--duration",
            str(int(args.seconds)),
            "--rate",
            str(args.rate),
            "-o",
            str(out.with_suffix(".txt")),
        ]
        if not args.blocking:
            command.append("--nonblocking")
        if args.native:
            command.append("--native")
        subprocess.run(command, check=True)
    finally:
        if loadgen is not None:
            stop(loadgen)  # type: ignore[arg-type]
        stop(server)
    raw = out.with_suffix(".txt").read_text()
    text = (
        (
            f"# py-spy: {args.server} server, W2 echo RPC, 50 connections\n\n"
            if args.workload == "w2"
            else f"# py-spy: {args.server} server, W1 fan-out, N = {args.n}\n\n"
        )
        + f"`{' '.join(command[:1] + command[1:])}`\n\n"
        + summarize(raw, args.top)
    )
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
