"""Snorky 0.1 (PyPI ``snorky==0.1.0a4``, on Tornado 4.5) speaking the same protocol, for the benchmarks.

The last release of the original Snorky, as an application of its day would use
it: 0.1's own ``ServiceRegistry`` holding its ``PubSubService`` (service
``pubsub``) and an ``echo`` service written as a 0.1 ``RPCService`` (one command,
``echo``, that answers its ``message`` parameter), served by 0.1's
``SnorkyWebSocketHandler`` at ``/ws`` on Tornado 4.5's own IOLoop (not
asyncio). Nothing of 0.1 is patched.

It needs its own environment (Tornado 4.5 predates Python 3.10), so this
script must stay valid Python 3.7 (the oldest that ``envs/snorky01.python``
accepts). It imports ``snorky`` from that environment only: the entries of
``PYTHONPATH`` (where ``run.py`` puts the tree's Snorky for every server) are
taken off ``sys.path`` before the import.

Usage: python benchmarks/servers/snorky01_server.py --port 8003
       (with the interpreter of ``python benchmarks/envs.py snorky01``)

How 0.1's frames differ from the other servers' (which all send the same bytes):

- 0.1 encodes with ``json.dumps(msg)`` and its default separators, so a space
  follows every ``:`` and ``,``: a delivery is
  ``{"service": "pubsub", "message": {"type": "message", "channel": "bench", "message": "..."}}``,
  8 bytes more than the others' (188 bytes instead of 180 for a 100-character
  message), and a response is ``{"service": "pubsub", "message": {"type":
  "response", "callId": 1, "data": null}}``. Key order, ``ensure_ascii`` (non-ASCII
  escaped as ``\\uXXXX``) and the decoded values are the same.
  The same goes for echo replies: a check that compares them byte for byte
  (rather than decoded) fails on this server for the spaces alone.
- Errors carry no ``code``: ``{"type": "error", "callId": 2, "message": "Already
  subscribed"}`` (the others add ``"code": "already_subscribed"``); an unknown
  command answers ``"message": "Unknown command"`` with no ``code`` either, and
  wrong parameters ``"Invalid params"``.
- A request without ``callId`` is answered with no ``callId`` key at all (the
  others send ``"callId": null``); its errors still carry ``"callId": null``.
- Each delivery is encoded once per subscriber, not once per publish (0.1's
  ``Service.send_message_to`` calls ``json.dumps`` for every client), and
  every request's parameters go through ``inspect.signature(...).bind`` and
  0.1's ``make_hashable`` copy of the decoded JSON.
- The handler pings every connection every 90 s (0.1's default
  ``ping_pong_interval``, one IOLoop timeout per connection); a benchmark run is
  shorter than that.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys


def drop_pythonpath() -> None:
    """Take PYTHONPATH's entries off ``sys.path``, so that ``snorky`` is 0.1, not the tree's."""
    extra = {os.path.abspath(entry) for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry}
    sys.path[:] = [entry for entry in sys.path if not entry or os.path.abspath(entry) not in extra]


drop_pythonpath()

from tornado.httpserver import HTTPServer  # noqa: E402
from tornado.ioloop import IOLoop  # noqa: E402
from tornado.netutil import bind_sockets  # noqa: E402
from tornado.web import Application  # noqa: E402

from snorky import ServiceRegistry  # noqa: E402
from snorky.request_handlers.websocket import SnorkyWebSocketHandler  # noqa: E402
from snorky.services.base import Request, RPCService, rpc_command  # noqa: E402
from snorky.services.pubsub import PubSubService  # noqa: E402


class EchoService(RPCService):
    """One command, ``echo``: answers ``message``."""

    @rpc_command
    def echo(self, req: Request, message: object) -> object:
        return message


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serve(port: int, host: str) -> None:
    registry = ServiceRegistry([PubSubService("pubsub"), EchoService("echo")])
    app = Application([SnorkyWebSocketHandler.get_route(registry, "/ws")])
    # Tornado 4.5's Application.listen() takes no backlog: bind the sockets first.
    server = HTTPServer(app)
    server.add_sockets(bind_sockets(port, host, backlog=4096))
    IOLoop.current().start()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    raise_nofile()
    try:
        serve(args.port, args.host)
    except KeyboardInterrupt:
        pass
