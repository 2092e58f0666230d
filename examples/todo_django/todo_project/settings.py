"""Settings of the TodoMVC example. Development defaults; every secret can come from the environment."""

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "todo-example-development-only-secret-key")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.staticfiles",
    "rest_framework",
    "snorky.backend.django",
    "todos",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "todo_project.urls"
WSGI_APPLICATION = "todo_project.wsgi.application"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
STATIC_URL = "/static/"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def database(url):
    """``sqlite:///path`` (the default: db.sqlite3 here) or ``postgres://user:password@host:port/name``."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": unquote(parts.path[1:]) or BASE_DIR / "db.sqlite3"}
    if parts.scheme in ("postgres", "postgresql"):  # needs: pip install "psycopg[binary]"
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path[1:]),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
        }
    raise ValueError(f"TODO_DATABASE_URL: unsupported scheme {parts.scheme!r}")


DATABASES = {"default": database(os.environ.get("TODO_DATABASE_URL", "sqlite:///"))}

# No login in this example: anyone who can reach it can edit every list.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": None,
}

# Snorky ---------------------------------------------------------------------------
SNORKY_API_KEY = os.environ.get("SNORKY_API_KEY", "todo-example-development-api-key")
SNORKY_BACKEND_URL = os.environ.get("SNORKY_BACKEND_URL")  # None: where runsnorky serves it (SNORKY)
SNORKY_DEALERS = ["todos.dealers.TodosByList"]
# The server that `manage.py runsnorky` runs. Alone (without --with-django) it serves
# the WebSocket on port 5001, for pages served by `manage.py runserver`.
SNORKY = {"frontend": {"port": 5001, "allowed_origins": ["127.0.0.1", "localhost"]}}
# Where pages open their WebSocket; empty: /ws on the page's own host and port.
SNORKY_WEBSOCKET_URL = os.environ.get("SNORKY_WEBSOCKET_URL", "")
