"""A second process of the Django project for the commit-order tests: transactions on given rows.

    python -m tests.contrib.django.commit_worker BACKEND_URL PKS TRANSACTIONS THREADS

with ``SNORKY_TEST_POSTGRES_URL`` naming the test database. It prints
``ready``, waits for a line on stdin (so that both processes start together), runs the transactions
(:func:`add_one`), flushes the background sender and prints the values it
committed as JSON: ``[[pk, value], ...]``.
"""

import json
import sys
import threading

from tests.contrib.django.harness import setup_django


def add_one(pk):
    """One transaction: lock the todo ``pk``, add one to its title (a counter), save; return ``(pk, value)``.

    A transaction that waits on the lock commits after the one holding it, so
    each row's values are committed in increasing order.
    """
    from django.db import transaction

    from tests.contrib.django.project.todos.models import Todo

    with transaction.atomic():
        todo = Todo.objects.select_for_update().get(pk=pk)
        todo.title = str(int(todo.title) + 1)
        todo.save()
    return pk, int(todo.title)


def main():
    backend_url, pks, transactions, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    setup_django()
    from django.conf import settings
    from django.db import connections

    from snorky.backend.django import flush

    settings.SNORKY_BACKEND_URL = backend_url
    pks = [int(pk) for pk in pks.split(",")]
    committed = []

    def work(number):
        for n in range(transactions // threads):
            committed.append(add_one(pks[(number + n) % len(pks)]))
        connections.close_all()

    print("ready", flush=True)
    sys.stdin.readline()
    workers = [threading.Thread(target=work, args=(number,)) for number in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if not flush(timeout=60):
        raise SystemExit("the background sender did not flush")
    json.dump(committed, sys.stdout)


if __name__ == "__main__":
    main()
