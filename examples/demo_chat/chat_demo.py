"""The chat demo's sign-in: a service that signs a token for the name a visitor types.

``snorky serve`` imports this module because it sits next to the demo's
``snorky.toml``. A real application signs tokens in its own server, for users it
has authenticated (see ``docs/topics/authentication.rst``); this stand-in lets
anybody be anybody, which is what a demo wants.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from snorky.auth import sign_token
from snorky.errors import RPCError
from snorky.services.base import Request, RPCService, rpc_command

__all__ = ["DemoLogin", "color_for"]

NAME = re.compile(r"^[\w .-]{1,24}$")
"""Names visitors may take: letters, digits, spaces, dots, dashes; 24 at most."""

COLORS = ["#d9480f", "#2b8a3e", "#1971c2", "#9c36b5", "#e67700", "#0c8599", "#c2255c", "#5f3dc4"]


def color_for(name: str) -> str:
    """A color of the palette, always the same for one name."""
    return COLORS[hashlib.sha256(name.encode()).digest()[0] % len(COLORS)]


class DemoLogin(RPCService):
    """Command ``signIn(name)``: a token for ``name``, signed with the ``[auth]`` secret.

    Args:
        name: the service's name.
        ttl: how long tokens last, in seconds.
    """

    def __init__(self, name: str = "login", ttl: float = 3600) -> None:
        super().__init__(name)
        self.ttl = ttl

    @rpc_command
    def signIn(self, req: Request, name: Any) -> str:
        """Sign a token whose identity is ``name``, with the name and a color as its public info."""
        if not isinstance(name, str) or not NAME.match(name.strip()):
            raise RPCError("Invalid params", "invalid_params")
        name = name.strip()
        auth = self.registry.registered_services.get("auth") if self.registry else None
        if auth is None:
            raise RPCError("The demo needs an [auth] secret", "not_configured")
        info = {"name": name, "color": color_for(name)}
        return sign_token(name, auth.verifier.key, ttl=self.ttl, info=info)
