"""The Django settings Snorky reads, always when used and never at import time.

============================  ==========================================================
setting                       meaning (default)
============================  ==========================================================
``SNORKY_BACKEND_URL``        the backend port's URL (built from ``SNORKY["backend"]``:
                              ``http://127.0.0.1:5002/backend``)
``SNORKY_API_KEY``            the backend API key (the ``SNORKY_API_KEY`` environment
                              variable)
``SNORKY_DATASYNC_SERVICE``   the DataSync backend service's name (``"datasync"``)
``SNORKY_PUBSUB_SERVICE``     the PubSub backend service's name (``"pubsub"``)
``SNORKY_PROGRESS_SERVICE``   the Progress backend service's name (``"progress"``)
``SNORKY_JSON_ENCODER``       encoder class or its dotted path (Django's
                              ``DjangoJSONEncoder``: dates, decimals, UUIDs)
``SNORKY_TIMEOUT``            seconds to wait for the backend port (``5``)
``SNORKY_BATCH_SIZE``         most deltas in one ``publishDeltas`` call (``500``)
``SNORKY_QUEUE_SIZE``         most committed deltas waiting for the background sender;
                              ``0`` publishes in the committing thread (``10000``)
``SNORKY``                    ``runsnorky``'s server configuration, the shape of
                              ``snorky.toml`` as a dict (``{}``)
``SNORKY_DEALERS``            dealer classes (dotted paths) of the default DataSync
                              service of ``runsnorky`` (``[]``)
``SNORKY_TOKEN_SECRET``       the HS256 secret client tokens are signed with (the
                              ``SNORKY_TOKEN_SECRET`` environment variable)
============================  ==========================================================

.. versionadded:: 0.2
   Every setting but ``SNORKY_BACKEND_URL``, ``SNORKY_API_KEY``,
   ``SNORKY_DATASYNC_SERVICE`` and ``SNORKY_JSON_ENCODER`` (Snorky 0.1's).
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from snorky.config import Config
from snorky.errors import ConfigError

__all__ = ["DEFAULTS", "get", "api_key", "backend_url", "json_encoder", "snorky_config"]

DEFAULTS: dict[str, Any] = {
    "SNORKY_BACKEND_URL": None,
    "SNORKY_API_KEY": None,
    "SNORKY_DATASYNC_SERVICE": "datasync",
    "SNORKY_PUBSUB_SERVICE": "pubsub",
    "SNORKY_PROGRESS_SERVICE": "progress",
    "SNORKY_JSON_ENCODER": "django.core.serializers.json.DjangoJSONEncoder",
    "SNORKY_TIMEOUT": 5.0,
    "SNORKY_BATCH_SIZE": 500,
    "SNORKY_QUEUE_SIZE": 10_000,
    "SNORKY": {},
    "SNORKY_DEALERS": [],
    "SNORKY_TOKEN_SECRET": None,
}
"""Each setting's value when the project does not set it."""


def get(name: str) -> Any:
    """The value of the setting ``name``, or its default from :data:`DEFAULTS`."""
    return getattr(settings, name, DEFAULTS[name])


def api_key() -> str | None:
    """``SNORKY_API_KEY`` from the settings, else from the environment."""
    return get("SNORKY_API_KEY") or os.environ.get("SNORKY_API_KEY") or None


def _server_section(name: str) -> dict[str, Any]:
    section = (get("SNORKY") or {}).get(name, {})
    if not isinstance(section, dict):
        raise ImproperlyConfigured(f'SNORKY["{name}"] must be a dict')
    return section


def backend_url() -> str:
    """``SNORKY_BACKEND_URL``, else the URL ``runsnorky`` serves the backend port at."""
    url = get("SNORKY_BACKEND_URL")
    if url:
        return str(url)
    defaults = Config().backend
    backend = _server_section("backend")
    address = backend.get("address", defaults.address)
    if address in ("", "0.0.0.0", "::"):
        address = "127.0.0.1"
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{backend.get('port', defaults.port)}{backend.get('path', defaults.path)}"


def json_encoder() -> type[json.JSONEncoder]:
    """The ``SNORKY_JSON_ENCODER`` class (a class, or the dotted path of one)."""
    encoder = get("SNORKY_JSON_ENCODER")
    if isinstance(encoder, str):
        encoder = import_string(encoder)
    if not (isinstance(encoder, type) and issubclass(encoder, json.JSONEncoder)):
        raise ImproperlyConfigured("SNORKY_JSON_ENCODER must be a json.JSONEncoder subclass or its dotted path")
    return encoder


def _default_services() -> tuple[dict[str, Any], dict[str, Any]]:
    services = {
        "pubsub": {"class": "pubsub"},
        "datasync": {"class": "datasync", "dealers": list(get("SNORKY_DEALERS"))},
        "progress": {"class": "progress"},
    }
    backend_services = {
        get("SNORKY_PUBSUB_SERVICE"): {"class": "pubsub_backend", "frontend": "pubsub"},
        get("SNORKY_DATASYNC_SERVICE"): {"class": "datasync_backend", "frontend": "datasync"},
        get("SNORKY_PROGRESS_SERVICE"): {"class": "progress_backend", "frontend": "progress"},
    }
    return services, backend_services


def snorky_config() -> Config:
    """The server configuration ``runsnorky`` runs, built from the settings.

    ``SNORKY`` is read as :meth:`Config.from_dict <snorky.config.Config.from_dict>`
    reads a TOML file. Without a ``"services"`` key the server gets PubSub,
    DataSync (with ``SNORKY_DEALERS``) and Progress, each with its backend
    service under the name the settings above give it. An explicit
    ``SNORKY_BACKEND_URL`` gives the backend port and path unless ``SNORKY``
    sets them; ``SNORKY_API_KEY`` and ``SNORKY_TOKEN_SECRET`` fill in the key
    and the token secret.

    Raises:
        ImproperlyConfigured: ``SNORKY`` is not a valid configuration.
    """
    data = copy.deepcopy(get("SNORKY") or {})
    if not isinstance(data, dict):
        raise ImproperlyConfigured("SNORKY must be a dict shaped like snorky.toml")
    if "services" not in data:
        services, backend_services = _default_services()
        data["services"] = services
        data.setdefault("backend_services", backend_services)
    explicit_url = get("SNORKY_BACKEND_URL")
    if explicit_url:
        backend = data.setdefault("backend", {})
        parts = urlsplit(str(explicit_url))
        if parts.port is not None:
            backend.setdefault("port", parts.port)
        if parts.path:
            backend.setdefault("path", parts.path)
    try:
        config = Config.from_dict(data, source="settings.SNORKY")
    except (ConfigError, TypeError, ValueError) as error:
        raise ImproperlyConfigured(str(error)) from None
    key = api_key()
    if key:
        config.backend.api_key = key
    secret = get("SNORKY_TOKEN_SECRET") or os.environ.get("SNORKY_TOKEN_SECRET")
    if secret:
        config.auth.secret = secret
    return config
