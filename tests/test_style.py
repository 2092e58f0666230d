"""The code follows the project's lint and format rules (ruff.toml), and type-checks."""

import subprocess
import sys
import unittest
from pathlib import Path

ROOT = Path(__file__).parent.parent
PATHS = ["snorky", "tests", "examples", "docs"]


class StyleTests(unittest.TestCase):
    def ruff(self, *args):
        return subprocess.run([sys.executable, "-m", "ruff", *args, *PATHS], cwd=ROOT, capture_output=True, text=True)

    def test_ruff_check(self):
        """ruff check finds nothing (pyflakes, pycodestyle, isort, pyupgrade, bugbear)."""
        result = self.ruff("check", "--output-format", "concise")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_ruff_format(self):
        """The code is formatted by ruff format."""
        result = self.ruff("format", "--check")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_mypy_strict(self):
        """mypy --strict finds nothing in snorky/ (settings for untyped libraries: setup.cfg)."""
        result = subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "snorky"], cwd=ROOT, capture_output=True, text=True
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
