"""Django on PostgreSQL publishing to a real ``snorky serve``: order, delivery times, and a frozen Snorky.

    python benchmarks/django_ordering.py --threads 8 --rows 4 --transactions 400 --processes 2 --rounds 3

Needs what the tests need (``pip install -e '.[test]'`` and PostgreSQL's server
programs): it starts a PostgreSQL of its own (``tests/postgres_server.py``) and
``snorky serve`` (``tests/contrib/django/harness.py``), and uses the tests'
Django project. Each round:

1. **Same rows.** ``--threads`` threads in this process, and as many in each of
   ``--processes - 1`` other processes, run ``--transactions`` transactions in
   all, each ``select_for_update()`` of one of ``--rows`` rows, then a save that
   adds one to its counter (the title): a transaction that waits on the lock
   commits after the one holding it, so every row's values are committed in
   order. One WebSocket subscriber receives the deltas. Reported: deltas
   committed and received, out-of-order deltas (a value lower than one received
   before for the row), rows left different from the table, the time from
   commit to delivery (median, p95) and the time a request spends after its
   commit (median, p95).
2. **Frozen Snorky.** With Snorky stopped (SIGSTOP), ``--frozen`` transactions
   on one row, one after the other, and Snorky left stopped for ``--frozen-for``
   seconds (long enough for their publishes to time out); reported: the time
   each request spends after its commit, whether every commit returned before
   Snorky resumed, what the subscriber receives once it resumes (SIGCONT), the
   row in the table, and the counters.

``--costs`` measures instead what each way of ordering a row's deltas adds to
a transaction that updates one row (psycopg, one connection, no Django): a read
of PostgreSQL's WAL insert position (what Snorky does), an upsert into a
version table, an insert into an outbox table.

Works on any version of ``snorky.backend.django`` (it uses ``flush()`` and the
counters only where they exist), to compare before and after a change.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def percentile(values, fraction):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def ms(values):
    return f"median {statistics.median(values) * 1000:.2f} ms, p95 {percentile(values, 0.95) * 1000:.2f} ms"


# Workers: in this process (threads) and in other processes (--worker) -----------------


def record_time(times):
    times.append(time.monotonic())


def run_transactions(pks, count, seed):
    """``count`` transactions, each adding one to the counter of a row of ``pks``; their records."""
    import random

    from django.db import connection, transaction

    from tests.contrib.django.project.todos.models import Todo

    rng = random.Random(seed)
    records = []
    for _ in range(count):
        pk = rng.choice(pks)
        committed = []
        with transaction.atomic():
            todo = Todo.objects.select_for_update().get(pk=pk)
            transaction.on_commit(partial(record_time, committed))  # runs first after COMMIT
            todo.title = str(int(todo.title) + 1)
            todo.save()
        returned = time.monotonic()
        records.append({"pk": pk, "value": int(todo.title), "committed": committed[0], "returned": returned})
    connection.close()
    return records


def run_threads(pks, transactions, threads, seed):
    results = [None] * threads
    share = [transactions // threads + (1 if i < transactions % threads else 0) for i in range(threads)]

    def work(index):
        results[index] = run_transactions(pks, share[index], seed * 1000 + index)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return [record for result in results for record in result]


def flush():
    import snorky.backend.django as snorky_django

    flushing = getattr(snorky_django, "flush", None)
    if flushing is not None:
        flushing(timeout=60)


def worker_main(args):
    from tests.contrib.django.harness import setup_django

    setup_django()
    from django.conf import settings

    settings.SNORKY_BACKEND_URL = args.backend_url
    pks = [int(pk) for pk in args.pks.split(",")]
    sys.stdin.readline()  # start together with the parent
    records = run_threads(pks, args.transactions, args.threads, args.seed)
    flush()
    json.dump(records, sys.stdout)


# The subscriber ------------------------------------------------------------------------


class Subscriber:
    """A WebSocket page that acquires a subscription and records each delta with its arrival time."""

    def __init__(self, url, token):
        from tornado.websocket import websocket_connect

        self.deltas = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def connect():
            ws = await websocket_connect(url)
            message = {
                "service": "datasync",
                "message": {"command": "acquireSubscription", "params": {"token": token}, "callId": 1},
            }
            await ws.write_message(json.dumps(message))
            while True:
                raw = await ws.read_message()
                answer = json.loads(raw)["message"]
                if answer.get("callId") == 1:
                    break
            self.ws = ws
            self.loop.create_task(self.read())

        asyncio.run_coroutine_threadsafe(connect(), self.loop).result(20)

    async def read(self):
        while True:
            raw = await self.ws.read_message()
            if raw is None:
                return
            message = json.loads(raw)["message"]
            if message.get("type") == "delta":
                self.deltas.append((time.monotonic(), message["delta"]))

    def wait_idle(self, quiet=1.0, limit=60.0):
        """Wait until no delta arrived for ``quiet`` seconds."""
        deadline = time.monotonic() + limit
        count = -1
        while time.monotonic() < deadline:
            if len(self.deltas) == count:
                return
            count = len(self.deltas)
            time.sleep(quiet)

    def close(self):
        self.loop.call_soon_threadsafe(self.ws.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


# One round --------------------------------------------------------------------------------


def same_rows_round(args, env, inbox, pks):
    from django.db import connection

    from snorky.backend.django import authorize_subscription, stats
    from tests.contrib.django.project.todos.models import Todo

    Todo.objects.filter(pk__in=pks).update(title="0")
    stats.reset()
    token = authorize_subscription([{"dealer": "todos", "query": ["==", "list", inbox.pk]}])
    page = Subscriber(env["snorky"].websocket_url, token)
    share = args.transactions // args.processes
    children = []
    database = connection.settings_dict
    child_env = dict(
        os.environ,
        SNORKY_TEST_POSTGRES_URL=f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    for index in range(args.processes - 1):
        children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    "--backend-url",
                    env["snorky"].backend_url,
                    "--pks",
                    ",".join(map(str, pks)),
                    "--transactions",
                    str(share),
                    "--threads",
                    str(args.threads),
                    "--seed",
                    str(index + 1),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=child_env,
                text=True,
            )
        )
    time.sleep(1.0)  # let the children set Django up
    for child in children:
        child.stdin.write("go\n")
        child.stdin.flush()
    records = run_threads(pks, args.transactions - share * len(children), args.threads, 0)
    flush()
    for child in children:
        out, _ = child.communicate(timeout=300)
        records += json.loads(out)
    page.wait_idle()
    page.close()

    committed = {(r["pk"], r["value"]): r for r in records}
    latest, out_of_order, latencies = {}, 0, []
    for arrived, delta in page.deltas:
        row = delta.get("newData", delta.get("data"))
        key, value = row["id"], int(row["title"])
        if value < latest.get(key, -1):
            out_of_order += 1
        latest[key] = max(value, latest.get(key, -1))
        record = committed.get((key, value))
        if record is not None:
            latencies.append(arrived - record["committed"])
    shown = last_received(page.deltas)
    table = {todo.pk: int(todo.title) for todo in Todo.objects.filter(pk__in=pks)}
    wrong_rows = sum(1 for pk in pks if shown.get(pk) != table[pk])
    after_commit = [r["returned"] - r["committed"] for r in records]
    return {
        "committed": len(records),
        "received": len(page.deltas),
        "out_of_order": out_of_order,
        "wrong_rows": wrong_rows,
        "latencies": latencies,
        "after_commit": after_commit,
        "stats": stats.as_dict(),
    }


def last_received(deltas):
    """Each row's value as a page applying the deltas in arrival order shows it."""
    shown = {}
    for _, delta in deltas:
        row = delta.get("newData", delta.get("data"))
        shown[row["id"]] = int(row["title"])
    return shown


def frozen_round(args, env, inbox, pks):
    from snorky.backend.django import authorize_subscription, stats
    from tests.contrib.django.project.todos.models import Todo

    stats.reset()
    token = authorize_subscription([{"dealer": "todos", "query": ["==", "list", inbox.pk]}])
    page = Subscriber(env["snorky"].websocket_url, token)
    process = env["snorky"].process
    process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        records = run_transactions(pks[:1], args.frozen, 0)
        all_returned_while_frozen = process.poll() is None
        # Long enough for the publishes of those commits to time out (as in a real outage).
        time.sleep(max(0.0, started + args.frozen_for - time.monotonic()))
        flush()
    finally:
        process.send_signal(signal.SIGCONT)
    resumed = time.monotonic()
    flush()
    page.wait_idle(quiet=2.0)
    page.close()
    table = {todo.pk: int(todo.title) for todo in Todo.objects.filter(pk__in=pks[:1])}
    return {
        "after_commit": [r["returned"] - r["committed"] for r in records],
        "returned_before_resume": all_returned_while_frozen and all(r["returned"] < resumed for r in records),
        "received": [int(d.get("newData", d.get("data"))["title"]) for _, d in page.deltas],
        "table": table,
        "stats": stats.as_dict(),
    }


def version_costs(count):
    """Median time of a one-row update transaction alone and with each way of ordering its delta."""
    import psycopg

    from tests.postgres_server import postgres_url

    variants = {
        "update alone": [],
        "+ read the WAL insert position": ["SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn"],
        "+ upsert a version row": [
            "INSERT INTO versions (model, pk, version) VALUES ('Todo', 1, 1) "
            "ON CONFLICT (model, pk) DO UPDATE SET version = versions.version + 1 RETURNING version"
        ],
        "+ insert into an outbox": ['INSERT INTO outbox (delta) VALUES (\'{"type": "update"}\')'],
    }
    with psycopg.connect(postgres_url(), autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS rows, versions, outbox")
        connection.execute("CREATE TABLE rows (id int PRIMARY KEY, n int)")
        connection.execute("INSERT INTO rows VALUES (1, 0)")
        connection.execute("CREATE TABLE versions (model text, pk bigint, version bigint, PRIMARY KEY (model, pk))")
        connection.execute("CREATE TABLE outbox (id bigserial PRIMARY KEY, delta jsonb)")
        connection.autocommit = False
        times = {name: [] for name in variants}
        for _ in range(count):  # the variants take turns, so that a busy moment hits them all
            for name, extra in variants.items():
                start = time.perf_counter()
                connection.execute("SELECT n FROM rows WHERE id = 1 FOR UPDATE")
                connection.execute("UPDATE rows SET n = n + 1 WHERE id = 1")
                for statement in extra:
                    connection.execute(statement)
                connection.commit()
                times[name].append(time.perf_counter() - start)
        for name, values in times.items():
            print(
                f"{name}: median {statistics.median(values) * 1e6:.0f} us, p95 {percentile(values, 0.95) * 1e6:.0f} us"
            )
        connection.autocommit = True
        connection.execute("DROP TABLE rows, versions, outbox")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8, help="threads per process")
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--transactions", type=int, default=400, help="in all processes")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--frozen", type=int, default=3, help="transactions while Snorky is frozen (0: none)")
    parser.add_argument("--timeout", type=float, default=5.0, help="SNORKY_TIMEOUT")
    parser.add_argument(
        "--frozen-for",
        type=float,
        help="seconds Snorky stays frozen (default: 2 x --timeout + 1, so publishes time out)",
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--costs", type=int, default=0, metavar="N", help="measure version costs over N transactions")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend-url", help=argparse.SUPPRESS)
    parser.add_argument("--pks", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker_main(args)
    if args.frozen_for is None:
        args.frozen_for = 2 * args.timeout + 1
    if args.costs:
        return version_costs(args.costs)

    from tests.contrib.django.harness import SnorkyProcess, setup_django

    setup_django()
    from django.conf import settings
    from django.test.runner import DiscoverRunner
    from django.test.utils import setup_test_environment

    import snorky

    print(f"snorky {snorky.__version__} from {Path(snorky.__file__).parent}")
    setup_test_environment()
    runner = DiscoverRunner(verbosity=0, interactive=False)
    old_config = runner.setup_databases()
    env = {"snorky": SnorkyProcess()}
    settings.SNORKY_BACKEND_URL = env["snorky"].backend_url
    settings.SNORKY_TIMEOUT = args.timeout
    try:
        from tests.contrib.django.project.todos.models import Todo, TodoList

        inbox = TodoList.objects.create(name="Inbox")
        pks = [Todo.objects.create(list=inbox, title="0").pk for _ in range(args.rows)]
        flush()
        totals = {
            "committed": 0,
            "received": 0,
            "out_of_order": 0,
            "wrong_rows": 0,
            "latencies": [],
            "after_commit": [],
        }
        for number in range(1, args.rounds + 1):
            result = same_rows_round(args, env, inbox, pks)
            for name in ("committed", "received", "out_of_order", "wrong_rows"):
                totals[name] += result[name]
            totals["latencies"] += result["latencies"]
            totals["after_commit"] += result["after_commit"]
            print(
                f"round {number}: {result['committed']} transactions, {result['received']} deltas received, "
                f"{result['out_of_order']} out of order, {result['wrong_rows']} of {args.rows} rows wrong at the end; "
                f"commit to delivery {ms(result['latencies'])}; after commit {ms(result['after_commit'])}; "
                f"stats {result['stats']}"
            )
        print(
            f"same rows, {args.rounds} round(s), {args.processes} process(es) x {args.threads} threads: "
            f"{totals['committed']} transactions, {totals['received']} deltas received, "
            f"{totals['out_of_order']} out of order, {totals['wrong_rows']} rows wrong at the end; "
            f"commit to delivery {ms(totals['latencies'])}; "
            f"time in the request after commit {ms(totals['after_commit'])}"
        )
        if args.frozen:
            result = frozen_round(args, env, inbox, pks)
            print(
                f"frozen Snorky (SNORKY_TIMEOUT={args.timeout}): after-commit times "
                f"{[round(t * 1000, 1) for t in result['after_commit']]} ms; "
                f"every commit returned before Snorky resumed: {result['returned_before_resume']}; "
                f"received after resuming {result['received']}; table {result['table']}; stats {result['stats']}"
            )
    finally:
        env["snorky"].stop()
        runner.teardown_databases(old_config)


if __name__ == "__main__":
    main()
