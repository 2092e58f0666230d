"""Service and RPCService: the classes every Snorky service is built on.

A :class:`Service` receives decoded messages from clients and sends messages back.
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
import types
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import orjson

from snorky.errors import BrokerUnavailable, InvalidMessage, RPCError, code_for_message, error_body
from snorky.hashable import make_hashable
from snorky.protocol import Outbound

if TYPE_CHECKING:
    from snorky.brokers.base import Broker

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

logger = logging.getLogger(__name__)
compat_log = logging.getLogger("snorky")
"""Where the lines Snorky 0.1 logged go, in 0.1's words (apps and tests match them)."""

F = TypeVar("F", bound=Callable[..., Any])


class Registry(Protocol):
    """What a service sees of the :class:`~snorky.ServiceRegistry` it is registered in.

    (Services do not import the registry: it sits above them and imports them.)
    """

    broker: Broker
    registered_services: dict[str, Service]
    clients: set[Any]


class Service:
    """Base of every service: a name, and messages in and out.

    Subclass it and override :meth:`process_message_from` for a free-form
    protocol, or subclass :class:`RPCService` for commands.

    Args:
        name: the name clients address in the envelope's ``service`` field.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        """The name clients use to address this service."""
        self.registry: Registry | None = None
        """The registry this service was registered in, if any."""
        self._broker: Broker | None = None

    @property
    def broker(self) -> Broker:
        """The broker fan-outs go through: the registry's, or a private in-memory one.

        A service used before it is registered gets a private in-memory broker;
        registering it later moves its topic subscriptions to the registry's.
        """
        if self._broker is None:
            from snorky.brokers.memory import MemoryBroker

            self._broker = MemoryBroker()
            self._broker_is_private = True
        return self._broker

    @broker.setter
    def broker(self, broker: Broker) -> None:
        old = self._broker
        self._broker = broker
        if getattr(self, "_broker_is_private", False) and old is not None and old is not broker:
            for topic, handlers in list(getattr(old, "handlers", {}).items()):
                for handler in handlers:
                    broker.subscribe(topic, handler)
        self._broker_is_private = False

    def registered(self, registry: Registry) -> None:
        """Called once the service is registered (its :attr:`broker` is the registry's)."""

    def process_message_from(self, client: Any, msg: Any) -> None:
        """Handle one decoded (hashable) message from ``client``."""
        raise NotImplementedError

    def in_background(self, result: Any) -> None:
        """Let a broker result finish on its own (awaitables become tasks whose errors are logged)."""
        if not inspect.isawaitable(result):
            return

        async def run() -> None:
            try:
                await result
            except BrokerUnavailable:
                # Expected while Redis is unreachable: the broker logs the outage once, and
                # redoes what it owns (presence) when Redis is back.
                logger.debug("! background work of %r waits for the broker", self)
            except Exception:
                logger.exception("! background work of %r failed", self)

        task = asyncio.ensure_future(run())
        background = self.__dict__.setdefault("_background", set())
        background.add(task)
        task.add_done_callback(background.discard)

    def outbound(self, msg: Any, exclude: Any = None) -> Outbound:
        """Wrap ``msg`` in this service's envelope, ready to send to many clients.

        ``exclude`` names a local client that must not receive it (the sender).
        """
        return Outbound({"service": self.name, "message": msg}, exclude=exclude)

    def send_message_to(self, client: Any, msg: Any) -> None:
        """Send ``msg`` to one client inside this service's envelope."""
        self.deliver(client, Outbound({"service": self.name, "message": msg}))

    def deliver(self, client: Any, out: Outbound) -> None:
        """Send an already wrapped message to one client (``send(dict)`` clients too)."""
        try:
            deliver = client.deliver
        except AttributeError:
            client.send(out.value)
        else:
            deliver(out)

    def deliver_many(self, clients: Iterable[Any], out: Outbound) -> None:
        """Send one wrapped message to many local clients, encoded once for all.

        ``out.exclude``, if set, is skipped.
        """
        exclude = out.exclude
        frame = None
        for client in clients:
            if client is exclude:
                continue
            try:
                write = client.frame_writer
            except AttributeError:  # a client class of its own, written for 0.1
                write = None
            if write is not None:
                if frame is None:
                    frame = out.ws_frame
                write(frame)
                continue
            try:
                deliver = client.deliver
            except AttributeError:
                client.send(out.value)
            else:
                deliver(out)

    def client_connected(self, client: Any) -> None:
        """Called when a client connects to this service's registry (not for backend HTTP)."""

    def client_disconnected(self, client: Any) -> None:
        """Called when a client disconnects; release everything it held."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def count_presence(entries: dict[str, bytes]) -> list[dict[str, Any]]:
    """Broker presence entries (info ``{"identity", "info"}``) -> ``[{"identity", "info", "connections"}]``.

    One item per identity, with how many entries (connections) it has; anonymous
    entries are left out, as in :func:`identities_of`.
    """
    members: dict[Any, dict[str, Any]] = {}
    for _member, info in sorted(entries.items()):
        entry = orjson.loads(info)
        if entry["identity"] is None:
            continue
        counted = members.setdefault(make_hashable(entry["identity"]), {**entry, "connections": 0})
        counted["connections"] += 1
    return list(members.values())


def identities_of(clients: Any) -> list[dict[str, Any]]:
    """Group clients by identity: ``[{"identity", "info", "connections"}]`` (anonymous ones left out)."""
    grouped: dict[Any, dict[str, Any]] = {}
    for client in clients:
        identity = getattr(client, "identity", None)
        if identity is None:
            continue
        entry = grouped.setdefault(identity, {"identity": identity, "info": None, "connections": 0})
        entry["connections"] += 1
        if entry["info"] is None:
            entry["info"] = getattr(client, "info", None)
    return list(grouped.values())


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

    __slots__ = ("service", "client", "command", "call_id", "params", "resolved", "debug")

    def __init__(self, service: Service, client: Any, msg: Any) -> None:
        self.service = service
        """The service the call was made to."""
        self.client = client
        """The caller."""
        self.resolved = False
        """Whether :meth:`reply` or :meth:`error` was called."""
        self.debug = False
        """When true, exceptions in the command propagate (for tests), as in 0.1."""
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
        self.service.send_message_to(self.client, body)

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
    method.is_rpc_command = True  # type: ignore[attr-defined]
    return method


def rpc_asynchronous(method: F) -> F:
    """Mark a command that answers later through its :class:`Request`.

    Use it together with :func:`rpc_command`, in either order. Returning ``None``
    from such a command sends nothing yet.
    """
    method.is_asynchronous = True  # type: ignore[attr-defined]
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
