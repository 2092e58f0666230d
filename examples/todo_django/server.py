"""Run the TodoMVC example in one process: ``python examples/todo_django/server.py --port 8000``.

It migrates the database, then runs ``manage.py runsnorky --with-django``: the
pages, the API and Snorky's WebSocket on one port (development only).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "todo_project.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    # The backend port on a free port: Django, in the same process, is told which.
    call_command("runsnorky", f"{args.address}:{args.port}", "--with-django", "--backend-port", "0")


if __name__ == "__main__":
    main()
