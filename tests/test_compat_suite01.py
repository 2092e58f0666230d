"""Snorky 0.1's own unit tests, from its sdist on PyPI, pass against this tree.

The sdist (``snorky==0.1.0a4``) is downloaded once per virtualenv and checked
against its SHA-256. Its ``snorky/tests`` package is unpacked into a temporary
folder under another name (``snorky01tests``, so that it does not shadow this
``snorky``), its one import of the old ``mock`` package is pointed at
``unittest.mock``, and pytest runs it in a subprocess against this tree.

Two of its 162 tests check behaviour that Snorky changed on purpose (see
``docs/project/migration.rst``): they must fail, and no other may.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tarfile
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).parent.parent
SDIST = "snorky-0.1.0a4.tar.gz"
SHA256 = "d4d41a7c81113fcf0455bd8d52618a722cd47bdda7aa3aefeeb92f399c7bb084"
CACHE = Path(sys.prefix) / "snorky-test-cache"

DELIBERATE = {
    # 0.1 ignored an RPC message without a command; Snorky answers invalid_message.
    "snorky01tests/test_rpc.py::TestRPC::test_bad_message",
    # Error replies carry a "code" beside 0.1's "message".
    "snorky01tests/test_rpc.py::TestRPC::test_internal_error",
}


def fetch_sdist() -> Path:
    """The 0.1 sdist, downloaded with pip on first use and checked."""
    path = CACHE / SDIST
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
            + ["--dest", str(CACHE), "snorky==0.1.0a4"],
            check=True,
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SHA256:
        path.unlink()
        raise AssertionError(f"{SDIST} has SHA-256 {digest}, expected {SHA256}")
    return path


def unpack_tests(sdist: Path, into: Path) -> Path:
    """Unpack 0.1's ``snorky/tests`` as the package ``snorky01tests`` in ``into``."""
    package = into / "snorky01tests"
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            parts = Path(member.name).parts
            if len(parts) < 4 or parts[1:3] != ("snorky", "tests") or not member.isfile():
                continue
            target = package.joinpath(*parts[3:])
            target.parent.mkdir(parents=True, exist_ok=True)
            text = archive.extractfile(member).read().decode("utf-8")
            text = text.replace("snorky.tests.", "snorky01tests.")
            text = re.sub(r"^from mock import", "from unittest.mock import", text, flags=re.M)
            target.write_text(text, encoding="utf-8")
    return package


class Snorky01SuiteTests(unittest.TestCase):
    def test_snorky_01_unit_tests_pass(self):
        """0.1's 162 unit tests pass against this tree, but for the two deliberate changes."""
        sdist = fetch_sdist()
        with tempfile.TemporaryDirectory() as folder:
            unpack_tests(sdist, Path(folder))
            result = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", "-W", "ignore"]
                + ["-o", "addopts=", "snorky01tests"],
                cwd=folder,
                capture_output=True,
                text=True,
                env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            )
        failed = set(re.findall(r"^FAILED (\S+)", result.stdout, re.M))
        counts = re.search(r"(\d+) passed", result.stdout)
        self.assertEqual(failed, DELIBERATE, result.stdout[-3000:] + result.stderr[-2000:])
        self.assertIsNotNone(counts, result.stdout[-3000:])
        self.assertEqual(int(counts.group(1)) + len(failed), 162, result.stdout[-500:])
