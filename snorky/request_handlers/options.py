"""The transports' options, at their 0.2 import path: they live in :mod:`snorky.options`
now, below the configuration that sets them and the transports that read them."""

from snorky.options import TransportOptions, origin_allowed

__all__ = ["TransportOptions", "origin_allowed"]
