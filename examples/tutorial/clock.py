"""Tutorial, step 3: the server of step 1, publishing its clock every second from Python.

Save it beside ``server.py``, run ``python clock.py --port 8000`` and open
http://127.0.0.1:8000/: the clock line updates by itself.
"""

import argparse
import asyncio
import datetime

from server import make_app

from snorky.services.pubsub import PubSubService


async def main(port: int) -> None:
    pubsub = PubSubService("pubsub")
    make_app(pubsub).listen(port, "127.0.0.1")
    print(f"Open http://127.0.0.1:{port}/", flush=True)
    while True:
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S")
        pubsub.do_publish("clock", now)  # reaches every page subscribed to "clock"
        await asyncio.sleep(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    asyncio.run(main(parser.parse_args().port))
