"""RPCService: services whose messages are calls to their commands.

An :class:`RPCService` maps ``{"command", "params", "callId"}`` messages to its
methods decorated with :func:`rpc_command`; a command may be

- a plain method: its return value is the reply, sent before ``process_request``
  returns (as in Snorky 0.1);
- decorated with :func:`rpc_asynchronous`: it keeps the :class:`Request` and
  answers later with :meth:`Request.reply` or :meth:`Request.error`;
- an ``async def`` coroutine: awaited, its return value is the reply.

``raise RPCError("text")`` answers an error with that text; a call that does not
fit the method's signature answers ``Invalid params``; any other exception is
logged with its traceback and answered ``Internal error``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
import types
from collections.abc import Callable
from typing import Any, TypeVar

from snorky.errors import InvalidMessage, RPCError, code_for_message, error_body
from snorky.services.service import Service

__all__ = [
    "RPCService",
    "RPCMeta",
    "Request",
    "RPCError",
    "InvalidMessage",
    "rpc_command",
    "rpc_asynchronous",
    "format_call",
]

logger = logging.getLogger(__name__)
compat_log = logging.getLogger("snorky")
"""Where the lines Snorky 0.1 logged go, in 0.1's words (apps and tests match them)."""

F = TypeVar("F", bound=Callable[..., Any])
_perf_counter = time.perf_counter


def _ellipsis(text: str, max_length: int = 100) -> str:
    return text if len(text) <= max_length else text[: max_length - 3] + "..."


def format_call(command: Any, params: Any) -> str:
    """A short one-line form of a call, for logs: ``sum({"a": 1, "b": 2})``, at most 100 characters.

    The parameters are shown as Snorky 0.1 showed them: JSON with spaces after
    separators, keys sorted, text as it is (not escaped to ASCII).
    """
    try:
        shown = json.dumps(params, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        shown = repr(params)
    return _ellipsis(f"{command}({shown})")


class Request:
    """One RPC call in progress; resolve it once with :meth:`reply` or :meth:`error`."""

    __slots__ = ("service", "client", "command", "call_id", "params", "resolved", "debug", "started")

    def __init__(self, service: Service, client: Any, msg: Any) -> None:
        self.service = service
        """The service the call was made to."""
        self.client = client
        """The caller."""
        self.resolved = False
        """Whether :meth:`reply` or :meth:`error` was called."""
        self.debug = False
        """When true, exceptions in the command propagate (for tests), as in 0.1."""
        self.started = _perf_counter() if service.command_timings is not None else 0.0
        """When the call arrived (``time.perf_counter()``), for its latency in the metrics
        (0.0 when the service is not timed)."""
        try:
            self.call_id = msg.get("callId")
            """The caller's id for this call, echoed in the answer as ``callId``."""
            self.command = msg["command"]
            """The command's name."""
            self.params = msg.get("params", {})
            """The parameters, a dict of name -> value."""
        except (KeyError, TypeError, AttributeError):
            raise InvalidMessage from None
        if not self.command or not isinstance(self.command, str):
            raise InvalidMessage

    def reply(self, data: Any) -> None:
        """Answer the call with ``data``.

        Raises:
            RuntimeError: if the call was answered already.
        """
        if self.resolved:
            raise RuntimeError("This request has already been resolved")
        self.resolved = True
        if self.call_id is None:
            body = {"type": "response", "data": data}
        else:
            body = {"type": "response", "callId": self.call_id, "data": data}
        service = self.service
        service.send_message_to(self.client, body)
        timings = service.command_timings
        if timings is not None and self.started:  # not timed when it arrived: nothing to measure
            timings.since(self.command, self.started)

    def error(self, msg: str, code: str | None = None, detail: str | None = None) -> None:
        """Answer the call with an error.

        Args:
            msg: the text (Snorky 0.1's wording for its own errors).
            code: the stable code (default: the code of a known text, else ``rpc_error``).
            detail: more about this case, sent in the error's ``detail`` key.

        Raises:
            RuntimeError: if the call was answered already.
        """
        if self.resolved:
            raise RuntimeError("This request has already been resolved")
        self.resolved = True
        code = code if code is not None else code_for_message(msg)
        self.service.send_message_to(self.client, error_body(code, self.call_id, msg, detail))
        metrics = self.service.metrics
        if metrics is not None:
            if self.started:
                metrics.command_done(self.service.name, self.command, self.started, code)
            metrics.error(self.service.name, code)

    def format_call(self) -> str:
        """A short one-line form of the call, for logs."""
        return format_call(self.command, self.params)


def _answer_error(request: Request, text: str, code: str, detail: str | None = None) -> None:
    """Answer an error with its text, code and detail.

    Request objects written for Snorky 0.1 (test doubles, mostly) implement
    ``error(msg)`` alone: they are given the text, which is what 0.1 gave them.
    """
    if isinstance(request, Request):
        request.error(text, code, detail)
    else:
        request.error(text)


def rpc_command(method: F) -> F:
    """Expose a method of an :class:`RPCService` as a command of the same name."""
    method.is_rpc_command = True  # type: ignore[attr-defined]  # a mark on the function
    return method


def rpc_asynchronous(method: F) -> F:
    """Mark a command that answers later through its :class:`Request`.

    Use it together with :func:`rpc_command`, in either order. Returning ``None``
    from such a command sends nothing yet.
    """
    method.is_asynchronous = True  # type: ignore[attr-defined]  # a mark on the function
    return method


class RPCMeta(type):
    """Collects each class's :func:`rpc_command` methods into ``rpc_commands``."""

    def __new__(mcs, name: str, bases: tuple[type, ...], attrs: dict[str, Any]) -> RPCMeta:
        cls = super().__new__(mcs, name, bases, attrs)
        commands = set(getattr(cls, "rpc_commands", ()))
        commands.update(key for key, value in attrs.items() if getattr(value, "is_rpc_command", False))
        cls.rpc_commands = frozenset(commands)  # type: ignore[attr-defined]
        cls._rpc_signatures = {}  # type: ignore[attr-defined]
        return cls


def _binds_natively(function: Any) -> bool:
    """Whether a call's TypeError at the call site means "arguments did not fit"."""
    return isinstance(function, types.FunctionType) and not hasattr(function, "__wrapped__")


class RPCService(Service, metaclass=RPCMeta):
    """A service whose messages are calls to its :func:`rpc_command` methods."""

    rpc_commands: frozenset[str] = frozenset()
    """Names of the commands clients may call."""
    _rpc_signatures: dict[str, inspect.Signature | None]

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._tasks: set[asyncio.Task[Any]] = set()

    def process_message_from(self, client: Any, msg: Any) -> None:
        """Turn ``msg`` into a :class:`Request` and run it; answer malformed calls."""
        try:
            request = Request(self, client, msg)
        except InvalidMessage:
            compat_log.warning('Invalid format in RPC service "%s". Message: %.200r', self.name, msg)
            call_id = msg.get("callId") if isinstance(msg, dict) else None
            self.send_message_to(client, error_body("invalid_message", call_id))
            return
        self.process_request(request)

    def _signature(self, command: str, method: Any) -> inspect.Signature | None:
        """The signature to check calls against, or ``None`` when Python checks natively."""
        table = type(self)._rpc_signatures
        try:
            return table[command]
        except KeyError:
            function = getattr(type(self), command, None)
            sig = None if _binds_natively(function) else inspect.signature(method)
            table[command] = sig
            return sig

    def process_request(self, request: Request) -> None:
        """Check the command and its parameters, run it, and answer (see module doc)."""
        command = request.command
        if command not in self.rpc_commands:
            logger.info("! unknown command %.100r to %r from %r", command, self.name, request.client)
            _answer_error(request, "Unknown command", "unknown_command")
            return
        method = getattr(self, command)
        params = request.params
        if not isinstance(params, dict):
            self._invalid_params(request)
            return
        sig = self._signature(command, method)
        if sig is not None:
            try:
                sig.bind(request, **params)
            except TypeError:
                self._invalid_params(request)
                return
        try:
            result = method(request, **params)
        except RPCError as error:
            self._refused(request, error)
            return
        except TypeError as error:
            if sig is None and error.__traceback__ is not None and error.__traceback__.tb_next is None:
                self._invalid_params(request)
            else:
                self._failed(request)
            return
        except Exception:
            self._failed(request)
            return
        if inspect.iscoroutine(result):
            task = asyncio.ensure_future(self._run_coroutine(request, result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif result is not None:
            request.reply(result)
        elif not request.resolved and not getattr(method, "is_asynchronous", False):
            request.reply(None)

    async def _run_coroutine(self, request: Request, coroutine: Any) -> None:
        try:
            result = await coroutine
        except RPCError as error:
            if not request.resolved:
                self._refused(request, error)
            return
        except Exception:
            if not request.resolved:
                self._failed(request)
            return
        if not request.resolved:
            request.reply(result)

    def _invalid_params(self, request: Request) -> None:
        compat_log.warning('Invalid params in RPC service "%s": %s', self.name, request.format_call())
        _answer_error(request, "Invalid params", "invalid_params")

    def _refused(self, request: Request, error: RPCError) -> None:
        text = error.message if isinstance(error.message, str) else "Exception"
        compat_log.info('%s in RPC service "%s", call: %s', text, self.name, request.format_call())
        if not request.resolved:
            _answer_error(request, text, error.code, error.detail)

    def _failed(self, request: Request) -> None:
        if request.debug:
            raise
        compat_log.exception('Unhandled exception in RPC service "%s": %s', self.name, request.format_call())
        if not request.resolved:
            _answer_error(request, "Internal error", "internal_error")
