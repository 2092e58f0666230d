"""The cursors demo's services: the shared text itself, and a sign-in for any name.

``snorky serve`` imports this module because it sits next to the demo's
``snorky.toml``. The Cursors service shares where everybody's caret is;
:class:`SharedText` shares what they type (the whole text, last writer wins:
enough for a demo, not an editor).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from snorky.auth import sign_token
from snorky.errors import RPCError
from snorky.services.base import Request, RPCService, rpc_command

__all__ = ["SharedText", "DemoLogin"]

INITIAL_TEXT = (
    "Snorky shares cursors between everybody editing a document.\n\n"
    "Click anywhere in this text, select some of it, or type: "
    "the other windows see your caret move, with your name on it.\n"
)

MAX_LENGTH = 20_000

NAME = re.compile(r"^[\w .-]{1,24}$")

COLORS = ["#d9480f", "#2b8a3e", "#1971c2", "#9c36b5", "#e67700", "#0c8599", "#c2255c", "#5f3dc4"]


class SharedText(RPCService):
    """One text everybody edits (commands: ``load``, ``edit``; pushes ``text``).

    Args:
        name: the service's name.
        initial: the text a fresh server starts with.
    """

    def __init__(self, name: str = "text", initial: str = INITIAL_TEXT) -> None:
        super().__init__(name)
        self.text = initial
        self.version = 0
        """How many edits the text had since the server started."""
        self.readers: set[Any] = set()
        """Clients that loaded the text, and get every edit."""

    @rpc_command
    def load(self, req: Request) -> dict[str, Any]:
        """Reply ``{"text", "version"}``; the caller gets the next edits as ``text`` notifications."""
        self.readers.add(req.client)
        return {"text": self.text, "version": self.version}

    @rpc_command
    def edit(self, req: Request, text: Any) -> dict[str, Any]:
        """Replace the text; every other reader receives ``{"type": "text", "text", "version", "from"}``."""
        if not isinstance(text, str) or len(text) > MAX_LENGTH:
            raise RPCError("Invalid params", "invalid_params")
        self.readers.add(req.client)
        self.text = text
        self.version += 1
        push = {"type": "text", "text": text, "version": self.version, "from": req.client.identity}
        for client in list(self.readers):
            if client is not req.client:
                self.send_message_to(client, push)
        return {"version": self.version}

    def client_disconnected(self, client: Any) -> None:
        self.readers.discard(client)


class DemoLogin(RPCService):
    """Command ``signIn(name)``: a token for ``name`` (with a color), signed with the ``[auth]`` secret.

    A real application signs tokens in its own server, for users it has
    authenticated; this stand-in lets anybody be anybody.
    """

    def __init__(self, name: str = "login", ttl: float = 3600) -> None:
        super().__init__(name)
        self.ttl = ttl

    @rpc_command
    def signIn(self, req: Request, name: Any) -> str:
        """Sign a token whose identity is ``name``."""
        if not isinstance(name, str) or not NAME.match(name.strip()):
            raise RPCError("Invalid params", "invalid_params")
        name = name.strip()
        auth = self.registry.registered_services.get("auth") if self.registry else None
        if auth is None:
            raise RPCError("The demo needs an [auth] secret", "not_configured")
        color = COLORS[hashlib.sha256(name.encode()).digest()[0] % len(COLORS)]
        return sign_token(name, auth.verifier.key, ttl=self.ttl, info={"name": name, "color": color})
