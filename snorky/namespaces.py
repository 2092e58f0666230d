"""Channel namespaces: who may subscribe, publish, see presence and history, per family of channels.

A channel ``"ns:rest"`` belongs to the namespace ``ns``; a channel without a
colon (or a channel that is not a string, as Snorky 0.1 allowed) belongs to the
default namespace. A configuration file sets them in ``[namespaces]`` (the
default namespace's options) and ``[namespaces.NAME]`` (one table a namespace)::

    [namespaces]
    allow_subscribe = "anyone"
    allow_publish = "nobody"

    [namespaces.chat]
    allow_subscribe = "authenticated"
    allow_publish = "subscribers"
    allow_presence = true
    join_leave = true
    history_size = 50

A channel in a namespace nobody configured is refused. Channels whose name ends
in ``#id1,id2`` (``"chat:dm#alice,bob"``) may be subscribed to only by those
identities, whatever the namespace says.

Who (``allow_subscribe``, ``allow_publish``):

``nobody``
    no client (the backend port and server code still can);
``anyone``
    every connection the namespace admits (anonymous ones too, unless
    ``allow_anonymous`` is false);
``authenticated``
    connections with an identity (a verified token);
``granted``
    connections whose token grants the channel (its ``channels`` claim, exact
    names and ``prefix*`` patterns), or that present a subscription token for it;
``subscribers`` (publish only)
    connections subscribed to the channel.

This module only decides; :class:`~snorky.services.pubsub.PubSubService` asks it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from snorky.errors import ConfigError
from snorky.options import fill_options

__all__ = [
    "Namespace",
    "Namespaces",
    "WHO_SUBSCRIBES",
    "WHO_PUBLISHES",
    "namespace_of",
    "channel_users",
    "grants_channel",
]

WHO_SUBSCRIBES = ("nobody", "anyone", "authenticated", "granted")
"""The values of ``allow_subscribe``."""
WHO_PUBLISHES = ("nobody", "anyone", "authenticated", "granted", "subscribers")
"""The values of ``allow_publish``."""


@dataclass
class Namespace:
    """The rules of one namespace. Every option has a safe default."""

    name: str = ""
    """The namespace's name (``""`` for the default namespace)."""
    allow_subscribe: str = "anyone"
    """Who may subscribe: nobody, anyone, authenticated or granted."""
    allow_publish: str = "nobody"
    """Who may publish from a client: nobody, anyone, authenticated, granted or subscribers."""
    allow_anonymous: bool = True
    """Whether connections without an identity may use the namespace at all."""
    allow_presence: bool = False
    """Whether those who may subscribe may ask who is subscribed (presence, presence_stats)."""
    allow_history: bool = False
    """Whether those who may subscribe may read the channel's recent messages (history)."""
    join_leave: bool = False
    """Push a join and a leave to subscribers when a connection with an identity subscribes
    or goes (one for each connection; anonymous ones are not announced)."""
    history_size: int = 0
    """Messages kept per channel for history and recovery (0: no history)."""
    history_ttl: float = 300.0
    """Seconds a channel's history lives after its last publish."""
    force_recovery: bool = False
    """Every subscribe answers the stream position, also to clients that do not ask for it
    (position or recover), so that any client can recover what it missed after a
    reconnection (needs history_size; the JavaScript client always asks)."""
    max_presence_members: int = 10_000
    """Connections with an identity a channel's presence may hold, on every node; one more
    is refused (0: no limit)."""
    max_message_size: int = 65_536
    """Largest message a client may publish, in bytes of JSON (0: only max_message_size of
    the transport)."""

    def __post_init__(self) -> None:
        for option, allowed in (("allow_subscribe", WHO_SUBSCRIBES), ("allow_publish", WHO_PUBLISHES)):
            value = getattr(self, option)
            if value not in allowed:
                raise ValueError(f"{option} must be one of {', '.join(allowed)}, not {value!r}")
        if self.force_recovery and not self.history_size:
            raise ValueError("force_recovery needs history_size")


OPTIONS = [f.name for f in fields(Namespace) if f.name != "name"]
"""The option names a namespace table accepts."""


def namespace_of(channel: Any) -> str:
    """The namespace name of ``channel``: what comes before its first colon, else ``""``."""
    if isinstance(channel, str):
        head, colon, _rest = channel.partition(":")
        if colon:
            return head
    return ""


def channel_users(channel: Any) -> frozenset[str] | None:
    """The identities a user-limited channel (``"name#alice,bob"``) admits, else ``None``."""
    if isinstance(channel, str) and "#" in channel:
        users = channel.rsplit("#", 1)[1]
        return frozenset(user for user in users.split(",") if user)
    return None


def grants_channel(grants: Iterable[str], channel: Any) -> bool:
    """Whether any of ``grants`` (exact names or ``prefix*`` patterns) covers ``channel``."""
    if not isinstance(channel, str):
        return False
    for grant in grants:
        if grant.endswith("*") and channel.startswith(grant[:-1]):
            return True
        if grant == channel:
            return True
    return False


@dataclass
class Namespaces:
    """The default namespace and the named ones, and the decisions that follow from them.

    Args:
        default: the rules of channels without a namespace.
        named: name -> rules.
    """

    default: Namespace = field(default_factory=Namespace)
    named: dict[str, Namespace] = field(default_factory=dict)

    @classmethod
    def from_config(cls, table: dict[str, Any], where: str = "[namespaces]") -> Namespaces:
        """Read a ``[namespaces]`` table: its plain keys for the default, its sub-tables by name.

        Raises:
            ConfigError: an unknown key (with the closest valid one), a wrong type or value.
        """
        top = {key: value for key, value in table.items() if not isinstance(value, dict)}
        default = Namespace()
        fill_options(default, top, where, skip={"name"})
        _check(default, where)
        named = {}
        for name, options in table.items():
            if isinstance(options, dict):
                namespace = Namespace(name=name)
                section = f"{where[:-1]}.{name}]"
                fill_options(namespace, options, section, skip={"name"})
                _check(namespace, section)
                named[name] = namespace
        return cls(default, named)

    def of(self, channel: Any) -> Namespace | None:
        """The namespace of ``channel``, or ``None`` when no such namespace is configured."""
        name = namespace_of(channel)
        return self.default if not name else self.named.get(name)

    def refuse_subscribe(
        self, client: Any, channel: Any, subscription_token: Callable[[], bool] | None = None
    ) -> str | None:
        """Why ``client`` may not subscribe to ``channel``, or ``None`` if it may.

        ``subscription_token``, when the client sent one, says whether it is valid
        for this client and channel (checked only when it matters).
        """
        namespace = self.of(channel)
        if namespace is None:
            return f"no namespace {namespace_of(channel)!r}"
        identity = getattr(client, "identity", None)
        users = channel_users(channel)
        if users is not None and identity not in users:
            return "the channel is limited to other users"
        if subscription_token is not None:
            if subscription_token():
                return None
            return "invalid subscription token"
        return _refuse(namespace, namespace.allow_subscribe, client, channel, "subscribe")

    def refuse_publish(self, client: Any, channel: Any, subscribed: bool) -> str | None:
        """Why ``client`` may not publish to ``channel``, or ``None`` if it may."""
        namespace = self.of(channel)
        if namespace is None:
            return f"no namespace {namespace_of(channel)!r}"
        if namespace.allow_publish == "subscribers":
            return None if subscribed else "only subscribers may publish"
        return _refuse(namespace, namespace.allow_publish, client, channel, "publish")


def _refuse(namespace: Namespace, who: str, client: Any, channel: Any, what: str) -> str | None:
    identity = getattr(client, "identity", None)
    if identity is None and not namespace.allow_anonymous:
        return "anonymous connections are not allowed here"
    if who == "anyone":
        return None
    if who == "nobody":
        return f"clients may not {what} here"
    if identity is None:
        return "needs an identity"
    if who == "authenticated":
        return None
    claims = getattr(client, "claims", None) or {}
    if grants_channel(claims.get("channels") or (), channel):
        return None
    return "the token does not grant this channel"


def _check(namespace: Namespace, where: str) -> None:
    try:
        namespace.__post_init__()
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None
