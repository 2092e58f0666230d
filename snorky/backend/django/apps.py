"""The Django app ``snorky.backend.django``: the ``runsnorky`` command and the system checks.

Add ``"snorky.backend.django"`` to ``INSTALLED_APPS`` for them; ``@subscribable``
and the helpers work without it. The app's label is ``snorky``.
"""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig, apps
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

__all__ = ["SnorkyConfig", "check_settings"]


class SnorkyConfig(AppConfig):
    """The app: registers :func:`check_settings` with Django's system checks."""

    name = "snorky.backend.django"
    label = "snorky"
    verbose_name = "Snorky"
    default = True

    def ready(self) -> None:
        checks.register(check_settings, "snorky")


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Warn about settings that would stop the project from reaching Snorky.

    ``snorky.W001``: no API key; ``snorky.E002``: a bad ``SNORKY_JSON_ENCODER``;
    ``snorky.E003``: ``SNORKY`` is not a valid server configuration.
    """
    from snorky.backend.django import conf

    if app_configs is not None and apps.get_app_config("snorky") not in app_configs:
        return []
    messages: list[checks.CheckMessage] = []
    if not conf.api_key():
        messages.append(
            checks.Warning(
                "SNORKY_API_KEY is not set: nothing can be published to Snorky.",
                hint="Set it in the settings or in the SNORKY_API_KEY environment variable.",
                id="snorky.W001",
            )
        )
    try:
        conf.json_encoder()
    except (ImportError, ImproperlyConfigured) as error:
        messages.append(checks.Error(f"SNORKY_JSON_ENCODER: {error}", id="snorky.E002"))
    try:
        conf.snorky_config()
    except ImproperlyConfigured as error:
        messages.append(checks.Error(f"SNORKY: {error}", id="snorky.E003"))
    return messages
