"""The whole benchmark suite in one command, and its summary table.

Runs every workload through ``run.py`` (one after the other: they must not share
the machine), each writing ``results/NAME.md`` and ``results/NAME.json``, then
writes ``results/summary.md`` and the same table, as reStructuredText, into the
docs (``docs/topics/benchmark-results.inc``, included by the performance page).

Usage: python benchmarks/suite.py                  # everything, 3 rounds: about 25 minutes
       python benchmarks/suite.py --only w1-n1000,w2 --rounds 1
       python benchmarks/suite.py --summary-only     # rebuild the tables from results/*.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs" / "topics" / "benchmark-results.inc"

# Channels delivers under 2,000 messages/s at N = 1000: at N = 4000 a run's warm-up alone
# outlasts the generator's timeout, so it is measured at N = 1000 only.
WITHOUT_CHANNELS = "floor,snorky,tornado,socketio,snorky01"
PARTS: dict[str, list[str]] = {
    "w1-n1000": ["--workload", "w1", "--n", "1000"],
    "w1-n4000": ["--workload", "w1", "--n", "4000", "--servers", WITHOUT_CHANNELS],
    "w1p-n4000": ["--workload", "w1p", "--n", "4000", "--servers", WITHOUT_CHANNELS],
    "w2": ["--workload", "w2"],
    "w3": ["--workload", "w3"],
    "w4": ["--workload", "w4", "--n", "1000"],
    # Not run.py: its own script, Snorky only (the first delivery to a new subscriber, against the tenth).
    "first-delivery": ["first_delivery.py", "--rounds", "30"],
}

TARGETS = {
    "w1-n4000": "≤ 1.5",
    "w1p-n4000": "≤ 1.3",
    "w2": "≤ 2.5",
    "w3": "≤ 8 kB",
    "w4": "≥ 1.6",
}


def fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "–" if value is None else f"{value:,.{digits}f}{suffix}"


def times(value: float | None) -> str:
    return "–" if value is None else f"× {value:.2f}"


def load(results: Path, part: str) -> dict[str, Any] | None:
    path = results / f"{part}.json"
    return json.loads(path.read_text()) if path.exists() else None


def rows(results: Path) -> tuple[list[str], list[list[str]], list[str]]:
    """The summary: header, one row per server, and notes."""
    reports = {part: load(results, part) for part in PARTS}
    servers: list[str] = []
    for part in ("w1-n1000", "w1-n4000", "w1p-n4000", "w2", "w3"):
        report = reports[part]
        for server in (report or {}).get("summary", {}):
            if server not in servers:
                servers.append(server)
    header = [
        "server",
        "W1 N=1000 deliveries/s",
        "W1 N=1000 CPU s / 1M deliveries",
        "W1 N=4000 CPU s / 1M deliveries",
        "W1 paced N=4000 p50 / p99 ms",
        "W2 50 conn. CPU µs / request",
        "W2 1 conn. requests/s",
        "W3 RSS / idle connection",
        "W3 connections/s",
    ]
    table = []
    notes = []

    def entry(part: str, server: str) -> dict[str, Any]:
        report = reports[part]
        summary = (report or {}).get("summary", {}).get(server) or {}
        if summary.get("errors") and summary.get("rounds", 0) == 0:
            notes.append(f"{server}, {part}: {summary['errors'][0][:200]}")
        return summary

    for server in servers:
        w1, w1b, w1p, w2, w3 = (entry(p, server) for p in ("w1-n1000", "w1-n4000", "w1p-n4000", "w2", "w3"))
        table.append(
            [
                server,
                f"{fmt(w1.get('deliveries_per_s'), 0)} ({times(w1.get('deliveries_per_s_x_floor'))})",
                f"{fmt(w1.get('server_cpu_s_per_million'))} ({times(w1.get('server_cpu_s_per_million_x_floor'))})",
                f"{fmt(w1b.get('server_cpu_s_per_million'))} ({times(w1b.get('server_cpu_s_per_million_x_floor'))})",
                f"{fmt(w1p.get('latency_p50_ms'))} / {fmt(w1p.get('latency_p99_ms'))} "
                f"({times(w1p.get('latency_p99_ms_x_floor'))})",
                f"{fmt(w2.get('c50_server_us_per_request'), 1)} ({times(w2.get('c50_server_us_per_request_x_floor'))})",
                f"{fmt(w2.get('c1_requests_per_s'), 0)} ({times(w2.get('c1_requests_per_s_x_floor'))})",
                f"{fmt(w3.get('rss_per_connection_kb'), 1, ' kB')} ({times(w3.get('rss_per_connection_kb_x_floor'))})",
                f"{fmt(w3.get('connections_per_s'), 0)} ({times(w3.get('connections_per_s_x_floor'))})",
            ]
        )
    w4 = reports["w4"]
    if w4:
        two = w4["summary"].get("redis-2nodes", {})
        one = w4["summary"].get("redis-1node", {})
        notes.append(
            f"W4 (cluster, N = {w4['config']['n']}): two Snorky nodes on Redis deliver "
            f"{fmt(two.get('deliveries_per_s'), 0)}/s, one node {fmt(one.get('deliveries_per_s'), 0)}/s: "
            f"{times(two.get('deliveries_per_s_x_1node'))} (target ≥ 1.6; see results/w4.md for why two CPUs "
            "cannot show it)."
        )
    first = reports["first-delivery"]
    if first:
        fd = first["summary"]
        notes.append(
            f"First delivery to a new subscriber ({fd['rounds']} subscribers, Snorky): median "
            f"{fmt(fd['first']['median_ms'])} ms, p90 {fmt(fd['first']['p90_ms'])} ms; the tenth: median "
            f"{fmt(fd['tenth']['median_ms'])} ms (results/first-delivery.md)."
        )
    dates = sorted({r["date"] for r in reports.values() if r and "date" in r})
    if dates:
        notes.append(f"Runs from {dates[0]} to {dates[-1]}; each part's own report is in benchmarks/results/.")
    return header, table, notes


def markdown(header: list[str], table: list[list[str]], notes: list[str]) -> str:
    lines = [
        "# Snorky benchmark suite: summary",
        "",
        "Medians of the rounds; in brackets, the median of the per-round ratios to the floor server "
        "(lower is better for CPU, memory and latency, higher for rates). Targets for Snorky: "
        + "; ".join(f"{part} {target}" for part, target in TARGETS.items())
        + ".",
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table]
    lines += ["", *[f"- {note}" for note in notes], ""]
    return "\n".join(lines)


def rst(header: list[str], table: list[list[str]], notes: list[str]) -> str:
    """A list-table (the include of the docs' performance page)."""
    lines = [
        ".. This file is written by benchmarks/suite.py; do not edit it by hand.",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
    ]
    for row in [header, *table]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    lines.append("")
    lines += [f"- {note}" for note in notes]
    lines.append("")
    return "\n".join(lines)


def summarize(results: Path, docs: Path | None) -> str:
    header, table, notes = rows(results)
    text = markdown(header, table, notes)
    (results / "summary.md").write_text(text)
    if docs is not None:
        docs.write_text(rst(header, table, notes))
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated parts, from: " + ", ".join(PARTS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", help="passed to every part (default: each workload's own)")
    parser.add_argument("--results", default=str(HERE / "results"), help="folder of the parts' reports")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite the docs' table")
    parser.add_argument("--summary-only", action="store_true", help="run nothing: rebuild the summary")
    args = parser.parse_args()
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    parts = [p.strip() for p in (args.only or ",".join(PARTS)).split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown parts: {', '.join(unknown)}")
    failed = []
    if not args.summary_only:
        for part in parts:
            if PARTS[part][0].endswith(".py"):
                command = [sys.executable, str(HERE / PARTS[part][0]), *PARTS[part][1:], "--out", str(results / part)]
            else:
                command = [sys.executable, str(HERE / "run.py"), *PARTS[part], "--rounds", str(args.rounds)]
                command += ["--out", str(results / part)]
            if args.servers and "run.py" in command[1]:
                servers = args.servers.split(",")
                if "--servers" in command:  # the part's own list, narrowed
                    at = command.index("--servers") + 1
                    servers = [s for s in servers if s in command[at].split(",")]
                    del command[at - 1 : at + 1]
                command += ["--servers", ",".join(servers)]
            print(f"== {part}: {' '.join(command[1:])}", flush=True)
            started = time.monotonic()
            if subprocess.run(command).returncode:
                failed.append(part)
            print(f"== {part}: {time.monotonic() - started:.0f} s", flush=True)
    print(summarize(results, None if args.no_docs else DOCS))
    if failed:
        raise SystemExit(f"failed parts: {', '.join(failed)}")


if __name__ == "__main__":
    main()
