"""Service and RPCService: the classes every Snorky service is built on.

This module is where Snorky 0.1 code imports them from; they live in
:mod:`snorky.services.service` (the base: messages in and out),
:mod:`snorky.services.rpc` (commands, requests and their answers) and
:mod:`snorky.services.presence` (grouping members by identity).
"""

from snorky.errors import InvalidMessage, RPCError
from snorky.services.presence import count_presence, identities_of
from snorky.services.rpc import Request, RPCMeta, RPCService, format_call, rpc_asynchronous, rpc_command
from snorky.services.service import Registry, Service

__all__ = [
    "Service",
    "Registry",
    "RPCService",
    "RPCMeta",
    "Request",
    "RPCError",
    "InvalidMessage",
    "rpc_command",
    "rpc_asynchronous",
    "format_call",
    "identities_of",
    "count_presence",
]
