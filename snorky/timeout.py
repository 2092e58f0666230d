"""Timers for services, kept at Snorky 0.1's names.

Services that need time take a *timeout factory* (anything with
``call_later(delay, callback, *args, **kwargs)`` returning a handle with
``cancel()``), so tests can drive time by hand. :data:`TornadoTimeoutFactory`
is the real one, on the running Tornado IOLoop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["TornadoTimeoutHandle", "TornadoTimeoutFactory"]


class TornadoTimeoutHandle:
    """A pending callback on the IOLoop; :meth:`cancel` it at most once."""

    def __init__(self, io_loop: Any, tornado_handle: Any) -> None:
        self.io_loop = io_loop
        self.tornado_handle = tornado_handle
        self.cancelled = False

    def cancel(self) -> None:
        """Cancel the callback.

        Raises:
            RuntimeError: if it was cancelled already.
        """
        if self.cancelled:
            raise RuntimeError("Already cancelled")
        self.io_loop.remove_timeout(self.tornado_handle)
        self.cancelled = True


class _TornadoTimeoutFactory:
    """Creates :class:`TornadoTimeoutHandle` objects on the current IOLoop."""

    def __init__(self, io_loop: Any = None) -> None:
        self._io_loop = io_loop

    @property
    def io_loop(self) -> Any:
        """The IOLoop used: the one given, else the current one when first asked."""
        if self._io_loop is not None:
            return self._io_loop
        from tornado.ioloop import IOLoop

        return IOLoop.current()

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> TornadoTimeoutHandle:
        """Run ``callback(*args, **kwargs)`` after ``delay`` seconds."""
        loop = self.io_loop
        handle = loop.call_later(delay, callback, *args, **kwargs)
        return TornadoTimeoutHandle(loop, handle)


TornadoTimeoutFactory = _TornadoTimeoutFactory()
"""The shared factory on the current IOLoop (the name Snorky 0.1 exported)."""
