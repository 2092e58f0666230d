"""``python manage.py runsnorky``: Snorky, configured from the Django settings.

``--with-django`` also serves the project itself on the same port, through
Tornado's ``WSGIContainer`` on a thread pool, as django-tornado-websockets'
``runtornado`` did: one process and one origin for pages, API and WebSocket,
for development. In production run the project under its usual WSGI or ASGI
server and Snorky on its own.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from snorky.backend.django.conf import snorky_config
from snorky.config import Config
from snorky.errors import ConfigError
from snorky.server import SnorkyServer
from snorky.version import __version__

logger = logging.getLogger("snorky.backend.django.runsnorky")

ADDRPORT = re.compile(r"^(?:(?P<address>\[[0-9a-fA-F:.]+\]|[^:\[\]]+):)?(?P<port>\d+)$")


class DjangoSnorkyServer(SnorkyServer):
    """A :class:`~snorky.server.SnorkyServer` whose public port also serves a WSGI application.

    Snorky's routes (WebSocket, SockJS, the JavaScript client) come first;
    every other request goes to the application, run on ``executor`` so that
    it never blocks the event loop (Django publishing to this very process's
    backend port from the loop's thread would wait for itself).
    """

    def __init__(self, config: Config, wsgi_application: Any, executor: ThreadPoolExecutor) -> None:
        super().__init__(config)
        self.wsgi_application = wsgi_application
        self.executor = executor

    def frontend_app(self) -> Any:
        from tornado.web import FallbackHandler
        from tornado.wsgi import WSGIContainer

        app = super().frontend_app()
        container = WSGIContainer(self.wsgi_application, executor=self.executor)
        app.wildcard_router.add_rules([(r".*", FallbackHandler, {"fallback": container})])
        return app


class Command(BaseCommand):
    help = (
        "Run Snorky configured from the settings (SNORKY, SNORKY_API_KEY...). With --with-django, "
        "serve this project on the same port too (development only)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("addrport", nargs="?", help="[address:]port of the public port (default: SNORKY)")
        parser.add_argument("--backend-port", type=int, help="port of the backend port (0 picks a free one)")
        parser.add_argument(
            "--with-django", action="store_true", help="also serve this project on the public port (development)"
        )
        parser.add_argument("--threads", type=int, default=8, help="threads running Django with --with-django")
        parser.add_argument("--insecure", action="store_true", help="serve static files even with DEBUG off")
        parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            config = snorky_config()
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None
        if options["addrport"]:
            match = ADDRPORT.match(options["addrport"])
            if match is None:
                raise CommandError(f"{options['addrport']!r} is not a port or address:port")
            if match["address"]:
                config.frontend.address = match["address"].strip("[]")
            config.frontend.port = int(match["port"])
        if options["backend_port"] is not None:
            config.backend.port = options["backend_port"]
        if options["log_level"]:
            config.log_level = options["log_level"]
        snorky_logger = logging.getLogger("snorky")
        if not snorky_logger.hasHandlers():  # unless the project's LOGGING handles it
            logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        snorky_logger.setLevel(config.log_level.upper())
        asyncio.run(self.serve(config, options))

    def make_server(self, config: Config, options: dict[str, Any]) -> SnorkyServer:
        """The server to run: Snorky alone, or with the project's WSGI application."""
        if not options["with_django"]:
            return SnorkyServer(config)
        import inspect

        from django.core.wsgi import get_wsgi_application
        from tornado.wsgi import WSGIContainer

        if "executor" not in inspect.signature(WSGIContainer).parameters:
            raise CommandError("--with-django needs Tornado 6.3 or later (WSGIContainer with an executor)")
        application: Any = get_wsgi_application()
        if "django.contrib.staticfiles" in settings.INSTALLED_APPS and (settings.DEBUG or options["insecure"]):
            from django.contrib.staticfiles.handlers import StaticFilesHandler

            application = StaticFilesHandler(application)
        config.frontend.status_page = False  # the project owns "/"
        executor = ThreadPoolExecutor(options["threads"], thread_name_prefix="django")
        return DjangoSnorkyServer(config, application, executor)

    async def serve(self, config: Config, options: dict[str, Any]) -> None:
        """Start the server, print where it listens, and run until SIGINT or SIGTERM."""
        try:
            server = self.make_server(config, options)
        except ConfigError as error:
            raise CommandError(f"SNORKY: {error}") from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await server.start()
        except OSError as error:
            raise CommandError(f"cannot listen: {error}") from None
        if isinstance(server, DjangoSnorkyServer) and server.backend_port:
            # Django, in this process, publishes to the port actually bound.
            be = config.backend
            address = "127.0.0.1" if be.address in ("", "0.0.0.0", "::") else be.address
            host = f"[{address}]" if ":" in address else address
            settings.SNORKY_BACKEND_URL = f"http://{host}:{server.backend_port}{be.path}"
        self.stdout.write(
            f"Snorky {__version__} serving on http://{config.frontend.address}:{server.frontend_port}"
            + (f", backend on port {server.backend_port}" if server.backend_port else "")
            + (", with Django (development only)" if isinstance(server, DjangoSnorkyServer) else "")
        )
        self.stdout.flush()
        await stop.wait()
        logger.info("= shutting down")
        await server.stop()
        if isinstance(server, DjangoSnorkyServer):
            server.executor.shutdown(wait=False, cancel_futures=True)
