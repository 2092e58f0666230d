"""The @subscribable tests again with Django on SQLite, in a subprocess (Django has one configuration per process).

The other tests of this folder run Django on PostgreSQL; the example's round
trips and ``runsnorky`` run on SQLite too.
"""

import os
import subprocess
import sys
import unittest

from tests.contrib.django.harness import ROOT, database


class SQLiteTests(unittest.TestCase):
    @unittest.skipIf(database() == "sqlite", "this process runs them on SQLite already")
    def test_datasync_on_sqlite(self):
        """tests/contrib/django/test_datasync.py passes with Django on SQLite."""
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/contrib/django/test_datasync.py"],
            cwd=ROOT,
            env=dict(os.environ, SNORKY_TEST_DJANGO_DATABASE="sqlite"),
            capture_output=True,
            text=True,
            timeout=240,
        )
        self.assertEqual(result.returncode, 0, result.stdout[-4000:] + result.stderr[-2000:])
        self.assertRegex(result.stdout, r"\d+ passed")
