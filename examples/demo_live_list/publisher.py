"""Change the live list from outside the pages, through Snorky's backend port.

This is what an application server does: change its database, then publish
the change as a DataSync delta with :mod:`snorky.backend`. Every open page
shows it at once.

    SNORKY_API_KEY=demo-key python examples/demo_live_list/publisher.py --add "Buy milk"
    SNORKY_API_KEY=demo-key python examples/demo_live_list/publisher.py --demo 10

``--url`` is the backend URL (default ``http://127.0.0.1:5002/backend``);
``DEMO_LIST_DB`` must name the same database as the server's, if set.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from live_list_demo import ItemStore  # noqa: E402

from snorky.backend import SnorkyBackend, SnorkyHTTPTransport  # noqa: E402

GROCERIES = ["Apples", "Bread", "Cheese", "Coffee", "Eggs", "Lemons", "Milk", "Olive oil", "Rice", "Tomatoes"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:5002/backend", help="the backend URL")
    parser.add_argument("--api-key", default=os.environ.get("SNORKY_API_KEY"), help="default: SNORKY_API_KEY")
    parser.add_argument("--add", metavar="TEXT", action="append", default=[], help="add an item (repeatable)")
    parser.add_argument("--done", metavar="ID", type=int, action="append", default=[], help="tick an item")
    parser.add_argument("--remove", metavar="ID", type=int, action="append", default=[], help="remove an item")
    parser.add_argument("--demo", metavar="N", type=int, default=0, help="make N random changes, one a second")
    args = parser.parse_args(argv)
    if not args.api_key:
        parser.error("no API key: set SNORKY_API_KEY or use --api-key")

    store = ItemStore()
    snorky = SnorkyBackend(SnorkyHTTPTransport(args.url, args.api_key))

    def publish(delta: dict | None) -> None:
        if delta is not None:
            snorky.call("datasync", "publishDeltas", deltas=[delta])
            print(f"published {delta['type']} of item {(delta.get('data') or delta.get('newData'))['id']}")

    for text in args.add:
        publish(store.add(text))
    for item_id in args.done:
        publish(store.set_done(item_id, True))
    for item_id in args.remove:
        publish(store.remove(item_id))
    for _ in range(args.demo):
        items = store.all()
        choice = random.random()
        if not items or choice < 0.5:
            publish(store.add(random.choice(GROCERIES)))
        elif choice < 0.8:
            item = random.choice(items)
            publish(store.set_done(item["id"], not item["done"]))
        else:
            publish(store.remove(random.choice(items)["id"]))
        time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
