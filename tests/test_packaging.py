"""The source distribution: what a release would upload."""

import subprocess
import sys
import tarfile
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).parent.parent


class SdistTests(unittest.TestCase):
    def test_sdist_carries_the_license_and_no_half_test_suite(self):
        """The sdist holds LICENSE (MPL-2.0), the package and its JavaScript client, and no tests."""
        with tempfile.TemporaryDirectory() as out:
            subprocess.run(
                [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", out],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            (archive,) = Path(out).glob("snorky-*.tar.gz")
            with tarfile.open(archive) as tar:
                names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
                license_text = tar.extractfile(f"{tar.getnames()[0].split('/')[0]}/LICENSE").read().decode()
        self.assertIn("Mozilla Public License Version 2.0", license_text)
        self.assertIn("snorky/static/snorky.js", names)
        self.assertIn("snorky/services/pubsub.py", names)
        self.assertEqual([name for name in names if name.startswith("tests/")], [])
