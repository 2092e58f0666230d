"""The documentation builds with warnings as errors."""

import re
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

DOCS = Path(__file__).parent.parent / "docs"


class DocsTests(unittest.TestCase):
    def test_sphinx_build_has_no_warnings(self):
        """sphinx-build -W succeeds: every page, cross-reference and literalinclude resolves."""
        with tempfile.TemporaryDirectory() as out:
            result = subprocess.run(
                [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), out],
                capture_output=True,
                text=True,
                timeout=300,
            )
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertTrue((Path(out) / "topics" / "protocol.html").exists())


class ProtocolPageTests(unittest.TestCase):
    def test_every_error_and_close_code_is_documented(self):
        """The protocol page lists every error code and close code Snorky sends."""
        from snorky.errors import CLOSE_CODES, ERROR_CODES

        page = (DOCS / "topics" / "protocol.rst").read_text(encoding="utf-8")
        for code in ERROR_CODES:
            self.assertIn(f"``{code}``", page)
        for close_code in CLOSE_CODES:
            self.assertRegex(page, rf"(?m)^{close_code}\s")


class InstallLineTests(unittest.TestCase):
    def test_install_lines_work_from_a_clone(self):
        """No install line in the README, docs or examples fetches the unrelated 0.1 from PyPI."""
        root = DOCS.parent
        texts = [root / "README.md", *DOCS.rglob("*.rst"), *(root / "examples").rglob("README.md")]
        pypi_name = re.compile(r"^\s*(?:\S*/)?pip install\s+(?:-\S+\s+)*[\"']?snorky\b")  # a command line
        offenders = [
            f"{path.relative_to(root)}: {line.strip()}"
            for path in texts
            for line in path.read_text(encoding="utf-8").splitlines()
            if pypi_name.search(line)
        ]
        self.assertEqual(offenders, [])


class ReadmeCommandTests(unittest.TestCase):
    def test_ci_runs_exactly_the_readme_test_command(self):
        """.ci/run's command is the README's test command, character for character."""
        root = DOCS.parent
        readme = (root / "README.md").read_text(encoding="utf-8")
        section = readme.split("## Test it", 1)[1]
        command = re.search(r"```sh\n(.+?)\n```", section, re.S)[1].strip()
        ci = [line for line in (root / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
        self.assertEqual(ci[-1], command)


class MetricsPageTests(unittest.TestCase):
    def test_every_metric_is_on_the_page(self):
        """docs/topics/metrics.rst names every series snorky/metrics.py registers, as Prometheus shows it."""
        from snorky.metrics import _BROKER_COUNTERS, _BROKER_GAUGES, Metrics

        broker = {**dict.fromkeys(_BROKER_COUNTERS, 1), **dict.fromkeys(_BROKER_GAUGES, 1)}
        metrics = Metrics("node", lambda: {"broker": broker})
        page = (DOCS / "topics" / "metrics.rst").read_text(encoding="utf-8")
        documented = set(re.findall(r"(?m)^``(snorky_\w+)``$", page))
        names = set()
        for family in metrics.registry.collect():
            names.add(family.name + "_total" if family.type == "counter" else family.name)
        self.assertGreater(len(names), 20)
        self.assertEqual(names - documented, set(), "metrics missing from docs/topics/metrics.rst")
        self.assertEqual(documented - names, set(), "docs/topics/metrics.rst names metrics that do not exist")

    def test_scrape_config_targets_the_compose_nodes(self):
        """deploy/prometheus.yml scrapes each node of the compose file on the port deploy/snorky.toml serves."""
        from snorky.config import Config

        deploy = DOCS.parent / "deploy"
        port = Config.load(deploy / "snorky.toml", env={}).backend.port
        targets = re.findall(r"(?m)^\s+- ([\w-]+):(\d+)$", (deploy / "prometheus.yml").read_text(encoding="utf-8"))
        nodes = re.findall(r"(?m)^  (snorky-\d+):", (deploy / "docker-compose.yml").read_text(encoding="utf-8"))
        self.assertEqual(targets, [(node, str(port)) for node in nodes])
        self.assertEqual(len(nodes), 2)
