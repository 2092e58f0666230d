"""Client: one connected peer as services see it, and how messages reach it.

Every transport implements :class:`Client`: it delivers a shared encoded message
(:meth:`Client.deliver`), closes with a code (:meth:`Client.close`), and carries
the peer's :attr:`~Client.identity` and :attr:`~Client.info`. Services and the
registry send only through :func:`deliver` and :func:`fan_out`, which also serve
objects written for Snorky 0.1 that have nothing but ``send(message)`` (the one
adapter: such an object is given the message as Python data).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from snorky.protocol import Outbound

__all__ = ["Client", "deliver", "fan_out", "transport_of"]


class Client:
    """One peer connected to a :class:`~snorky.ServiceRegistry`.

    Transports subclass it. A subclass written for Snorky 0.1 needs only
    :meth:`send`; transports that write pre-encoded messages override
    :meth:`deliver` and take the form they need from the
    :class:`~snorky.protocol.Outbound`, which encodes each form once for all
    recipients. A connection that writes WebSocket frames as they are also sets
    :attr:`writer`, so that a fan-out hands it the shared frame with no call in
    between.
    """

    transport: str = "custom"
    """The transport's name (``"websocket"``, ``"sockjs"``, ``"http"``), for metrics and logs."""
    writer: Callable[[bytes], None] | None = None
    """Optional: a callable taking the message as a complete WebSocket text frame
    (:attr:`Outbound.ws_frame <snorky.protocol.Outbound.ws_frame>`)."""
    identity: Any = None
    """Who the peer proved to be (the token's ``sub``; ``None`` for an anonymous peer).

    Class-level defaults keep client classes written for Snorky 0.1 working: their
    ``__init__`` does not call this one."""
    info: Any = None
    """Public data about the peer from its token's ``info`` claim (shown in presence)."""
    claims: dict[str, Any] | None = None
    """All the claims of the peer's verified token, or ``None``."""
    close_code: int | None = None
    """The close code the connection ended with, once it ended (for metrics and logs)."""

    def __init__(self) -> None:
        # An instance attribute, not only the class's default: fan_out reads it once per
        # recipient, and CPython reads an instance's own attribute much faster.
        self.writer = None
        self.identity = None
        self.info = None
        self.claims = None

    @property
    def remote_address(self) -> str | None:
        """The peer's address, usually an IP address."""
        return None

    def send(self, msg: Any) -> None:
        """Send one JSON value (normally ``{"service", "message"}``) to the peer."""
        raise NotImplementedError

    def deliver(self, out: Outbound) -> None:
        """Send an :class:`~snorky.protocol.Outbound` message; the default calls :meth:`send`."""
        self.send(out.value)

    def close(self, code: int, reason: str | None = None) -> None:
        """Close the connection with ``code`` (see :data:`snorky.errors.CLOSE_TABLE`).

        ``reason`` defaults to the table's text for the code. A client that cannot be
        closed (one backend HTTP request, say) does nothing.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.remote_address} identity={self.identity!r}>"


def deliver(client: Any, out: Outbound) -> None:
    """Send ``out`` to one client; an object that is not a :class:`Client` (written for
    Snorky 0.1) gets ``send(out.value)``."""
    if isinstance(client, Client):
        client.deliver(out)
    else:
        client.send(out.value)


def fan_out(clients: Iterable[Any], out: Outbound) -> None:
    """Send ``out`` to every one of ``clients`` but ``out.exclude``, encoding it once per form.

    This is the hot path of every publish: a client with a :attr:`Client.writer` is
    handed the shared frame directly (a WebSocket connection writes the frame built
    once for all), and the others go through :func:`deliver`.
    """
    exclude = out.exclude
    frame = None
    for client in clients:
        if client is exclude:
            continue
        try:
            write = client.writer
        except AttributeError:  # an object written for Snorky 0.1
            write = None
        if write is None:
            deliver(client, out)
            continue
        if frame is None:
            frame = out.ws_frame
        write(frame)


def transport_of(client: Any) -> str:
    """The transport name of ``client`` (``"custom"`` for a 0.1-style object that is not a Client)."""
    return client.transport if isinstance(client, Client) else "custom"
