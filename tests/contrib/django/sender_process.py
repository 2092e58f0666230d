"""A process that uses Django's background sender and then exits or forks, for tests/contrib/django/test_sender.py.

    python -m tests.contrib.django.sender_process exit BACKEND_URL
    python -m tests.contrib.django.sender_process fork BACKEND_URL SILENT_URL

``exit`` hands one delta to the sender and exits at once: the process must
publish it on its way out. ``fork`` leaves a call hanging on a server that
never answers (``SILENT_URL``) with one more batch queued behind it, then forks:
the child must start with an empty queue of its own and publish to
``BACKEND_URL``. Both print the counters they end with, as JSON.
"""

import json
import os
import sys
import time

import django
from django.conf import settings

DELTA = {"type": "insert", "model": "Todo", "data": {"id": 1, "list": 1, "title": "from a process", "done": False}}


def main():
    mode, url = sys.argv[1], sys.argv[2]
    settings.configure(SNORKY_API_KEY="django-tests-api-key", SNORKY_BACKEND_URL=url, SNORKY_TIMEOUT=60)
    django.setup()
    from django.test import override_settings

    from snorky.backend.django import flush, sender, stats

    if mode == "exit":
        sender.submit([DELTA])
        print(json.dumps(stats.as_dict()), flush=True)
        return  # no flush(): the exit does it
    with override_settings(SNORKY_BACKEND_URL=sys.argv[3]):
        sender.submit([DELTA])  # its call hangs
        while stats.queued_deltas:  # until the thread took it
            time.sleep(0.001)
        sender.submit([DELTA])  # queued behind it
    child = os.fork()
    if child == 0:
        queued_at_fork = stats.queued_deltas
        sender.submit([DELTA])
        done = flush(timeout=30)
        print(json.dumps({"queued_at_fork": queued_at_fork, "flushed": done, **stats.as_dict()}), flush=True)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    os._exit(os.waitstatus_to_exitcode(status))  # the parent's call still hangs: no exit flush


if __name__ == "__main__":
    main()
