"""Client: one connected peer as services see it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from snorky.protocol import Outbound

__all__ = ["Client"]


class Client:
    """One peer connected to a :class:`~snorky.ServiceRegistry`.

    Transports subclass it; services only read :attr:`identity` and
    :attr:`remote_address` and send through :meth:`Service.send_message_to
    <snorky.services.base.Service.send_message_to>`. A subclass (or any object, as
    in Snorky 0.1) needs only ``send(message)``; transports that can write
    pre-encoded bytes also override :meth:`deliver`.
    """

    frame_writer: Any = None
    """A callable taking one complete WebSocket frame, for clients that have one (a
    direct WebSocket connection sets it); fan-outs then hand it the shared frame with no
    call in between."""

    identity: Any = None
    """Who the peer proved to be (the token's ``sub``; ``None`` for an anonymous peer).

    Class-level defaults keep client classes written for Snorky 0.1 working: their
    ``__init__`` does not call this one."""
    info: Any = None
    """Public data about the peer from its token's ``info`` claim (shown in presence)."""
    claims: dict[str, Any] | None = None
    """All the claims of the peer's verified token, or ``None``."""

    def __init__(self) -> None:
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
