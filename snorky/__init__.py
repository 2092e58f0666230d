"""Snorky: a realtime server framework for Python, on Tornado.

A :class:`ServiceRegistry` maps names to services; transports in
:mod:`snorky.request_handlers` connect browsers and application servers to it.
"""

from snorky.client import Client
from snorky.service_registry import ServiceRegistry
from snorky.version import __version__

version = __version__
"""The version string (Snorky 0.1 exported it under this name)."""

__all__ = ["Client", "ServiceRegistry", "__version__", "version"]
