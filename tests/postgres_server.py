"""A real PostgreSQL for the tests, started by the test run itself on a free loopback port.

:func:`postgres_url` answers ``SNORKY_TEST_POSTGRES_URL`` when it is set, else the
URL of one server started for the whole run: ``initdb`` in a temporary folder,
``postgres`` on a free port of 127.0.0.1 with trust authentication, stopped at
exit. Debian's ``postgresql`` package keeps the programs in
``/usr/lib/postgresql/<version>/bin``, off ``PATH``; both places are searched.
PostgreSQL refuses to run as root, so under root the server runs as the
``postgres`` user (created by that package), else as ``nobody``.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.redis_server import free_port

SUPERUSER = "postgres"
"""The database superuser initdb creates (whatever the system user running it)."""


def find_bindir() -> Path:
    """The folder holding ``initdb`` and ``postgres``: from ``PATH``, else Debian's newest version.

    Raises:
        RuntimeError: PostgreSQL's server programs are not installed.
    """
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.parent.name
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    candidates += [Path(p).parent for p in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)[::-1]]
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    raise RuntimeError(
        "PostgreSQL is not installed (no initdb and postgres): apt-get install postgresql "
        "(the README's test command does), or set SNORKY_TEST_POSTGRES_URL"
    )


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged user to run PostgreSQL as when the tests run as root, else ``None``."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("the tests run as root and there is no 'postgres' or 'nobody' user to run PostgreSQL as")


class PostgresServer:
    """One throwaway PostgreSQL cluster: ``initdb`` once, then ``postgres`` on its own port."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="snorky-postgres-"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.user = _run_as()
        if self.user is not None:
            os.chown(self.folder, self.user.pw_uid, self.user.pw_gid)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgres://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def _popen(self, args: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        if self.user is not None:
            kwargs.update(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
        return subprocess.Popen(args, cwd=self.folder, env=env, **kwargs)  # type: ignore[call-overload]

    def initdb(self) -> None:
        with open(self.log, "ab") as log:
            process = self._popen(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            if process.wait(120) != 0:
                raise RuntimeError(f"initdb failed:\n{self.log.read_text(errors='replace')[-2000:]}")

    def start(self) -> PostgresServer:
        if not (self.data / "PG_VERSION").exists():
            self.initdb()
        with open(self.log, "ab") as log:
            self.process = self._popen(
                [
                    str(self.bindir / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-h",
                    "127.0.0.1",
                    "-k",
                    str(self.folder),
                    # A test database: durability is not the point, speed is.
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal stops the tests, which then stop it
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2) as connection:
                    connection.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                pass
            assert self.process is not None
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"postgres did not start on port {self.port}:\n{self.log.read_text(errors='replace')[-2000:]}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are ended, nothing is waited for)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


_shared: PostgresServer | None = None


def postgres_url() -> str:
    """``SNORKY_TEST_POSTGRES_URL`` if set, else the URL of one server for the whole run.

    The server starts on first use and stops when the run exits.
    """
    global _shared
    url = os.environ.get("SNORKY_TEST_POSTGRES_URL")
    if url:
        return url
    if _shared is None:
        server = PostgresServer()
        atexit.register(server.close)
        _shared = server.start()
    return _shared.url
