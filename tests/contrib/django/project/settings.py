"""Settings of the test project, applied with ``settings.configure()`` by the harness."""

import os
import tempfile
from urllib.parse import urlsplit

SECRET_KEY = "snorky-tests-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
ROOT_URLCONF = "tests.contrib.django.project.urls"
STATIC_URL = "/static/"
MEDIA_URL = "/media/"
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "rest_framework",
    "snorky.backend.django",
    "tests.contrib.django.project.todos",
]
_DB = os.path.join(tempfile.gettempdir(), f"snorky-django-{os.getpid()}")
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SNORKY_TEST_DJANGO_DB", ":memory:"),
        # A file, not memory: the live server's threads and the tests share it.
        "TEST": {"NAME": f"{_DB}-test.sqlite3"},
    }
}


def postgres_database(url):
    """The ``DATABASES`` entry of a PostgreSQL URL (``postgres://user@host:port/name``)."""
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path[1:],
        "USER": parts.username or "",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "TEST": {"NAME": f"test_snorky_{os.getpid()}"},
    }


if os.environ.get("SNORKY_TEST_POSTGRES_URL"):  # a subprocess given the tests' PostgreSQL
    DATABASES["default"] = postgres_database(os.environ["SNORKY_TEST_POSTGRES_URL"])

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
}
LOGGING_CONFIG = None

SNORKY_API_KEY = "django-tests-api-key"
SNORKY_TIMEOUT = 5
SNORKY_DEALERS = [
    "tests.contrib.django.dealers.TodosByFilter",
    "tests.contrib.django.dealers.Notes",
    "tests.contrib.django.dealers.Tags",
]
